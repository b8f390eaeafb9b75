"""Scribbles: sparse label arrays, 0 = unlabelled, k = k-th class (1-based). Load, save, downscale."""
from __future__ import annotations

import numpy as np

from .errors import InputError

#: An RGB scribble pixel takes a class's colour when within this Euclidean RGB distance of it
#: (anti-aliased brush edges in paint programs are a little off the pure colour).
COLOR_TOLERANCE = 40.0


def read_scribbles(path: str, shape, *, colors=None, n_classes: int | None = None) -> np.ndarray:
    """Read a scribble image.

    A single-channel PNG/TIFF holds class numbers (0 = unlabelled, k = k-th class). An RGB(A)
    image painted in the class colours is mapped through ``colors``: each pixel within
    :data:`COLOR_TOLERANCE` of a class colour gets that class; other pixels (and transparent
    ones) are unlabelled.

    Parameters
    ----------
    path : str
    shape : tuple of int (H, W)
        The image's shape; the scribbles must match it.
    colors : ndarray of uint8, shape (K, 3), optional
        Class colours, needed for RGB scribbles.
    n_classes : int, optional
        Number of classes in the labels file; larger scribble values are an error.

    Returns
    -------
    ndarray of uint8, shape (H, W)
    """
    import os

    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise InputError(f"scribble file {path!r} does not exist")
    import cv2

    try:
        # OpenCV decodes into one buffer (Pillow needs two): matters for 400-megapixel scribbles
        a = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if a is not None and a.ndim == 3:
            a = a[..., [2, 1, 0, 3][: a.shape[2]]] if a.shape[2] >= 3 else a[..., 0]
        if a is None:
            with Image.open(path) as im:
                if im.mode == "P":
                    im = im.convert("RGBA")
                a = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"scribble file {path!r} cannot be read as an image ({e})") from None
    if a.shape[:2] != tuple(shape):
        raise InputError(
            f"scribble file {path!r} is {a.shape[1]} x {a.shape[0]} px but the image is {shape[1]} x {shape[0]} px "
            "(width x height): scribbles must be drawn on the image at its full size")
    if a.ndim == 3 and a.shape[2] == 2:  # grey + alpha
        a = np.where(a[..., 1] > 0, a[..., 0], 0)
    if a.ndim == 3:
        if colors is None:
            raise InputError(f"scribble file {path!r} is in colour: give the colours file (--colors) to map it to classes")
        return scribbles_from_rgb(a, colors)
    if a.dtype.kind == "f" or (a.size and (a.min() < 0 or a.max() > 255)):
        raise InputError(f"scribble file {path!r} holds values outside 0..255: expected class numbers")
    a = a.astype(np.uint8, copy=False)
    present = np.nonzero(value_counts(a))[0]
    if n_classes is not None and present.max(initial=0) > n_classes:
        bad = [int(v) for v in present if v > n_classes]
        raise InputError(
            f"scribble file {path!r} has value{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))} "
            f"but the labels give only {n_classes} classes (values 1..{n_classes}; 0 = unlabelled)")
    return a


def scribbles_from_rgb(rgb, colors, *, tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """Map an RGB(A) painting to class numbers.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3) or (H, W, 4)
    colors : ndarray of uint8, shape (K, 3)

    Returns
    -------
    ndarray of uint8, shape (H, W); 0 where no class colour is near (or alpha is 0).
    """
    a = np.asarray(rgb)
    alpha = a[..., 3] if a.shape[2] == 4 else None
    px = a[..., :3].reshape(-1, 3).astype(np.int32)
    cols = np.asarray(colors, np.int32)
    best = np.zeros(len(px), np.uint8)
    best_d = np.full(len(px), tolerance ** 2 + 1e-9)
    for k, c in enumerate(cols):
        d = ((px - c) ** 2).sum(axis=1)
        closer = d < best_d
        best[closer] = k + 1
        best_d[closer] = d[closer]
    out = best.reshape(a.shape[:2])
    if alpha is not None:
        out[alpha == 0] = 0
    return out


def scribbles_to_rgba(scribbles, colors) -> np.ndarray:
    """Scribbles -> RGBA uint8 (H, W, 4): class colours, transparent where unlabelled."""
    lut = np.zeros((256, 4), np.uint8)
    lut[1: len(colors) + 1, :3] = colors
    lut[1: len(colors) + 1, 3] = 255
    return lut[scribbles]


def save_scribbles(path: str, scribbles):
    """Write scribbles as a single-channel 8-bit PNG (the format :func:`read_scribbles` reads),
    atomically: a crash mid-write leaves the previous file intact."""
    import cv2

    from .files import atomic_path

    a = np.ascontiguousarray(scribbles, np.uint8)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, a, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {path!r}")


def value_counts(a, *, block_pixels: int = 4_000_000) -> np.ndarray:
    """Histogram of a uint8 array (int64, shape (256,)), counted in row blocks so memory stays small."""
    counts = np.zeros(256, np.int64)
    step = max(1, block_pixels // max(a.shape[1], 1))
    for r in range(0, a.shape[0], step):
        counts += np.bincount(a[r: r + step].ravel(), minlength=256)
    return counts


def scribbled_pixels(scribbles, *, block_pixels: int = 4_000_000):
    """Rows, columns and values of the scribbled pixels (three 1-D arrays), found block by block."""
    rows, cols, vals = [], [], []
    step = max(1, block_pixels // max(scribbles.shape[1], 1))
    for r in range(0, scribbles.shape[0], step):
        block = scribbles[r: r + step]
        ys, xs = np.nonzero(block)
        rows.append(ys + r)
        cols.append(xs)
        vals.append(block[ys, xs])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def downscale(scribbles, out_shape, n_classes: int = 255) -> np.ndarray:
    """Scribbles on a coarser grid, thin strokes kept.

    Each coarse pixel takes the class with the most scribbled pixels inside it, so a 1-px stroke
    survives any reduction. Memory follows the number of scribbled pixels, not the image size.

    Parameters
    ----------
    scribbles : ndarray of uint8, shape (H, W)
    out_shape : tuple of int (h, w), each at most (H, W)
    n_classes : int

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    if tuple(out_shape) == scribbles.shape:
        return scribbles
    H, W = scribbles.shape
    h, w = int(out_shape[0]), int(out_shape[1])
    out = np.zeros((h, w), np.uint8)
    ys, xs, vs = scribbled_pixels(scribbles)
    if not len(vs):
        return out
    cell = (ys * h // H).astype(np.int64) * w + xs * w // W
    key = cell * 256 + vs
    uniq, counts = np.unique(key, return_counts=True)
    cells, vals = uniq // 256, (uniq % 256).astype(np.uint8)
    order = np.lexsort((counts, cells))  # by cell, then count: the last of each cell has the most
    last = np.r_[cells[order][1:] != cells[order][:-1], True]
    pick = order[last]
    out.ravel()[cells[pick]] = vals[pick]
    return out
