"""Prior-shift correction of a capped model grid (label_tools/refine.py): exact pieces, then a real image."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import shared
from label_tools import pipeline
from label_tools import refine, upsample
from label_tools.classes import Classes
from label_tools.model import Model
from label_tools.synthetic import synthetic_scribbles


def test_applies_only_on_a_capped_grid_without_crf():
    assert refine.applies(0.245, 0.59, 0.0)
    assert not refine.applies(0.245, 0.59, 0.6)  # the CRF smooths the same specks away
    assert not refine.applies(0.59, 0.59, 0.0)  # the grid follows the structures (12 MP and below)
    assert not refine.applies(0.8, 0.59, 0.0)
    assert not refine.applies(0.245, None, 0.0)  # --grid-scale given: nothing known about the structures
    assert not refine.applies(0.245, 0.59, None)


def test_training_prior_is_the_forests_weighted_root_shares():
    from sklearn.ensemble import RandomForestClassifier

    X = np.arange(40, dtype=np.float32)[:, None]
    y = np.array([0] * 30 + [2] * 10)
    clf = RandomForestClassifier(n_estimators=3, bootstrap=False, random_state=0).fit(X, y)
    np.testing.assert_allclose(refine.training_prior(clf, 3), [0.75, 0.0, 0.25])
    clf = RandomForestClassifier(n_estimators=3, bootstrap=False, class_weight={0: 1.0, 2: 3.0},
                                 random_state=0).fit(X, y)
    np.testing.assert_allclose(refine.training_prior(clf, 3), [0.5, 0.0, 0.5])
    from sklearn.linear_model import LogisticRegression

    assert refine.training_prior(LogisticRegression().fit(X, y), 3) is None  # not a forest: no correction


def test_shift_prior_exact():
    p = np.array([[[0.5, 0.9]], [[0.5, 0.1]]], np.float32)  # (K=2, 1, 2)
    out = refine.shift_prior(p, np.array([0.5, 0.5]), np.array([0.8, 0.2]))
    # 0.5*1.6 : 0.5*0.4 -> 0.8 : 0.2; 0.9*1.6 : 0.1*0.4 = 1.44 : 0.04
    np.testing.assert_allclose(out[:, 0, 0], [0.8, 0.2], rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], [1.44 / 1.48, 0.04 / 1.48], rtol=1e-6)


def test_fine_radius_only_on_a_capped_grid():
    assert upsample.fine_radius(0.245, 0.59) == 2  # half of a 4-pixel grid cell
    assert upsample.fine_radius(0.1, 0.5) == 5
    assert upsample.fine_radius(0.9, 0.95) == 1
    assert upsample.fine_radius(0.59, 0.59) == 0  # the grid follows the structures
    assert upsample.fine_radius(0.245, None) == 0


def test_fine_filter_flat_guide_is_a_double_box_mean_and_keeps_distributions():
    import cv2

    rng = np.random.default_rng(1)
    q0 = rng.random((12, 15)).astype(np.float32)
    q = np.stack([q0, 1 - q0])
    out = upsample.fine_filter(np.full((12, 15), 0.5, np.float32), q, radius=1, eps=1e-2)
    box = lambda x: cv2.boxFilter(x, -1, (3, 3), borderType=cv2.BORDER_REFLECT)  # noqa: E731
    np.testing.assert_allclose(out[0], box(box(q0)), atol=1e-6)  # no guide structure: a = 0, plain smoothing
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-6)


def test_fine_filter_moves_a_blurred_edge_onto_the_image_edge():
    # guide: dark left of column 10, bright from 10; the coarse probability crosses 0.5 at column 11
    # (within the radius; farther edges stay where the grid put them)
    guide = np.zeros((8, 24), np.float32)
    guide[:, 10:] = 1.0
    ramp = np.clip((np.arange(24) - 11 + 0.5) / 8 + 0.5, 0, 1).astype(np.float32)
    q = np.stack([np.tile(1 - ramp, (8, 1)), np.tile(ramp, (8, 1))])
    assert (q.argmax(axis=0)[0] == 1).argmax() == 11
    out = upsample.fine_filter(guide, q, radius=2, eps=1e-2)
    assert (out.argmax(axis=0)[0] == 1).argmax() == 10
    assert (out.argmax(axis=0) == out.argmax(axis=0)[0]).all()
    # the step sharpens: 0.21 -> 0.56 across the edge instead of the ramp's 0.44 -> 0.56
    np.testing.assert_allclose(out[1, 0, 9:11], [0.21, 0.56], atol=0.01)


def test_em_recovers_the_image_class_shares():
    # two 1-D Gaussian classes; posteriors made under equal training shares; the image holds 20 % of class 1
    rng = np.random.default_rng(0)
    n = 200_000
    cls = (rng.random(n) < 0.2).astype(int)
    x = rng.normal(np.where(cls == 1, 1.0, -1.0), 1.0)
    l0, l1 = np.exp(-0.5 * (x + 1) ** 2), np.exp(-0.5 * (x - 1) ** 2)
    p = np.stack([l0, l1]) / (l0 + l1)
    probs = p.reshape(2, 400, 500).astype(np.float32)
    prior, it = refine.image_prior(probs, np.array([0.5, 0.5]))
    assert abs(prior[1] - 0.2) < 0.01 and 1 < it < refine.MAX_ITER
    assert abs(prior.sum() - 1) < 1e-9
    # the corrected argmax is the Bayes decision under the true shares: fewer class-1 pixels, more right
    q = refine.shift_prior(probs, np.array([0.5, 0.5]), prior).reshape(2, -1)
    assert (q.argmax(0) == cls).mean() > (p.argmax(0) == cls).mean() + 0.03
    # no-data pixels are left out of the estimate
    valid = np.ones((400, 500), bool)
    valid[:, 250:] = False
    half, _ = refine.image_prior(probs, np.array([0.5, 0.5]), valid=valid)
    ref, _ = refine.image_prior(probs[:, :, :250].copy(), np.array([0.5, 0.5]))
    np.testing.assert_allclose(half, ref, atol=1e-6)


def tile_to(a, shape):
    h, w = shape
    out = a
    while out.shape[0] < h or out.shape[1] < w:
        out = np.concatenate([out, out[::-1]], 0) if out.shape[0] < h else out
        out = np.concatenate([out, out[:, ::-1]], 1) if out.shape[1] < w else out
    return np.ascontiguousarray(out[:h, :w])


def miou(pred, mask):
    return float(np.mean([((pred == c) & (mask == c)).sum() / ((pred == c) | (mask == c)).sum() for c in (0, 1)]))


@pytest.mark.slow
def test_capped_grid_on_he_nuclei_gets_the_image_shares(monkeypatch):
    """H&E image02 mirror-tiled to 1.5 MP with its native scribbles tiled along (as ``bench.py speed
    --tile-scribbles``), the grid capped at 0.1 MP (scale 0.26 where the nuclei need 0.57, as at 100 MP)."""
    img = np.array(Image.open(shared("he_nuclei_miccai", "images", "image02.png")))[..., :3]
    mask = (np.array(Image.open(shared("he_nuclei_miccai", "masks", "image02.png"))) > 0).astype(int)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    scr = synthetic_scribbles(mask, fraction=0.01, seed=0)
    shape = (1225, 1220)
    img, mask, scr = tile_to(img, shape), tile_to(mask, shape), tile_to(scr, shape)
    settings = replace(pipeline.Settings(), auto_pixels=0.1e6, max_grid_pixels=0.1e6)
    model = Model.fit(img, scr, classes=Classes(("a", "b"), np.zeros((2, 3), np.uint8)), settings=settings)
    r = model.predict(img)
    assert model.chosen["crf_weight"] == 0.0  # the held-out strokes turn the CRF off (they never see false positives)
    assert r.scale < model.chosen["structure_scale"]
    assert r.class_prior is not None and r.timings["prior"] < 1.0
    assert abs(r.class_prior["training"][1] - 0.5) < 0.05  # scribbles about as much on both classes
    assert abs(r.class_prior["image"][1] - mask.mean()) < 0.06  # nuclei: 0.166 of the pixels
    assert r.upsample_fine == 2  # half a grid cell at full resolution
    with_both = miou(r.labels, mask)
    monkeypatch.setattr(pipeline, "fine_radius", lambda *a: 0)
    model._cache = None
    prior_only = model.predict(img)
    assert prior_only.upsample_fine == 0 and prior_only.class_prior == r.class_prior
    monkeypatch.setattr(refine, "applies", lambda *a: False)
    plain = model.predict(img)
    assert plain.class_prior is None
    without, with_prior = miou(plain.labels, mask), miou(prior_only.labels, mask)
    # measured: 0.747 without, 0.822 with the class shares, 0.827 with the full-resolution filter too
    # (native size with its chosen CRF: 0.831)
    assert with_prior > without + 0.05 and with_both > with_prior + 0.002 and with_both > 0.8
    # the nuclei share of the labels comes down to about the truth
    assert abs((r.labels == 1).mean() - mask.mean()) < 0.03 < abs((plain.labels == 1).mean() - mask.mean())


@pytest.mark.slow
def test_cluster_path_gives_the_same_corrected_labels(tmp_path):
    """The correction runs in the grid stage, so blocks.grid_task + windows_task (what Dask workers run)
    give the in-process labels and shares exactly, on a GeoTIFF read window by window."""
    import rasterio

    from label_tools import blocks
    from label_tools.io import open_image

    img = np.array(Image.open(shared("he_nuclei_miccai", "images", "image02.png")))[..., :3]
    mask = (np.array(Image.open(shared("he_nuclei_miccai", "masks", "image02.png"))) > 0).astype(int)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    shape = (1100, 1300)
    img, scr = tile_to(img, shape), tile_to(synthetic_scribbles(mask, fraction=0.01, seed=0), shape)
    path = str(tmp_path / "he.tif")
    with rasterio.open(path, "w", driver="GTiff", height=shape[0], width=shape[1], count=3, dtype="uint8",
                       tiled=True, blockxsize=256, blockysize=256, crs="EPSG:32618",
                       transform=rasterio.Affine(1, 0, 500000, 0, -1, 4000000)) as ds:
        ds.write(np.moveaxis(img, -1, 0))
    src = open_image(path)
    settings = replace(pipeline.Settings(), auto_pixels=0.1e6, max_grid_pixels=0.1e6)
    model = Model.fit(src, scr, classes=Classes(("a", "b"), np.zeros((2, 3), np.uint8)), settings=settings)
    here = model.predict(src)
    assert here.class_prior is not None and here.upsample_fine == 2
    spec = blocks.SourceSpec.of(src)
    grid = blocks.grid_task(spec, model.classifier, 2, model.effective_settings())
    assert grid.class_prior == here.class_prior
    np.testing.assert_array_equal(grid.probs, here.probs)
    labels = np.empty(shape, np.uint8)
    import zlib

    groups = blocks.task_groups(shape, task_pixels=1e6)
    assert len(groups) == 4  # four 1024-px windows, one per task
    for group in groups[::-1]:  # any order
        for (r0, r1, c0, c1), blob in blocks.windows_task(spec, grid, group):
            labels[r0:r1, c0:c1] = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(r1 - r0, c1 - c0)
    np.testing.assert_array_equal(labels, here.labels)


def test_saved_model_corrects_a_new_image_the_same_way(tmp_path):
    """The training shares come from the forest itself, so a model file needs nothing more."""
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(240, 300, seed=3)
    scr = scene_scribbles(mask, seed=3)
    settings = replace(pipeline.Settings(), auto_pixels=2000, max_grid_pixels=2000)  # scale 0.13, structures 0.24
    model = Model.fit(img, scr, classes=Classes(("a", "b", "c"), np.zeros((3, 3), np.uint8)), settings=settings)
    other, _ = make_scene(240, 300, seed=4)
    eff = replace(model.effective_settings(), crf_weight=0.0)
    first = model.predict(other, settings=eff)
    assert first.class_prior is not None and first.upsample_fine >= 1
    model.save(str(tmp_path / "m.skops"))
    again = Model.load(str(tmp_path / "m.skops")).predict(other, settings=eff)
    assert again.class_prior == first.class_prior
    np.testing.assert_array_equal(again.labels, first.labels)
