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
from .errors import InputError, LabelToolsError, OptionError

log = logging.getLogger("label_tools")

EPILOG = """\
examples:
  label-image -w 500 photo.jpg                        draw scribbles in a window, then label
  label-image photo.jpg --scribbles photo_scribbles.png --labels classes.txt --colors colors.txt -o out/
  label-image scene.tif --bands 4,3,2 --scribbles scene_scribbles.png   a 13-band Sentinel-2 GeoTIFF
  label-image cells.tif --plane 12,3                  z-slice 12 at time point 3 of a stack (outputs
                                                      cells_z12_t03_...; without --plane the first plane)
  label-image -w 500 survey/ -o out/                  a collection: the images one after another, the
                                                      model's labels shown as pre-labels from the second on
  label-export out/ -o dataset --tile 512             results -> train/val image/label tiles

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
    if min(out) < 1:  # before the image is read: no band of any image is numbered so
        raise argparse.ArgumentTypeError(f"expected band numbers from 1 (the first band is 1), got {text!r}")
    return out


def _display_bands(text):
    out = _int_list(text)
    if len(out) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 band numbers (grey or red,green,blue), got {len(out)}: "
                                         f"{text!r}")
    return out


def _offset(text):
    if text.strip() not in ("0", "1"):
        raise argparse.ArgumentTypeError("expected 0 (the --init file's ids start at 0) or 1 (they start at 1 and "
                                         f"0 is no-data), got {text!r}")
    return int(text)


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


def _folder(text):
    """-o DIR: an empty value (an unset shell variable, ``-o "$OUT"``) is no folder, not the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty value: give a folder, or leave out -o "
                                         "to write beside each image")
    return text


def _plane(text):
    from .planes import parse_plane

    try:
        parse_plane(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.replace(" ", "")


#: ``--workers`` starts that many processes on this machine; more than this many per core only costs memory
#: (each worker imports the stack, about 200 MB) and start-up time.
WORKERS_PER_CORE = 4


def _workers(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of worker processes >= 1, got {text!r}")
    cores = os.cpu_count() or 1
    most = max(4, WORKERS_PER_CORE * cores)
    if v > most:
        raise argparse.ArgumentTypeError(
            f"{v} worker processes on this machine's {cores} core{'s' if cores != 1 else ''}: expected at most "
            f"{most}; for more, start a Dask cluster across machines and give its address with --scheduler")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="label-image", description=(
        "Turn sparse scribbles on an image into a dense per-pixel label image: a random forest on "
        "multiscale pixel features gives class probabilities, a dense CRF refines them. Without "
        "--scribbles an annotation window opens to draw them."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)  # a shortened or mistyped option is an error, not silently another option
    p.add_argument("inputs", nargs="*", metavar="INPUT", help=(
        "image to label: JPEG, PNG, TIFF or GeoTIFF (asked for if omitted); several images or folders (a "
        "folder's images in name order): a collection walked in the annotator, the model carried from image "
        "to image, or with --headless a batch"))
    p.add_argument("--model", metavar="FILE", help=(
        "a model saved with --save-model: applied as it is (with --headless, no scribbles), or refitted on "
        "its samples plus new scribbles (the new scribbles win where they disagree)"))
    p.add_argument("--save-model", metavar="FILE", help=(
        "write the fitted (or refitted) model to exactly FILE (a skops archive; loads without running code); "
        "a collection saves it after each image (default <output>/<folder name>_model.skops)"))
    p.add_argument("--headless", action="store_true", help=(
        "no window: label every INPUT with --model (and/or --scribbles for one image); outputs go flat into "
        "-o DIR as <stem>_...; images whose outputs exist are skipped unless --overwrite (with --scribbles or "
        "--init they are refused, as without --headless)"))
    p.add_argument("--scribbles", metavar="FILE", help=(
        "scribble image the size of IMAGE: grey values 0 = unlabelled, k = k-th class; or RGB painted in "
        "the class colours (needs --colors). Without it, the annotator opens."))
    p.add_argument("--labels", metavar="FILE", help="class names, one per line (default: class1..classK)")
    p.add_argument("--colors", metavar="FILE", help="class colours, one matplotlib name or #hex per line")
    p.add_argument("-o", "--output", metavar="DIR", type=_folder,
                   help="output directory (default: the image's directory)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-w", "--window", type=_window, default=500, metavar="W",
                   help="annotation window side in image pixels (default 500; >= 16)")
    p.add_argument("-s", "--scale", type=_scale, default=None, metavar="S", help=(
        "downscale factor in (0, 1] of the grid the dense CRF runs on, as in dl_tools (e.g. 0.2: fast); "
        "the forest and the labels keep their detail; at least 0.1 MP and at most the model grid (a scale raised or "
        "capped is reported) (default auto: the model grid shrunk to about 0.1 MP)"))
    p.add_argument("--grid-scale", type=_scale, default=None, metavar="G", help=(
        "scale in (0, 1] of the grid the features and forest run on (default auto, from the image and "
        "the scribbles); labels always come out at full resolution"))
    p.add_argument("--sigmas", type=_float_list, default=None, metavar="LIST",
                   help="feature scales in pixels (default 1,2,4,8,16)")
    p.add_argument("--crf-weight", type=_unit, default=None, metavar="X", help=(
        "weight of the CRF against the forest, 0..1 (default: chosen per image from held-out strokes, 0.6 unless "
        "another weight is clearly better; 0 = forest only, keeps the thinnest structures)"))
    p.add_argument("--crf-iter", type=_nonneg_int, default=None, metavar="N",
                   help="CRF mean-field iterations (default 10; 0 = CRF off)")
    p.add_argument("--no-adapt", dest="adapt", action="store_false", help=(
        "with --model on images it was not fitted on: apply the model's forest as it is, without refitting it on "
        "the pixels it is surest of in each image (see README: Applying a model)"))
    p.add_argument("--bands", type=_display_bands, default=None, metavar="LIST",
                   help="1-based bands to display (and to feed the CRF's colour kernel), 3 or 1 (default: red, "
                        "green and blue where the file says which, as Sentinel-2 band names B04,B03,B02; else the "
                        "first three, or the only one)")
    p.add_argument("--feature-bands", type=_int_list, default=None, metavar="LIST",
                   help="1-based bands the features use (default: all but an alpha band, which masks no-data)")
    p.add_argument("--plane", type=_plane, default=None, metavar="Z[,T]", help=(
        "the plane of a microscopy stack (ImageJ hyperstack, OME-TIFF) or multi-page TIFF to label, 1-based as Fiji "
        "shows them: Z (z-slice; a time series' time point), Z,T, or z3 / t2 / z3,t2; a plain multi-page TIFF's "
        "page N. Its channels are the bands; outputs and scribble files are named <stem>_z03_t02_... "
        "(<stem>_p03_... for a page). Default: the first plane, outputs named <stem>_..."))
    resume = p.add_mutually_exclusive_group()  # both given: one line, not the last one silently
    resume.add_argument("--resume", dest="resume", action="store_true", default=None,
                        help="annotator: continue from <stem>_scribbles.png without asking")
    resume.add_argument("--no-resume", dest="resume", action="store_false",
                        help="annotator: start afresh (the old scribble file is kept as a backup)")
    p.add_argument("--backend", choices=("opencv", "matplotlib"), default=None, help=(
        "annotator window toolkit (default: OpenCV, or matplotlib where OpenCV has no windows, as with "
        "opencv-python-headless)"))
    p.add_argument("--init", metavar="LABELS", help=(
        "start from existing labels to correct: a single-channel image the size of IMAGE with 0-based class ids "
        "(255 = unknown), label_tools' own _mres_geo.tif (without --labels, its class names are used, and its "
        "colours unless --colors), or a colour label image (with --colors); scribbles may then cover one class "
        "or none (pre-labels of one class need strokes of another)"))
    p.add_argument("--init-offset", type=_offset, default=None, metavar="N",
                   help="with --init: 1 = the --init file's ids start at 1 and 0 is no-data; 0 = they start at "
                        "0 (default; a raster declaring no-data 0 needs one of the two said)")
    p.add_argument("--order", choices=("rows", "uncertainty"), default=None, help=(
        "annotator: walk the windows row by row (default) or, after the first, to the window where the model "
        "of the scribbles so far is least sure"))
    p.add_argument("--save-probs", action="store_true", help=(
        "also write <stem>_probs.tif (calibrated class probabilities x 255, one band per class, argmax = the "
        "labels) and <stem>_uncertainty.png (0 = certain, 255 = most uncertain; also .tif for georeferenced input)"))
    p.add_argument("--show", action="store_true", help="open the overlay figure when done")
    p.add_argument("--scheduler", metavar="ADDRESS", help=(
        "with --model and --headless: run on the Dask cluster whose scheduler is at ADDRESS (e.g. "
        "tcp://10.0.0.5:8786); inputs, model and -o DIR must be on a filesystem the workers see. The cluster "
        "is left running"))
    p.add_argument("--workers", type=_workers, default=None, metavar="N", help=(
        "with --model and --headless: start a local Dask cluster of N worker processes for this run"))
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


def _limit_malloc_arenas(n: int = 2) -> None:
    """At most ``n`` glibc malloc arenas for the threads to come (``M_ARENA_MAX``), unless the
    user set ``MALLOC_ARENA_MAX``.

    Each thread that allocates gets its own arena by default, and memory freed in one is not
    reused by another: the feature, fit and upsampling threads held 20-30 MB more at the peak
    (a 4 MP H&E image: 494 MB, with two arenas 473 MB, the same time). Nothing on other C libraries.
    """
    import os

    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, int(n))  # M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    if argv is None:  # the program itself (not a caller's process): before any thread starts
        _limit_malloc_arenas()
    # intermixed: images may come after options too (`label-image a.jpg -o out b.jpg`), as GNU tools take them
    args = build_parser().parse_intermixed_args(argv)
    args.image = args.inputs[0] if len(args.inputs) == 1 else None
    logging.basicConfig(level=logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO),
                        format="label-image: %(message)s", stream=sys.stderr)
    if args.verbose < 2:  # GDAL's own complaints become our one-line errors (io.open_raster); not a second line
        logging.getLogger("rasterio").setLevel(logging.CRITICAL)
    from .files import terminate_as_interrupt

    ended = {"note": ""}

    def late(signum, frame):
        # a stop signal after the run, while the interpreter exits: say what is on disk and exit at once
        # (the default handler would end the process without a word, and with no exit code of its own)
        import signal

        sys.stderr.write(f"label-image: stopped by {signal.Signals(signum).name} as it exited{ended['note']}\n")
        sys.stderr.flush()
        os._exit(128 + int(signum))

    try:
        with terminate_as_interrupt(after=late if argv is None else None):
            rc = run(args)
            if rc == 0:
                ended["note"] = "; the new outputs were complete and are in place"
        if argv is None:
            # the program itself, about to exit: the interpreter's last garbage collection walks every
            # object of scikit-learn, SciPy and the run (0.3-0.4 s at 4 MP, a tenth of the run); the
            # operating system frees the memory anyway
            import gc

            gc.freeze()
        return rc
    except LabelToolsError as e:
        sys.stderr.write(f"label-image: error: {e}\n")
        return 2
    except KeyboardInterrupt as e:
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        msg = f"label-image: stopped by {signal.Signals(signum).name}; " + (
            "the new outputs were complete and are in place" if getattr(e, "committed", False)
            else "no output was left half-written")
        if getattr(e, "model_not_saved", None):
            msg += (f", the model was not saved to {e.model_not_saved!r}: run again with --overwrite to save it "
                    "(the labels come out the same)")
        # the annotator was open (one image, or a collection's walk of several)
        if args.scribbles is None and (args.image is not None or args.inputs) and not args.headless:
            msg += "; scribbles drawn so far are kept in the scribble file: run the same command again to resume"
        sys.stderr.write(msg + "\n")
        if argv is None:  # the program itself: every cleanup has run; do not wait for busy worker threads
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + int(signum))
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


def _check_options(args):
    """Option combinations that cannot work, refused before anything is read."""
    several = len(args.inputs) > 1 or any(os.path.isdir(p) for p in args.inputs)
    if args.headless and args.model is None and args.scribbles is None and args.init is None:
        raise OptionError("--headless needs --model FILE (apply a saved model), --scribbles FILE or --init LABELS")
    if args.init is None and args.init_offset:
        raise OptionError("--init-offset 1 says how the --init file's ids are numbered, but no --init LABELS is "
                          "given; add --init LABELS or leave out --init-offset")
    if args.init is not None and (len(args.inputs) > 1 or any(os.path.isdir(p) for p in args.inputs)):
        raise OptionError("--init belongs to one image; give a single IMAGE with it")
    if args.resume is not None and (args.scribbles is not None or args.headless):
        given = "--resume" if args.resume else "--no-resume"
        why = "--scribbles FILE" if args.scribbles is not None else "--headless"
        raise OptionError(f"{given} is for the annotator (it continues from, or sets aside, <stem>_scribbles.png); "
                          f"with {why} no annotator opens: leave out {given}")
    for given, value in (("--order", args.order), ("--backend", args.backend)):
        if value is not None and (args.scribbles is not None or args.headless):
            why = "--scribbles FILE" if args.scribbles is not None else "--headless"
            raise OptionError(f"{given} {value} is for the annotator (its window "
                              f"{'order' if given == '--order' else 'toolkit'}); with {why} no annotator opens: "
                              f"leave out {given}")
    if args.adapt is False and args.model is None and not several:
        raise OptionError("--no-adapt applies to a model used on images it was not fitted on (--model FILE, or the "
                          "model a collection walk carries from image to image); this run fits its own model on "
                          "IMAGE: leave out --no-adapt")
    if args.plane is not None and several and not args.headless:
        raise OptionError(f"--plane {args.plane} with several images or a folder: the annotator's walk of a "
                          "collection labels first planes only; label one stack at a time, or with --model FILE "
                          "--headless label that plane of every stack")
    if args.headless and not args.inputs:
        raise OptionError("--headless needs at least one INPUT image or folder")
    if several and args.scribbles is not None:
        raise OptionError("--scribbles belongs to one image; with several images or a folder use --model FILE only")
    if args.save_model is not None and args.model is not None and args.scribbles is None and args.headless:
        raise OptionError("--save-model with --model needs --scribbles (applying a model does not change it)")
    if args.save_model is not None and several and args.headless:
        raise OptionError("--save-model needs a single image with scribbles (a batch only applies the model)")
    if args.model is not None and args.sigmas is not None:
        raise OptionError("--sigmas is fixed by the model in --model; leave it out")
    cluster = "--scheduler" if args.scheduler is not None else "--workers" if args.workers is not None else None
    if args.scheduler is not None and args.workers is not None:
        raise OptionError("--scheduler and --workers exclude each other: --scheduler uses a running cluster, "
                          "--workers starts one")
    if cluster and (args.model is None or not args.headless or args.scribbles is not None):
        raise OptionError(f"{cluster} runs saved models on a cluster: it needs --model FILE and --headless "
                          "(and no --scribbles)")
    _check_labels_not_colours(args.labels)
    return several


def _check_labels_not_colours(path):
    """--labels given the colours file (the two swapped): every line a colour, one at least a ``#rrggbb`` or a
    ``tab:``/``xkcd:``/``css4:`` name, is no list of names."""
    import re

    if path is None:
        return
    from .classes import read_text  # a pipe is read once, and its text kept for the labels reader

    try:
        lines = [ln.strip() for ln in read_text(path)[:1 << 16].splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return  # the labels reader says what is wrong with it
    if not lines:
        return
    hexes = [bool(re.fullmatch(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", ln)) for ln in lines]
    # a line only a colour can be (#hex, tab:/xkcd:/css4: names), and every other a colour too: the README's
    # own colours file (navy, tab:cyan, #d2b48c) made classes named so; classes named red, green, blue pass
    marked = [h or re.match(r"(tab|xkcd|css4):", ln, re.I) is not None for h, ln in zip(hexes, lines)]
    if not any(marked):
        return
    if not all(hexes):
        from matplotlib.colors import is_color_like  # lazy: only for such a file

        if not all(is_color_like(ln) for ln in lines):
            return
    raise OptionError(f"--labels {path!r}: every line is a colour ({', '.join(lines[:3])}"
                      f"{', ...' if len(lines) > 3 else ''}): is it the colours file? give the class names "
                      "with --labels and the colours with --colors")


def _settings(args):
    from .crf import CRFParams
    from .features import DEFAULT_SIGMAS
    from .pipeline import Settings

    crf = CRFParams() if args.crf_iter is None else CRFParams(n_iter=args.crf_iter)
    return Settings(scale=args.grid_scale, crf_scale=args.scale, sigmas=args.sigmas or DEFAULT_SIGMAS,
                    crf_weight=Settings.crf_weight if args.crf_weight is None else args.crf_weight, crf=crf).validate()


def _overrides(args) -> dict:
    """Options given explicitly: they replace a model's own settings."""
    o = {"crf_weight": args.crf_weight, "crf_scale": args.scale, "scale": args.grid_scale, "crf_iter": args.crf_iter}
    if not args.adapt:
        o["adapt"] = 0.0
    return {k: v for k, v in o.items() if v is not None}


def _job(args, image, outdir, **kw):
    from .job import Job

    return Job(image=image, outdir=outdir, model=args.model, scribbles=args.scribbles, labels=args.labels,
               colors=args.colors, settings=_settings(args), overrides=_overrides(args),
               bands=tuple(args.bands) if args.bands else None,
               feature_bands=tuple(args.feature_bands) if args.feature_bands else None,
               overwrite=args.overwrite, save_model=args.save_model, save_probs=args.save_probs,
               init=args.init, init_offset=args.init_offset, plane=args.plane, **kw)


def run(args) -> int:
    several = _check_options(args)
    if args.scheduler is not None:  # a wrong address fails now, not after the model is read
        from .cluster import check_reachable

        check_reachable(args.scheduler)
    _prefetch_imports()
    from .files import check_writable_dir

    if args.model is not None:  # a bad model file stops everything before any image is read
        from .job import load_model_cached

        load_model_cached(args.model)
    if args.headless:
        return _run_headless(args, several)
    if several:
        return run_collection(args)

    from .job import run_job

    t_start = time.perf_counter()
    if args.image is None:
        from .annotate import ask_file

        args.image = ask_file("image to label", option="IMAGE")
    from .io import check_image_path, check_not_empty

    if args.scribbles is None:
        check_image_path(args.image)  # a mistyped name is said as such, not as a missing display
    # an empty file or a pipe (`<(curl ...)`) is said as such, a pipe not as its folder (/dev/fd) being
    # unwritable, the default output directory checked below
    check_not_empty(args.image)
    if args.scribbles is None:
        if args.plane is not None:  # a plane the image lacks, too, before the display and file dialogs
            from .io import image_plane

            image_plane(args.image, args.plane)
        _check_display(args)
    if args.scribbles is None and args.model is None:
        from .annotate import ask_missing_class_files

        ask_missing_class_files(args)
    outdir = args.output or os.path.dirname(os.path.abspath(args.image))
    check_writable_dir(outdir)
    if args.save_model is not None:
        from .files import check_model_path

        check_model_path(args.save_model, overwrite=args.overwrite, outdirs=[outdir], taken=_taken(args, outdir))
    annotate = None if args.scribbles is not None else {"window": args.window, "resume": args.resume,
                                                         "backend": args.backend, "order": args.order or "rows"}
    job = _job(args, args.image, outdir, annotate=annotate, report={"window (-w)": args.window})
    outcome = run_job(job, progress=Progress(enabled=not args.quiet))
    if outcome.status != "done":
        raise _error_of(outcome)
    _report_warnings(outcome, args.quiet)
    # the folder is named: "-o out/labels.png" makes a folder of that name, which the line then shows
    log.info("wrote %s into %s", ", ".join(os.path.basename(p) for p in outcome.outputs.values()),
             os.path.join(args.output or os.path.relpath(outdir), ""))
    if args.save_model:
        log.info("model saved to %s", args.save_model)
    if args.verbose:
        log.info("timings: %s; total %.1f s", ", ".join(f"{k} {v:.2f} s" for k, v in outcome.timings.items()),
                 time.perf_counter() - t_start)
    if args.show:
        from .annotate import has_display, show_image

        if has_display():  # the terminal waits on the window: say what ends it
            log.info("showing %s: press a key in its window, or close it, to finish",
                     os.path.basename(outcome.outputs["overlay"]))
        show_image(outcome.outputs["overlay"])
    return 0


def _taken(args, outdir, images=None) -> dict:
    """{path: what it is} of the run's inputs and outputs, which --save-model must not replace."""
    from .io import image_plane
    from .job import stem_in
    from .session import scribble_paths
    from .writers import output_paths

    def stem_of(im):  # as job.output_stem names them: with --plane's tag
        return stem_in(outdir, im, image_plane(im, args.plane)["suffix"] if getattr(args, "plane", None) else "")

    images = images or [args.image]
    taken = {im: f"the image {'to label' if len(images) == 1 else 'of this batch'}" for im in images}
    taken.update({getattr(args, k): f"the {opt} file" for k, opt in (
        ("scribbles", "--scribbles"), ("init", "--init"), ("labels", "--labels"), ("colors", "--colors"))
        if getattr(args, k, None)})
    for im in images:
        for p in output_paths(outdir, stem_of(im), geotiff=True, probs=True).values():
            taken[p] = f"one of this run's outputs ({os.path.basename(p)})"
        for p in scribble_paths(outdir, stem_of(im)):
            taken[p] = f"where the annotator saves your scribbles ({os.path.basename(p)})"
    return taken


def _error_of(outcome):
    from . import errors

    cls = getattr(errors, outcome.error, None)
    cls = cls if isinstance(cls, type) and issubclass(cls, LabelToolsError) else LabelToolsError
    return cls(outcome.message)


def _run_headless(args, several: bool) -> int:
    """Label every input (images, folders' images) with the model; one line per image, one summary line."""
    from .files import check_writable_dir
    from .job import check_stems, collect_inputs, run_batch, summary

    t0 = time.perf_counter()
    images = collect_inputs(args.inputs)
    # a batch applying a model resumes by skipping images done; a fit on the person's own strokes or
    # pre-labels is refused over existing outputs, as without --headless (a skip would leave the earlier
    # labels for new strokes, and write no --save-model, with exit 0)
    resume = args.scribbles is None and args.init is None
    jobs = [_job(args, im, args.output or os.path.dirname(os.path.abspath(im)), skip_existing=resume)
            for im in images]
    check_stems(jobs)  # before anything runs
    if args.model is not None and (args.labels or args.colors):  # the same for every image: checked once, here
        from .classes import load_classes, read_colors
        from .job import load_model_cached

        model = load_model_cached(args.model)
        if args.labels is not None:
            model.check_classes(load_classes(args.labels, args.colors, n_classes=None))
        if args.colors is not None:
            model.check_colors(read_colors(args.colors), args.colors)
    for d in sorted({j.outdir for j in jobs}):
        check_writable_dir(d)
    if args.save_model is not None:  # a single scribble run: its model is checked before any work
        from .files import check_model_path

        check_model_path(args.save_model, overwrite=args.overwrite, outdirs=[j.outdir for j in jobs],
                         taken=_taken(args, jobs[0].outdir, images))
    if (args.scheduler is not None or args.workers is not None) and args.save_probs and args.init is not None:
        _check_cluster_probs(jobs, "--scheduler" if args.scheduler is not None else "--workers")
    if args.scheduler is not None or args.workers is not None:
        for d in sorted({j.outdir for j in jobs}):
            os.makedirs(d, exist_ok=True)
        return _run_cluster(args, _without_class_files(jobs), several, t0)
    if not several:  # one image: a bad input is exit 2, as a plain run (its folder is made when it writes)
        from .job import run_job

        o = run_job(jobs[0], progress=Progress(enabled=not args.quiet))
        if o.status == "failed":
            raise _error_of(o)
        _report_outcome(o, args.quiet)
        log.info("%s", summary([o], time.perf_counter() - t0, _where(args, jobs)))
        return 0
    for d in sorted({j.outdir for j in jobs}):
        os.makedirs(d, exist_ok=True)
    outcomes = run_batch(jobs, on_outcome=lambda o: _report_outcome(o, args.quiet))
    line = summary(outcomes, time.perf_counter() - t0, _where(args, jobs))
    failed = any(o.status == "failed" for o in outcomes)
    (log.warning if failed else log.info)("%s", line)
    return 1 if failed else 0


def _where(args, jobs) -> str:
    """Where a batch's outputs are, for its summary line: the -o folder as given, the one folder of
    every image, or beside each image (the lines before name images only)."""
    if args.output:
        return os.path.join(args.output, "")
    dirs = {j.outdir for j in jobs}
    return os.path.join(os.path.relpath(dirs.pop()), "") if len(dirs) == 1 else "beside each image"


def _without_class_files(jobs) -> list:
    """Cluster jobs without the --labels/--colors files, which a worker may not be able to read (a pipe
    read here already, a file on this machine only): with a model the classes are the model's, and
    the names given were checked against them above; the report still names the files."""
    from dataclasses import replace

    out = []
    for j in jobs:
        if j.model is None or (j.labels is None and j.colors is None):
            out.append(j)
            continue
        report = dict(j.report or {})
        report.update({k: os.path.abspath(p) for k, p in (("labels", j.labels), ("colors", j.colors)) if p})
        out.append(replace(j, labels=None, colors=None, report=report))
    return out


def _refuse_windowed(jobs, given: str, option: str, why: str, fix: str):
    """Refuse ``given`` for a raster a cluster cuts into window tasks (``why`` they cannot honour it) before
    anything runs, instead of failing that image after the rest of the batch."""
    from .blocks import WINDOWED_PIXELS
    from .cluster import _is_large

    large = [j.image for j in jobs if _is_large(j.image, j.plane)]
    if large:
        more = f" (and {len(large) - 1} more)" if len(large) > 1 else ""
        raise OptionError(f"{given} with {option}: {large[0]!r}{more} is a raster of {WINDOWED_PIXELS / 1e6:g} MP "
                          f"or more, which the cluster cuts into window tasks that {why}; {fix}")


def _check_cluster_probs(jobs, option: str):
    """--save-probs with --init: window tasks make probabilities, but not of pre-labels being corrected."""
    _refuse_windowed(jobs, "--init --save-probs", option, "do not merge pre-labels into the probabilities",
                     f"label it without {option}, or leave out --save-probs")


def _run_cluster(args, jobs, several: bool, t0: float) -> int:
    """The batch on a Dask cluster: one task per image (window tasks for a large raster)."""
    from .cluster import connect, run_jobs
    from .job import summary

    with connect(scheduler=args.scheduler, workers=args.workers) as client:
        outcomes = run_jobs(jobs, client, on_outcome=lambda o: _report_outcome(o, args.quiet), quiet=args.quiet)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed and not several:
        raise _error_of(failed[0])
    line = summary(outcomes, time.perf_counter() - t0, _where(args, jobs))
    (log.warning if failed else log.info)("%s", line)
    return 1 if failed else 0


def _report_warnings(o, quiet: bool):
    """The inspection's ``warning:`` lines on stderr (silenced by -q; they are in the report too)."""
    if not quiet:
        for w in o.warnings:
            sys.stderr.write(f"label-image: {os.path.basename(o.image)}: {w}\n")


def _report_outcome(o, quiet: bool = False):
    name = os.path.basename(o.image)
    if o.status == "done":
        _report_warnings(o, quiet)
        log.info("done %s (%.2f s)", name, o.seconds)
    elif o.status == "skipped":
        log.info("skipped %s: %s", name, o.message)
    else:
        log.warning("failed %s: %s", o.image, o.message)


def _check_display(args):
    """No display for the annotator: one line with every way to label without a window that fits the
    options given (with --init or --model, --headless labels from them alone)."""
    from .annotate import has_display

    if has_display():
        return
    ways = ["--scribbles FILE to label without a window"]
    if args.init is not None:
        ways.append("--headless to label from the --init pre-labels" + (" and --model" if args.model else " alone"))
    elif args.model is not None:
        ways.append("--headless to apply --model as it is")
    raise InputError("no display for the annotation window: pass " + ", or ".join(ways))


def _check_collection_display(args):
    """No display for a collection's walk: --scribbles belongs to one image, so the line names what labels
    several without a window (a saved model, --headless), or one image at a time."""
    from .annotate import has_display

    if has_display():
        return
    way = ("--headless to apply --model to every image as it is" if args.model is not None else
           "--model FILE --headless to label them with a saved model (fitted with --save-model on one image "
           "and its --scribbles)")
    raise InputError("no display for the annotation window a collection is walked in: pass " + way
                     + ", or label one image at a time with --scribbles FILE")


def run_collection(args) -> int:
    """Several images or a folder in the annotator: walked one after another, the model carried over."""
    from dataclasses import replace

    from . import collection
    from .annotate import ask_missing_class_files
    from .classes import load_classes
    from .files import check_writable_dir
    from .io import open_image
    from .job import run_job, stem_in
    from .writers import output_paths

    images = collection.list_images(args.inputs)
    _check_collection_display(args)
    name = collection.collection_name(args.inputs)
    outdir = args.output or os.path.dirname(images[0])
    check_writable_dir(outdir)
    if args.save_model is not None:  # before any window opens, as for one image
        from .files import check_model_path

        state = collection.CollectionState.load(os.path.join(outdir, f"{name}{collection.STATE_SUFFIX}"))
        ours = os.path.abspath(args.save_model)
        # this walk's own model (a walk over some of these images), or the --model it refits
        mine = (state is not None and state.model == ours and bool(set(state.images) & set(images))) or (
            args.model is not None and os.path.realpath(args.model) == os.path.realpath(ours))
        check_model_path(args.save_model, overwrite=args.overwrite or mine, outdirs=[outdir],
                         taken=_taken(args, outdir, images))
    start = collection.load_model(args.model) if args.model else None
    if start is not None:
        classes = start.classes
        if args.labels is not None:
            start.check_classes(load_classes(args.labels, args.colors, n_classes=None))
        if args.colors is not None:
            from .classes import read_colors

            start.check_colors(read_colors(args.colors), args.colors)
    else:
        # a walk run again to resume: its model holds the classes, and a labels or colours file chosen in a
        # dialog the first time is not asked for again (a --labels given is still checked against it)
        walked = None if args.labels and args.colors else collection.walked_model(outdir, name, images)
        if walked is None:
            ask_missing_class_files(args)
            classes = load_classes(args.labels, args.colors, n_classes=None if (args.labels or args.colors) else 2)
        elif args.labels is None and args.colors is None:
            classes = walked.classes
        else:
            classes = load_classes(args.labels, args.colors, n_classes=None)
    os.makedirs(outdir, exist_ok=True)
    progress = Progress(enabled=not args.quiet)
    # a --model's own band choice, as one image uses it (job._with_model_bands): pre-labels and labels alike
    fitted_with = (start.info or {}) if start is not None else {}
    bands = args.bands or fitted_with.get("bands")
    feature_bands = args.feature_bands or fitted_with.get("feature_bands")

    def step(src, index, *, base, prelabels, resume, title_note, model_path):
        annotate = {"window": args.window, "resume": resume, "backend": args.backend, "prelabels": prelabels,
                    "title_note": title_note, "order": args.order or "rows"}
        job = replace(_job(args, src.path, outdir, annotate=annotate, report={"window (-w)": args.window}),
                      model=None, scribbles=None, save_model=model_path)
        if base is not None:
            job = replace(job, labels=None, colors=None)  # the classes travel with the model
        outcome = run_job(job, progress=progress, model=base)
        if outcome.status != "done":
            raise _error_of(outcome)
        log.info("%s: wrote %s; model saved to %s", title_note,
                 ", ".join(os.path.basename(p) for p in outcome.outputs.values()), model_path)
        return collection.load_model(model_path)

    state = collection.walk(images, outdir=outdir, name=name, step=step,
                            open_image=lambda p: open_image(p, bands=bands, feature_bands=feature_bands),
                            classes=classes, settings=_settings(args), model_path=args.save_model,
                            start_model=args.model, resume=args.resume, overwrite=args.overwrite, progress=progress,
                            outputs_of=lambda p: list(output_paths(outdir, stem_in(outdir, p)).values()),
                            labels_given=args.labels is not None)
    log.info("collection %s: %d of %d images labelled; model in %s", name, len(state.done), len(images), state.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
