"""Multiscale per-pixel features: smoothed intensity, gradient magnitude and Hessian eigenvalues.

The same family ilastik and Labkit use for pixel classification, computed with OpenCV's separable
filters (float32) so a megapixel tile takes a fraction of a second.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

DEFAULT_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
PER_SIGMA = 4  # intensity, edges, 2 Hessian eigenvalues


def n_features(n_bands: int, sigmas=DEFAULT_SIGMAS) -> int:
    """Features per pixel: ``n_bands * len(sigmas) * 4``."""
    return int(n_bands) * len(sigmas) * PER_SIGMA


def halo(sigmas=DEFAULT_SIGMAS) -> int:
    """Context in pixels a tile needs on each side so its features equal those of the whole image."""
    return int(math.ceil(4 * max(sigmas))) + 3


def check_sigmas(sigmas) -> tuple:
    s = tuple(float(v) for v in sigmas)
    if not s or any(not (0 < v <= 64) for v in s):
        raise ValueError(f"sigmas must be one or more values in (0, 64], got {sigmas!r}")
    return s


PARALLEL_PIXELS = 65_536  # smaller images: features on one thread (a pool costs more than it gives)
STATS_PIXELS = 262_144  # band statistics are taken from a view of the image of about this size


def band_stats(sample, valid=None) -> tuple:
    """Per-band low point and range of an image, for :func:`standardise`.

    The robust stretch :mod:`label_tools.io` gives rasters (0.5 and 99.5 percentiles of each band),
    taken for every image, 8-bit photos included: a model fitted on stretched features carries
    over to images of the same kind taken under other light or stain (a model from the first
    H&E tile: mean IoU 0.12 -> 0.29 on the others, see docs/benchmarks.md). Extreme percentiles move less with
    the share of each class in an image than the mean or median do (texture collages: mean and
    spread 0.567, median and quartiles 0.527, these 0.651 against 0.653 unstretched). A random
    forest is invariant to a per-feature affine map, so the labels of the image fitted on do not
    change.

    Parameters
    ----------
    sample : ndarray of float32, shape (h, w) or (h, w, C)
        A (decimated) view of the image, bands scaled as for :func:`multiscale_features`.
    valid : ndarray of bool, shape (h, w), optional
        False for no-data pixels (left out).

    Returns
    -------
    tuple (low, range) of tuples of C floats; range at least 1e-3.
    """
    from .io import STRETCH_PERCENTILES

    x = np.asarray(sample, np.float32)
    x = x.reshape(-1, 1) if x.ndim == 2 else x.reshape(-1, x.shape[-1])
    if valid is not None:
        x = x[np.asarray(valid, bool).ravel()]
    if len(x) == 0:
        return tuple([0.0] * x.shape[1]), tuple([1.0] * x.shape[1])
    lo, hi = np.percentile(x, STRETCH_PERCENTILES, axis=0)
    return tuple(float(v) for v in lo), tuple(float(v) for v in np.maximum(hi - lo, 1e-3))


def standardise(image, stats) -> np.ndarray:
    """``(image - low) / range`` per band.

    Parameters
    ----------
    image : ndarray of float32, shape (H, W) or (H, W, C)
    stats : tuple (low, range) of C floats each, see :func:`band_stats`

    Returns
    -------
    ndarray of float32, same shape
    """
    c, s = (np.asarray(v, np.float32) for v in stats)
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        return (img - c[0]) * np.float32(1.0 / s[0])
    return (img - c) * (np.float32(1.0) / s)


def _magnitude(a, b, out=None):
    """``sqrt(a**2 + b**2)``, float32 (into ``out`` if given).

    Not ``cv2.magnitude``: its first and last elements come out a few ulp apart depending on how
    the arrays happen to be aligned in memory, so two runs (or a Dask worker and this process) could
    differ in the last bits; every step here is correctly rounded.
    """
    m = np.multiply(a, a, out=out)
    m += b * b
    return np.sqrt(m, out=m)


def multiscale_features(image, *, sigmas=DEFAULT_SIGMAS, planes: bool = False) -> np.ndarray:
    """Features of every pixel of ``image``.

    For each band and each sigma, the Gaussian-smoothed band, its scale-normalised gradient
    magnitude ``sigma * |grad G|`` (edges) and its two scale-normalised Hessian eigenvalues
    ``sigma**2 * lambda`` (ridges, blobs: texture). Structure is kept per band: colour texture
    (surf against wet sand) is lost in a brightness-only version.

    Parameters
    ----------
    image : ndarray of float32, shape (H, W) or (H, W, C)
        Bands scaled to about [0, 1] (``ImageSource.read`` does this).
    sigmas : sequence of float
        Gaussian scales in pixels.
    planes : bool
        Return the features plane by plane, shape (n_features, H, W), as they are computed: no
        pixel-major copy (half the memory at the peak; the tile paths of :mod:`label_tools.pipeline`
        gather the pixels they predict from the planes).

    Returns
    -------
    ndarray of float32, shape (H, W, n_features(C, sigmas)), or (n_features, H, W) with ``planes``
        Smoothed values (band-major, then sigma) first, then the structure features
        (source-major, then sigma, then edges, eigenvalue 1, eigenvalue 2).
    """
    import cv2

    from .threads import budget

    sigmas = check_sigmas(sigmas)
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    bands = [np.ascontiguousarray(img[..., b]) for b in range(c)]
    jobs = [(b, s) for b in range(c) for s in sigmas]
    # every plane in one block allocated here (smoothed: band-major then sigma; then structure:
    # band, sigma, edges / eigenvalue 1 / eigenvalue 2); planes are computed contiguous (strided
    # writes are slow) and interleaved at the end. Allocated in this thread, not the workers: memory
    # freed by a worker thread stays in that thread's malloc arena (+190 MB peak at 100 MP).
    block = np.empty((len(jobs) * PER_SIGMA, h, w), np.float32)

    def one(j):
        b, s = jobs[j]
        g = cv2.GaussianBlur(bands[b], (0, 0), s, dst=block[j], borderType=cv2.BORDER_REFLECT)
        e1, e2, edge = block[len(jobs) + 3 * j + 1], block[len(jobs) + 3 * j + 2], block[len(jobs) + 3 * j]
        # temporaries freed as soon as they are used: two of these run at once (memory at the peak)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=s / 8, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=s / 8, borderType=cv2.BORDER_REFLECT)
        _magnitude(gx, gy, out=edge)
        del gx, gy
        s2 = s * s
        hxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3, scale=s2 / 4, borderType=cv2.BORDER_REFLECT)
        hyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3, scale=s2 / 4, borderType=cv2.BORDER_REFLECT)
        half_tr = np.add(hxx, hyy, out=e1)  # e1 holds the half trace until the end
        half_tr *= np.float32(0.5)
        np.subtract(hxx, hyy, out=hxx)
        hxx *= np.float32(0.5)
        del hyy
        hxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3, scale=s2 / 4, borderType=cv2.BORDER_REFLECT)
        d = _magnitude(hxx, hxy, out=hxx)
        del hxy
        np.subtract(half_tr, d, out=e2)
        half_tr += d

    n_threads = min(budget(), len(jobs)) if h * w >= PARALLEL_PIXELS else 1
    # OpenCV and numpy release the GIL: the planes of different bands and sigmas are computed side by
    # side, then interleaved in row blocks side by side (1.5-1.9x faster on 2 cores, where one thread
    # keeps about one core busy; the same numbers bit for bit at any thread count)
    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:
        list(pool.map(one, range(len(jobs)))) if pool else [one(j) for j in range(len(jobs))]
        if planes:
            return block
        out = np.empty((h, w, len(block)), np.float32)

        def interleave(rows):  # in chunks within OpenCV's channel limit (CV_CN_MAX is 128 in OpenCV 5)
            r0, r1 = rows
            if len(block) <= 128:  # straight into the output rows (contiguous)
                cv2.merge(list(block[:, r0:r1]), out[r0:r1])
                return
            for i in range(0, len(block), 128):
                part = block[i: i + 128, r0:r1]
                out[r0:r1, :, i: i + len(part)] = cv2.merge(list(part)).reshape(r1 - r0, w, len(part))

        step = -(-h // n_threads)
        rows = [(r, min(r + step, h)) for r in range(0, h, step)]
        list(pool.map(interleave, rows)) if pool else [interleave(b) for b in rows]
    finally:
        if pool:
            pool.shutdown()
    return out
