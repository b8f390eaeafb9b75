"""Refinement of the model-grid result of a large image whose grid is capped.

On a large image the model grid is capped (``Settings.max_grid_pixels``) coarser than the
scribbled structures need (:func:`label_tools.pipeline.structure_scale`). The forest then sees
small objects (nuclei a few grid pixels wide) blurred with their surroundings, and the pixels it
cannot decide it gives to the classes in the proportions of its *training samples*, not of the
image: scribbles are drawn about as much on every class (here 50/50), while small objects cover a
small share of the image (nuclei 17 %). The result over-predicts them (25 % of the pixels, most
false positives along nucleus edges and as specks in between), and the held-out strokes cannot see
it: they measure recall inside strokes, never false positives away from them, so they choose no CRF
(``crf_weight`` 0) and nothing else smooths the specks away.

This stage corrects the forest's probabilities for the shift between the class shares it was
fitted with and the image's own (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a
classifier to new a priori probabilities"): with ``t`` the training shares and ``pi`` the image's,
``p'(k | x) ~ p(k | x) pi_k / t_k``, and ``pi`` is found by EM as the mean of ``p'`` over the
image's pixels. Everything comes from the image and the fitted forest (its trees' root nodes hold
the weighted class shares they were grown on), so a saved model needs nothing more and a cluster's
grid task computes the same numbers as this process.

It runs on the model grid (a few MB), inside :func:`label_tools.pipeline.predict`, only when the
grid is capped coarser than the structures (:func:`applies`) and the CRF is off (the CRF's smoothing
removes the same specks: with both, nuclei are eroded, measured in docs/benchmarks.md). Smaller images,
whose grid follows the scribbles, are untouched.
"""
from __future__ import annotations

import math

import numpy as np

#: The class shares are estimated on at most this many grid pixels (a regular subsample).
PRIOR_PIXELS = 0.5e6
#: EM stops when no share moves by more than this, or after MAX_ITER rounds.
TOL = 1e-6
MAX_ITER = 200
#: Shares are kept at least this large (a class the image lacks must not divide by zero).
FLOOR = 1e-4


def applies(grid_scale: float, structure_scale: float | None, crf_weight: float | None) -> bool:
    """True when the prior correction runs: the grid is capped coarser than the scribbled
    structures need (``grid_scale < structure_scale``) and the CRF is off (``crf_weight`` 0).

    Parameters
    ----------
    grid_scale : float
        The model grid's scale.
    structure_scale : float or None
        The scale the scribbled structures need (None: unknown, e.g. a grid set with ``--grid-scale``).
    crf_weight : float or None
    """
    if not structure_scale or crf_weight is None or crf_weight > 0:
        return False
    return grid_scale < float(structure_scale) * (1 - 1e-6)


def training_prior(classifier, n_classes: int):
    """The class shares a fitted forest was grown on: the mean over its trees of the root node's
    weighted class distribution (bootstrap sample and class weights included).

    Parameters
    ----------
    classifier : fitted estimator
    n_classes : int

    Returns
    -------
    ndarray of float64, shape (K,), summing to 1 (0 for classes the forest never saw), or None for a
    classifier that is not a forest of scikit-learn trees (then nothing is corrected).
    """
    trees = getattr(classifier, "estimators_", None)
    classes = getattr(classifier, "classes_", None)
    if not trees or classes is None or not all(hasattr(t, "tree_") for t in trees):
        return None
    roots = []
    for t in trees:
        v = np.asarray(t.tree_.value[0], np.float64)
        if v.ndim != 2 or v.shape[0] != 1:  # multi-output trees: not ours
            return None
        v = v[0]
        roots.append(v / v.sum())
    share = np.mean(roots, axis=0)
    out = np.zeros(n_classes, np.float64)
    out[np.asarray(classes, int)] = share
    return out / out.sum()


def image_prior(probs, train, *, valid=None, max_pixels: float = PRIOR_PIXELS):
    """The image's class shares by EM (Saerens et al. 2002).

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
        The forest's probabilities on the model grid.
    train : ndarray of float64, shape (K,)
        :func:`training_prior`.
    valid : ndarray of bool, shape (h, w), optional
        False for no-data pixels (left out).
    max_pixels : float
        EM runs on a regular subsample of at most about this many pixels.

    Returns
    -------
    prior : ndarray of float64, shape (K,), summing to 1
    iterations : int
    """
    k, h, w = probs.shape
    step = max(1, int(math.ceil(math.sqrt(h * w / float(max_pixels)))))
    p = probs[:, ::step, ::step].reshape(k, -1).astype(np.float64)
    if valid is not None:
        p = p[:, np.asarray(valid, bool)[::step, ::step].ravel()]
    seen = train > 0
    if p.shape[1] == 0 or seen.sum() < 2:
        return train.copy(), 0
    p, t = p[seen], train[seen]
    p /= np.maximum(p.sum(axis=0, keepdims=True), 1e-12)
    pi = t.copy()
    for it in range(1, MAX_ITER + 1):
        q = p * (pi / t)[:, None]
        q /= np.maximum(q.sum(axis=0, keepdims=True), 1e-12)
        new = np.maximum(q.mean(axis=1), FLOOR)
        new /= new.sum()
        done = np.abs(new - pi).max() < TOL
        pi = new
        if done:
            break
    out = np.zeros_like(train)
    out[seen] = pi
    return out, it


def shift_prior(probs, train, prior):
    """``p'(k | x) ~ p(k | x) prior_k / train_k``, each pixel normalised to sum 1.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
    train, prior : ndarray of float64, shape (K,)

    Returns
    -------
    ndarray of float32, shape (K, h, w) (a new array); classes with ``train_k`` 0 keep 0.
    """
    ratio = np.where(train > 0, prior / np.maximum(train, 1e-12), 0.0).astype(np.float32)
    out = probs * ratio[:, None, None]
    s = out.sum(axis=0)
    s[s <= 0] = 1.0
    out /= s
    return out


def correct(probs, classifier, *, valid=None):
    """The prior-shift correction of one image's grid probabilities.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
    classifier : fitted estimator
    valid : ndarray of bool, shape (h, w), optional

    Returns
    -------
    probs : ndarray of float32, shape (K, h, w)
        Corrected (``probs`` itself when the classifier's training shares are unknown).
    info : dict or None
        ``{"training": [...], "image": [...], "iterations": n}`` (shares rounded to 4 digits), for the
        report; None when nothing was corrected.
    """
    k = probs.shape[0]
    train = training_prior(classifier, k)
    if train is None:
        return probs, None
    prior, n = image_prior(probs, train, valid=valid)
    info = {"training": [round(float(v), 4) for v in train], "image": [round(float(v), 4) for v in prior],
            "iterations": int(n)}
    return shift_prior(probs, train, prior), info


#: :func:`carry` keeps the forest as it is when the shift would leave a class with less than this
#: share of the grid pixels it had (a rare class would vanish: Sentinel-2's 2 % class, EM organelles).
KEEP_SHARE = 0.5


#: :func:`carry` moves the shares this far from the training samples' towards the target, in log space
#: (0.5: the geometric mean). A forest's probabilities are not calibrated, and the full shift overshoots.
STRENGTH = 0.5


def carry(probs, classifier, *, target=None, valid=None, keep: float = KEEP_SHARE, strength: float = STRENGTH,
          max_pixels: float = PRIOR_PIXELS):
    """The shift of a carried model's probabilities on an image it was not fitted on.

    Scribbles are drawn about as much on every class, so a forest believes in the scribbles' class
    shares (a thin EM membrane as common as the cells between: 49 % against 22 % in the mask) and
    over-predicts the rarer class on other images. On the image it was fitted on, the strokes and
    the held-out CRF weight were made for that result; on another image nothing checks it. Here
    the shares are moved from the training samples' (:func:`training_prior`, ``t``) towards
    ``target`` (``s``): the shares the forest itself saw on its training image
    (``Model.chosen["class_shares"]``, the mean of its probabilities there), or, when the model
    does not carry them, the mean of its probabilities on this image (one step of Saerens' EM; the
    full EM, :func:`image_prior`, drives small classes to nothing: 5-class Drosophila EM
    carry-over 0.509 -> 0.393, docs/benchmarks.md). The shares moved to are ``t**(1 - strength) *
    s**strength`` (normalised): the forest's probabilities are not calibrated, and the full shift
    (strength 1) overshoots where they are soft (ISBI membranes with another seed of scribbles:
    27 % membrane -> 11 %, mean IoU -0.07; over three scribble seeds and seven collections strength
    0.5 lost at most 0.004 in a collection's mean, strength 1 up to 0.014, docs/benchmarks.md). The shift is
    skipped when it would take more than ``1 - keep`` of the grid pixels of some class away
    (argmax before and after): a class the image shows little of would vanish (Drosophila).

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
        The forest's probabilities on the model grid.
    classifier : fitted estimator
    target : sequence of K floats, optional
        The class shares to move to; None = the mean of ``probs``.
    valid : ndarray of bool, shape (h, w), optional
        False for no-data pixels (left out).
    keep : float
        Smallest share of its pixels a class may keep.
    strength : float in [0, 1]
        How far to move, in log space (0: not at all, 1: all the way to ``target``).
    max_pixels : float
        The shares are measured on a regular subsample of at most about this many pixels.

    Returns
    -------
    probs : ndarray of float32, shape (K, h, w)
        Shifted, or ``probs`` itself.
    info : dict or None
        ``{"training": [...] (t), "target": [...] (s), "image": [...] (the shares moved to),
        "iterations": 1 (0 with ``target``), "applied": bool, "kept": float}`` (``kept``: the
        smallest share of its pixels any class keeps); None when the classifier's training shares
        are unknown.
    """
    k, h, w = probs.shape
    train = training_prior(classifier, k)
    if train is None:
        return probs, None
    step = max(1, int(math.ceil(math.sqrt(h * w / float(max_pixels)))))
    p = probs[:, ::step, ::step].reshape(k, -1)
    v = None if valid is None else np.asarray(valid, bool)[::step, ::step].ravel()
    if v is not None:
        p = p[:, v]
    if p.shape[1] == 0 or (train > 0).sum() < 2:
        return probs, None
    if target is not None and len(target) == k:
        goal = np.where(train > 0, np.maximum(np.asarray(target, np.float64), FLOOR), 0.0)
    else:
        target = None
        goal = np.where(train > 0, np.maximum(p.astype(np.float64).mean(axis=1), FLOOR), 0.0)
    goal /= goal.sum()
    a = float(strength)
    prior = np.where(train > 0, np.maximum(train, 1e-12) ** (1 - a) * np.maximum(goal, 1e-12) ** a, 0.0)
    prior /= prior.sum()
    shifted = shift_prior(probs, train, prior)
    before = np.bincount(p.argmax(axis=0), minlength=k)
    q = shifted[:, ::step, ::step].reshape(k, -1)
    after = np.bincount((q if v is None else q[:, v]).argmax(axis=0), minlength=k)
    had = before > 0
    kept = float((after[had] / before[had]).min()) if had.any() else 1.0
    applied = kept >= keep
    info = {"training": [round(float(x), 4) for x in train], "target": [round(float(x), 4) for x in goal],
            "image": [round(float(x), 4) for x in prior],
            "iterations": 0 if target is not None else 1, "applied": bool(applied), "kept": round(kept, 3)}
    return (shifted if applied else probs), info
