"""The edge-following upsampling: grid probabilities -> full-resolution labels, window by window.

A fast guided filter (He & Sun 2015) fitted on the model grid puts each label edge on the image
edge inside a coarse grid cell; where the grid is capped coarser than the scribbled structures, a
second guided filter at full resolution snaps the edges (:func:`fine_radius`). Windows are
block-aligned (:func:`label_windows`) and depend on nothing but the source and the grid
probabilities, so they can be computed anywhere, in any order (:mod:`label_tools.blocks` runs them
on a cluster's workers). Compute only, no I/O beyond reading the source.
"""
from __future__ import annotations

import math

import numpy as np

from .io import ImageSource
from .tiling import Window, to_full

NODATA = 255


def upsample_radius(grid_scale: float, structure_scale: float | None) -> int:
    """Guided-filter radius in grid pixels for the full-resolution labels: 2, or 1 when the grid is
    capped coarser than the scribbled structures need.

    The finest scribbled structure is about ``8 / structure_scale`` full-resolution pixels wide
    (:func:`label_tools.pipeline.structure_scale`), ``8 * grid_scale / structure_scale`` grid pixels; the filter's box is
    kept to about a quarter of that: ``round(2 * grid_scale / structure_scale)`` within [1, 2]. On
    H&E nuclei tiled to 100 MP (grid 0.245, structures 0.53) radius 1 gives 0.734 mIoU, radius 2 0.715;
    where the grid follows the structures (the usual case) it stays 2.
    """
    if not structure_scale or structure_scale <= 0:
        return 2
    return int(min(2, max(1, round(2.0 * grid_scale / structure_scale))))


def fine_radius(grid_scale: float, structure_scale: float | None) -> int:
    """Radius in full-resolution pixels of a second guided filter run at full resolution, or 0 (none).

    Only when the grid is capped coarser than the scribbled structures need (``grid_scale <
    structure_scale``, large images): the grid-scale filter places an edge within a grid cell from
    coefficients fitted on the grid, which blurs objects a few cells wide; a guided filter of half a
    grid cell (``round(0.5 / grid_scale)`` pixels, at least 1) fitted on the full-resolution image
    snaps the edges to it. Measured on images mirror-tiled to 12 MP with the grid forced to 0.245:
    H&E nuclei 0.821 -> 0.828, EM membranes 0.683 -> 0.695, coastal 0.746 -> 0.748 (docs/benchmarks.md).
    """
    if not structure_scale or grid_scale >= float(structure_scale) * (1 - 1e-6):
        return 0
    return int(max(1, round(0.5 / grid_scale)))


#: Regularisation of the full-resolution guided filter (guide in [0, 1]).
FINE_EPS = 1e-2

LABEL_TILE = 1024  # full-resolution window side of the upsampling; a multiple of usual raster block sides


def label_windows(shape, tile: int = LABEL_TILE) -> list:
    """The full-resolution windows :func:`upsample_labels` works on, in order.

    Block-aligned: they start at multiples of ``tile`` (a multiple of 256 and 512, the usual GeoTIFF
    block sides), so a window decodes whole blocks; the last row/column is shorter.

    Returns
    -------
    list of label_tools.tiling.Window
    """
    H, W = int(shape[0]), int(shape[1])
    return [Window(r, min(r + tile, H), c, min(c + tile, W)) for r in range(0, H, tile) for c in range(0, W, tile)]


def upsample_labels(src: ImageSource, probs, *, tile: int = LABEL_TILE, radius: int = 2, eps: float = 1e-3,
                    progress=None, on_tile=None, fine: int = 0) -> np.ndarray:
    """Full-resolution labels from grid probabilities, edges following the full-resolution image.

    A fast guided filter (He & Sun 2015): the linear coefficients that map the guide (the image's
    brightness) to each class's probability are fitted on the grid, interpolated to full
    resolution and applied to the full-resolution guide, so a label edge lands on the image edge
    inside a coarse grid cell. Works window by window (:func:`label_windows`, :func:`upsample_window`).

    Parameters
    ----------
    src : ImageSource
        The full-resolution image (guide for the edges, and its no-data mask).
    probs : ndarray of float32, shape (K, h, w)
    radius : int
        Guided-filter box radius in grid pixels.
    eps : float
        Guided-filter regularisation (guide values in [0, 1]).
    fine : int
        Radius in full-resolution pixels of a second guided filter at full resolution (0 = none;
        :func:`fine_radius`).
    on_tile : callable(window, probs, labels), optional
        Called once per full-resolution tile, tiles covering the image without overlap, with
        ``window`` = (row0, row1, col0, col1), ``probs`` float32 (K, row1 - row0, col1 - col0) =
        the filtered class probabilities (negative filter outputs clipped to 0, each pixel
        normalised to sum 1) and ``labels`` uint8 (row1 - row0, col1 - col0), the tile of the
        returned labels: ``labels == probs.argmax(axis=0)`` (first class on ties) wherever the
        source has data, 255 elsewhere. The arrays are only valid during the call.

    Returns
    -------
    ndarray of uint8, shape (H, W): argmax class, 255 where the source has no data.
    """
    H, W = src.shape
    k, h, w = probs.shape
    labels = np.empty((H, W), np.uint8)
    if (h, w) == (H, W):
        argmax_classes(probs, out=labels)
        if src.has_nodata:
            labels[~src.read_valid()] = NODATA
        if on_tile is not None:
            for win in label_windows((H, W), tile):
                rows, cols = win.toslices()
                on_tile(win, probs[:, rows, cols], labels[rows, cols])
        return labels
    windows = label_windows((H, W), tile)

    def one(win):
        return upsample_window(src, probs, win, radius=radius, eps=eps, with_probs=True, fine=fine)

    for i, (win, (lab, q)) in enumerate(zip(windows, _in_order(one, windows))):
        labels[win.toslices()] = lab
        if on_tile is not None:
            on_tile(win, q, lab)
        if progress:
            progress("upsample", i + 1, len(windows))
    return labels


def _in_order(fn, items, workers: int | None = None):
    """``map(fn, items)`` on a few threads (OpenCV and numpy release the GIL), results in order, at most
    ``workers + 1`` pending (memory stays a few windows)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from .threads import budget

    workers = workers or min(2, budget())  # one on a single-threaded Dask worker
    if workers <= 1 or len(items) < 2:
        yield from map(fn, items)
        return
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque(pool.submit(fn, x) for _, x in zip(range(workers + 1), it))
        while pending:
            res = pending.popleft().result()
            for x in it:
                pending.append(pool.submit(fn, x))
                break
            yield res


def upsample_window(src: ImageSource, probs, window, *, radius: int = 2, eps: float = 1e-3, with_probs: bool = False,
                    fine: int = 0):
    """Labels of one full-resolution window, as :func:`upsample_labels` makes them.

    Reads the window plus the guided filter's margin from ``src`` and depends on nothing else, so
    the windows of :func:`label_windows` can be computed anywhere (a cluster's workers), in any order.

    Parameters
    ----------
    src : ImageSource
    probs : ndarray of float32, shape (K, h, w)
        Grid probabilities of the whole image.
    window : tuple (row0, row1, col0, col1)
        Full-resolution window, one of :func:`label_windows`.
    with_probs : bool
        Also return the filtered probabilities.
    fine : int
        Radius in full-resolution pixels of a second guided filter fitted on the full-resolution
        window (grown by twice the radius, within the read) after the grid-scale one; 0 = none.

    Returns
    -------
    labels : ndarray of uint8, shape (row1 - row0, col1 - col0)
        Argmax class, 255 = no-data.
    probs : ndarray of float32, shape (K, row1 - row0, col1 - col0)
        Only with ``with_probs`` (see ``on_tile`` of :func:`upsample_labels`).
    """
    H, W = src.shape
    k, h, w = probs.shape
    R0, R1, C0, C1 = window
    if (h, w) == (H, W):
        q = probs[:, R0:R1, C0:C1]
        lab = argmax_classes(q)
        if src.has_nodata:
            lab[~src.read_valid(window)] = NODATA
        return (lab, q) if with_probs else lab
    import cv2

    sr, sc = h / H, w / W
    # the coefficients are box-averaged twice (2 * radius), then interpolated (1) and, with the
    # full-resolution filter, grown by its reach: a grid pixel this far out no longer moves the window
    margin = 2 * radius + 2 + int(math.ceil(2 * int(fine) * max(sr, sc)))
    # grid coordinate of full-res pixel centre x: (x + 0.5) * s - 0.5
    pr0 = max(int(math.floor((R0 + 0.5) * sr - 0.5)) - margin, 0)
    pr1 = min(int(math.ceil((R1 + 0.5) * sr - 0.5)) + margin + 1, h)
    pc0 = max(int(math.floor((C0 + 0.5) * sc - 0.5)) - margin, 0)
    pc1 = min(int(math.ceil((C1 + 0.5) * sc - 0.5)) + margin + 1, w)
    # one full-resolution read covers the window and the grid window around it
    f0, f1, g0, g1 = to_full((pr0, pr1, pc0, pc1), (sr, sc), (H, W))
    full = src.read_display((f0, f1, g0, g1))
    # the grid's guide: each grid pixel the exact area mean of the full-resolution pixels it covers, so a
    # grid pixel gets the same guide from every window that reads it (a resize of the read, whose edges are
    # rounded to whole pixels, shifted it by a fraction of a pixel that changed from window to window:
    # filtered probabilities up to 0.03 apart across window seams)
    grey = _grey(full)
    rows = area_weights(pr0, pr1 - pr0, sr, f0, f1 - f0)
    cols = area_weights(pc0, pc1 - pc0, sc, g0, g1 - g0)
    low = np.ascontiguousarray((cols @ (rows @ grey).T).T, dtype=np.float32)
    a, b = guided_coefficients(low, probs[:, pr0:pr1, pc0:pc1], radius=radius, eps=eps)
    # with the full-resolution filter, its reach around the window (within the read) is filtered too
    e = 2 * int(fine)
    E0, E1, D0, D1 = (max(R0 - e, f0), min(R1 + e, f1), max(C0 - e, g0), min(C1 + e, g1)) if fine else window
    guide = _grey(np.ascontiguousarray(full[E0 - f0: E1 - f0, D0 - g0: D1 - g0]))
    m = np.array([[sc, 0, (D0 + 0.5) * sc - 0.5 - pc0], [0, sr, (E0 + 0.5) * sr - 0.5 - pr0]], np.float32)
    size = (D1 - D0, E1 - E0)
    q = np.empty((k, E1 - E0, D1 - D0), np.float32)
    for j in range(k):
        warp = [cv2.warpAffine(np.ascontiguousarray(c[j]), m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE) for c in (a, b)]
        np.multiply(warp[0], guide, out=q[j])
        q[j] += warp[1]
    q = normalise_filtered(q)
    if fine:
        q = fine_filter(guide, q, radius=int(fine), eps=FINE_EPS)
        q = normalise_filtered(np.ascontiguousarray(q[:, R0 - E0: R1 - E0, C0 - D0: C1 - D0]))
    lab = argmax_classes(q)
    if src.has_nodata:
        lab[~src.read_valid(window)] = NODATA
    return (lab, q) if with_probs else lab


def area_weights(start: int, n: int, scale: float, full_start: int, n_full: int):
    """Sparse weights that average full-resolution pixels into grid pixels by their exact overlap.

    Grid pixel ``i`` (of ``start .. start + n - 1``) covers full-resolution coordinates
    ``[i / scale, (i + 1) / scale)``; its row holds the share of that span each full-resolution
    pixel ``full_start .. full_start + n_full - 1`` covers (rows sum to 1).

    Parameters
    ----------
    start, n : int
        First grid pixel and count along one axis.
    scale : float
        Grid pixels per full-resolution pixel, in (0, 1].
    full_start, n_full : int
        First full-resolution pixel read and count; must cover the grid pixels' span.

    Returns
    -------
    scipy.sparse.csr_matrix of float32, shape (n, n_full)
    """
    from scipy import sparse

    lo = (start + np.arange(n)) / scale
    hi = lo + 1.0 / scale
    m = int(math.ceil(1.0 / scale)) + 2
    x = np.floor(lo).astype(np.int64)[:, None] + np.arange(m)[None, :]
    w = np.clip(np.minimum(hi[:, None], x + 1) - np.maximum(lo[:, None], x), 0, None)
    x -= full_start
    keep = (w > 1e-9) & (x >= 0) & (x < n_full)
    w = np.where(keep, w, 0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    r = np.repeat(np.arange(n), m).reshape(n, m)
    return sparse.csr_matrix((w[keep].astype(np.float32), (r[keep], x[keep])), shape=(n, n_full))


def normalise_filtered(q):
    """Guided-filter outputs -> a distribution per pixel, keeping the argmax.

    Parameters
    ----------
    q : ndarray of float32, shape (K, h, w)
        Filtered probabilities (may stray below 0 or above 1); modified in place.

    Returns
    -------
    ndarray of float32, shape (K, h, w): ``q`` clipped at 0 and divided by its sum over classes;
    a pixel whose outputs are all <= 0 becomes one-hot at its largest output.
    """
    dead = q.max(axis=0) <= 0
    top = q[:, dead].argmax(axis=0) if dead.any() else None
    np.maximum(q, 0, out=q)
    s = q.sum(axis=0)
    if top is not None:
        rr, cc = np.nonzero(dead)
        q[top, rr, cc] = 1.0
        s[dead] = 1.0
    q /= s
    return q


def argmax_classes(q, out=None):
    """``q.argmax(axis=0)`` as uint8, the first class on ties; a few times faster than numpy's for a
    few classes (one comparison per class plane instead of a strided search per pixel).

    Parameters
    ----------
    q : ndarray of float32, shape (K, h, w), K <= 255
    out : ndarray of uint8, shape (h, w), optional

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    best = q[0].copy()
    lab = np.zeros(q.shape[1:], np.uint8) if out is None else out
    if out is not None:
        lab[...] = 0
    for j in range(1, q.shape[0]):
        better = q[j] > best
        lab[better] = j
        np.maximum(best, q[j], out=best)
    return lab


def _grey(rgb):
    """uint8 (h, w, 3) -> float32 (h, w) brightness in [0, 1]."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def guided_coefficients(guide, maps, *, radius: int, eps: float):
    """Per-pixel linear coefficients of the guided filter: ``filtered = a * guide + b``.

    Parameters
    ----------
    guide : ndarray of float32, shape (H, W), values in [0, 1]
    maps : ndarray of float32, shape (K, H, W)

    Returns
    -------
    a, b : ndarray of float32, shape (K, H, W), already box-averaged.
    """
    import cv2

    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    var_i = box(guide * guide) - mean_i * mean_i
    a = np.empty(maps.shape, np.float32)
    b = np.empty(maps.shape, np.float32)
    for j in range(maps.shape[0]):
        p = np.ascontiguousarray(maps[j])
        mean_p = box(p)
        aj = (box(guide * p) - mean_i * mean_p) / (var_i + eps)
        a[j] = box(aj)
        b[j] = box(mean_p - aj * mean_i)
    return a, b


def fine_filter(guide, q, *, radius: int, eps: float):
    """Guided filter (He, Sun & Tang 2013) of distributions at full resolution.

    Parameters
    ----------
    guide : ndarray of float32, shape (h, w), values in [0, 1]
    q : ndarray of float32, shape (K, h, w)
        Per-pixel distributions (summing to 1). The filter is linear and keeps a constant, so the
        last class is one minus the others (K - 1 classes are filtered).
    radius : int
    eps : float

    Returns
    -------
    ndarray of float32, shape (K, h, w); may stray slightly outside [0, 1] (see :func:`normalise_filtered`).
    """
    a, b = guided_coefficients(guide, q[:-1], radius=radius, eps=eps)
    out = np.empty_like(q)
    np.multiply(a, guide, out=out[:-1])
    out[:-1] += b
    out[-1] = 1.0
    out[-1] -= out[:-1].sum(axis=0)
    return out
