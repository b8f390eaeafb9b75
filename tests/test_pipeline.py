from dataclasses import replace

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from conftest import make_scene, scene_scribbles
from label_tools.crf import CRFParams
from label_tools.errors import InputError, OptionError
from label_tools.io import ArraySource
from label_tools.pipeline import NODATA, Settings, segment


def accuracy(labels, mask):
    return (labels == mask).mean()


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("crf_weight", [0.0, 0.5, 1.0])
def test_recovers_regions_non_square(scale, crf_weight):
    img, mask = make_scene(90, 150)
    scr = scene_scribbles(mask)
    r = segment(img, scr, n_classes=3, settings=Settings(scale=scale, crf_weight=crf_weight, sigmas=(1, 2, 4)))
    assert r.labels.shape == (90, 150) and r.labels.dtype == np.uint8
    assert r.probs.shape == (3, round(90 * scale), round(150 * scale)) and r.probs.dtype == np.float32
    assert accuracy(r.labels, mask) > 0.95
    np.testing.assert_allclose(r.probs.sum(0), 1, atol=1e-3)


def test_absent_class_never_predicted():
    img, mask = make_scene()
    scr = scene_scribbles(mask)
    scr[scr == 3] = 0
    scr[scr == 2] = 4  # class 3 (id 2) has no scribbles; class 4 (id 3) takes its place
    r = segment(img, scr, n_classes=4, settings=Settings(sigmas=(1, 2)))
    assert not (r.labels == 2).any() and r.samples[2] == 0


def test_classifier_is_passed_in():
    img, mask = make_scene()
    clf = DecisionTreeClassifier(max_depth=8, min_samples_leaf=5, random_state=0)
    r = segment(img, scene_scribbles(mask), n_classes=3, classifier=clf, settings=Settings(crf_weight=0))
    assert r.classifier is clf and accuracy(r.labels, mask) > 0.9


def test_nodata_excluded_and_marked():
    img, mask = make_scene()
    valid = np.ones(mask.shape, bool)
    valid[:, :20] = False
    img[~valid] = 0
    scr = scene_scribbles(mask)
    src = ArraySource(img, valid=valid)
    for scale in (1.0, 0.5):
        r = segment(src, scr, n_classes=3, settings=Settings(scale=scale, sigmas=(1, 2)))
        assert (r.labels[~valid] == NODATA).all()
        assert accuracy(r.labels[valid], mask[valid]) > 0.93


def test_tiled_equals_single_tile_at_full_scale():
    """Feature tiling must not change the forest's output (tiles carry a halo)."""
    img, mask = make_scene(120, 170)
    scr = scene_scribbles(mask)
    kw = dict(n_classes=3, classifier=None)
    one = segment(img, scr, settings=Settings(crf_weight=0, sigmas=(1, 2)), **kw)
    many = segment(img, scr, settings=Settings(crf_weight=0, sigmas=(1, 2), tile_mb=0.05), **kw)
    np.testing.assert_allclose(one.probs, many.probs, atol=1e-5)


def test_upsampled_edges_follow_image():
    """At scale 0.25 the label edge lands on the image edge, not on the coarse 4-px grid."""
    h, w = 64, 96
    img = np.zeros((h, w, 3), np.uint8)
    img[:, 37:] = 220  # edge at column 37, not a multiple of 4
    mask = (np.arange(w)[None, :] >= 37).repeat(h, 0).astype(int)
    scr = np.zeros((h, w), np.uint8)
    scr[10:50, 5:25] = 1
    scr[10:50, 60:90] = 2
    r = segment(img, scr, n_classes=2, settings=Settings(scale=0.25, sigmas=(1,), crf_weight=0))
    assert (r.labels == mask).mean() > 0.995


def test_errors():
    img, mask = make_scene()
    scr = scene_scribbles(mask)
    with pytest.raises(InputError, match="expected shape"):
        segment(img, scr[:-1], n_classes=3)
    with pytest.raises(InputError, match="value 3 but there are only 2"):
        segment(img, scr, n_classes=2)
    with pytest.raises(OptionError, match="--grid-scale"):
        segment(img, scr, n_classes=3, settings=Settings(scale=1.5))
    with pytest.raises(OptionError, match="-s/--scale"):
        segment(img, scr, n_classes=3, settings=Settings(crf_scale=0))
    with pytest.raises(OptionError, match="--crf-weight"):
        segment(img, scr, n_classes=3, settings=Settings(crf_weight=2))
    only = np.where(scr == 1, 1, 0).astype(np.uint8)
    with pytest.raises(InputError, match="at least two classes"):
        segment(img, only, n_classes=3)


def test_crf_iterations_zero_is_forest_only():
    img, mask = make_scene()
    scr = scene_scribbles(mask)
    a = segment(img, scr, n_classes=3, settings=Settings(crf_weight=0, sigmas=(1, 2)))
    b = segment(img, scr, n_classes=3, settings=Settings(crf=CRFParams(n_iter=0), sigmas=(1, 2)))
    np.testing.assert_array_equal(a.labels, b.labels)


def test_model_fit_predict_matches_segment_and_carries_over():
    from label_tools.classes import load_classes
    from label_tools.model import Model

    img, mask = make_scene(70, 110)
    scr = scene_scribbles(mask)
    settings = Settings(sigmas=(1, 2), crf_weight=0)
    classes = load_classes(None, None, n_classes=3)
    m = Model.fit(img, scr, classes=classes, settings=settings)
    a = m.predict(img)
    b = segment(img, scr, n_classes=3, settings=settings)
    np.testing.assert_array_equal(a.labels, b.labels)
    # the model labels another image of the same kind without scribbles
    img2, mask2 = make_scene(90, 60, seed=3)
    r = m.predict(img2)
    assert r.labels.shape == (90, 60) and (r.labels == mask2).mean() > 0.9
    # refit on top: the samples grow
    m2 = Model.fit(img2, scene_scribbles(mask2, seed=1), classes=classes, base=m)
    assert len(m2.y) > len(m.y) and m2.info["images"] == ["<array>", "<array>"]
    with pytest.raises(InputError, match="feature band"):
        m.predict(img[..., 0])


def test_crf_scale_sets_crf_grid_not_model_grid():
    """-s is the CRF's downscale factor: the forest keeps the full grid, the CRF runs at 0.25."""
    img, mask = make_scene(90, 150)
    scr = scene_scribbles(mask)
    r = segment(img, scr, n_classes=3, settings=Settings(crf_scale=0.25, crf_pixels=500, sigmas=(1, 2, 4)))
    assert r.scale == 1.0 and r.probs.shape == (3, 90, 150)
    assert r.crf_probs.shape == (3, 22, 38) and r.crf_scale == pytest.approx(22 / 90)
    assert (r.labels == mask).mean() > 0.95
    floor = segment(img, scr, n_classes=3, settings=Settings(crf_scale=0.25, crf_pixels=3375, sigmas=(1, 2, 4)))
    assert floor.crf_probs.shape == (3, 45, 75)  # at least crf_pixels


@pytest.mark.parametrize("scale", [1.0, 0.45])
def test_probability_tiles_cover_image_sum_to_one_and_argmax_is_label(scale):
    """The full-resolution probability stream (on_probs) tiles the image; its argmax is the label image."""
    from label_tools.pipeline import predict, train
    from label_tools.upsample import upsample_labels

    img, mask = make_scene(130, 210)
    valid = np.ones(mask.shape, bool)
    valid[:7, :] = False
    src = ArraySource(img, valid=valid)
    s = Settings(scale=scale, sigmas=(1, 2))
    tr = train(src, scene_scribbles(mask), n_classes=3, settings=s)
    r = predict(src, tr.classifier, n_classes=3, settings=s)
    seen = np.zeros(mask.shape, int)
    full = np.zeros((3,) + mask.shape, np.float32)
    lab_tiles = np.zeros(mask.shape, np.uint8)

    def keep(window, probs, labels):
        r0, r1, c0, c1 = window
        assert probs.shape == (3, r1 - r0, c1 - c0) and probs.dtype == np.float32 and labels.dtype == np.uint8
        seen[r0:r1, c0:c1] += 1
        full[:, r0:r1, c0:c1] = probs
        lab_tiles[r0:r1, c0:c1] = labels

    labels = upsample_labels(src, r.probs, tile=64, on_tile=keep)  # several tiles
    np.testing.assert_array_equal(lab_tiles, labels)
    assert (labels == r.labels).mean() > 0.99  # tile borders of the guided filter move a few pixels at most
    assert (seen == 1).all()
    assert full.min() >= 0
    np.testing.assert_allclose(full.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(full.argmax(0)[valid], labels[valid])
    assert (labels[~valid] == NODATA).all()


def test_structure_scale_from_stroke_gaps_and_grid_scale_bounds():
    from label_tools.pipeline import grid_scale, structure_scale

    s = np.zeros((100, 200), np.uint8)
    for r in (20, 50, 80):
        s[r - 1:r + 2, 19:22] = 1
        s[r - 1:r + 2, 51:54] = 2  # 30 px from the class-1 dot's edge to this dot
    assert structure_scale(s, 2) == pytest.approx(8 / 30, rel=0.02)
    assert structure_scale(np.where(s == 2, 0, s).astype(np.uint8), 2) == 1.0  # one class only
    big = (4000, 3000)
    assert grid_scale(big, Settings()) == pytest.approx((0.4e6 / 12e6) ** 0.5)
    assert grid_scale(big, Settings(structure_scale=8 / 30)) == pytest.approx(8 / 30)
    assert grid_scale(big, Settings(structure_scale=1.0)) == pytest.approx(0.5 ** 0.5)  # 6 MP cap
    assert grid_scale((300, 400), Settings(structure_scale=0.1)) == 1.0


def test_samples_per_class_grows_with_the_grid_within_a_total():
    from label_tools.pipeline import samples_per_class

    st = Settings()
    assert samples_per_class((500, 800), 2, st) == 4000  # 0.4 MP grid
    assert samples_per_class((1000, 800), 2, st) == 8000
    assert samples_per_class((3000, 3000), 2, st) == 12000  # 24000 over 2 classes
    assert samples_per_class((3000, 3000), 11, st) == 4000  # never below the base


def test_predict_reports_the_radius_it_upsampled_with():
    from label_tools.pipeline import predict, train
    from label_tools.upsample import upsample_labels

    img, mask = make_scene(160, 220)
    src = ArraySource(img)
    st = Settings(scale=0.25, structure_scale=0.6, holdout=False, crf_weight=0.0)
    tr = train(src, scene_scribbles(mask), n_classes=int(mask.max()) + 1, settings=st)
    r = predict(src, tr.classifier, n_classes=int(mask.max()) + 1, settings=st)
    assert r.upsample_radius == 1 and r.upsample_fine == 2  # and the full-resolution filter: half a grid cell
    np.testing.assert_array_equal(r.labels, upsample_labels(src, r.probs, radius=1, fine=2))
    assert not np.array_equal(r.labels, upsample_labels(src, r.probs, radius=1))
    assert not np.array_equal(upsample_labels(src, r.probs, radius=1), upsample_labels(src, r.probs, radius=2))


def test_features_kept_for_prediction_all_or_half_the_budget():
    """Every scribbled tile's features are kept when they fit in ``cache_mb`` (nothing computed
    twice), else tiles up to half of it; the labels are the same either way."""
    from label_tools.pipeline import _layout, cache_budget, collect_samples

    img, mask = make_scene(300, 400)
    scr = scene_scribbles(mask)
    src = ArraySource(img)
    small = Settings(crf_weight=0, sigmas=(1, 2), tile_mb=0.05, scale=1.0)
    _, shape, grid, side, tiles = _layout(src, small)
    assert len(tiles) > 2
    inner = [t.inner for t in tiles if scr[t.inner[0]:t.inner[1], t.inner[2]:t.inner[3]].any()]
    assert len(inner) > 2
    n_feat = 3 * 2 * 4
    need = sum((min(r1 + 2 + grid.halo, shape[0]) - max(r0 - 2 - grid.halo, 0))
               * (min(c1 + 2 + grid.halo, shape[1]) - max(c0 - 2 - grid.halo, 0)) * n_feat * 4
               for r0, r1, c0, c1 in inner)
    roomy = replace(small, cache_mb=need / 2**20)
    tight = replace(small, cache_mb=need / 2**20 * 0.9)
    assert cache_budget(grid, inner, roomy) == int(need)
    assert cache_budget(grid, inner, tight) == int(need * 0.9 / 2)
    out = {}
    for name, st in (("roomy", roomy), ("tight", tight)):
        *_, cache, _, _ = collect_samples(src, scr, n_classes=3, settings=st, keep_cache=True)
        kept = sum(f.base.nbytes if f.base is not None else f.nbytes for f in cache["tiles"].values())
        scribbled = [i for i, t in enumerate(tiles) if scr[t.inner[0]:t.inner[1], t.inner[2]:t.inner[3]].any()]
        if name == "roomy":
            assert sorted(cache["tiles"]) == scribbled
        else:
            assert 0 < len(cache["tiles"]) < len(scribbled) and kept <= need * 0.9 / 2
        tr = segment(img, scr, n_classes=3, settings=st)
        out[name] = tr.labels
    np.testing.assert_array_equal(out["roomy"], out["tight"])


def test_crf_tiles_agree_with_one_tile():
    """The CRF runs on overlapping tiles (``CRF_TILE`` grid pixels): tiles of 64 and 128 pixels on a
    non-square scene give one tile's labels, and marginals within 0.05 of it, off by more than 0.01 on
    at most 0.1 % of the pixels (mean field is global; the overlap carries the kernels' reach)."""
    from label_tools import pipeline as P

    img, mask = make_scene(260, 390)
    src = ArraySource(img)
    s = Settings(scale=1.0, sigmas=(1, 2), crf_weight=0.6)
    tr = P.train(src, scene_scribbles(mask), n_classes=3, settings=s)
    r = P.predict(src, tr.classifier, n_classes=3, settings=s, upsample=False)
    grid = P._layout(src, s)[2]
    params = P.crf_reach(s.crf.scaled(min(grid.rc)), [r.forest_probs])
    one, q_one, _ = P._crf_tiles(grid, r.forest_probs, params, 0.6, lambda *a: None, factor=1.0, tile=4096)
    assert (one.argmax(0) == mask).mean() > 0.95
    for tile in (64, 128):
        b, q, _ = P._crf_tiles(grid, r.forest_probs, params, 0.6, lambda *a: None, factor=1.0, tile=tile)
        d = np.abs(q - q_one).max(axis=0)
        assert np.array_equal(b.argmax(0), one.argmax(0))
        assert d.max() < 0.05 and (d > 0.01).mean() < 1e-3



def test_a_blank_image_is_refused_when_fitting_and_a_nearly_blank_one_is_not():
    """Every pixel one value: no feature can tell scribbled classes apart, and the run used to end with
    misleading warnings (a class 'almost absent', 100 % uncertain). A flat statistics sample is
    confirmed on every pixel: one pixel off the sample's lattice makes the image not blank."""
    from label_tools.pipeline import train

    a = np.full((2100, 2000, 3), 90, np.uint8)  # 4.2 MP: the statistics sample takes every 2nd pixel
    src = ArraySource(a)
    assert src.blank_value() == (90.0, 90.0, 90.0)
    scr = np.zeros((2100, 2000), np.uint8)
    scr[100:110, 100:900] = 1
    scr[1500:1510, 100:900] = 2
    with pytest.raises(InputError, match=r"is blank: every pixel holds the same value \(90, 90, 90\)"):
        train(src, scr, n_classes=2, settings=Settings(sigmas=(1,)))
    b = a.copy()
    b[1001, 1001] = 91  # odd row and column: not in the sample
    nearly = ArraySource(b)
    assert nearly._flat is not None and nearly.blank_value() is None
    nodata = np.ones((2100, 2000), bool)
    nodata[:50] = False
    c = a.copy()
    c[:50] = 0  # a different value, but only on no-data pixels: still blank
    assert ArraySource(c, valid=nodata).blank_value() == (90.0, 90.0, 90.0)
