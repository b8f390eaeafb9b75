"""Outputs of a labelling run, each written atomically (temp file + rename).

File names follow dl_tools, whose users' scripts look for them:

===============================  ==================================================================
``<stem>_mres.png``              figure: image | image + scribbles | image + labels, with a legend
``<stem>_mres_label.png``        uint8 grey, value = class id (0-based), 255 = no-data
``<stem>_mres.mat``              ``sparse``, ``class``, ``labels``, ``colors``, ``preds``
``<stem>_report.txt``            class proportions, times, settings, versions
``<stem>_mres_geo.tif``          GeoTIFF input only: uint8, class id + 1, 0 = no-data, colour table
``<stem>_mres_geo.tif.aux.xml``  beside it: the class names as GDAL category names (GDAL, QGIS)
===============================  ==================================================================
"""
from __future__ import annotations

import os
import platform

import numpy as np

from .files import atomic_path, write_png

OVERLAY_MAX_SIDE = 1200  # longest side of each figure panel, pixels
NODATA = 255


def output_paths(outdir: str, stem: str, *, geotiff: bool = False, probs: bool = False) -> dict:
    """Paths of every file a run writes, by kind: overlay, label, mat, report (and geotiff with its
    ``.aux.xml`` sidecar, geotiff_aux; and with ``probs`` the probability GeoTIFF and uncertainty map(s)).

    The sidecar is a kind of its own so that the run lists it among the files it wrote, refuses to
    replace one that exists without ``--overwrite`` and commits it with the rest of the set."""
    p = {
        "overlay": os.path.join(outdir, f"{stem}_mres.png"),
        "label": os.path.join(outdir, f"{stem}_mres_label.png"),
        "mat": os.path.join(outdir, f"{stem}_mres.mat"),
        "report": os.path.join(outdir, f"{stem}_report.txt"),
    }
    if geotiff:
        p["geotiff"] = os.path.join(outdir, f"{stem}_mres_geo.tif")
        p["geotiff_aux"] = p["geotiff"] + ".aux.xml"
    if probs:
        p["probs"] = os.path.join(outdir, f"{stem}_probs.tif")
        p["uncertainty"] = os.path.join(outdir, f"{stem}_uncertainty.png")
        if geotiff:
            p["uncertainty_tif"] = os.path.join(outdir, f"{stem}_uncertainty.tif")
    return p


def write_label_png(path: str, labels):
    """Single-channel uint8 PNG of ``labels`` (H, W): class ids, 255 = no-data."""
    a = np.ascontiguousarray(labels, np.uint8)
    with atomic_path(path) as tmp:
        write_png(tmp, a)


def colorize(labels, colors) -> np.ndarray:
    """labels uint8 (H, W) -> RGB uint8 (H, W, 3) in the class colours; no-data black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(colors)] = colors
    return lut[labels]


def _shrink(a, shape, nearest):
    import cv2

    if a.shape[:2] == tuple(shape):
        return a
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(a, (shape[1], shape[0]), interpolation=interp)


def overlay_shape(shape, max_side=OVERLAY_MAX_SIDE):
    h, w = shape
    f = min(1.0, max_side / max(h, w))
    return max(1, int(round(h * f))), max(1, int(round(w * f)))


def write_overlay(path: str, image_rgb, scribbles, labels, classes, *, alpha: float = 0.45, title: str = ""):
    """Figure of three panels (image | image + scribbles | image + labels) and a class legend, as PNG.

    Drawn with OpenCV: a 12-megapixel result is composed and written in well under a second.

    Parameters
    ----------
    image_rgb : ndarray of uint8, shape (h, w, 3)
        The image, already reduced to figure size (see :func:`overlay_shape`).
    scribbles : ndarray of uint8, shape (H, W)
        Full-size scribbles (reduced here with a per-class max so thin strokes stay visible).
    labels : ndarray of uint8, shape (H, W)
    classes : label_tools.classes.Classes
    """
    import cv2

    from .scribbles import downscale

    h, w = image_rgb.shape[:2]
    scr = downscale(scribbles, (h, w))  # every stroke stays visible however small the figure
    lab = _shrink(labels, (h, w), nearest=True)
    img = image_rgb.astype(np.float32)
    blend = img * (1 - alpha) + colorize(lab, classes.colors).astype(np.float32) * alpha
    nod = lab == NODATA
    blend[nod] = img[nod]
    withscr = image_rgb.copy()
    m = scr > 0
    withscr[m] = colorize(scr - 1, classes.colors)[m]
    panels = [(image_rgb, "image"), (withscr, "scribbles"), (blend.astype(np.uint8), "labels")]

    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, max(0.5, w / 900), max(1, int(w / 700))
    line_h = int(32 * fs) + 8
    gap = max(8, w // 80)
    head = line_h * (2 if title else 1)
    # legend: colour box + name per class, wrapped over as many rows as needed
    items, row_w, rows = [], 0, 1
    for name in classes.names:
        tw = cv2.getTextSize(name, font, fs, th)[0][0] + line_h + 2 * gap
        if row_w + tw > 3 * w + 2 * gap and row_w:
            rows, row_w = rows + 1, 0
        items.append((rows - 1, row_w, name))
        row_w += tw
    canvas = np.full((head + h + gap + rows * line_h + gap, 3 * w + 4 * gap, 3), 255, np.uint8)
    if title:
        cv2.putText(canvas, title, (gap, line_h - 8), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    for i, (im, name) in enumerate(panels):
        x = gap + i * (w + gap)
        canvas[head: head + h, x: x + w] = im
        cv2.putText(canvas, name, (x, head - 8), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    y0 = head + h + gap
    for (r, x, name), color in zip(items, classes.colors):
        y = y0 + r * line_h
        box = line_h - 10
        cv2.rectangle(canvas, (gap + x, y), (gap + x + box, y + box), tuple(int(c) for c in color), -1)
        cv2.rectangle(canvas, (gap + x, y), (gap + x + box, y + box), (0, 0, 0), 1)
        cv2.putText(canvas, name, (gap + x + box + gap // 2, y + box - 2), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        write_png(tmp, np.ascontiguousarray(canvas[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])


def write_mat(path: str, *, scribbles, labels, classes, probs, extra: dict | None = None):
    """MATLAB file read back by ``scipy.io.loadmat``.

    Keys: ``sparse`` uint8 (H, W) scribbles, 0 = unlabelled, k = class k (1-based); ``class``
    uint8 (H, W) labels, 0-based, 255 = no-data; ``labels`` cell of the K class names; ``colors``
    uint8 (K, 3) RGB; ``preds`` float32 (K, h, w) class probabilities at the CRF's resolution (the
    forest's when the CRF is off). Compressed. ``extra``: more named arrays (``--save-probs`` adds
    ``probs`` float32 (K, h, w) and ``uncertainty`` float32 (h, w), see :class:`ProbabilityWriter`).

    The two image-sized matrices are compressed column block by column block, so writing a
    400-megapixel result needs a few MB beyond the arrays themselves. Every matrix is compressed at
    zlib level 1 (:data:`MAT_ZLEVEL`).
    """
    arrays = {"colors": np.asarray(classes.colors, np.uint8), "preds": np.asarray(probs, np.float32),
              **(extra or {})}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _write_mat_arrays(f, arrays)
        _write_mat_names(f, "labels", classes.names)
        _write_mat_uint8(f, "sparse", scribbles)
        _write_mat_uint8(f, "class", labels)


_MI_INT8, _MI_UINT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 2, 5, 6, 14, 15
_MI_UTF8, _MI_UTF16 = 16, 17
_MX_CELL_CLASS, _MX_CHAR_CLASS, _MX_UINT8_CLASS = 1, 4, 9
# zlib level of the .mat's matrices. scipy's savemat compresses at zlib's default, 6; with --save-probs
# at 100 MP (2 classes) that took 2.6 s for the probabilities and uncertainty on their 4 MP grid and the
# CRF's, and 1.1 s for the two image-sized uint8 matrices, against 0.7 s and 0.5 s at level 1 (the whole
# run 29-30 s instead of 35-40 s with the GeoTIFFs' level below), for a file 40 % larger (25 MB, not 18 MB).
MAT_ZLEVEL = 1


def _write_mat_arrays(f, arrays: dict):
    """Write a MAT 5 file's header and ``arrays`` (name -> ndarray) to the empty open file ``f``.

    Each matrix is encoded by scipy's ``savemat`` (uncompressed) and stored as one compressed element
    at :data:`MAT_ZLEVEL`, as ``savemat(..., do_compression=True)`` would store it at level 6.
    """
    import io
    import struct
    import zlib

    from scipy.io import savemat

    for i, (name, a) in enumerate(arrays.items()):
        buf = io.BytesIO()
        savemat(buf, {name: a}, do_compression=False)
        raw = buf.getbuffer()
        if i == 0:
            f.write(raw[:128])  # the file header: text, version, byte order
        data = zlib.compress(raw[128:], MAT_ZLEVEL)
        f.write(struct.pack("<II", _MI_COMPRESSED, len(data)))
        f.write(data)


def _write_mat_names(f, name: str, names):
    """Append a 1 x K cell of strings to an open MAT 5 file, each string as UTF-16 characters.

    scipy writes strings as UTF-8 bytes under a character count (``miUTF8``): MATLAB and scipy decode
    them, but GNU Octave reads the bytes as characters and cut a non-ASCII class name short
    ("wåter (deep" for "wåter (deep)"; "水" lost). UTF-16 (``miUTF16``, as MATLAB and Octave write
    strings themselves) reads back whole in all three. A name with a character beyond the BMP (an
    emoji) is written as scipy writes it, which scipy cannot read as UTF-16.
    """
    import struct

    pad = lambda n: (8 - n % 8) % 8  # noqa: E731

    def matrix(flags_class, dims, nm, data=b""):
        body = b"".join([struct.pack("<II", _MI_UINT32, 8), struct.pack("<II", flags_class, 0),
                         struct.pack("<II", _MI_INT32, 4 * len(dims)), struct.pack(f"<{len(dims)}i", *dims),
                         b"\0" * pad(4 * len(dims)),
                         struct.pack("<II", _MI_INT8, len(nm)), nm, b"\0" * pad(len(nm)), data])
        return struct.pack("<II", _MI_MATRIX, len(body)) + body

    cells = []
    for n in map(str, names):
        if all(ord(c) < 0x10000 for c in n):
            data, mi, count = n.encode("utf-16-le"), _MI_UTF16, len(n)
        else:  # beyond the BMP (an emoji): scipy cannot read it as UTF-16 surrogate pairs; as scipy writes it
            data, mi, count = n.encode("utf-8"), _MI_UTF8, len(n)
        cells.append(matrix(_MX_CHAR_CLASS, (1, count), b"", struct.pack("<II", mi, len(data)) + data
                            + b"\0" * pad(len(data))))
    f.write(matrix(_MX_CELL_CLASS, (1, len(cells)), name.encode("ascii"), b"".join(cells)))


def _write_mat_uint8(f, name: str, a, *, block_bytes: int = 8 << 20):
    """Append a 2-D uint8 matrix to an open MAT 5 file as one compressed element, streamed."""
    import struct
    import zlib

    a = np.asarray(a, np.uint8)
    rows, cols = a.shape
    nbytes = rows * cols
    pad = lambda n: (8 - n % 8) % 8  # noqa: E731
    nm = name.encode("ascii")
    header = b"".join([
        struct.pack("<II", _MI_UINT32, 8), struct.pack("<II", _MX_UINT8_CLASS, 0),       # array flags
        struct.pack("<II", _MI_INT32, 8), struct.pack("<ii", rows, cols),                # dimensions
        struct.pack("<II", _MI_INT8, len(nm)), nm, b"\0" * pad(len(nm)),                 # name
        struct.pack("<II", _MI_UINT8, nbytes),                                           # data tag
    ])
    body_len = len(header) + nbytes + pad(nbytes)
    comp = zlib.compressobj(MAT_ZLEVEL)
    tag_pos = f.tell()
    f.write(struct.pack("<II", _MI_COMPRESSED, 0))  # size patched below
    written = f.write(comp.compress(struct.pack("<II", _MI_MATRIX, body_len) + header))
    step = max(1, block_bytes // max(rows, 1))
    import cv2

    for c in range(0, cols, step):
        # column-major: OpenCV's transpose of a uint8 block is ten times NumPy's copy of a.T (100 MP: 0.06 s, 0.7 s)
        written += f.write(comp.compress(cv2.transpose(a[:, c: c + step]).tobytes()))
    written += f.write(comp.compress(b"\0" * pad(nbytes)))
    written += f.write(comp.flush())
    end = f.tell()
    f.seek(tag_pos)
    f.write(struct.pack("<II", _MI_COMPRESSED, written))
    f.seek(end)


def class_counts(labels, n_classes: int) -> np.ndarray:
    """Pixels per class (int64, shape (K,)), no-data excluded."""
    from .scribbles import value_counts

    return value_counts(labels)[:n_classes]


def versions() -> dict:
    import cv2
    import scipy
    import sklearn

    from . import __version__

    out = {"label_tools": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "scikit-learn": sklearn.__version__, "opencv": cv2.__version__}
    try:
        from importlib.metadata import version

        out["pydensecrf2"] = version("pydensecrf2")
    except Exception:
        pass
    try:
        from .io import rasterio_module

        rasterio = rasterio_module()
        out["rasterio"] = rasterio.__version__
        out["gdal"] = rasterio.__gdal_version__
    except Exception:
        pass
    return out


def write_report(path: str, *, image_path, shape, classes, labels, annotation_seconds, processing_seconds,
                 settings: dict, georef=None, n_bands=None, extra: dict | None = None, notes: list | None = None):
    """Plain-text report: one line per class ``<name>: <fraction> (<pixels> px)``, fractions summing to 1.

    With a projected CRS (``georef``), each class line adds its area in m² and ha. ``notes``: more
    text lines (uncertainty, ``warning:`` lines) placed before the settings.
    """
    counts = class_counts(labels, len(classes))
    total = int(counts.sum())
    lines = ["label_tools report", "", f"image: {os.path.abspath(image_path)}",
             f"size: {shape[1]} x {shape[0]} px (width x height)" + (f", {n_bands} band(s)" if n_bands else "")]
    nodata = int(labels.size - total)
    if nodata:
        lines.append(f"no-data: {nodata} px (excluded from the fractions)")
    area = None
    if georef is not None:
        lines.append(f"crs: {georef.crs.to_string() if georef.crs is not None else 'none'}")
        if getattr(georef, "gcps", None):
            gcps, gcrs = georef.gcps
            lines.append(f"ground control points: {len(gcps)} ({gcrs.to_string() if gcrs else 'no crs'}), "
                         "copied to the output rasters")
        if getattr(georef, "rpcs", None):
            lines.append("rational polynomial coefficients (RPCs): copied to the output rasters")
        lines.append(f"transform: {tuple(georef.transform)[:6]}")
        px = georef.pixel_area()
        f = georef.linear_units_factor
        if px is not None and f is not None:
            area = px * f * f  # square metres per pixel
    lines += ["", "classes (fraction of labelled pixels):"]
    for name, c in zip(classes.names, counts):
        frac = c / total if total else 0.0
        line = f"{name}: {frac:.6f} ({int(c)} px)"
        if area is not None:
            line += f" {c * area:.1f} m2 {c * area / 1e4:.4f} ha"
        lines.append(line)
    lines += ["", f"annotation time: {annotation_seconds:.1f} s", f"processing time: {processing_seconds:.1f} s"]
    for k, v in (extra or {}).items():
        lines.append(f"{k}: {v}")
    if notes:
        lines += [""] + list(notes)
    lines += ["", "settings:"] + [f"  {k}: {v}" for k, v in settings.items()]
    lines += ["", "versions:"] + [f"  {k}: {v}" for k, v in versions().items()]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_geotiff(path: str, labels, georef, classes, *, aux_path: str | None = None, block: int = 512):
    """One-band uint8 GeoTIFF on the source's grid: class id + 1, 0 = no-data.

    The profile is the source's with only what differs changed (driver, count, dtype, nodata,
    compression, tiling), so CRS, transform, width and height are kept exactly. A colour table
    and the class names (band metadata and a GDAL ``.aux.xml`` category list) go with it.

    Parameters
    ----------
    labels : ndarray of uint8, shape (H, W)
        0-based class ids, 255 = no-data.
    georef : label_tools.io.Georef
    aux_path : str, optional
        Where the category sidecar goes (default ``path + ".aux.xml"``, where GDAL looks for it).
    """
    from rasterio.windows import Window

    from .io import rasterio_module

    rasterio = rasterio_module()
    prof = dict(georef.profile)
    for k in ("blockxsize", "blockysize", "interleave", "photometric", "compress", "predictor", "tiled"):
        prof.pop(k, None)
    prof.update(driver="GTiff", count=1, dtype="uint8", nodata=0, compress="deflate", tiled=True,
                blockxsize=256, blockysize=256)
    prof = _without_transform(prof, georef)
    h, w = labels.shape
    if (prof["height"], prof["width"]) != (h, w):
        raise ValueError(f"labels {labels.shape} do not match the raster's {prof['height']} x {prof['width']}")
    lut = np.zeros(256, np.uint8)
    lut[: len(classes)] = np.arange(1, len(classes) + 1)  # id -> id + 1; 255 (no-data) -> 0
    cmap = {0: (0, 0, 0, 0)}
    cmap.update({i + 1: tuple(int(v) for v in c) + (255,) for i, c in enumerate(classes.colors)})
    with atomic_path(path) as tmp:
        with _create(rasterio, tmp, prof) as dst:
            _copy_gcps(dst, georef)
            dst.write_colormap(1, cmap)  # before the pixels: GDAL sets the palette tag only then
            for r in range(0, h, block):
                rows = labels[r: r + block]
                dst.write(lut[rows][None], window=Window(0, r, w, rows.shape[0]))
            dst.set_band_description(1, "class id + 1 (0 = no-data)")
            dst.update_tags(1, **{f"CLASS_{i + 1}": n for i, n in enumerate(classes.names)})
            dst.update_tags(CLASS_NAMES=",".join(classes.names), SOFTWARE="label_tools")
    _write_category_aux(aux_path or path + ".aux.xml", ["no-data"] + list(classes.names))


def _write_category_aux(path, names):
    """GDAL PAM sidecar with the band's category names (GeoTIFF has no tag for them)."""
    from xml.sax.saxutils import escape

    cats = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    xml = ('<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n' + cats
           + "    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(xml)


def _write_figure(path, src, scribbles, labels, classes, grid_display=None):
    from .io import stem

    small = overlay_shape(src.shape)
    if grid_display is not None and grid_display.shape[0] <= small[0]:
        base = grid_display  # the model grid is coarser than the figure: no new read of a large image
    else:
        base = src.read_display(out_shape=small)
    # one plane of a stack (--plane): its tag too, as in the file names (<stem>_z03_t02), so figures of two planes differ
    plane = getattr(src, "plane", None)
    suffix = (plane.get("suffix") or "") if isinstance(plane, dict) else ""
    write_overlay(path, base, scribbles, labels, classes, title=stem(src.path) + suffix)


def write_outputs(paths: dict, src, scribbles, result, classes, *, report_settings: dict, annotation_seconds: float,
                  processing_seconds: float, notes: list | None = None, probs_writer=None):
    """Write every output of one image to ``paths`` (the staging paths of a ``files.output_set``).

    Parameters
    ----------
    paths : dict of str -> str
        By kind, as :func:`output_paths` gives them.
    src : ImageSource
    scribbles : ndarray of uint8, shape (H, W), or None
        None (a model applied without scribbles) is written as all-unlabelled.
    result : pipeline.Result
    classes : Classes
    report_settings : dict
        The ``settings`` section of the report.
    notes : list of str, optional
        Report lines before the settings (uncertainty summary, ``warning:`` lines).
    probs_writer : ProbabilityWriter, optional
        With ``--save-probs``: its GeoTIFF is moved to ``paths["probs"]``, the uncertainty map
        written to ``paths["uncertainty"]`` (and ``paths["uncertainty_tif"]``), and the .mat gains
        ``probs`` and ``uncertainty``.
    """
    from concurrent.futures import ThreadPoolExecutor

    if scribbles is None:
        scribbles = np.zeros(src.shape, np.uint8)
    notes = list(notes or [])
    mat_extra = None
    if probs_writer is not None:
        probs_writer.finish(paths["probs"], paths["uncertainty"], paths.get("uncertainty_tif"))
        mat_extra = probs_writer.mat_arrays()
        notes.insert(1, mat_grid_note(mat_extra["uncertainty"].shape, src.shape))
    # the encoders (PNG, zlib, GDAL) release the GIL: write the files side by side
    preds = result.crf_probs if result.crf_probs is not None else result.probs
    jobs = [
        (write_label_png, (paths["label"], result.labels), {}),
        (write_mat, (paths["mat"],), dict(scribbles=scribbles, labels=result.labels, classes=classes, probs=preds,
                                          extra=mat_extra)),
        (_write_figure, (paths["overlay"], src, scribbles, result.labels, classes, result.display), {}),
    ]
    if "geotiff" in paths:
        jobs.append((write_geotiff, (paths["geotiff"], result.labels, src.georef, classes),
                     {"aux_path": paths.get("geotiff_aux")}))
    with ThreadPoolExecutor(max_workers=3) as pool:
        for fut in [pool.submit(f, *a, **kw) for f, a, kw in jobs]:
            fut.result()
    write_report(paths["report"], image_path=src.path, shape=src.shape, classes=classes, labels=result.labels,
                 annotation_seconds=annotation_seconds, processing_seconds=processing_seconds,
                 settings=report_settings, georef=src.georef, n_bands=src.count, notes=notes)

# ----------------------------------------------------------------------------- probabilities and uncertainty
MAT_PROBS_MAX_PIXELS = 4e6  # the .mat's probs/uncertainty are full resolution up to this, else shrunk to it


class ProbabilityWriter:
    """Streams calibrated class probabilities to ``<stem>_probs.tif`` as they are made, tile by tile.

    Use as the ``on_probs`` callback of :func:`label_tools.uncertainty.predict_calibrated`. The
    probabilities go straight to the GeoTIFF (never K x H x W in memory); the uncertainty map
    (uint8, H x W, like the labels) is kept and written by :meth:`finish`.

    The GeoTIFF: one band per class (band k = class k-1 in labels-file order, band description =
    class name), uint8 = ``round(p * 255)`` with the labelled class's byte strictly the largest
    (:func:`label_tools.uncertainty.probs_to_uint8`), so its argmax is exactly the label image;
    no-data pixels are 0 in every band and, when there are any, outside the file's internal mask
    (a GDAL per-dataset mask, as ``gdal_translate -mask`` writes: GIS clients show them as no-data,
    while 0 stays a probability elsewhere). Tiled 256 x 256, deflate level 1 with horizontal predictor, band
    interleaved; CRS and transform of the source when it is georeferenced. Level 1, not GDAL's 6: the
    file is written inside the upsampling loop, and level 6 took three times as long for 4 % less size
    (2 classes at 100 MP: 4.7 s and 85 MB against 1.6 s and 89 MB).

    uint8 rather than float32: a quarter of the size (5 classes at 100 MP: 0.5 GB raw instead of
    2 GB) for a step of 1/255 = 0.4 %, well below the calibration error of any such model.

    Parameters
    ----------
    path : str
        Where the GeoTIFF is written (a temporary path; :meth:`finish` moves it).
    shape : tuple (H, W)
    classes : label_tools.classes.Classes
    georef : label_tools.io.Georef, optional
    """

    def __init__(self, path: str, shape, classes, *, georef=None):
        from .io import rasterio_module

        rasterio = rasterio_module()
        self.path, self.shape, self.classes, self.georef = path, tuple(shape), classes, georef
        prof = dict(driver="GTiff", width=shape[1], height=shape[0], count=len(classes), dtype="uint8",
                    tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2, zlevel=1,
                    interleave="band", BIGTIFF="IF_SAFER",
                    # bands of classes, not colours: GDAL would make 3 or 4 bytes RGB(A), and the 4th class's
                    # probability the alpha band that masks every pixel where it is 0
                    photometric="MINISBLACK")
        if georef is not None and not _placed_by_points(georef):
            prof.update(crs=georef.profile.get("crs"), transform=georef.profile.get("transform"))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning for photos
            self._ds = rasterio.open(path, "w", **prof)
        _copy_gcps(self._ds, georef)
        self.uncertainty = np.empty(shape, np.uint8)
        self.valid = None  # bool (H, W), made at the first no-data pixel (photos never need it)

    def __call__(self, window, probs, labels):
        """Write one tile: ``probs`` float32 (K, h, w) calibrated, ``labels`` uint8 (h, w) their argmax."""
        from rasterio.windows import Window

        from .uncertainty import probs_to_uint8, uncertainty, uncertainty_to_uint8

        r0, r1, c0, c1 = window
        self._ds.write(probs_to_uint8(probs, labels), window=Window(c0, r0, c1 - c0, r1 - r0))
        self.uncertainty[r0:r1, c0:c1] = uncertainty_to_uint8(uncertainty(probs), labels)
        self._mask(window, labels)

    def put_bytes(self, window, labels, probs8, umap8):
        """Write one tile already made bytes elsewhere (a cluster's window task): ``probs8`` uint8 (K, h, w)
        as :func:`label_tools.uncertainty.probs_to_uint8` makes them, ``umap8`` uint8 (h, w) as
        :func:`~label_tools.uncertainty.uncertainty_to_uint8`, ``labels`` uint8 (h, w)."""
        from rasterio.windows import Window

        r0, r1, c0, c1 = window
        self._ds.write(probs8, window=Window(c0, r0, c1 - c0, r1 - r0))
        self.uncertainty[r0:r1, c0:c1] = umap8
        self._mask(window, labels)

    def _mask(self, window, labels):
        r0, r1, c0, c1 = window
        nodata = labels == 255
        if nodata.any():
            if self.valid is None:
                self.valid = np.ones(self.shape, bool)
            self.valid[r0:r1, c0:c1] = ~nodata

    def put_uncertainty(self, window, umap, labels):
        """Replace one tile of the uncertainty map (``on_uncertainty`` of
        :func:`label_tools.uncertainty.predict_calibrated`): ``umap`` float32 (h, w) in [0, 1]."""
        from .uncertainty import uncertainty_to_uint8

        r0, r1, c0, c1 = window
        self.uncertainty[r0:r1, c0:c1] = uncertainty_to_uint8(umap, labels)

    def close(self):
        if self._ds is not None and not self._ds.closed:
            if self.valid is not None:
                _write_mask(self._ds, self.valid)
            for i, name in enumerate(self.classes.names):
                self._ds.set_band_description(i + 1, name)
            self._ds.update_tags(CLASS_NAMES=",".join(self.classes.names), SOFTWARE="label_tools",
                                 CONTENT="class probabilities x 255; argmax = the label image")
            self._ds.close()

    def discard(self):
        """Close and remove the file (the run failed)."""
        import contextlib

        with contextlib.suppress(Exception):
            self._ds.close()
        with contextlib.suppress(OSError):
            os.remove(self.path)

    def mat_arrays(self, max_pixels: float = MAT_PROBS_MAX_PIXELS) -> dict:
        """``probs`` float32 (K, h, w) and ``uncertainty`` float32 (h, w) in [0, 1] for the .mat.

        Full resolution when H x W <= ``max_pixels``, else averaged to the largest grid within it
        (read back from the GeoTIFF, so memory stays K x ``max_pixels`` bytes). Call after :meth:`close`.
        """
        import cv2
        from rasterio.enums import Resampling

        from .io import rasterio_module
        from .tiling import scaled_shape

        H, W = self.shape
        shape = (H, W) if H * W <= max_pixels else scaled_shape((H, W), float(np.sqrt(max_pixels / (H * W))))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning for photos
            with rasterio_module().open(self.path) as ds:
                p = ds.read(out_shape=(ds.count,) + shape, resampling=Resampling.average)
        u = self.uncertainty if shape == (H, W) else cv2.resize(self.uncertainty, (shape[1], shape[0]),
                                                                  interpolation=cv2.INTER_AREA)
        return {"probs": p.astype(np.float32) / 255, "uncertainty": u.astype(np.float32) / 255}

    def finish(self, probs_path: str, png_path: str, tif_path: str | None = None):
        """Move the probability GeoTIFF to ``probs_path``; write the uncertainty PNG (and GeoTIFF)."""
        self.close()
        os.replace(self.path, probs_path)
        self.path = probs_path
        write_uncertainty(png_path, self.uncertainty)
        if tif_path is not None:
            write_uncertainty_geotiff(tif_path, self.uncertainty, self.georef, valid=self.valid)


def _write_mask(ds, valid, *, block: int = 512):
    """The dataset's internal per-dataset mask from ``valid`` (bool (H, W)), in row blocks."""
    from rasterio.windows import Window

    h, w = valid.shape
    for r in range(0, h, block):
        rows = valid[r: r + block]
        ds.write_mask(np.where(rows, np.uint8(255), np.uint8(0)), window=Window(0, r, w, rows.shape[0]))


def write_uncertainty(path: str, uncertainty):
    """Single-channel uint8 PNG: 0 = certain, 255 = most uncertain (and no-data)."""
    write_label_png(path, uncertainty)


def write_uncertainty_geotiff(path: str, uncertainty, georef, *, valid=None, block: int = 512):
    """The uncertainty map as a one-band uint8 GeoTIFF on the source's grid (0 = certain, 255 = most uncertain).

    ``valid`` (bool (H, W), optional): pixels with data; the others (255 in the map, like the most
    uncertain) are left out of the file's internal mask, so GIS clients tell the two apart.
    """
    from rasterio.windows import Window

    from .io import rasterio_module

    rasterio = rasterio_module()
    prof = dict(georef.profile)
    for k in ("blockxsize", "blockysize", "interleave", "photometric", "compress", "predictor", "tiled", "nodata"):
        prof.pop(k, None)
    prof.update(driver="GTiff", count=1, dtype="uint8", compress="deflate", predictor=2, zlevel=1, tiled=True,
                blockxsize=256, blockysize=256)
    prof = _without_transform(prof, georef)
    h, w = uncertainty.shape
    with atomic_path(path) as tmp:
        with _create(rasterio, tmp, prof) as dst:
            _copy_gcps(dst, georef)
            for r in range(0, h, block):
                rows = uncertainty[r: r + block]
                dst.write(rows[None], window=Window(0, r, w, rows.shape[0]))
            if valid is not None:
                _write_mask(dst, valid, block=block)
            dst.set_band_description(1, "uncertainty x 255 (0 = certain, 255 = most uncertain)")
            dst.update_tags(SOFTWARE="label_tools")


def _placed_by_points(georef) -> bool:
    return bool(getattr(georef, "gcps", None) or getattr(georef, "rpcs", None))


def _copy_gcps(dst, georef):
    """The source's ground control points or RPCs onto an output raster (such a source has no transform)."""
    if georef is not None and getattr(georef, "gcps", None):
        dst.gcps = georef.gcps
    if georef is not None and getattr(georef, "rpcs", None):
        dst.rpcs = georef.rpcs


def _create(rasterio, path, prof):
    """``rasterio.open(path, "w", **prof)``; a profile without transform (GCPs set next) is not a warning."""
    import warnings

    with warnings.catch_warnings():
        if "transform" not in prof:
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(path, "w", **prof)


def _without_transform(prof, georef) -> dict:
    """``prof`` without the identity transform (and empty CRS) of a GCP- or RPC-only source: they place it."""
    if georef is not None and _placed_by_points(georef):
        prof = {k: v for k, v in prof.items() if k not in ("transform", "crs")}
    return prof


def mat_grid_note(mat_shape, full_shape) -> str:
    """Report line stating the grid of the .mat's ``probs``/``uncertainty``."""
    full = tuple(mat_shape) == tuple(full_shape)
    return (f".mat probs/uncertainty grid: {mat_shape[1]} x {mat_shape[0]} px (width x height)"
            + (" = full resolution" if full else f", the image averaged down from {full_shape[1]} x {full_shape[0]}"))


def uncertainty_notes(counts, classes, calibration) -> list:
    """Report lines: the calibration and per class the share of uncertain pixels.

    Parameters
    ----------
    counts : label_tools.uncertainty.UncertainCounts
    classes : label_tools.classes.Classes
    calibration : label_tools.calibrate.Calibration
    """
    lines = [f"probability calibration (held-out strokes and the forest's own probabilities): {calibration}"]
    shares = getattr(counts, "shares", None)
    if shares is not None:
        lines.append(str(shares))
    where = "full-resolution pixels" if counts.full_resolution else "model-grid pixels"
    regional = (", averaged with the square root of the pixel's regional doubt (1 - mean probability of its label "
                "over 8 CRF runs on region-wide perturbed forest probabilities)") if getattr(counts, "regional", False) \
        else " (with --save-probs the map also holds the regional doubt)"
    lines.append(f"uncertain pixels (uncertainty > {counts.level:g} in the uncertainty map: the mean of the pixel's "
                 f"(1 - probability of its label, reweighted toward the image's class shares) x K/(K-1) "
                 f"and its neighbourhood's (1 - top probability) x K/(K-1){regional}), share of each class's {where}:")
    for name, t, u in zip(classes.names, counts.total, counts.uncertain):
        lines.append(f"  {name}: {u / t if t else 0.0:.4f} ({int(u)} of {int(t)} px)")
    lines.append(f"  all classes: {counts.fraction:.4f}")
    return lines
