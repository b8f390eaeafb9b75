"""Dense CRF refinement (Krähenbühl & Koltun 2011) through pydensecrf: the only module importing it.

pydensecrf contract kept here: ``DenseCRF2D(width, height, n_labels)`` (width first); the unary
is ``-log(p)``, float32, C-contiguous, shape (n_labels, H*W); the bilateral image is uint8,
C-contiguous (H, W, 3); results are read as ``np.array(Q).reshape(n_labels, H, W)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6


@dataclass(frozen=True)
class CRFParams:
    """Dense CRF settings, spatial widths in pixels of the grid the CRF runs on.

    Attributes
    ----------
    n_iter : int
        Mean-field iterations.
    gauss_sxy, gauss_compat : float
        Smoothness kernel: width and weight.
    bilateral_sxy, bilateral_srgb, bilateral_compat : float
        Appearance kernel: spatial width, colour width (0..255 units) and weight.
    """

    n_iter: int = 10
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 60.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 5.0

    def scaled(self, scale: float) -> "CRFParams":
        """The same kernels expressed on a grid downscaled by ``scale`` (widths of at least 1 px)."""
        return CRFParams(self.n_iter, max(1.0, self.gauss_sxy * scale), self.gauss_compat,
                         max(1.0, self.bilateral_sxy * scale), self.bilateral_srgb, self.bilateral_compat)


class Refiner:
    """A fully connected CRF whose kernels are built once for an image, to refine many unaries on it.

    Building the kernels (the permutohedral lattices of the Gaussian and bilateral terms) costs as much as
    a third of the mean-field iterations; :mod:`label_tools.regions` refines eight perturbed unaries on
    one image. pydensecrf replaces the unary of a built model on ``setUnaryEnergy``, so the result equals
    :func:`refine`'s for each unary.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        Colour image for the appearance (bilateral) kernel.
    n_classes : int
    params : CRFParams
    """

    def __init__(self, image, n_classes: int, *, params: CRFParams = CRFParams()):
        import pydensecrf.densecrf as dcrf

        h, w = image.shape[:2]
        if image.shape != (h, w, 3) or image.dtype != np.uint8:
            raise ValueError(f"image: expected uint8 of shape {(h, w, 3)}, got {image.dtype} {image.shape}")
        self.shape = (int(n_classes), h, w)
        self.params = params
        self._crf = None
        if n_classes >= 2:
            self._crf = dcrf.DenseCRF2D(w, h, int(n_classes))
            self._crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
            self._crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                                           rgbim=np.ascontiguousarray(image), compat=params.bilateral_compat)

    def refine(self, probs, *, valid=None) -> np.ndarray:
        """Posterior marginals for one unary; see :func:`refine` for ``probs``, ``valid`` and the result."""
        k, h, w = self.shape
        if probs.shape != self.shape:
            raise ValueError(f"probs: expected shape {self.shape}, got {probs.shape}")
        if self._crf is None:
            return np.ones((k, h, w), np.float32)
        p = np.clip(probs.reshape(k, -1).astype(np.float32), EPS, None)
        p /= p.sum(axis=0, keepdims=True)
        if valid is not None:
            p[:, ~valid.ravel()] = 1.0 / k
        self._unary = np.ascontiguousarray(-np.log(p), dtype=np.float32)  # kept alive while the model holds it
        self._crf.setUnaryEnergy(self._unary)
        q = self._crf.inference(int(self.params.n_iter))
        return np.array(q, dtype=np.float32).reshape(k, h, w)


def refine(probs, image, *, params: CRFParams = CRFParams(), valid=None) -> np.ndarray:
    """Refine class probabilities with a fully connected CRF.

    Parameters
    ----------
    probs : ndarray of float32, shape (K, H, W)
        Per-pixel class probabilities (the unary); rows need not sum exactly to 1.
    image : ndarray of uint8, shape (H, W, 3)
        Colour image for the appearance (bilateral) kernel.
    params : CRFParams
    valid : ndarray of bool, shape (H, W), optional
        False for no-data pixels: their unary is made uniform so they pull no neighbour.

    Returns
    -------
    ndarray of float32, shape (K, H, W)
        Posterior marginals Q; each pixel's column sums to 1.
    """
    k, h, w = probs.shape
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 of shape {(h, w, 3)}, got {image.dtype} {image.shape}")
    return Refiner(image, k, params=params).refine(probs, valid=valid)
