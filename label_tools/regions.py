"""The CRF's doubt about whole regions: the CRF run again on perturbed forest probabilities.

A dense CRF's mean-field marginals are confident over a whole region once its pixels agree, also
where the region's label rests on weak evidence (a field of one crop labelled as its look-alike):
the pixel's own probability is then high inside a wrong region. Perturb-and-MAP (Papandreou and
Yuille, ICCV 2011) exposes such regions: add noise to the unary, run the CRF again, and see which
labels hold. Here the noise is a Gaussian field as wide as the regions (so a region, not a pixel,
gets pushed) on the log of the forest's probabilities, each perturbed run is blended with the
forest as the pipeline blends it, and the doubt of a pixel is one minus the mean probability of
its label over the runs. The CRF runs on its own grid (about ``Settings.crf_pixels``), the rest on
the model grid of at most ``DOUBT_PIXELS``, so the cost does not grow with the image: ``SAMPLES``
CRF runs of at most ``MAX_PIXELS`` pixels.

Used by :func:`label_tools.uncertainty.uncertainty_map` as one half of the map; labels and
probabilities are not changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import crf as crf_mod

SAMPLES = 8  # perturbed CRF runs (benchmarks/uncertainty.py: 4 runs rank errors worse on 5 of 7 datasets)
NOISE = 1.0  # standard deviation of the noise on the log-probabilities (natural log units)
MAX_PIXELS = 0.12e6  # the CRF runs on its own grid, shrunk to at most this many pixels
DOUBT_PIXELS = 0.5e6  # the noise, the blend and the doubt: on the model grid shrunk to at most this


@dataclass
class CRFView:
    """What the pipeline's CRF saw, on its own grid: enough to run it again.

    Attributes
    ----------
    image : ndarray of uint8, shape (h, w, 3)
        The image on the CRF grid (its appearance kernel's colours).
    valid : ndarray of bool, shape (h, w), or None
        False on no-data pixels.
    params : label_tools.crf.CRFParams
        The kernels on this grid (after :func:`label_tools.pipeline.crf_reach`).
    weight : float
        The CRF's weight in the blend with the forest (``Settings.crf_weight``).
    """

    image: np.ndarray
    valid: np.ndarray | None
    params: crf_mod.CRFParams
    weight: float

    def shrunk(self, max_pixels: float = MAX_PIXELS) -> "CRFView":
        """The same view on a grid of at most ``max_pixels`` pixels (itself when already that small)."""
        import cv2

        h, w = self.image.shape[:2]
        f = math.sqrt(max_pixels / float(h * w))
        if f >= 1:
            return self
        size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
        valid = None if self.valid is None else \
            cv2.resize(self.valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        return CRFView(cv2.resize(self.image, size, interpolation=cv2.INTER_AREA), valid,
                       self.params.scaled(size[1] / h), self.weight)


def _smooth_noise(rng, shape, sigma: float) -> np.ndarray:
    """Standard normal noise (K, h, w) blurred by a Gaussian of ``sigma`` px per class, rescaled to unit spread."""
    import cv2

    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0.5:
        for j in range(shape[0]):
            cv2.GaussianBlur(noise[j], (0, 0), sigma, dst=noise[j], borderType=cv2.BORDER_REFLECT)
        noise /= max(float(noise.std()), 1e-9)
    return noise


def regional_doubt(view: CRFView, forest_probs, labels, *, samples: int = SAMPLES, noise: float = NOISE,
                   seed: int = 0, max_pixels: float = DOUBT_PIXELS) -> np.ndarray:
    """Doubt about each pixel's label when the forest's probabilities are perturbed region by region.

    Each run repeats the pipeline's CRF step on perturbed forest probabilities: the noise is added on the
    model grid (shrunk to at most ``max_pixels``), the probabilities are averaged down to the CRF grid,
    refined there, interpolated back and blended with the perturbed forest's by the CRF weight.

    Parameters
    ----------
    view : CRFView
        The pipeline's CRF inputs (``Result.crf_view``); shrunk to :data:`MAX_PIXELS` here.
    forest_probs : ndarray of float32, shape (K, h, w)
        The forest's probabilities on the model grid (``Result.forest_probs``).
    labels : ndarray of uint8, shape (h, w)
        The final labels on the model grid (the argmax of ``Result.probs``).
    samples : int
        Perturbed CRF runs.
    noise : float
        Standard deviation of the noise added to the log-probabilities.
    seed : int
        Seed of the noise: the same inputs give the same map.
    max_pixels : float
        The doubt is computed on the model grid shrunk to at most this many pixels.

    Returns
    -------
    ndarray of float32, shape (h', w') (the model grid, or that grid shrunk), in [0, 1]: one minus the
    mean, over the runs, of the blended probability of the pixel's label.
    """
    import cv2

    from .pipeline import _blend
    from .uncertainty import label_width

    view = view.shrunk()
    k, h, w = forest_probs.shape
    f = min(1.0, math.sqrt(max_pixels / float(h * w)))
    if f < 1:
        h, w = max(1, int(round(h * f))), max(1, int(round(w * f)))
        forest_probs = np.stack([cv2.resize(np.ascontiguousarray(forest_probs[j]), (w, h),
                                            interpolation=cv2.INTER_AREA) for j in range(k)])
        labels = cv2.resize(np.ascontiguousarray(labels, np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    lab = np.minimum(labels, k - 1).astype(np.int64)[None]
    ch, cw = view.image.shape[:2]
    # the noise is as wide as the forest's own regions: a region is pushed as one, as a wrong region would be
    width = label_width(forest_probs)
    sigma = max(1.0, width) if math.isfinite(width) else max(h, w) / 4.0
    logp = np.log(np.maximum(forest_probs, crf_mod.EPS)).astype(np.float32)
    rng = np.random.default_rng(seed)
    kept = np.zeros((h, w), np.float32)
    crf = crf_mod.Refiner(view.image, k, params=view.params)  # kernels built once for the eight runs
    for _ in range(int(samples)):
        lp = logp + np.float32(noise) * _smooth_noise(rng, (k, h, w), sigma)
        lp -= lp.max(axis=0, keepdims=True)
        p = np.exp(lp)
        p /= p.sum(axis=0, keepdims=True)
        same = (ch, cw) == (h, w)
        small = p if same else np.stack([cv2.resize(p[j], (cw, ch), interpolation=cv2.INTER_AREA) for j in range(k)])
        q = crf.refine(small, valid=view.valid)
        if not same:
            q = np.stack([cv2.resize(q[j], (w, h), interpolation=cv2.INTER_LINEAR) for j in range(k)])
        kept += np.take_along_axis(_blend(p, q, view.weight), lab, 0)[0]
    return np.clip(1.0 - kept / max(int(samples), 1), 0.0, 1.0).astype(np.float32)
