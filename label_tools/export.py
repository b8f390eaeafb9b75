"""label-export: result folders -> a tiled training set for segmentation networks.

Each result of ``label-image`` (``<stem>_mres_label.png``, or ``<stem>_mres_geo.tif``, with its
``<stem>_report.txt`` naming the source image and ``<stem>_mres.mat`` holding the classes) is cut
into ``tile x tile`` image/label pairs with identical names::

    DATASET/train/images/<name>.png    DATASET/train/labels/<name>.png
    DATASET/val/images/<name>.tif      DATASET/val/labels/<name>.tif    (georeferenced sources)
    DATASET/dataset.json

Label tiles hold 0-based class ids with 255 = no-data or padding (PNG and GeoTIFF alike; nodata
255 in the GeoTIFF profile). Image tiles keep the source's bands and dtype; edge tiles are padded
with the source's no-data value, or 0 without one. A source placed by ground control points (or RPCs)
alone gives chips carrying its GCPs (RPCs), moved into each chip's pixels. Tiles whose labels are all no-data are skipped. The split is by source image, never by
tile, so no image leaks from train into val. A result labelled on one plane of a stack (``label-image --plane``,
recorded in its report) is tiled from that plane's pixels; the planes of one stack are one source image for the split.

The whole dataset is built in a temporary folder beside DATASET and renamed into place at the end:
a failure leaves nothing behind, and an existing DATASET is only replaced with ``overwrite``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass

import numpy as np

from . import __version__
from .errors import InputError, LabelToolsError, OptionError, OutputError
from .files import Interrupted, owned_tempdir, remove_orphans, signals_deferred, terminate_as_interrupt

log = logging.getLogger("label_tools")

NODATA = 255
LABEL_SUFFIX = "_mres_label.png"
GEO_SUFFIX = "_mres_geo.tif"
REPORT_SUFFIX = "_report.txt"
MAT_SUFFIX = "_mres.mat"
MIN_TILE = 16


@dataclass
class Item:
    """One labelled image found in a result folder.

    Attributes
    ----------
    source : str
        Absolute path of the source image (as the run recorded it).
    label_path : str
        ``<stem>_mres_label.png`` (0-based ids, 255 = no-data) or ``<stem>_mres_geo.tif`` (id + 1, 0 = no-data).
    stem : str
    names : tuple of str
        Class names in id order.
    colors : list of str
        ``#rrggbb`` per class, in id order.
    plane : dict or None
        The plane of a stack or multi-page TIFF the result was labelled on (``--plane``, as
        :func:`label_tools.planes.resolve_plane` gives it); None: the file's first plane (a run without ``--plane``).
    """

    source: str
    label_path: str
    stem: str
    names: tuple
    colors: list
    plane: dict | None = None


# ---------------------------------------------------------------------------- finding results
def source_from_report(path: str) -> str:
    """Absolute path of the source image recorded in a ``<stem>_report.txt`` (its ``image:`` line)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("image: "):
                    return line[len("image: "):].rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"report {path!r} cannot be read ({e})") from None
    raise InputError(f"report {path!r} has no 'image:' line naming the source image; run label-image again "
                     "to write a complete report")


#: The report's settings line of a run that labelled one plane of a stack or multi-page TIFF (``--plane``).
PLANE_SETTING = "  plane (--plane): "


def plane_from_report(path: str) -> str | None:
    """The ``--plane`` a result was labelled on, from its report's settings section (None: the file's first
    plane, as every run without ``--plane``)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(PLANE_SETTING):
                    return line[len(PLANE_SETTING):].split(" (", 1)[0].strip()  # "3,2 (z-slice 3 at ...)" -> "3,2"
    except (OSError, UnicodeDecodeError):
        return None  # source_from_report has said what is wrong with it
    return None


def classes_from_mat(path: str) -> tuple:
    """(names, #rrggbb colours) from a result's ``<stem>_mres.mat``."""
    from scipy.io import loadmat

    try:
        m = loadmat(path, variable_names=["labels", "colors"])
        names = tuple(str(np.ravel(x)[0]) if np.size(x) else "" for x in np.ravel(m["labels"]))
        colors = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in np.asarray(m["colors"]).reshape(-1, 3)]
    except FileNotFoundError:
        raise InputError(f"result file {path!r} is missing: it holds the class names; run label-image again") from None
    except Exception as e:  # scipy raises several types for a damaged file
        raise InputError(f"result file {path!r} cannot be read for class names ({e})") from None
    if not names or len(names) != len(colors):
        raise InputError(f"result file {path!r} holds {len(names)} class names and {len(colors)} colours; "
                         "expected one colour per class")
    return names, colors


def find_results(folder: str) -> list:
    """Every result in ``folder``: a list of :class:`Item`, by stem.

    A stem with both a label PNG and a label GeoTIFF is read from the GeoTIFF (window by window, so
    a large raster's labels are never held whole; both hold the same labels).
    """
    if not os.path.exists(folder):
        raise InputError(f"results folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise InputError(f"results folder {folder!r} is not a folder; give the -o folder of a label-image run")
    stems = {}
    for name in sorted(os.listdir(folder), key=lambda n: not n.endswith(GEO_SUFFIX)):
        for suffix in (GEO_SUFFIX, LABEL_SUFFIX):
            if name.endswith(suffix) and not name.startswith("."):
                st = name[: -len(suffix)]
                stems.setdefault(st, os.path.join(folder, name))
    items = []
    for st, label_path in sorted(stems.items()):
        report = os.path.join(folder, st + REPORT_SUFFIX)
        if not os.path.exists(report):
            raise InputError(f"result {label_path!r} has no report {os.path.basename(report)!r} beside it: "
                             "the report names the source image; run label-image again")
        source = source_from_report(report)
        if not os.path.isfile(source):
            raise InputError(f"source image {source!r} recorded in {report!r} does not exist; "
                             "put it back there or run label-image again")
        given = plane_from_report(report)
        plane = None if given is None else source_plane(label_path, source, given)
        names, colors = classes_from_mat(os.path.join(folder, st + MAT_SUFFIX))
        items.append(Item(os.path.abspath(source), label_path, st, names, colors, plane))
    return items


def source_plane(label_path: str, source: str, given: str) -> dict:
    """The plane ``given`` (``--plane`` as the report records it) of the stack ``source``, read from its TIFF
    description and page count alone (no pixel is read).

    Returns
    -------
    dict
        As :func:`label_tools.planes.resolve_plane`.

    Raises
    ------
    InputError
        The source no longer has that plane (it was replaced by another file, or is not a stack now): one line
        naming the result, the source and the plane.
    """
    from .io import image_plane

    try:
        return image_plane(source, given)
    except LabelToolsError as e:
        has = _planes_now(source)
        why = f"it is {has} now: the source changed since the run" if has else f"{e}"
        raise InputError(f"result {label_path!r} was labelled on one plane of {source!r} (--plane {given}); {why}; "
                         "put back the stack it was labelled on, or leave the result out of RESULTS") from None


def _planes_now(source: str) -> str | None:
    """What planes ``source`` has ('an ImageJ hyperstack of 2 channels, 2 z-slices', 'a multi-page TIFF of 3
    pages', 'an image of one plane'), from its TIFF description and page count; None if it cannot be opened."""
    from .io import RASTER_EXT, _gdal_raster, _stack_layout, open_raster
    from .planes import describe_planes

    if not (source.lower().endswith(RASTER_EXT) or _gdal_raster(source)):
        return describe_planes(None, 1)  # a photo (PNG, JPEG): one plane
    try:
        with open_raster(source) as ds:
            pages = sum(str(sd).startswith("GTIFF_DIR:") for sd in ds.subdatasets) or 1
            return describe_planes(_stack_layout(ds, pages), pages)
    except Exception:  # damaged or unreadable: the resolver's own line says what is wrong
        return None


def plane_key(plane: dict | None):
    """What tells two results of one source apart: None for its first plane (by default or chosen: z-slice 1
    at time point 1, page 1), else (z, t, page)."""
    if plane is None or plane["page"] == 1 or (plane["page"] is None and plane["z"] == plane["t"] == 1):
        return None
    return plane["z"], plane["t"], plane["page"]


def _what(it) -> str:
    """'source image 'a.tif'' or 'z-slice 3 at time point 2 of source image 'a.tif'' (a result of ``--plane``)."""
    return f"{it.plane['what']} of source image {it.source!r}" if plane_key(it.plane) else f"source image {it.source!r}"


def _label_files(item) -> str:
    """The names of the files that make ``item`` a result (its label PNG and GeoTIFF, those that exist)."""
    folder = os.path.dirname(item.label_path)
    return " and ".join(item.stem + sfx for sfx in (LABEL_SUFFIX, GEO_SUFFIX)
                        if os.path.exists(os.path.join(folder, item.stem + sfx)))


# ---------------------------------------------------------------------------- splitting and tiling
def split_sources(sources, *, val_fraction: float, seed: int) -> dict:
    """Assign each source image to ``train`` or ``val``.

    With N >= 2 sources and ``val_fraction > 0``, ``max(1, round(val_fraction * N))`` of them (at
    most N - 1, rounding half up) go to val, drawn by a shuffle of the sorted paths seeded with
    ``seed``; with one source or ``val_fraction == 0`` all go to train.

    Returns
    -------
    dict source -> "train" or "val"
    """
    srcs = sorted(set(sources))
    n = len(srcs)
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(max(1, int(math.floor(val_fraction * n + 0.5))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = {srcs[i] for i in order[:n_val]}
    return {s: ("val" if s in val else "train") for s in srcs}


def tile_starts(n: int, tile: int, overlap: int) -> list:
    """Start offsets of tiles of side ``tile`` stepping ``tile - overlap`` until ``n`` is covered."""
    starts = [0]
    while starts[-1] + tile < n:
        starts.append(starts[-1] + tile - overlap)
    return starts


# ---------------------------------------------------------------------------- reading sources and labels
class _Source:
    """Pixels of a source image in its own bands and dtype, by window; georeferencing if any.

    Parameters
    ----------
    path : str
    plane : str, optional
        ``--plane`` as the result's report records it: that plane of a stack or multi-page TIFF is read
        (:class:`label_tools.io.RasterSource`), else the first.
    """

    def __init__(self, path: str, plane: str | None = None):
        from .io import RASTER_EXT, RasterSource, _gdal_raster, read_photo

        self.path = path
        self.ds = None
        self.georef = None
        self.gcps = None  # (list of GroundControlPoint, CRS) of a source placed by ground control points alone
        self.rpcs = None  # rasterio.rpc.RPC of a source placed by RPCs alone
        self.nodata = None
        self.descriptions = None
        self.masked = False
        self.colorinterp = None
        if path.lower().endswith(RASTER_EXT) or _gdal_raster(path):  # .asc, ENVI, a TIFF named .lsm: GDAL's
            from rasterio.enums import MaskFlags

            # the dataset as label-image read it: a paletted raster's RGB(A) colour table (not grey indices), a
            # microscopy hyperstack's channels as bands (not its first page alone)
            self.ds = RasterSource(path, plane=plane).ds
            self.shape = (self.ds.height, self.ds.width)
            self.count = self.ds.count
            self.dtype = np.dtype(self.ds.dtypes[0])
            if self.ds.crs is not None or not self.ds.transform.is_identity:
                self.georef = self.ds.profile
            elif self.ds.gcps[0]:
                self.gcps = self.ds.gcps
            elif self.ds.rpcs is not None:
                self.rpcs = self.ds.rpcs
            self.nodata = self.ds.nodata
            # a per-dataset mask (GDAL's internal .msk) marks no-data without a nodata value: chips keep it
            flags = self.ds.mask_flag_enums
            self.masked = self.nodata is None and all(f == [MaskFlags.per_dataset] for f in flags)
            self.colorinterp = self.ds.colorinterp
            if any(self.ds.descriptions):
                self.descriptions = self.ds.descriptions
        else:
            a = read_photo(path)
            self.array = a if a.ndim == 3 else a[..., None]
            self.shape = a.shape[:2]
            self.count = self.array.shape[2]
            self.dtype = self.array.dtype

    @property
    def fmt(self) -> str:
        """``tif`` for georeferenced sources (a transform or ground control points) and what PNG cannot hold,
        else ``png``."""
        if self.georef is not None or self.gcps is not None or self.rpcs is not None:
            return "tif"
        if self.dtype in (np.uint8, np.uint16) and self.count in (1, 3, 4):
            return "png"
        return "tif"

    def read(self, r, c, h, w) -> np.ndarray:
        """(h, w, count) pixels at rows r..r+h, cols c..c+w, in the source dtype."""
        if self.ds is None:
            return self.array[r: r + h, c: c + w]
        from rasterio.windows import Window

        with _read_errors("source image", self.path, r, c, h, w):
            return np.moveaxis(self.ds.read(window=Window(c, r, w, h)), 0, -1)

    def read_mask(self, r, c, h, w) -> np.ndarray:
        """uint8 (h, w) per-dataset mask (255 = data, 0 = no-data) at rows r..r+h, cols c..c+w."""
        from rasterio.windows import Window

        with _read_errors("source image", self.path, r, c, h, w):
            return self.ds.dataset_mask(window=Window(c, r, w, h))

    def close(self):
        if self.ds is not None:
            self.ds.close()


@contextlib.contextmanager
def _read_errors(what: str, path: str, r: int, c: int, h: int, w: int):
    """A GDAL read failure (damaged or truncated data) -> InputError naming the file and window."""
    try:
        yield
    except Exception as e:
        if not type(e).__module__.startswith("rasterio"):
            raise
        from .io import _first_line

        raise InputError(f"{what} {path!r} cannot be read at rows {r}..{r + h}, columns {c}..{c + w} "
                         f"({_first_line(e.__cause__ or e)}): the file is damaged or truncated; put back an intact "
                         "copy") from None


class Labels:
    """A result's labels by window: uint8, 0-based ids, 255 = no-data.

    A label GeoTIFF (class id + 1, 0 = no-data) is read window by window; a label PNG whole.
    """

    def __init__(self, path: str):
        self.path, self.ds, self.array = path, None, None
        if path.endswith(GEO_SUFFIX):
            from .io import open_raster

            self.ds = open_raster(path, "label GeoTIFF")
            self.shape = (self.ds.height, self.ds.width)
        else:
            import cv2

            a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if a is None or a.ndim != 2 or a.dtype != np.uint8:
                raise InputError(f"label image {path!r} cannot be read as a single-band 8-bit PNG")
            self.array, self.shape = a, a.shape

    def read(self, r, c, h, w) -> np.ndarray:
        """uint8 (h, w) labels at rows r..r+h, cols c..c+w."""
        if self.ds is None:
            return self.array[r: r + h, c: c + w]
        from rasterio.windows import Window

        with _read_errors("label GeoTIFF", self.path, r, c, h, w):
            a = self.ds.read(1, window=Window(c, r, w, h))
        out = (a.astype(np.int16) - 1).astype(np.uint8)
        out[a == 0] = NODATA
        return out

    def close(self):
        if self.ds is not None:
            self.ds.close()


def _count(n: int, noun: str) -> str:
    """``1 tile``, ``2 tiles``, ``0 tiles``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------------------- writing tiles
def _write_png(path, a):
    import cv2

    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    elif a.ndim == 3:
        a = a[..., [2, 1, 0, 3][: a.shape[2]]]  # RGB(A) -> BGR(A)
    from .files import write_png

    try:
        write_png(path, np.ascontiguousarray(a))
    except cv2.error:
        raise OutputError(f"could not write {path!r}") from None


def _write_tif(path, a, *, profile, transform, nodata, gcps=None, rpcs=None, descriptions=None, mask=None,
               colorinterp=None):
    """A GeoTIFF chip: ``profile``'s CRS with ``transform``, or ``gcps`` = (points, CRS) or ``rpcs`` placing it;
    ``mask`` (uint8 (h, w), 0 = no-data) its internal per-dataset mask; ``colorinterp`` the source's band
    colour interpretations (else grey: GDAL would make 3 or 4 bytes RGB(A), a near-infrared 4th band alpha)."""
    from .io import rasterio_module

    rasterio = rasterio_module()
    prof = {"driver": "GTiff", "height": a.shape[0], "width": a.shape[1], "count": a.shape[2],
            "dtype": a.dtype.name, "compress": "deflate", "nodata": nodata, "photometric": "MINISBLACK"}
    if profile is not None:
        prof.update(crs=profile.get("crs"), transform=transform)
    if a.shape[0] % 16 == 0 and a.shape[1] % 16 == 0:
        prof.update(tiled=True, blockxsize=min(256, a.shape[1]), blockysize=min(256, a.shape[0]))
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from rasterio.io import MemoryFile

    # made in memory and written by Python: on a full disk GDAL's own writes printed dozens of libtiff
    # lines per chip and went on to the next chip; a Python write raises one OSError (ENOSPC)
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with mem.open(**prof) as dst:
            dst.write(np.moveaxis(a, -1, 0))
            if gcps is not None:
                dst.gcps = gcps
            if rpcs is not None:
                dst.rpcs = rpcs
            if mask is not None:
                dst.write_mask(mask)
            if colorinterp is not None and len(colorinterp) == a.shape[2] and \
                    rasterio.enums.ColorInterp.palette not in colorinterp:  # (a palette needs its colour table)
                dst.colorinterp = colorinterp
            for i, d in enumerate(descriptions or ()):
                if d:
                    dst.set_band_description(i + 1, d)
        data = mem.read()
    with open(path, "wb") as f:
        f.write(data)


def export_dataset(results, output: str, *, tile: int = 512, overlap: int = 0, val_fraction: float = 0.2,
                   seed: int = 0, overwrite: bool = False) -> dict:
    """Cut the results in ``results`` folders into a training set in ``output``.

    Parameters
    ----------
    results : sequence of str
        Result folders (the ``-o`` folders of label-image runs).
    output : str
        DATASET folder; must not exist or be empty unless ``overwrite``.
    tile : int
        Tile side in pixels, >= 16.
    overlap : int
        Pixels shared by neighbouring tiles, 0 <= overlap < tile.
    val_fraction : float
        In [0, 1): share of source images that go to ``val``.
    seed : int
        Seed of the shuffle that draws the val images.
    overwrite : bool
        Replace an existing non-empty ``output``.

    Returns
    -------
    dict
        What ``dataset.json`` holds.

    Raises
    ------
    OptionError, InputError, OutputError
        Bad options, missing or inconsistent results, ``output`` in the way. Nothing is written then.
    """
    if int(tile) != tile or tile < MIN_TILE:
        raise OptionError(f"--tile: expected a whole number of pixels >= {MIN_TILE}, got {tile}")
    if int(overlap) != overlap or not 0 <= overlap < tile:
        raise OptionError(f"--overlap: expected a whole number in [0, tile) = [0, {tile}), got {overlap}")
    if not 0 <= val_fraction < 1:
        raise OptionError(f"--val-fraction: expected a number in [0, 1), got {val_fraction}")
    if int(seed) != seed or seed < 0:
        raise OptionError(f"--seed: expected a whole number >= 0, got {seed}")
    if not results:
        raise InputError("no results folders given: pass the -o folders of label-image runs")
    items, seen, folders = [], {}, {}
    for folder in results:
        real = os.path.realpath(folder)
        if real in folders:
            also = f" (also as {folders[real]!r})" if folders[real] != folder else ""
            raise InputError(f"results folder {folder!r} is given twice{also}; give it once")
        folders[real] = folder
        for it in find_results(folder):
            key = (it.source, plane_key(it.plane))  # two planes of one stack are two images
            if key in seen:
                first = seen[key]
                # folders are given whole: "give only one" left no way to use a result corrected into
                # another folder (label-image --init out/a_mres_label.png -o fixed/) beside the rest of out/
                files = " or ".join(dict.fromkeys(_label_files(x) for x in (first, it)))
                raise InputError(f"{_what(it)} is labelled twice, in {first.label_path!r} and "
                                 f"{it.label_path!r}; label-export takes whole folders: keep one result by moving "
                                 f"the other's {files} out of its folder (the original, after correcting it "
                                 "with --init into another -o)")
            seen[key] = it
            items.append(it)
    if not items:
        raise InputError(f"no results (<stem>{LABEL_SUFFIX} or <stem>{GEO_SUFFIX}) found in "
                         f"{', '.join(repr(r) for r in results)}; give the -o folders of label-image runs")
    first = items[0]
    for it in items[1:]:
        if it.names != first.names:
            raise InputError(f"{it.label_path!r} has classes {', '.join(it.names)} but {first.label_path!r} has "
                             f"{', '.join(first.names)}; export results labelled with the same classes together")
    if not str(output).strip():
        raise OutputError("-o/--output is empty: give the dataset folder")
    out = os.path.abspath(output)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"-o/--output {output!r} is a file; give a folder for the dataset")
    _check_not_inside(out, output, results, [it.source for it in items])
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise OutputError(f"-o/--output {output!r} exists and is not empty; pass --overwrite to replace it "
                          "or give a new folder")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise OutputError(f"-o/--output {output!r}: its parent folder {parent!r} does not exist; create it first "
                          "or check the path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"-o/--output {output!r}: its parent folder {parent!r} is not writable (the dataset is "
                          "built beside it, then moved into place); choose a folder you can write to")

    split = split_sources([it.source for it in items], val_fraction=val_fraction, seed=seed)
    items.sort(key=lambda it: it.source)
    names_used = {}
    k = len(first.names)
    counts = {"train": np.zeros(k, np.int64), "val": np.zeros(k, np.int64)}
    records = []
    remove_orphans(parent)  # the temporary folders of an export killed midway (kill -9, out of memory)
    tmp = owned_tempdir(parent, os.path.basename(out), suffix=".part")
    old = None
    try:
        for s in ("train", "val"):
            for kind in ("images", "labels"):
                os.makedirs(os.path.join(tmp, s, kind))
        stems = {it.stem for it in items}
        for it in items:
            base, n = it.stem, 1
            while base in names_used or (n > 1 and base in stems):  # <stem>_2, _3, ...: never another's stem
                n += 1
                base = f"{it.stem}_{n}"
            names_used[base] = it.source
            records += _export_one(it, tmp, base, split[it.source], tile=tile, overlap=overlap, counts=counts)
        info = {
            "classes": list(first.names), "colors": list(first.colors), "tile": int(tile), "overlap": int(overlap),
            "nodata": NODATA, "val_fraction": float(val_fraction), "seed": int(seed),
            "sources": {s: sorted(src for src, v in split.items() if v == s) for s in ("train", "val")},
            "pixel_counts": {s: {nm: int(c) for nm, c in zip(first.names, counts[s])} for s in ("train", "val")},
            "tiles": records, "label_tools": __version__,
        }
        with open(os.path.join(tmp, "dataset.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        os.chmod(tmp, 0o777 & ~_umask())
        with signals_deferred():  # a Ctrl-C between the two renames would leave no dataset at DATASET
            if os.path.isdir(out):
                old = owned_tempdir(parent, os.path.basename(out), suffix=".old")
                os.rename(out, os.path.join(old, "d"))
            os.rename(tmp, out)
    except BaseException as e:
        if isinstance(e, Interrupted) and not os.path.exists(tmp):
            e.committed = True  # the signal came during the swap, which finished first
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return info


def _check_not_inside(out: str, output: str, results, sources):
    """OutputError when DATASET is, or holds, a results folder or a source image: writing the dataset there
    (with --overwrite, replacing the folder) would delete what it is made from."""
    real = os.path.realpath(out)
    for what, paths in (("the results folder", results), ("the source image", sources)):
        for p in paths:
            rp = os.path.realpath(p)
            if rp == real or rp.startswith(real.rstrip(os.sep) + os.sep):
                raise OutputError(f"-o/--output {output!r} holds {what} {p!r} being exported; replacing it would "
                                  "delete it: give a new folder for the dataset")


def chip_transform(transform, row: int, col: int):
    """The affine transform of a chip whose pixel (0, 0) is the source's pixel (row, col)."""
    from affine import Affine

    t = transform
    return Affine(t.a, t.b, t.c + t.a * col + t.b * row, t.d, t.e, t.f + t.d * col + t.e * row)


def chip_gcps(gcps, row: int, col: int):
    """Ground control points (points, CRS) of a chip whose pixel (0, 0) is the source's pixel (row, col).

    Every point is kept, moved into the chip's pixel coordinates (also those outside the chip), so a GIS
    fits the same warp to the chip as to the source and the chip lands where it came from.
    """
    from rasterio.control import GroundControlPoint

    points, crs = gcps
    return [GroundControlPoint(row=p.row - row, col=p.col - col, x=p.x, y=p.y, z=p.z, id=p.id, info=p.info)
            for p in points], crs


def chip_rpcs(rpcs, row: int, col: int):
    """The RPCs of a chip whose pixel (0, 0) is the source's pixel (row, col): the same model, its line and
    sample offsets moved into the chip's pixels."""
    from rasterio.rpc import RPC

    d = rpcs.to_dict()
    d.update(line_off=rpcs.line_off - row, samp_off=rpcs.samp_off - col)
    return RPC(**d)


def _pad_value(nodata, dtype):
    """What edge tiles are padded with: the source's no-data value where it declares one that ``dtype``
    holds (0 may be data: int16 with negative values, reflectances), else 0."""
    if nodata is None:
        return 0
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.array(nodata).astype(dtype)
    same = v == nodata or (np.dtype(dtype).kind == "f" and np.isnan(v) and np.isnan(nodata))
    return v if same else 0


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _export_one(it: Item, root: str, base: str, split: str, *, tile, overlap, counts) -> list:
    """Tiles of one result into ``root/split``; returns their records (paths relative to root)."""
    src = _Source(it.source, plane=it.plane and it.plane["text"])
    labels = None
    try:
        labels = Labels(it.label_path)
        if labels.shape != tuple(src.shape):
            raise InputError(f"labels {it.label_path!r} are {labels.shape[1]} x {labels.shape[0]} px but the source "
                             f"{it.source!r} is {src.shape[1]} x {src.shape[0]}; the source changed since the run")
        k = len(it.names)
        h, w = src.shape
        _check_tile_fits(tile, src, it.source)
        fmt = src.fmt
        out = []
        for r in tile_starts(h, tile, overlap):
            for c in tile_starts(w, tile, overlap):
                th, tw = min(tile, h - r), min(tile, w - c)
                lab = np.full((tile, tile), NODATA, np.uint8)
                lab[:th, :tw] = labels.read(r, c, th, tw)
                if (lab == NODATA).all():
                    continue
                img = np.full((tile, tile, src.count), _pad_value(src.nodata, src.dtype), src.dtype)
                img[:th, :tw] = src.read(r, c, th, tw)
                name = f"{base}_r{r:05d}_c{c:05d}.{fmt}"
                ip = os.path.join(split, "images", name)
                lp = os.path.join(split, "labels", name)
                if fmt == "png":
                    _write_png(os.path.join(root, ip), img)
                    _write_png(os.path.join(root, lp), lab)
                else:
                    tr = chip_transform(src.georef["transform"], r, c) if src.georef else None
                    gcps = chip_gcps(src.gcps, r, c) if src.gcps else None
                    rpcs = chip_rpcs(src.rpcs, r, c) if src.rpcs is not None else None
                    mask = None
                    if src.masked:  # padding is outside the mask too
                        mask = np.zeros((tile, tile), np.uint8)
                        mask[:th, :tw] = src.read_mask(r, c, th, tw)
                    _write_tif(os.path.join(root, ip), img, profile=src.georef, transform=tr, nodata=src.nodata,
                               gcps=gcps, rpcs=rpcs, descriptions=src.descriptions, mask=mask,
                               colorinterp=src.colorinterp)
                    _write_tif(os.path.join(root, lp), lab[..., None], profile=src.georef, transform=tr, nodata=NODATA,
                               gcps=gcps, rpcs=rpcs)
                counts[split] += np.bincount(lab.ravel(), minlength=256)[:k]
                rec = {"split": split, "image": ip.replace(os.sep, "/"), "label": lp.replace(os.sep, "/"),
                       "source": it.source, "window": [int(r), int(c), int(th), int(tw)]}
                if it.plane is not None:  # the --plane the source was labelled on, as the report gives it
                    rec["plane"] = it.plane["text"]
                out.append(rec)
        log.info("%s: %s -> %s", it.source + (f" ({it.plane['what']})" if it.plane else ""),
                 _count(len(out), "tile"), split)
        return out
    finally:
        src.close()
        if labels is not None:
            labels.close()


def _check_tile_fits(tile: int, src, source: str, *, memory: int | None = None):
    """Refuse a ``--tile`` whose one tile (image bands, labels and mask, padded to tile x tile) cannot be held in
    memory, before it is allocated: ``--tile 100000`` ended in a MemoryError traceback (and first filled a 10 GB
    label tile)."""
    from .imagecheck import available_memory

    need = tile * tile * (src.count * np.dtype(src.dtype).itemsize + 2)
    memory = available_memory() if memory is None else memory
    if need > memory // 2:
        h, w = src.shape
        raise OptionError(f"--tile {tile}: one tile of {tile} x {tile} px ({src.count} band{'s' if src.count > 1 else ''} "
                          f"of {np.dtype(src.dtype).name}, labels and mask) needs {need / 2**30:.1f} GiB but "
                          f"{memory / 2**30:.1f} GiB of memory is available ({source!r} is {w} x {h} px); choose a "
                          "smaller --tile, such as 512")


# ---------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, text):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None


def _folder(text):
    """-o DATASET: an empty value (an unset shell variable) would be the current folder, replaced with --overwrite."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a dataset folder, got an empty value")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="label-export", description=(
        "Cut label-image results into image/label tile pairs for training a segmentation network: "
        "DATASET/{train,val}/{images,labels}/<name>.png (GeoTIFF chips for georeferenced sources) and "
        "DATASET/dataset.json. Label tiles: 0-based class ids, 255 = no-data or padding. The split is by "
        "source image, never by tile."),
        epilog="example:\n  label-export out/day1 out/day2 -o dataset --tile 256 --val-fraction 0.2",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folders (the -o folders of label-image)")
    p.add_argument("-o", "--output", required=True, metavar="DATASET", type=_folder, help="dataset folder to write")
    p.add_argument("--tile", type=lambda t: _number(int, t), default=512,
                   help="tile side in pixels (default 512, >= 16)")
    p.add_argument("--overlap", type=lambda t: _number(int, t), default=0,
                   help="pixels shared by neighbouring tiles (default 0; < tile)")
    p.add_argument("--val-fraction", type=lambda t: _number(float, t), default=0.2,
                   help="share of source images for validation, in [0, 1) (default 0.2)")
    p.add_argument("--seed", type=lambda t: _number(int, t), default=0, help="seed of the split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty DATASET")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    p.add_argument("--version", action="version", version=f"label_tools {__version__}")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # folders after options too
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="label-export: %(message)s",
                        stream=sys.stderr)
    try:
        with terminate_as_interrupt():  # SIGTERM/SIGHUP too: the temporary folder is removed on the way out
            info = export_dataset(args.results, args.output, tile=args.tile, overlap=args.overlap,
                                  val_fraction=args.val_fraction, seed=args.seed, overwrite=args.overwrite)
    except LabelToolsError as e:
        sys.stderr.write(f"label-export: error: {e}\n")
        return 2
    except Exception as e:  # a full disk or an I/O error while writing tiles (the temporary folder is gone)
        from .files import _is_gdal_io_error

        if not (isinstance(e, OSError) or _is_gdal_io_error(e)):
            raise
        from .io import _first_line

        import errno

        reason = getattr(e, "strerror", None) or _first_line(e)
        # "free some space" only for a full disk (or quota): for a read-only or permission failure it misled
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
        fix = ("free some space or choose another folder with -o/--output" if full or getattr(e, "errno", None) is None
               else "choose another folder with -o/--output, one you can write to")
        sys.stderr.write(f"label-export: error: cannot write the dataset {args.output!r} ({reason}); nothing was "
                         f"written there: {fix}\n")
        return 2
    except KeyboardInterrupt as e:
        import signal

        signum = int(getattr(e, "signum", signal.SIGINT))
        done = (f"the new dataset was complete and is in {args.output!r}" if getattr(e, "committed", False)
                else f"nothing was written ({args.output!r} is as it was)")
        sys.stderr.write(f"label-export: stopped by {signal.Signals(signum).name}; {done}\n")
        return 128 + signum
    n = {s: sum(t["split"] == s for t in info["tiles"]) for s in ("train", "val")}
    log.info("wrote %s: %s from %s, %s from %s", args.output, _count(n["train"], "train tile"),
             _count(len(info["sources"]["train"]), "image"), _count(n["val"], "val tile"),
             _count(len(info["sources"]["val"]), "image"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
