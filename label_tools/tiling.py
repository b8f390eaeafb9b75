"""Windows over an image: processing tiles with overlap, annotation windows, scale factors."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile of a grid.

    ``inner`` is the part this tile owns (tiles' inner windows cover the image exactly once);
    ``outer`` is ``inner`` grown by the overlap and clipped to the image. Both are
    ``(row0, row1, col0, col1)``, half-open, in the same pixel grid.
    """

    inner: tuple
    outer: tuple

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
            outer = (max(r0 - overlap, 0), min(r1 + overlap, h), max(c0 - overlap, 0), min(c1 + overlap, w))
            out.append(Tile((r0, r1, c0, c1), outer))
    return out


def _spans(n, tile):
    k = max(1, math.ceil(n / tile))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def grow(window, margin: int, shape):
    """``window`` (row0, row1, col0, col1) grown by ``margin`` on each side, clipped to ``shape``."""
    r0, r1, c0, c1 = window
    return (max(r0 - margin, 0), min(r1 + margin, shape[0]), max(c0 - margin, 0), min(c1 + margin, shape[1]))


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
    return (int(math.floor(r0 / sr)), min(int(math.ceil(r1 / sr)), shape_full[0]),
            int(math.floor(c0 / sc)), min(int(math.ceil(c1 / sc)), shape_full[1]))


def annotation_windows(shape, size: int):
    """The w x w windows the annotator walks, row by row; the last row/column is shorter.

    Returns
    -------
    list of tuple (row0, row1, col0, col1)
    """
    h, w = shape
    return [(r, min(r + size, h), c, min(c + size, w)) for r in range(0, h, size) for c in range(0, w, size)]


def auto_scale(shape, budget_px: float) -> float:
    """The largest scale in (0, 1] at which an image of ``shape`` has at most ``budget_px`` pixels."""
    n = float(shape[0]) * float(shape[1])
    return 1.0 if n <= budget_px else float(np.sqrt(budget_px / n))
