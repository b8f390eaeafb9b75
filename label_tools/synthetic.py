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


def long_strokes(mask, *, fraction: float = 0.01, seed: int = 0, brush: int = 3, erode: int = 3) -> np.ndarray:
    """One connected stroke per class, as a person drawing one zig-zag across each class would.

    For each class: its largest connected region, eroded ``erode`` pixels where wide enough,
    skeletonized; the skeleton's largest connected piece, walked breadth-first from a seeded
    pixel until about ``fraction`` of the image over the classes is labelled (a connected
    stretch), painted with a ``brush``-pixel brush inside the region.

    Parameters
    ----------
    mask : ndarray of int, shape (H, W)
        Class ids 0..K-1; negative values (or 255 with K < 255) are ignored and never scribbled.
    fraction, seed, brush, erode
        As :func:`synthetic_scribbles`.

    Returns
    -------
    ndarray of uint8, shape (H, W): 0 = unlabelled, k + 1 = class k.
    """
    from scipy import ndimage as ndi
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order
    from skimage.morphology import skeletonize

    mask = np.asarray(mask)
    valid = (mask >= 0) & (mask != 255)
    classes = [int(c) for c in np.unique(mask[valid])]
    out = np.zeros(mask.shape, np.uint8)
    if not classes:
        return out
    budget = fraction * mask.size / len(classes) / max(brush, 1)  # skeleton pixels per class
    eight = np.ones((3, 3), bool)
    for c in classes:
        lab, n = ndi.label(valid & (mask == c), structure=eight)
        region = lab == (1 + int(np.argmax(np.bincount(lab.ravel())[1:])))
        core = ndi.binary_erosion(region, structure=_disk(erode), border_value=1)
        if core.sum() < 4 * brush:
            core = region
        skel = skeletonize(core)
        comp, m = ndi.label(skel, structure=eight)
        if m == 0:
            continue
        skel = comp == (1 + int(np.argmax(np.bincount(comp.ravel())[1:])))
        ys, xs = np.nonzero(skel)
        index = np.full(mask.shape, -1, np.int64)
        index[ys, xs] = np.arange(len(ys))
        a, b = [], []
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            y2, x2 = ys + dy, xs + dx
            ok = (y2 < mask.shape[0]) & (x2 >= 0) & (x2 < mask.shape[1])
            j = np.full(len(ys), -1, np.int64)
            j[ok] = index[y2[ok], x2[ok]]
            a.append(np.nonzero(j >= 0)[0])
            b.append(j[j >= 0])
        a, b = np.concatenate(a), np.concatenate(b)
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ys), len(ys))).tocsr()
        start = int(np.random.default_rng([seed, c]).integers(len(ys)))
        order = breadth_first_order(graph, start, directed=False, return_predecessors=False)
        keep = order[: max(1, int(budget))]
        stroke = np.zeros(mask.shape, bool)
        stroke[ys[keep], xs[keep]] = True
        painted = ndi.binary_dilation(stroke, structure=_disk(brush // 2)) & region
        out[painted & (out == 0)] = c + 1
    return out
