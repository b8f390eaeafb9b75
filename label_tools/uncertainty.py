"""Where the model is unsure: the uncertainty map, probabilities as bytes, and their scores.

The probabilities are first calibrated per image (:mod:`label_tools.calibrate`). The uncertainty
of a pixel is ``(1 - max_k p'_k) * K / (K - 1)``: 0 when one class has all the probability, 1 when
all classes are equally likely. The uncertainty *map* (:func:`uncertainty_map`) averages the
pixel's doubt about its label, judged at the image's own class shares rather than the scribbles'
(:class:`ClassShares`), with its neighbourhood's uncertainty (a Gaussian half the labels' region
width wide on the model grid, :func:`spread_sigma`): errors come in patches, and a pixel among
doubtful neighbours is more likely wrong. Neither changes the probabilities or labels. The held-out
strokes also serve inspection (:mod:`label_tools.inspect`): a stroke that the held-out forests
mostly put in another class was likely drawn with the wrong class.

:func:`predict_calibrated` runs a model, its calibration and the map in one pass; :func:`auroc`
and :func:`ece` score a map and probabilities against ground truth (``benchmarks/uncertainty.py``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .calibrate import (Calibration, Strokes, calibrate_result, find_strokes, heldout_from_folds,
                        heldout_predictions, upsampling_correction)

NODATA = 255
UNCERTAIN_LEVEL = 0.5  # the report's "uncertain pixel": uncertainty map above this (uncertainty_map)


# ----------------------------------------------------------------------------- maps
def uncertainty(probs) -> np.ndarray:
    """Uncertainty of each pixel: ``(1 - max_k p_k) * K / (K - 1)`` in [0, 1].

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)

    Returns
    -------
    ndarray of float32, shape (h, w)
    """
    k = probs.shape[0]
    return np.clip((1.0 - probs.max(axis=0)) * (k / max(k - 1, 1)), 0.0, 1.0).astype(np.float32)


def spread_sigma(settings, grid_scale: float, *, region_width: float | None = None) -> float:
    """Width (Gaussian sigma, model-grid pixels) of the neighbourhood term of :func:`uncertainty_map`.

    Half the labels' region width (:func:`label_width`, the mean distance from a pixel to the
    nearest class edge on the model grid), at least one grid pixel: errors come as wrong regions
    and misplaced edges, patches about as wide as the regions themselves, so the doubt of a pixel
    is spread over that reach (wide over a beach or a sky, a pixel or two between EM membranes).
    Without a width (``region_width`` None or infinite: a single class), the CRF's smoothness
    kernel (``settings.crf.gauss_sxy`` full-resolution pixels) on the grid, at least one grid
    pixel. Follows the image, not the data set.
    """
    if region_width is not None and math.isfinite(region_width):
        return max(1.0, float(region_width) / SPREAD_WIDTHS)
    return max(1.0, float(settings.crf.gauss_sxy) * float(grid_scale))


SPREAD_WIDTHS = 2.0  # the neighbourhood's sigma = region width / this (spread_sigma)


def label_width(grid, *, max_pixels: int = 500_000) -> float:
    """Region width of the labels on the model grid (:func:`label_tools.pipeline.region_width`, the
    mean distance from a pixel to the nearest class edge), measured on a regular subsample of at
    most ``max_pixels`` (every s-th row and column, width x s) so it costs a few milliseconds on
    a large grid.

    Parameters
    ----------
    grid : ndarray of uint8, shape (h, w), or of float32, shape (K, h, w)
        Labels, or probabilities whose argmax are the labels.

    Returns
    -------
    float, grid pixels; ``inf`` for a single class.
    """
    from .pipeline import region_width
    from .upsample import argmax_classes

    h, w = grid.shape[-2:]
    step = max(1, int(math.ceil(math.sqrt(h * w / max_pixels))))
    sub = np.ascontiguousarray(grid[..., ::step, ::step])
    if sub.ndim == 3:
        sub = argmax_classes(sub)
    return region_width(sub) * step


def neighbourhood(calibration, grid_probs, sigma: float, *, block: int = 512) -> np.ndarray:
    """Uncertainty of the calibrated grid probabilities, blurred by a Gaussian of ``sigma`` grid pixels.

    Parameters
    ----------
    calibration : Calibration
    grid_probs : ndarray of float32, shape (K, h, w)
        The prediction's probabilities on the model grid (uncalibrated).
    sigma : float
        In grid pixels (:func:`spread_sigma`).
    block : int
        Rows calibrated at a time (memory stays K x block x w floats).

    Returns
    -------
    ndarray of float32, shape (h, w), in [0, 1].
    """
    k, h, w = grid_probs.shape
    u = np.empty((h, w), np.float32)
    for r0 in range(0, h, block):
        u[r0:r0 + block] = uncertainty(calibration.apply(grid_probs[:, r0:r0 + block]))
    return _blur(u, float(sigma))


def _blur(u, sigma: float, *, max_sigma: float = 4.0) -> np.ndarray:
    """Gaussian blur of ``sigma`` px (reflected at the borders); a wide one runs on the map shrunk so
    its sigma is at most ``max_sigma`` (area average, then bilinear back: the cost stays a few ms on
    a 4 MP grid).

    Along an axis no longer than ``sigma`` the reflected Gaussian is that axis' mean (its first
    cosine, of period twice the axis, is damped by ``exp(-pi**2 / 2)``, under 0.01), and the mean is
    what is taken: on a strip (a 300 x 30,000 panorama, a 2-pixel-high scan) a kernel of the
    long axis' width run along the short one would take minutes, or more memory than there is.
    """
    import cv2

    h, w = u.shape
    u = np.asarray(u, np.float32)
    sy = sigma if sigma < h else None
    sx = sigma if sigma < w else None
    if sy is None:
        u = np.broadcast_to(u.mean(axis=0, keepdims=True), (h, w))
    if sx is None:
        u = np.broadcast_to(u.mean(axis=1, keepdims=True), (h, w))
    if sy is None and sx is None:
        return np.ascontiguousarray(u)
    fy = max(1, int(sy // max_sigma)) if sy is not None else 1
    fx = max(1, int(sx // max_sigma)) if sx is not None else 1
    fy, fx = (fy if fy >= 2 else 1), (fx if fx >= 2 else 1)

    def ksize(s):  # OpenCV's own choice for float images when given sigma alone
        return 1 if s is None else int(round(s * 4 * 2 + 1)) | 1

    if fy == 1 and fx == 1:
        return cv2.GaussianBlur(np.ascontiguousarray(u), (ksize(sx), ksize(sy)), sigmaX=sx or 0, sigmaY=sy or 0,
                                borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(np.ascontiguousarray(u), (max(1, w // fx), max(1, h // fy)), interpolation=cv2.INTER_AREA)
    sxs, sys_ = (sx / fx if sx is not None else None), (sy / fy if sy is not None else None)
    small = cv2.GaussianBlur(small, (ksize(sxs), ksize(sys_)), sigmaX=sxs or 0, sigmaY=sys_ or 0,
                             borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# How far the map reweights toward the image's class shares: 1 = Saerens' full prior shift, 0 = none.
# The image's shares are EM estimates from the forest's own probabilities, so they carry its errors:
# where the forest gives a whole region to the wrong class, the estimate moves with it, and the full
# ratio then ranks that class's right pixels as doubtful. Measured on 9 sets (the 7 of ../shared/data
# with masks and two collages of photos from outside it; docs/uncertainty.md, "Images from outside
# the shared data"): 3/4 keeps the 7 sets at or above the plain forest's AUROC that 1 had and raises
# the mean (0.851 -> 0.854); 1/2 has the best mean (0.856) but drops ISBI below the forest.
# Leave-one-dataset-out, choosing by "most sets at or above the forest, then mean", picks 3/4 in 8 of
# 9 folds (the ISBI fold picks 1/2); held out, 3/4 and 1/2 score alike (mean 0.854, 6 of 9 sets).
SHARE_EXPONENT = 0.75


@dataclass(frozen=True)
class ClassShares:
    """The class shares the forest was fitted with and the image's own, for the uncertainty map.

    Scribbles are drawn about as much on every class, so the forest learns class shares that are
    not the image's (a membrane class half the training pixels, a fifth of the image). A pixel
    labelled with a class the image has less of than the forest was taught is more likely wrong
    than its probability says: the map judges each label by the probabilities reweighted to the
    image's shares (Saerens, Latinne & Decaestecker 2002, as :mod:`label_tools.refine`), the
    probabilities and labels themselves are not changed. The reweighting goes three quarters of the
    way, ``(image_k / training_k) ** SHARE_EXPONENT`` (:data:`SHARE_EXPONENT`): the image's shares
    are themselves an estimate from the forest, and taken whole they overshoot where it is wrong.

    Attributes
    ----------
    training : tuple of float
        Shares of the forest's training samples (:func:`label_tools.refine.training_prior`); 0 for
        classes it never saw.
    image : tuple of float
        The image's shares, by EM on the forest's grid probabilities (:func:`image_shares`).
    """

    training: tuple
    image: tuple

    @property
    def ratio(self) -> np.ndarray:
        """float32 (K,): ``(image_k / training_k) ** SHARE_EXPONENT`` (1 for classes the forest never saw)."""
        t, p = np.asarray(self.training, np.float64), np.asarray(self.image, np.float64)
        r = np.where(t > 0, p / np.maximum(t, 1e-12), 1.0)
        return (r ** SHARE_EXPONENT).astype(np.float32)

    def __str__(self):
        return ("class shares judged by the uncertainty map: training " + " ".join(f"{v:.3f}" for v in self.training)
                + ", image " + " ".join(f"{v:.3f}" for v in self.image))


def image_shares(forest_probs, train, *, max_pixels: int = 20000, tol: float = 1e-4, max_iter: int = 200):
    """The image's class shares by EM (Saerens et al. 2002): ``pi`` = mean over pixels of
    ``p(k|x) pi_k / t_k`` normalised, iterated from ``t``; as :func:`label_tools.refine.image_prior`
    but on a regular subsample of at most ``max_pixels`` grid pixels in float32 with a coarser
    tolerance (a ranking needs no more; a few milliseconds).

    Parameters
    ----------
    forest_probs : ndarray of float32, shape (K, h, w)
    train : ndarray of float64, shape (K,)
        Training shares (0 = class never seen, kept at 0).

    Returns
    -------
    ndarray of float64, shape (K,), summing to 1.
    """
    k, h, w = forest_probs.shape
    step = max(1, int(math.ceil(math.sqrt(h * w / float(max_pixels)))))
    seen = np.asarray(train) > 0
    if seen.sum() < 2:
        return np.asarray(train, np.float64).copy()
    p = np.ascontiguousarray(forest_probs[:, ::step, ::step]).reshape(k, -1)[seen].astype(np.float32)
    p /= np.maximum(p.sum(axis=0, keepdims=True), np.float32(1e-12))
    t = np.asarray(train, np.float64)[seen]
    pi = t.copy()
    for _ in range(max_iter):
        q = p * (pi / t).astype(np.float32)[:, None]
        q /= np.maximum(q.sum(axis=0, keepdims=True), np.float32(1e-12))
        new = np.maximum(q.mean(axis=1, dtype=np.float64), 1e-4)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    out = np.zeros(k, np.float64)
    out[seen] = pi
    return out


def class_shares(result, n_classes: int) -> "ClassShares | None":
    """:class:`ClassShares` of a prediction, or None when they are unknown or already applied.

    Parameters
    ----------
    result : label_tools.pipeline.Result
        ``classifier`` (its trees' root nodes give the training shares) and ``forest_probs``.
    n_classes : int

    Returns
    -------
    ClassShares or None: None for a classifier that is not a scikit-learn forest, or when the
    pipeline already corrected the forest's probabilities to the image's shares
    (``result.class_prior``, :mod:`label_tools.refine`).
    """
    from . import refine

    if getattr(result, "class_prior", None) is not None:
        return None
    train = refine.training_prior(getattr(result, "classifier", None), n_classes)
    forest = getattr(result, "forest_probs", None)
    if forest is None:
        forest = result.probs
    if train is None or forest is None:
        return None
    prior = image_shares(forest, train)
    return ClassShares(tuple(round(float(v), 4) for v in train), tuple(round(float(v), 4) for v in prior))


def label_doubt(probs, labels, ratio=None) -> np.ndarray:
    """Doubt about each pixel's label: ``(1 - p'(label)) * K / (K - 1)`` clipped to [0, 1], ``p'`` the
    probabilities reweighted per class by ``ratio`` and normalised (:class:`ClassShares`); without
    ``ratio`` this is :func:`uncertainty`.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
    labels : ndarray of uint8, shape (h, w)
        The argmax of ``probs`` (as every label tile of the pipeline, pre-label merges included);
        255 (no-data) pixels get the doubt of the top class (the map is 255 there anyway).
    ratio : ndarray of float32, shape (K,), optional

    Returns
    -------
    ndarray of float32, shape (h, w)
    """
    k = probs.shape[0]
    if ratio is None:
        return uncertainty(probs)
    ratio = np.asarray(ratio, np.float32)
    lut = np.ones(256, np.float32)
    lut[:k] = ratio
    q = probs.max(axis=0)  # the label's probability (labels are the argmax)
    q *= lut[labels]
    total = probs[0] * ratio[0]
    tmp = np.empty_like(total)
    for j in range(1, k):
        np.multiply(probs[j], ratio[j], out=tmp)
        total += tmp
    np.maximum(total, np.float32(1e-12), out=total)
    q /= total
    np.subtract(1.0, q, out=q)
    q *= np.float32(k / max(k - 1, 1))
    return np.clip(q, 0.0, 1.0, out=q)


def uncertainty_map(probs, near, *, labels=None, shares=None, regional=None) -> np.ndarray:
    """The uncertainty map: half the pixel's doubt about its label, half its neighbourhood's uncertainty;
    with ``regional``, that average and the square root of the regional doubt, half and half.

    The doubt is :func:`label_doubt` reweighted toward the image's class shares (``shares``; without
    them the pixel's own :func:`uncertainty`). Errors come in patches (a wrong region, a misplaced edge), so
    a pixel among doubtful neighbours is more likely wrong than its own probability says. A whole
    region labelled wrongly can still be confident pixel by pixel after the CRF; the regional doubt
    (:func:`label_tools.regions.regional_doubt`) is how often its label gives way when the forest's
    probabilities are perturbed region by region. It is near 0 almost everywhere, so its square root
    is taken: its small values then weigh against the other half (benchmarks/uncertainty.py, see
    docs/uncertainty.md "Regions that give way"). The probabilities themselves are not changed
    (their calibration is scored on their own).

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
        Calibrated probabilities of a window.
    near : ndarray of float32, shape (h, w)
        :func:`neighbourhood` interpolated to the same window (:func:`grid_window`).
    labels : ndarray of uint8, shape (h, w), optional
        The window's labels (needed with ``shares``; default the argmax).
    shares : ClassShares, optional
    regional : ndarray of float32, shape (h, w), optional
        :func:`label_tools.regions.regional_doubt` interpolated to the same window (:func:`grid_window`).

    Returns
    -------
    ndarray of float32, shape (h, w), in [0, 1].
    """
    if shares is None:
        u = uncertainty(probs)
    else:
        if labels is None:
            labels = probs.argmax(axis=0).astype(np.uint8)
        u = label_doubt(probs, labels, shares.ratio)
    u += near
    u *= np.float32(0.5)
    if regional is not None:
        u += np.sqrt(np.clip(regional, 0.0, 1.0))
        u *= np.float32(0.5)
    return u


def grid_window(grid_map, window, full_shape) -> np.ndarray:
    """A model-grid map bilinearly interpolated to one full-resolution window.

    Parameters
    ----------
    grid_map : ndarray of float32, shape (h, w)
    window : tuple (row0, row1, col0, col1)
    full_shape : tuple (H, W)

    Returns
    -------
    ndarray of float32, shape (row1 - row0, col1 - col0)
    """
    r0, r1, c0, c1 = window
    h, w = grid_map.shape
    H, W = full_shape
    if (h, w) == (H, W):
        return np.array(grid_map[r0:r1, c0:c1], np.float32)
    import cv2

    sr, sc = h / H, w / W
    # grid coordinate of full-res pixel centre x: (x + 0.5) * s - 0.5 (as upsample.upsample_window)
    m = np.array([[sc, 0, (c0 + 0.5) * sc - 0.5], [0, sr, (r0 + 0.5) * sr - 0.5]], np.float32)
    return cv2.warpAffine(np.ascontiguousarray(grid_map, np.float32), m, (c1 - c0, r1 - r0),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def probs_to_uint8(probs, labels) -> np.ndarray:
    """Probabilities as bytes (``round(p * 255)``) whose argmax is exactly ``labels``.

    Rounding can make two classes' bytes equal; wherever the labelled class's byte does not
    exceed every other class's, it is set one above the largest other byte, so the argmax is
    unique and is the label whatever the reader's tie rule. No-data pixels (label 255) are all 0.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
    labels : ndarray of uint8, shape (h, w)
        ``probs.argmax(axis=0)`` where there is data, 255 elsewhere.

    Returns
    -------
    ndarray of uint8, shape (K, h, w)
    """
    u = np.rint(np.clip(probs, 0, 1) * 255).astype(np.uint8)
    valid = labels != NODATA
    lab = np.where(valid, labels, 0).astype(np.intp)
    own = np.take_along_axis(u, lab[None], axis=0)[0]
    others = u.copy()
    np.put_along_axis(others, lab[None], 0, axis=0)
    top_other = others.max(axis=0)
    fix = valid & (own <= top_other)
    if fix.any():
        rr, cc = np.nonzero(fix)
        u[lab[rr, cc], rr, cc] = np.minimum(top_other[rr, cc].astype(np.int32) + 1, 255).astype(np.uint8)
    if (~valid).any():
        u[:, ~valid] = 0
    return u


def uncertainty_to_uint8(u, labels) -> np.ndarray:
    """uint8 uncertainty (0 = certain, 255 = most uncertain); no-data pixels 255.

    Parameters
    ----------
    u : ndarray of float32, shape (h, w), in [0, 1]
    labels : ndarray of uint8, shape (h, w)
    """
    out = np.rint(np.clip(u, 0, 1) * 255).astype(np.uint8)
    out[labels == NODATA] = 255
    return out


# ----------------------------------------------------------------------------- scores
def auroc(score, positive) -> float:
    """Area under the ROC curve of ``score`` ranking ``positive`` above the rest (ties count half).

    Parameters
    ----------
    score : ndarray of float, shape (N,)
    positive : ndarray of bool, shape (N,)

    Returns
    -------
    float in [0, 1]; NaN when one side is empty.
    """
    score = np.asarray(score, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(score)  # average ranks: ties count half
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ece(confidence, correct, *, n_bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width confidence bins of |accuracy - confidence| x share.

    Parameters
    ----------
    confidence : ndarray of float, shape (N,)
        Top-class probability of each pixel, in [0, 1].
    correct : ndarray of bool, shape (N,)
        Whether the top class is right.
    n_bins : int

    Returns
    -------
    float
    """
    confidence = np.asarray(confidence, np.float64).ravel()
    correct = np.asarray(correct, np.float64).ravel()
    if len(confidence) == 0:
        return float("nan")
    b = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    acc = np.bincount(b, weights=correct, minlength=n_bins)
    conf = np.bincount(b, weights=confidence, minlength=n_bins)
    return float(np.abs(acc - conf).sum() / len(confidence))


# ----------------------------------------------------------------------------- a calibrated prediction
class UncertainCounts:
    """Pixels per class, and those with uncertainty above ``level``, gathered tile by tile.

    Attributes
    ----------
    level : float
    total : ndarray of int64, shape (K,)
        Pixels labelled with each class.
    uncertain : ndarray of int64, shape (K,)
        Of those, pixels whose uncertainty exceeds ``level``.
    full_resolution : bool
        Counted on the full-resolution labels (else on the model grid).
    regional : bool
        The map counted holds the regional doubt (:func:`label_tools.regions.regional_doubt`).
    """

    def __init__(self, n_classes: int, level: float = UNCERTAIN_LEVEL):
        self.level = level
        self.total = np.zeros(n_classes, np.int64)
        self.uncertain = np.zeros(n_classes, np.int64)
        self.full_resolution = True
        self.regional = False
        self.shares = None  # ClassShares the map judged labels by (for the report), or None

    def add(self, probs, labels, umap=None):
        """Count one tile: ``probs`` float32 (K, h, w) calibrated, ``labels`` uint8 (h, w) (255 skipped),
        ``umap`` float32 (h, w) its uncertainty map (:func:`uncertainty_map`; default the pixels' own)."""
        k = len(self.total)
        u = (uncertainty(probs) if umap is None else umap) > self.level
        lab = labels.ravel()
        ok = lab < k
        self.total += np.bincount(lab[ok], minlength=k)[:k]
        self.uncertain += np.bincount(lab[ok & u.ravel()], minlength=k)[:k]

    @property
    def fraction(self) -> float:
        """Share of labelled pixels above the level."""
        return float(self.uncertain.sum() / max(self.total.sum(), 1))


@dataclass
class Calibrated:
    """What :func:`predict_calibrated` returns.

    Attributes
    ----------
    result : label_tools.pipeline.Result
        As :meth:`label_tools.model.Model.predict` gives it (``probs`` on the model grid uncalibrated).
    calibration : Calibration
    strokes : Strokes
        The scribbles' strokes with their held-out predictions (for :mod:`label_tools.inspect`).
    counts : UncertainCounts
    shares : ClassShares or None
        The class shares the uncertainty map judged labels by (:func:`class_shares`).
    """

    result: object
    calibration: Calibration
    strokes: Strokes
    counts: UncertainCounts
    shares: ClassShares | None = None


@dataclass
class WindowMaps:
    """What turns one full-resolution window's probabilities into calibrated ones and its uncertainty map:
    small and picklable, so a cluster's workers can do it (:func:`label_tools.blocks.windows_task`).

    Attributes
    ----------
    calibration : Calibration
    near : ndarray of float32, shape (h, w)
        :func:`neighbourhood` on the model grid.
    shares : ClassShares or None
    regional : ndarray of float32, shape (h', w'), or None
        :func:`label_tools.regions.regional_doubt` (the model grid or that grid shrunk).
    full_shape : tuple (H, W)
        The image's full-resolution size.
    """

    calibration: Calibration
    near: np.ndarray
    shares: ClassShares | None
    regional: np.ndarray | None
    full_shape: tuple

    def umap(self, window, probs, labels) -> np.ndarray:
        """The uncertainty map of one window: ``probs`` float32 (K, h, w) calibrated, ``labels`` uint8 (h, w)
        (:func:`uncertainty_map` with the grid terms interpolated to the window)."""
        return uncertainty_map(probs, grid_window(self.near, window, self.full_shape), labels=labels,
                               shares=self.shares, regional=None if self.regional is None else
                               grid_window(self.regional, window, self.full_shape))


def calibrate_for_windows(model, src, scribbles, result, *, settings=None, seed: int = 0):
    """The calibration and the uncertainty map's grid terms of a prediction made elsewhere (the grid stage of a
    cluster), for windows computed anywhere; as :func:`predict_calibrated` makes them.

    Parameters
    ----------
    model, src, scribbles, settings, seed
        As for :func:`predict_calibrated`.
    result : label_tools.pipeline.Result
        ``model``'s grid-stage prediction of ``src`` (``probs``, ``crf_probs``, ``forest_probs``, ``crf_view``).

    Returns
    -------
    (Calibrated, WindowMaps)
        The counts of the :class:`Calibrated` are empty, full-resolution: the windows add theirs.
    """
    k = model.n_classes
    strokes = _strokes_of(model, src, scribbles, settings, seed)
    cal = _calibration(model, strokes, result, settings, seed, src)
    maps = _window_maps(model, cal, result, settings, seed, src.shape, regional=True)
    counts = UncertainCounts(k)
    counts.shares, counts.regional = maps.shares, maps.regional is not None
    return Calibrated(result, cal, strokes, counts, maps.shares), maps


def _window_maps(model, cal, r, settings, seed, full_shape, *, regional: bool) -> WindowMaps:
    t0 = time.perf_counter()
    maps = WindowMaps(cal, _near(model, cal, r, settings), class_shares(r, model.n_classes),
                      _regional(r, seed) if regional else None, tuple(full_shape))
    r.timings["calibrate"] = r.timings.get("calibrate", 0.0) + time.perf_counter() - t0
    return maps


def predict_calibrated(model, src, scribbles=None, *, settings=None, on_probs=None, progress=None,
                       seed: int = 0, prelabels=None, on_uncertainty=None, regional=None) -> Calibrated:
    """Predict with ``model``, calibrate, stream calibrated full-resolution probabilities.

    Parameters
    ----------
    model : label_tools.model.Model
        Fitted on ``src`` and ``scribbles`` (its cached features are reused), or applied as it is.
    src : label_tools.io.ImageSource
    scribbles : ndarray of uint8, shape (H, W), optional
        The scribbles ``model`` was just fitted on; None (a model applied to a new image): the
        calibration then has only the whole-image term.
    settings : label_tools.pipeline.Settings, optional
        Passed to :meth:`label_tools.model.Model.predict`.
    on_probs : callable(window, probs, labels), optional
        Receives the *calibrated* full-resolution probabilities tile by tile (float32 (K, h, w);
        ``labels`` = their argmax, 255 = no-data); the uncertainty counts are then full-resolution,
        else they are made on the model grid.
    progress : callable(stage, done, total), optional
    prelabels : ndarray of uint8, shape (H, W), optional
        Pre-labels being corrected (``--init``; 0-based, 255 = unknown): kept wherever the model
        does not replace them (:func:`label_tools.prelabels.correction_zone`); the labels and the
        streamed probabilities are those of the merge.
    on_uncertainty : callable(window, umap, labels), optional
        With ``on_probs``: receives the uncertainty map of the same tile right after it
        (:func:`uncertainty_map`, float32 (h, w) in [0, 1]); the uncertainty counts are made on it.
    regional : bool, optional
        Add the regional doubt to the map (:func:`label_tools.regions.regional_doubt`: eight CRF runs,
        1-3 s); default: when the map is streamed (``on_uncertainty`` given), as ``--save-probs``
        writes it. Without it the map is the pixel's and its neighbourhood's doubt alone.

    Returns
    -------
    Calibrated
    """
    from . import upsample

    k = model.n_classes
    strokes = _strokes_of(model, src, scribbles, settings, seed)
    pending = _heldout_in_background(model, strokes, settings, seed)
    try:
        r = model.predict(src, progress=progress, settings=settings, upsample=False)
    finally:
        if pending is not None:
            pending.join()
    if pending is not None and pending.error is not None:
        raise pending.error
    cal = _calibration(model, strokes, r, settings, seed, src)
    maps = _window_maps(model, cal, r, settings, seed, src.shape,
                        regional=on_uncertainty is not None if regional is None else regional)
    near, shares, regional = maps.near, maps.shares, maps.regional
    counts = UncertainCounts(k)
    counts.shares = shares
    counts.regional = regional is not None
    merge = None
    t0 = time.perf_counter()
    if prelabels is not None:
        labels = upsample.upsample_labels(src, r.probs, progress=progress, radius=r.upsample_radius,
                                          fine=r.upsample_fine)
        merge = _prelabel_merge(labels, prelabels, scribbles, r.probs.shape[1:])
        r.chosen = {**(r.chosen or {}), "prelabels": {"kept": round(float((~merge[0]).mean()), 4),
                                                      "trust": round(merge[1], 4)}}

    def tile(window, probs, labels):
        pc = cal.apply(probs)
        if merge is not None:
            r0, r1, c0, c1 = window
            from .prelabels import keep_prelabels

            pc, labels = keep_prelabels(np.array(pc), labels.copy(), prelabels[r0:r1, c0:c1],
                                        merge[0][r0:r1, c0:c1], trust=merge[1])
        umap = maps.umap(window, pc, labels)
        counts.add(pc, labels, umap)
        on_probs(window, pc, labels)
        if on_uncertainty is not None:
            on_uncertainty(window, umap, labels)

    if merge is None or on_probs is not None:
        r.labels = upsample.upsample_labels(src, r.probs, progress=progress, on_tile=tile if on_probs else None,
                                            radius=r.upsample_radius, fine=r.upsample_fine)
    else:
        r.labels = labels
    if merge is not None:
        _merge_labels(r.labels, prelabels, merge[0])
    r.timings["upsample"] = time.perf_counter() - t0
    if on_probs is None:
        _grid_counts(counts, cal, r, near, shares, regional)
    return Calibrated(r, cal, strokes, counts, shares)


def _prelabel_merge(labels, prelabels, scribbles, grid_shape):
    """(correction zone (H, W) bool, trust in the kept pre-labels) for :func:`predict_calibrated`."""
    from .prelabels import UNKNOWN, correction_zone, stroke_corrections, zone_radius

    zone = correction_zone(labels, prelabels, scribbles, radius=zone_radius(labels.shape, grid_shape),
                           corrections=stroke_corrections(prelabels, scribbles))
    kept = ~zone & (labels != UNKNOWN) & (prelabels != UNKNOWN)
    # the model disagrees with the kept pre-labels only in thin bands along their edges: the share
    # of such pixels says how far the pre-labels are to be trusted pixel by pixel
    band = float(((labels != prelabels) & kept).sum() / max(int(kept.sum()), 1))
    return zone, float(np.clip(1.0 - band, 0.6, 0.99))


def _merge_labels(labels, prelabels, zone):
    from .prelabels import UNKNOWN

    keep = ~zone & (labels != UNKNOWN) & (prelabels != UNKNOWN)
    labels[keep] = prelabels[keep]


def calibrate_existing(model, src, scribbles, result, *, settings=None, seed: int = 0, prelabels=None) -> Calibrated:
    """What :func:`predict_calibrated` gives without ``on_probs``, for a ``result`` made elsewhere
    (e.g. on a cluster): the calibration and the uncertainty counts on the model grid.

    Parameters
    ----------
    model, src, scribbles, settings
        As for :func:`predict_calibrated`.
    result : label_tools.pipeline.Result
        ``model``'s prediction of ``src`` (``probs``, ``crf_probs``, ``forest_probs`` are used).
    prelabels : ndarray of uint8, shape (H, W), optional
        As for :func:`predict_calibrated`: ``result.labels`` becomes the merge (in place).

    Returns
    -------
    Calibrated
    """
    strokes = _strokes_of(model, src, scribbles, settings, seed)
    cal = _calibration(model, strokes, result, settings, seed, src)
    if prelabels is not None and result.labels is not None:
        zone, _ = _prelabel_merge(result.labels, prelabels, scribbles, result.probs.shape[1:])
        _merge_labels(result.labels, prelabels, zone)
    counts = UncertainCounts(model.n_classes)
    counts.shares = shares = class_shares(result, model.n_classes)
    _grid_counts(counts, cal, result, _near(model, cal, result, settings), shares)
    return Calibrated(result, cal, strokes, counts, shares)


def _strokes_of(model, src, scribbles, settings, seed):
    used = model.effective_settings() if settings is None else settings
    if scribbles is not None:
        strokes = find_strokes(src, scribbles, n_classes=model.n_classes, settings=used, cache=model._cache, seed=seed)
        # the fit's own fold forests predict the held-out samples when it has them (benchmarks/
        # uncertainty.py, 14 images: AUROC and ECE the same on 10, ISBI +0.004 AUROC and -0.010 ECE,
        # grabcut 106024 ECE 0.068 -> 0.042, S2 refscene2 ECE 0.022 -> 0.030), else forests are fitted
        heldout_from_folds(strokes, getattr(model, "strokes", None), model.n_classes)
        return strokes
    z = np.zeros(0, np.int64)
    return Strokes(np.zeros((0, 0), np.float32), z, z, z, z, z, z, [], z, (0, 0))


class _Background:
    """``fn()`` on a daemon thread; :meth:`join` waits, ``error`` holds what it raised."""

    def __init__(self, fn):
        import threading

        self.error = None

        def run():
            try:
                fn()
            except BaseException as e:  # re-raised by the caller after join
                self.error = e

        self._thread = threading.Thread(target=run, name="heldout-strokes", daemon=True)
        self._thread.start()

    def join(self):
        self._thread.join()


def _heldout_in_background(model, strokes, settings, seed):
    """Start the held-out stroke forests (:func:`heldout_predictions`) on a thread, or None.

    They depend only on the strokes, not on the prediction, so they run while
    :meth:`~label_tools.model.Model.predict` computes features and the CRF (steps that leave a
    core idle); the forests are seeded, so the calibration is the same as computed afterwards.
    Started only when the calibration will use them: strokes to hold out and a CRF weight > 0.
    """
    from . import pipeline

    if not len(strokes.y) or strokes.heldout is not None:
        return None
    used = model.effective_settings() if settings is None else settings
    chosen = model.chosen if isinstance(model.chosen, dict) else {}
    weight = chosen.get("crf_weight", used.crf_weight)
    if weight is None:
        weight = pipeline.DEFAULT_CRF_WEIGHT
    if weight <= 0 or used.crf.n_iter <= 0:
        return None
    return _Background(lambda: heldout_predictions(strokes, model.n_classes, seed=seed))


def _calibration(model, strokes, r, settings, seed, src=None):
    from . import pipeline

    used = model.effective_settings() if settings is None else settings
    t0 = time.perf_counter()
    weight = r.chosen.get("crf_weight", used.crf_weight) if isinstance(r.chosen, dict) else used.crf_weight
    if weight is None:
        weight = pipeline.DEFAULT_CRF_WEIGHT
    cal = calibrate_result(strokes, r, n_classes=model.n_classes, crf_weight=weight, seed=seed)
    if src is not None:
        cal = upsampling_correction(cal, src, r, seed=seed)
    r.timings["calibrate"] = time.perf_counter() - t0
    return cal


def _near(model, cal, r, settings):
    """The neighbourhood term of the uncertainty map on the model grid (:func:`neighbourhood`), as
    wide as half the region width of the grid labels (:func:`spread_sigma`)."""
    used = model.effective_settings() if settings is None else settings
    width = label_width(r.probs)
    return neighbourhood(cal, r.probs, spread_sigma(used, r.scale, region_width=width))


def _regional(r, seed):
    """:func:`label_tools.regions.regional_doubt` of a prediction (on its CRF grid), or None without a CRF."""
    if getattr(r, "crf_view", None) is None or r.forest_probs is None:
        return None
    from .regions import regional_doubt
    from .upsample import argmax_classes

    t0 = time.perf_counter()
    out = regional_doubt(r.crf_view, r.forest_probs, argmax_classes(r.probs), seed=seed)
    r.timings["regions"] = time.perf_counter() - t0
    return out


def _grid_counts(counts, cal, r, near, shares=None, regional=None):
    counts.full_resolution = False
    grid = cal.apply(r.probs)
    labels = grid.argmax(axis=0).astype(np.uint8)
    h, w = labels.shape
    counts.add(grid, labels, uncertainty_map(grid, near, labels=labels, shares=shares,
                                             regional=None if regional is None else
                                             grid_window(regional, (0, h, 0, w), (h, w))))
