"""One image, start to end: read -> scribbles (file or annotator) and/or a saved model -> fit/predict -> write.

:func:`run_job` is what the command line's single run, its ``--headless`` batch and a Dask task all
call. A :class:`Job` carries only paths and settings (small, picklable, the same on any machine that
sees the files); an :class:`Outcome` is plain data too. Nothing here parses options or prints:
the caller reports.

Batches: :func:`collect_inputs` turns images and folders into a sorted list of images,
:func:`check_stems` refuses two inputs that would write the same outputs, and :func:`run_batch`
runs jobs one after another, a failing image becoming a ``failed`` outcome while the rest go on.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import InputError, LabelToolsError, OptionError

log = logging.getLogger("label_tools")

#: Files a run writes (or the annotator keeps) that a folder input must not take for images.
#: Files label-image writes or keeps beside the images: never taken for input images of a folder.
OUTPUT_SUFFIXES = ("_mres.png", "_mres_label.png", "_mres_geo.tif", "_scribbles.png", ".bak.png", "_probs.tif",
                   "_uncertainty.png", "_uncertainty.tif")

DONE, SKIPPED, FAILED = "done", "skipped", "failed"

EARLY_SCRIBBLE_PIXELS = 16e6  # class-number scribbles up to this size are decoded while the image is read


@dataclass(frozen=True)
class Job:
    """What one image needs: paths and settings only.

    Attributes
    ----------
    image : str
    outdir : str
        Outputs go to ``outdir/<stem>_...``.
    model : str or None
        Model file to apply (without ``scribbles``) or to refit (with them).
    scribbles : str or None
        Scribble image; with neither this nor ``model`` the annotator opens (``annotate`` options).
    labels, colors : str or None
        Class names / colours files. With a model they must match the model's classes.
    settings : pipeline.Settings or None
        Settings of a fit from scratch (None = defaults). Ignored with a model, whose settings
        travel with it, except the fields named in ``overrides``.
    overrides : dict
        Settings given explicitly that replace the model's (``crf_weight``, ``crf_scale``, ``scale``,
        ``crf_iter``, ``adapt``).
    bands, feature_bands : tuple of int or None
        1-based display / feature bands.
    overwrite : bool
        Replace existing outputs.
    skip_existing : bool
        An image whose outputs all exist is skipped (a batch resumes by running again).
    save_model : str or None
        Write the model fitted (or refitted) here.
    annotate : dict or None
        Annotator options (``window``, ``resume``, ``backend``) when the scribbles are drawn.
    report : dict
        Extra lines for the report's settings section (e.g. the annotator window).
    init : str or None
        Pre-labels to start from (:mod:`label_tools.prelabels`): weak labels under the scribbles,
        shown in the annotator.
    init_offset : int or None
        1: the pre-label file's ids start at 1, 0 = no-data; 0: at 0; None: not said (0, but a raster
        declaring no-data 0 is refused, see :func:`label_tools.prelabels.read_prelabels`).
    save_probs : bool
        Also write the calibrated probabilities (``<stem>_probs.tif``) and the uncertainty map
        (``<stem>_uncertainty.png``, and ``.tif`` for georeferenced input); the .mat gains
        ``probs`` and ``uncertainty``.
    plane : str or None
        ``--plane`` as given (:mod:`label_tools.planes`): the z-slice and time point of a stack, or the page of a
        multi-page TIFF, to label; its outputs and scribble files are named ``<stem><plane tag>_...``
        (:func:`output_stem`). None: the first plane, named as ever.
    """

    image: str
    outdir: str
    model: str | None = None
    scribbles: str | None = None
    labels: str | None = None
    colors: str | None = None
    settings: object = None
    overrides: dict = field(default_factory=dict)
    bands: tuple | None = None
    feature_bands: tuple | None = None
    overwrite: bool = False
    skip_existing: bool = False
    save_model: str | None = None
    annotate: dict | None = None
    report: dict = field(default_factory=dict)
    save_probs: bool = False
    init: str | None = None
    init_offset: int | None = None
    plane: str | None = None


@dataclass
class Outcome:
    """What became of one job.

    Attributes
    ----------
    image : str
    status : {"done", "skipped", "failed"}
    outputs : dict of str -> str
        Final path of every output by kind (empty when failed).
    seconds : float
        Wall time of the job.
    message : str
        Why it was skipped or failed (one line).
    timings : dict of str -> float
        Seconds per step.
    error : str
        Exception class name when failed (``InputError``, ``OutputError``, ...).
    warnings : list of str
        ``warning:`` lines of the inspection (:mod:`label_tools.inspect`), also in the report.
    """

    image: str
    status: str
    outputs: dict = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""
    timings: dict = field(default_factory=dict)
    error: str = ""
    warnings: list = field(default_factory=list)


# -------------------------------------------------------------------------------------------- inputs
#: other names a folder's images may have, read when named on the command line too: GIF, TIFFs under a
#: microscope's name, single-file rasters GDAL reads (not ENVI's ``.dat``, a name many other files have)
FOLDER_EXTRA_EXT = (".gif", ".lsm", ".stk", ".asc", ".sdat", ".hgt")


def is_image_file(name: str) -> bool:
    """True for a file name label-image reads, other than label_tools' own outputs."""
    from .io import PHOTO_EXT, RASTER_EXT

    low = name.lower()
    if low.startswith("."):
        return False
    if not low.endswith(PHOTO_EXT + RASTER_EXT + FOLDER_EXTRA_EXT) or low.endswith(".aux.xml"):
        return False
    return not any(low.endswith(s) for s in OUTPUT_SUFFIXES)


def collect_inputs(inputs) -> list:
    """Images named, and the images inside folders named, in order (each folder's sorted by name); an
    image named twice (the same file, by its real path) is listed once, where it first comes.

    Raises
    ------
    InputError
        An input that does not exist, or a folder holding no image.
    """
    out = []
    for p in inputs:
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if is_image_file(n) and os.path.isfile(os.path.join(p, n)))
            if not names:
                raise InputError(f"folder {p!r} holds no image (JPEG, PNG, TIFF, ...); give images or another folder")
            out += [os.path.join(p, n) for n in names]
        elif os.path.exists(p):
            from .imagecheck import check_regular_file

            check_regular_file(p)  # a pipe (`<(curl ...)`): said as such, before its folder (/dev/fd) is checked
            out.append(p)
        else:
            raise InputError(f"image {p!r} does not exist")
    once = {}  # an image named twice (a folder and one of its files, `*.jpg first.jpg`) is labelled once
    for p in out:
        once.setdefault(os.path.realpath(p), p)
    return list(once.values())


def output_stem(job: Job, src=None) -> str:
    """The stem of ``job``'s outputs and of its annotator's scribble files: the image's file name without
    extension, with ``--plane``'s tag (``_z03``, ``_z03_t02``, ``_p03``) when a plane is chosen, so planes never
    share outputs or scribbles; the first plane by default keeps the plain stem.

    ``src``: the image already opened (its :attr:`plane`); without it the TIFF's description is read (an
    open, which a batch's writing thread must not do: opening sets Python's warning filters, shared by the
    thread reading the next image).

    Raises
    ------
    OptionError
        ``job.plane`` does not fit the image (not a stack, out of range).
    """
    from .io import image_plane

    if job.plane is None:
        return stem_in(job.outdir, job.image)
    plane = getattr(src, "plane", None) if src is not None else image_plane(job.image, job.plane)
    return stem_in(job.outdir, job.image, (plane or {}).get("suffix", ""))


def stem_in(outdir: str, image: str, suffix: str = "") -> str:
    """The stem of ``image``'s outputs and scribble files in ``outdir``: :func:`label_tools.io.stem` with ``suffix``
    (a plane's tag).

    An OME-TIFF's outputs were named by an earlier version with ``.ome`` kept (``cells.ome_mres_label.png`` of
    ``cells.ome.tif``, :func:`label_tools.io.legacy_stem`). Where ``outdir`` holds outputs or annotator scribbles
    under that name and none under the new one, the old name is kept: the earlier result is then refused without
    ``--overwrite`` and replaced with it, skipped by a batch that resumes, its strokes resumed in the annotator,
    and never doubled by a second set under the new name. Only file names are looked at.
    """
    from .io import legacy_stem, stem
    from .session import scribble_paths
    from .writers import output_paths

    new, old = stem(image) + suffix, legacy_stem(image)
    if old is None:
        return new

    def has(s):
        paths = list(output_paths(outdir, s, geotiff=True, probs=True).values()) + list(scribble_paths(outdir, s))
        return any(os.path.exists(p) for p in paths)

    return old + suffix if has(old + suffix) and not has(new) else new


def check_stems(jobs):
    """Refuse two jobs that would write the same outputs (same stem in the same output folder). A job whose
    ``--plane`` does not fit its image is left to fail on its own."""
    seen = {}
    for j in jobs:
        try:
            key = (os.path.abspath(j.outdir), output_stem(j))
        except LabelToolsError:
            continue
        if key in seen:
            raise InputError(f"inputs {seen[key]!r} and {j.image!r} have the same name {key[1]!r}: their outputs "
                             f"would collide in {j.outdir!r}; rename one or run them with different -o")
        seen[key] = j.image


# -------------------------------------------------------------------------------------------- models
_models: dict = {}  # (abspath, mtime_ns, size) -> Model: each process (or Dask worker) loads a file once


def load_model_cached(path: str):
    """:func:`label_tools.modelfile.load_model`, kept per process while the file is unchanged."""
    from .modelfile import load_model

    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _models:
        return _models[key]
    m = load_model(path)
    if key is not None:
        _models.clear()  # one model at a time is what a batch uses
        _models[key] = m
    return m


def _model_settings(model, overrides):
    """The model's settings (with its per-image choices) with explicitly given options applied."""
    s = model.effective_settings()
    kw = {k: v for k, v in overrides.items() if k in ("crf_weight", "crf_scale", "scale", "adapt")}
    if "crf_iter" in overrides:
        kw["crf"] = replace(s.crf, n_iter=overrides["crf_iter"])
    return replace(s, **kw).validate() if kw else s


# -------------------------------------------------------------------------------------------- one job
def expected_outputs(job: Job, georef: bool, *, stem: str | None = None) -> dict:
    """Paths of ``job``'s outputs (``stem``: :func:`output_stem`, if known)."""
    from .writers import output_paths

    return output_paths(job.outdir, stem or output_stem(job), geotiff=georef, probs=job.save_probs)


def check_outputs_not_inputs(job: Job, paths):
    """Raise OutputError when an output (or, with ``--overwrite``, an earlier output it removes) is one of
    the run's own inputs: ``--scribbles out/photo_mres_label.png -o out --overwrite`` would replace the
    person's strokes by the labels. Refused even with ``--overwrite``, before anything is computed."""
    from .errors import OutputError

    inputs = [(job.image, "the image to label"), (job.scribbles, "the --scribbles file"),
              (job.init, "the --init file"), (job.labels, "the --labels file"), (job.colors, "the --colors file"),
              (job.model, "the --model file")]
    real = {os.path.realpath(p): what for p, what in inputs if p}
    for p in paths:
        what = real.get(os.path.realpath(p))
        if what is not None:
            raise OutputError(f"output {p!r} is {what}: writing the outputs would replace it (refused even "
                              "with --overwrite); write them elsewhere with -o/--output, or rename the input")
    return None


def _other_pages(src) -> int:
    """The TIFF pages of ``src`` that may differ in size from the one labelled, for size-mismatch hints (which
    say the first page is labelled and how to choose another): a hyperstack's pages are z-slices and time
    points of one size, so none (1); a page chosen with ``--plane`` was chosen knowingly, so none either."""
    if getattr(src, "stack", None) or getattr(src, "plane", None):
        return 1
    return getattr(src, "pages", 1)


def _all_exist(job: Job):
    """Outputs if every one of them exists (the GeoTIFF only for georeferenced input), else None.

    A set a killed run was renaming into place is finished first (:func:`label_tools.files.recover_output_dir`):
    judged half-renamed, the image would be run again and refused for the half that exists.
    """
    from .files import recover_output_dir, results_of_other_image
    from .io import RASTER_EXT, _gdal_raster, open_image

    recover_output_dir(job.outdir)
    paths = expected_outputs(job, False)
    if not all(os.path.exists(p) for p in paths.values()):
        return None
    if results_of_other_image(paths.values(), job.image) is not None:
        return None  # another image's (same stem): never "done" for this one; refused when computed
    if job.image.lower().endswith(RASTER_EXT) or _gdal_raster(job.image):  # .asc, ENVI, .lsm: GDAL's too
        src = open_image(job.image, bands=job.bands, feature_bands=job.feature_bands, plane=job.plane)
        try:
            if src.georef is not None:
                paths = expected_outputs(job, True)
                if not os.path.exists(paths["geotiff"]):
                    return None
        finally:
            close = getattr(src, "close", None)
            if close:
                close()
    return paths


def run_job(job: Job, *, progress=None, model=None, predict=None) -> Outcome:
    """Label one image and write its outputs (all or none).

    Parameters
    ----------
    job : Job
    progress : callable(stage, done, total), optional
    model : label_tools.model.Model, optional
        Already loaded ``job.model`` (else it is loaded, once per process).
    predict : callable(model, src, *, settings, progress) -> pipeline.Result, optional
        Replaces ``model.predict`` (e.g. :func:`label_tools.blocks.predict_on_cluster`: same result,
        computed by a cluster's workers).

    Returns
    -------
    Outcome
        ``failed`` with a one-line message for any :class:`~label_tools.errors.LabelToolsError`
        (bad input, model that does not fit, outputs that exist); programming errors propagate.
    """
    t0 = time.perf_counter()
    try:
        if job.skip_existing and not job.overwrite:
            existing = _all_exist(job)
            if existing is not None:
                return Outcome(job.image, SKIPPED, existing, time.perf_counter() - t0,
                               message="outputs exist (pass --overwrite to replace them)")
        outputs, timings, warnings = _write(_compute(job, progress=progress, model=model, predict=predict))
    except LabelToolsError as e:
        return Outcome(job.image, FAILED, {}, time.perf_counter() - t0, message=str(e), error=type(e).__name__)
    return Outcome(job.image, DONE, outputs, time.perf_counter() - t0, timings=timings, warnings=warnings)


@dataclass
class _Computed:
    """Everything :func:`_write` needs: one image's result, ready to be written."""

    job: Job
    paths: dict
    src: object
    scribbles: object
    result: object
    classes: object
    used: dict
    annotation_seconds: float
    seconds: float
    notes: list
    warnings: list
    sink: object
    fitted: object
    stem: str  # of the outputs (output_stem)


def _compute(job: Job, *, progress, model, predict=None) -> _Computed:
    """Read, fit or apply, predict, inspect: all but writing (nothing is written but a ``--save-probs``
    temporary file, which :func:`_write` moves into the output set or :meth:`discard` removes)."""
    from .classes import MAX_CLASSES, load_classes
    from .files import check_not_existing, check_writable_dir
    from .io import open_image
    from .model import Model
    from .pipeline import Settings
    from .inspect import inspect_run, inspect_source
    from .scribbles import check_shape, read_scribbles, value_counts
    from .uncertainty import calibrate_existing, predict_calibrated
    from .writers import uncertainty_notes

    check_writable_dir(job.outdir)
    if job.model is not None and model is None:
        model = load_model_cached(job.model)
    early = None
    if job.scribbles is not None and model is None and job.labels is None and job.colors is None:
        # class numbers of an image of moderate size: decoded while the image is read (both release
        # the GIL; 0.15 s at 4 MP); larger files after it (two decoders at once hold more memory:
        # +160 MB at 100 MP). Errors are raised below, in the usual order.
        # The image is opened once the scribble file is: opening sets and restores Python's warning
        # filters, which all threads share (two at once can leave a warning unfiltered).
        import threading
        from concurrent.futures import ThreadPoolExecutor

        opened = threading.Event()

        def read_early():
            try:
                return read_scribbles(job.scribbles, None, max_pixels=EARLY_SCRIBBLE_PIXELS, on_open=opened.set)
            finally:
                opened.set()

        with ThreadPoolExecutor(1) as pool:
            early = pool.submit(read_early)
            opened.wait()
            src = open_image(job.image, bands=job.bands, feature_bands=job.feature_bands, plane=job.plane)
    else:
        src, job = _open_with_model_bands(job, model)
    out_stem = src.output_stem = output_stem(job, src)  # (the report's note on a stack names the outputs so)
    if src.display_note and job.annotate is not None:  # the person sees these bands: say which they are
        log.info("%s: showing bands %s, %s; --bands chooses others", job.image,
                 ",".join(map(str, src.display_numbers)), src.display_note)
    paths = expected_outputs(job, src.georef is not None, stem=out_stem)
    check_outputs_not_inputs(job, list(paths.values()) + (_other_outputs(job, paths, out_stem) if job.overwrite
                                                          else []))
    check_not_existing(paths.values(), overwrite=job.overwrite, image=job.image)
    if model is not None:
        try:
            model.check_source(src)
        except InputError as e:
            raise InputError(f"--model {job.model or '<model>'}: {e}") from None

    annotation_seconds = 0.0
    scr = None
    if model is not None:
        classes = model.classes
        if job.labels is not None:
            model.check_classes(load_classes(job.labels, job.colors, n_classes=None))
        if job.colors is not None:
            from .classes import read_colors

            model.check_colors(read_colors(job.colors), job.colors)
        settings = _model_settings(model, job.overrides)
    else:
        settings = job.settings if job.settings is not None else Settings()
        if job.scribbles is None and job.annotate is None and job.init is None:
            raise OptionError("no scribbles and no model: give --scribbles FILE or --model FILE "
                              "(or leave out --headless to draw scribbles in the annotator)")
    pre, k_pre, own = _prelabels(job, src, model)
    _check_scribble_grid(job, src)
    if job.scribbles is not None:
        if model is not None:
            scr = read_scribbles(job.scribbles, src.shape, colors=classes.colors if job.colors else None,
                                 n_classes=len(classes), classes_from=f"--model {job.model or '<model>'!r}",
                                 orientation=src.orientation, pages=_other_pages(src))
            if job.colors:
                _check_colours_found(job.scribbles, scr, classes)
        elif job.labels is None and job.colors is None:
            scr = early.result() if early is not None else None
            if scr is None:
                scr = read_scribbles(job.scribbles, src.shape, orientation=src.orientation,
                                     pages=_other_pages(src))
            check_shape(job.scribbles, scr.shape, src.shape, orientation=src.orientation,
                        pages=_other_pages(src))
            if int(scr.max()) > MAX_CLASSES:  # e.g. 0-based ids with 255 = not scribbled
                raise InputError(f"scribble file {job.scribbles!r} has value {int(scr.max())}: "
                                 f"expected 0 = unlabelled, k = class k (at most {MAX_CLASSES}); 0-based ids with "
                                 "255 = not scribbled need ids + 1 and 255 -> 0")
            if own is not None and int(scr.max()) > len(own):
                raise InputError(f"--scribbles {job.scribbles!r}: holds class {int(scr.max())} but --init "
                                 f"{job.init!r} names {len(own)} classes ({', '.join(own.names)}); "
                                 "give --labels with every class")
            classes = own if own is not None else load_classes(None, None, n_classes=max(int(scr.max()), 1, k_pre))
        else:
            classes = own if own is not None else load_classes(job.labels, job.colors, n_classes=None)
            scr = read_scribbles(job.scribbles, src.shape, colors=classes.colors if job.colors else None,
                                 n_classes=len(classes), classes_from=f"labels file {job.labels!r}" if job.labels
                                 else f"colours file {job.colors!r}", orientation=src.orientation,
                                 pages=_other_pages(src))
            if job.colors:
                _check_colours_found(job.scribbles, scr, classes)
    elif job.annotate is not None:  # drawn now (on top of the model's samples, if one is given)
        from .annotate import annotate

        if model is None:
            classes = own if own is not None and len(own) >= 2 else load_classes(
                job.labels, job.colors, n_classes=None if (job.labels or job.colors) else max(2, k_pre))
        opts = dict(job.annotate)
        if pre is not None:  # the pre-labels, for the person to correct
            opts["prelabels"] = pre
        if model is not None and "prelabels" not in opts:  # the model's labels, for the person to correct
            opts["prelabels"] = model.predict(src, progress=progress, settings=settings).labels
        scr, annotation_seconds = annotate(src, classes, outdir=job.outdir, stem=out_stem, settings=settings,
                                           **opts)
        check_not_existing(paths.values(), overwrite=job.overwrite, image=job.image)
    elif model is None:  # pre-labels alone
        classes = own if own is not None and len(own) >= 2 else load_classes(
            job.labels, job.colors, n_classes=None if (job.labels or job.colors) else max(2, k_pre))

    t0 = time.perf_counter()
    strong = scr is not None and bool(scr.any())
    fit_scr = _on_data(src, scr) if strong else scr  # what the model learns from and judges
    weak_counts = None
    try:
        if pre is not None:  # weak labels first, then the strokes, which win where they disagree
            from .prelabels import weak_scribbles

            weak = weak_scribbles(pre, scr)
            weak, added = _weak_with_stroke_classes(job, weak, scr, classes) if model is None else (weak, [])
            fitted = Model.fit(src, weak, classes=classes, settings=settings, base=model, progress=progress)
            weak_counts = fitted.counts  # pre-labelled pixels the model was fitted on, per class (model grid)
            if added:
                weak_counts = np.where(np.isin(np.arange(len(weak_counts)), added), 0, weak_counts)
            if strong:
                fitted = Model.fit(src, fit_scr, classes=classes, base=fitted, progress=progress, weak_base=True)
            fit_timings = dict(fitted.info.get("timings", {}))
        elif scr is not None:  # fit (from scratch, or on top of the model's samples)
            fitted = Model.fit(src, fit_scr, classes=classes, settings=settings, base=model, progress=progress)
            fit_timings = dict(fitted.info.get("timings", {}))
        else:  # apply: no training at all
            fitted, fit_timings = model, {}
        if fitted is not model:  # bands it was fitted with, applied again by --model without --bands
            fitted.info = {**fitted.info, "bands": list(job.bands) if job.bands else None,
                           "feature_bands": list(job.feature_bands) if job.feature_bands else None}
        settings = _model_settings(fitted, job.overrides) if model is not None else fitted.effective_settings()
        sink, calibrated = None, None
        if predict is not None and job.save_probs:  # elsewhere (a cluster's window tasks), probabilities too
            if pre is not None:
                raise OptionError("--save-probs with --init: not available for a raster cut into window tasks on a "
                                  "cluster; label it without --scheduler/--workers, or leave out --save-probs")
            sink = _probability_writer(job, src, classes)
            try:
                result, calibrated = _predict_windows_with_probs(predict, fitted, src, fit_scr if strong else None,
                                                                 settings if model is not None else None, sink,
                                                                 progress)
            except BaseException:
                sink.discard()
                raise
        elif predict is not None:  # elsewhere (a cluster): labels only
            result = predict(fitted, src, settings=settings if model is not None else None, progress=progress)
            calibrated = calibrate_existing(fitted, src, fit_scr, result, settings=settings if model is not None else None,
                                            prelabels=pre)
        else:
            sink = _probability_writer(job, src, classes) if job.save_probs else None
            try:
                calibrated = predict_calibrated(fitted, src, fit_scr if strong else None,
                                            settings=settings if model is not None else None,
                                            on_probs=sink, progress=progress, prelabels=pre,
                                            on_uncertainty=None if sink is None else sink.put_uncertainty)
            except BaseException:
                if sink is not None:
                    sink.discard()
                raise
            result = calibrated.result
        result.timings = {**fit_timings, **result.timings}
    except LabelToolsError as e:
        if job.scribbles is None and job.annotate is not None:  # drawn in the annotator: say where the work is
            from .session import scribble_paths

            png = scribble_paths(job.outdir, out_stem)[0]
            raise type(e)(f"{e}; your scribbles are saved in {png!r}: run again to resume") from None
        if job.scribbles is not None and str(e).startswith("scribbles"):  # name the file the user gave
            raise type(e)(f"scribble file {job.scribbles!r}: {e}") from None
        raise
    seconds = time.perf_counter() - t0
    used = _report_settings(job, result, settings, classes, init_classes=own is not None and classes is own,
                            strong=strong, weak_counts=weak_counts, alpha=getattr(src, "alpha_bands", ()),
                            plane=getattr(src, "plane", None),
                            display=(getattr(src, "display_numbers", ()), src.display_note))
    scribbled = None if scr is None else value_counts(scr)[1:len(classes) + 1]
    prelabelled = None if pre is None else value_counts(pre)[:len(classes)]  # the pre-labels supply classes too
    known = None
    if model is not None and getattr(model, "y", None) is not None:  # a model refitted or carried over knows more
        known = np.bincount(np.asarray(model.y, np.int64), minlength=len(classes))[:len(classes)] > 0
    # where the class list came from, for the advice on a class nobody gave (none with pre-labels or a
    # model: their ids fix the list, dropping a class would shift the others)
    class_list = None if pre is not None or model is not None else "labels file" if job.labels else \
        "colours file" if job.colors else "scribble values"
    warnings = inspect_source(src) + _constant_band_warnings(src) + inspect_run(result.labels, classes, scribbled=scribbled,
                           strokes=getattr(fitted, "strokes", None) if strong else None,
                           uncertain=calibrated.counts if calibrated is not None else None, known=known,
                           prelabelled=prelabelled, class_list=class_list,
                           grid_samples=result.samples if strong else None, grid_text=_grid_text(result),
                           on_nodata=_strokes_on_nodata(src, scr, scribbled, result.samples) if strong else None)
    why = _crf_scale_changed(settings, result)
    if why:  # the person asked for another scale than the CRF ran at
        whose = " (the model's)" if model is not None and "crf_scale" not in job.overrides else ""
        warnings.append(f"warning: -s/--scale {settings.crf_scale:g}{whose} not used: the CRF ran at scale "
                        f"{result.crf_scale:.4g}, {why}")
    notes = (uncertainty_notes(calibrated.counts, classes, calibrated.calibration) if calibrated is not None
             else []) + warnings
    if getattr(src, "palette", False):
        notes.insert(0, "colour table: the image's one band holds palette indices; it was read as the RGB of its "
                        "colour table, as GIS clients show it (bands 1-3 = red, green, blue)")
    return _Computed(job, paths, src, scr, result, classes, used, annotation_seconds, seconds, notes, warnings,
                     sink, fitted, out_stem)


def _other_outputs(job, paths, stem: str) -> list:
    """Outputs of this image's stem that a run with other options writes and this one does not (and
    GDAL's ``.aux.xml`` sidecars of such GeoTIFFs): an earlier set's leftovers, for the output set."""
    from .writers import output_paths

    every = output_paths(job.outdir, stem, geotiff=True, probs=True).values()
    keep = set(paths.values())
    other = [p for p in every if p not in keep]
    return other + [p + ".aux.xml" for p in every if p.endswith(".tif") and p + ".aux.xml" not in keep]


def _discard(c: _Computed):
    """Drop a computed result without writing it (its temporary probabilities file, its open image)."""
    if c.sink is not None:
        c.sink.discard()
    close = getattr(c.src, "close", None)
    if close:
        close()


def _write(c: _Computed):
    """Write one computed image's output set (all files or none), then its model file if asked.

    Returns
    -------
    (paths, timings, warnings)
    """
    from .files import output_set
    from .writers import write_outputs

    job, paths, src, scr, result, classes, sink = c.job, c.paths, c.src, c.scribbles, c.result, c.classes, c.sink
    os.makedirs(job.outdir, exist_ok=True)
    try:
        with output_set(paths, overwrite=job.overwrite, stem=c.stem,
                        stale=_other_outputs(job, paths, c.stem)) as oset:  # all files or none
            write_outputs(oset.staged, src, scr, result, classes, report_settings=c.used,
                          annotation_seconds=c.annotation_seconds, processing_seconds=c.seconds, notes=c.notes,
                          probs_writer=sink)
    finally:
        if sink is not None:
            sink.discard()  # its file was moved into the output set, unless writing failed
    if job.save_model is not None:
        from .errors import OutputError

        try:
            c.fitted.save(job.save_model)
        except OutputError as e:  # the labels are in place: say so, or the next run is refused for them
            raise OutputError(f"{e}; the outputs ({c.stem}_...) were written in {job.outdir!r}, the model "
                              "was not: free some space (or choose another --save-model) and run again with "
                              "--overwrite") from None
        except KeyboardInterrupt as e:  # stopped while saving (its file is left as it was): the outputs are new
            e.committed, e.model_not_saved = True, job.save_model
            raise
    close = getattr(src, "close", None)
    if close:
        close()
    return paths, result.timings, c.warnings


def _constant_band_warnings(src) -> list:
    """A ``warning:`` line for feature bands holding one value in every pixel while the others vary (an empty
    band of a stack, a channel left at 0): they carry no information, and are often the wrong band."""
    flat = src.constant_bands() if hasattr(src, "constant_bands") else []
    if not flat:
        return []
    n = getattr(src, "feature_count", src.count)
    numbers = (src.band_numbers or tuple(range(1, src.count + 1)))[:n]
    keep = [b for b in numbers if b not in {f[0] for f in flat}]
    one = len(flat) == 1
    which = ", ".join(f"{b}{f' ({name})' if name else ''}" for b, name, _ in flat)
    values = ", ".join(f"{value:g}" for _, _, value in flat)
    return [f"warning: band{'' if one else 's'} {which} {'holds' if one else 'hold'} one value{'' if one else ' each'} "
            f"({values}) in every pixel: {'it carries' if one else 'they carry'} no information for the labels; if "
            f"that is not expected, check the file (an empty band, the wrong band); --feature-bands "
            f"{','.join(map(str, keep))} leaves {'it' if one else 'them'} out"]


def _prelabels(job, src, model):
    """(pre-labels uint8 (H, W) 0-based 255 = unknown, or None; classes they imply, 0 if none;
    the classes stored in label_tools' own ``_mres_geo.tif`` when no --labels/--model says them
    (with the --colors, if given), else None)."""
    if job.init is None:
        return None, 0, None
    from .classes import Classes, load_classes, read_colors
    from .prelabels import check_own_classes, own_classes, read_prelabels

    own = own_classes(job.init)  # its ids are read the same with --init-offset 1 (0 = no-data there too)
    if model is None and job.labels is None and own is not None and job.colors is not None:
        colors = read_colors(job.colors)  # its names, other colours
        if len(colors) != len(own):
            raise InputError(f"colours file {job.colors!r} has {len(colors)} colour{'' if len(colors) == 1 else 's'}"
                             f" but --init {job.init!r} was written with {len(own)} classes "
                             f"({', '.join(own.names)}): give one colour per class, in that order")
        own = Classes(own.names, colors)
    if model is None and job.labels is None and (job.colors is None or own is not None):
        pre = read_prelabels(job.init, src.shape, None if own is None else len(own), offset=job.init_offset,
                             georef=src.georef, orientation=src.orientation, pages=_other_pages(src))
        known = pre[pre != 255]
        return pre, (len(own) if own is not None else int(known.max()) + 1 if known.size else 0), own
    classes = model.classes if model is not None else load_classes(job.labels, job.colors, n_classes=None)
    if model is not None or job.labels is not None:  # (--colors alone names no classes)
        check_own_classes(job.init, own, classes.names, given=f"the model (--model {job.model or '<model>'!r})"
                          if model is not None else f"--labels {job.labels!r}")
    colors = classes.colors if (job.colors or model is not None) else None
    colors_from = "--colors" if job.colors else f"the model (--model {job.model or '<model>'!r})"
    return (read_prelabels(job.init, src.shape, len(classes), offset=job.init_offset, colors=colors,
                           georef=src.georef, orientation=src.orientation, pages=_other_pages(src),
                           colors_from=colors_from), len(classes), None)


def _check_scribble_grid(job, src):
    """A georeferenced scribble GeoTIFF must lie on the image's grid (QGIS-rasterised strokes of another
    tile of the same size would be fitted as this one's)."""
    georef = src.georef
    from .prelabels import check_same_grid, check_same_points

    if job.scribbles is not None:
        check_same_points(job.scribbles, georef, option="--scribbles", what="scribbles")
    if job.scribbles is None or georef is None or georef.crs is None or \
            not job.scribbles.lower().endswith((".tif", ".tiff")):
        return
    from .io import open_raster

    try:
        with open_raster(job.scribbles, "scribble file") as ds:
            where = (ds.crs, ds.transform) if ds.crs is not None else None
    except (InputError, OSError):  # missing or damaged: read_scribbles says what is wrong
        return
    if where is not None:
        check_same_grid(job.scribbles, where, georef, option="--scribbles", what="scribbles")


def _weak_with_stroke_classes(job, weak, scr, classes):
    """Weak labels the first fit can use: when the pre-labels hold fewer than two classes (a network that
    found only background), the strokes of the classes they lack join them (the refit on the strokes
    then drops the weak samples those strokes contradict, as usual).

    Returns
    -------
    (weak uint8 (H, W), added: list of 0-based classes taken from the strokes)

    Raises
    ------
    InputError
        Pre-labels and strokes together hold fewer than two classes.
    """
    from .scribbles import value_counts

    k = len(classes)
    have = [int(c) for c in np.nonzero(value_counts(weak)[1:k + 1])[0]]
    if len(have) >= 2:
        return weak, []
    stroked = [] if scr is None else [int(c) for c in np.nonzero(value_counts(scr)[1:k + 1])[0]]
    added = [c for c in stroked if c not in have]
    if len(have) + len(added) < 2:
        held = f"hold one class ({classes.names[have[0]]})" if have else "hold no class (all unknown)"
        strokes = " and the strokes add no other" if stroked else ""
        raise InputError(f"--init {job.init!r}: the pre-labels {held}{strokes}; the model needs two classes to tell "
                         "apart: add strokes of another class (--scribbles FILE, or draw them in the annotator)")
    weak = weak.copy()
    at = np.isin(scr, [c + 1 for c in added])
    weak[at] = scr[at]
    return weak, added


def _predict_windows_with_probs(predict, model, src, scribbles, settings, sink, progress):
    """``predict`` (a cluster's, :func:`label_tools.blocks.predict_on_cluster`) with the calibration and the
    uncertainty map's grid terms made on the client from the grid stage (as :func:`~label_tools.uncertainty.
    predict_calibrated` makes them), and each window's probabilities, map and counts, made by the window tasks,
    streamed to ``sink``. Returns (result, Calibrated)."""
    from .uncertainty import calibrate_for_windows

    got = {}

    def on_grid(r):
        got["c"], maps = calibrate_for_windows(model, src, scribbles, r, settings=settings)
        return maps

    def on_window(window, labels, probs8, umap8, total, uncertain):
        sink.put_bytes(window, labels, probs8, umap8)
        got["c"].counts.total += total
        got["c"].counts.uncertain += uncertain

    result = predict(model, src, settings=settings, progress=progress, on_grid=on_grid, on_window=on_window)
    calibrated = got["c"]
    calibrated.result = result
    return result, calibrated


def _probability_writer(job, src, classes):
    """A ProbabilityWriter on a hidden temporary file in the output folder (moved into the output set)."""
    from .files import owned_temp
    from .writers import ProbabilityWriter

    os.makedirs(job.outdir, exist_ok=True)
    tmp = owned_temp(job.outdir, f"{output_stem(job, src)}_probs", suffix=".part.tif")  # removed after a kill -9
    return ProbabilityWriter(tmp, src.shape, classes, georef=src.georef)


def _report_settings(job, result, settings, classes, *, init_classes=False, strong=True, weak_counts=None,
                     alpha=(), plane=None, display=None) -> dict:
    """The report's settings section (``name: value``, in order).

    ``strong``: strokes were drawn or given on this image; ``weak_counts``: with ``--init``, the
    pre-labelled pixels per class the model was fitted on (model grid), else None; ``plane``: the plane
    ``--plane`` chose (:func:`label_tools.planes.resolve_plane`), its line ``plane (--plane): 3,2 (z-slice 3 at
    time point 2)`` (the option as given first, so the plane can be read again); ``display``: (1-based bands
    shown, why) when the default bands shown are not the first three (``RasterSource.display_note``).
    """
    used = {}
    if plane:
        used["plane (--plane)"] = f"{plane['text']} ({plane['what']})"
    if job.model is not None:
        with_ = " and ".join(w for w, on in (("the scribbles", job.scribbles), ("the --init pre-labels", job.init)) if on)
        used["model"] = os.path.abspath(job.model) + (f" (refitted with {with_})" if with_ else "")
    used.update({
        "scribbles": os.path.abspath(job.scribbles) if job.scribbles else
        "drawn in the annotator" if job.annotate is not None else
        "none: no strokes; fitted on the --init pre-labels as weak labels" +
        (" and the model's samples" if job.model else "") if job.init else "none (model applied)",
        "labels": os.path.abspath(job.labels) if job.labels else
        ("(the model's)" if job.model else "(the --init file's: " + ", ".join(classes.names) + ")" if init_classes
         else "(none: class1..classK)"),
        "colors": os.path.abspath(job.colors) if job.colors else ("(the model's)" if job.model else
                                                                  "(the --init file's)" if init_classes else
                                                                  "(default palette)"),
    })
    if job.init:
        used["init (pre-labels, weak labels)"] = os.path.abspath(job.init) + (" (ids from 1)" if job.init_offset else "")
        kept = result.chosen.get("prelabels") if isinstance(result.chosen, dict) else None
        if kept:
            used["init kept (share of pixels keeping their pre-label; trust t)"] = f"{kept['kept']:.4g}; t = {kept['trust']:.3g}"
    used.update(job.report)
    used.update({
        "grid scale": f"{result.scale:.4g}" + (" (auto)" if settings.scale is None else ""),
        "crf scale (-s)": "off" if getattr(result, "crf_scale", None) is None else
        f"{result.crf_scale:.4g}" + (" (auto)" if settings.crf_scale is None else
                                     f" (asked {settings.crf_scale:g}: {why})" if (why := _crf_scale_changed(
                                         settings, result)) else ""),
        "sigmas": ",".join(f"{s:g}" for s in settings.sigmas), "crf weight": _crf_weight_text(job, settings, result),
        "crf": settings.crf, "bands": list(job.bands) if job.bands else
        f"{','.join(map(str, display[0]))} ({display[1]})" if display and display[1] else "default",
        "feature bands": list(job.feature_bands) if job.feature_bands else
        f"all but the alpha band {','.join(map(str, alpha))} (it masks no-data)" if alpha else "all",
        "classifier": repr(result.classifier), **_sample_lines(job, result, strong, weak_counts),
        "step timings (s)": {k: round(v, 3) for k, v in result.timings.items()},
    })
    prior = getattr(result, "class_prior", None)
    if prior and "applied" in prior:  # a carried model (refine.carry)
        used["class shares (carried model: forest moved from training to image shares)"] = \
            f"{prior['training']} -> {prior['image']}" if prior["applied"] else \
            f"kept at {prior['training']} (the image's {prior['image']} would leave a class {prior['kept']:.0%} of its pixels)"
    elif prior:
        used["class shares (forest corrected from training to image shares: grid capped, CRF off)"] = \
            f"{prior['training']} -> {prior['image']}"
    if prior and "adapted" in prior:  # a carried model refitted with this image's surest pixels (label_tools.adapt)
        used["adapted to this image (carried model refitted with pseudo-labels per class)"] = prior["adapted"]
    return used


def _sample_lines(job, result, strong, weak_counts) -> dict:
    """What the model was fitted on, per class: scribbled pixels and, with ``--init``, pre-labelled ones
    (the pre-labels' pixels away from label edges and strokes, used as weak labels), on the model grid."""
    out = {"scribbled pixels per class (model grid)": result.samples.tolist() if strong else
           "none (no strokes on this image)" if job.init or job.scribbles or job.annotate is not None else
           "none (model applied)"}
    if weak_counts is not None:
        out["pre-labelled pixels per class (--init weak labels, away from label edges and strokes; model grid)"] = \
            np.asarray(weak_counts).tolist()
    return out


def _with_model_bands(job, model):
    """``job`` with the display and feature bands the model was fitted with, where the options give none."""
    info = getattr(model, "info", None) or {}
    kw = {}
    if not job.bands and info.get("bands"):
        kw["bands"] = tuple(int(b) for b in info["bands"])
    if not job.feature_bands and info.get("feature_bands"):
        kw["feature_bands"] = tuple(int(b) for b in info["feature_bands"])
    return replace(job, **kw) if kw else job


def _open_with_model_bands(job, model):
    """(source, job) of ``job.image`` opened with the model's bands (:func:`_with_model_bands`); an image
    without those bands is opened with the options' (the model's misfit is then told by ``check_source``)."""
    from .io import open_image

    mjob = _with_model_bands(job, model)
    try:
        return open_image(mjob.image, bands=mjob.bands, feature_bands=mjob.feature_bands, plane=mjob.plane), mjob
    except OptionError:
        if mjob is job:
            raise
    return open_image(job.image, bands=job.bands, feature_bands=job.feature_bands, plane=job.plane), job


def _check_colours_found(path, scr, classes, *, max_pixels: int = 4_000_000):
    """Colour scribbles in which no pixel is near a class colour, though some are painted: one line with
    the class colours and the file's commonest painted colours (else the run would stop on 'scribbles
    cover 0 classes', which does not say why)."""
    from PIL import Image

    from .scribbles import COLOR_TOLERANCE

    if scr.any():
        return
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGBA"))
    except Exception:  # read by rasterio, not Pillow: leave it to the usual message
        return
    step = max(1, int(np.sqrt(a.shape[0] * a.shape[1] / max_pixels)))
    px = a[::step, ::step].reshape(-1, 4)
    px = px[px[:, 3] > 0, :3]
    px = px[~((px == 0).all(axis=1) | (px == 255).all(axis=1))]  # black, white: not painted
    if not len(px):
        return
    colours, counts = np.unique(px, axis=0, return_counts=True)
    top = colours[np.argsort(-counts, kind="stable")[:3]]
    raise InputError(
        f"scribble file {path!r}: no pixel is within colour distance {COLOR_TOLERANCE:g} of a "
        f"--colors colour ({', '.join(f'{n} {h}' for n, h in zip(classes.names, classes.hex_colors))}); its "
        f"commonest painted colours are {', '.join('#%02x%02x%02x' % tuple(int(v) for v in c) for c in top)}: "
        "paint with the class colours, or give those in --colors")


def _on_data(src, scr, *, rows: int = 2048):
    """``scr`` (uint8 (H, W)) without its strokes on the image's no-data pixels, which fitting ignores, so
    that held-out strokes and their warnings are only those on data. ``scr`` itself when nothing is on
    no-data, or when fewer than two classes would be left (the pipeline then says why it cannot fit)."""
    from .scribbles import value_counts

    if not getattr(src, "has_nodata", False):
        return scr
    out = None
    for r0 in range(0, scr.shape[0], rows):
        win = (r0, min(r0 + rows, scr.shape[0]), 0, scr.shape[1])
        valid = src.read_valid(win)
        if valid is None:
            continue
        drop = (scr[win[0]:win[1]] > 0) & ~valid
        if drop.any():
            out = scr.copy() if out is None else out
            out[win[0]:win[1]][drop] = 0
    if out is None or np.count_nonzero(value_counts(out)[1:]) < 2:
        return scr
    return out


def _strokes_on_nodata(src, scr, scribbled, grid_samples) -> list:
    """Classes (0-based) scribbled that the model grid lost whose strokes all lie on no-data pixels
    (which fitting ignores). Read only when such a class exists (the image's validity mask)."""
    from .scribbles import value_counts

    k = len(scribbled)
    gone = [i for i in range(k) if scribbled[i] > 0 and np.asarray(grid_samples)[i] == 0]
    if not gone or not getattr(src, "has_nodata", False):
        return []
    valid = src.read_valid()
    if valid is None:
        return []
    on_data = value_counts(np.where(valid, scr, 0))[1:k + 1]
    return [i for i in gone if on_data[i] == 0]


def _grid_text(result) -> str:
    """`` (W x H px, grid scale S)``: the model grid, for a warning (empty when unknown)."""
    probs = getattr(result, "probs", None)
    if probs is None:
        return ""
    h, w = probs.shape[-2:]
    return f" ({w} x {h} px, grid scale {result.scale:.4g})"


def _crf_scale_changed(settings, result):
    """Why the CRF ran at another scale than ``-s`` asked (:func:`label_tools.pipeline.crf_factor`
    raises it so the CRF grid keeps ``Settings.crf_pixels`` pixels, and caps it at the model grid's
    scale), or None when it ran at the asked scale, at an automatic one, or not at all.

    Returns
    -------
    str or None
    """
    from .pipeline import crf_factor

    asked = settings.crf_scale
    probs = getattr(result, "probs", None)
    if asked is None or getattr(result, "crf_scale", None) is None or probs is None:
        return None
    grid = probs.shape[-2:]
    factor = crf_factor(grid, result.scale, crf_scale=asked, crf_pixels=settings.crf_pixels)
    if factor > asked / result.scale * (1 + 1e-9):
        return f"raised so the CRF grid keeps at least {settings.crf_pixels / 1e6:g} MP"
    if factor < asked / result.scale * (1 - 1e-9):
        return "capped at the model grid's scale (the CRF runs no finer than the forest; --grid-scale sets that)"
    return None


def _crf_weight_text(job, settings, result):
    """The CRF weight and where it came from: given (``--crf-weight``), chosen from held-out strokes
    (on this image, or on the image a model was fitted on), or the default; or that the CRF was off
    (``--crf-iter 0``: no weight applies)."""
    if settings.crf.n_iter == 0:
        return "off (--crf-iter 0: the CRF did not run; labels from the forest)"
    given = job.overrides.get("crf_weight", getattr(job.settings, "crf_weight", None))
    if given is not None:
        return given
    chosen = result.chosen if isinstance(result.chosen, dict) else {}
    if "crf_weight" in chosen:
        scores = chosen.get("holdout", {}).get("scores", {})
        where = "held-out strokes" if job.scribbles or job.annotate is not None else \
            "held-out --init pre-labels (weak labels) of this image" if job.init else \
            "held-out strokes of the image the model was fitted on"
        return f"{chosen['crf_weight']:g} (chosen from {where}; balanced accuracy per weight: {scores})"
    if settings.crf_weight is not None:
        return settings.crf_weight
    return "0.6 (default: too few strokes to hold any out)"


# -------------------------------------------------------------------------------------------- batches
#: Images above this many pixels are written before the next one starts (two in flight would double memory).
OVERLAP_MAX_PIXELS = 16e6


def run_batch(jobs, *, on_outcome=None, progress=None, overlap: bool = True) -> list:
    """Run jobs in this process; a failing image does not stop the others.

    While one image's outputs are written (encoding and syncing files, in this thread: the output set
    holds signals while it commits), the next image is read and predicted in a second thread, so a
    batch of small images keeps both cores busy. The first image runs alone (it loads the model and
    the libraries), as do images above :data:`OVERLAP_MAX_PIXELS` and ``--save-probs`` runs (whose
    probabilities are streamed to a file while predicting).

    Parameters
    ----------
    jobs : sequence of Job
    on_outcome : callable(Outcome), optional
        Called as each job ends (to report it), in job order.
    progress : callable(stage, done, total), optional
    overlap : bool
        Predict the next image while writing the current one.

    Returns
    -------
    list of Outcome, in job order
    """
    import threading

    out = []
    pending = None  # (job, t0, _Computed) computed but not written yet

    def emit(o):
        out.append(o)
        if on_outcome is not None:
            on_outcome(o)

    def guarded(j, t0, fn):
        """fn() -> Outcome or a _Computed; any failure of this one image becomes a failed Outcome."""
        try:
            return fn()
        except LabelToolsError as e:
            return Outcome(j.image, FAILED, {}, time.perf_counter() - t0, message=str(e), error=type(e).__name__)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # an unexpected failure on one image must not lose the batch
            log.debug("%s failed", j.image, exc_info=True)
            return Outcome(j.image, FAILED, message=f"{type(e).__name__}: {e}".splitlines()[0],
                           error=type(e).__name__)

    def write(p):
        j, t0, c = p

        def go():
            paths, timings, warnings = _write(c)
            return Outcome(j.image, DONE, paths, time.perf_counter() - t0, timings=timings, warnings=warnings)

        emit(guarded(j, t0, go))

    def compute(j, t0):
        if j.skip_existing and not j.overwrite:
            existing = _all_exist(j)
            if existing is not None:
                return Outcome(j.image, SKIPPED, existing, time.perf_counter() - t0,
                               message="outputs exist (pass --overwrite to replace them)")
        return _compute(j, progress=progress, model=None)

    for i, j in enumerate(jobs):
        t0 = time.perf_counter()
        if pending is None or not overlap:
            got = guarded(j, t0, lambda: compute(j, t0))
        else:  # predict this image in a second thread while this thread writes the previous one
            box = {}
            worker = threading.Thread(target=lambda: box.update(r=_in_thread(guarded, j, t0, compute)),
                                      name="label_tools-next-image", daemon=True)
            worker.start()
            write(pending)  # an interrupt here leaves the (daemon) thread behind: the process is ending
            pending = None
            worker.join()
            got = box["r"]
            if isinstance(got, BaseException):
                raise got
        if isinstance(got, Outcome):
            emit(got)
        elif overlap and not got.job.save_probs and got.src.height * got.src.width <= OVERLAP_MAX_PIXELS:
            pending = (j, t0, got)
        else:
            write((j, t0, got))
    if pending is not None:
        write(pending)
    return out


def _in_thread(guarded, j, t0, compute):
    """guarded(compute) for a second thread: a KeyboardInterrupt/MemoryError is handed back, not lost."""
    try:
        return guarded(j, t0, lambda: compute(j, t0))
    except BaseException as e:  # re-raised by the batch's thread
        return e


def summary(outcomes, seconds: float, where: str | None = None) -> str:
    """One line: images done / skipped / failed, the total time and, given ``where``, where the outputs are
    (``"out/"``, or ``"beside each image"``)."""
    n = {s: sum(o.status == s for o in outcomes) for s in (DONE, SKIPPED, FAILED)}
    per = f", {seconds / n[DONE]:.2f} s per labelled image" if n[DONE] else ""
    at = "" if where is None else ("; outputs " + (where if where.startswith("beside") else f"in {where}"))
    return (f"{len(outcomes)} image{'s' if len(outcomes) != 1 else ''}: {n[DONE]} done, {n[SKIPPED]} skipped, "
            f"{n[FAILED]} failed in {seconds:.1f} s{per}{at}")
