"""Windows over an image: processing tiles with overlap, annotation windows, scale factors."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Window(NamedTuple):
    """A window of an image, ``(row0, row1, col0, col1)``, half-open, in one pixel grid.

    The one window type of the package (tiles, label windows, annotation windows, cluster blocks):
    a tuple, so it unpacks, compares and serialises as the bare 4-tuple does, with the slices and
    sizes that every user of a window needs (as rasterio's ``Window.toslices``).
    """

    row0: int
    row1: int
    col0: int
    col1: int

    def toslices(self) -> tuple:
        """``(slice(row0, row1), slice(col0, col1))``: ``array[window.toslices()]`` cuts the window out."""
        return (slice(self.row0, self.row1), slice(self.col0, self.col1))

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def shape(self) -> tuple:
        """``(height, width)``."""
        return (self.row1 - self.row0, self.col1 - self.col0)


@dataclass(frozen=True)
class Tile:
    """One tile of a grid.

    ``inner`` is the part this tile owns (tiles' inner windows cover the image exactly once);
    ``outer`` is ``inner`` grown by the overlap and clipped to the image. Both are
    :class:`Window` s in the same pixel grid.
    """

    inner: Window
    outer: Window

    @property
    def crop(self) -> tuple:
        """Slices that cut ``inner`` out of an array covering ``outer``."""
        r0, r1, c0, c1 = self.inner
        o0, _, p0, _ = self.outer
        return (slice(r0 - o0, r1 - o0), slice(c0 - p0, c1 - p0))


def tiles(shape, tile: int, overlap: int = 0):
    """Cover an image of ``shape`` (H, W) with square tiles of side ``tile`` grown by ``overlap``.

    Tiles are spread evenly (sizes differ by at most one pixel) so no thin sliver is left at the
    right or bottom edge.

    Returns
    -------
    list of Tile
    """
    h, w = int(shape[0]), int(shape[1])
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    out = []
    for r0, r1 in _spans(h, tile):
        for c0, c1 in _spans(w, tile):
            outer = Window(max(r0 - overlap, 0), min(r1 + overlap, h), max(c0 - overlap, 0), min(c1 + overlap, w))
            out.append(Tile(Window(r0, r1, c0, c1), outer))
    return out


def _spans(n, tile):
    k = max(1, math.ceil(n / tile))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def grow(window, margin: int, shape) -> Window:
    """``window`` (row0, row1, col0, col1) grown by ``margin`` on each side, clipped to ``shape``."""
    r0, r1, c0, c1 = window
    return Window(max(r0 - margin, 0), min(r1 + margin, shape[0]), max(c0 - margin, 0), min(c1 + margin, shape[1]))


def scaled_shape(shape, scale: float) -> tuple:
    """(H, W) of an image scaled by ``scale``, at least 1 x 1."""
    return (max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale))))


def to_full(window, scale_rc, shape_full):
    """A window of the scaled grid -> the full-resolution window covering it.

    ``scale_rc`` = (rows_scaled / rows_full, cols_scaled / cols_full). The result may cover a
    fraction of a pixel more than the exact window; callers resample to the scaled shape.
    """
    r0, r1, c0, c1 = window
    sr, sc = scale_rc
    return Window(int(math.floor(r0 / sr)), min(int(math.ceil(r1 / sr)), shape_full[0]),
                  int(math.floor(c0 / sc)), min(int(math.ceil(c1 / sc)), shape_full[1]))


def annotation_windows(shape, size: int):
    """The windows the annotator walks, row by row: as few rows and columns as keep each window at most
    ``size`` pixels on a side, the image shared equally between them (sides differ by one pixel at most).

    Cutting ``size``-pixel windows from the corner left a strip at the right and bottom edges: a
    920 x 614 photo at ``-w 500`` gave windows 500 x 114 and 420 x 114 (and at ``-w 300`` 300 x 14),
    where a person can hardly draw, and which ``--order uncertainty`` picked first, their few pixels
    being all edge. The same counts of rows and columns now give 460 x 307 windows.

    Parameters
    ----------
    shape : (int, int)
        Image (rows, columns).
    size : int
        Largest window side, pixels.

    Returns
    -------
    list of Window
    """
    h, w = shape
    nr, nc = max(1, -(-h // size)), max(1, -(-w // size))
    rows = [(i * h) // nr for i in range(nr + 1)]
    cols = [(j * w) // nc for j in range(nc + 1)]
    return [Window(rows[i], rows[i + 1], cols[j], cols[j + 1]) for i in range(nr) for j in range(nc)]


def auto_scale(shape, budget_px: float) -> float:
    """The largest scale in (0, 1] at which an image of ``shape`` has at most ``budget_px`` pixels."""
    n = float(shape[0]) * float(shape[1])
    return 1.0 if n <= budget_px else float(np.sqrt(budget_px / n))
