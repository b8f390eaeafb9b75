"""The unary: a pixel classifier fitted on the scribbled pixels, giving per-pixel class probabilities.

The classifier is passed in (any scikit-learn style object with ``fit`` and ``predict_proba``);
:func:`default_classifier` is the one place that builds the default random forest.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

MAX_SAMPLES_PER_CLASS = 4000


CLASS_WEIGHT_POWER = 0.25


def default_classifier(*, n_estimators: int = 24, max_depth: int | None = 14, max_samples: float | None = None,
                       class_weight=None, random_state: int = 0, n_jobs: int = -1):
    """The default pixel classifier: a random forest of 24 trees, each on a bootstrap sample of all
    the samples (``max_samples=None``).

    Full bootstrap samples against 32 trees on half the samples each (the earlier default), same
    CPU time: mean IoU +0.005 / +0.006 over the seven datasets of the two native benchmarks, and
    models that carry over better to other images (docs/benchmarks.md).
    """
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=2, max_features="sqrt",
        max_samples=max_samples, class_weight=class_weight, n_jobs=n_jobs, random_state=random_state)


def bootstrap_size(fraction: float, labels, *, class_weight=None, sample_weight=None) -> int:
    """Samples each tree's bootstrap draws for ``max_samples=fraction``, as scikit-learn counts them.

    ``max(int(fraction * total weight), 1)``, the total weight being that of the class weights times
    the sample weights, exactly as the forest computes it. Passed as an integer ``max_samples`` the
    forest draws the same number of samples, but does not warn (``UserWarning``, on stderr) when that
    number is small, as it is for the few strokes of a tiny image.

    Parameters
    ----------
    fraction : float
    labels : ndarray of int, shape (N,)
    class_weight : dict, optional
    sample_weight : ndarray of float, shape (N,), optional

    Returns
    -------
    int
    """
    from sklearn.utils.class_weight import compute_sample_weight

    w = None
    if class_weight is not None:
        w = compute_sample_weight(class_weight, labels)
    if sample_weight is not None:
        w = np.asarray(sample_weight, np.float64) if w is None else np.asarray(sample_weight, np.float64) * w
    total = len(labels) if w is None else w.sum()
    return max(int(fraction * total), 1)


def class_weights(labels, *, power: float = CLASS_WEIGHT_POWER) -> dict:
    """Class weights ``n_k ** -power`` (mean weight per sample 1).

    A mild correction for unequal scribbling: full balancing (power 1) over-predicts a class
    scribbled with a handful of pixels; none (power 0) lets the most-scribbled class swallow
    small ones. 0.25 scored best across the benchmark datasets (see docs/benchmarks.md).
    """
    ks, n = np.unique(labels, return_counts=True)
    w = n.astype(float) ** -power
    w *= len(labels) / float((w * n).sum())
    return {int(k): float(v) for k, v in zip(ks, w)}


class SampleBuffer:
    """Training samples gathered tile by tile, at most ``max_per_class`` kept per class.

    Keeps a seeded uniform random subset of each class's pixels (reservoir sampling by random keys),
    so memory stays bounded however much the user scribbles.
    """

    def __init__(self, n_classes: int, *, max_per_class: int = MAX_SAMPLES_PER_CLASS, seed: int = 0):
        self.n_classes = n_classes
        self.max_per_class = max_per_class
        self.rng = np.random.default_rng(seed)
        self._x = [None] * n_classes
        self._key = [None] * n_classes
        self._g = [None] * n_classes
        self.counts = np.zeros(n_classes, np.int64)  # pixels seen per class, kept or not

    def add(self, features, labels, groups=None):
        """Add samples.

        Parameters
        ----------
        features : ndarray of float32, shape (N, F)
        labels : ndarray of int, shape (N,)
            0-based class ids.
        groups : ndarray of int, shape (N,), optional
            A group id per sample (the stroke it comes from), kept alongside; see :meth:`groups`.
        """
        for k in np.unique(labels):
            k = int(k)
            sel = labels == k
            x = features[sel]
            g = np.zeros(len(x), np.int64) if groups is None else np.asarray(groups)[sel].astype(np.int64)
            key = self.rng.random(len(x))
            self.counts[k] += len(x)
            if self._x[k] is not None:
                x = np.concatenate([self._x[k], x])
                key = np.concatenate([self._key[k], key])
                g = np.concatenate([self._g[k], g])
            if len(x) > self.max_per_class:
                keep = np.argpartition(key, self.max_per_class)[: self.max_per_class]
                x, key, g = x[keep], key[keep], g[keep]
            self._x[k], self._key[k], self._g[k] = x, key, g

    def groups(self):
        """-> int64 (N,): the group id of each sample of :meth:`arrays`, in the same order (0 if none given)."""
        gs = [g for g in self._g if g is not None]
        return np.concatenate(gs) if gs else np.zeros(0, np.int64)

    def arrays(self):
        """-> (X float32 (N, F), y int64 (N,)) of everything kept."""
        xs = [x for x in self._x if x is not None]
        if not xs:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        ys = [np.full(len(x), k, np.int64) for k, x in enumerate(self._x) if x is not None]
        return np.concatenate(xs), np.concatenate(ys)


def fit(features, labels, *, classifier=None, class_names=None):
    """Fit the pixel classifier.

    Parameters
    ----------
    features : ndarray of float32, shape (N, F)
    labels : ndarray of int, shape (N,)
        0-based class ids; at least two distinct classes.
    classifier : estimator, optional
        Unfitted scikit-learn style classifier; default :func:`default_classifier`.
    class_names : sequence of str, optional
        Used in the error message only.

    Returns
    -------
    The fitted classifier.
    """
    present = np.unique(labels)
    if len(present) < 2:
        names = [class_names[int(k)] if class_names else str(int(k) + 1) for k in present]
        raise InputError(
            f"scribbles cover {len(present)} class{'es' if len(present) != 1 else ''} ({', '.join(names) or 'none'}); "
            "scribble at least two classes so the model has something to tell apart")
    clf = default_classifier(class_weight=class_weights(labels)) if classifier is None else classifier
    clf.fit(features, labels)
    return clf


def predict_proba(classifier, features, n_classes: int) -> np.ndarray:
    """Class probabilities of every pixel.

    Parameters
    ----------
    classifier : fitted estimator
    features : ndarray of float32, shape (H, W, F)
    n_classes : int
        Total classes K; classes the classifier never saw get probability 0.

    Returns
    -------
    ndarray of float32, shape (K, H, W)
    """
    h, w, f = features.shape
    try:
        p = _proba(classifier, features.reshape(-1, f))
    except ValueError as e:
        if "features" in str(e):
            raise InputError(
                f"the model expects a different number of features than the image gives ({f}): "
                "use the same sigmas and bands as when the model was fitted") from e
        raise
    out = np.zeros((n_classes, h * w), np.float32)
    out[np.asarray(classifier.classes_, int)] = p.T
    return out.reshape(n_classes, h, w)


def _proba(classifier, X, *, chunk: int = 32768):
    """``classifier.predict_proba(X)``, bit-for-bit the same on every run and machine.

    A forest with ``n_jobs != 1`` adds its trees' votes in whatever order its threads finish, so
    the last bits of the probabilities (and rarely an argmax) change from run to run. Here each
    block of pixels is predicted tree by tree, the trees added in their order (as a serial forest
    does: :func:`_forest_proba`), and the blocks run side by side on threads (tree traversal
    releases the GIL), as fast and reproducible: a cluster run gives exactly the in-process run's
    output.
    """
    if not _is_forest(classifier):
        return classifier.predict_proba(X)
    n_jobs = getattr(classifier, "n_jobs", None)
    if n_jobs in (None, 1) or len(X) <= chunk:
        return _forest_proba(classifier, X)
    from concurrent.futures import ThreadPoolExecutor

    from .threads import budget

    threads = budget() if n_jobs < 0 else int(n_jobs)
    starts = range(0, len(X), chunk)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(starts)))) as pool:
        parts = list(pool.map(lambda s: _forest_proba(classifier, X[s: s + chunk]), starts))
    return np.concatenate(parts)


def _serial(classifier):
    import copy

    c = copy.copy(classifier)  # shallow: shares the fitted trees
    c.n_jobs = 1
    return c


def _is_forest(classifier) -> bool:
    from sklearn.ensemble import RandomForestClassifier

    return isinstance(classifier, RandomForestClassifier) and hasattr(classifier, "estimators_") \
        and np.ndim(classifier.n_classes_) == 0


def _forest_proba(forest, X):
    """A fitted random forest's ``predict_proba(X)`` computed as the forest does with one job.

    Not through the forest's own method: that runs every tree through scikit-learn's ``Parallel``,
    whose workers reset and restore the process-wide warning filters around each call, so two
    threads predicting (or fitting) at once can leave a filter missing and raise a stray
    ``UserWarning`` (``delayed`` should be used with ``Parallel``). The sum is the same: trees
    added in their order in float64, then divided by their number.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        return forest.predict_proba(X)  # scikit-learn's own message for a wrong feature count
    out = np.zeros((X.shape[0], int(forest.n_classes_)), np.float64)
    for tree in forest.estimators_:
        out += tree.predict_proba(X, check_input=False)
    out /= len(forest.estimators_)
    return out


BLOCK_PIXELS = 65536  # pixels gathered pixel-major and predicted at a time by predict_proba_sparse


def predict_proba_sparse(classifier, features, n_classes: int, *, step: int = 2, margin: float = 0.35,
                         origin=(0, 0), planes: bool = False):
    """Class probabilities of every pixel, the classifier asked only where it matters.

    The classifier predicts the pixels on a lattice of spacing ``step`` (rows and columns that are
    multiples of ``step`` in image coordinates, so tiles of one image share one lattice); the
    probabilities are interpolated bilinearly in between and predicted exactly wherever the
    interpolation could change the answer: the two best classes closer than ``margin``, or the
    lattice points around the pixel disagreeing on the class. Far from class edges (most of an
    image) this costs about ``1 / step**2`` of a dense prediction; on the benchmark images the
    argmax matched the dense one on 99.9 % of pixels or more while asking for 33-60 % of them.

    Parameters
    ----------
    classifier : fitted estimator
    features : ndarray of float32, shape (H, W, F), or (F, H, W) with ``planes``
    n_classes : int
    step : int
        Lattice spacing in pixels (1 = dense).
    margin : float
        Interpolated pixels whose top-two probabilities differ by less are predicted exactly.
    origin : tuple (row, col)
        Image coordinates of ``features[0, 0]``. A tile that should equal the whole image's
        prediction needs ``step`` pixels of context on each side (crop them afterwards).
    planes : bool
        ``features`` is plane by plane (:func:`label_tools.features.multiscale_features` with
        ``planes=True``): only the pixels asked for are gathered pixel-major. Same probabilities.

    Returns
    -------
    ndarray of float32, shape (K, H, W)
    """
    import cv2

    def pixels(a):  # pixel-major (..., F) copy of a plane-major selection (F, ...)
        return np.ascontiguousarray(np.moveaxis(a, 0, -1)) if planes else np.ascontiguousarray(a)

    h, w = features.shape[1:] if planes else features.shape[:2]
    if step <= 1 or h < 4 * step or w < 4 * step:
        return predict_proba(classifier, pixels(features), n_classes)
    r0, c0 = (-int(origin[0])) % step, (-int(origin[1])) % step
    h2, w2 = len(range(r0, h, step)), len(range(c0, w, step))
    # p[:, i, j] is pixel (r0 + step i, c0 + step j); gathered and predicted in blocks of lattice rows
    # (at most BLOCK_PIXELS: the pixel-major copy of a whole tile's lattice was 20-25 MB at the peak)
    p = np.empty((n_classes, h2, w2), np.float32)
    rows = max(1, BLOCK_PIXELS // max(w2, 1))
    for i in range(0, h2, rows):
        a, b = r0 + i * step, min(r0 + (i + rows) * step, h)
        lat = pixels(features[:, a:b:step, c0::step] if planes else features[a:b:step, c0::step])
        p[:, i: i + lat.shape[0]] = predict_proba(classifier, lat, n_classes)
    m = np.array([[1.0 / step, 0, -c0 / step], [0, 1.0 / step, -r0 / step]], np.float32)  # dst -> src
    out = np.empty((n_classes, h, w), np.float32)
    for k in range(n_classes):
        out[k] = cv2.warpAffine(np.ascontiguousarray(p[k]), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    # lattice cells whose corners disagree on the class: an edge runs through them
    lab = p.argmax(axis=0).astype(np.uint8)
    ones = np.ones((2, 2), np.uint8)
    edge = cv2.dilate(lab, ones, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE) != \
        cv2.erode(lab, ones, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    ri = np.clip((np.arange(h) - r0) // step, 0, h2 - 1)
    ci = np.clip((np.arange(w) - c0) // step, 0, w2 - 1)
    unsure = edge[ri][:, ci]
    if n_classes > 1:
        top2 = np.partition(out, n_classes - 2, axis=0)[n_classes - 2:]
        unsure |= (top2[1] - top2[0]) < margin
    unsure[r0::step, c0::step] = False  # exact already
    rr, cc = np.nonzero(unsure)
    for i in range(0, len(rr), BLOCK_PIXELS):  # in blocks, as the lattice
        r, c = rr[i: i + BLOCK_PIXELS], cc[i: i + BLOCK_PIXELS]
        picked = np.ascontiguousarray(features[:, r, c].T) if planes else features[r, c]
        out[:, r, c] = predict_proba(classifier, picked[None], n_classes)[:, 0]
    out[:, r0::step, c0::step] = p
    return out
