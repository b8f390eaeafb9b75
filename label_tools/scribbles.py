"""Scribbles: sparse label arrays, 0 = unlabelled, k = k-th class (1-based). Load, save, downscale."""
from __future__ import annotations

import numpy as np

from .errors import InputError

#: An RGB scribble pixel takes a class's colour when within this Euclidean RGB distance of it
#: (anti-aliased brush edges in paint programs are a little off the pure colour).
COLOR_TOLERANCE = 40.0


def read_scribbles(path: str, shape, *, colors=None, n_classes: int | None = None,
                   max_pixels: float | None = None, on_open=None, classes_from: str = "the labels",
                   orientation: int = 1, pages: int = 1) -> np.ndarray | None:
    """Read a scribble image.

    A single-channel PNG/TIFF holds class numbers (0 = unlabelled, k = k-th class). An RGB(A)
    image painted in the class colours (or a palette PNG) is mapped through ``colors``: each pixel
    within :data:`COLOR_TOLERANCE` of a class colour gets that class; other pixels (and
    transparent ones) are unlabelled. Read through GDAL in strips, so a 400-megapixel file needs
    little beyond the array itself; the size is checked before anything is decoded.

    Parameters
    ----------
    path : str
    shape : tuple of int (H, W), or None
        The image's shape; the scribbles must match it (None: the file's own, for a read that
        starts before the image's size is known; check it afterwards with :func:`check_shape`).
    colors : ndarray of uint8, shape (K, 3), optional
        Class colours, needed for colour scribbles.
    n_classes : int, optional
        Number of classes in the labels file; larger scribble values are an error.
    classes_from : str
        What gave ``n_classes``, for that error (``"labels file 'classes.txt'"``, ``"colours file ..."``,
        ``"--model 'm.skops'"``).
    orientation : int
        EXIF orientation the image was turned by (:attr:`label_tools.io.ImageSource.orientation`), named
        when the scribbles have the image's stored, unturned size.
    pages : int
        Images (TIFF pages) the image file holds (:attr:`label_tools.io.ImageSource.pages`); only the first is
        labelled, which a wrong size then says.
    max_pixels : float, optional
        With ``shape`` None: return None, having decoded nothing, when the file is larger.
    on_open : callable(), optional
        Called once the file is open, before anything is decoded (or before returning without
        decoding): a caller reading on a thread lets other reads start then (Python's warning
        filters, which opening sets and restores, are shared by all threads).

    Returns
    -------
    ndarray of uint8, shape (H, W), or None (see ``max_pixels``)
    """
    import os

    from .imagecheck import check_photo

    if not os.path.exists(path):
        raise InputError(f"scribble file {path!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"scribble file {path!r} is a directory; expected an image file")
    try:
        check_photo(path, what="scribble file")  # truncated / damaged PNG or JPEG: refused before decoding
    except OSError as e:
        raise InputError(f"scribble file {path!r} cannot be read ({e.strerror or e})") from None
    try:
        return _read(path, shape, colors, n_classes, max_pixels, on_open, classes_from, orientation, pages)
    except InputError:
        raise
    except Exception as e:
        if not type(e).__module__.startswith("rasterio"):
            raise
        cause = e.__cause__ or e
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise InputError(f"scribble file {path!r} cannot be read ({msg}): the file is damaged or truncated; "
                         "save it again") from None


def _read(path, shape, colors, n_classes, max_pixels=None, on_open=None, classes_from="the labels", orientation=1,
          pages=1):
    from .io import open_raster

    with open_raster(path, "scribble file") as ds:
        if on_open is not None:
            on_open()
        if shape is None:
            if max_pixels is not None and ds.height * ds.width > max_pixels:
                return None
            shape = (ds.height, ds.width)
        check_shape(path, (ds.height, ds.width), shape, orientation=orientation, pages=pages)
        interp = [ci.name for ci in ds.colorinterp]
        imagej = (ds.tags().get("TIFFTAG_IMAGEDESCRIPTION") or "").startswith("ImageJ=")
        # a label mask from ImageJ/Fiji carries its display LUT as a colour table: its values are the classes
        if ds.count == 1 and interp[0] == "palette" and not imagej:
            idx = ds.read(1)
            lut = np.zeros((256, 4), np.uint8)
            for k, v in ds.colormap(1).items():
                lut[k] = v
            return _from_colour(lut[idx], colors, path)
        if ds.count >= 3:
            rgb = np.moveaxis(ds.read(list(range(1, min(ds.count, 4) + 1))), 0, -1)
            return _from_colour(rgb, colors, path)
        kind = np.dtype(ds.dtypes[0]).kind
        if kind not in "uif":
            raise InputError(f"scribble file {path!r} holds {ds.dtypes[0]} values: expected whole class numbers")
        # strokes rasterised in a GIS: gdal_rasterize writes Float64 by default, QGIS Float32, often with a
        # declared no-data value (-9999) for the unstroked pixels; whole numbers are class numbers there too
        nodata = ds.nodata if ds.count == 1 else None
        a = np.empty(shape, np.uint8)
        step = max(1, 4_000_000 // max(ds.width, 1))
        from rasterio.windows import Window

        for r in range(0, ds.height, step):
            win = Window(0, r, ds.width, min(step, ds.height - r))
            block = ds.read(1, window=win)
            if ds.count == 2:  # grey + alpha
                block = np.where(ds.read(2, window=win) > 0, block, 0)
            none = ~np.isfinite(block) if kind == "f" else None
            if nodata is not None and not np.isnan(nodata):
                none = (block == nodata) if none is None else none | (block == nodata)
            if none is not None and none.any():
                block = np.where(none, 0, block)
            if kind == "f":
                frac = block != np.floor(block)
                if frac.any():
                    raise InputError(f"scribble file {path!r} holds values that are not whole numbers (such as "
                                     f"{float(block[frac][0]):g}): expected class numbers (0 or no-data = "
                                     "unlabelled, k = k-th class)")
            if block.dtype != np.uint8:
                if block.size and (block.min() < 0 or block.max() > 255):
                    raise InputError(f"scribble file {path!r} holds values outside 0..255: expected class numbers")
            a[r: r + block.shape[0]] = block
    present = np.nonzero(value_counts(a))[0]
    if n_classes is not None and present.max(initial=0) > n_classes:
        bad = [int(v) for v in present if v > n_classes]
        raise InputError(
            f"scribble file {path!r} has value{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))} "
            f"but {classes_from} give{'s' if classes_from != 'the labels' else ''} only {n_classes} "
            f"class{'es' if n_classes != 1 else ''} (values 1..{n_classes}; 0 = unlabelled)"
            + ("; 0-based ids with 255 = not scribbled (as Doodler's) need ids + 1 and 255 -> 0" if bad == [255] else
               ""))
    return a


def check_shape(path: str, scribble_shape, image_shape, *, orientation: int = 1, pages: int = 1) -> None:
    """Refuse scribbles of another size than the image (one line naming the file and both sizes; with the
    image's EXIF ``orientation``, that they were drawn on its unturned pixels when that is what they fit; with
    ``pages`` > 1, that only the first TIFF page is labelled)."""
    from .io import orientation_note, pages_note

    if tuple(scribble_shape) != tuple(image_shape):
        raise InputError(
            f"scribble file {path!r} is {scribble_shape[1]} x {scribble_shape[0]} px but the image is "
            f"{image_shape[1]} x {image_shape[0]} px (width x height): scribbles must be drawn on the image at its "
            "full size" + orientation_note(orientation, image_shape, scribble_shape)
            + pages_note(pages, image_shape))


def _from_colour(rgb, colors, path):
    if colors is None:
        raise InputError(f"scribble file {path!r} is in colour: give the colours file (--colors) to map it to classes")
    return scribbles_from_rgb(rgb, colors)


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

    from .files import atomic_path, write_png

    a = np.ascontiguousarray(scribbles, np.uint8)
    with atomic_path(path) as tmp:
        write_png(tmp, a, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def value_counts(a, *, block_pixels: int = 4_000_000) -> np.ndarray:
    """Histogram of a uint8 array (int64, shape (256,)), counted in row blocks so memory stays small.

    Each block is counted by OpenCV's histogram (5-9x faster than ``np.bincount``, which first
    widens the block to int64: 0.03 s per 4 MP image, and a run counts labels and scribbles about
    five times); its float32 counts are exact below 2**24 per bin, which a block never reaches.
    """
    import cv2

    a = np.asarray(a)
    counts = np.zeros(256, np.int64)
    step = max(1, min(block_pixels, 2**24) // max(a.shape[1], 1))
    for r in range(0, a.shape[0], step):
        block = a[r: r + step]
        if block.dtype == np.uint8 and block.ndim == 2:
            counts += cv2.calcHist([np.ascontiguousarray(block)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        else:
            counts += np.bincount(block.ravel(), minlength=256)
    return counts


def scribbled_pixels(scribbles, *, block_pixels: int = 4_000_000):
    """Rows, columns and values of the scribbled pixels (three 1-D arrays), found block by block."""
    rows, cols, vals = [], [], []
    step = max(1, block_pixels // max(scribbles.shape[1], 1))
    for r in range(0, scribbles.shape[0], step):
        block = scribbles[r: r + step]
        ys, xs = np.nonzero(block)
        rows.append((ys + r).astype(np.int32))
        cols.append(xs.astype(np.int32))
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
    key = ((ys.astype(np.int64) * h // H) * w + xs.astype(np.int64) * w // W) * 256 + vs
    del ys, xs
    uniq, counts = np.unique(key, return_counts=True)
    cells, vals = uniq // 256, (uniq % 256).astype(np.uint8)
    order = np.lexsort((counts, cells))  # by cell, then count: the last of each cell has the most
    last = np.r_[cells[order][1:] != cells[order][:-1], True]
    pick = order[last]
    out.ravel()[cells[pick]] = vals[pick]
    return out
