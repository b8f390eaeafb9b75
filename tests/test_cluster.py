"""Cluster runs on a real Dask cluster (``dask scheduler`` + ``dask worker`` processes on 127.0.0.1).

They must give exactly the in-process outputs, survive a worker killed with SIGKILL midway, and run the
work on the workers, not in the client.
"""
import os

import numpy as np
import pytest
import rasterio

import daskcluster
from conftest import shared

pytest.importorskip("distributed")


@pytest.fixture
def cluster(tmp_path):
    c = daskcluster.start(str(tmp_path / "dask-logs"), n_workers=2)
    try:
        yield c
    finally:
        daskcluster.stop(c)


def tiled_geotiff(path, rows=1300, cols=1100):
    """A georeferenced, tiled (256-px blocks), deflated GeoTIFF mirror-tiled from a real Landsat scene (no-data kept)."""
    with rasterio.open(shared("geotiff_rasterio", "images", "RGB.byte.tif")) as s:
        a = s.read()
        prof = dict(s.profile)
    a = np.concatenate([a, a[:, ::-1]], 1)
    a = np.concatenate([a, a[:, :, ::-1]], 2)
    a = np.concatenate([a, a], 1)[:, :rows, :cols]
    prof.update(height=a.shape[1], width=a.shape[2], tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **prof) as d:
        d.write(a)
    return str(path)


def brightness_scribbles(src):
    """Three classes by brightness terciles of the valid pixels, as synthetic strokes."""
    from label_tools.synthetic import synthetic_scribbles

    g = src.read_display(out_shape=src.shape).mean(-1)
    valid = src.read_valid()
    t1, t2 = np.percentile(g[valid], [33, 66])
    mask = np.where(valid, (g > t1).astype(int) + (g > t2), -1)
    return synthetic_scribbles(mask, fraction=0.01)


def test_window_tasks_equal_in_process(cluster, tmp_path, monkeypatch):
    """A raster cut into window tasks on the workers gives the in-process result bit for bit."""
    from distributed import Client

    from label_tools import blocks
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model

    path = tiled_geotiff(tmp_path / "scene.tif")
    src = open_image(path)
    model = Model.fit(src, brightness_scribbles(src), classes=load_classes(None, None, n_classes=3))
    model._cache = None  # predict from scratch, as a saved model does
    ref = model.predict(src)
    monkeypatch.setattr(blocks, "TASK_PIXELS", 1024 * 1024)  # one 1024-px window per task: 4 tasks
    groups = blocks.task_groups(src.shape, task_pixels=blocks.TASK_PIXELS)
    assert len(groups) == 4 and all(len(g) == 1 for g in groups)
    seen = []
    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        r = blocks.predict_on_cluster(client, model, open_image(path),
                                      progress=lambda stage, done, total: seen.append((stage, done, total)))
        ran_on = client.run(lambda dask_worker: [str(k) for k in dask_worker.data] + list(
            {str(ts.key) for ts in dask_worker.state.tasks.values()}))
    assert seen[-1] == ("windows", 4, 4)
    assert np.array_equal(r.labels, ref.labels)
    assert np.array_equal(r.probs, ref.probs) and np.array_equal(r.crf_probs, ref.crf_probs)
    assert np.array_equal(r.display, ref.display)
    assert (r.labels[~src.read_valid()] == 255).all() and len(np.unique(r.labels)) == 4
    assert len(ran_on) == 2
