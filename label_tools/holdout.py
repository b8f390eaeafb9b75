"""Strokes held out to judge settings per image: the scribbles test the model they trained.

A *stroke* is a connected component (8-connected) of one class in the scribbles, on the model grid.
Strokes of each class are dealt into ``n_folds`` folds (seeded from the scribbles themselves, so a
run is reproducible and two images get different splits). For every fold a small forest is fitted
on the samples of the other folds and predicts the region around the held-out strokes; the CRF
blend weight that predicts held-out strokes best is chosen for the image, and each stroke gets the
fraction of its pixels that this prediction, made without it, agrees with (a stroke drawn with the
wrong class scores low).

Compute only, no I/O. :func:`label_tools.pipeline.train` drives it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

N_FOLDS = 3
FOLD_TREES = 10
FOLD_SAMPLES = 1500  # per class, for each fold's forest
FOLD_CRF_ITER = 5  # mean-field iterations of each fold's CRF (most of the change happens in the first few)
WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8)
TOLERANCE = 0.003  # scores this close to the best count as ties (the weight nearest the default wins)
# When every class is drawn as one stroke (a person's long zig-zag across each class, Doodler-style), each
# stroke of at least this many model-grid pixels is cut into N_FOLDS parts along its longest axis, so it
# can be held out part by part; before, nothing could be held out and the CRF weight, the stroke
# warnings and the calibration's held-out term all fell back to defaults.
SPLIT_MIN_PIXELS = 60


@dataclass
class Strokes:
    """Strokes of the scribbles on the model grid and how held-out predictions agree with them.

    Attributes
    ----------
    ids : ndarray of int32, shape (h, w)
        Stroke id per model-grid pixel, 0 = no stroke; stroke ``i`` has id ``i + 1``.
    cls : ndarray of int64, shape (n,)
        0-based class of each stroke.
    pixels : ndarray of int64, shape (n,)
        Model-grid pixels of each stroke.
    fold : ndarray of int64, shape (n,)
        Fold each stroke is held out in; -1 = never held out (the only stroke of its class, unless
        cut in parts).
    bbox : ndarray of int64, shape (n, 4)
        (row0, row1, col0, col1) of each stroke in full-resolution pixels (half-open).
    agreement : ndarray of float32, shape (n,)
        Fraction of the stroke's pixels that the prediction made without the stroke (its fold's
        forest, blended with its CRF at the chosen weight) gives the stroke's class; NaN when the
        stroke was not held out or lies outside the evaluated region.
    predicted : ndarray of int64, shape (n,)
        The class that held-out prediction gives most of the stroke's pixels; -1 where
        ``agreement`` is NaN.
    support : ndarray of float32, shape (n,)
        Mean probability that the held-out fold's forest (before the CRF) gives the stroke's own
        class on its pixels; NaN where ``agreement`` is. Unlike ``agreement`` it separates a stroke
        the model without it cannot place (its class merely less likely than another) from one it
        places firmly in another class (likely drawn with the wrong class).
    forests : dict of int -> fitted estimator
        Each held-out fold's forest (fitted without that fold's strokes), kept so the calibration
        can predict held-out samples without fitting forests of its own; empty before holdout.
    part : ndarray of int64, shape (n,)
        -1 for a stroke as drawn; ``j`` for the ``j``-th part of a class's only stroke, cut in
        :data:`N_FOLDS` parts when every class has one stroke (:func:`find_strokes`).
    """

    ids: np.ndarray
    cls: np.ndarray
    pixels: np.ndarray
    fold: np.ndarray
    bbox: np.ndarray
    agreement: np.ndarray
    predicted: np.ndarray
    support: np.ndarray = None
    forests: dict = field(default_factory=dict, repr=False)
    part: np.ndarray = None

    def __post_init__(self):
        if self.support is None:
            self.support = np.full(len(self.cls), np.nan, np.float32)
        if self.part is None:
            self.part = np.full(len(self.cls), -1, np.int64)

    def __len__(self):
        return len(self.cls)


def find_strokes(small, n_classes: int, full_shape, *, seed: int = 0, n_folds: int = N_FOLDS) -> Strokes:
    """Strokes of grid scribbles and their folds.

    When no class has two strokes, each class's stroke of at least :data:`SPLIT_MIN_PIXELS` grid
    pixels is cut into ``n_folds`` parts of equal size along its longest axis (:func:`_parts`); each
    part counts as a stroke (its own id, box and fold), so the class can be held out a part at a
    time, the others training.

    Parameters
    ----------
    small : ndarray of uint8, shape (h, w)
        Scribbles on the model grid, 0 = unlabelled, k = class k-1.
    n_classes : int
    full_shape : tuple (H, W)
        The full-resolution image shape (for ``bbox``).
    seed : int
        Mixed with a checksum of ``small``: the same scribbles always give the same folds.
    n_folds : int

    Returns
    -------
    Strokes
    """
    import cv2

    h, w = small.shape
    ids = np.zeros((h, w), np.int32)
    cls, pixels, boxes, parts = [], [], [], []
    n = 0
    present = [k for k in range(n_classes) if (small == k + 1).any()]
    # only when no class has two strokes (else those are held out, and cutting a class's only stroke
    # beside them made the calibration worse on a photo: grabcut 106024, ECE over 3 seeds 0.089 -> 0.106)
    cut = n_folds > 1 and all(cv2.connectedComponents((small == k + 1).astype(np.uint8), connectivity=8)[0] == 2
                              for k in present)
    for k in present:
        m = (small == k + 1).astype(np.uint8)
        count, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
        if cut and int(stats[1, 4]) >= SPLIT_MIN_PIXELS:
            rr, cc = np.nonzero(lab)
            part = _parts(rr, cc, n_folds)
            ids[rr, cc] = part + n + 1
            for j in range(n_folds):
                r, c = rr[part == j], cc[part == j]
                cls.append(k)
                pixels.append(len(r))
                boxes.append((int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1))
                parts.append(j)
            n += n_folds
            continue
        sel = lab > 0
        ids[sel] = lab[sel] + n
        for j in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[j])
            cls.append(k)
            pixels.append(area)
            boxes.append((y, y + bh, x, x + bw))
            parts.append(-1)
        n += count - 1
    cls = np.asarray(cls, np.int64)
    sr, sc = h / float(full_shape[0]), w / float(full_shape[1])
    bbox = np.asarray(boxes, np.float64).reshape(-1, 4)
    bbox = np.stack([np.floor(bbox[:, 0] / sr), np.ceil(bbox[:, 1] / sr), np.floor(bbox[:, 2] / sc),
                     np.ceil(bbox[:, 3] / sc)], axis=1).astype(np.int64)
    bbox[:, 1] = np.minimum(bbox[:, 1], full_shape[0])
    bbox[:, 3] = np.minimum(bbox[:, 3], full_shape[1])
    rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(small).tobytes())])
    fold = np.full(len(cls), -1, np.int64)
    for k in np.unique(cls):
        idx = np.nonzero(cls == k)[0]
        if len(idx) < 2:
            continue
        idx = idx[rng.permutation(len(idx))]
        start = int(rng.integers(n_folds))
        fold[idx] = (np.arange(len(idx)) + start) % n_folds
    nan = np.full(len(cls), np.nan, np.float32)
    return Strokes(ids, cls, np.asarray(pixels, np.int64), fold, bbox, nan, np.full(len(cls), -1, np.int64),
                   part=np.asarray(parts, np.int64))


def _parts(rows, cols, n: int) -> np.ndarray:
    """Part (0..n-1) of each pixel of one stroke: equal counts of pixels along the stroke's longest axis.

    The axis is the principal axis of the pixel coordinates, so the parts of a zig-zag are
    separate stretches of the image (each may hold several legs), not neighbouring bits of one leg.

    Parameters
    ----------
    rows, cols : ndarray of int, shape (N,), N >= n

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    xy = np.stack([rows, cols], axis=1).astype(np.float64)
    xy -= xy.mean(axis=0)
    _, vecs = np.linalg.eigh(xy.T @ xy)
    t = xy @ vecs[:, -1]
    order = np.argsort(t, kind="stable")
    part = np.empty(len(t), np.int64)
    part[order] = np.arange(len(t)) * n // len(t)
    return part


def usable_folds(strokes: Strokes, sample_strokes, n_folds: int = N_FOLDS):
    """Folds whose training part (samples of strokes in other folds) still holds two classes or more.

    Parameters
    ----------
    strokes : Strokes
    sample_strokes : ndarray of int, shape (N,)
        Stroke id (1-based) of each training sample.

    Returns
    -------
    list of int
    """
    fold_of = np.concatenate([[-1], strokes.fold])[sample_strokes]
    cls_of = np.concatenate([[-1], strokes.cls])[sample_strokes]
    out = []
    for f in range(n_folds):
        if not (strokes.fold == f).any():
            continue
        if len(np.unique(cls_of[fold_of != f])) >= 2:
            out.append(f)
    return out


def score(pred, truth, n_classes: int) -> float:
    """Class-balanced accuracy: the mean over classes present in ``truth`` of the fraction predicted right.

    Parameters
    ----------
    pred, truth : ndarray of int, shape (N,)
    """
    recalls = [np.mean(pred[truth == k] == k) for k in range(n_classes) if (truth == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def choose_weight(scores: dict, default: float, tolerance: float = TOLERANCE, per_stroke: dict | None = None,
                  z: float = 2.0) -> float:
    """The weight with the best score, if it beats ``default`` by more than chance.

    Among near-ties (within ``tolerance``) the weight nearest ``default`` wins. With ``per_stroke``
    (weight -> accuracy of each held-out stroke), a weight other than the default must also beat
    the default's score by ``z`` standard errors of the per-stroke differences: with few strokes
    (a small image, a handful of pixels scribbled) the default stays.
    """
    valid = {w: s for w, s in scores.items() if np.isfinite(s)}
    if not valid:
        return default
    if per_stroke is not None and default in valid and len(valid) > 1:
        base = per_stroke[default]
        keep = {default: valid[default]}
        for w, s in valid.items():
            d = per_stroke[w] - base
            se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.inf
            if s - valid[default] > max(tolerance, z * se):
                keep[w] = s
        valid = keep
    best = max(valid.values())
    near = [w for w, s in valid.items() if s >= best - tolerance]
    return min(near, key=lambda w: (abs(w - default), w))
