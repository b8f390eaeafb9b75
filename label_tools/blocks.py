"""A large raster as many window tasks: the model-grid stage once, then full-resolution windows anywhere.

The in-process prediction (:func:`label_tools.pipeline.predict`) has two parts of very different
weight on a large raster:

1. the **grid stage**: the raster averaged onto the model grid (about 0.4 MP by default), its
   features (each tile with the halo the widest feature needs), the forest, and the dense CRF (on
   tiles grown by the overlap the CRF needs), giving class probabilities ``(K, h, w)`` on the grid;
2. the **full-resolution stage**: for every block-aligned window of
   :func:`~label_tools.upsample.label_windows`, the window (plus the guided filter's margin) is read
   at full resolution and the grid probabilities are turned into labels whose edges follow the image
   (:func:`~label_tools.upsample.upsample_window`).

Here the grid stage is one task and the windows are many (a few windows per task), so a 400 MP scene
uses every worker. Each window depends only on the raster file and the grid probabilities, and the
forest adds its votes in a fixed order, so the labels are **identical**, pixel for pixel, to the
in-process run, whichever worker computes a window, in whatever order, however often (a task lost with
its worker is simply run again). Nothing random is involved after fitting. The plane of a stack chosen with
``--plane`` travels with every task (:class:`SourceSpec`), so the workers read the pixels the client labels.

What travels: the classifier inside the grid task, the grid result (probabilities, a few MB) from
worker to worker as the windows' one dependency, a file path and a few windows per task, and each window's labels (zlib-compressed uint8) back to the client, which assembles
them and writes the outputs (the single writer).
"""
from __future__ import annotations

import math
import os
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

#: Rasters of at least this many pixels are cut into window tasks on a cluster (smaller images are one task).
WINDOWED_PIXELS = float(os.environ.get("LABEL_TOOLS_WINDOWED_MP", "32")) * 1e6
#: Full-resolution pixels per window task (whole label windows are grouped up to this).
TASK_PIXELS = float(os.environ.get("LABEL_TOOLS_TASK_MP", "4")) * 1e6


@dataclass(frozen=True)
class SourceSpec:
    """How a worker opens the image: a path, the band choices and the plane (small and picklable).

    Attributes
    ----------
    path : str
        Absolute path, on a filesystem every worker sees.
    bands, feature_bands : tuple of int or None
        1-based display / feature bands, as given to :func:`label_tools.io.open_image`.
    lo, hi : tuple of float
        The client's per-band stretch (after a model applied its own), imposed on the workers' reads.
    plane : str or None
        ``--plane`` as given (:mod:`label_tools.planes`): the plane of a stack or multi-page TIFF the client
        opened, which every worker opens too; None: the first.
    """

    path: str
    bands: tuple | None = None
    feature_bands: tuple | None = None
    lo: tuple = ()
    hi: tuple = ()
    plane: str | None = None

    @classmethod
    def of(cls, src) -> "SourceSpec":
        """The spec of an open :class:`~label_tools.io.RasterSource`."""
        n = getattr(src, "feature_count", src.count)
        feat = tuple(src._bands[:n]) if hasattr(src, "_bands") else None
        disp = tuple(src._bands[i] for i in src._display) if hasattr(src, "_bands") else None
        plane = getattr(src, "plane", None)
        return cls(os.path.abspath(src.path), disp, feat, tuple(np.asarray(src._lo, np.float32).tolist()),
                   tuple(np.asarray(src._hi, np.float32).tolist()), plane["text"] if plane else None)


_sources: dict = {}
_sources_lock = threading.Lock()


def open_source(spec: SourceSpec):
    """The image of ``spec``, opened once per worker thread while the file is unchanged.

    Opening a large raster reads a sample for its stretch (the same sample every time, so every
    worker scales pixels identically); rasterio datasets are not shared between threads.
    """
    from .io import open_image

    st = os.stat(spec.path)
    key = (spec.path, spec.bands, spec.feature_bands, spec.plane, st.st_mtime_ns, st.st_size, threading.get_ident())
    with _sources_lock:
        src = _sources.get(key)
    if src is None:
        src = open_image(spec.path, bands=spec.bands and list(spec.bands),
                         feature_bands=spec.feature_bands and list(spec.feature_bands), plane=spec.plane)
        with _sources_lock:
            for k in [k for k in _sources if k[-1] == key[-1]]:  # one image per thread at a time
                old = _sources.pop(k)
                getattr(old, "close", lambda: None)()
            _sources[key] = src
    if spec.lo:
        src._lo, src._hi = np.asarray(spec.lo, np.float32), np.asarray(spec.hi, np.float32)
    return src


def is_large(src) -> bool:
    """True for a raster read window by window that is worth cutting into window tasks."""
    return hasattr(src, "ds") and src.height * src.width >= WINDOWED_PIXELS


def task_groups(shape, *, task_pixels: float = TASK_PIXELS, tile: int | None = None) -> list:
    """The label windows of an image, grouped into square blocks of about ``task_pixels`` each.

    Returns
    -------
    list of list of tuple (row0, row1, col0, col1)
        Every window of :func:`~label_tools.upsample.label_windows` exactly once.
    """
    from .upsample import LABEL_TILE, label_windows

    tile = tile or LABEL_TILE
    n = max(1, int(math.sqrt(task_pixels) // tile))  # windows per side of a task
    groups: dict = {}
    for w in label_windows(shape, tile):
        groups.setdefault((w[0] // (tile * n), w[2] // (tile * n)), []).append(w)
    return [groups[k] for k in sorted(groups)]


def grid_task(spec: SourceSpec, classifier, n_classes: int, settings, samples=None):
    """The grid stage of one image (run on a worker).

    Returns
    -------
    pipeline.Result
        ``labels`` None, ``classifier`` None (the client has it).
    """
    from .pipeline import predict
    from .threads import match_dask_worker

    match_dask_worker()
    src = open_source(spec)
    r = predict(src, classifier, n_classes=n_classes, settings=settings, upsample=False, samples=samples)
    if r.classifier is classifier:
        r.classifier = None  # the client has it (a carried model adapted to the image returns its refit)
    return r


def windows_task(spec: SourceSpec, grid, windows, maps=None):
    """Labels of some full-resolution windows (run on a worker), from the grid stage's result ``grid``.

    With ``maps`` (:class:`label_tools.uncertainty.WindowMaps`, for ``--save-probs``), also each window's
    calibrated probabilities and uncertainty map as they are written (bytes), and its uncertainty counts.

    Returns
    -------
    list of tuple
        Without ``maps``: (window, labels) per window, labels uint8 row-major, zlib-compressed. With them:
        (window, labels, probabilities, map, pixels per class, uncertain pixels per class): probabilities
        uint8 (K, h, w) as :func:`label_tools.uncertainty.probs_to_uint8` makes them, the map uint8 (h, w) as
        :func:`~label_tools.uncertainty.uncertainty_to_uint8`, both zlib-compressed; the counts int64 (K,)
        (:class:`~label_tools.uncertainty.UncertainCounts`).
    """
    from .threads import match_dask_worker
    from .upsample import upsample_window

    match_dask_worker()
    src = open_source(spec)
    out = []
    for w in windows:
        got = upsample_window(src, grid.probs, w, radius=grid.upsample_radius, fine=grid.upsample_fine,
                              with_probs=maps is not None)
        if maps is None:
            out.append((w, _pack(got)))
            continue
        from .uncertainty import UncertainCounts, probs_to_uint8, uncertainty_to_uint8

        lab, q = got
        pc = maps.calibration.apply(q)
        umap = maps.umap(w, pc, lab)
        counts = UncertainCounts(pc.shape[0])
        counts.add(pc, lab, umap)
        out.append((w, _pack(lab), _pack(probs_to_uint8(pc, lab)), _pack(uncertainty_to_uint8(umap, lab)),
                    counts.total, counts.uncertain))
    return out


def _pack(a) -> bytes:
    return zlib.compress(np.ascontiguousarray(a).tobytes(), 1)


def _unpack(blob, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), np.uint8).reshape(shape)


def _same(x):
    """A task whose result is its argument: data the windows depend on that Dask can compute again if the
    worker holding it is lost (scattered data could not be)."""
    return x


def predict_on_cluster(client, model, src, *, settings=None, progress=None, stretch: str = "image",
                       on_grid=None, on_window=None):
    """:meth:`label_tools.model.Model.predict` with the work spread over a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
    model : label_tools.model.Model
    src : label_tools.io.RasterSource
        Opened on the client too (for its size and georeferencing); workers open the same file.
    settings : pipeline.Settings, optional
        Default: the model's effective settings.
    progress : callable(stage, done, total), optional
        Called as windows come back (stage ``"windows"``).
    stretch : {"image", "model"}
        As in :meth:`label_tools.model.Model.predict`.
    on_grid : callable(result) -> label_tools.uncertainty.WindowMaps, optional
        Called on the client with the grid stage's result before any window runs; the window tasks then
        also make each window's calibrated probabilities and uncertainty map (``--save-probs``).
    on_window : callable(window, labels, probs, umap, total, uncertain), optional
        With ``on_grid``: receives each window's outputs as they come back (see :func:`windows_task`;
        probabilities uint8 (K, h, w), map uint8 (h, w), decompressed).

    Returns
    -------
    pipeline.Result
        Identical to ``model.predict(src)`` in this process (timings aside).
    """
    from .cluster import first_results, prepare_workers

    model.check_source(src)
    fitted_here = model._cache is not None
    model._cache = None  # as Model.predict: features cached from fitting serve one prediction only
    if stretch == "model" and not fitted_here:  # the workers get the scaling through the spec
        model.apply_stretch(src)
    elif stretch not in ("image", "model"):
        raise ValueError(f"stretch: expected 'image' or 'model', got {stretch!r}")
    settings = settings if settings is not None else model.effective_settings(stretch)
    settings = model.carry_settings(settings, src)  # as Model.predict: a carried model's class shares
    spec = SourceSpec.of(src)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:8]
    prepare_workers(client)
    # the classifier (in the grid task) and, with --save-probs, the windows' maps travel in the task graph on
    # purpose (task results Dask can compute again, which scattered data could not be): Dask's advice against it
    # ('UserWarning: Sending large graph of size 11.40 MiB. This may cause some slowdown. Consider loading the
    # data with Dask directly ...', seven lines on the terminal for a 36 MP raster's maps) is not for the user
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    # the classifier travels inside the grid task and the grid result is a task result the windows depend
    # on: if a worker dies holding it, Dask recomputes it (data scattered from here could not be)
    def submit_grid(_, attempt):
        return client.submit(grid_task, spec, model.classifier, model.n_classes, settings, model.samples(),
                             key=f"label_grid-{run_id}" + (f"-{attempt}" if attempt else ""))

    grid0 = submit_grid(0, 0)
    groups = task_groups(src.shape)
    # labels only: the windows are queued behind the grid stage at once; with on_grid they wait for its maps
    futures = [] if on_grid is not None else \
        [client.submit(windows_task, spec, grid0, g, key=f"label_windows-{run_id}-{i}") for i, g in enumerate(groups)]
    for _, r, grid in first_results(client, submit_grid, 1, what="grid", first=[grid0]):
        if isinstance(r, BaseException):
            raise r
    maps = on_grid(r) if on_grid is not None else None
    remaps = {}  # the maps as a task result per attempt (kept on whichever worker is free, as the grid)

    def maps_for(attempt):
        if maps is None:
            return []
        if attempt not in remaps:
            remaps[attempt] = client.submit(_same, maps, key=f"label_maps-{run_id}-{attempt}")
        return [remaps[attempt]]

    if maps is not None:
        futures = [client.submit(windows_task, spec, grid, g, *maps_for(0), key=f"label_windows-{run_id}-{i}")
                   for i, g in enumerate(groups)]
    elif grid is not grid0:  # the grid stage was started again: the windows built on the stalled one would wait
        for f in futures:
            f.release()
        futures = [client.submit(windows_task, spec, grid, g, key=f"label_windows-{run_id}-{i}-g")
                   for i, g in enumerate(groups)]
    del grid0

    regrids = {}

    def submit_windows(i, attempt):
        # a window stage that stalls may be waiting for the grid result on a frozen worker: later attempts
        # build on the grid computed again (once per attempt number, on whichever worker is free)
        if attempt not in regrids:
            regrids[attempt] = submit_grid(0, f"w{attempt}")
        return client.submit(windows_task, spec, regrids[attempt], groups[i], *maps_for(f"w{attempt}"),
                             key=f"label_windows-{run_id}-{i}-{attempt}")

    r.classifier = model.classifier if r.classifier is None else r.classifier
    r.timings["grid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = np.empty(src.shape, np.uint8)
    total, done = sum(len(g) for g in groups), 0
    for _, part, fut in first_results(client, submit_windows, len(groups), what="window", first=futures):
        if isinstance(part, BaseException):
            raise part
        for (r0, r1, c0, c1), blob, *more in part:
            labels[r0:r1, c0:c1] = lab = _unpack(blob, (r1 - r0, c1 - c0))
            if more and on_window is not None:  # (not named `total`: that is the number of windows, for progress)
                p8, u8, pixels, uncertain = more
                on_window((r0, r1, c0, c1), lab, _unpack(p8, (-1, r1 - r0, c1 - c0)), _unpack(u8, lab.shape),
                          pixels, uncertain)
            done += 1
        fut.release()
        if progress:
            progress("windows", done, total)
    r.labels = labels
    r.timings["upsample"] = time.perf_counter() - t0
    if fitted_here and model.counts is not None:
        r.samples = model.counts
    r.chosen = dict(getattr(model, "chosen", {}))
    return r
