"""How sure the model is: probabilities calibrated per image on strokes held out from its forest.

A forest fitted on a stroke always agrees with it, and the CRF blend makes the final probabilities
sharper still, so neither says how often the model is right. Here every stroke (a connected piece
of one class's scribbles on the model grid) is predicted by forests fitted *without* it (strokes
split into folds, per class, so every class keeps strokes to learn from; the fit's own fold forests
serve when it has them, :func:`heldout_from_folds`). A temperature ``T`` and a floor ``a``
(mixture with the uniform distribution), ``p' = (1 - a) softmax(log p / T) + a / K``, are chosen
per image by the negative log-likelihood of the held-out stroke pixels plus the cross-entropy
against the forest's own (pre-CRF) probabilities over the whole image (:func:`fit_calibration`).
Both keep each pixel's argmax, so the label image is unchanged. Where the labels are upsampled
from a coarser grid, the temperature is scaled so full-resolution pixels keep the grid's mean
confidence (:func:`upsampling_correction`).

Compute only, no I/O; :mod:`label_tools.uncertainty` applies the calibration and draws the map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NODATA = 255


# ----------------------------------------------------------------------------- held-out strokes
@dataclass
class Strokes:
    """Scribbled pixels grouped by stroke, with their features on the model grid.

    Attributes
    ----------
    X : ndarray of float32, shape (N, F)
    y : ndarray of int64, shape (N,)
        0-based class of each sample.
    stroke : ndarray of int64, shape (N,)
        Index into ``classes``/``bboxes``/``sizes`` of each sample's stroke.
    piece : ndarray of int64, shape (N,)
        Held-out unit of each sample: its stroke cut by a 4 x 4 grid of blocks over the image, so a
        class drawn as one long stroke still has parts to hold out.
    rows, cols : ndarray of int64, shape (N,)
        Model-grid position of each sample.
    classes : ndarray of int64, shape (S,)
        0-based class of each stroke.
    bboxes : list of tuple (x0, y0, x1, y1)
        Each stroke's bounding box in full-resolution pixels (columns, rows; inclusive).
    sizes : ndarray of int64, shape (S,)
        Full-resolution pixels of each stroke (within its bounding box).
    grid_shape : tuple (h, w)
    heldout : ndarray of float32, shape (N, K), or None
        Forest probabilities of each sample from forests fitted without its stroke (rows of
        samples never held out are NaN).
    """

    X: np.ndarray
    y: np.ndarray
    stroke: np.ndarray
    piece: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    bboxes: list
    sizes: np.ndarray
    grid_shape: tuple
    heldout: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def find_strokes(src, scribbles, *, n_classes: int, settings, max_per_stroke: int = 400,
                 max_per_class: int = 6000, seed: int = 0, min_pixels: int = 4, cache=None) -> Strokes:
    """Sample the scribbled pixels stroke by stroke and compute their features.

    Parameters
    ----------
    src : label_tools.io.ImageSource
    scribbles : ndarray of uint8, shape (H, W)
        0 = unlabelled, k = class k-1.
    n_classes : int
    settings : label_tools.pipeline.Settings
        The settings the model was fitted with (same grid and features).
    max_per_stroke, max_per_class : int
        Bounds on the samples drawn.
    min_pixels : int
        Strokes with fewer grid pixels are ignored.
    cache : dict, optional
        ``Trained.cache`` of :func:`label_tools.pipeline.train` on this image (features reused, not consumed).

    Returns
    -------
    Strokes
    """
    from scipy import ndimage as ndi

    from . import pipeline
    from .scribbles import downscale
    from .tiling import grow

    scale, shape, grid, side, grid_tiles = pipeline._layout(src, settings)
    feats = {}
    if cache is not None and cache.get("key") == (id(src), shape, side):
        feats, grid = cache["tiles"], cache["grid"]
    small = pipeline._on_valid(downscale(scribbles, shape, n_classes), grid, grid_tiles)  # strokes on data only
    H, W = scribbles.shape
    sr, sc = H / shape[0], W / shape[1]
    rng = np.random.default_rng(seed)
    picks, classes, bboxes, sizes = [], [], [], []
    eight = np.ones((3, 3), bool)
    for k in range(n_classes):
        m = small == k + 1
        if not m.any():
            continue
        lab, n = ndi.label(m, structure=eight)
        objs = ndi.find_objects(lab)
        budget = max(min(max_per_stroke, max_per_class // max(n, 1)), 20)
        for i, sl in enumerate(objs):
            rr, cc = np.nonzero(lab[sl] == i + 1)
            if len(rr) < min_pixels:
                continue
            rr, cc = rr + sl[0].start, cc + sl[1].start
            if len(rr) > budget:
                keep = rng.choice(len(rr), budget, replace=False)
                rr, cc = rr[keep], cc[keep]
            # the stroke's box in full-resolution pixels: this class's scribbles inside the grid box
            R0, R1 = int(sl[0].start * sr), min(int(math.ceil(sl[0].stop * sr)), H)
            C0, C1 = int(sl[1].start * sc), min(int(math.ceil(sl[1].stop * sc)), W)
            fr, fc = np.nonzero(scribbles[R0:R1, C0:C1] == k + 1)
            if len(fr) == 0:
                continue
            bboxes.append((C0 + int(fc.min()), R0 + int(fr.min()), C0 + int(fc.max()), R0 + int(fr.max())))
            sizes.append(len(fr))
            classes.append(k)
            picks.append((rr, cc, len(classes) - 1))
    if not picks:
        z = np.zeros(0, np.int64)
        return Strokes(np.zeros((0, 0), np.float32), z, z, z, z, z, z, [], z, shape)
    rows = np.concatenate([p[0] for p in picks]).astype(np.int64)
    cols = np.concatenate([p[1] for p in picks]).astype(np.int64)
    stroke = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in picks])
    X = None
    for i, t in enumerate(grid_tiles):
        r0, r1, c0, c1 = t.inner
        inside = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
        if not inside.any():
            continue
        f = feats.get(i)  # cached plane by plane (F, h, w), with a margin around the tile
        if f is not None and f.shape[1:] != (r1 - r0, c1 - c0):
            outer = grow(t.inner, getattr(pipeline, "SPARSE_STEP", 0), shape)
            f = f[:, r0 - outer[0]: r1 - outer[0], c0 - outer[2]: c1 - outer[2]]
        if f is None or f.shape[1:] != (r1 - r0, c1 - c0):
            f = grid.features(t.inner, planes=True)
        if X is None:
            X = np.empty((len(rows), f.shape[0]), np.float32)
        X[inside] = f[:, rows[inside] - r0, cols[inside] - c0].T
    classes = np.asarray(classes, np.int64)
    block = (rows * 4 // shape[0]) * 4 + cols * 4 // shape[1]
    _, piece = np.unique(stroke * 16 + block, return_inverse=True)
    return Strokes(X, classes[stroke], stroke, piece.astype(np.int64).ravel(), rows, cols, classes, bboxes,
                   np.asarray(sizes, np.int64), shape)


def _folds(strokes: Strokes, n_folds: int, seed: int):
    """Fold of each piece: per class, pieces dealt round-robin in random order; -1 = never held out.

    A class with a single piece keeps it in training (held out, the class would vanish).
    """
    rng = np.random.default_rng(seed)
    n_pieces = int(strokes.piece.max()) + 1 if len(strokes.piece) else 0
    piece_class = np.zeros(n_pieces, np.int64)
    piece_class[strokes.piece] = strokes.y
    fold = np.full(n_pieces, -1, np.int64)
    for k in np.unique(piece_class):
        idx = np.nonzero(piece_class == k)[0]
        if len(idx) < 2:
            continue
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = np.arange(len(idx)) % min(n_folds, len(idx))
    return fold


HELDOUT_SAMPLES = 1500  # bootstrap size of each held-out stroke forest's trees, in samples of the largest class


def heldout_predictions(strokes: Strokes, n_classes: int, *, n_folds: int = 4, classifier_factory=None,
                        seed: int = 0) -> Strokes:
    """Fill ``strokes.heldout``: each sample predicted by a forest fitted without its stroke.

    Parameters
    ----------
    strokes : Strokes
    n_classes : int
    n_folds : int
    classifier_factory : callable(y) -> unfitted estimator, optional
        Default: the project's forest (:func:`label_tools.unary.default_classifier`) with 12 trees,
        each on half the samples or ``HELDOUT_SAMPLES`` of the largest class if fewer, and the
        same class weights.

    Returns
    -------
    Strokes, the same object.
    """
    from . import unary

    # 12 trees, each on at most 1500 samples of the largest class: a third of the time of 24 trees on
    # half the samples (0.5 s instead of 1.4 s for the 12,000 stroke samples of a 4 MP H&E image), for the
    # same AUROC and ECE to +-0.001 on 12 of 14 benchmark images (the other two: ECE 0.011 -> 0.006,
    # 0.030 -> 0.022)
    def default_factory(y):
        cw = unary.class_weights(y)
        share = min(0.5, HELDOUT_SAMPLES / max(1, int(np.bincount(y).max())))
        return unary.default_classifier(n_estimators=12, max_samples=unary.bootstrap_size(share, y, class_weight=cw),
                                        class_weight=cw)

    factory = classifier_factory or default_factory
    P = np.full((len(strokes.y), n_classes), np.nan, np.float32)
    fold = _folds(strokes, n_folds, seed)
    sample_fold = fold[strokes.piece] if len(strokes.piece) else np.zeros(0, np.int64)
    for f in range(int(fold.max()) + 1 if len(fold) else 0):
        test = sample_fold == f
        train = ~test
        if not test.any() or len(np.unique(strokes.y[train])) < 2:
            continue
        clf = factory(strokes.y[train])
        clf.fit(strokes.X[train], strokes.y[train])
        p = clf.predict_proba(strokes.X[test])
        out = np.zeros((int(test.sum()), n_classes), np.float32)
        out[:, np.asarray(clf.classes_, int)] = p
        P[test] = out
    strokes.heldout = P
    strokes.info["folds"] = int(fold.max()) + 1 if len(fold) else 0
    return strokes


def heldout_from_folds(strokes: Strokes, folds, n_classes: int) -> bool:
    """Fill ``strokes.heldout`` from the fit's own held-out fold forests, if it has them.

    :func:`label_tools.pipeline.train` already fits, per fold, a forest without that fold's
    strokes (to choose the CRF weight; ``holdout.Strokes.forests``): each sample is predicted by
    the forest fitted without the stroke it lies on, instead of fitting forests again here (a 4 MP
    photo: 0.5-1 s of a core). Samples on strokes never held out (a class's only stroke) stay NaN.

    Parameters
    ----------
    strokes : Strokes
        From :func:`find_strokes` on the image and scribbles of that fit (same model grid).
    folds : label_tools.holdout.Strokes or None
        ``Model.strokes`` of the fit.
    n_classes : int

    Returns
    -------
    bool: False (nothing filled) when there are no fold forests for this grid.
    """
    forests = getattr(folds, "forests", None)
    if not forests or not len(strokes.y) or tuple(folds.ids.shape) != tuple(strokes.grid_shape):
        return False
    sid = folds.ids[strokes.rows, strokes.cols]
    fold = np.concatenate([[-1], np.asarray(folds.fold, np.int64)])[sid]
    P = np.full((len(strokes.y), n_classes), np.nan, np.float32)
    for f, clf in forests.items():
        m = fold == f
        if m.any():
            out = np.zeros((int(m.sum()), n_classes), np.float32)
            out[:, np.asarray(clf.classes_, int)] = clf.predict_proba(strokes.X[m])
            P[m] = out
    strokes.heldout = P
    strokes.info["folds"] = len(forests)
    return True


def blend_with_crf(p, strokes: Strokes, crf_probs, weight: float):
    """Held-out forest probabilities blended with the CRF's marginals as the pipeline blends them.

    Parameters
    ----------
    p : ndarray of float32, shape (N, K)
    crf_probs : ndarray of float32, shape (K, hc, wc), or None
    weight : float

    Returns
    -------
    ndarray of float32, shape (N, K)
    """
    if crf_probs is None or weight <= 0:
        return p
    k, hc, wc = crf_probs.shape
    h, w = strokes.grid_shape
    r = np.clip(((strokes.rows + 0.5) * hc / h).astype(np.int64), 0, hc - 1)
    c = np.clip(((strokes.cols + 0.5) * wc / w).astype(np.int64), 0, wc - 1)
    q = crf_probs[:, r, c].T
    logp = (1 - weight) * np.log(np.maximum(p, 1e-6)) + weight * np.log(np.maximum(q, 1e-6))
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """``p' = (1 - floor) * softmax(log p / temperature) + floor / K`` (keeps each pixel's argmax).

    Attributes
    ----------
    temperature : float
        > 1 softens over-confident probabilities.
    floor : float
        In [0, 1): share of the uniform distribution mixed in (bounds the confidence at 1 - floor (K-1)/K).
    n_samples : int
        Held-out pixels it was fitted on (0 = identity).
    upsampling : float
        Factor already in ``temperature`` that keeps the grid's mean confidence through the guided
        upsampling to full resolution (:func:`upsampling_correction`; 1 = none).
    """

    temperature: float = 1.0
    floor: float = 0.0
    n_samples: int = 0
    upsampling: float = 1.0

    def apply(self, probs, *, axis: int = 0) -> np.ndarray:
        """Calibrated probabilities.

        Parameters
        ----------
        probs : ndarray of float32, shape (K, ...) (``axis`` = the class axis)

        Returns
        -------
        ndarray of float32, same shape.
        """
        probs = np.asarray(probs, np.float32)
        k = probs.shape[axis]
        if self.temperature == 1.0 and self.floor == 0.0:
            return probs
        with np.errstate(divide="ignore"):
            logp = np.log(probs) / np.float32(self.temperature)
        logp -= logp.max(axis=axis, keepdims=True)
        out = np.exp(logp)
        out /= out.sum(axis=axis, keepdims=True)
        if self.floor:
            out *= np.float32(1 - self.floor)
            out += np.float32(self.floor / k)
        return out

    def __str__(self):
        if self.upsampling != 1.0:
            return (f"temperature {self.temperature:.3g} ({self.temperature / self.upsampling:.3g} on the model grid "
                    f"x {self.upsampling:.3g} for the upsampling), floor {self.floor:.3g}")
        return f"temperature {self.temperature:.3g}, floor {self.floor:.3g}"


def upsampling_correction(calibration, src, result, *, side: int = 192, max_pixels: int = 60000,
                          seed: int = 0) -> "Calibration":
    """The calibration with its temperature scaled so full-resolution pixels keep the grid's mean confidence.

    The calibration is fitted on the model grid, but it is applied to the full-resolution
    probabilities, which the guided upsampling softens where it interpolates between grid pixels
    (on the drosophila EM slice at grid 0.62, mean top probability 0.830 on the grid, 0.789 at full
    resolution, for labels 0.825 right). A temperature factor ``f`` is chosen so that the mean top
    probability of the calibrated full-resolution probabilities equals that of the calibrated grid
    probabilities over the same area (nine windows of ``side`` pixels on a 3 x 3 lattice, at most
    ``max_pixels`` sampled; bisection on ``log f`` in [1/4, 4]). No labels are involved; nothing
    changes when the model grid is the full resolution.

    Parameters
    ----------
    calibration : Calibration
        Fitted on the grid (:func:`calibrate_result`).
    src : label_tools.io.ImageSource
    result : label_tools.pipeline.Result
        ``probs`` (grid), ``upsample_radius``, ``upsample_fine`` (the upsampling as predicted).

    Returns
    -------
    Calibration (``upsampling`` = f, ``temperature`` multiplied by f)
    """
    from . import upsample

    H, W = src.shape
    k, h, w = result.probs.shape
    if (h, w) == (H, W):
        return calibration
    sh, sw = min(side, H), min(side, W)
    full, grid = [], []
    for fr in (1 / 6, 1 / 2, 5 / 6):
        for fc in (1 / 6, 1 / 2, 5 / 6):
            R0, C0 = int(round((H - sh) * fr)), int(round((W - sw) * fc))
            win = (R0, R0 + sh, C0, C0 + sw)
            lab, q = upsample.upsample_window(src, result.probs, win, radius=getattr(result, "upsample_radius", 2),
                                              fine=getattr(result, "upsample_fine", 0), with_probs=True)
            ok = lab != NODATA
            if not ok.any():
                continue
            full.append(q[:, ok])
            g0, c0 = int(R0 * h / H), int(C0 * w / W)
            g1, c1 = max(int(math.ceil((R0 + sh) * h / H)), g0 + 1), max(int(math.ceil((C0 + sw) * w / W)), c0 + 1)
            grid.append(result.probs[:, g0:g1, c0:c1].reshape(k, -1))
    if not full:
        return calibration
    F, G = np.concatenate(full, axis=1), np.concatenate(grid, axis=1)
    if F.shape[1] > max_pixels:
        F = F[:, np.random.default_rng(seed).choice(F.shape[1], max_pixels, replace=False)]
    target = float(calibration.apply(G).max(axis=0).mean(dtype=np.float64))
    t, a = calibration.temperature, calibration.floor
    with np.errstate(divide="ignore"):
        D = np.log(F)
    D -= D.max(axis=0, keepdims=True)  # <= 0; the top class at 0: tempered top = 1 / sum_k exp(D_k / T)

    def mean_top(log_f):
        top = 1.0 / np.exp(D / np.float32(t * math.exp(log_f))).sum(axis=0)
        return float(((1 - a) * top + a / k).mean(dtype=np.float64))

    lo, hi = math.log(0.25), math.log(4.0)  # mean_top falls as the factor grows
    if mean_top(lo) <= target:
        log_f = lo
    elif mean_top(hi) >= target:
        log_f = hi
    else:
        for _ in range(16):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if mean_top(mid) > target else (lo, mid)
        log_f = 0.5 * (lo + hi)
    f = round(math.exp(log_f), 4)
    if f == 1.0:
        return calibration
    return Calibration(t * f, a, calibration.n_samples, f)


TEMPERATURES = np.geomspace(0.5, 20.0, 37)
# weight of the whole-image term (the forest's own probabilities as target) beside the held-out strokes'
# term in fit_calibration: the forest is under-confident, the held-out strokes (region interiors) ask for
# too sharp probabilities; with both at 1, 13 of 16 runs that missed the forest's ECE were under-
# confident. 0.5: mean ECE over the 7 shared datasets (2 images x seeds 0-2) 0.039 -> 0.036; chosen
# with each dataset left out in turn (0.4-0.6 chosen), docs/uncertainty.md, "The forest's term weighted one half"
FOREST_TERM = 0.5
FLOORS = np.concatenate([[0.0], np.geomspace(0.005, 0.4, 16)])


def _tempered(logp, t):
    z = logp / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_calibration(p, y, *, weights=None, grid_probs=None, grid_target=None, max_pixels: int = 12000,
                    seed: int = 0) -> Calibration:
    """Temperature and floor for the final probabilities, chosen per image.

    The loss is the sum of two mean cross-entropies, the second weighted by :data:`FOREST_TERM`, each
    over the same (temperature, floor) grid:

    * held-out strokes: ``-log p'(y)`` of each held-out stroke pixel (what the model gets right on
      regions it did not learn from; blind to errors away from the strokes, e.g. at region edges);
    * the whole image: the forest's own probabilities (before the CRF sharpens them) as a soft
      target for the calibrated final probabilities, ``-sum_k p_forest,k log p'_k`` (sees every
      pixel's doubt, but the forest itself tends to be under-confident).

    Parameters
    ----------
    p : ndarray of float32, shape (N, K)
        Held-out final-style probabilities of stroke pixels (rows with NaN are ignored).
    y : ndarray of int, shape (N,)
        True class of each row.
    weights : ndarray of float, shape (N,), optional
        Per-row weights (default: each class weighs the same in total).
    grid_probs : ndarray of float32, shape (K, h, w), optional
        The final (blended) probabilities on the model grid.
    grid_target : ndarray of float32, shape (K, h, w), optional
        The forest's probabilities on the same grid.
    max_pixels : int
        Grid pixels sampled for the second term (a mean over 12,000 random pixels has a standard
        error far below the loss differences between neighbouring grid points; more only costs time).

    Returns
    -------
    Calibration (the identity when there is nothing to fit on)
    """
    p = np.asarray(p, np.float32)
    y = np.asarray(y, np.int64)
    ok = ~np.isnan(p).any(axis=1) if len(p) else np.zeros(0, bool)
    p, y = p[ok], y[ok]
    use_strokes = len(y) >= 20 and len(np.unique(y)) >= 2
    use_grid = grid_probs is not None and grid_target is not None
    if not use_strokes and not use_grid:
        return Calibration()
    k = p.shape[1] if use_strokes else grid_probs.shape[0]
    rng = np.random.default_rng(seed)
    if use_strokes:
        if weights is None:
            ks, n = np.unique(y, return_counts=True)
            wk = np.zeros(k)
            wk[ks] = 1.0 / n
            weights = wk[y]
        else:
            weights = np.asarray(weights, np.float64)[ok]
        weights = (weights / weights.sum()).astype(np.float32)
        logp = np.log(np.maximum(p, np.float32(1e-12)))
    if use_grid:
        f = grid_probs.reshape(k, -1).T
        t = grid_target.reshape(k, -1).T
        if len(f) > max_pixels:
            idx = rng.choice(len(f), max_pixels, replace=False)
            f, t = f[idx], t[idx]
        logf = np.log(np.maximum(np.asarray(f, np.float32), np.float32(1e-12)))
        t = np.asarray(t, np.float32)
    # every floor of one temperature at once (float32: the losses differ far above its rounding)
    keep = (1 - FLOORS).astype(np.float32)[:, None]
    add = (FLOORS / k).astype(np.float32)[:, None]
    eps = np.float32(1e-12)
    loss = np.zeros((len(TEMPERATURES), len(FLOORS)))
    for i, temp in enumerate(TEMPERATURES):
        if use_strokes:
            qs = _tempered(logp, np.float32(temp))[np.arange(len(y)), y]
            loss[i] -= np.log(keep * qs[None] + add + eps) @ weights
        if use_grid:
            qg = _tempered(logf, np.float32(temp))
            lq = np.log(keep[:, :, None] * qg[None] + add[:, :, None] + eps)  # (floors, N, K)
            loss[i] -= np.float32(FOREST_TERM) * np.einsum("fnk,nk->f", lq, t) / len(t)
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return Calibration(float(TEMPERATURES[i]), float(FLOORS[j]), int(len(y)) + (len(f) if use_grid else 0))


def calibrate_result(strokes: Strokes, result, *, n_classes: int, crf_weight: float, seed: int = 0) -> Calibration:
    """Calibration of a prediction (fills ``strokes.heldout`` if needed), see :func:`fit_calibration`.

    Parameters
    ----------
    strokes : Strokes
        From :func:`find_strokes` on the image and scribbles the model was fitted on.
    result : label_tools.pipeline.Result or None
        ``crf_probs`` serves the blend of the held-out forests with the CRF as predicted;
        ``probs`` and ``forest_probs`` the whole-image term.
    n_classes : int
    crf_weight : float
        The CRF weight the prediction used.

    Returns
    -------
    Calibration (the identity when the CRF had no part in the prediction)
    """
    if crf_weight <= 0 or result is None or result.crf_probs is None:
        # no CRF in the blend: the probabilities are the forest's own, whose averaged votes are
        # not over-confident; held-out strokes (region interiors) alone would sharpen them
        return Calibration()
    p = np.zeros((0, n_classes), np.float32)
    if len(strokes.y):
        if strokes.heldout is None:
            heldout_predictions(strokes, n_classes, seed=seed)
        crf = None if result is None else result.crf_probs
        p = blend_with_crf(strokes.heldout, strokes, crf, crf_weight if crf is not None else 0.0)
    grid = target = None
    if result is not None:
        grid, target = result.probs, getattr(result, "forest_probs", None)
    return fit_calibration(p, strokes.y, grid_probs=grid, grid_target=target, seed=seed)
