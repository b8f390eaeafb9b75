"""The annotation windows (OpenCV highgui): the only module that opens a window.

Two windows: an overview of the whole image with the current window outlined and every scribble
so far, and the annotation window showing the current w x w window at full resolution, scaled
to fit the screen. Mouse and key events are turned into calls on :class:`label_tools.session.Session`;
after every stroke the scribbles are saved, so a crash or kill loses nothing.

OpenCV was chosen over matplotlib: its window draws a 1000 x 1000 frame in milliseconds (matplotlib
redraws a figure in tens to hundreds), keeps the pixel grid 1:1 with no axes or toolbar to mis-map
clicks, and its key and mouse callbacks are the same on every platform.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from typing import NamedTuple

import numpy as np

from . import session as sess
from .errors import InputError, OptionError
from .tiling import annotation_windows

log = logging.getLogger("label_tools")

WIN_OVERVIEW = "label_tools overview"
WIN_ANNOTATE = "label_tools annotate"
REPAINT_SECONDS = 1.0  # idle windows are shown their last frame again this often (Annotator.run)
REMAP_SECONDS = 0.3  # windows shown this long are mapped again once where no window manager runs (remap_unmanaged)
MAX_ZOOM = 4.0  # a window is magnified at most this much on screen ...
MIN_SHOWN = 640  # ... unless that leaves its longer side shorter than this many pixels (a 40 x 30 image: 16 x)
OV_MIN_SHOWN = 240  # the overview of a small image is magnified (at most MAX_ZOOM) until its longer side is this long
NODATA = 255
ERASER_BGR = (255, 0, 255)  # the brush circle while the eraser is on (magenta: white while painting)

class Key(NamedTuple):
    """One row of the key table: the keys, how the help shows them, what they do.

    Attributes
    ----------
    chars : str
        The characters that trigger it (lower case; Esc is ``"\\x1b"``, Enter ``"\\r"`` and ``"\\n"``).
    label : str
        The keys as the help overlay shows them.
    text : str
        What they do, for the help overlay.
    action : str
        The annotator method called with the character: it returns True when the window changed,
        False when only the frame needs drawing again, None when it drew what it changed itself.
        An annotator without the method (e.g. no pre-labels to show) ignores the key.
    """

    chars: str
    label: str
    text: str
    action: str


#: Every key of the annotator: the dispatch of :meth:`Annotator.on_key` and the help overlay (H).
KEYS = (
    Key("\x1b\r\n", "Esc/Enter", "next class (after the last: next window)", "key_next"),
    Key("z", "Z", "undo the last stroke (or erase)", "key_undo"),
    Key("e", "E", "eraser on/off: drag removes strokes of any class", "key_eraser"),
    Key("+=-_", "+ / -", "brush size", "key_brush"),
    Key("0123456789", "1-9", "jump to class (10+: two digits quickly, 1 then 5)", "key_class"),
    Key("b", "B", "back to the window you came from", "key_back"),
    Key("s", "S", "skip this window", "key_skip"),
    Key("p", "P", "preview labels from the scribbles so far", "key_preview"),
    Key("l", "L", "pre-labels on/off (collections, --model, --init)", "key_prelabels"),
    Key("u", "U", "uncertainty overlay on/off (bright = unsure)", "key_uncertainty"),
    Key("n", "N", "jump to the most uncertain window", "key_most_uncertain"),
    Key("h", "H", "this help", "key_help"),
    Key("q", "Q", "finish now and compute", "key_finish"),
)
_KEY_OF = {c: k for k in KEYS for c in k.chars}
#: The help overlay's lines: the keys, a tab, what they do (drawn in two aligned columns, help_text_width).
HELP = ["left drag\tpaint the current class"] + [f"{k.label}\t{k.text}" for k in KEYS]


def key_char(key) -> str:
    """The lower-case character of an OpenCV key code (``""`` for none or a key outside ASCII)."""
    k = key & 0xFF if key is not None and key >= 0 else -1
    if k in (27, 13, 10):
        return chr(k)
    return chr(k).lower() if 32 <= k < 127 else ""


HELP_SCALES = (0.5, 0.45, 0.4, 0.35, 0.3)  # OpenCV font scales tried, largest first (0.3: 8 px capitals)


def _key_column(scale: float, cv2) -> int:
    """Width in pixels of the help's key column at ``scale``: its widest key label and a gap."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    return max(cv2.getTextSize(t.split("\t")[0], font, scale, 1)[0][0] for t in HELP) + int(round(20 * scale))


def help_text_width(text: str, scale: float, cv2) -> int:
    """Width in pixels of one help line as :func:`draw_help_line` draws it (a tab aligns the text
    after it on the key column: OpenCV's fonts are proportional, so padding with spaces does not)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    if "\t" in text:
        return _key_column(scale, cv2) + cv2.getTextSize(text.split("\t", 1)[1], font, scale, 1)[0][0]
    return cv2.getTextSize(text, font, scale, 1)[0][0]


def draw_help_line(img, text: str, x: int, y: int, scale: float, cv2) -> None:
    """Draw one help line at baseline origin (x, y), white; the part after a tab on the key column."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    if "\t" in text:
        key, what = text.split("\t", 1)
        cv2.putText(img, key, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(img, what, (x + _key_column(scale, cv2), y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    else:
        cv2.putText(img, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def help_layout(class_names, width: int, height: int, cv2, *, margin: int = 6, gap: int = 14):
    """Where the help overlay's lines go in a ``width`` x ``height`` frame, every line inside it.

    The lines are :data:`HELP`, a blank line and the classes (``classes: 1 water, 2 sand, ...``,
    wrapped to the width of the help lines). The largest font of :data:`HELP_SCALES` wins at which
    all lines fit in 1, 2 or 3 columns (fewest first; columns filled top to bottom). A frame too
    small for that (narrow and short at once) gets the layout showing the most lines, the last of
    them saying how many more there are.

    Parameters
    ----------
    class_names : sequence of str
    width, height : int
        The frame (the annotation window's image) in pixels.
    cv2 : module
        OpenCV, for ``getTextSize``.

    Returns
    -------
    scale : float
        Font scale for ``cv2.FONT_HERSHEY_SIMPLEX``, thickness 1.
    placed : list of (str, int, int)
        Each line's text and its baseline origin (x, y), as ``cv2.putText`` takes it.
    box : (int, int)
        Width and height of the darkened box behind the text (top-left corner at 0, 0).
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    classes = "classes: " + ", ".join(f"{i + 1} {n}" for i, n in enumerate(class_names))

    def text_w(t, s):
        return help_text_width(t, s, cv2)

    best = None  # the layout showing the most lines: (shown, scale, lines, rows, cols)
    for s in HELP_SCALES:
        lines = HELP + [""] + _wrap(classes, lambda t: text_w(t, s), max(text_w(t, s) for t in HELP))
        (_, asc), desc = cv2.getTextSize("Hg", font, s, 1)
        pitch = max(int(np.ceil(44 * s)), asc + desc + 2)  # 22 px at 0.5
        fit_rows = max(0, (height - 2 * margin - asc - desc) // pitch + 1)
        for cols in (1, 2, 3):
            rows = -(-len(lines) // cols)
            widths = [max(text_w(t, s) for t in lines[c * rows:(c + 1) * rows]) for c in range(cols)]
            if 2 * margin + sum(widths) + gap * (cols - 1) > width:
                break  # more columns are wider still
            if rows <= fit_rows:
                return _place(lines, rows, s, cv2, margin, gap)
            if best is None or cols * fit_rows > best[0]:
                best = (cols * fit_rows, s, lines, fit_rows, cols)
    if best is None:  # narrower than one column of the smallest font: one column, clipped on the right
        s = HELP_SCALES[-1]
        (_, asc), desc = cv2.getTextSize("Hg", font, s, 1)
        lines = HELP + [""] + [classes]
        best = (0, s, lines, max(0, (height - 2 * margin - asc - desc) // max(int(np.ceil(44 * s)), asc + desc + 2) + 1), 1)
    _, s, lines, rows, cols = best
    rows = max(rows, 1)
    if len(lines) > rows * cols:
        lines = lines[: rows * cols - 1] + [f"... {len(lines) - rows * cols + 1} more lines: enlarge the window"]
    return _place(lines, rows, s, cv2, margin, gap, width=width, height=height)


def help_room(out, class_names, cv2):
    """``out`` itself when the help overlay fits in it, else ``out`` at the top left of a larger dark frame
    that holds the help (the frame of a thin strip's window, 1250 x 50, showed 2 of its 15 lines and told
    the person to enlarge a window that cannot be resized). Presses below or right of the picture draw nothing.
    """
    h, w = out.shape[:2]
    scale, placed, _ = help_layout(class_names, w, h, cv2)
    if not placed[-1][0].startswith("... ") and all(x + help_text_width(t, scale, cv2) <= w for t, x, _ in placed):
        return out
    _, _, (bw, bh) = help_layout(class_names, max(w, 10_000), 10_000, cv2)  # all lines, largest font
    _, _, (cw, ch) = help_layout(class_names, max(w, bw), max(h, bh), cv2)  # as many columns as the width takes
    frame = np.full((max(h, ch), max(w, cw), 3), 32, np.uint8)
    frame[:h, :w] = out
    return frame


def _wrap(text, measure, width):
    """``text`` split after its commas into lines no wider than ``width`` (by ``measure``, an item may be wider)."""
    out, cur = [], ""
    for item in text.split(", "):
        cand = item if not cur else f"{cur}, {item}"
        if cur and measure(cand + ",") > width:
            out.append(cur + ",")
            cur = "  " + item
        else:
            cur = cand
    return out + [cur]


def _place(lines, rows, s, cv2, margin, gap, *, width=None, height=None):
    """(scale, [(text, x, y)], box) of ``lines`` filled into columns of ``rows`` lines, top to bottom."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, asc), desc = cv2.getTextSize("Hg", font, s, 1)
    pitch = max(int(np.ceil(44 * s)), asc + desc + 2)
    cols = -(-len(lines) // rows)
    widths = [max(help_text_width(t, s, cv2) for t in lines[c * rows:(c + 1) * rows]) for c in range(cols)]
    placed = [(t, margin + sum(widths[:c]) + gap * c, margin + asc + r * pitch)
              for i, t in enumerate(lines) for c, r in [divmod(i, rows)]]
    bw = 2 * margin + sum(widths) + gap * (cols - 1)
    bh = 2 * margin + asc + desc + (min(rows, len(lines)) - 1) * pitch
    return s, placed, (bw if width is None else min(bw, width), bh if height is None else min(bh, height))


# ---------------------------------------------------------------------------- display availability, dialogs
def has_display() -> bool:
    """True where a window can open (an X or Wayland display, or a non-Linux desktop)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def opencv_has_windows() -> bool:
    """Whether this OpenCV build can open windows (``opencv-python-headless`` cannot)."""
    try:
        import cv2

        info = cv2.getBuildInformation()
    except Exception:
        return False
    for line in info.splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "NO", "")
    return hasattr(cv2, "namedWindow")


def choose_backend(backend=None) -> str:
    """The annotator toolkit to use: ``backend`` if it can open a window, else the other one.

    ``None`` means OpenCV where it has windows, else matplotlib. Raises InputError (one line saying
    what to pass or install) when the asked-for toolkit, or both, cannot open a window.
    """
    from .annotate_mpl import matplotlib_window_problem

    if backend not in (None, "opencv", "matplotlib"):
        raise OptionError(f"--backend: expected opencv or matplotlib, got {backend!r}")
    cv_ok = opencv_has_windows()
    if backend == "opencv" and not cv_ok:
        raise InputError("--backend opencv: this OpenCV has no window support (opencv-python-headless?); pass "
                         "--backend matplotlib, or install opencv-python in place of opencv-python-headless")
    if backend == "opencv" or (backend is None and cv_ok):
        return "opencv"
    problem = matplotlib_window_problem()
    if problem is None:
        return "matplotlib"
    if backend == "matplotlib":
        raise InputError(f"--backend matplotlib: matplotlib cannot open a window ({problem})")
    raise InputError(f"no toolkit can open the annotation window: OpenCV has no window support and matplotlib "
                     f"cannot open one ({problem}); install opencv-python (not -headless) or tkinter "
                     "(apt install python3-tk), or pass --scribbles FILE to label without a window")


def _tk_root():
    import tkinter

    root = tkinter.Tk()
    root.withdraw()
    return root


def _run_dialog(show):
    """``show(root)`` (a modal Tk dialog on a hidden root) that Ctrl-C, SIGTERM and SIGHUP can stop.

    Tk's dialog loop never hands control to Python, so a stop signal was not seen while a dialog was open
    (Ctrl-C did nothing; a closed terminal left the program and its dialog running). The signal is held
    (:func:`label_tools.files.signals_deferred`), a timer looks for it every 0.1 s and closes the dialog,
    and it is raised when the dialog has returned.
    """
    import contextlib
    import tkinter

    from .files import signal_pending, signals_deferred

    with signals_deferred():
        root = _tk_root()
        timer = {}

        def poll():
            if signal_pending():
                root.destroy()
            else:
                timer["id"] = root.after(100, poll)

        timer["id"] = root.after(100, poll)
        try:
            return show(root)
        except tkinter.TclError:
            if signal_pending():  # the dialog's root destroyed under it: the signal is raised on the way out
                return None
            raise
        finally:
            # the timer is cancelled first: left pending, it fired inside the next dialog's event loop (Tcl's
            # notifier serves every interpreter of the thread) after its command was deleted with this root,
            # and Tcl printed 'invalid command name "...poll"' and a traceback on stderr
            with contextlib.suppress(tkinter.TclError):
                root.after_cancel(timer["id"])
            with contextlib.suppress(tkinter.TclError):
                root.destroy()


def screen_size() -> tuple:
    """(width, height) of the screen in pixels; 1280 x 800 if it cannot be told."""
    try:
        root = _tk_root()
        w, h = root.winfo_screenwidth(), root.winfo_screenheight()
        root.destroy()
        return int(w), int(h)
    except Exception:
        return 1280, 800


def ask_file(what: str, *, option: str, filetypes=None) -> str:
    """Ask for a file with a dialog, as dl_tools did. Raises InputError without a display or on cancel."""
    if not has_display():
        raise InputError(f"no {what} given and no display to ask for it: pass {option} on the command line")
    # the dialog's title says what it asks for, but a bare X session (Xvfb, X2Go) shows no titles
    log.info("choose the %s in the file dialog (or pass %s)", what, option)
    try:
        from tkinter import filedialog

        path = _run_dialog(lambda root: filedialog.askopenfilename(
            parent=root, title=f"label_tools: choose the {what}", filetypes=filetypes or []))
    except Exception as e:
        raise InputError(f"no {what} given and the file dialog failed ({e}): pass {option}") from None
    if not path:
        raise InputError(f"no {what} chosen: pass {option} on the command line")
    return path


def ask_missing_class_files(args):
    """Annotator runs: ask for a missing labels or colours file (cancel the colours dialog for defaults)."""
    if not has_display():
        raise InputError("no display for the annotation window: pass --scribbles FILE to label without a window")
    if args.labels is None and getattr(args, "init", None) is not None:
        from .prelabels import own_classes

        if own_classes(args.init) is not None:  # label_tools' own _mres_geo.tif: its class names and colours
            return  # are read back from it (a dialog asked for a labels file all the same)
    if args.labels is None:
        args.labels = ask_file("labels file (class names, one per line)", option="--labels",
                               filetypes=[("text", "*.txt"), ("all", "*")])
    if args.colors is None:
        try:
            args.colors = ask_file("colours file (one colour per class; cancel for defaults)", option="--colors",
                                   filetypes=[("text", "*.txt"), ("all", "*")])
        except InputError:
            args.colors = None


def ask_resume(path: str) -> bool:
    """Ask whether to resume from an existing scribble file (Yes = resume)."""
    try:
        from tkinter import messagebox

        ans = _run_dialog(lambda root: messagebox.askyesno(
            "label_tools", f"Scribbles from an earlier session exist:\n{path}\n\nResume from them?", parent=root))
        return bool(ans)
    except Exception:
        if sys.stdin and sys.stdin.isatty():
            return input(f"resume from {path}? [Y/n] ").strip().lower() not in ("n", "no")
        return True  # never drop work silently


def ask_start_afresh(problem: str) -> bool:
    """Ask whether to set a damaged autosave aside and start afresh (Yes = start afresh; no answer = no)."""
    try:
        from tkinter import messagebox

        ans = _run_dialog(lambda root: messagebox.askyesno(
            "label_tools", f"{problem}\n\nKeep it as a .bak file and start afresh?", parent=root))
        return bool(ans)
    except Exception:
        if sys.stdin and sys.stdin.isatty():
            return input(f"{problem}\nkeep it as .bak and start afresh? [y/N] ").strip().lower() in ("y", "yes")
        return False  # never drop work silently


def show_image(path: str):
    """Show a PNG in a window until a key is pressed or the window is closed."""
    import cv2

    if not has_display():
        log.warning("no display: not showing %s", path)
        return
    if not opencv_has_windows():  # opencv-python-headless: show it with matplotlib
        from .annotate_mpl import show_png

        show_png(path)
        return
    img = cv2.imread(path)
    sw, sh = screen_size()
    f = min(1.0, 0.9 * sw / img.shape[1], 0.85 * sh / img.shape[0])
    if f < 1:
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    cv2.namedWindow("label_tools result", cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.imshow("label_tools result", img)
    remap_at = time.monotonic() + REMAP_SECONDS
    while window_open(cv2, "label_tools result"):
        if cv2.waitKey(100) != -1:
            break
        if remap_at is not None and time.monotonic() >= remap_at:
            remap_at = None
            remap_unmanaged(("label_tools result",))  # a window Qt never painted (see there)
    cv2.destroyAllWindows()


def remap_unmanaged(prefixes, display=None) -> int:
    """Unmap and map again the top-level X windows named ``prefixes*`` if no window manager runs; how many.

    Qt's highgui under an X server without a window manager (Xvfb, a bare Xvnc or X2Go session) sometimes
    never learns that its window was mapped: Qt's event log shows the ConfigureNotify and Expose of the new
    window but no MapNotify, so Qt takes it for hidden and never paints it (black, for minutes; painting the
    frame again does not help). Mapping it again from outside makes the X server send a MapNotify, and the
    window is painted. Measured on this 2-core machine with 2 busy CPU hogs, 20 starts of the annotator
    each: 8/20 starts left a window black without this, 0/20 with it. Under a window manager (the windows
    are reparented into frames, or _NET_SUPPORTING_WM_CHECK is set) nothing is done: the manager would
    withdraw and manage the windows again (a flicker, a move); nothing is done either without libX11
    (not X11: Windows, macOS, Wayland without XWayland).

    Parameters
    ----------
    prefixes : sequence of str
        Start of the window names (titles) to map again.
    display : str, optional
        X display name; default ``$DISPLAY``.
    """
    import ctypes
    import ctypes.util

    try:
        x = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError:
        return 0
    c_ulong, c_void_p, byref = ctypes.c_ulong, ctypes.c_void_p, ctypes.byref
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = c_void_p, [ctypes.c_char_p]
    x.XDefaultRootWindow.restype, x.XDefaultRootWindow.argtypes = c_ulong, [c_void_p]
    x.XInternAtom.restype, x.XInternAtom.argtypes = c_ulong, [c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XGetWindowProperty.argtypes = [c_void_p, c_ulong, c_ulong, ctypes.c_long, ctypes.c_long, ctypes.c_int,
                                     c_ulong, ctypes.POINTER(c_ulong), ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(c_ulong), ctypes.POINTER(c_ulong),
                                     ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))]
    x.XQueryTree.argtypes = [c_void_p, c_ulong, ctypes.POINTER(c_ulong), ctypes.POINTER(c_ulong),
                             ctypes.POINTER(ctypes.POINTER(c_ulong)), ctypes.POINTER(ctypes.c_uint)]
    x.XFetchName.argtypes = [c_void_p, c_ulong, ctypes.POINTER(ctypes.c_char_p)]
    x.XUnmapWindow.argtypes = x.XMapWindow.argtypes = [c_void_p, c_ulong]
    x.XSync.argtypes = [c_void_p, ctypes.c_int]
    x.XCloseDisplay.argtypes = x.XFree.argtypes = [c_void_p]
    d = x.XOpenDisplay(display.encode() if display else None)
    if not d:
        return 0
    done = 0
    try:
        root = x.XDefaultRootWindow(d)
        wm_check = x.XInternAtom(d, b"_NET_SUPPORTING_WM_CHECK", True)  # 0: no EWMH manager ever ran here
        if wm_check:
            kind, fmt, n, left = c_ulong(), ctypes.c_int(), c_ulong(), c_ulong()
            data = ctypes.POINTER(ctypes.c_ubyte)()
            if x.XGetWindowProperty(d, root, wm_check, 0, 1, 0, 0, byref(kind), byref(fmt), byref(n), byref(left),
                                    byref(data)) == 0 and data:
                x.XFree(data)
                if n.value:
                    return 0
        parent, kids, count = c_ulong(), ctypes.POINTER(c_ulong)(), ctypes.c_uint()
        if not x.XQueryTree(d, root, byref(c_ulong()), byref(parent), byref(kids), byref(count)):
            return 0
        wins = [kids[i] for i in range(count.value)]
        if kids:
            x.XFree(kids)
        for w in wins:  # top-level windows not reparented by a manager
            name = ctypes.c_char_p()
            if not x.XFetchName(d, w, byref(name)) or not name.value:
                continue
            title = name.value.decode("utf-8", "replace")
            x.XFree(name)
            if title.startswith(tuple(prefixes)):
                x.XUnmapWindow(d, w)
                x.XMapWindow(d, w)
                done += 1
        x.XSync(d, 0)
    finally:
        x.XCloseDisplay(d)
    return done


# ---------------------------------------------------------------------------- helpers (pure)
def window_open(cv2, name: str) -> bool:
    """Whether OpenCV window ``name`` is still shown. Closed by the window manager as the last window left
    (the overview closed first), Qt's GUI object is gone and OpenCV raises instead of answering: closed too."""
    try:
        return cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:
        return False


def window_worth(rgb, valid) -> bool:
    """Whether a window is worth showing: some data, and not one uniform colour.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The window, decimated.
    valid : ndarray of bool, shape (h, w), or None
    """
    px = rgb.reshape(-1, 3)
    if valid is not None:
        if not valid.any():
            return False
        px = px[valid.ravel()]
    return bool(px.size) and int(np.ptp(px, axis=0).max()) > 0


def reduce_labels(labels, out_shape):
    """Shrink a label array for display keeping thin strokes (max-pool, then nearest)."""
    import cv2

    h, w = out_shape
    k = int(np.ceil(max(labels.shape[0] / max(h, 1), labels.shape[1] / max(w, 1))))
    lab = cv2.dilate(labels, np.ones((k, k), np.uint8)) if k > 1 else labels
    return cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)


def paint_labels(rgb, labels, colors, *, alpha=1.0, skip=(0,), offset=1):
    """Draw ``labels`` over ``rgb`` (in place) in class colours; value v -> colour v - offset."""
    lut = np.zeros((256, 3), np.uint8)
    for v in range(256):
        c = v - offset
        if 0 <= c < len(colors):
            lut[v] = colors[c]
    m = ~np.isin(labels, skip)
    if alpha >= 1:
        rgb[m] = lut[labels[m]]
    else:
        rgb[m] = (rgb[m] * (1 - alpha) + lut[labels[m]] * alpha).astype(np.uint8)
    return rgb


# ---------------------------------------------------------------------------- the annotator
class Annotator:
    """The two windows around a Session."""

    notice = None  # a question for the person, put first on the status line (see _may_quit)
    _quit_asked = False

    def __init__(self, src, classes, session, *, outdir, stem, preview=None, seconds_before=0.0):
        import cv2

        self.cv2 = cv2
        self.src, self.classes, self.s = src, classes, session
        self.outdir, self.stem = outdir, stem
        self.preview = preview
        self.seconds_before = seconds_before
        self.model_seconds = 0.0
        self.show_help = False
        self.show_preview = False
        self._preview_labels = None
        self._preview_tried = False  # whether the preview was computed for this window and these strokes
        self._base = None
        self._base_window = None
        self._worth = {}
        sw, sh = screen_size()
        self.screen = (sw, sh)
        # a small image's overview is magnified (a 60 x 40 image was shown as a 60 x 40 overview)
        grow = max(1.0, min(MAX_ZOOM, OV_MIN_SHOWN / max(src.width, src.height)))
        f = min(sw * 0.3 / src.width, sh * 0.8 / src.height, grow)
        self.ov_shape = (max(1, int(round(src.height * f))), max(1, int(round(src.width * f))))
        self.ov_scr = reduce_labels(session.scribbles, self.ov_shape)
        # the overview of a large raster takes seconds to decode: made in the background while the
        # annotation window is already open (GDAL and OpenCV release the GIL)
        self.ov_img = np.full(self.ov_shape + (3,), 60, np.uint8)
        cv2.putText(self.ov_img, "loading overview...", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        self._ov_ready = None
        self._shown = {}  # window name -> the last BGR frame shown in it (repainted while idle)
        self._cursor = None  # the mouse in the annotation window (x, y), where the brush outline is drawn
        self._valid = (None, None)  # (window, its no-data mask at full resolution) for the brush
        if src.has_nodata:
            session.valid_of = self._window_valid
        self._clean = None  # the annotation window's last frame without the brush outline
        max_side = max(self.ov_shape)

        def make_overview():
            img = src.overview(max_side)[0]
            if img.shape[:2] != self.ov_shape:
                up = self.ov_shape[0] > img.shape[0] or self.ov_shape[1] > img.shape[1]  # magnified: crisp pixels
                img = cv2.resize(img, (self.ov_shape[1], self.ov_shape[0]),
                                 interpolation=cv2.INTER_NEAREST if up else cv2.INTER_AREA)
            self._ov_ready = img

        import threading

        threading.Thread(target=make_overview, daemon=True).start()
        self.ann_box = (int(sw * 0.65), int(sh * 0.85))  # room for the annotation window (w, h)

    def poll_background(self):
        """Called by the event loop between events: a mixin redraws here what a background job has finished."""

    def _window_valid(self, window):
        """bool (h, w): where ``window`` holds data (read once per window; the brush leaves no-data alone)."""
        if self._valid[0] != tuple(window):
            self._valid = (tuple(window), self.src.read_valid(window))
        return self._valid[1]

    # --------------------------------------------------------------- drawing
    def _scale(self):
        """Screen pixels per image pixel of the current window: it fits the room for the window; a small one
        is magnified up to MAX_ZOOM, or to MIN_SHOWN pixels on its longer side (a tiny image was shown 160 x 120)."""
        r0, r1, c0, c1 = self.s.window
        zoom = max(MAX_ZOOM, MIN_SHOWN / max(r1 - r0, c1 - c0))
        return min(self.ann_box[0] / (c1 - c0), self.ann_box[1] / (r1 - r0), zoom)

    def _base_image(self):
        if self._base_window != self.s.window:
            r0, r1, c0, c1 = self.s.window
            d = self._scale()
            rgb = self.src.read_display(self.s.window)
            size = (max(1, int(round((c1 - c0) * d))), max(1, int(round((r1 - r0) * d))))
            interp = self.cv2.INTER_AREA if d < 1 else self.cv2.INTER_LINEAR
            self._base = self.cv2.resize(rgb, size, interpolation=interp)
            self._base_window = self.s.window
            self._preview_labels, self._preview_tried = None, False
        return self._base

    def render_annotation(self):
        cv2 = self.cv2
        base = self._base_image()
        h, w = base.shape[:2]
        out = self._underlay(WIN_ANNOTATE, base.copy())
        r0, r1, c0, c1 = self.s.window
        if self.show_preview and not self._preview_tried:  # a new window (or new strokes) with P on
            self._run_preview()
        if self.show_preview and self._preview_labels is not None:
            lab = cv2.resize(self._preview_labels, (w, h), interpolation=cv2.INTER_NEAREST)
            paint_labels(out, lab, self.classes.colors, alpha=0.45, skip=(NODATA,), offset=0)
        scr = cv2.resize(np.ascontiguousarray(self.s.scribbles[r0:r1, c0:c1]), (w, h), interpolation=cv2.INTER_NEAREST)
        paint_labels(out, scr, self.classes.colors)
        if self.show_help:
            out = help_room(out, self.classes.names, cv2)
            self._draw_help(out)
        self._show(WIN_ANNOTATE, out, f"{WIN_ANNOTATE} - " + (f"{self.notice} | " if self.notice else "")
                   + self.s.status(self.classes.names) + (" | preview" if self.show_preview else ""))

    def _show(self, name, rgb, title=None):
        """Put the RGB frame ``rgb`` (uint8 (h, w, 3)) in window ``name`` (the matplotlib annotator overrides this)."""
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        if name == WIN_ANNOTATE:
            self._clean = bgr
            bgr = self._with_cursor(bgr)
        self._shown[name] = bgr
        self.cv2.imshow(name, bgr)
        if title is not None:
            self.cv2.setWindowTitle(name, title)

    def _cursor_ring(self):
        """(x, y, radius, BGR colour) of the brush circle at the mouse in the annotation window, the size a
        stroke paints; None when the mouse is off the picture."""
        if self._cursor is None:
            return None
        x, y = self._cursor
        h, w = self._base_image().shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            return None
        r = max(1, int(round((self.s.brush - 0.5) * self._scale())))  # the painted disk is 2 * brush - 1 px wide
        return int(x), int(y), r, ERASER_BGR if self.s.erasing else (255, 255, 255)

    def _with_cursor(self, bgr):
        """``bgr`` (the annotation window's frame) with the brush drawn as a circle at the mouse (+ and -
        showed only the number on the status line); a new frame, or ``bgr`` itself when the mouse is off the picture."""
        ring = self._cursor_ring()
        if ring is None:
            return bgr
        x, y, r, colour = ring
        cv2 = self.cv2
        out = bgr.copy()
        cv2.circle(out, (x, y), r + 1, (0, 0, 0), 1, cv2.LINE_AA)  # dark and light: seen on any picture
        cv2.circle(out, (x, y), r, colour, 1, cv2.LINE_AA)
        return out

    def mouse_hover(self, x, y):
        """The mouse moved with no button down: the brush outline follows it."""
        self._cursor = (x, y)
        if self._clean is not None:
            bgr = self._with_cursor(self._clean)
            self._shown[WIN_ANNOTATE] = bgr
            self.cv2.imshow(WIN_ANNOTATE, bgr)

    def _draw_help(self, out):
        cv2 = self.cv2  # the status line is a band below the picture (annotate_uncertainty.draw_status)
        scale, placed, (bw, bh) = help_layout(self.classes.names, out.shape[1], out.shape[0], cv2)
        box = out[:bh, :bw]
        box[:] = (box * 0.25).astype(np.uint8)
        for t, x, y in placed:
            draw_help_line(out, t, x, y, scale, cv2)

    def _underlay(self, name, rgb):
        """``rgb`` (uint8 (h, w, 3), the picture of window ``name``) with what lies under the preview and the
        strokes blended in (the uncertainty overlay of :mod:`label_tools.annotate_uncertainty`); here nothing."""
        return rgb

    def render_overview(self):
        cv2 = self.cv2
        out = self._underlay(WIN_OVERVIEW, self.ov_img.copy())
        paint_labels(out, self.ov_scr, self.classes.colors)
        h, w = self.ov_shape
        fy, fx = h / self.src.height, w / self.src.width
        r0, r1, c0, c1 = self.s.window
        cv2.rectangle(out, (int(c0 * fx), int(r0 * fy)), (max(int(c1 * fx) - 1, 0), max(int(r1 * fy) - 1, 0)),
                      (255, 255, 0), 2)
        self._show(WIN_OVERVIEW, out)

    def _update_overview_region(self, bbox):
        h, w = self.ov_shape
        fy, fx = h / self.src.height, w / self.src.width
        r0, r1, c0, c1 = bbox
        a0, a1 = int(r0 * fy), min(int(np.ceil(r1 * fy)) + 1, h)
        b0, b1 = int(c0 * fx), min(int(np.ceil(c1 * fx)) + 1, w)
        R0, R1 = int(a0 / fy), min(int(np.ceil(a1 / fy)), self.src.height)
        C0, C1 = int(b0 / fx), min(int(np.ceil(b1 / fx)), self.src.width)
        self.ov_scr[a0:a1, b0:b1] = reduce_labels(np.ascontiguousarray(self.s.scribbles[R0:R1, C0:C1]), (a1 - a0, b1 - b0))

    # --------------------------------------------------------------- events
    def on_mouse(self, event, x, y, flags, param):
        cv2 = self.cv2
        if event == cv2.EVENT_LBUTTONDOWN:
            self.mouse_down(x, y)
        elif event == cv2.EVENT_MOUSEMOVE and flags & cv2.EVENT_FLAG_LBUTTON:
            self.mouse_drag(x, y)
        elif event == cv2.EVENT_MOUSEMOVE:
            self.mouse_hover(x, y)
        elif event == cv2.EVENT_LBUTTONUP:
            self.mouse_up()

    def _to_image(self, x, y):
        """Window pixel (x, y) -> image pixel (row, col), clipped to the current window."""
        r0, r1, c0, c1 = self.s.window
        d = self._scale()
        return (min(max(r0 + (y + 0.5) / d - 0.5, r0), r1 - 1), min(max(c0 + (x + 0.5) / d - 0.5, c0), c1 - 1))

    def mouse_down(self, x, y):
        h, w = self._base_image().shape[:2]
        if y >= h or x >= w:  # a press on the status line below the picture (or beside it, help_room) draws nothing
            return
        self._cursor = (x, y)
        self.s.begin_stroke(*self._to_image(x, y))
        self.render_annotation()

    def mouse_drag(self, x, y):
        if self.s._open is not None:
            self._cursor = (x, y)
            self.s.extend_stroke(*self._to_image(x, y))
            self.render_annotation()

    def mouse_up(self):
        if self.s.end_stroke():
            self._quit_asked, self.notice = False, None
            self._update_overview_region(self.s.strokes[-1].bbox)
            self.save()
            self._preview_labels, self._preview_tried = None, False  # render_annotation runs it again if P is on
            self.render_annotation()
            self.render_overview()

    def save(self, state_only=False):
        """Autosave; a full disk or I/O error is reported (once per kind) and drawing goes on in memory."""
        try:
            (sess.save_state_only if state_only else sess.save)(self.s, self.outdir, self.stem, seconds=self.seconds())
        except OSError as e:
            why = e.strerror or str(e)
            if why != getattr(self, "_save_error", None):
                self._save_error = why
                log.warning("cannot save the scribbles in %r (%s): your strokes are kept in memory and saved "
                            "again after the next one; free some space", self.outdir, why)
        else:
            self._save_error = None

    def seconds(self):
        return self.seconds_before + (time.perf_counter() - self.t_open) - self.model_seconds

    def _run_preview(self):
        """Compute the preview of the current window from the strokes so far (P on; once per window and strokes)."""
        self._preview_tried = True
        if self.preview is None:
            return
        t0 = time.perf_counter()
        if not getattr(self, "_preview_seeded", False):  # strokes resumed from an autosave count too
            self._preview_seeded = True
            self.preview.remember_windows(self.s.scribbles, self.s.windows, self.s.window)
        self._preview_labels = self.preview.labels(self.s.scribbles, self.s.window)
        self.model_seconds += time.perf_counter() - t0
        if self._preview_labels is None:
            log.info("preview: scribble at least two classes first")

    def _leave_window(self):
        if self.preview is not None:
            t0 = time.perf_counter()
            self.preview.remember(self.s.scribbles, self.s.window)
            self.model_seconds += time.perf_counter() - t0

    def worth(self, window) -> bool:
        """Whether ``window`` holds data that is not uniform (read decimated; cached)."""
        if window not in self._worth:
            r0, r1, c0, c1 = window
            shape = (min(48, r1 - r0), min(48, c1 - c0))
            rgb = self.src.read_display(window, out_shape=shape, resampling="nearest")
            valid = self.src.read_valid(window, out_shape=shape) if self.src.has_nodata else None
            self._worth[window] = window_worth(rgb, valid)
        return self._worth[window]

    def skip_unworthy(self, direction: int = +1):
        """Move past uniform and all-no-data windows (forward, or back for B)."""
        s = self.s
        while not s.done and not self.worth(s.window):
            if direction < 0 and s.previous_window():
                continue
            direction = +1
            s.next_window()

    def on_key(self, key) -> None:
        """Run the :data:`KEYS` action of ``key`` (an OpenCV key code), then save and redraw."""
        ch = key_char(key)
        if ch != "q" and ch and self._quit_asked:  # the question asked by Q is answered by drawing on
            self._quit_asked, self.notice = False, None
        row = _KEY_OF.get(ch)
        action = getattr(self, row.action, None) if row is not None else None
        if action is None:
            return
        log.debug("key %r: %s", ch, row.action)
        moved = action(ch)
        if moved is None:
            return
        s = self.s
        if s.done and ch != "q" and not self._may_quit():
            # Esc or S past the last window with one class scribbled: asked on the status line, as Q asks (the
            # windows closed and the run ended in the one-line error); the person stays in the last window
            s.done = False
        if moved:
            self.skip_unworthy(-1 if ch == "b" else +1)
            self.save()
        else:
            self.save(state_only=True)
        if not s.done:
            self.render_annotation()
            self.render_overview()

    # the actions of KEYS (see Key.action for what they return)
    def key_next(self, ch):
        s = self.s
        before = s.window_index
        if s.class_index + 1 >= s.n_classes:
            self._leave_window()
        s.next_class()
        return s.window_index != before

    def key_undo(self, ch):
        s = self.s
        if not s.strokes:
            log.info("Z: nothing to undo%s", " (strokes drawn before this session was resumed cannot be undone: "
                     "erase them with E, or paint over them with the right class)" if s.scribbles.any() else "")
        else:
            where = s.strokes[-1].window
            s.undo()
            if where != s.window_index:  # not in the picture on screen: only the overview shows it went
                log.info("Z: undid the last stroke, drawn in window %d/%d (the overview shows it)", where + 1,
                         len(s.windows))
            self.ov_scr = reduce_labels(s.scribbles, self.ov_shape)
            self.save()
            self._preview_labels, self._preview_tried = None, False  # render_annotation runs it again if P is on
        return False

    def key_eraser(self, ch):
        self.s.toggle_eraser()  # the status line and the brush circle say which mode is on
        return False

    def key_brush(self, ch):
        s = self.s
        if ch in "+=":
            s.change_brush(+1 if s.brush < 10 else +max(1, s.brush // 5))
        else:
            s.change_brush(-1 if s.brush <= 10 else -max(1, s.brush // 6))
        return False

    def key_class(self, ch):
        if not self.s.class_digit(int(ch), time.monotonic()):  # nothing changed on screen: say why
            log.info("%s: no such class (the classes are 1-%d)", ch, self.s.n_classes)
        return False

    def key_back(self, ch):
        self._leave_window()
        return self.s.previous_window()

    def key_skip(self, ch):
        self._leave_window()
        self.s.next_window()
        return True

    def key_preview(self, ch):
        self.show_preview = not self.show_preview  # render_annotation computes it when not yet done here
        return False

    def key_help(self, ch):
        self.show_help = not self.show_help
        return False

    def key_finish(self, ch):
        if not self._may_quit():
            return False  # drawn again: the status line asks
        self._leave_window()
        self.s.finish()
        return False

    def _lone_class(self):
        """The name of the only class scribbled when nothing else gives the model a second one (no pre-labels,
        no model's labels), else None."""
        if getattr(self, "prelabels", None) is not None:
            return None
        present = np.flatnonzero(np.bincount(self.s.scribbles.ravel(), minlength=self.s.n_classes + 1)[1:])
        return self.classes.names[present[0]] if len(present) == 1 else None

    def _may_quit(self) -> bool:
        """Whether Q (or closing the annotation window) may end the annotation now.

        With one class scribbled the model has nothing to tell it from: quitting ended in a one-line error
        after the windows had gone. The first time, the status line asks instead (False); a second Q or
        close right after it quits as before (True), and the run ends with that error.
        """
        if self._quit_asked:
            return True
        name = self._lone_class()
        if name is None:
            return True
        self._quit_asked = True
        self.notice = (f"only {name} is scribbled: draw another class, or press Q again to quit without "
                       "labelling (strokes are saved)")
        log.info("%s", self.notice)
        return False

    def _open_windows(self):
        """Open (or open again) the two windows where they belong, the mouse bound to the annotation window."""
        cv2 = self.cv2
        flags = cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL
        cv2.namedWindow(WIN_OVERVIEW, flags)
        cv2.namedWindow(WIN_ANNOTATE, flags)
        cv2.moveWindow(WIN_OVERVIEW, 0, 0)
        cv2.moveWindow(WIN_ANNOTATE, self.ov_shape[1] + 20, 0)
        cv2.setMouseCallback(WIN_ANNOTATE, self.on_mouse)

    # --------------------------------------------------------------- loop
    def run(self):
        cv2 = self.cv2
        self._open_windows()
        self.t_open = time.perf_counter()
        self.skip_unworthy(+1)
        if self.s.done:
            cv2.destroyAllWindows()
            raise InputError(f"every window of image {self.src.path!r} is uniform or no-data: nothing to label")
        self.render_overview()
        self.render_annotation()
        last_paint = time.monotonic()
        self._remap_at = time.monotonic() + REMAP_SECONDS
        try:
            while not self.s.done:
                key = cv2.waitKeyEx(30)
                if self._remap_at is not None and time.monotonic() >= self._remap_at:
                    self._remap_at = None  # once the windows are shown (see remap_unmanaged)
                    if remap_unmanaged((WIN_OVERVIEW, WIN_ANNOTATE)):
                        log.debug("windows mapped again (no window manager: Qt may have missed their MapNotify)")
                if self._ov_ready is not None:
                    self.ov_img, self._ov_ready = self._ov_ready, None
                    self.render_overview()
                self.poll_background()
                if key != -1:
                    self.on_key(key)
                elif not window_open(cv2, WIN_ANNOTATE):
                    if self._may_quit():
                        log.info("annotation window closed: computing with the scribbles so far")
                        self.s.finish()
                        continue
                    try:  # one class scribbled: open it again, asking (a second close quits)
                        self._open_windows()
                        self.render_annotation()
                        self.render_overview()
                        self._remap_at = time.monotonic() + REMAP_SECONDS
                    except cv2.error:  # Qt gone with the last window (the overview was closed first)
                        log.info("annotation window closed: computing with the scribbles so far")
                        self.s.finish()
                elif time.monotonic() - last_paint > REPAINT_SECONDS:
                    # a frame Qt dropped while the machine was busy is shown again; ~1 ms a second (a window
                    # Qt never painted at all is one whose MapNotify it missed: remap_unmanaged)
                    for name, bgr in self._shown.items():
                        if window_open(cv2, name):  # imshow would open again a window the user closed
                            cv2.imshow(name, bgr)
                    last_paint = time.monotonic()
        finally:
            self.s.done = True
            self.save()
            cv2.destroyAllWindows()
            for _ in range(5):
                cv2.waitKey(1)
        return self.seconds()


def annotate(src, classes, *, window: int, outdir: str, stem: str, resume=None, settings=None, backend=None,
             prelabels=None, title_note: str = "", order: str = "rows"):
    """Open the annotator on ``src`` and return when the user is done.

    Scribbles are saved to ``<outdir>/<stem>_scribbles.png`` after every stroke (and the position
    to ``<stem>_scribbles.json``); a later run offers to resume from them.

    Parameters
    ----------
    src : ImageSource
    classes : Classes
    window : int
        Window side in image pixels.
    resume : bool or None
        True: resume from an existing scribble file; False: start afresh (the old file is kept as
        ``<stem>_scribbles.<time>.bak.png``); None: ask.
    backend : {"opencv", "matplotlib"} or None
        Window toolkit; None: OpenCV where it has windows, else matplotlib (see :func:`choose_backend`).
    prelabels : ndarray of uint8, shape (H, W), optional
        A model's labels (0-based, 255 = none) shown under the strokes (collections; key L toggles).
    title_note : str
        Added to the annotation window's title (e.g. ``image 2/5``).
    order : {"rows", "uncertainty"}
        Window walk: row by row, or (after the first window) to the least certain window left
        (:mod:`label_tools.annotate_uncertainty`, which also gives the U and N keys and the status line).

    Returns
    -------
    scribbles : ndarray of uint8, shape (H, W)
    seconds : float
        Annotation time with the windows open, model time excluded, earlier sessions included.
    """
    if not has_display():
        raise InputError("no display for the annotation window: pass --scribbles FILE to label without a window")
    backend = choose_backend(backend)
    from .features import DEFAULT_SIGMAS
    from .files import check_writable_dir
    from .annotate_preview import Preview

    check_writable_dir(outdir)
    os.makedirs(outdir, exist_ok=True)
    t0 = time.perf_counter()
    windows = annotation_windows(src.shape, window)  # uniform / no-data ones are skipped as they come
    try:
        previous = sess.load(outdir, stem, src.shape, len(classes))
    except sess.DamagedAutosave as e:
        previous = None
        if resume is False or (resume is None and ask_start_afresh(str(e))):
            kept = sess.set_aside(e)
            log.warning("%s; kept as %s; starting afresh", e, ", ".join(kept))
        else:
            raise InputError(f"{e}; pass --no-resume to keep it as a .bak file and start afresh") from None
    scr, state, before = None, {}, 0.0
    if previous is not None:
        png = sess.scribble_paths(outdir, stem)[0]
        if resume is None:
            resume = ask_resume(png)
        if resume:
            scr, state = previous
            before = float(state.get("annotation_seconds", 0.0))
        else:
            backup = png[:-4] + time.strftime(".%Y%m%d-%H%M%S") + ".bak.png"
            shutil.copy2(png, backup)
            log.info("starting afresh; earlier scribbles kept in %s", backup)
    # the brush as the person left it on the image before (a collection walk), until a resumed image's own
    s = sess.Session(src.shape, len(classes), windows, scribbles=scr, brush=_last["brush"])
    if scr is not None:
        placed = s.restore(state) if state else False
        log.info("%s", s.resume_note(png, classes.names, state, placed))
    preview = Preview(src, len(classes), sigmas=settings.sigmas if settings is not None else DEFAULT_SIGMAS)
    if backend == "matplotlib":
        from .annotate_mpl import MplAnnotator as cls
    else:
        cls = Annotator
    if prelabels is not None or title_note:
        from .annotate_prelabels import with_prelabels

        cls = with_prelabels(cls)
    from .annotate_uncertainty import QuickUncertainty, with_uncertainty

    cls = with_uncertainty(cls)  # U, N, --order uncertainty and the status line, in either toolkit
    ann = cls(src, classes, s, outdir=outdir, stem=stem, preview=preview, seconds_before=before)
    ann.order = order
    ann.quick = QuickUncertainty(src, len(classes), sigmas=settings.sigmas if settings is not None else DEFAULT_SIGMAS,
                                 background=True)
    if prelabels is not None or title_note:
        ann.prelabels, ann.title_note = prelabels, title_note
    log.debug("annotator ready in %.2f s (%d windows)", time.perf_counter() - t0, len(windows))
    try:
        seconds = ann.run()
    finally:
        _last["brush"] = s.brush
    return s.scribbles, seconds


#: what the annotator carries from one image to the next within a run (a collection walk): the brush size
_last = {"brush": 3}
