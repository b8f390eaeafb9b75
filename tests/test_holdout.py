import numpy as np
import pytest

from conftest import make_scene
from label_tools import holdout
from label_tools.pipeline import Settings, segment, train


def dot_scribbles(mask, step=12, wrong=None):
    """3x3 dots on a regular lattice, each its own stroke, class from ``mask``; ``wrong`` = (row, col, class)."""
    s = np.zeros(mask.shape, np.uint8)
    for r in range(6, mask.shape[0] - 6, step):
        for c in range(6, mask.shape[1] - 6, step):
            s[r - 1:r + 2, c - 1:c + 2] = mask[r, c] + 1
    if wrong is not None:
        r, c, k = wrong
        s[r - 1:r + 2, c - 1:c + 2] = k + 1
    return s


def test_find_strokes_components_folds_and_boxes():
    small = np.zeros((20, 30), np.uint8)
    small[2:4, 2:9] = 1      # class 0, stroke A
    small[10, 10:20] = 1     # class 0, stroke B
    small[15:18, 25] = 2     # class 1, only stroke
    st = holdout.find_strokes(small, 2, (40, 60), seed=3)
    assert len(st) == 3 and st.cls.tolist() == [0, 0, 1] and st.pixels.tolist() == [14, 10, 3]
    assert st.bbox.tolist() == [[4, 8, 4, 18], [20, 22, 20, 40], [30, 36, 50, 52]]
    assert sorted(st.fold[:2].tolist()) in ([0, 1], [1, 2], [0, 2]) and st.fold[2] == -1
    assert (st.ids[small > 0] > 0).all() and (st.ids[small == 0] == 0).all()
    again = holdout.find_strokes(small, 2, (40, 60), seed=3)
    np.testing.assert_array_equal(again.fold, st.fold)  # same scribbles, same folds


def test_choose_weight_prefers_default_among_ties():
    assert holdout.choose_weight({0.0: 0.90, 0.4: 0.95, 0.6: 0.951}, 0.6) == 0.6
    assert holdout.choose_weight({0.0: 0.99, 0.6: 0.90}, 0.6) == 0.0
    assert holdout.choose_weight({0.0: float("nan")}, 0.6) == 0.6
    assert holdout.score(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), 2) == pytest.approx(0.75)


def test_wrong_class_stroke_has_low_heldout_agreement():
    img, mask = make_scene(96, 140)
    r, c = 18, 126  # well inside region 1 (right half)
    assert mask[r, c] == 1
    scr = dot_scribbles(mask, wrong=(r, c, 0))
    tr = train(img, scr, n_classes=3, settings=Settings(sigmas=(1, 2, 4)))
    st = tr.strokes
    bad = st.ids[r, c] - 1
    assert st.cls[bad] == 0 and st.agreement[bad] == 0.0 and st.predicted[bad] == 1
    good = np.delete(np.arange(len(st)), bad)
    assert np.nanmean(st.agreement[good]) > 0.9
    assert tr.chosen["crf_weight"] in holdout.WEIGHTS
    assert set(tr.chosen["holdout"]["scores"]) == {f"{w:g}" for w in holdout.WEIGHTS}


def test_segment_applies_chosen_weight_and_fixed_weight_is_kept():
    img, mask = make_scene(96, 140)
    scr = dot_scribbles(mask)
    r = segment(img, scr, n_classes=3, settings=Settings(sigmas=(1, 2, 4)))
    assert r.chosen["crf_weight"] in holdout.WEIGHTS and (r.labels == mask).mean() > 0.95
    fixed = segment(img, scr, n_classes=3, settings=Settings(sigmas=(1, 2, 4), crf_weight=0.3))
    assert "crf_weight" not in fixed.chosen and list(fixed.chosen["holdout"]["scores"]) == ["0.3"]
    off = segment(img, scr, n_classes=3, settings=Settings(sigmas=(1, 2, 4), holdout=False))
    assert set(off.chosen) == {"structure_scale", "training_band_stats"}


def test_choose_weight_keeps_default_unless_clearly_better_per_stroke():
    default = np.array([0.9, 0.8, 1.0, 0.7])
    noisy = np.array([1.0, 0.6, 1.0, 0.9])  # better on average, but not beyond chance
    clear = default + 0.1
    assert holdout.choose_weight({0.6: 0.85, 0.0: 0.875}, 0.6, per_stroke={0.6: default, 0.0: noisy}) == 0.6
    assert holdout.choose_weight({0.6: 0.85, 0.0: 0.95}, 0.6, per_stroke={0.6: default, 0.0: clear}) == 0.0


def test_strokes_on_no_data_are_not_held_out_when_fitting_through_the_api():
    """RGB.byte.tif (Landsat, black no-data collar): a class-3 line drawn in the collar beside strokes on
    data. Fitting ignores no-data pixels; the held-out strokes (and the calibration's) must too, also
    for callers of pipeline.train / Model.fit (the CLI drops such strokes itself). Before: the collar
    line was a held-out stroke, predicted and judged (agreement 0)."""
    import cv2
    import rasterio

    from conftest import shared
    from label_tools import calibrate
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model

    path = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    with rasterio.open(path) as ds:
        valid = ds.dataset_mask() > 0
    scr = np.zeros(valid.shape, np.uint8)
    for k, line in enumerate([((450, 250), (500, 600)), ((100, 400), (150, 550)), ((250, 300), (330, 450)),
                              ((320, 200), (360, 210)), ((470, 300), (520, 640)), ((260, 330), (340, 480))]):
        cv2.line(scr, *line, k % 4 + 1, 4)  # on data: deep water, shallow water, land, cloud, water, land
    assert valid[scr > 0].all()
    cv2.line(scr, (10, 30), (100, 30), 3, 4)
    collar = np.zeros_like(valid)
    cv2.line(collar.view(np.uint8), (10, 30), (100, 30), 1, 4)
    assert not valid[collar].any()
    src = open_image(path)
    model = Model.fit(src, scr, classes=load_classes(None, None, n_classes=4))
    st = model.strokes
    top = np.asarray(st.bbox)[:, 0]  # row0 of each stroke's box, full resolution
    drawn = int((st.part <= 0).sum())  # the only strokes of land and cloud are cut in three parts each
    assert drawn == 6 and (top > 100).all(), st.bbox  # the collar line (rows 28-32) is no stroke
    cal_strokes = calibrate.find_strokes(src, scr, n_classes=4, settings=model.effective_settings())
    assert all(b[1] > 100 for b in cal_strokes.bboxes)  # (x0, y0, x1, y1): none in the collar


def test_only_stroke_of_a_class_is_cut_in_parts_along_its_length():
    small = np.zeros((60, 90), np.uint8)
    small[10:12, 5:85] = 1              # class 0: one long stroke (160 px): three parts, left to right
    small[40:42, 10:50] = 2             # class 1: one stroke of 80 px: three parts
    small[30:32, 40:45] = 3             # class 2: one stroke of 10 px (< SPLIT_MIN_PIXELS): kept whole
    st = holdout.find_strokes(small, 3, (120, 180), seed=1)
    assert st.cls.tolist() == [0, 0, 0, 1, 1, 1, 2] and st.part.tolist() == [0, 1, 2, 0, 1, 2, -1]
    assert st.pixels[:3].sum() == 160 and max(st.pixels[:3]) - min(st.pixels[:3]) <= 1
    cols = [np.nonzero(st.ids == i + 1)[1] for i in range(3)]
    assert cols[0].max() <= cols[1].min() and cols[1].max() <= cols[2].min()  # consecutive stretches
    assert sorted(st.fold[:3].tolist()) == [0, 1, 2] and st.fold[6] == -1  # each part in its own fold
    assert st.bbox[0].tolist() == [20, 24, 10, 2 * (cols[0].max() + 1)]  # full-resolution box of part 0
    assert (st.ids[small > 0] > 0).all() and (st.ids[small == 0] == 0).all()
    # a class with two strokes: they are held out, no stroke is cut
    small[50:52, 60:70] = 2
    st = holdout.find_strokes(small, 3, (120, 180), seed=1)
    assert st.cls.tolist() == [0, 1, 1, 2] and st.part.tolist() == [-1, -1, -1, -1]
    assert st.fold[0] == -1 and st.fold[3] == -1 and sorted(st.fold[1:3].tolist()) in ([0, 1], [1, 2], [0, 2])
    # a diagonal zig-zag is cut along its longest axis
    import cv2

    zz = np.zeros((40, 200), np.uint8)
    pts = np.array([[5 + 20 * i, 5 if i % 2 == 0 else 34] for i in range(10)], np.int32)  # (x, y)
    cv2.polylines(zz, [pts], False, 1, 2)
    st2 = holdout.find_strokes(zz, 1, zz.shape)
    assert st2.part.tolist() == [0, 1, 2]
    c2 = [np.nonzero(st2.ids == i + 1)[1] for i in range(3)]
    assert c2[0].max() <= c2[1].min() and c2[1].max() <= c2[2].min()


def test_long_strokes_draw_one_connected_stroke_per_class_inside_it():
    from scipy import ndimage as ndi

    from label_tools.synthetic import long_strokes

    img, mask = make_scene(150, 220)
    s = long_strokes(mask, fraction=0.02, seed=4)
    for k in range(3):
        on = s == k + 1
        assert on.any() and (mask[on] == k).all()
        assert ndi.label(on, structure=np.ones((3, 3)))[1] == 1
    assert 0.01 <= (s > 0).mean() <= 0.03
    assert np.array_equal(s, long_strokes(mask, fraction=0.02, seed=4))
