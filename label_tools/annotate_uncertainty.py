"""Label where it matters: an uncertainty overlay (U), a jump to the least certain window (N), the walk
ordered by uncertainty (``--order uncertainty``), and a status line drawn inside the annotation window.

The uncertainty comes from a quick model of the scribbles so far on a small grid of the whole image
(:class:`QuickUncertainty`: features computed once, a small forest refitted when the scribbles
change, well within the preview's 0.3 s). Mixed into an annotator class by :func:`with_uncertainty`,
like the pre-labels (:mod:`label_tools.annotate_prelabels`), without touching its drawing code.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

log = logging.getLogger("label_tools")
NO_MODEL = "scribble two classes first"  # what U and N say before the quick model can be fitted
READING = "reading the image"  # what they say while the quick model's grid is still being read

GRID_PIXELS = 40_000
STRIP_PIXELS = 8_000_000  # images larger than this have their quick grid read in strips of this size
ALPHA = 0.6
STATUS_BAND = 26  # pixels of the status line, a band added below the picture of the annotation window


class QuickUncertainty:
    """Uncertainty of the whole image on a small grid, from the scribbles so far.

    Parameters
    ----------
    src : ImageSource
    n_classes : int
    sigmas : sequence of float
    max_pixels : int
        Pixel budget of the grid.
    """

    def __init__(self, src, n_classes: int, *, sigmas=(1, 2, 4, 8, 16), max_pixels: int = GRID_PIXELS,
                 background: bool = False):
        import threading

        from .tiling import scaled_shape

        self.src, self.n_classes, self.sigmas = src, n_classes, sigmas
        f = min(1.0, math.sqrt(max_pixels / float(src.height * src.width)))
        self.shape = scaled_shape(src.shape, f)
        self.features = self.valid = self.error = None
        self._read = threading.Event()
        self._key = None
        self._map = None
        if background:
            # The grid is read from the whole image: a large raster without overviews is decoded whole for it
            # (45 s for a 20,000 x 20,000 deflate GeoTIFF, beside the overview's own read). Read on a thread, the
            # annotation window opens at once; U, N and the walk wait for it (see ``map``).
            threading.Thread(target=self._read_grid, daemon=True, name="quick-uncertainty").start()
        else:
            self._read_grid()

    def _read_grid(self):
        from . import pipeline

        try:
            # a large raster's grid is read in strips: the annotation window's reads are not held up behind it
            grid = pipeline._Grid(self.src, self.shape, self.sigmas, strip_pixels=STRIP_PIXELS)
            self.features = grid.features((0, self.shape[0], 0, self.shape[1]))
            v = grid.valid((0, self.shape[0], 0, self.shape[1]))
            self.valid = np.ones(self.shape, bool) if v is None else v
        except Exception as e:  # shown as "uncertainty unavailable" (the labelling itself goes on)
            self.error = e
            log.warning("the uncertainty overlay is unavailable: %s", e)
        finally:
            self._read.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the grid is read (``timeout`` seconds at most; None: no limit); True once it is."""
        return self._read.wait(timeout)

    @property
    def reading(self) -> bool:
        """True while the grid is still being read (a background read not finished)."""
        return not self._read.is_set()

    def map(self, scribbles, *, wait: float | None = None, prelabels=None) -> np.ndarray | None:
        """float32 (h, w) in [0, 1] (1 = most uncertain); None before two classes are scribbled (or, with
        ``prelabels``, are in the pre-labels and the strokes together), when the grid could not be read, or while
        it is still being read after ``wait`` seconds (None: until it is).

        ``prelabels`` (uint8 (H, W), 0-based, 255 = none: ``--init``, ``--model`` or a collection's): weak labels
        beside the strokes, as the labelling itself learns from them; a stroke wins where they disagree. The map
        then shows, before any stroke, where the pre-labels disagree with how the image looks.
        """
        from .scribbles import downscale
        from .unary import SampleBuffer, bootstrap_size, default_classifier

        if not self.wait(wait) or self.features is None:
            return None
        small = downscale(scribbles, self.shape, self.n_classes)
        weak = self._weak(prelabels)
        key = hash((small.tobytes(), id(prelabels)))
        if key == self._key:
            return self._map
        m = (small > 0) & self.valid
        y = small[m].astype(np.int64) - 1
        X, y = [self.features[m]], [y]
        if weak is not None:
            w = (weak < self.n_classes) & ~m & self.valid  # pre-labelled and not scribbled: the strokes win
            if w.any():
                # a buffer of their own (at most 500 per class), so the strokes are not thinned out among them
                wbuf = SampleBuffer(self.n_classes, max_per_class=500)
                wbuf.add(self.features[w], weak[w].astype(np.int64))
                wx, wy = wbuf.arrays()
                X.append(wx)
                y.append(wy)
        y_all = np.concatenate(y)
        if len(np.unique(y_all)) < 2:
            self._key, self._map = key, None
            return None
        buf = SampleBuffer(self.n_classes, max_per_class=1000)
        if len(y[0]):
            buf.add(X[0], y[0])
        sx, sy = buf.arrays() if len(y[0]) else (X[0][:0], y[0])
        X, y = np.concatenate([sx] + X[1:]), np.concatenate([sy] + y[1:])
        clf = default_classifier(n_estimators=10, max_depth=8, max_samples=bootstrap_size(0.5, y), n_jobs=1)
        clf.fit(X, y)
        h, w, f = self.features.shape
        p = clf.predict_proba(self.features.reshape(-1, f))
        k = p.shape[1]
        u = (1.0 - p.max(axis=1)) * (k / max(k - 1, 1)) if k > 1 else np.zeros(len(p))
        u = u.reshape(h, w).astype(np.float32)
        u[~self.valid] = 0
        self._key, self._map = key, np.clip(u, 0, 1)
        return self._map

    def _weak(self, prelabels):
        """The pre-labels on the quick grid (nearest pixel), cached per array; None without them."""
        if prelabels is None:
            return None
        if getattr(self, "_weak_of", None) is not prelabels:
            import cv2

            h, w = self.shape
            self._weak_small = cv2.resize(np.ascontiguousarray(prelabels), (w, h), interpolation=cv2.INTER_NEAREST)
            self._weak_of = prelabels
        return self._weak_small

    def window_scores(self, u, windows, full_shape) -> np.ndarray:
        """Mean uncertainty of each window (row0, row1, col0, col1) in full-resolution pixels."""
        H, W = full_shape
        h, w = u.shape
        out = np.zeros(len(windows))
        for i, (r0, r1, c0, c1) in enumerate(windows):
            a, b = int(r0 * h / H), max(int(math.ceil(r1 * h / H)), int(r0 * h / H) + 1)
            c, d = int(c0 * w / W), max(int(math.ceil(c1 * w / W)), int(c0 * w / W) + 1)
            out[i] = float(u[a:b, c:d].mean())
        return out


def heat_overlay(rgb, u, *, alpha: float = ALPHA) -> np.ndarray:
    """``rgb`` uint8 (h, w, 3) with the uncertainty ``u`` (any size, [0, 1]) blended as a heat map."""
    import cv2

    h, w = rgb.shape[:2]
    uu = cv2.resize(np.ascontiguousarray(u, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(uu * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    a = (np.clip(uu, 0, 1) * alpha)[..., None]
    return (rgb * (1 - a) + heat * a + 0.5).astype(np.uint8)


def status_text(session, class_names, *, brush=None, mode: str = "", note: str = "") -> str:
    """``[note |] class i/K name | window j/N | brush b | mode`` for the in-window status line
    (``note``: the image of a collection walk, ``image 2/3``)."""
    k = session.class_index
    parts = [note] if note else []
    parts += [f"class {k + 1}/{session.n_classes} {class_names[k]}",
             f"window {session.window_index + 1}/{len(session.windows)}", f"brush {session.brush}"]
    if mode:
        parts.append(mode)
    return " | ".join(parts)


STATUS_LINE = 20  # pixels per further line of a status line wrapped in a narrow window
_STATUS_FONT_SCALES = (0.55, 0.5, 0.45, 0.4, 0.35)


def status_layout(text, width):
    """Lines and font scale of the status line in a window ``width`` pixels wide.

    The text breaks after its ``" | "`` and ``", "`` separators, so the narrow window of an image's last
    column (80 px of a 480 px photo at ``-w 200``: 320 px on screen) shows all of it; a piece still too
    wide gets a smaller font (0.35 at least).

    Returns
    -------
    lines : list of str
    scale : float
        Font scale for ``cv2.FONT_HERSHEY_SIMPLEX``.
    """
    import re

    import cv2

    room = max(width - 16, 1)
    pieces = [p for p in re.split(r"(?<=\|) |(?<=,) ", text) if p]

    def wide(t, scale):
        return cv2.getTextSize(t.rstrip(" |,"), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > room

    for scale in _STATUS_FONT_SCALES:
        if not any(wide(p, scale) for p in pieces) or scale == _STATUS_FONT_SCALES[-1]:
            break
    lines, cur = [], ""
    for p in pieces:
        cand = f"{cur} {p}" if cur else p
        if cur and wide(cand, scale):
            lines.append(cur)
            cur = p
        else:
            cur = cand
    lines.append(cur)
    return [ln.rstrip(" |,") for ln in lines], scale


def draw_status(out, text):
    """``out`` with a dark band below it holding ``text``: the picture itself is left whole.

    Parameters
    ----------
    out : ndarray of uint8, shape (h, w, 3)
        The annotation window's picture (not changed).
    text : str

    Returns
    -------
    ndarray of uint8, shape (h + STATUS_BAND + STATUS_LINE * (n - 1), w, 3)
        The picture, then the band (drawn over the picture's bottom rows, it hid what was being labelled there)
        with the text in ``n`` lines (:func:`status_layout`: more than one only where the window is narrow).
    """
    import cv2

    h, w = out.shape[:2]
    lines, scale = status_layout(text, w)
    frame = np.empty((h + STATUS_BAND + STATUS_LINE * (len(lines) - 1), w, 3), np.uint8)
    frame[:h] = out
    frame[h:] = 32
    for i, line in enumerate(lines):
        cv2.putText(frame, line, (8, h + STATUS_BAND - 8 + STATUS_LINE * i), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return frame


class UncertaintyMixin:
    """U (overlay), N (jump), ``order = "uncertainty"`` and the status line (see :func:`with_uncertainty`)."""

    quick = None
    order = "rows"
    show_uncertainty = False
    last_uncertainty_seconds = 0.0
    _has_map = True  # whether the last overlay drawn had a quick model behind it (False: NO_MODEL)
    _waiting_for_read = False  # the overlay is on, waiting for the quick model's grid (poll_background)

    def _uncertainty(self, wait: float | None = 0.3):
        """The quick model's map, or None (no model yet). ``wait``: how long to wait for the grid still being
        read (the overlay and N give up after the preview's 0.3 s and say so; the walk waits)."""
        if self.quick is None:
            return None
        t0 = time.perf_counter()
        u = self.quick.map(self.s.scribbles, wait=wait, prelabels=getattr(self, "prelabels", None))
        self.last_uncertainty_seconds = time.perf_counter() - t0
        self.model_seconds += self.last_uncertainty_seconds
        return u

    def _mode(self):
        modes = ["ERASER (E: draw)"] if getattr(getattr(self, "s", None), "erasing", False) else []
        if getattr(self, "prelabels", None) is not None:  # a collection's pre-labels (annotate_prelabels)
            modes.append("pre-labels " + ("on" if getattr(self, "show_prelabels", True) else "off") + " (L)")
        if self.show_uncertainty:
            modes.append("uncertainty" if self._has_map else f"uncertainty: {self._no_map()}")
        if getattr(self, "show_preview", False):  # nothing to show before two classes are scribbled: say so
            empty = getattr(self, "_preview_tried", False) and getattr(self, "_preview_labels", None) is None
            modes.append(f"preview: {NO_MODEL}" if empty else "preview")
        if self.order == "uncertainty":
            modes.append("order: uncertainty")
        return ", ".join(modes) or "draw"

    def _no_map(self) -> str:
        """Why there is no map: the grid is still being read, could not be read, or two classes are missing."""
        q = self.quick
        if q is not None and q.reading:
            return READING + " (shown when read)"
        if q is not None and q.error is not None:
            return "unavailable (see the log)"
        return NO_MODEL

    def poll_background(self):
        """The overlay switched on while the grid was being read is drawn as soon as it is read."""
        super().poll_background()
        if self.show_uncertainty and not self._has_map and self.quick is not None and not self.quick.reading \
                and self._waiting_for_read:
            self._waiting_for_read = False
            self.render_annotation()
            self.render_overview()

    def _underlay(self, name, rgb):
        """The heat map under the preview and the strokes (blended over them, it turned strokes drawn where the
        model is unsure orange, and the person could not see which class they had drawn)."""
        from .annotate import WIN_ANNOTATE

        rgb = super()._underlay(name, rgb)
        if not self.show_uncertainty:
            return rgb
        # while the grid is read, only the first frame waits (0.3 s): strokes stay fluid meanwhile
        u = self._uncertainty(0.0 if self._waiting_for_read else 0.3)
        self._has_map = u is not None
        self._waiting_for_read = u is None and self.quick is not None and self.quick.reading
        if u is None:
            return rgb
        if name == WIN_ANNOTATE:
            r0, r1, c0, c1 = self.s.window
            h, w = u.shape
            H, W = self.src.shape
            a, b = int(r0 * h / H), max(int(math.ceil(r1 * h / H)), int(r0 * h / H) + 1)
            c, d = int(c0 * w / W), max(int(math.ceil(c1 * w / W)), int(c0 * w / W) + 1)
            u = u[a:b, c:d]
        return heat_overlay(rgb, u)

    def _show(self, name, rgb, title=None):
        from .annotate import WIN_ANNOTATE

        if name == WIN_ANNOTATE:
            text = status_text(self.s, self.classes.names, mode=self._mode(), note=getattr(self, "title_note", ""))
            if getattr(self, "notice", None):  # a question (Q with one class scribbled) comes first
                text = f"{self.notice} | {text}"
            rgb = draw_status(rgb, text)
        super()._show(name, rgb, title)

    def _most_uncertain(self, *, unvisited: bool) -> int | None:
        u = self._uncertainty()
        if u is None:
            return None
        scores = self.quick.window_scores(u, self.s.windows, self.src.shape)
        order = np.argsort(-scores, kind="stable")
        for j in order:
            j = int(j)
            if unvisited and j in self.s.visited:  # (the window row order stepped to is a candidate: it was
                continue  # left out, and the walk skipped it when it was the least certain, or the only one left)
            if not unvisited and j == self.s.window_index:
                continue
            if self.worth(self.s.windows[j]):
                return j
        return None

    def _go(self, j: int):
        self._leave_window()
        self.s.go_to(j)
        self.save()

    # the actions of U and N, and the walk of --order uncertainty (annotate.KEYS)
    def key_uncertainty(self, ch):
        self.show_uncertainty = not self.show_uncertainty
        self.render_annotation()
        self.render_overview()
        return None

    def key_most_uncertain(self, ch):
        if self._uncertainty() is None:
            log.info("N: %s (the most uncertain window is judged by a quick model of the strokes)", self._no_map())
            return None
        j = self._most_uncertain(unvisited=False)
        if j is None:  # nothing happened on screen: say why
            n = sum(self.worth(w) for w in self.s.windows)
            log.info("N: no other window to go to: this image has %d window%s worth labelling", n,
                     "" if n == 1 else "s")
            return None
        self._go(j)
        self.render_annotation()
        self.render_overview()
        return None

    def key_next(self, ch):
        before = self.s.window_index
        last_class = self.s.class_index + 1 >= self.s.n_classes
        moved = super().key_next(ch)
        return self._walk_on(before) or moved if last_class else moved

    def key_skip(self, ch):
        before = self.s.window_index
        moved = super().key_skip(ch)
        return self._walk_on(before) or moved

    def _walk_on(self, before: int) -> bool:
        """After window ``before`` is left forward: with ``--order uncertainty`` go to the least certain
        window not visited yet (True), else keep row order (False)."""
        if self.order != "uncertainty" or (self.s.window_index == before and not self.s.done):
            return False
        self.s.visited.add(before)
        if self.quick is not None and self.quick.reading:
            log.info("--order uncertainty: waiting for the image to be read for the quick model")
            self.quick.wait()
        j = self._most_uncertain(unvisited=True)
        if j is None:
            if self._uncertainty() is None:
                return False  # no model yet: row order goes on
            # every window worth labelling visited: the walk is over, as after the last window in row order
            # (row order went on through windows already visited, to the last one)
            self.s.done = True
            return True
        self.s.done = False
        self.s.window_index, self.s.class_index = j, 0
        return True


_classes = {}


def with_uncertainty(cls):
    """``cls`` (an annotator class) with :class:`UncertaintyMixin` mixed in."""
    if cls not in _classes:
        _classes[cls] = type(cls.__name__ + "WithUncertainty", (UncertaintyMixin, cls), {})
    return _classes[cls]
