"""The CRF's appearance kernel follows the width of the forest's regions (pipeline.crf_reach)."""
import glob
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from conftest import shared
from label_tools import crf as crf_mod
from label_tools import pipeline
from label_tools.crf import CRFParams
from label_tools.pipeline import Settings, crf_reach, region_width, segment
from label_tools.synthetic import synthetic_scribbles


def stripes(h, w, width):
    """Labels 0/1 in vertical stripes ``width`` pixels wide."""
    return ((np.arange(w) // width) % 2).astype(np.uint8)[None, :].repeat(h, axis=0)


def edt_reference(lab):
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:] |= lab[1:] != lab[:-1]
    return float(ndi.distance_transform_edt(~edge).mean())


def test_region_width_is_the_mean_distance_to_a_class_edge():
    lab = stripes(40, 64, 8)
    # edges at columns 8, 16, ..., 56: columns 0-7 lie 8..1 from the first (mean 4.5), the six periods
    # 8-55 at 0,1,2,3,4,3,2,1 (mean 2), columns 56-63 at 0..7 (mean 3.5)
    assert region_width(lab) == pytest.approx((8 * 4.5 + 48 * 2.0 + 8 * 3.5) / 64, abs=1e-4)
    rng = np.random.default_rng(0)
    blobs = (ndi.gaussian_filter(rng.random((70, 90)), 4) > 0.5).astype(np.uint8)
    assert region_width(blobs) == pytest.approx(edt_reference(blobs), abs=1e-3)
    assert region_width(np.zeros((10, 12), np.uint8)) == float("inf")


def test_crf_reach_narrows_only_for_narrow_regions():
    base = CRFParams()
    narrow = np.stack([stripes(60, 96, 4) == 0, stripes(60, 96, 4) == 1]).astype(np.float32)
    w = region_width(stripes(60, 96, 4))
    got = crf_reach(base, [narrow])
    assert got.bilateral_sxy == pytest.approx(pipeline.REACH_WIDTHS * w) and got.bilateral_sxy < 10
    assert (got.gauss_sxy, got.bilateral_srgb, got.bilateral_compat, got.n_iter) == \
        (base.gauss_sxy, base.bilateral_srgb, base.bilateral_compat, base.n_iter)
    wide = np.zeros((2, 300, 400), np.float32)
    wide[0, :, :200] = 1
    wide[1, :, 200:] = 1
    assert crf_reach(base, [wide]).bilateral_sxy == base.bilateral_sxy  # 4 x 50+ px is wider than 60
    # pixel-weighted over several arrays (tiles, folds)
    both = crf_reach(base, [narrow, wide]).bilateral_sxy
    expected = pipeline.REACH_WIDTHS * (w * narrow[0].size + region_width(wide.argmax(0).astype(np.uint8)) * wide[0].size) \
        / (narrow[0].size + wide[0].size)
    assert both == pytest.approx(min(60.0, expected))
    assert crf_reach(base, [narrow], widths=0) == base


def test_predict_and_holdout_run_the_crf_with_the_narrowed_kernel(monkeypatch):
    rng = np.random.default_rng(1)
    lab = stripes(120, 160, 6)
    img = np.where(lab[..., None] == 1, 170, 80) + rng.normal(0, 20, (120, 160, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    scr = np.zeros(lab.shape, np.uint8)
    scr[10:110:7, :] = lab[10:110:7, :] + 1  # rows of strokes across the stripes
    seen = []
    real = crf_mod.refine

    def spy(probs, image, *, params=CRFParams(), valid=None):
        seen.append(params.bilateral_sxy)
        return real(probs, image, params=params, valid=valid)

    class SpyRefiner(crf_mod.Refiner):  # the held-out folds build one CRF per tile for all its folds
        def __init__(self, image, n_classes, *, params=CRFParams()):
            seen.append(params.bilateral_sxy)
            super().__init__(image, n_classes, params=params)

    monkeypatch.setattr(crf_mod, "refine", spy)
    monkeypatch.setattr(crf_mod, "Refiner", SpyRefiner)
    r = segment(img, scr, n_classes=2, settings=Settings(sigmas=(1, 2, 4)))
    assert "crf_weight" in r.chosen and len(seen) >= 2  # held-out folds and the final CRF
    assert max(seen) < 0.25 * CRFParams().bilateral_sxy  # every CRF ran far narrower than 60 px
    assert (r.labels == lab).mean() > 0.95


@pytest.mark.slow
def test_isbi_membrane_slice_gains_from_the_narrow_kernel(monkeypatch):
    img_path = shared("isbi2012_em_membranes", "images", "10.png")
    mask_path = glob.glob(os.path.join(os.path.dirname(os.path.dirname(img_path)), "masks", "10.*"))[0]
    img = np.array(Image.open(img_path))
    mask = (np.array(Image.open(mask_path)) > 0).astype(int)
    scr = synthetic_scribbles(mask, fraction=0.01, seed=0)

    def miou(labels):
        return np.mean([((labels == c) & (mask == c)).sum() / ((labels == c) | (mask == c)).sum() for c in (0, 1)])

    now = miou(segment(img, scr, n_classes=2).labels)
    monkeypatch.setattr(pipeline, "REACH_WIDTHS", 0.0)
    before = miou(segment(img, scr, n_classes=2).labels)
    # measured 0.744 with the kernel following the regions, 0.693 with the fixed 60 px kernel
    assert now > 0.73 and before < 0.70


def test_region_width_same_on_any_thread_count():
    """OpenCV's exact distance transform differs in the last bit of some distances with its thread
    count; the width (the CRF's reach, the uncertainty map's neighbourhood) must not, or a Dask worker
    (1 thread) and the command line (every core) write different maps of the same run. Regions a few
    tens of pixels wide, as on a coastal photo's model grid (the seed is one where the float32 mean of
    OpenCV's distances differed between 1 and 2 threads)."""
    import cv2

    from label_tools import threads

    rng = np.random.default_rng(17)
    small = rng.integers(0, 3, (6, 9)).astype(np.float32)
    field = cv2.resize(small, (774, 517), interpolation=cv2.INTER_CUBIC)
    field += 3 * cv2.GaussianBlur(rng.random((517, 774)).astype(np.float32), (0, 0), 10)
    labels = np.digitize(field, np.quantile(field, [0.3, 0.7])).astype(np.uint8)
    before = cv2.getNumThreads()
    try:
        widths = []
        for n in (1, 2, 3):
            threads.set_budget(n)
            widths.append(pipeline.region_width(labels))
    finally:
        threads.set_budget(None)
        cv2.setNumThreads(before)
    assert widths[0] == widths[1] == widths[2], widths
    # exact: the mean Euclidean distance to the nearest class edge
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:] |= labels[1:] != labels[:-1]
    assert widths[0] == pytest.approx(ndi.distance_transform_edt(~edge).mean(), rel=1e-12)
