"""Read images: photos (JPEG/PNG/TIFF) into memory, GeoTIFFs window by window through rasterio.

Both kinds are wrapped in an :class:`ImageSource`, the one interface the pipeline and the
annotator read pixels through, so memory follows the window asked for, not the image size.
"""
from __future__ import annotations

import contextlib
import struct
import os
import re
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, OptionError

RASTER_EXT = (".tif", ".tiff", ".gtiff", ".vrt", ".img", ".jp2")
PHOTO_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
STRETCH_PERCENTILES = (0.5, 99.5)
_STATS_PIXELS = 1_000_000  # robust statistics are read from a decimated view of about this size
_SAMPLE_ALL_PIXELS = 64_000_000  # larger rasters take their statistics from sampled windows
STRIP_PIXELS = 8_000_000  # a large raster's whole-image reads for display go in strips of this size


#: float32's largest magnitude: the fill value DEM and GIS tools write without declaring it (-3.4028235e38);
#: never a measurement, so no-data as NaN and +-inf are (read as float32, float64 fills beyond it become +-inf)
FLOAT_FILL = float(np.finfo(np.float32).max)


def _not_values(x: np.ndarray) -> np.ndarray:
    """bool, the shape of float ``x``: NaN, +-inf and the undeclared float fill +-3.4028235e38."""
    with np.errstate(invalid="ignore"):
        return ~(np.abs(x) < FLOAT_FILL)


GDAL_CACHE_MB = 64  # GDAL's block cache defaults to 5 % of RAM, which would dwarf our tile budget


def rasterio_module():
    """rasterio, imported with GDAL's block cache bounded (unless the user set GDAL_CACHEMAX)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    import rasterio

    return rasterio


def open_raster(path: str, what: str = "image"):
    """Open ``path`` with rasterio (no not-georeferenced warning); InputError if GDAL cannot read it."""
    rasterio = rasterio_module()
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    check_not_empty(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as e:
        raise InputError(f"{what} {path!r} cannot be opened as a raster ({_first_line(e)})") from None


def check_not_empty(path: str, what: str = "image") -> None:
    """Refuse a file of 0 bytes (an interrupted copy or download, a failed export) in words that say so;
    GDAL and Pillow call it a file of an unknown format. A pipe is refused in words that say so too."""
    from .imagecheck import check_regular_file

    check_regular_file(path, what)
    try:
        empty = os.path.isfile(path) and os.path.getsize(path) == 0
    except OSError:
        return  # the reader says what is wrong
    if empty:
        raise InputError(f"{what} {path!r} is empty (0 bytes): an interrupted copy or download, or an export that "
                         "failed? copy or export it again")


def _expand_palette(ds, path: str, *, imagej: bool | None = None):
    """A one-band paletted raster (a scanned map, an 8-bit orthophoto export) as the RGB(A) of its colour
    table, as GIS clients and photo viewers show it; any other raster as it is.

    Its pixel values are palette indices, whose order says nothing of colour: features and the CRF on them
    mislabelled a third of a region of one clear colour (a paletted PNG was already read as RGB).
    GDAL expands it (``vrt://path?expand=rgb``; ``rgba`` when the table has transparent entries or the
    raster a no-data index, so those pixels become the alpha mask, i.e. no-data). ``path`` may name a page,
    ``GTIFF_DIR:<n>:<path>``; ``imagej``: the file is ImageJ's (said by its first page; None: ask ``ds``)."""
    rasterio = rasterio_module()
    if ds.count != 1 or ds.colorinterp[0] != rasterio.enums.ColorInterp.palette or "?" in path:
        return ds
    if imagej is None:
        imagej = (ds.tags().get("TIFFTAG_IMAGEDESCRIPTION") or "").startswith("ImageJ=")
    if imagej:
        # ImageJ/Fiji saves an 8-bit image's display LUT ('Green', 'Fire') as a colour table: the pixel values
        # are the intensities; read as RGB, a green-LUT image became two empty bands and a warning about them
        return ds
    try:
        cmap = ds.colormap(1)
    except ValueError:  # no colour table after all
        return ds
    alpha = ds.nodata is not None or any(len(c) > 3 and c[3] < 255 for c in cmap.values())
    where = path if path.startswith("GTIFF_DIR:") else os.path.abspath(path)
    expanded = open_raster(f"vrt://{where}?expand={'rgba' if alpha else 'rgb'}")
    ds.close()
    return expanded


def _stack_layout(ds, pages: int):
    """Where the channels of a microscopy stack stored one channel per TIFF page are.

    An ImageJ hyperstack (TZCYX) or an OME-TIFF keeps each channel of each z-slice and time point in a
    page of its own; GDAL opens the first page alone, so a two-channel stack was labelled on its first
    channel only (the one without the contrast, as often as not), and the warning spoke of separate images.

    A single-channel z-stack or time series so described is a layout too (its planes are chosen with
    ``--plane`` as z-slices and time points, not as pages).

    Returns
    -------
    dict or None
        ``kind`` ('ImageJ hyperstack', 'ImageJ stack' or 'OME-TIFF'), ``C``, ``Z``, ``T`` (channels, z-slices,
        time points), ``pages`` (0-based page of each channel of z-slice 1 at time point 1), ``names`` (channel
        names, '' where none), ``page_of`` (callable (c, z, t), 0-based, -> 0-based page; KeyError for a plane
        the file lacks); None for any other TIFF, one of a single plane, or one whose pages hold several
        samples (RGB pages, read as bands already) or do not match its description.
    """
    if pages < 2 or ds.count != 1 or ds.driver != "GTiff":
        return None
    desc = ds.tags().get("TIFFTAG_IMAGEDESCRIPTION", "") or ""
    try:
        if desc.startswith("ImageJ="):
            kv = dict(line.split("=", 1) for line in desc.splitlines() if "=" in line)
            c, z, t = (int(kv.get(k, 1)) for k in ("channels", "slices", "frames"))
            kind = "ImageJ hyperstack" if c > 1 or (z > 1 and t > 1) else "ImageJ stack"
            # ImageJ's page order is TZC (channels fastest)
            lay = dict(kind=kind, C=c, Z=z, T=t, pages=list(range(c)), names=[""] * c,
                       page_of=lambda ci, zi, ti, c=c, z=z: ci + c * (zi + z * ti))
        elif "<OME" in desc[:1000]:
            lay = _ome_layout(desc)
        else:
            return None
    except (ValueError, KeyError, TypeError):
        return None  # a description that does not say: read as any multi-page TIFF
    if lay is None or min(lay["C"], lay["Z"], lay["T"]) < 1 or lay["C"] * lay["Z"] * lay["T"] < 2 or \
            lay["C"] * lay["Z"] * lay["T"] > pages or max(lay["pages"]) >= pages:
        return None
    return lay


def _ome_layout(xml_text: str):
    """The channel pages of the first image of an OME-XML description (see :func:`_stack_layout`), or None."""
    import xml.etree.ElementTree as ET

    def local(e):
        return e.tag.rsplit("}", 1)[-1]

    root = ET.fromstring(xml_text)
    pix = next((e for e in root.iter() if local(e) == "Pixels"), None)
    if pix is None:
        return None
    size = {k: int(pix.get(f"Size{k}", 1)) for k in "CZT"}
    order = pix.get("DimensionOrder", "XYCZT")[2:]
    channels = [e for e in pix if local(e) == "Channel"]
    if any(int(ch.get("SamplesPerPixel", 1)) != 1 for ch in channels):
        return None  # RGB pages: GDAL reads their samples as bands
    if sorted(order) != ["C", "T", "Z"]:
        return None

    def plane(c, z, t):
        at, i, stride = dict(C=c, Z=z, T=t), 0, 1
        for k in order:
            i += at[k] * stride
            stride *= size[k]
        return i

    ifd = {}  # plane index -> page
    datas = [e for e in pix if local(e) == "TiffData"]
    for td in datas or [None]:
        if td is not None and any(local(u) == "UUID" and u.get("FileName") for u in td):
            return None  # planes in other files (a multi-file OME-TIFF)
        first = 0 if td is None else plane(*(int(td.get(f"First{k}", 0)) for k in "CZT"))
        start = 0 if td is None else int(td.get("IFD", 0))
        given = td is not None and any(td.get(f"First{k}") is not None for k in "CZT")
        count = int(td.get("PlaneCount", 1 if given else size["C"] * size["Z"] * size["T"])) if td is not None \
            else size["C"] * size["Z"] * size["T"]
        for k in range(count):
            ifd[first + k] = start + k
    try:
        chan_pages = [ifd[plane(c, 0, 0)] for c in range(size["C"])]
    except KeyError:
        return None
    names = [ch.get("Name", "") or "" for ch in channels][: size["C"]]
    names += [""] * (size["C"] - len(names))
    return dict(kind="OME-TIFF", C=size["C"], Z=size["Z"], T=size["T"], pages=chan_pages, names=names,
                page_of=lambda c, z, t: ifd[plane(c, z, t)])


def _open_channels(ds, path: str, lay: dict):
    """The channel pages of ``lay`` (:func:`_stack_layout`) as the bands of one dataset (a VRT over the
    pages ``GTIFF_DIR:<n>:<path>``), named by the channel names; ``ds`` itself if a page differs in size
    or type."""
    from xml.sax.saxutils import escape

    apath = os.path.abspath(path)
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "float32": "Float32", "float64": "Float64"}.get(ds.dtypes[0])
    if gdal_type is None:
        return ds
    bands = []
    for i, (page, name) in enumerate(zip(lay["pages"], lay["names"]), start=1):
        sub = f"GTIFF_DIR:{page + 1}:{apath}"
        with open_raster(sub) as p:
            if (p.width, p.height, p.count, p.dtypes[0]) != (ds.width, ds.height, 1, ds.dtypes[0]):
                return ds
        desc = name or f"channel {i}"
        bands.append(f'<VRTRasterBand dataType="{gdal_type}" band="{i}"><Description>{escape(desc)}</Description>'
                     f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(sub)}</SourceFilename>'
                     f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>')
    xml = f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">{"".join(bands)}</VRTDataset>'
    stacked = open_raster(xml)
    ds.close()
    return stacked


def stack_note(src) -> str:
    """What of a microscopy stack ``src`` (an :class:`ImageSource`) is labelled, for the report: '' for a plain image.

    E.g. 'ImageJ hyperstack of 2 channels, 3 z-slices, 2 time points: its 2 channels are the bands; z-slice 1 at
    time point 1 is labelled (to label another, choose it with --plane Z,T: Z from 1 to 3, T from 1 to 2)',
    or with ``--plane 3,2`` '...; z-slice 3 at time point 2 is labelled (--plane 3,2; outputs named
    cells_z03_t02_...)'."""
    from .planes import outputs_named, plane_usage, stack_counts

    lay = getattr(src, "stack", None)
    if not lay:
        return ""
    text = f"{lay['kind']} of {stack_counts(lay)}"
    if lay["C"] > 1:
        text += f": its {lay['C']} channels are the bands"
    if lay["Z"] > 1 or lay["T"] > 1:
        plane = getattr(src, "plane", None)
        text += "; " if lay["C"] > 1 else ": "
        if plane:
            named = outputs_named(plane, _output_stem(src))
            text += f"{plane['what']} is labelled (--plane {plane['text']}{named})"
        else:
            where = [f"{w} 1" for k, w in (("Z", "z-slice"), ("T", "time point")) if lay[k] > 1]
            text += f"{' at '.join(where)} is labelled (to label another, choose it with {plane_usage(lay)})"
    return text


def _output_stem(src) -> str:
    """The stem of ``src``'s outputs: the one the run set (:attr:`output_stem`, see
    :func:`label_tools.job.output_stem`), else its file's :func:`stem` with its plane's tag."""
    given = getattr(src, "output_stem", None)
    if given:
        return given
    return stem(getattr(src, "path", "") or "") + ((getattr(src, "plane", None) or {}).get("suffix") or "")


def planes_warning(src) -> str:
    """The inspection's line on a stack or multi-page TIFF ``src`` after its file name ('is an ImageJ
    hyperstack ...', 'holds 3 images (TIFF pages); ...'): which plane was labelled and how to choose another
    (``--plane``); '' for an image of one plane."""
    from .planes import outputs_named, plane_usage

    lay = getattr(src, "stack", None)
    if lay:
        return f"is an {stack_note(src)}" if lay["Z"] > 1 or lay["T"] > 1 else ""
    pages = getattr(src, "pages", 1)
    if pages <= 1:
        return ""
    plane = getattr(src, "plane", None)
    if plane:
        named = outputs_named(plane, _output_stem(src))
        return f"holds {pages} images (TIFF pages); page {plane['page']} was labelled (--plane {plane['text']}{named})"
    name = os.path.basename(getattr(src, "path", "") or "")
    return (f"holds {pages} images (TIFF pages); only the first was labelled: to label another, choose it with "
            f"{plane_usage(None, pages)}; or save each page as a file of its own (e.g. `tiffsplit {name}`) and "
            "label a folder of them")


@dataclass
class Georef:
    """Georeferencing of a raster source, enough to write a label raster that lands on it.

    Attributes
    ----------
    profile : dict
        The source's rasterio profile (driver, crs, transform, width, height, ...).
    crs : rasterio.crs.CRS or None
    transform : affine.Affine
    gcps : tuple (list of rasterio.control.GroundControlPoint, rasterio.crs.CRS) or None
        Ground control points of a raster georeferenced by them alone (no CRS, identity transform):
        written to every output raster, so it lands where the source does.
    rpcs : rasterio.rpc.RPC or None
        Rational polynomial coefficients of a raster placed by them alone (a satellite scene before
        orthorectification): written to every output raster, as the GCPs are.
    """

    profile: dict
    crs: object
    transform: object
    gcps: object = None  # (list of rasterio GroundControlPoint, CRS) of a raster placed by GCPs only
    rpcs: object = None  # rasterio.rpc.RPC of a raster placed by RPCs only

    @property
    def is_projected(self) -> bool:
        return bool(self.crs is not None and self.crs.is_projected)

    def pixel_area(self) -> float | None:
        """Area of one pixel in square map units (metres for a metric projected CRS), or None."""
        if not self.is_projected:
            return None
        t = self.transform
        return abs(t.a * t.e - t.b * t.d)

    @property
    def linear_units_factor(self) -> float | None:
        try:
            return float(self.crs.linear_units_factor[1])
        except Exception:
            return None


@dataclass
class ImageSource:
    """An image as the pipeline sees it.

    Pixels are read through :meth:`read` (feature bands, float32, robustly scaled to about [0, 1])
    and :meth:`read_display` (uint8 RGB) for any window, optionally resampled to ``out_shape``.

    Attributes
    ----------
    path : str
    height, width : int
    count : int
        Number of bands the features are computed from.
    georef : Georef or None
        Set for georeferenced rasters only.
    """

    path: str
    height: int
    width: int
    count: int
    georef: Georef | None = None
    dtype: str = "uint8"
    band_names: tuple = ()
    orientation: int = 1  # EXIF orientation of a photo (1..8), applied when read; rasters: 1 (read as stored)
    _lo: np.ndarray = field(default=None, repr=False)
    _hi: np.ndarray = field(default=None, repr=False)
    _display: tuple = ()  # indices into the feature bands used for display, 1 or 3 of them
    display_note = None  # why the bands shown by default are not the first three (RasterSource), else None
    _flat: tuple | None = field(default=None, repr=False)  # the one value of every sampled pixel, if so
    _flat_bands: tuple = field(default=(), repr=False)  # (index, value) of bands one value in the sample
    band_numbers: tuple = ()  # 1-based band of the file each read band is (default 1..count)

    @property
    def shape(self) -> tuple:
        return (self.height, self.width)

    @property
    def has_nodata(self) -> bool:
        return False

    # subclasses implement _read_raw(window, out_shape) -> float32 (h, w, count) and _read_valid
    def _read_raw(self, window, out_shape, resampling="average"):
        raise NotImplementedError

    def _read_valid(self, window, out_shape):
        return None

    def _norm_window(self, window):
        if window is None:
            return (0, self.height, 0, self.width)
        r0, r1, c0, c1 = (int(v) for v in window)
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.height), min(c1, self.width)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"empty window {window} for an image of {self.height} x {self.width}")
        return (r0, r1, c0, c1)

    def blank_value(self, *, rows: int = 1024) -> tuple | None:
        """The value (one per band, as stored) of every valid pixel when the image is one flat colour, else None.

        Decided on the statistics sample first (any two different pixels: not blank, no further
        read); only a flat sample is confirmed on every pixel, read in blocks of ``rows`` rows.
        """
        if self._flat is None:
            return None
        ref = None
        for r0 in range(0, self.height, rows):
            win = (r0, min(r0 + rows, self.height), 0, self.width)
            x = self.read(win).reshape(-1, self.count)
            v = self.read_valid(win)
            if v is not None:
                x = x[v.ravel()]
            if not len(x):
                continue
            if ref is None:
                ref = x[0].copy()
            if not (x == ref).all():
                return None
        return self._flat

    def constant_bands(self, *, rows: int = 1024) -> list:
        """Feature bands that hold one value in every valid pixel while others vary: they carry no information.

        Decided on the statistics sample first (no further read when no band is flat there); a band flat in
        the sample is confirmed on every pixel, read in blocks of ``rows`` rows. A blank image (every feature
        band flat) gives [] (refused or applied elsewhere, see :meth:`blank_value`).

        Returns
        -------
        list of (band, name, value)
            ``band`` 1-based in the file, ``name`` its description ('' if none), ``value`` as stored (float).
        """
        n = getattr(self, "feature_count", self.count)
        idx = [i for i, _ in self._flat_bands if i < n]
        if not idx or len(idx) == n:
            return []
        ref = {}
        for r0 in range(0, self.height, rows):
            win = (r0, min(r0 + rows, self.height), 0, self.width)
            x = self._read_raw(win, None)[..., idx].reshape(-1, len(idx))
            v = self._read_valid(win, None)
            if v is not None:
                x = x[v.ravel()]
            if not len(x):
                continue
            for j, i in enumerate(list(idx)):
                ref.setdefault(i, x[0, j])
                if not (x[:, j] == ref[i]).all():
                    idx.remove(i)
            if not idx:
                return []
        numbers = self.band_numbers or tuple(range(1, self.count + 1))
        names = self.band_names
        return [(numbers[i], names[i] if i < len(names) and names[i] != f"band {numbers[i]}" else "",
                 float(ref[i])) for i in idx if i in ref]

    def read(self, window=None, *, out_shape=None, resampling="average") -> np.ndarray:
        """Feature bands of a window, scaled robustly.

        Parameters
        ----------
        window : tuple of int (row0, row1, col0, col1), optional
            Half-open pixel window at full resolution; clipped to the image. Default: whole image.
        out_shape : tuple of int (h, w), optional
            Resample the window to this shape.
        resampling : {"average", "nearest"}
            How to shrink: area averaging, or picking pixels (much faster on large rasters; for
            quick overviews).

        Returns
        -------
        ndarray of float32, shape (h, w, count)
            Each band mapped so its 0.5th..99.5th percentiles become 0..1 (uint8 bands: value / 255).
            No-data pixels are 0.
        """
        raw = self._read_raw(self._norm_window(window), out_shape, resampling)
        out = (raw - self._lo) / (self._hi - self._lo)
        np.clip(out, -0.5, 1.5, out=out)
        valid = self.read_valid(window, out_shape=out_shape)
        if valid is not None:
            out[~valid] = 0
        return out.astype(np.float32, copy=False)

    def overview(self, max_side: int):
        """The whole image for display, fitted within ``max_side`` pixels.

        Returns
        -------
        rgb : ndarray of uint8, shape (h, w, 3)
        valid : ndarray of bool, shape (h, w), or None
        """
        f = min(1.0, max_side / max(self.height, self.width))
        shape = (max(1, int(round(self.height * f))), max(1, int(round(self.width * f))))
        return self.read_display(out_shape=shape), self.read_valid(out_shape=shape)

    def read_valid(self, window=None, *, out_shape=None) -> np.ndarray | None:
        """bool (h, w): True where the pixel holds data; None when the image has no no-data."""
        return self._read_valid(self._norm_window(window), out_shape)

    def read_both(self, window=None, *, out_shape=None):
        """Feature bands (as :meth:`read`) and display RGB (as :meth:`read_display`) from one read.

        Returns
        -------
        features : ndarray of float32, shape (h, w, feature bands)
        rgb : ndarray of uint8, shape (h, w, 3)
        """
        x = ImageSource.read(self, window, out_shape=out_shape)
        rgb = x[..., list(self._display)]
        rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
        rgb = np.ascontiguousarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))
        n = getattr(self, "feature_count", self.count)
        return (x[..., :n] if n < x.shape[-1] else x), rgb

    def read_display(self, window=None, *, out_shape=None, resampling="average") -> np.ndarray:
        """uint8 RGB (h, w, 3) for display and the CRF's colour kernel (grey images are repeated)."""
        rgb = self._display_raw(self._norm_window(window), out_shape, resampling)
        if rgb is not None:
            return rgb
        x = ImageSource.read(self, window, out_shape=out_shape, resampling=resampling)[..., list(self._display)]
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        return np.ascontiguousarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))

    def _display_raw(self, window, out_shape, resampling):
        """The display RGB read straight from uint8 data when scaling would give the same bytes, else None."""
        return None

    def _set_stretch(self, sample: np.ndarray, valid: np.ndarray | None, *, robust_uint8: bool = False):
        """Robust per-band scaling from a (decimated) float sample of shape (h, w, count).

        uint8 photos keep their look (value / 255) unless ``robust_uint8``; rasters are always stretched.
        """
        flat = sample.reshape(-1, self.count)
        if valid is not None:
            flat = flat[valid.ravel()]
        flat = flat[np.isfinite(flat).all(axis=1)]
        self._flat = (tuple(float(v) for v in flat[0])
                      if len(flat) and (flat == flat[0]).all() else None)  # confirmed by blank_value()
        self._flat_bands = tuple((i, float(flat[0, i])) for i in range(self.count)
                                 if len(flat) and (flat[:, i] == flat[0, i]).all())  # confirmed by constant_bands()
        if self.dtype == "uint8" and not robust_uint8:
            self._lo = np.zeros(self.count, np.float32)
            self._hi = np.full(self.count, 255, np.float32)
            return
        px = sample.reshape(-1, self.count)
        if valid is not None:
            px = px[valid.ravel()]
        px = px[np.isfinite(px).all(axis=1)]
        if len(px) == 0:
            raise InputError(f"image {self.path!r} has no valid (non-no-data, finite) pixels")
        lo, hi = np.percentile(px, STRETCH_PERCENTILES, axis=0).astype(np.float32)
        hi = _below_saturation(px, lo, hi)
        flat = hi <= lo
        hi[flat] = lo[flat] + 1  # a constant band becomes 0 everywhere instead of dividing by 0
        self._lo, self._hi = lo, hi


def _below_saturation(px: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, most: float = 0.05) -> np.ndarray:
    """Upper stretch limits of ``px`` (n, bands) that saturated pixels do not set.

    A camera's saturated or hot pixels (16-bit fluorescence of values 100..400 with 1 % of pixels at 65535, a
    12-bit camera's 4095) hold the band's maximum exactly; over 0.5 % of them made it the upper limit, so the
    data became 0..0.005: a black display, and features where those pixels outweighed the rest 200 to 1. When
    the maximum holds more than 0.5 % but at most ``most`` of the pixels and the others' upper percentile lies
    below the middle of lo..max, the limit is that percentile (saturated pixels then clip at 1.5, as outliers do).
    """
    hi = hi.copy()
    for b in range(px.shape[1]):
        x = px[:, b]
        top = x.max()
        if hi[b] < top:
            continue
        at_top = x == top
        share = at_top.mean()
        if not (1 - STRETCH_PERCENTILES[1] / 100) < share <= most:
            continue
        rest = np.percentile(x[~at_top], STRETCH_PERCENTILES[1])
        if rest > lo[b] and rest < lo[b] + (top - lo[b]) / 2:
            hi[b] = rest
    return hi


class ArraySource(ImageSource):
    """An image held in memory.

    Parameters
    ----------
    array : ndarray, shape (H, W) or (H, W, C)
        Any integer or float dtype. RGBA images should be passed without alpha.
    path : str
        Name used in messages.
    display_bands : sequence of int, optional
        0-based bands shown and used by the CRF (1 or 3). Default: first three, or the only one.
    valid : ndarray of bool, shape (H, W), optional
        False marks no-data pixels.
    """

    def __init__(self, array, path="<array>", *, display_bands=None, valid=None, georef=None):
        a = np.asarray(array)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1:
            raise InputError(f"image {path!r}: expected an array of shape (H, W) or (H, W, C), got {array.shape}")
        super().__init__(path, a.shape[0], a.shape[1], a.shape[2], georef=georef, dtype=str(a.dtype))
        self.array = a
        self.valid = None if valid is None else np.asarray(valid, bool)
        if a.dtype.kind == "f":  # NaN, +-inf and the float fill are no-data, as a nodata value would be
            finite = ~_not_values(a).any(axis=-1)
            if not finite.all():
                self.valid = finite if self.valid is None else self.valid & finite
        if self.valid is not None and not self.valid.any():
            raise InputError(f"image {path!r} holds only no-data pixels (masked, NaN or infinite): nothing to label")
        self._display = _display_bands(display_bands, self.count, path)
        step = max(1, int(np.sqrt(self.height * self.width / _STATS_PIXELS)))
        self._set_stretch(a[::step, ::step].astype(np.float32),
                          None if self.valid is None else self.valid[::step, ::step])

    @property
    def has_nodata(self) -> bool:
        return self.valid is not None

    def _read_raw(self, window, out_shape, resampling="average"):
        r0, r1, c0, c1 = window
        x = self.array[r0:r1, c0:c1]
        if x.dtype.kind == "f" and self.valid is not None:
            x = np.where(_not_values(x), 0, x)
        if out_shape is not None and tuple(out_shape) != x.shape[:2]:
            # shrink band by band in the source dtype: no float copy of a large window
            x = np.stack([_resample(np.ascontiguousarray(x[..., i])[..., None], out_shape,
                                    nearest=resampling == "nearest")[..., 0] for i in range(x.shape[2])], axis=-1)
        return x.astype(np.float32)

    def _display_raw(self, window, out_shape, resampling):
        # an 8-bit photo keeps its values (value / 255 and back): skip the float round trip, the slow part of
        # the full-resolution upsampling of a large photo
        disp = list(self._display)
        if self.array.dtype != np.uint8 or not (np.all(self._lo[disp] == 0) and np.all(self._hi[disp] == 255)):
            return None
        if out_shape is not None and (out_shape[0] > window[1] - window[0] or out_shape[1] > window[3] - window[2]):
            return None  # enlarging: interpolation rounds differently in uint8
        r0, r1, c0, c1 = window
        x = self.array[r0:r1, c0:c1]
        x = x[..., disp] if disp != list(range(x.shape[2])) else x
        if out_shape is not None and tuple(out_shape) != x.shape[:2]:
            x = np.stack([_resample(np.ascontiguousarray(x[..., i])[..., None], out_shape,
                                    nearest=resampling == "nearest")[..., 0] for i in range(x.shape[2])], axis=-1)
        x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else np.array(x, order="C", copy=True)
        valid = self._read_valid(window, out_shape)
        if valid is not None:
            x[~valid] = 0
        return x

    def _read_valid(self, window, out_shape):
        if self.valid is None:
            return None
        r0, r1, c0, c1 = window
        v = self.valid[r0:r1, c0:c1]
        if out_shape is not None and tuple(out_shape) != v.shape:
            import cv2

            v = cv2.resize(v.astype(np.uint8), (out_shape[1], out_shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return v


class RasterSource(ImageSource):
    """A raster read window by window through rasterio (GeoTIFF and anything else GDAL reads).

    Parameters
    ----------
    path : str
    bands : sequence of int, optional
        1-based bands to display (1 or 3). Default: the first three, or the only one.
    feature_bands : sequence of int, optional
        1-based bands the features are computed from. Default: all bands but an alpha band (GDAL colour interpretation alpha), which masks no-data.
    plane : str, optional
        ``--plane`` as given: the z-slice and time point of a stack, or the page of a multi-page TIFF (see
        :mod:`label_tools.planes`). Default: the first.

    Attributes
    ----------
    stack : dict or None
        The layout of a microscopy stack (:func:`_stack_layout`), its ``pages`` those of the plane read.
    plane : dict or None
        The plane ``plane`` chose (:func:`label_tools.planes.resolve_plane`); None without it.
    pages : int
        A stack's planes, else the file's TIFF pages (1 for any other raster).
    """

    def __init__(self, path, *, bands=None, feature_bands=None, plane=None):
        rasterio = rasterio_module()
        ds = open_raster(path)
        if ds.count == 0:  # a container (netCDF/HDF of several variables): its rasters are subdatasets
            subs = list(ds.subdatasets)
            ds.close()
            eg = subs[0] if subs else ""
            raise InputError(f"image {path!r} holds no raster of its own but {len(subs)} subdatasets (variables of "
                             f"a netCDF or HDF file?): convert the one to label to a GeoTIFF, e.g. `gdal_translate "
                             f"'{eg}' {stem(path)}.tif` (`gdalinfo {os.path.basename(path)}` lists them)")
        pages = sum(str(sd).startswith("GTIFF_DIR:") for sd in ds.subdatasets) or 1
        # a microscopy stack with one channel per page: its channels (of the first plane, or the one chosen
        # with --plane) become the bands
        imagej = (ds.tags().get("TIFFTAG_IMAGEDESCRIPTION") or "").startswith("ImageJ=")
        try:
            ds, pages, opened = self._open_plane(ds, path, pages, plane)
        except Exception:  # a plane the file lacks: the file is not left open
            ds.close()
            raise
        expanded = ds if self.stack else _expand_palette(ds, opened, imagej=imagej)
        self.palette = expanded is not ds  # read as the RGB(A) of its colour table
        ds = self.ds = expanded
        n = ds.count
        # an alpha band (RGBA orthomosaics) is the mask GDAL reads as no-data, not a feature
        alpha = [b for b in range(1, n + 1) if ds.colorinterp[b - 1] == rasterio.enums.ColorInterp.alpha]
        colour = [b for b in range(1, n + 1) if b not in alpha] or list(range(1, n + 1))
        self.alpha_bands = tuple(b for b in alpha if b not in colour)  # 1-based, left out of the default bands
        fb = colour if feature_bands is None else _check_bands(feature_bands, n, path, "--feature-bands")
        #: why the bands shown are not the first three (None: they are, or --bands chose them)
        self.display_note = None
        if bands is None:
            db, self.display_note = _default_display(ds, colour)
        else:
            db = _check_bands(bands, n, path, "--bands")
        if len(db) not in (1, 3):
            raise OptionError(f"--bands: expected 1 or 3 band numbers, got {len(db)}")
        # display bands must be readable: add them to the feature bands' read list if missing
        self._bands = fb + [b for b in db if b not in fb]
        self._n_feat = len(fb)
        dtypes = {ds.dtypes[b - 1] for b in self._bands}
        cplx = sorted(d for d in dtypes if "complex" in d)
        if cplx:  # GDAL's conversion to float keeps the real part alone: phase noise, not backscatter
            raise InputError(f"image {path!r} holds {cplx[0]} values (a SAR single-look complex?): label_tools "
                             "labels real numbers; make an amplitude raster (|z|) first, e.g. `gdal_calc.py -A "
                             f"{os.path.basename(path)} --calc='abs(A)' --type=Float32 --outfile=amplitude.tif`")
        dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
        georef = None
        if ds.crs is not None or not ds.transform.is_identity:
            georef = Georef(dict(ds.profile), ds.crs, ds.transform)
        elif ds.gcps[0]:  # placed by ground control points only (an unrectified scene, a drone frame)
            georef = Georef(dict(ds.profile), None, ds.transform, gcps=ds.gcps)
        elif ds.rpcs is not None:  # placed by rational polynomial coefficients only (a satellite L1 scene)
            georef = Georef(dict(ds.profile), None, ds.transform, rpcs=ds.rpcs)
        names = tuple(ds.descriptions[b - 1] or f"band {b}" for b in fb)
        super().__init__(path, ds.height, ds.width, len(self._bands), georef=georef, dtype=dtype, band_names=names)
        self._display = tuple(self._bands.index(b) for b in db)
        self.band_numbers = tuple(self._bands)
        self.display_numbers = tuple(db)  # 1-based bands shown (and fed to the CRF's colour kernel)
        # a multi-page TIFF (a z-stack, a time series): GDAL opens the first page, the others are
        # subdatasets ``GTIFF_DIR:<n>:<path>`` (reduced-resolution overviews and masks are not)
        self.pages = pages
        self._nodata = ds.nodata
        self._gdal_mask = ds.nodata is not None or any(
            f & rasterio.enums.MaskFlags.per_dataset or not (f & rasterio.enums.MaskFlags.all_valid)
            for f in ds.mask_flag_enums[0])
        # bands declaring different no-data values (a VRT or .img stack of products, each with its fill value):
        # GDAL's dataset mask keeps a pixel valid when any band is, so one band's fill value entered the
        # features as data; such a pixel is no-data when any band read is, as a NaN in one band makes it
        self._band_masks = len({repr(ds.nodatavals[b - 1]) for b in self._bands}) > 1
        self._gdal_mask = self._gdal_mask or self._band_masks
        # float bands: NaN and +-inf are no-data too (found in the pixels as they are read)
        self._float = any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in self._bands)
        self._masked = self._gdal_mask or self._float
        self._tls = threading.local()
        self._lock = threading.Lock()  # one GDAL read at a time: windows may be labelled on threads
        self._decimated = None
        sample, valid = self._stats_sample()
        if valid is not None and not valid.any():
            sample, valid = self._decimated_read()  # the sample may have missed the data: look at all of it
            if valid is not None and not valid.any():
                self._refuse_dead_bands(path, sample, fb, db)
                raise InputError(f"image {path!r} holds only no-data pixels (nodata value, mask, NaN or infinite): "
                                 "nothing to label")
        self._set_stretch(sample, valid, robust_uint8=True)

    def _open_plane(self, ds, path, pages, plane):
        """The dataset of the plane labelled: the first (z-slice 1 at time point 1, or page 1) or the one
        ``plane`` (``--plane`` as given, :mod:`label_tools.planes`) chooses; sets :attr:`stack` and
        :attr:`plane`.

        Returns
        -------
        (dataset, pages, name)
            ``pages``: planes of a stack (each of C pages), else TIFF pages; ``name``: what GDAL opened
            (``path``, or ``GTIFF_DIR:<n>:<path>`` for a page other than the first).
        """
        from .planes import resolve_plane

        self.plane = None
        lay = self.stack = _stack_layout(ds, pages)
        if lay is None:
            if plane is None:
                return ds, pages, path
            self.plane = resolve_plane(plane, path, None, pages)
            page, name = self._open_page(ds, path, self.plane["page"] - 1)
            return page, pages, name
        if plane is not None:
            self.plane = resolve_plane(plane, path, lay, lay["Z"] * lay["T"])
            z, t = self.plane["z"] - 1, self.plane["t"] - 1
            try:
                lay = self.stack = dict(lay, pages=[lay["page_of"](c, z, t) for c in range(lay["C"])])
            except KeyError:
                raise InputError(f"image {path!r}: its {lay['kind']} description places {self.plane['what']} in no "
                                 "page of this file (planes kept in other files?); open it in Fiji and save it as "
                                 "one OME-TIFF or TIFF") from None
            if max(lay["pages"]) >= pages:
                raise InputError(f"image {path!r} has fewer TIFF pages than its {lay['kind']} description says: "
                                 f"{self.plane['what']} is not in it (a truncated file?)")
        if lay["C"] == 1:  # one channel: the plane is one page, read as it is
            page, name = self._open_page(ds, path, lay["pages"][0])
            return page, lay["Z"] * lay["T"], name
        stacked = _open_channels(ds, path, lay)
        if stacked.count == lay["C"]:
            return stacked, lay["Z"] * lay["T"], path  # planes left out, each of C pages
        if self.plane is not None:
            raise InputError(f"image {path!r}: the channel pages of {self.plane['what']} differ in size or type, so "
                             "they cannot be the bands of one image; save that plane as a file of its own in Fiji "
                             "(Image > Duplicate)")
        self.stack = None
        return stacked, pages, path

    @staticmethod
    def _open_page(ds, path, page: int):
        """(dataset, name GDAL opened) of page ``page`` (0-based) of the TIFF ``path``, of which ``ds`` is the
        first page: ``(ds, path)`` for page 0."""
        if page == 0:
            return ds, path
        name = f"GTIFF_DIR:{page + 1}:{os.path.abspath(path)}"
        sub = open_raster(name)
        ds.close()
        return sub, name

    def _refuse_dead_bands(self, path, sample, fb, db):
        """All pixels are no-data because some bands are no-data everywhere (a Sentinel-2 stack with a band
        left empty, all NaN) while the others hold data: say which, and the options that leave them out.
        Before, the line said the image held only no-data pixels, and leaving the band out of
        ``--feature-bands`` alone did not help (the displayed bands count too)."""
        from rasterio.enums import Resampling

        h, w = sample.shape[:2]
        dead = []
        with self._lock:
            for b in self._bands:
                x = self.ds.read(b, out_shape=(h, w), resampling=Resampling.nearest)
                data = (self.ds.read_masks(b, out_shape=(h, w), resampling=Resampling.nearest) > 0)
                if x.dtype.kind == "f":
                    data &= ~_not_values(x)
                if not data.any():
                    dead.append(b)
        if not dead or len(dead) == len(self._bands):
            return
        keep_f = [b for b in fb if b not in dead]
        keep_d = [b for b in db if b not in dead]
        if len(keep_d) != len(db):
            rest = [b for b in keep_f if b not in self.alpha_bands]
            keep_d = rest[:3] if len(rest) >= 3 else rest[:1]
        opts = []
        if keep_f != list(fb) and keep_f:
            opts.append(f"--feature-bands {','.join(map(str, keep_f))}")
        if keep_d != list(db) and keep_d:
            opts.append(f"--bands {','.join(map(str, keep_d))}")
        which = f"band{'s' if len(dead) > 1 else ''} {', '.join(map(str, dead))}"
        raise InputError(f"image {path!r}: {which} {'are' if len(dead) > 1 else 'is'} no-data everywhere (NaN, "
                         f"infinite or the nodata value), which makes every pixel no-data (a pixel is no-data when any "
                         f"band used is); leave {'them' if len(dead) > 1 else 'it'} out"
                         + (f": {' '.join(opts)}" if opts else ""))

    def _decimated_read(self):
        """(raw float32 (h, w, count), valid) of the whole raster at about 1 MP; cached.

        A raster without internal overviews is decoded whole for this (seconds for 400 MP), so it is
        made only when needed: for the overview window, or for small rasters.
        """
        if self._decimated is None:
            step = max(1.0, np.sqrt(self.height * self.width / _STATS_PIXELS))
            small = (max(1, int(self.height / step)), max(1, int(self.width / step)))
            if self.height * self.width <= _SAMPLE_ALL_PIXELS:
                self._decimated = (self._read_raw(None, small, resampling="nearest"), self._read_valid(None, small))
            else:
                self._decimated = self._read_in_strips(small)
        return self._decimated

    def _read_in_strips(self, small):
        """The decimated read of a large raster (only the overview uses it: its statistics come from windows),
        in row strips of at most STRIP_PIXELS source pixels, each one locked read: the window being labelled,
        read on the annotator's thread meanwhile, waits for one strip at most, not for the whole decode (40 s
        for a 20,000 x 20,000 deflate GeoTIFF without overviews). Each strip's rows are picked by GDAL's
        nearest resampling within it, so a row may differ by one source row from a whole read's."""
        n = int(min(small[0], max(1, np.ceil(self.height * self.width / STRIP_PIXELS))))
        rows = np.linspace(0, small[0], n + 1).round().astype(int)
        raws, valids = [], []
        for a, b in zip(rows[:-1], rows[1:]):
            if b <= a:
                continue
            win = (int(round(a * self.height / small[0])), int(round(b * self.height / small[0])), 0, self.width)
            raws.append(self._read_raw(win, (b - a, small[1]), resampling="nearest"))
            valids.append(self._read_valid(win, (b - a, small[1])))
        return np.concatenate(raws, axis=0), (None if valids[0] is None else np.concatenate(valids, axis=0))

    def _stats_sample(self):
        """Pixels for the robust stretch: the decimated raster when small, else 64 windows spread over it."""
        if self.height * self.width <= _SAMPLE_ALL_PIXELS:
            return self._decimated_read()
        side = 128
        rows = np.linspace(0, self.height - side, 8).astype(int)
        cols = np.linspace(0, self.width - side, 8).astype(int)
        raws, valids = [], []
        for r in rows:
            for c in cols:
                win = (r, r + side, c, c + side)
                raws.append(self._read_raw(win, None))
                v = self._read_valid(win, None)
                valids.append(np.ones((side, side), bool) if v is None else v)
        return np.concatenate(raws, axis=0), (np.concatenate(valids, axis=0) if self._masked else None)

    @property
    def feature_count(self) -> int:
        return self._n_feat

    def overview(self, max_side: int):
        """As :meth:`ImageSource.overview`, from the decimated read made when opening (no new decode)."""
        import cv2

        raw, valid = self._decimated_read()
        f = min(1.0, max_side / max(self.height, self.width))
        shape = (max(1, int(round(self.height * f))), max(1, int(round(self.width * f))))
        if shape[0] > raw.shape[0] or shape[1] > raw.shape[1]:
            return super().overview(max_side)
        x = (raw[..., list(self._display)] - self._lo[list(self._display)]) / (
            self._hi[list(self._display)] - self._lo[list(self._display)])
        x = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
        if valid is not None:
            x[~valid] = 0
        x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
        rgb = np.ascontiguousarray(cv2.resize(x, (shape[1], shape[0]), interpolation=cv2.INTER_AREA))
        if valid is not None:
            valid = cv2.resize(valid.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return rgb, valid

    @property
    def has_nodata(self) -> bool:
        return self._masked

    def _window(self, window):
        from rasterio.windows import Window

        r0, r1, c0, c1 = self._norm_window(window)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def _read_raw(self, window, out_shape, resampling="average"):
        from rasterio.enums import Resampling

        kw = {}
        if out_shape is not None:
            kw = dict(out_shape=(len(self._bands), int(out_shape[0]), int(out_shape[1])),
                      resampling=getattr(Resampling, resampling))
        win = self._window(window)
        with self._read_errors(win), self._lock:
            x = self.ds.read(self._bands, window=win, out_dtype="float32", **kw)
        x = np.moveaxis(x, 0, -1)
        bad = _not_values(x) if self._float else ~np.isfinite(x)
        if self._float:  # remembered for the read_valid that follows in this thread
            self._tls.nonfinite = ((win, None if out_shape is None else tuple(out_shape)), bad.any(axis=-1))
        if bad.any():
            x[bad] = 0
        return x

    def _read_valid(self, window, out_shape):
        if not self._masked:
            return None
        from rasterio.enums import Resampling

        win = self._window(window)
        m = None
        if self._gdal_mask:
            kw = {}
            if out_shape is not None:
                kw = dict(out_shape=(int(out_shape[0]), int(out_shape[1])), resampling=Resampling.nearest)
            with self._read_errors(win), self._lock:
                if self._band_masks:
                    m = np.logical_and.reduce([self.ds.read_masks(b, window=win, **kw) > 0 for b in self._bands])
                else:
                    m = self.ds.dataset_mask(window=win, **kw) > 0
        if self._float:
            key = (win, None if out_shape is None else tuple(out_shape))
            last = getattr(self._tls, "nonfinite", None)
            if last is None or last[0] != key:
                self._read_raw(window, out_shape, "nearest")
                last = self._tls.nonfinite
            m = ~last[1] if m is None else m & ~last[1]
        return m

    @contextlib.contextmanager
    def _read_errors(self, win):
        """GDAL read failures (truncated or damaged data) -> InputError naming the file and window."""
        try:
            yield
        except Exception as e:
            if not type(e).__module__.startswith("rasterio"):
                raise
            raise InputError(
                f"image {self.path!r} cannot be read at rows {win.row_off}..{win.row_off + win.height}, columns "
                f"{win.col_off}..{win.col_off + win.width} ({_first_line(e.__cause__ or e)}): the file is damaged "
                "or truncated; "
                "re-export or re-copy it") from None

    def read(self, window=None, *, out_shape=None, resampling="average"):
        x = super().read(window, out_shape=out_shape, resampling=resampling)
        return x[..., : self._n_feat] if self._n_feat < self.count else x

    def close(self):
        self.ds.close()


def _first_line(e) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


_S2_NAME = re.compile(r"^b(0?[1-9]|1[0-2]|8a)$")


def _default_display(ds, colour):
    """The bands to show (1-based, 1 or 3) when ``--bands`` is not given, and why, if not the first three.

    A multispectral raster's first three bands are rarely red, green and blue (a Sentinel-2 stack starts with
    its 60 m coastal aerosol band), and the bands shown also feed the CRF's colour kernel. The file is asked
    in turn: GDAL's colour interpretation (red, green, blue); band descriptions naming exactly one band each
    ``red``, ``green`` and ``blue`` (a band whose description says ``edge`` is a red-edge band, not red);
    Sentinel-2 band names (``B01`` ... ``B12`` with ``B8A``): ``B04``, ``B03``, ``B02``. Otherwise the first
    three bands (or the only one).
    """
    first = colour[:3] if len(colour) >= 3 else colour[:1]
    if len(colour) < 3:
        return first, None
    rasterio = rasterio_module()
    ci = rasterio.enums.ColorInterp
    by_ci = {}
    for b in colour:
        by_ci.setdefault(ds.colorinterp[b - 1], b)
    rgb = [by_ci.get(c) for c in (ci.red, ci.green, ci.blue)]
    if None not in rgb:
        return rgb, None if rgb == first else "red, green and blue by the file's colour interpretation"
    names = {b: (ds.descriptions[b - 1] or "").strip() for b in colour}
    words = {b: set(re.findall(r"[a-z]+", t.lower())) for b, t in names.items()}
    rgb = []
    for colour_name in ("red", "green", "blue"):
        hits = [b for b in colour if colour_name in words[b] and "edge" not in words[b]]
        rgb.append(hits[0] if len(hits) == 1 else None)
    if None not in rgb and len(set(rgb)) == 3:
        why = f"red, green and blue by the band descriptions {', '.join(names[b] for b in rgb)}"
        return rgb, None if rgb == first else why
    s2 = {}
    for b, t in names.items():
        m = _S2_NAME.match(t.lower())
        if m:
            s2.setdefault(m.group(1).lstrip("0"), b)
    if "8a" in s2 and all(k in s2 for k in ("4", "3", "2")):
        rgb = [s2["4"], s2["3"], s2["2"]]
        return rgb, f"true colour by the Sentinel-2 band names {', '.join(names[b] for b in rgb)}"
    return first, None


def _check_bands(bands, n, path, option):
    out = [int(b) for b in bands]
    for b in out:
        if not 1 <= b <= n:
            raise OptionError(f"{option}: band {b} is out of range; {path!r} has bands 1..{n}")
    return out


def _display_bands(bands, n, path):
    if bands is None:
        return (0, 1, 2) if n >= 3 else (0,)
    b = [int(v) - 1 for v in _check_bands(bands, n, path, "--bands")]
    if len(b) not in (1, 3):
        raise OptionError(f"--bands: expected 1 or 3 band numbers, got {len(b)}")
    return tuple(b)


def _resample(x, out_shape, nearest=False):
    """float32 (h, w, C) -> (out_shape..., C), area averaging when shrinking, bilinear when growing."""
    if out_shape is None or tuple(out_shape) == x.shape[:2]:
        return x
    import cv2

    h, w = int(out_shape[0]), int(out_shape[1])
    interp = cv2.INTER_AREA if h <= x.shape[0] and w <= x.shape[1] else cv2.INTER_LINEAR
    if nearest:
        interp = cv2.INTER_NEAREST
    if x.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        x = x.astype(np.float32)
    chans = [cv2.resize(np.ascontiguousarray(x[..., i]), (w, h), interpolation=interp) for i in range(x.shape[2])]
    return np.stack(chans, axis=-1)


def read_photo(path: str, *, with_alpha: bool = False):
    """Read a JPEG/PNG/BMP/WebP or plain TIFF into memory, EXIF orientation applied.

    The file's structure is checked first (:mod:`label_tools.imagecheck`: truncation, broken
    markers, PNG CRCs, a declared size that cannot fit in memory), and anything the decoder
    complains about is an error: a damaged photo is refused, never labelled half grey.

    Parameters
    ----------
    with_alpha : bool
        Also return the alpha channel of a PNG (grey + alpha, RGBA) that has transparent pixels.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, 3)
        uint8 or uint16 (16-bit files keep their depth); alpha is dropped.
    alpha : ndarray of uint8 or uint16, shape (H, W), or None
        Only with ``with_alpha``: the alpha channel when some pixel of it is 0, else None.

    Raises
    ------
    InputError
        Damaged, truncated or unreadable file, or one too large to decode.
    """
    import cv2

    from .imagecheck import CV_MAX_PIXELS, check_declared_size, check_photo

    check_not_empty(path)
    try:
        shape = check_photo(path) or _pillow_header(path)
    except OSError as e:
        raise InputError(f"image {path!r} cannot be read ({e.strerror or e})") from None
    if shape is not None:
        check_declared_size(path, shape)
        if shape[0] * shape[1] > CV_MAX_PIXELS:
            return _read_photo_pillow(path, with_alpha=with_alpha)
    if with_alpha and _magic(path, 4) == b"GIF8":
        return _read_photo_pillow(path, with_alpha=True)  # a GIF's transparent index: Pillow says which it is
    # a PNG or WebP with alpha: read whole, alpha kept for the no-data mask (a WebP's, as a PNG's, was ignored)
    png_alpha = with_alpha and shape is not None and shape[2] in (2, 4) and (_is_png(path) or _is_webp(path))
    # a tRNS chunk makes palette entries, or one grey or RGB value, transparent: no-data as alpha 0 is
    grey_key = None
    if with_alpha and shape is not None and not png_alpha and _is_png(path):
        trns = _png_trns(path)
        if trns is not None:
            png_alpha = True
            colour, depth, data = trns
            if colour == 0 and len(data) >= 2:  # OpenCV drops a grey key: the key value is found below
                grey_key = struct.unpack(">H", data[:2])[0]
                if depth < 8:  # libpng widens 1/2/4-bit grey to 0..255
                    grey_key = grey_key * 255 // ((1 << depth) - 1)
    # ANYDEPTH|ANYCOLOR: keeps 16 bits and grey, drops alpha, applies EXIF orientation
    with _decoder_messages() as said:
        a = cv2.imread(path, cv2.IMREAD_UNCHANGED if png_alpha else cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    complaint = _decoder_complaint(said, echo=a is not None)  # nothing decoded: Pillow's error says why
    if complaint:
        raise InputError(f"image {path!r} is damaged: the decoder says {complaint!r}; re-export or re-copy the file")
    if a is None:
        return _read_photo_pillow(path, with_alpha=with_alpha)
    if png_alpha:  # IMREAD_UNCHANGED leaves the EXIF orientation out: turn as the other reads do
        a = apply_orientation(a, exif_orientation(path))
    alpha = None
    if grey_key is not None and a.ndim == 2:
        alpha = (a != grey_key).astype(np.uint8)
        alpha = alpha if (alpha == 0).any() else None
    if png_alpha and a.ndim == 3 and a.shape[2] in (2, 4):
        alpha = a[..., -1]
        alpha = np.ascontiguousarray(alpha) if (alpha == 0).any() else None
        a = np.ascontiguousarray(a[..., :-1]) if a.shape[2] == 4 else a[..., :1]
        a = a[..., :1] if shape[2] == 2 else a  # grey + alpha may come as BGRA: the bands are one grey
        a = a[..., 0] if a.shape[2] == 1 else a
    if a.ndim == 3 and shape is not None and shape[2] == 2:
        a = np.ascontiguousarray(a[..., 0])  # grey + alpha: OpenCV made it BGR, the bands are one grey
    elif a.ndim == 3 and a.shape[2] == 3:
        _bgr_to_rgb(a)
    elif a.ndim == 3:
        a = np.ascontiguousarray(a[..., 2::-1])  # BGR(A) -> RGB
    if a.dtype not in (np.uint8, np.uint16):
        a = a.astype(np.float32)
    return (a, alpha) if with_alpha else a


#: EXIF orientation -> what turns the stored pixels upright, and the words for it
_ORIENTATIONS = {2: "mirrored left to right", 3: "turned 180\u00b0", 4: "mirrored top to bottom",
                 5: "mirrored along its diagonal", 6: "turned 90\u00b0 clockwise",
                 7: "mirrored along its other diagonal", 8: "turned 90\u00b0 anticlockwise"}


def exif_orientation(path: str) -> int:
    """EXIF orientation tag (1..8) of a JPEG/PNG/WebP/TIFF from its header; 1 (as stored) when absent or unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if _is_png(path):
                data = _png_exif(path)
                if data is None:
                    return 1
                v = Image.Exif()
                v.load(data)
                v = v.get(0x0112, 1)
            else:
                with Image.open(path) as im:
                    v = im.getexif().get(0x0112, 1)
    except Exception:  # not an image Pillow knows, or a damaged header: reported by the decoder
        return 1
    return int(v) if v in range(1, 9) else 1


def _png_chunks(path: str, wanted, stop) -> dict:
    """{kind: data} of the PNG chunks of ``wanted`` kinds met before the first of ``stop`` (or the end), found
    by walking the chunk headers: the pixel data are seeked past, never read or decoded."""
    found = {}
    with open(path, "rb") as f:
        f.seek(8)
        while len(found) < len(wanted):
            head = f.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind in stop:
                break
            if kind in wanted:
                found[kind] = f.read(length)
                f.seek(4, 1)  # the CRC
            else:
                f.seek(length + 4, 1)  # the chunk's data and CRC
    return found


def _png_trns(path: str):
    """(colour type, bit depth, tRNS chunk bytes) of a PNG with a tRNS chunk (transparent palette entries,
    or the one grey or RGB value that is transparent), else None."""
    c = _png_chunks(path, (b"IHDR", b"tRNS"), (b"IDAT", b"IEND"))  # tRNS comes before the pixel data
    ihdr = c.get(b"IHDR", b"")
    return (ihdr[9], ihdr[8], c[b"tRNS"]) if b"tRNS" in c and len(ihdr) >= 10 else None


def _png_exif(path: str):
    """The bytes of a PNG's eXIf chunk, or None.

    Pillow's ``getexif`` on a PNG without the chunk before the pixels decodes the whole image to look
    for it after them (1.4 s for the two calls on a 100 MP PNG); :func:`_png_chunks` seeks past the pixel data.
    """
    return _png_chunks(path, (b"eXIf",), (b"IEND",)).get(b"eXIf")


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, ...) stored pixels -> upright, as Pillow's ``exif_transpose`` turns them (orientation 1..8)."""
    if orientation in (5, 6, 7, 8):
        a = np.swapaxes(a, 0, 1)  # transpose; then 6 mirrors columns, 8 rows, 7 both
    if orientation in (2, 3, 6, 7):
        a = a[:, ::-1]
    if orientation in (3, 4, 7, 8):
        a = a[::-1]
    return np.ascontiguousarray(a) if orientation != 1 else a


def orientation_note(orientation: int, image_shape, shape) -> str:
    """Why a file of ``shape`` (H, W) drawn for an image of ``image_shape`` (H, W, upright) has the wrong size:
    the photo is used turned by its EXIF ``orientation`` and ``shape`` is its stored size. '' otherwise."""
    h, w = image_shape
    if orientation not in (5, 6, 7, 8) or tuple(shape) != (w, h):
        return ""
    return (f"; the image carries EXIF orientation {orientation}, so it is used {_ORIENTATIONS[orientation]} (as "
            f"photo viewers and the annotator show it): the file matches the stored, unturned {h} x {w} pixels "
            "(as GDAL/QGIS show them); draw it on the photo as viewers show it, or save the photo turned and "
            "without the tag")


def pages_note(pages: int, image_shape) -> str:
    """Why a file drawn for an image of ``image_shape`` (H, W) may have another size: the image is a TIFF of
    ``pages`` pages (of different sizes) and only the first is labelled (no ``--plane``). '' for a single image."""
    from .planes import plane_usage

    if pages <= 1:
        return ""
    return (f"; the image holds {pages} images (TIFF pages) and only the first, {image_shape[1]} x "
            f"{image_shape[0]} px, is labelled: to label another page, choose it with {plane_usage(None, pages)}")


def _magic(path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_webp(path) -> bool:
    head = _magic(path, 12)
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _is_png(path) -> bool:
    from .imagecheck import _PNG_SIG

    with open(path, "rb") as f:
        return f.read(8).startswith(_PNG_SIG)


def _bgr_to_rgb(a, *, block_pixels: int = 4_000_000):
    """Swap the first and third channels of (H, W, 3+) in place, in row blocks (no second whole image)."""
    step = max(1, block_pixels // max(a.shape[1], 1))
    for r in range(0, a.shape[0], step):
        blk = a[r: r + step]
        blk[..., [0, 2]] = blk[..., [2, 0]]


#: What libjpeg / libpng print when the data is damaged (they go on decoding, or OpenCV returns nothing)
_DECODER_COMPLAINTS = ("Corrupt JPEG data", "Premature end of JPEG", "JPEG datastream", "Bogus", "Invalid JPEG",
                       "Huffman", "Unsupported marker", "libpng error", "CRC error", "incorrect header check",
                       "invalid distance", "invalid block type", "Not a JPEG", "TIFFRead", "Read error",
                       "Unexpected end", "can't read data", "[ERROR")


def _decoder_complaint(said: list, *, echo: bool = True) -> str | None:
    text = "".join(said)
    bad = None
    keep = []
    for line in text.splitlines():
        if bad is None and any(c.lower() in line.lower() for c in _DECODER_COMPLAINTS):
            bad = line.strip()
        elif line.strip():
            keep.append(line)
    if keep and echo:  # anything else printed meanwhile is passed on
        import sys

        sys.stderr.write("\n".join(keep) + "\n")
    return bad


@contextlib.contextmanager
def _decoder_messages():
    """Collect what C libraries print on file descriptor 2 during the block (into the yielded list)."""
    import sys
    import tempfile

    said = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        tmp = tempfile.TemporaryFile()
    except OSError:  # cannot redirect: decode without listening
        yield said
        return
    try:
        os.dup2(tmp.fileno(), 2)
        yield said
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        said.append(tmp.read().decode("utf-8", "replace"))
        tmp.close()


def _pillow_header(path):
    """(H, W, channels, bytes per sample) from the header via Pillow (nothing decoded), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size is checked by us
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    w, h = im.size
                    c = len(im.getbands())
                    b = 2 if im.mode.startswith("I;16") else (4 if im.mode in ("I", "F") else 1)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError):
        return None  # not a format Pillow knows: OpenCV may; errors are reported when decoding
    return (h, w, c, b)


def _read_photo_pillow(path, *, with_alpha: bool = False):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb size: checked beforehand; EXIF oddities
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    im = ImageOps.exif_transpose(im)
                    if with_alpha and "transparency" in im.info and im.mode in ("P", "L", "RGB"):
                        im = im.convert("LA" if im.mode == "L" else "RGBA")  # tRNS: transparent = no-data
                    alpha = np.array(im.getchannel("A")) if with_alpha and im.mode in ("LA", "RGBA") else None
                    if im.mode not in ("L", "RGB", "I;16", "I", "F"):
                        im = im.convert("L" if im.mode in ("LA", "1") else "RGB")
                    a = np.array(im)
                    if not with_alpha:
                        return a
                    return a, (alpha if alpha is not None and (alpha == 0).any() else None)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except FileNotFoundError:
        raise InputError(f"image {path!r} does not exist") from None
    except MemoryError:
        raise InputError(f"image {path!r} is too large to decode in the memory available: convert it to a tiled "
                         "GeoTIFF, which is read window by window") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as e:
        hint = ""
        if path.lower().endswith(_MICROSCOPE_EXT):
            hint = (": it is a microscope's own format; save it as an OME-TIFF (Fiji: File > Save As > OME-TIFF..., "
                    "or Bio-Formats' `bfconvert`), whose channels are read as bands")
        raise InputError(f"image {path!r} cannot be read as an image ({_first_line(e)}){hint}") from None




#: microscope vendors' formats (Zeiss, Nikon, Leica, Olympus, Imaris, DeltaVision, SlideBook): Bio-Formats reads them
_MICROSCOPE_EXT = (".czi", ".zvi", ".nd2", ".lif", ".lof", ".oib", ".oif", ".oir", ".vsi", ".ims", ".dv", ".r3d",
                   ".sld", ".lei")

#: GDAL drivers of formats read as photos (EXIF orientation, decoder checks), whatever the file's name
_PHOTO_DRIVERS = {"PNG", "JPEG", "GIF", "BMP", "WEBP"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def _gdal_raster(path: str) -> bool:
    """True for a file read window by window through GDAL though its name is not a raster's.

    A TIFF by its first bytes (Zeiss ``.lsm``, MetaMorph ``.stk``), or a file GDAL opens as a raster of a
    format other than a photo's (ESRI ASCII grid ``.asc``, ENVI ``.dat``/``.bsq``/``.bil``, SAGA ``.sdat``,
    netCDF ``.nc``, SRTM ``.hgt``): these were refused as images Pillow cannot identify.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False  # the reader says what is wrong
    if head in _TIFF_MAGIC:
        return True
    if path.lower().endswith(PHOTO_EXT):
        return False
    rasterio = rasterio_module()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as ds:
                return ds.driver not in _PHOTO_DRIVERS and (ds.count >= 1 or bool(ds.subdatasets))
    except Exception:  # not a raster GDAL knows: the photo reader says what it is not
        return False


def check_image_path(path: str) -> None:
    """Refuse an image path that is missing, a directory or unreadable, in one line naming it.

    Cheap (no decoding): the annotator's runs call it before the display, file dialogs and windows, so
    a mistyped name is said as such, not as a missing display or a question about class files.

    Raises
    ------
    InputError
    """
    if not os.path.exists(path):
        raise InputError(f"image {path!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"image {path!r} is a directory; expected an image file")
    if not os.access(path, os.R_OK):
        raise InputError(f"image {path!r} is not readable (permission denied)")


def open_image(path: str, *, bands=None, feature_bands=None, plane=None) -> ImageSource:
    """Open an image file for labelling.

    TIFFs (and other GDAL rasters) are opened with rasterio and read window by window, keeping
    their georeferencing; other formats are read into memory with EXIF orientation applied.

    Parameters
    ----------
    path : str
    bands : sequence of int, optional
        1-based bands to display (1 or 3).
    feature_bands : sequence of int, optional
        1-based bands the features are computed from (rasters only). Default: all.
    plane : str, optional
        ``--plane`` as given (:mod:`label_tools.planes`): the z-slice and time point of a microscopy stack,
        or the page of a multi-page TIFF, to label. Default: the first.

    Raises
    ------
    InputError
        Missing, unreadable or all-no-data image.
    OptionError
        Band numbers out of range; ``plane`` malformed, out of range, or given for an image of one plane.
    """
    check_image_path(path)
    if path.lower().endswith(RASTER_EXT) or _gdal_raster(path):
        return RasterSource(path, bands=bands, feature_bands=feature_bands, plane=plane)
    from .planes import check_readable_plane

    check_readable_plane(plane, path)
    arr, alpha = read_photo(path, with_alpha=True)
    if feature_bands is not None:
        n = 1 if arr.ndim == 2 else arr.shape[2]
        fb = [b - 1 for b in _check_bands(feature_bands, n, path, "--feature-bands")]
        arr = arr[..., fb] if arr.ndim == 3 else arr
    # transparent pixels are no-data, as an RGBA GeoTIFF's alpha band makes them
    src = ArraySource(arr, path, display_bands=bands, valid=None if alpha is None else alpha > 0)
    if feature_bands is not None:
        src.band_numbers = tuple(int(b) for b in feature_bands)
    src.orientation = exif_orientation(path)  # already applied; named when a scribble file has the stored size
    return src


def image_plane(path: str, plane: str) -> dict:
    """``--plane`` ``plane`` on the image ``path`` (:func:`label_tools.planes.resolve_plane`), from its TIFF
    description and page count alone: no pixel is read.

    Raises
    ------
    InputError
        Missing or unreadable image.
    OptionError
        ``plane`` malformed, out of range, or given for an image of one plane.
    """
    from .planes import check_readable_plane, resolve_plane

    check_image_path(path)
    if not (path.lower().endswith(RASTER_EXT) or _gdal_raster(path)):
        check_readable_plane(plane, path)
    with open_raster(path) as ds:
        pages = sum(str(sd).startswith("GTIFF_DIR:") for sd in ds.subdatasets) or 1
        lay = _stack_layout(ds, pages)
    return resolve_plane(plane, path, lay, lay["Z"] * lay["T"] if lay else pages)


#: Extensions of two parts: ``cells.ome.tif`` is an OME-TIFF named ``cells``, as Fiji and Bio-Formats read it.
DOUBLE_EXT = (".ome.tif", ".ome.tiff")


def stem(path: str) -> str:
    """File name without directory and extension (``cells`` of ``cells.ome.tif``: an OME-TIFF's ``.ome.tif`` is one
    extension, see :data:`DOUBLE_EXT`)."""
    base = os.path.basename(path)
    for ext in DOUBLE_EXT:
        if base.lower().endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


def legacy_stem(path: str) -> str | None:
    """The stem earlier versions gave ``path``'s outputs, where it differs from :func:`stem`: ``cells.ome`` of
    ``cells.ome.tif`` (the last extension alone dropped); None for every other file."""
    old = os.path.splitext(os.path.basename(path))[0]
    return old if old != stem(path) else None
