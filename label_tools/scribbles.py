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
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import cv2

            a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if a is None:
                raise OSError("OpenCV cannot decode it")
            if a.ndim == 3:
                a = a[..., [2, 1, 0, 3][: a.shape[2]]] if a.shape[2] >= 3 else a[..., 0]
        else:
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
    a = a.astype(np.uint8)
    if n_classes is not None and a.max(initial=0) > n_classes:
        bad = sorted(int(v) for v in np.unique(a) if v > n_classes)
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


def downscale(scribbles, out_shape, n_classes: int) -> np.ndarray:
    """Scribbles on a coarser grid, thin strokes kept.

    Each coarse pixel takes the class covering most of its area among the scribbled ones, so a
    1-px stroke survives a 5x reduction.

    Parameters
    ----------
    scribbles : ndarray of uint8, shape (H, W)
    out_shape : tuple of int (h, w)
    n_classes : int

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    if tuple(out_shape) == scribbles.shape:
        return scribbles
    import cv2

    h, w = out_shape
    best = np.zeros((h, w), np.uint8)
    best_cov = np.zeros((h, w), np.float32)
    for k in np.unique(scribbles):
        if k == 0:
            continue
        cov = cv2.resize((scribbles == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        take = cov > best_cov
        best[take] = k
        best_cov[take] = cov[take]
    return best
