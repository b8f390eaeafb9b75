"""label-image: scribbles -> dense label image, from the command line.

Options are parsed and checked before the heavy imports, so ``--help`` and option errors are instant.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from . import __version__
from .errors import LabelToolsError, OptionError

log = logging.getLogger("label_tools")

EPILOG = """\
examples:
  label-image -w 500 -s 0.2 photo.jpg                 draw scribbles in a window, then label
  label-image photo.jpg --scribbles photo_scribbles.png --labels classes.txt --colors colors.txt -o out/
  label-image scene.tif --bands 4,3,2 --scribbles scene_scribbles.png   a 13-band Sentinel-2 GeoTIFF

outputs (in -o DIR, default beside the image): <stem>_mres.png (figure), <stem>_mres_label.png
(class ids 0..K-1, 255 = no-data), <stem>_mres.mat, <stem>_report.txt, and for georeferenced
input <stem>_mres_geo.tif (class id + 1, 0 = no-data). Existing outputs are kept unless --overwrite.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _scale(text):
    if text == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'auto', got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'auto', got {text}")
    return v


def _window(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels >= 16, got {text!r}") from None
    if v < 16:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels >= 16, got {v}")
    return v


def _unit(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def _int_list(text):
    try:
        out = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated band numbers such as 4,3,2, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one band number")
    return out


def _float_list(text):
    try:
        out = tuple(float(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,2,4,8,16, got {text!r}") from None
    if not out or any(not 0 < v <= 64 for v in out):
        raise argparse.ArgumentTypeError(f"expected numbers in (0, 64], got {text!r}")
    return out


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="label-image", description=(
        "Turn sparse scribbles on an image into a dense per-pixel label image: a random forest on "
        "multiscale pixel features gives class probabilities, a dense CRF refines them. Without "
        "--scribbles an annotation window opens to draw them."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", nargs="?", help="image to label: JPEG, PNG, TIFF or GeoTIFF (asked for if omitted)")
    p.add_argument("--scribbles", metavar="FILE", help=(
        "scribble image the size of IMAGE: grey values 0 = unlabelled, k = k-th class; or RGB painted in "
        "the class colours (needs --colors). Without it, the annotator opens."))
    p.add_argument("--labels", metavar="FILE", help="class names, one per line (default: class1..classK)")
    p.add_argument("--colors", metavar="FILE", help="class colours, one matplotlib name or #hex per line")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: the image's directory)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-w", "--window", type=_window, default=500, metavar="W",
                   help="annotation window side in image pixels (default 500; >= 16)")
    p.add_argument("-s", "--scale", type=_scale, default=None, metavar="S", help=(
        "downscale factor in (0, 1] of the grid the dense CRF runs on, as in dl_tools (e.g. 0.2: fast); "
        "the forest and the labels keep their detail (default auto: the model grid shrunk to about 0.1 MP)"))
    p.add_argument("--grid-scale", type=_scale, default=None, metavar="G", help=(
        "scale in (0, 1] of the grid the features and forest run on (default auto, from the image and "
        "the scribbles); labels always come out at full resolution"))
    p.add_argument("--sigmas", type=_float_list, default=None, metavar="LIST",
                   help="feature scales in pixels (default 1,2,4,8,16)")
    p.add_argument("--crf-weight", type=_unit, default=None, metavar="X", help=(
        "weight of the CRF against the forest, 0..1 (default 0.6; 0 = forest only, keeps the thinnest structures)"))
    p.add_argument("--crf-iter", type=_nonneg_int, default=None, metavar="N", help="CRF mean-field iterations (default 10)")
    p.add_argument("--bands", type=_int_list, default=None, metavar="LIST",
                   help="1-based bands to display, 3 or 1 (default: first three, or the only one)")
    p.add_argument("--feature-bands", type=_int_list, default=None, metavar="LIST",
                   help="1-based bands the features use (default: all)")
    p.add_argument("--resume", dest="resume", action="store_true", default=None,
                   help="annotator: continue from <stem>_scribbles.png without asking")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="annotator: start afresh (the old scribble file is kept as a backup)")
    p.add_argument("--backend", choices=("opencv", "matplotlib"), default=None, help=(
        "annotator window toolkit (default: OpenCV, or matplotlib where OpenCV has no windows, as with "
        "opencv-python-headless)"))
    p.add_argument("--show", action="store_true", help="open the overlay figure when done")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more messages on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    p.add_argument("--version", action="version", version=f"label_tools {__version__}")
    return p


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.enabled and self.stream.isatty()
        self._last = None

    def __call__(self, stage, done, total):
        if not self.enabled:
            return
        frac = done / max(total, 1)
        bar = "#" * int(frac * 20)
        msg = f"{stage:>9} [{bar:<20}] {done}/{total}"
        if self.tty:
            self.stream.write("\r" + msg + ("\n" if done == total else ""))
            self.stream.flush()
        elif done == total and stage != self._last:
            self.stream.write(msg + "\n")
            self._last = stage


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO),
                        format="label-image: %(message)s", stream=sys.stderr)
    from .files import terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            return run(args)
    except LabelToolsError as e:
        sys.stderr.write(f"label-image: error: {e}\n")
        return 2
    except KeyboardInterrupt as e:
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        msg = f"label-image: stopped by {signal.Signals(signum).name}; " + (
            "the new outputs were complete and are in place" if getattr(e, "committed", False)
            else "no output was left half-written")
        if args.scribbles is None and args.image is not None:
            msg += "; scribbles drawn so far are kept in the scribble file"
        sys.stderr.write(msg + "\n")
        return 128 + int(signum)


def _prefetch_imports():
    """Import the model libraries in the background while the image is read (scikit-learn takes ~1.5 s)."""
    import threading

    def work():
        try:
            import pydensecrf.densecrf  # noqa: F401
            import sklearn.ensemble  # noqa: F401
        except Exception:  # the real import later reports any problem
            pass

    threading.Thread(target=work, daemon=True).start()


def run(args) -> int:
    _prefetch_imports()
    from .classes import load_classes
    from .crf import CRFParams
    from .features import DEFAULT_SIGMAS
    from .files import check_not_existing, check_writable_dir, output_set
    from .io import open_image, stem
    from .model import Model
    from .pipeline import Settings
    from .scribbles import read_scribbles
    from .writers import output_paths

    t_start = time.perf_counter()
    if args.image is None:
        from .annotate import ask_file

        args.image = ask_file("image to label", option="IMAGE")
    if args.scribbles is None:
        from .annotate import ask_missing_class_files

        ask_missing_class_files(args)
    outdir = args.output or os.path.dirname(os.path.abspath(args.image))
    check_writable_dir(outdir)
    src = open_image(args.image, bands=args.bands, feature_bands=args.feature_bands)
    georef = src.georef
    paths = output_paths(outdir, stem(args.image), geotiff=georef is not None)
    check_not_existing(paths.values(), overwrite=args.overwrite)
    crf = CRFParams() if args.crf_iter is None else CRFParams(n_iter=args.crf_iter)
    settings = Settings(scale=args.grid_scale, crf_scale=args.scale, sigmas=args.sigmas or DEFAULT_SIGMAS,
                        crf_weight=Settings.crf_weight if args.crf_weight is None else args.crf_weight, crf=crf).validate()

    annotation_seconds = 0.0
    if args.scribbles is not None:
        if args.labels is None and args.colors is None:
            scr = read_scribbles(args.scribbles, src.shape)
            classes = load_classes(None, None, n_classes=max(int(scr.max()), 1))
        else:
            classes = load_classes(args.labels, args.colors, n_classes=None)
            scr = read_scribbles(args.scribbles, src.shape, colors=classes.colors if args.colors else None,
                                 n_classes=len(classes))
    else:
        from .annotate import annotate

        classes = load_classes(args.labels, args.colors, n_classes=None if (args.labels or args.colors) else 2)
        scr, annotation_seconds = annotate(src, classes, window=args.window, outdir=outdir,
                                           stem=stem(args.image), resume=args.resume, settings=settings,
                                           backend=args.backend)
        check_not_existing(paths.values(), overwrite=args.overwrite)

    progress = Progress(enabled=not args.quiet)
    t0 = time.perf_counter()
    try:
        model = Model.fit(src, scr, classes=classes, settings=settings, progress=progress)
        fit_timings = dict(model.info.get("timings", {}))
        result = model.predict(src, progress=progress)
        result.timings = {**fit_timings, **result.timings}
    except LabelToolsError as e:
        if args.scribbles is None:  # drawn in the annotator: say where the work is
            from .session import scribble_paths

            png = scribble_paths(outdir, stem(args.image))[0]
            raise type(e)(f"{e}; your scribbles are saved in {png!r}: run again to resume") from None
        raise
    seconds = time.perf_counter() - t0
    os.makedirs(outdir, exist_ok=True)
    with output_set(paths, overwrite=args.overwrite, stem=stem(args.image)) as oset:  # all files or none
        write_outputs(oset.staged, src, scr, result, classes, settings=settings,
                      annotation_seconds=annotation_seconds, processing_seconds=seconds, args=args)
    log.info("wrote %s", ", ".join(os.path.basename(p) for p in paths.values()))
    if args.verbose:
        log.info("timings: %s; total %.1f s", ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()),
                 time.perf_counter() - t_start)
    if args.show:
        from .annotate import show_image

        show_image(paths["overlay"])
    return 0


def _write_overlay(path, src, scribbles, labels, classes, grid_display=None):
    from . import writers
    from .io import stem

    small = writers.overlay_shape(src.shape)
    if grid_display is not None and grid_display.shape[0] <= small[0]:
        base = grid_display  # the model grid is coarser than the figure: no new read of a large image
    else:
        base = src.read_display(out_shape=small)
    writers.write_overlay(path, base, scribbles, labels, classes, title=stem(src.path))


def _crf_weight_text(settings, result):
    if settings.crf_weight is not None:
        return settings.crf_weight
    if "crf_weight" in result.chosen:
        scores = result.chosen.get("holdout", {}).get("scores", {})
        return f"{result.chosen['crf_weight']:g} (chosen from held-out strokes; balanced accuracy per weight: {scores})"
    return "0.6 (default: too few strokes to hold any out)"


def write_outputs(paths, src, scribbles, result, classes, *, settings, annotation_seconds, processing_seconds, args):
    """Write every output of a run to ``paths`` (staging paths of an output set: committed together)."""
    from concurrent.futures import ThreadPoolExecutor

    from . import writers

    # the encoders (PNG, zlib, GDAL) release the GIL: write the files side by side
    preds = result.crf_probs if result.crf_probs is not None else result.probs
    jobs = [
        (writers.write_label_png, (paths["label"], result.labels), {}),
        (writers.write_mat, (paths["mat"],), dict(scribbles=scribbles, labels=result.labels, classes=classes,
                                                   probs=preds)),
        (_write_overlay, (paths["overlay"], src, scribbles, result.labels, classes, result.display), {}),
    ]
    if "geotiff" in paths:
        jobs.append((writers.write_geotiff, (paths["geotiff"], result.labels, src.georef, classes), {}))
    with ThreadPoolExecutor(max_workers=3) as pool:
        for fut in [pool.submit(f, *a, **kw) for f, a, kw in jobs]:
            fut.result()
    used = {
        "scribbles": os.path.abspath(args.scribbles) if args.scribbles else "drawn in the annotator",
        "labels": os.path.abspath(args.labels) if args.labels else "(none: class1..classK)",
        "colors": os.path.abspath(args.colors) if args.colors else "(default palette)",
        "window (-w)": args.window, "grid scale": f"{result.scale:.4g}" + (" (auto)" if args.grid_scale is None else ""),
        "crf scale (-s)": "off" if result.crf_scale is None else
        f"{result.crf_scale:.4g}" + (" (auto)" if args.scale is None else ""),
        "sigmas": ",".join(f"{s:g}" for s in settings.sigmas), "crf weight": _crf_weight_text(settings, result),
        "crf": settings.crf, "bands": args.bands or "default", "feature bands": args.feature_bands or "all",
        "classifier": repr(result.classifier), "scribbled pixels per class (model grid)": result.samples.tolist(),
        "step timings (s)": {k: round(v, 3) for k, v in result.timings.items()},
    }
    writers.write_report(paths["report"], image_path=src.path, shape=src.shape, classes=classes, labels=result.labels,
                         annotation_seconds=annotation_seconds, processing_seconds=processing_seconds,
                         settings=used, georef=src.georef, n_bands=src.count)


if __name__ == "__main__":
    sys.exit(main())
