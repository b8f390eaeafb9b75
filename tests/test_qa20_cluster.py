"""--plane on a Dask cluster for a raster cut into window tasks.

It was refused: the grid task and the window tasks opened the file by path alone, so the workers would have read
the first plane under the client's plane. The plane now travels with every task (``blocks.SourceSpec``), and the
cluster's outputs equal the single-machine run of that plane. The stack is written by tifffile as Fiji does, its
planes of different content (the regions move from plane to plane), so outputs of the wrong plane cannot pass.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("distributed")

from label_tools.cli import main  # noqa: E402

H, W = 1100, 1300  # over one 1024-px label window each way: 4 window tasks of 1 MP


def _plane_of(k):
    """uint16 (2, H, W): two channels of plane k, a scene whose regions are shifted 300 k columns; and its mask."""
    img, mask = make_scene(H, W, seed=k)
    img, mask = np.roll(img, 300 * k, axis=1), np.roll(mask, 300 * k, axis=1)
    return np.stack([img[..., 0].astype(np.uint16) * 16 + 5, img[..., 2].astype(np.uint16) * 9 + 100]), mask


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An ImageJ hyperstack of 2 z-slices at 2 time points (2 channels), a model fitted on its first plane, the
    in-process run of the model on z-slice 2 at time point 2, and that plane's mask."""
    d = tmp_path_factory.mktemp("planes")
    planes = [_plane_of(k) for k in range(4)]  # k = z + 2 t
    a = np.stack([np.stack([planes[z + 2 * t][0] for z in range(2)]) for t in range(2)])  # (T, Z, C, H, W)
    tifffile.imwrite(d / "hs.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    Image.fromarray(scene_scribbles(planes[0][1], seed=0)).save(d / "s.png")
    assert main([str(d / "hs.tif"), "--scribbles", str(d / "s.png"), "--save-model", str(d / "m.skops"),
                 "-o", str(d / "train"), "-q"]) == 0
    assert main(["--model", str(d / "m.skops"), "--headless", str(d / "hs.tif"), "--plane", "2,2", "-o",
                 str(d / "ref"), "-q"]) == 0
    return d, planes[3][1]


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _same_outputs(ref, out):
    """The cluster run wrote the in-process run's files: images byte for byte, the .mat's arrays, the report apart
    from its timings."""
    from scipy.io import loadmat

    names = sorted(os.listdir(ref))
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == names
    for n in names:
        a, b = (_bytes(os.path.join(x, n)) for x in (ref, out))
        if n.endswith(".mat"):
            ma, mb = loadmat(os.path.join(ref, n)), loadmat(os.path.join(out, n))
            assert all(np.array_equal(ma[k], mb[k]) for k in ("class", "preds", "sparse", "colors")), n
        elif n.endswith("_report.txt"):
            def keep(t):
                return [ln for ln in t.decode().splitlines() if "time" not in ln and "timings" not in ln]
            assert keep(a) == keep(b), n
        else:
            assert a == b, n


def test_window_tasks_read_the_chosen_plane_and_equal_the_single_machine_run(stack, tmp_path):
    """--workers 2 (a LocalCluster) on z-slice 2 at time point 2, the stack cut into 4 window tasks: every output as
    the single-machine run's, whose labels are that plane's (not the first plane's) regions."""
    d, mask = stack
    ref = d / "ref"
    labels = np.asarray(Image.open(ref / "hs_z02_t02_mres_label.png"))
    assert (labels == mask).mean() > 0.9  # the plane's own regions, shifted 900 columns from the first plane's
    assert (labels == np.asarray(Image.open(d / "train" / "hs_mres_label.png"))).mean() < 0.6
    out = tmp_path / "out"
    env = dict(os.environ, LABEL_TOOLS_WINDOWED_MP="1", LABEL_TOOLS_TASK_MP="1")
    exe = os.path.join(os.path.dirname(sys.executable), "label-image")
    p = subprocess.run([exe, "--model", str(d / "m.skops"), "--headless", str(d / "hs.tif"), "--plane", "2,2",
                        "-o", str(out), "--workers", "2", "-v", "-v"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "hs.tif: grid stage and windows on the cluster" in p.stderr, p.stderr[-3000:]  # window tasks ran
    _same_outputs(ref, out)


def test_the_plane_travels_with_the_task_spec(stack):
    """The spec a window task gets names the client's plane, and a worker opening it reads that plane's pixels."""
    from label_tools import blocks
    from label_tools.io import open_image

    d, _ = stack
    src = open_image(str(d / "hs.tif"), plane="z2,t2")
    spec = blocks.SourceSpec.of(src)
    assert spec.plane == "z2,t2"
    first = blocks.SourceSpec.of(open_image(str(d / "hs.tif")))
    assert first.plane is None
    on_worker = blocks.open_source(spec)
    np.testing.assert_array_equal(on_worker.ds.read(), _plane_of(3)[0])
    np.testing.assert_array_equal(on_worker.read(), src.read())
    np.testing.assert_array_equal(blocks.open_source(first).ds.read(), _plane_of(0)[0])


def test_a_page_is_cut_into_window_tasks_by_its_own_size(tmp_path, monkeypatch):
    """Pages of a plain multi-page TIFF may differ in size: whether a chosen page is cut into window tasks follows
    that page's size, not the first page's."""
    from label_tools import blocks
    from label_tools.cluster import _is_large

    rng = np.random.default_rng(0)
    small, large = rng.integers(0, 255, (30, 40), np.uint8), rng.integers(0, 255, (200, 300), np.uint8)
    Image.fromarray(small).save(tmp_path / "p.tif", save_all=True, append_images=[Image.fromarray(large)])
    monkeypatch.setattr(blocks, "WINDOWED_PIXELS", 200 * 300)
    path = str(tmp_path / "p.tif")
    assert not _is_large(path) and not _is_large(path, "1") and _is_large(path, "2") and _is_large(path, "p2")
    assert not _is_large(path, "3")  # a page it lacks: its job fails on its own line
