"""The annotator's state, apart from any window: strokes, undo, class and window cycling, brush, resume.

:class:`Session` holds the scribbles as class ids in an array (never read back from displayed
pixels) and everything the key bindings change. ``annotate.py`` only turns mouse and key events
into calls on it and draws what it says, so all of this is tested headless.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import InputError

MIN_BRUSH = 1
MAX_BRUSH = 200
#: A second digit key within this many seconds of the first makes a two-digit class (1 then 5: class 15)
DIGIT_PAIR_SECONDS = 1.0


@dataclass
class _Stroke:
    window: int
    bbox: tuple  # (row0, row1, col0, col1) in full-image pixels
    before: np.ndarray  # scribble values under bbox before the stroke


class Session:
    """Walk windows and classes, record strokes.

    Parameters
    ----------
    shape : tuple of int (H, W)
        Image shape.
    n_classes : int
    windows : list of tuple (row0, row1, col0, col1)
        Windows to walk, in order (uniform / no-data windows already left out).
    scribbles : ndarray of uint8, shape (H, W), optional
        Scribbles to start from (resume); default all 0.
    brush : int
        Brush radius in image pixels.
    valid_of : callable(window) -> ndarray of bool (window-sized) or None, optional
        Where the window holds data: the brush does not paint no-data pixels (see :meth:`_paint`).
    """

    def __init__(self, shape, n_classes, windows, *, scribbles=None, brush=3, valid_of=None):
        if not windows:
            raise InputError("the image has no window worth labelling: every window is uniform or no-data")
        self.shape = tuple(shape)
        self.n_classes = int(n_classes)
        self.windows = list(windows)
        self.scribbles = np.zeros(self.shape, np.uint8) if scribbles is None else np.asarray(scribbles, np.uint8).copy()
        if self.scribbles.shape != self.shape:
            raise InputError(f"scribbles of shape {self.scribbles.shape} do not fit an image of shape {self.shape}")
        self.brush = int(brush)
        self.window_index = 0
        self.class_index = 0  # 0-based; scribble value class_index + 1
        self.done = False
        self.strokes: list = []
        self._open = None  # (before-copy of the window, last point) while the mouse is down
        self.visited = set()  # windows left (the walk of --order uncertainty goes to others); saved with the position
        self.history: list = []  # windows left forward, latest last: B goes back to the last (the walk jumps)
        self.valid_of = valid_of
        self.erasing = False  # E: the brush removes strokes of any class instead of painting one

    # ------------------------------------------------------------------ where we are
    @property
    def window(self) -> tuple:
        return self.windows[self.window_index]

    def status(self, class_names=None) -> str:
        name = class_names[self.class_index] if class_names else f"class{self.class_index + 1}"
        return (f"{name} (class {self.class_index + 1}/{self.n_classes}) | window {self.window_index + 1}/"
                f"{len(self.windows)} | brush {self.brush}" + (" | eraser" if self.erasing else ""))

    # ------------------------------------------------------------------ strokes
    def begin_stroke(self, row: float, col: float):
        """Mouse down at image pixel (row, col), which must lie in the current window."""
        r0, r1, c0, c1 = self.window
        self._open = (self.scribbles[r0:r1, c0:c1].copy(), (row, col))
        self._paint(row, col, row, col)

    def extend_stroke(self, row: float, col: float):
        """Mouse dragged to (row, col): paint the segment from the last point."""
        if self._open is None:
            return
        before, (pr, pc) = self._open
        self._paint(pr, pc, row, col)
        self._open = (before, (row, col))

    def end_stroke(self) -> bool:
        """Mouse up. Returns True if the stroke changed any pixel (and so is undoable)."""
        if self._open is None:
            return False
        before, _ = self._open
        self._open = None
        r0, r1, c0, c1 = self.window
        changed = np.nonzero(self.scribbles[r0:r1, c0:c1] != before)
        if not len(changed[0]):
            return False
        br0, br1 = changed[0].min(), changed[0].max() + 1
        bc0, bc1 = changed[1].min(), changed[1].max() + 1
        bbox = (r0 + br0, r0 + br1, c0 + bc0, c0 + bc1)
        self.strokes.append(_Stroke(self.window_index, bbox, before[br0:br1, bc0:bc1].copy()))
        return True

    def _paint(self, ra, ca, rb, cb):
        """Paint the segment (ra, ca)-(rb, cb) with a disk brush of diameter 2 * brush - 1 px (with the
        eraser on: set it back to 0, unlabelled, whatever class was there)."""
        import cv2

        r0, r1, c0, c1 = self.window
        rad = self.brush - 1
        ya, xa, yb, xb = (int(round(v)) for v in (ra, ca, rb, cb))
        # local box around the segment, clipped to the window
        y0, y1 = max(min(ya, yb) - rad, r0), min(max(ya, yb) + rad + 1, r1)
        x0, x1 = max(min(xa, xb) - rad, c0), min(max(xa, xb) + rad + 1, c1)
        if y1 <= y0 or x1 <= x0:
            return
        # draw on a canvas padded by the radius so the brush is round at the window edge too
        canvas = np.zeros((y1 - y0 + 2 * rad, x1 - x0 + 2 * rad), np.uint8)
        cv2.line(canvas, (xa - x0 + rad, ya - y0 + rad), (xb - x0 + rad, yb - y0 + rad), 1, 1, lineType=cv2.LINE_8)
        if rad:
            yy, xx = np.ogrid[-rad: rad + 1, -rad: rad + 1]
            canvas = cv2.dilate(canvas, (xx * xx + yy * yy <= rad * rad).astype(np.uint8))
        m = canvas[rad: rad + y1 - y0, rad: rad + x1 - x0] > 0
        valid = self.valid_of(self.window) if self.valid_of is not None else None
        if valid is not None:  # no-data (a GeoTIFF's black border) is never labelled: painting it showed strokes that count for nothing
            m &= valid[y0 - r0:y1 - r0, x0 - c0:x1 - c0]
        self.scribbles[y0:y1, x0:x1][m] = 0 if self.erasing else self.class_index + 1

    def undo(self) -> bool:
        """Remove the last stroke only, or put back what the last erase removed (in whichever window it
        was drawn). False if none."""
        if not self.strokes:
            return False
        s = self.strokes.pop()
        r0, r1, c0, c1 = s.bbox
        self.scribbles[r0:r1, c0:c1] = s.before
        return True

    # ------------------------------------------------------------------ keys
    def next_class(self) -> str:
        """Esc/Enter: next class; after the last, the next window; after the last window, done.

        Returns "class", "window" or "done". The eraser goes off: a class was chosen to draw with.
        """
        self.erasing = False
        if self.class_index + 1 < self.n_classes:
            self.class_index += 1
            return "class"
        return self.next_window()

    def next_window(self) -> str:
        """S (skip) or the end of a window's classes: go to the next window, first class."""
        self.visited.add(self.window_index)
        self.history.append(self.window_index)
        self.class_index = 0
        if self.window_index + 1 < len(self.windows):
            self.window_index += 1
            return "window"
        self.done = True
        return "done"

    def previous_window(self) -> bool:
        """B: back to the window left last to come here (first class); without one (a resumed session), the
        window before in row order. False when there is none.

        The walk of ``--order uncertainty`` and N jump between windows: B went to the window to the left, one
        the person had not seen, instead of the one they came from.
        """
        while self.history and self.history[-1] == self.window_index:
            self.history.pop()
        if self.history:
            self.window_index = self.history.pop()
        elif self.window_index == 0:
            return False
        else:
            self.window_index -= 1
        self.class_index = 0
        return True

    def go_to(self, index: int):
        """Leave the current window for window ``index`` (first class), as N and the uncertainty walk do."""
        self.visited.add(self.window_index)
        if not self.history or self.history[-1] != self.window_index:
            self.history.append(self.window_index)
        self.window_index, self.class_index = int(index), 0

    def class_digit(self, d: int, now: float) -> bool:
        """Keys 0-9: jump to class ``d``; with 10 or more classes, a second digit within
        :data:`DIGIT_PAIR_SECONDS` of the first makes a two-digit class (1 then 5: class 15; 2 then 0: class 20)
        when there is one. ``now`` is a monotonic clock in seconds. False if there is no such class."""
        first, self._digit = getattr(self, "_digit", None), None
        if first is not None and now - first[1] <= DIGIT_PAIR_SECONDS and first[0] * 10 + d <= self.n_classes:
            return self.set_class(first[0] * 10 + d)
        if self.n_classes >= 10 and 1 <= d <= self.n_classes // 10:
            self._digit = (d, now)
        return self.set_class(d)

    def set_class(self, k: int) -> bool:
        """Jump to class k (1-based) and draw with it (the eraser goes off). False if there is no such class."""
        if 1 <= k <= self.n_classes:
            self.class_index = k - 1
            self.erasing = False
            return True
        return False

    def toggle_eraser(self) -> bool:
        """E: the brush erases strokes of any class (True) or paints the current class again (False)."""
        self.erasing = not self.erasing
        return self.erasing

    def change_brush(self, delta: int):
        """+/-: brush radius, kept within 1..200."""
        self.brush = int(min(max(self.brush + delta, MIN_BRUSH), MAX_BRUSH))

    def finish(self):
        """Q: stop now; compute with the scribbles that exist."""
        self.done = True

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        return {"window_index": self.window_index, "class_index": self.class_index, "brush": self.brush,
                "n_windows": len(self.windows), "shape": list(self.shape), "done": self.done,
                "visited": sorted(self.visited), "history": self.history[-len(self.windows):]}

    def restore(self, state: dict) -> bool:
        """Put the session back where a saved :meth:`state` left it (window, class, brush).

        Returns False when the window and class could not be restored (the autosave was made with
        another window count, another ``-w``): the session then starts at the first window.
        """
        if state.get("shape") and tuple(state["shape"]) != self.shape:
            return False
        placed = state.get("n_windows") == len(self.windows)
        if placed:
            self.window_index = int(min(max(state.get("window_index", 0), 0), len(self.windows) - 1))
            self.class_index = int(min(max(state.get("class_index", 0), 0), self.n_classes - 1))
            # a resumed --order uncertainty walk led back to windows visited before the kill
            n = len(self.windows)
            self.visited = {int(j) for j in state.get("visited", ()) if 0 <= j < n}
            self.history = [int(j) for j in state.get("history", ()) if 0 <= j < n]
        self.brush = int(min(max(state.get("brush", self.brush), MIN_BRUSH), MAX_BRUSH))
        return placed

    def resume_note(self, path: str, class_names, state: dict, placed: bool) -> str:
        """The line saying where a resumed session opens (``resuming from X: window 2/4, class 2/3 sand, ...``)."""
        k = self.class_index
        name = f" {class_names[k]}" if class_names else ""
        where = f"window {self.window_index + 1}/{len(self.windows)}, class {k + 1}/{self.n_classes}{name}"
        drawn = np.bincount(self.scribbles.ravel(), minlength=self.n_classes + 1)[1:]
        n = int((drawn > 0).sum())
        what = f"{int(drawn.sum())} scribbled pixels of {n} class{'' if n == 1 else 'es'}"
        if not placed and "n_windows" in state:
            where = (f"window 1/{len(self.windows)}: the autosave was made with {state['n_windows']} windows "
                     f"(another -w), so its position does not apply")
        return f"resuming from {path}: {where}; {what}"


def scribble_paths(outdir: str, stem: str) -> tuple:
    """(scribble PNG, position JSON) where the annotator keeps its work."""
    return os.path.join(outdir, f"{stem}_scribbles.png"), os.path.join(outdir, f"{stem}_scribbles.json")


def save(session: Session, outdir: str, stem: str, *, seconds: float = 0.0):
    """Save scribbles and position atomically (called after every stroke and every move)."""
    from .files import atomic_path
    from .scribbles import save_scribbles

    png, js = scribble_paths(outdir, stem)
    save_scribbles(png, session.scribbles)
    with atomic_path(js) as tmp, open(tmp, "w") as f:
        json.dump(dict(session.state(), annotation_seconds=round(seconds, 3)), f)


class DamagedAutosave(InputError):
    """The annotator's autosave cannot be resumed (damaged, truncated, or made for another image/classes).

    Attributes
    ----------
    paths : list of str
        The autosave files concerned (scribble PNG and/or position JSON).
    """

    def __init__(self, message, paths):
        super().__init__(message)
        self.paths = list(paths)


def load(outdir: str, stem: str, shape, n_classes):
    """-> (scribbles, state dict) saved by :func:`save`, or None if there is nothing to resume.

    Raises
    ------
    DamagedAutosave
        The scribble PNG or the position JSON is damaged or does not fit this image and these classes
        (nothing is changed on disk; see :func:`set_aside`).
    """
    from .scribbles import read_scribbles

    png, js = scribble_paths(outdir, stem)
    if not os.path.exists(png):
        return None
    aside = [png] + ([js] if os.path.exists(js) else [])
    if os.path.isfile(png) and os.path.getsize(png) == 0:  # a power cut after the rename, before the data
        raise DamagedAutosave(f"autosave cannot be resumed: scribble file {png!r} is empty (0 bytes; the computer "
                              "stopped while it was being saved)", aside)
    try:
        scr = read_scribbles(png, shape, n_classes=n_classes)
    except InputError as e:
        raise DamagedAutosave(f"autosave cannot be resumed: {e}", aside) from None
    state = {}
    if os.path.exists(js):
        try:
            with open(js, encoding="utf-8") as f:
                state = json.load(f)
            _check_state(state)
        except (OSError, ValueError, TypeError) as e:
            raise DamagedAutosave(f"autosave position file {js!r} is damaged ({e})", [png, js]) from None
    return scr, state


def _check_state(state):
    if not isinstance(state, dict):
        raise ValueError(f"expected a JSON object, got {type(state).__name__}")
    for k in ("window_index", "class_index", "brush", "n_windows"):
        if k in state and (not isinstance(state[k], int) or isinstance(state[k], bool)):
            raise ValueError(f"{k!r} should be a whole number, got {state[k]!r}")
    if "annotation_seconds" in state and not isinstance(state["annotation_seconds"], (int, float)):
        raise ValueError(f"'annotation_seconds' should be a number, got {state['annotation_seconds']!r}")
    for k in ("visited", "history"):
        if k in state and not (isinstance(state[k], list)
                               and all(isinstance(v, int) and not isinstance(v, bool) for v in state[k])):
            raise ValueError(f"{k!r} should be a list of window numbers, got {state[k]!r}")
    if "shape" in state and not (isinstance(state["shape"], list) and len(state["shape"]) == 2
                                 and all(isinstance(v, int) for v in state["shape"])):
        raise ValueError(f"'shape' should be [height, width], got {state['shape']!r}")


def set_aside(damaged: DamagedAutosave) -> list:
    """Rename the files of a damaged autosave to ``<name>.<time>.bak<ext>`` so a fresh session can start.

    Returns the backup paths.
    """
    import time

    out = []
    for p in damaged.paths:
        base, ext = os.path.splitext(p)
        bak = base + time.strftime(".%Y%m%d-%H%M%S") + ".bak" + ext
        os.replace(p, bak)
        out.append(bak)
    return out


def save_state_only(session: Session, outdir: str, stem: str, *, seconds: float = 0.0):
    """Save only the position (cheap; after key presses that change no scribble)."""
    from .files import atomic_path

    js = scribble_paths(outdir, stem)[1]
    with atomic_path(js) as tmp, open(tmp, "w") as f:
        json.dump(dict(session.state(), annotation_seconds=round(seconds, 3)), f)
