"""Pre-labels (``--init LABELS``): existing labels to start from and correct.

One rule for what is read:

* a single-channel image (PNG, TIFF or GeoTIFF) the size of the input holds **0-based class ids,
  255 = unknown** (as ``<stem>_mres_label.png``);
* label_tools' own ``<stem>_mres_geo.tif`` (class id + 1, 0 = no-data) is recognised by the
  metadata it writes (``SOFTWARE=label_tools`` and its band description);
* ``offset=1`` (``--init-offset 1``) reads other rasters whose ids start at 1, 0 = no-data;
* a raster's declared no-data value (other than 0, which ``offset`` decides) is unknown too; one that
  declares 0 as no-data with ``offset`` not given (None) is refused: its ids most likely start at 1, and
  read from 0 every class would silently become the next one;
* a georeferenced pre-label raster must lie on the image's grid (another tile of the same size is refused);
* label_tools' other outputs (probabilities, uncertainty map, overlay, autosaved scribbles) are
  refused, by name or metadata, with the file to give instead;
* a 3-channel image is a colour label image: each pixel the colour of a class (``--colors``)
  is that class, any other colour unknown;
* with an alpha channel (grey + alpha, RGBA), transparent pixels are unknown.

Fitting (:func:`weak_scribbles`): the pre-labels become *weak* scribbles (their pixels away from
label edges), the person's strokes are the *strong* ones; the model is fitted on the weak ones
first and refitted with the strokes, which drops the weak samples that the strokes contradict
(:func:`label_tools.model.drop_conflicts`), so a few corrective strokes also fix similar wrong
regions they do not touch.
"""
from __future__ import annotations

import os

import numpy as np

from .classes import MAX_CLASSES
from .errors import InputError

UNKNOWN = 255


def _read(path: str):
    """-> (array (H, W) or (H, W, C), tags dict, band description or None, declared no-data value or None,
    (crs, transform) of a georeferenced raster or None)."""
    low = path.lower()
    if low.endswith((".tif", ".tiff")):
        import warnings

        from .io import rasterio_module

        rasterio = rasterio_module()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(path) as ds:
                    a = ds.read()
                    tags = ds.tags()
                    desc = ds.descriptions[0] if ds.descriptions else None
                    nodata = ds.nodata
                    where = (ds.crs, ds.transform) if ds.crs is not None else None
        except Exception as e:
            raise InputError(f"--init {path!r}: cannot be read as a raster ({str(e).splitlines()[0]}); "
                             "give a label image (PNG, TIFF or GeoTIFF)") from None
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
        return a, tags, desc, nodata, where
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.array(im)  # a palette ("P") image gives its indices: the ids themselves
    except Exception as e:
        raise InputError(f"--init {path!r}: cannot be read as an image ({str(e).splitlines()[0]}); "
                         "give a label image (PNG, TIFF or GeoTIFF)") from None
    return a, {}, None, None, None


def read_prelabels(path: str, shape, n_classes: int | None, *, offset: int | None = 0, colors=None,
                   georef=None, orientation: int = 1, pages: int = 1, colors_from: str = "--colors") -> np.ndarray:
    """Pre-labels as 0-based class ids, 255 = unknown.

    Parameters
    ----------
    path : str
    shape : tuple (H, W)
        The input image's size.
    n_classes : int or None
        K; ids must be below it. None: K is taken as the largest id + 1.
    offset : {0, 1} or None
        1: the file's ids start at 1 and 0 is no-data. None: not said (``--init-offset`` not given): read
        as 0, but a raster declaring 0 as its no-data value is refused (its ids most likely start at 1).
    colors : ndarray of uint8, shape (K, 3), optional
        Class colours, for a 3-channel colour label image.
    colors_from : str
        Where ``colors`` came from, named when no pixel has one of them (``--colors``, or a model's).
    georef : label_tools.io.Georef, optional
        The input image's georeferencing: a georeferenced pre-label raster must lie on the same grid
        (same CRS, origin within half a pixel, same pixel size).
    orientation : int
        EXIF orientation the image was turned by, named when the file has the image's stored size.
    pages : int
        Images (TIFF pages) the image file holds (:attr:`label_tools.io.ImageSource.pages`); only the first is
        labelled, which a wrong size then says.

    Returns
    -------
    ndarray of uint8, shape (H, W)

    Raises
    ------
    InputError
        Unreadable file, another size, a colour image without colours, an id with no class.
    """
    if os.path.isdir(path):
        raise InputError(f"--init {path!r} is a directory; give the pre-label image (a label PNG, TIFF or GeoTIFF)")
    from .imagecheck import check_regular_file

    check_regular_file(path, "--init")
    if not os.path.isfile(path):
        raise InputError(f"--init {path!r}: no such file; give the pre-label image")
    from .io import check_not_empty

    check_not_empty(path, "--init")
    a, tags, desc, nodata, where = _read(path)
    _refuse_other_outputs(path, tags, desc)
    if georef is not None and where is not None and getattr(georef, "crs", None) is not None:
        check_same_grid(path, where, georef)
    check_same_points(path, georef)
    H, W = shape
    if a.shape[:2] != (H, W):
        from .io import orientation_note, pages_note

        raise InputError(f"--init {path!r}: size {a.shape[1]} x {a.shape[0]} does not match the image's "
                         f"{W} x {H}; give pre-labels made for this image"
                         + orientation_note(orientation, shape, a.shape[:2]) + pages_note(pages, shape))
    # grey + alpha or RGBA: transparent pixels are unknown (as scribbles' are unlabelled)
    alpha = a[..., -1] if a.ndim == 3 and a.shape[2] in (2, 4) else None
    if a.ndim == 3 and a.shape[2] >= 3:
        grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
        hint = ("; its three channels are equal everywhere: if it holds class ids, save it as one grey channel "
                f"(e.g. `gdal_translate -b 1 {os.path.basename(path)} ids.tif`)") if grey else ""
        if colors is None:  # equal channels: more likely class ids some tool wrote as RGB (the hint says so)
            raise InputError(f"--init {path!r}: a colour label image needs the class colours: pass --colors" + hint)
        rgb = a[..., :3] if alpha is None else np.where((alpha > 0)[..., None], a[..., :3], -1000)
        return _from_colors(rgb, np.asarray(colors, np.int32), path, colors_from=colors_from, hint=hint)
    if a.ndim == 3:
        a = a[..., 0]
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise InputError(f"--init {path!r}: holds non-integer values; give class ids")
    a = a.astype(np.int64)
    own = tags.get("SOFTWARE") == "label_tools" and (desc or "").startswith("class id + 1")
    if offset is None:
        if nodata == 0 and not own:  # read from 0, every class would silently become the next one
            raise InputError(f"--init {path!r}: declares 0 as its no-data value, so its class ids most likely "
                             "start at 1: pass --init-offset 1 (or --init-offset 0 if 0 is a class there)")
        offset = 0
    if offset == 1 and not own and os.path.basename(path).lower().endswith("_mres_label.png"):
        raise InputError(f"--init {path!r}: this is label_tools' label image, whose ids start at 0 "
                         "(255 = no-data): leave out --init-offset 1")
    if own or offset == 1:
        ids = np.where(a == 0, UNKNOWN, a - 1)
    else:
        ids = a
    if nodata is not None and np.isfinite(nodata) and nodata != 0 and a.ndim == 2:  # the raster's own no-data
        ids = np.where(a == nodata, UNKNOWN, ids)  # (0 is no-data only with --init-offset 1, as documented)
    if alpha is not None:
        ids = np.where(alpha > 0, ids, UNKNOWN)
    if (ids < 0).any():
        raise InputError(f"--init {path!r}: holds negative values; give class ids")
    known = ids[ids != UNKNOWN]
    top = int(known.max()) if known.size else -1
    if not own and (n_classes is None or top >= n_classes) and top >= INSTANCE_IDS:
        blobs = _one_blob_ids(ids)
        if blobs >= INSTANCE_IDS:
            raise InputError(
                f"--init {path!r}: holds {len(np.unique(known))} different ids, {blobs} of them a single connected "
                f"region each: an instance mask (one id per object)? --init takes class ids (0..K-1 in "
                f"labels-file order, 255 = unknown): give the class mask (e.g. background 0, objects 1), "
                f"or --labels naming every class if the ids are classes")
    if n_classes is not None and top >= n_classes:
        hint = " (ids start at 1? pass --init-offset 1)" if top == n_classes and offset == 0 and not own else ""
        raise InputError(f"--init {path!r}: holds class id {top} but there are only {n_classes} classes "
                         f"(ids 0..{n_classes - 1}, 255 = unknown){hint}")
    if top >= MAX_CLASSES:
        value = top + (1 if own or offset == 1 else 0)
        raise InputError(f"--init {path!r}: holds value {value}, class id {top}; class ids must be below "
                         f"{MAX_CLASSES} (255 = unknown{', 0 = no-data with --init-offset 1' if offset else ''})"
                         + ("; if 255 marks unknown pixels here, leave out --init-offset 1" if offset and value == 255
                            else ""))
    return ids.astype(np.uint8)


#: An --init file with this many ids or more that are each one connected region (and no labels file naming
#: as many classes) is taken for an instance mask (nuclei, cells, trees: one id per object) and refused.
INSTANCE_IDS = 24


def _one_blob_ids(ids) -> int:
    """How many ids of ``ids`` (int (H, W), 255 = unknown) other than the largest form one 8-connected region."""
    from scipy import ndimage as ndi

    counts = np.bincount(ids.ravel(), minlength=UNKNOWN + 1)
    counts[UNKNOWN] = 0
    largest = int(np.argmax(counts))
    n = 0
    for k, box in enumerate(ndi.find_objects(ids + 1)):  # label k + 1 = id k
        if box is None or k in (largest, UNKNOWN):
            continue
        if ndi.label(ids[box] == k, structure=np.ones((3, 3)))[1] == 1:
            n += 1
    return n


def check_same_grid(path, where, georef, *, option="--init", what="pre-labels"):
    """Refuse a georeferenced raster of the image's size that lies elsewhere (another tile, another
    CRS): its labels would be laid on the wrong ground.

    Parameters
    ----------
    path : str
    where : (crs, affine.Affine)
        The raster's CRS and transform.
    georef : label_tools.io.Georef
        The image's.
    option, what : str
        For the message (``--scribbles``, ``scribbles``).
    """
    crs, t = where
    g = georef.transform
    same_size = abs(t.a - g.a) <= 1e-6 * abs(g.a) and abs(t.e - g.e) <= 1e-6 * abs(g.e) and \
        abs(t.b - g.b) <= 1e-6 * abs(g.a) and abs(t.d - g.d) <= 1e-6 * abs(g.e)
    near = abs(t.c - g.c) <= 0.5 * abs(g.a) and abs(t.f - g.f) <= 0.5 * abs(g.e)
    height = (georef.profile or {}).get("height")
    if crs == georef.crs and height and g.b == 0 and g.d == 0 and t.b == 0 and t.d == 0 and \
            abs(t.a - g.a) <= 1e-6 * abs(g.a) and abs(t.e + g.e) <= 1e-6 * abs(g.e) and \
            abs(t.c - g.c) <= 0.5 * abs(g.a) and abs(t.f - (g.f + g.e * height)) <= 0.5 * abs(g.e):
        # the image's ground with its rows the other way: a north-down raster (pixel height > 0) and strokes
        # rasterised north-up (gdal_rasterize and QGIS write nothing else); "lies elsewhere" was untrue
        def runs(e):
            return "north-up (top row north)" if e < 0 else "north-down (top row south)"

        raise InputError(f"{option} {path!r}: covers the image's ground but upside down on its grid: its rows run "
                         f"{runs(t.e)}, pixel height {t.e:g}, the image's {runs(g.e)}, {g.e:g}; turn it over to the "
                         f"image's row order (rows reversed, the image's transform), or draw the {what} on the "
                         "image's pixels (the annotator, or a paint program) and give them as a PNG")
    if crs != georef.crs or not (same_size and near):
        raise InputError(f"{option} {path!r}: lies elsewhere than the image (its CRS {crs.to_string()}, origin "
                         f"{t.c:.10g}, {t.f:.10g}, pixel {t.a:.6g} x {t.e:.6g}; the image's {georef.crs.to_string()}, "
                         f"{g.c:.10g}, {g.f:.10g}, {g.a:.6g} x {g.e:.6g}); give {what} made for this image")


def check_same_points(path, georef, *, option="--init", what="pre-labels"):
    """For an image placed by ground control points alone: refuse a GeoTIFF of its size that lies
    elsewhere (another frame's GCPs, or a map grid), as :func:`check_same_grid` does for map grids.

    A raster without any placement is taken as drawn on the image's pixels.
    """
    if georef is None or not getattr(georef, "gcps", None) or not str(path).lower().endswith((".tif", ".tiff")):
        return
    import warnings

    from .io import rasterio_module

    rasterio = rasterio_module()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as ds:
                crs, transform, (points, pcrs) = ds.crs, ds.transform, ds.gcps
    except Exception:  # unreadable: the reader says what is wrong
        return
    own, own_crs = georef.gcps
    if crs is not None or not transform.is_identity:
        raise InputError(f"{option} {path!r}: lies on a map grid ({crs.to_string() if crs else 'a transform'}) but "
                         f"the image is placed by {len(own)} ground control points alone: give {what} drawn on "
                         "the image's own pixels")
    if not points:
        return
    a, b = (sorted(pts, key=lambda p: (p.row, p.col)) for pts in (points, own))
    span = max(1.0, *(abs(p.x) + abs(p.y) for p in b))
    same = len(a) == len(b) and (pcrs is None or own_crs is None or pcrs == own_crs) and all(
        abs(p.row - q.row) <= 0.5 and abs(p.col - q.col) <= 0.5 and abs(p.x - q.x) <= 1e-6 * span
        and abs(p.y - q.y) <= 1e-6 * span for p, q in zip(a, b))
    if not same:
        raise InputError(f"{option} {path!r}: is placed by other ground control points than the image ({len(a)} "
                         f"against the image's {len(b)}, not at the same places): give {what} made for this image")


#: label_tools' outputs that are not label images, by name: what they are.
NOT_LABELS = {"_uncertainty.png": "uncertainty map", "_uncertainty.tif": "uncertainty map",
              "_probs.tif": "class-probability raster", "_mres.png": "overlay figure",
              "_scribbles.png": "autosaved scribbles (class k = value k, 0 = none)"}


def _refuse_other_outputs(path, tags, desc):
    """label_tools' probabilities, uncertainty map, overlay or autosaved scribbles given as --init
    (each would be read as some hundred classes or mis-shifted ids): one line saying which file to give."""
    low = os.path.basename(path).lower()
    what = next((w for suffix, w in NOT_LABELS.items() if low.endswith(suffix)), None)
    if what is None and tags.get("SOFTWARE") == "label_tools" and not (desc or "").startswith("class id + 1"):
        what = "uncertainty map" if (desc or "").startswith("uncertainty") else "class-probability raster"
    if what is None:
        return
    if what.startswith("autosaved"):
        raise InputError(f"--init {path!r}: this is label_tools' {what}, not pre-labels: give it with --scribbles")
    suffix = next((x for x in NOT_LABELS if low.endswith(x)), None)
    if suffix is not None:  # the same run's label image beside it, when it is there: name it
        base = path[:len(path) - len(suffix)]
        found = [base + x for x in ("_mres_label.png", "_mres_geo.tif") if os.path.isfile(base + x)]
        if found:
            raise InputError(f"--init {path!r}: this is label_tools' {what}, not a label image: give the same run's "
                             f"label image, {found[0]!r}")
    raise InputError(f"--init {path!r}: this is label_tools' {what}, not a label image: give the same run's "
                     "<stem>_mres_label.png (or <stem>_mres_geo.tif)")


def own_classes(path: str):
    """The classes of label_tools' own ``<stem>_mres_geo.tif``, read back from its metadata.

    :func:`label_tools.writers.write_geotiff` stores the class names in labels-file order as band
    tags ``CLASS_1 .. CLASS_K`` (so K counts classes no pixel has) and their colours as the colour
    table (entry ``i + 1`` = class ``i``).

    Parameters
    ----------
    path : str

    Returns
    -------
    label_tools.classes.Classes or None
        None for any other file (not a TIFF, not written by label_tools, or without the tags).
    """
    if not path.lower().endswith((".tif", ".tiff")) or not os.path.isfile(path):
        return None
    import warnings

    from .classes import Classes, default_colors
    from .io import rasterio_module

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio_module().open(path) as ds:
                if ds.count != 1 or ds.tags().get("SOFTWARE") != "label_tools" or \
                        not (ds.descriptions[0] or "").startswith("class id + 1"):
                    return None
                band = ds.tags(1)
                try:
                    cmap = ds.colormap(1)
                except ValueError:  # no colour table
                    cmap = {}
    except Exception:
        return None  # read_prelabels says what is wrong with the file
    names = []
    while f"CLASS_{len(names) + 1}" in band:
        names.append(band[f"CLASS_{len(names) + 1}"])
    if not names:
        return None
    colors = default_colors(len(names))
    for i in range(len(names)):
        if i + 1 in cmap:
            colors[i] = cmap[i + 1][:3]
    return Classes(tuple(names), colors)


def check_own_classes(path: str, own, names, *, given: str):
    """Refuse class names that do not begin with the classes label_tools' own ``_mres_geo.tif`` was
    written with (``own``, from :func:`own_classes`): its ids mean those classes, in that order, and
    read with other names each pixel would silently change class (or, with fewer, an id would have none).

    Parameters
    ----------
    path : str
        The ``--init`` file.
    own : label_tools.classes.Classes or None
        Its classes (None: not label_tools' own file; nothing to check).
    names : sequence of str
        The class names of the run; new classes may follow the file's.
    given : str
        Where ``names`` come from, for the message (``"--labels 'two.txt'"``, ``"the model (--model 'm')"``).
    """
    if own is None or tuple(names[:len(own)]) == tuple(own.names):
        return
    fix = ("give pre-labels written with the model's classes, or leave out --model" if given.startswith("the model")
           else "pass --labels with the file's classes in that order (new classes after them), or leave out "
                "--labels to use them")
    raise InputError(f"--init {path!r} was written with the classes {', '.join(own.names)} (ids 0..{len(own) - 1}) "
                     f"but {given} names {', '.join(names)}: {fix}")


def _from_colors(rgb, colors, path, *, colors_from="--colors", hint=""):
    flat = rgb.reshape(-1, 3).astype(np.int32)
    out = np.full(len(flat), UNKNOWN, np.uint8)
    d = np.stack([np.abs(flat - c).sum(axis=1) for c in colors])  # (K, N)
    best = d.argmin(axis=0)
    ok = d[best, np.arange(len(flat))] <= 24
    out[ok] = best[ok]
    if not ok.any():
        raise InputError(f"--init {path!r}: no pixel has one of the class colours of {colors_from}; check "
                         + ("the colours file" if colors_from == "--colors" else "that it was made with these classes")
                         + hint)
    return out.reshape(rgb.shape[:2])


def weak_scribbles(prelabels, scribbles=None, *, margin: int = 3, guard: int = 2) -> np.ndarray:
    """Pre-labels as weak scribbles: each class's pixels ``margin`` px away from its edges.

    Parameters
    ----------
    prelabels : ndarray of uint8, shape (H, W)
        0-based ids, 255 = unknown.
    scribbles : ndarray of uint8, shape (H, W), optional
        The person's strokes: weak scribbles are cleared under them and ``guard`` px around.
    margin : int
        Edge pixels left out (pre-labels are least sure at edges).

    Returns
    -------
    ndarray of uint8, shape (H, W): 0 = none, k = class k-1.
    """
    import cv2

    out = np.zeros(prelabels.shape, np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    for k in np.unique(prelabels):
        if k == UNKNOWN:
            continue
        m = (prelabels == k).astype(np.uint8)
        inner = cv2.erode(m, kernel) > 0 if margin > 0 else m > 0
        if not inner.any():
            inner = m > 0  # a thin class keeps its pixels
        out[inner] = k + 1
    if scribbles is not None and scribbles.any():
        g = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * guard + 1, 2 * guard + 1))
        out[cv2.dilate((scribbles > 0).astype(np.uint8), g) > 0] = 0
    return out


def stroke_corrections(prelabels, scribbles, *, margin: int = 3, min_pixels: int = 5) -> set:
    """The corrections the strokes show: (pre-label class, stroke class) pairs.

    A stroke of class B drawn inside a region the pre-labels give class A (at least ``min_pixels``
    stroke pixels ``margin`` px or more inside it, so a brush spilling over a pre-label edge does
    not count) says "A there is wrong, it is B". Only such corrections replace pre-labels away from
    the strokes (:func:`correction_zone`): pre-labels the person did not correct are kept.

    Parameters
    ----------
    prelabels : ndarray of uint8, shape (H, W)
        0-based ids, 255 = unknown.
    scribbles : ndarray of uint8, shape (H, W) or None
        0 = none, k = class k-1.

    Returns
    -------
    set of (int, int)
    """
    import cv2

    if scribbles is None or not np.any(scribbles):
        return set()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    out = set()
    for a in np.unique(prelabels[scribbles > 0]):
        if a == UNKNOWN:
            continue
        inner = cv2.erode((prelabels == a).astype(np.uint8), kernel) > 0
        strokes = scribbles[inner]
        counts = np.bincount(strokes[strokes > 0], minlength=256)
        for b in np.flatnonzero(counts >= min_pixels):
            if int(b) - 1 != int(a):
                out.add((int(a), int(b) - 1))
    return out


def correction_zone(labels, prelabels, scribbles=None, *, radius: int, corrections=None) -> np.ndarray:
    """Where the model's labels replace the pre-labels.

    The model (fitted on the pre-labels as weak labels and the strokes as strong ones) and the
    pre-labels disagree in two ways: thin bands along the pre-labels' edges (the model places an
    edge a pixel or two elsewhere: the pre-labels' own edge is kept) and whole regions (an object
    missing or in the wrong class: the model's region replaces it). A region of disagreement
    counts when it holds a disc of ``radius`` px (a morphological opening keeps something of it)
    and is a correction the strokes show (``corrections``), or when a stroke of another class
    than its pre-label touches it; then all of it, edges included, goes to the model. Pixels with
    unknown pre-labels always go to the model.

    Parameters
    ----------
    labels : ndarray of uint8, shape (H, W)
        The model's labels (0-based, 255 = no-data).
    prelabels : ndarray of uint8, shape (H, W)
        0-based ids, 255 = unknown.
    scribbles : ndarray of uint8, shape (H, W), optional
        The strokes (0 = none, k = class k-1).
    radius : int
        In full-resolution pixels (>= 1).
    corrections : set of (int, int), optional
        Only disagreements of these (pre-label, model label) pairs count away from the strokes
        (:func:`stroke_corrections`); None: every disagreement counts. A region touched by a stroke
        of another class than its pre-label counts whatever its pair.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    import cv2
    from scipy import ndimage as ndi

    differ = (labels != prelabels) & (labels != UNKNOWN)
    unknown = prelabels == UNKNOWN
    if not differ.any():
        return unknown
    allowed = differ
    if corrections is not None:
        lut = np.zeros((256, 256), bool)
        for a, b in corrections:
            lut[a, b] = True
        allowed = differ & lut[prelabels, labels]
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    seeds = cv2.morphologyEx(allowed.astype(np.uint8), cv2.MORPH_OPEN, k) > 0
    regions, _ = ndi.label(allowed, structure=np.ones((3, 3), bool))
    keep = np.unique(regions[seeds])
    zone = np.isin(regions, keep[keep > 0])
    # a region a stroke contradicting the pre-label touches: all of it (a stroke that agrees with the
    # pre-label there confirms it)
    fix = differ & (scribbles > 0) & (scribbles.astype(np.int16) - 1 != prelabels) if scribbles is not None else None
    if fix is not None and fix.any():
        touched, _ = ndi.label(differ, structure=np.ones((3, 3), bool))
        hit = np.unique(touched[fix])
        zone |= np.isin(touched, hit[hit > 0])
    return zone | unknown


def zone_radius(full_shape, grid_shape) -> int:
    """Disagreement thinner than two model-grid cells is edge placement (see :func:`correction_zone`).

    Returns
    -------
    int: ``ceil(2 x full-resolution pixels per grid pixel)``, at least 2.
    """
    import math

    step = max(full_shape[0] / max(grid_shape[0], 1), full_shape[1] / max(grid_shape[1], 1))
    return max(2, int(math.ceil(2 * step)))


def keep_prelabels(probs, labels, prelabels, zone, *, trust: float):
    """One tile of the result: the model's probabilities in the correction zone, the pre-labels' elsewhere.

    Outside the zone the probabilities become ``trust * onehot(prelabel) + (1 - trust) * probs``
    (``trust`` > 0.5 keeps the pre-label the argmax, and the model's doubt shows as uncertainty).

    Parameters
    ----------
    probs : ndarray of float32, shape (K, h, w)
        The model's (calibrated) probabilities; modified in place.
    labels : ndarray of uint8, shape (h, w)
        Their argmax, 255 = no-data; modified in place.
    prelabels : ndarray of uint8, shape (h, w)
    zone : ndarray of bool, shape (h, w)
    trust : float in (0.5, 1]

    Returns
    -------
    (probs, labels), the same arrays.
    """
    keep = ~zone & (labels != UNKNOWN) & (prelabels != UNKNOWN)
    if keep.any():
        rr, cc = np.nonzero(keep)
        pk = probs[:, rr, cc] * np.float32(1 - trust)
        pk[prelabels[rr, cc].astype(np.intp), np.arange(len(rr))] += np.float32(trust)
        probs[:, rr, cc] = pk
        labels[rr, cc] = prelabels[rr, cc]
    return probs, labels
