"""The annotator in matplotlib windows: the fallback where OpenCV cannot open a window.

``opencv-python-headless`` (pulled in by many packages) has no window functions. This backend shows
the same two frames (overview, annotation window) in two matplotlib figures with no toolbar and
matplotlib's own key bindings switched off, and feeds mouse and key events to the same
:class:`label_tools.annotate.Annotator` logic: same keys, same session, same autosave and resume.
Chosen with ``--backend matplotlib`` or automatically (:func:`label_tools.annotate.choose_backend`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time

import numpy as np

from .annotate import WIN_ANNOTATE, WIN_OVERVIEW, Annotator
from .errors import InputError

log = logging.getLogger("label_tools")

_KEEP = []  # Tk windows of closed figures (see MplAnnotator._close_all)
_KEYS = {"escape": 27, "enter": 13, "return": 13, "backspace": 8}


def _gui_backends() -> list:
    """Interactive matplotlib backends whose toolkit is importable here, best first."""
    out = []
    env = os.environ.get("MPLBACKEND", "")
    if env.lower() in ("tkagg", "qtagg", "qt5agg", "gtk3agg", "gtk4agg", "wxagg", "macosx"):
        out.append(env)
    if sys.platform == "darwin":
        out.append("macosx")
    for mod, name in (("PyQt6", "QtAgg"), ("PySide6", "QtAgg"), ("PyQt5", "QtAgg"), ("PySide2", "QtAgg"),
                      ("tkinter", "TkAgg")):
        if importlib.util.find_spec(mod) is not None and name not in out:
            out.append(name)
    return out


def matplotlib_window_problem() -> str | None:
    """None if matplotlib can open a window here, else what is missing (for a one-line error)."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed: pip install matplotlib"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    if not _gui_backends():
        return "no GUI toolkit for it: apt install python3-tk, or pip install PyQt5"
    return None


def _pyplot():
    """pyplot on the first interactive backend that loads, with matplotlib's key bindings and toolbar off."""
    import matplotlib

    errors = []
    for name in _gui_backends():
        try:
            matplotlib.use(name, force=True)
            import matplotlib.pyplot as plt  # noqa: F401  (fails here if the toolkit cannot be loaded)

            break
        except Exception as e:  # try the next toolkit
            errors.append(f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    else:
        raise InputError("matplotlib cannot open a window (" + "; ".join(errors or ["no GUI toolkit"]) + "); "
                         "pass --scribbles FILE to label without a window")
    for k in list(matplotlib.rcParams):
        if k.startswith("keymap."):
            matplotlib.rcParams[k] = []
    matplotlib.rcParams["toolbar"] = "None"
    return plt


class _Figure:
    """One matplotlib figure showing an RGB frame pixel for pixel (axes fill the figure, no margins)."""

    def __init__(self, plt, name, shape, position):
        self.plt = plt
        self.dpi = 100
        h, w = shape
        self.fig = plt.figure(name, figsize=(w / self.dpi, h / self.dpi), dpi=self.dpi)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()
        self.im = None
        self.shape = None
        self.closed = False  # closed by the window manager (or xdotool): its Tk root is gone
        self.fig.canvas.mpl_connect("close_event", lambda event: setattr(self, "closed", True))
        self.rings = []  # the brush circle (dark, light), animated: blitted over the last full draw (see ring)
        self._bg = None  # that draw, without the circle
        self.fig.canvas.mpl_connect("draw_event", self._drawn)
        self._sized_dpi = self.fig.dpi  # the dpi the figure was last sized at (see fit)
        self.title = name
        self.set_title(name)
        try:  # place the window (TkAgg/Qt); cosmetic
            win = self.fig.canvas.manager.window
            if hasattr(win, "wm_geometry"):
                win.wm_geometry(f"+{position[0]}+{position[1]}")
            elif hasattr(win, "move"):
                win.move(*position)
        except Exception:
            pass

    def set_title(self, title):
        if title != self.title or self.im is None:
            self.title = title
            try:
                self.fig.canvas.manager.set_window_title(title)
            except Exception:
                pass

    def _size(self, h, w):
        # matplotlib truncates inches x dpi to whole pixels: a quarter pixel more keeps 720 from becoming 719
        self.fig.set_size_inches((w + 0.25) / self.fig.dpi, (h + 0.25) / self.fig.dpi, forward=True)
        self._sized_dpi = self.fig.dpi

    def fit(self):
        """Size the figure to its frame, one screen pixel per frame pixel, at the dpi the toolkit uses now.

        Matplotlib scales a figure by the screen's dpi (Tk's scaling: 1.04 on a 100-dpi X server, 2 on a
        HiDPI screen): the annotation window, sized to fit the screen, came out that much larger (off the
        screen on a HiDPI one) and its picture resampled.
        """
        if self.shape is not None and self._sized_dpi != self.fig.dpi:
            self._size(*self.shape)

    def show(self, rgb):
        h, w = rgb.shape[:2]
        if self.im is None or self.shape != (h, w):
            self._size(h, w)
            self.ax.clear()
            self.ax.set_axis_off()
            self.im = self.ax.imshow(rgb, interpolation="nearest", aspect="auto")
            self.ax.set_xlim(-0.5, w - 0.5)
            self.ax.set_ylim(h - 0.5, -0.5)
            self.shape = (h, w)
            self._make_rings()
        else:
            self.im.set_data(rgb)
        self.fit()
        self.fig.canvas.draw_idle()

    def _make_rings(self):
        from matplotlib.patches import Circle

        old = self.rings  # ax.clear() took them off the axes: new ones where they were
        self.rings = [Circle((0, 0), 1, fill=False, lw=0.75, ec=c, animated=True, visible=False)
                      for c in ("black", "white")]
        for ring, before in zip(self.rings, old):
            ring.center, ring.radius = before.center, before.radius
            ring.set_visible(before.get_visible())
            ring.set_edgecolor(before.get_edgecolor())
        for ring in self.rings:
            self.ax.add_patch(ring)

    def _drawn(self, event):
        """After a full draw: keep it (the circle is put back over it, never the whole figure drawn again)."""
        self._bg = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        for ring in self.rings:
            self.ax.draw_artist(ring)  # into the frame being shown (animated artists are left out of draws)

    def ring(self, ring, *, blit=True):
        """Put the brush circle at ``ring`` = (x, y, radius, RGB colour) in screen pixels, or hide it (None).

        Only the last full draw and the circle are put on screen (blitting: about 1 ms for a 900 x 900 window);
        drawing the figure again on every mouse move took tens of milliseconds and made the brush lag.
        """
        if not self.rings:
            return
        for ring_, extra in zip(self.rings, (1, 0)):
            ring_.set_visible(ring is not None)
            if ring is not None:
                ring_.center = (ring[0], ring[1])
                ring_.set_radius(ring[2] + extra)
        if ring is not None:
            self.rings[1].set_edgecolor(tuple(v / 255 for v in ring[3]))
        if blit and self._bg is not None:
            canvas = self.fig.canvas
            canvas.restore_region(self._bg)
            for ring_ in self.rings:
                self.ax.draw_artist(ring_)
            canvas.blit(self.fig.bbox)


class MplAnnotator(Annotator):
    """:class:`label_tools.annotate.Annotator` drawn in matplotlib figures (TkAgg or QtAgg)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plt = _pyplot()
        self._figs = {}
        self._down = False
        self._closed = False

    # drawing: Annotator composes the frames, we only put them on screen
    def _show(self, name, rgb, title=None):
        fig = self._figs.get(name)
        if fig is not None and fig.closed:  # the overview closed: it opens again (the annotation window: run)
            self._drop(name)
            fig = None
        if fig is None:
            pos = (0, 0) if name == WIN_OVERVIEW else (self.ov_shape[1] + 20, 0)
            try:
                fig = self._figs[name] = _Figure(self.plt, name, rgb.shape[:2], pos)
            except Exception as e:  # the toolkit loaded but cannot reach the display
                raise InputError(f"matplotlib cannot open a window ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); pass --scribbles "
                                 "FILE to label without a window") from None
            if name == WIN_ANNOTATE:
                c = fig.fig.canvas
                c.mpl_connect("button_press_event", self._press)
                c.mpl_connect("motion_notify_event", self._motion)
                c.mpl_connect("button_release_event", self._release)
                c.mpl_connect("key_press_event", self._key)
                c.mpl_connect("close_event", self._close)
            else:
                fig.fig.canvas.mpl_connect("key_press_event", self._key)
            fig.show(rgb)
            self.plt.show(block=False)
            fig.fig.canvas.flush_events()  # the toolkit sets its screen scaling once the window is shown
            fig.fit()
        else:
            fig.show(rgb)
        if name == WIN_ANNOTATE:  # drawn with the frame (draw_idle), not into it
            fig.ring(self._ring_rgb(), blit=False)
        if title is not None:
            fig.set_title(title)

    def _with_cursor(self, bgr):
        return bgr  # the brush circle is a matplotlib artist over the frame (_Figure.ring)

    def mouse_hover(self, x, y):
        """The mouse moved with no button down: the brush circle follows it (blitted, see _Figure.ring)."""
        self._cursor = (x, y)
        fig = self._figs.get(WIN_ANNOTATE)
        if fig is not None and not fig.closed:
            fig.ring(self._ring_rgb())

    def _ring_rgb(self):
        ring = self._cursor_ring()
        return None if ring is None else ring[:3] + (tuple(ring[3][::-1]),)

    # events
    @staticmethod
    def _xy(event):
        if event.xdata is None or event.ydata is None:
            return None
        return float(event.xdata), float(event.ydata)

    def _press(self, event):
        xy = self._xy(event)
        if event.button == 1 and xy is not None:
            self._down = True
            self.mouse_down(*xy)

    def _motion(self, event):
        xy = self._xy(event)
        if self._down and xy is not None:
            self.mouse_drag(*xy)
        elif not self._down:
            self.mouse_hover(*(xy if xy is not None else (-1, -1)))  # off the picture: no circle

    def _release(self, event):
        if event.button == 1 and self._down:
            self._down = False
            self.mouse_up()

    def _key(self, event):
        k = (event.key or "").lower()
        code = _KEYS.get(k, ord(k) if len(k) == 1 else None)
        if code is not None:
            self.on_key(code)

    def _close(self, event):
        self._closed = True

    # loop
    def run(self):
        self.t_open = time.perf_counter()
        self.skip_unworthy(+1)
        if self.s.done:
            raise InputError(f"every window of image {self.src.path!r} is uniform or no-data: nothing to label")
        self.render_overview()
        self.render_annotation()
        try:
            while not self.s.done:
                if self._ov_ready is not None:
                    self.ov_img, self._ov_ready = self._ov_ready, None
                    self.render_overview()
                self.poll_background()
                for f in list(self._figs.values()):
                    if not f.closed:
                        f.fig.canvas.flush_events()
                # not canvas.start_event_loop: a window closed while Tk's loop runs in it takes the loop's
                # stop timer with it, and the loop ran on for ever (closing the annotation window after a stroke
                # hung the program; even Ctrl-C, held back by the annotator, could not stop it)
                time.sleep(0.02)
                if self._closed and not self._may_quit():  # one class scribbled: open it again, asking
                    self._closed = False
                    self._drop(WIN_ANNOTATE)
                    self.render_annotation()
                elif self._closed:
                    log.info("annotation window closed: computing with the scribbles so far")
                    self.s.finish()
        finally:
            self.s.done = True
            self.save()
            self._close_all()
        return self.seconds()

    def _drop(self, name):
        """Forget the closed figure ``name`` (its Tk objects kept to interpreter exit, see _close_all)."""
        fig = self._figs.pop(name, None)
        if fig is not None:
            fig.im = None
            win = getattr(getattr(fig.fig.canvas, "manager", None), "window", None)
            if win is not None:
                _KEEP.append(win)

    def _close_all(self):
        """Close the figures and free their Tk objects here, in the main thread: if the garbage collector
        met them later in a worker thread of the pipeline, Tcl would abort the process."""
        import gc

        wins = []
        for f in self._figs.values():
            f.im = None
            win = getattr(getattr(f.fig.canvas, "manager", None), "window", None)
            if win is not None:
                wins.append(win)
        self._figs.clear()
        self.plt.close("all")
        for _ in range(3):  # let Tk run the destroys matplotlib queued as idle callbacks
            for win in wins:
                try:
                    win.update()
                except Exception:  # already destroyed
                    pass
        _KEEP.extend(wins)  # a Tk root must die in the thread that made it: keep them to interpreter exit
        wins.clear()
        for _ in range(3):
            gc.collect()


def show_png(path: str):
    """Show a PNG in a matplotlib window until it is closed (``--show`` where OpenCV has no windows)."""
    plt = _pyplot()
    img = plt.imread(path)
    fig = _Figure(plt, "label_tools result", img.shape[:2], (0, 0))
    fig.show((np.clip(img[..., :3], 0, 1) * 255).astype(np.uint8))
    plt.show(block=True)
