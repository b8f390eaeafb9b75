"""Self-training of a carried model on the image it is applied to.

A model fitted on one image and applied to another knows the classes only as they looked on the
first image (another EM slice's contrast, another tile's stain, another date's light). Here the
forest adapts to the new image without new strokes: while :func:`label_tools.pipeline.predict`
computes the carried forest's probabilities on the model grid, it keeps the features of a random
subsample of grid pixels; of those, the pixels the forest (after the carried class-share shift) is
most sure about become pseudo-labels, per class the most confident ``top`` share of the pixels it
gives that class and at most as many as the model has samples of it; a forest is refitted on the
model's samples plus the pseudo-labels, which weigh half a sample each, and that forest labels the
image. Everything is taken from the image and the model's own samples. The image a model was
fitted on (with strokes of its own) is never adapted.

The forest refitted is smaller than the model's (12 trees on half bootstraps, :data:`TREES`,
:data:`BOOTSTRAP`), which keeps the refit and the second forest pass cheap (a 0.2 MP photo: +0.15 s
in-process). Measured with ``benchmarks/collections.py accuracy`` (docs/benchmarks.md, Collections): over three
scribble seeds, ISBI membranes 0.643 -> 0.658, H&E 0.385 -> 0.60, Sentinel-2 0.376 -> 0.42; it costs
the texture and photo collages 0.02-0.03 and the coast 0.006 (all still above scikit-image).
"""
from __future__ import annotations

import numpy as np

#: Per class, the share of the pixels the carried forest gives that class (its most confident
#: ones) that may become pseudo-labels (``Settings.adapt``; 0 = no adaptation).
TOP = 0.2
#: Pseudo-labels per class at most this many times the model's own samples of that class.
RATIO = 1.0
#: Sample weight of a pseudo-label (the model's own samples weigh 1).
WEIGHT = 0.5
#: Trees of the refitted forest (the model's own has 24), each on a bootstrap sample of half the
#: samples: a quarter of the refit time and half the prediction time of 24 trees on all, and better
#: measured (ISBI 0.654 -> 0.660, H&E 0.546 -> 0.605; docs/benchmarks.md, Collections).
TREES = 12
BOOTSTRAP = 0.5
#: The features of at most about this many grid pixels are kept to draw pseudo-labels from
#: (60 features of an RGB image: 48 MB).
MAX_PIXELS = 200_000


class Reservoir:
    """Features of a seeded random subsample of the model grid, gathered tile by tile.

    Parameters
    ----------
    grid_pixels : int
        Pixels of the model grid.
    max_pixels : int
        About this many are kept (all when the grid has fewer).
    seed : int
    """

    def __init__(self, grid_pixels: int, *, max_pixels: int = MAX_PIXELS, seed: int = 0):
        self.rate = min(1.0, max_pixels / max(grid_pixels, 1))
        self.rng = np.random.default_rng(seed)
        self.rows, self.cols, self.feats = [], [], []

    def add(self, features, inner, outer, valid=None):
        """Keep some pixels of a tile.

        Parameters
        ----------
        features : ndarray of float32, shape (F, h, w)
            Features of the tile's ``outer`` window (plane by plane).
        inner, outer : (r0, r1, c0, c1)
            The tile's own window and the window ``features`` cover, in grid pixels.
        valid : ndarray of bool, shape of ``inner``, optional
            False for no-data pixels (never kept).
        """
        h, w = inner[1] - inner[0], inner[3] - inner[2]
        pick = self.rng.random((h, w)) < self.rate
        if valid is not None:
            pick &= valid
        r, c = np.nonzero(pick)
        if not len(r):
            return
        self.rows.append(r + inner[0])
        self.cols.append(c + inner[2])
        self.feats.append(np.ascontiguousarray(features[:, r + inner[0] - outer[0], c + inner[2] - outer[2]].T))

    def arrays(self):
        """rows, cols (int64, (N,)) and features (float32, (N, F)) of the kept pixels."""
        if not self.rows:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros((0, 0), np.float32)
        return np.concatenate(self.rows), np.concatenate(self.cols), np.concatenate(self.feats)


def gather(tiles, windows, rows, cols):
    """Features of some grid pixels from the tiles' features.

    Parameters
    ----------
    tiles : dict {tile index: ndarray of float32, shape (F, h, w)}
        Features of each tile's ``outer`` window (every tile that holds one of the pixels).
    windows : list of (inner, outer)
        Per tile index, its own window and the window its features cover, ``(r0, r1, c0, c1)``.
    rows, cols : ndarray of int, shape (M,)
        Grid pixels.

    Returns
    -------
    ndarray of float32, shape (M, F)
    """
    out = None
    for i, (inner, outer) in enumerate(windows):
        sel = np.flatnonzero((rows >= inner[0]) & (rows < inner[1]) & (cols >= inner[2]) & (cols < inner[3]))
        if not len(sel):
            continue
        f = tiles[i]
        if out is None:
            out = np.empty((len(rows), f.shape[0]), np.float32)
        out[sel] = f[:, rows[sel] - outer[0], cols[sel] - outer[2]].T
    return out if out is not None else np.zeros((0, 0), np.float32)


def pseudo_labels(probs, counts, *, top: float = TOP, ratio: float = RATIO, seed: int = 0):
    """Which of some pixels become pseudo-labels, and with which class.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, N)
        The carried forest's class probabilities at the reservoir's pixels.
    counts : ndarray of int, shape (K,)
        The model's own samples per class.
    top : float in (0, 1]
        Per class, the pixels given that class whose probability of it is at or above the
        class's ``1 - top`` quantile are candidates.
    ratio : float
        At most ``ratio * counts[k]`` pseudo-labels of class k (drawn at random from its candidates).
    seed : int

    Returns
    -------
    index : ndarray of int64, shape (M,)
        Positions in the N pixels.
    labels : ndarray of int64, shape (M,)
    """
    lab = probs.argmax(axis=0)
    conf = probs.max(axis=0)
    rng = np.random.default_rng(seed)
    index, labels = [], []
    for k in range(probs.shape[0]):
        idx = np.flatnonzero(lab == k)
        n = int(round(ratio * int(counts[k]))) if k < len(counts) else 0
        if not len(idx) or n <= 0:
            continue
        cf = conf[idx]
        idx = idx[cf >= np.quantile(cf, 1 - top)]
        if len(idx) > n:
            idx = np.sort(rng.choice(idx, n, replace=False))
        index.append(idx)
        labels.append(np.full(len(idx), k, np.int64))
    if not index:
        z = np.zeros(0, np.int64)
        return z, z
    return np.concatenate(index), np.concatenate(labels)


def refit(classifier, X, y, Xp, yp, *, weight: float = WEIGHT, trees: int = TREES, bootstrap: float = BOOTSTRAP):
    """A fresh copy of ``classifier`` fitted on the model's samples plus pseudo-labels.

    Parameters
    ----------
    classifier : fitted estimator
        Its parameters (not its fit) are copied (``sklearn.base.clone``), class weights included.
    X : ndarray of float32, shape (N, F)
    y : ndarray of int64, shape (N,)
    Xp : ndarray of float32, shape (M, F)
    yp : ndarray of int64, shape (M,)
    weight : float
        Sample weight of each pseudo-label (the model's samples weigh 1).
    trees : int
        Trees of the copy (0 = as many as ``classifier``).
    bootstrap : float in (0, 1]
        Each tree's bootstrap sample, as a share of all samples (``max_samples``; 0 = as ``classifier``).

    Returns
    -------
    The fitted copy.
    """
    from sklearn.base import clone

    from . import unary

    clf = clone(classifier)
    if trees:
        clf.set_params(n_estimators=int(trees))
    w = np.concatenate([np.ones(len(y)), np.full(len(yp), float(weight))])
    labels = np.concatenate([y, yp])
    if bootstrap:
        clf.set_params(max_samples=unary.bootstrap_size(float(bootstrap), labels, sample_weight=w,
                                                        class_weight=clf.get_params().get("class_weight")))
    clf.fit(np.concatenate([X, Xp]), labels, sample_weight=w)
    return clf
