"""Synthetic scribbles from a ground-truth mask, imitating a person's exemplar strokes.

Used to measure label quality (tests, ``benchmarks/``): for each class, erode its region a few
pixels, skeletonize it, cut the skeleton into short pieces, keep a seeded random subset of the
pieces and paint them with a 3-pixel brush, until about ``fraction`` of the pixels are labelled.
"""
from __future__ import annotations

import numpy as np


def synthetic_scribbles(mask, *, fraction: float = 0.01, seed: int = 0, brush: int = 3, erode: int = 3,
                        piece: int = 32) -> np.ndarray:
    """Scribbles drawn from ``mask``.

    Parameters
    ----------
    mask : ndarray of int, shape (H, W)
        Class ids 0..K-1; negative values (or 255 with K < 255) are ignored and never scribbled.
    fraction : float
        Share of pixels to label, about.
    seed : int
    brush : int
        Stroke width in pixels.
    erode : int
        Pixels kept clear of each region's edge where the region is wide enough.
    piece : int
        Skeleton pieces are cut on a grid of this many pixels.

    Returns
    -------
    ndarray of uint8, shape (H, W): 0 = unlabelled, k + 1 = class k.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    mask = np.asarray(mask)
    valid = (mask >= 0) & (mask != 255)
    classes = [int(c) for c in np.unique(mask[valid])]
    out = np.zeros(mask.shape, np.uint8)
    if not classes:
        return out
    budget = fraction * mask.size / len(classes)  # labelled pixels per class
    rows, cols = np.indices(mask.shape)
    cell = (rows // piece) * (mask.shape[1] // piece + 1) + cols // piece
    disk = _disk(brush // 2)
    for c in classes:
        region = valid & (mask == c)
        core = ndi.binary_erosion(region, structure=_disk(erode), border_value=1)
        if core.sum() < 4 * brush:  # thin class: stay inside the raw region
            core = region
        skel = skeletonize(core)
        comp, _ = ndi.label(skel, structure=np.ones((3, 3)))
        key = np.where(skel, comp.astype(np.int64) * (cell.max() + 1) + cell, -1)
        ids, inverse = np.unique(key[skel], return_inverse=True)
        rng = np.random.default_rng([seed, c])
        order = rng.permutation(len(ids))
        ys, xs = np.nonzero(skel)
        stroke = np.zeros(mask.shape, bool)
        done = 0
        for chunk in np.array_split(order, max(1, len(order) // 8)):
            pick = np.isin(inverse, chunk)
            stroke[ys[pick], xs[pick]] = True
            painted = ndi.binary_dilation(stroke, structure=disk) & region
            done = painted.sum()
            if done >= budget:
                break
        painted = ndi.binary_dilation(stroke, structure=disk) & region if done == 0 else painted
        out[painted & (out == 0)] = c + 1
    return out


def _disk(r: int) -> np.ndarray:
    r = max(int(r), 0)
    y, x = np.ogrid[-r: r + 1, -r: r + 1]
    return x * x + y * y <= r * r
