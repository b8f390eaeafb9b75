"""The annotator's preview (P key): quick labels of one window from the scribbles so far.

Compute only, no window: :mod:`label_tools.annotate` draws what it returns. A small forest on a
coarse preview grid of the window, within the preview's time budget (``benchmarks/bench.py preview``).
"""
from __future__ import annotations

import math

import numpy as np

from . import features as feat_mod
from . import unary
from .io import ImageSource
from .pipeline import _Grid
from .scribbles import downscale
from .tiling import scaled_shape

NODATA = 255


class Preview:
    """Quick labels for one annotation window from the scribbles so far (the annotator's P key).

    Trades accuracy for latency: the window is viewed at most ``max_pixels`` large, the forest is
    small and there is no CRF. Samples of windows left earlier are remembered, so a window with
    one class scribbled still gets a two-class preview.

    Parameters
    ----------
    src : ImageSource
    n_classes : int
    sigmas : sequence of float
    max_pixels : int
        Pixel budget of the preview grid per window.
    classifier_factory : callable, optional
        Returns an unfitted classifier; default a 24-tree random forest.
    """

    def __init__(self, src: ImageSource, n_classes: int, *, sigmas=feat_mod.DEFAULT_SIGMAS, max_pixels=65_536,
                 classifier_factory=None, max_samples_per_class=2000):
        self.src, self.n_classes = src, n_classes
        self.sigmas, self.max_pixels = tuple(sigmas), max_pixels
        self.factory = classifier_factory or (lambda: unary.default_classifier(n_estimators=24, max_depth=12,
                                                                               max_samples=0.5))
        self.max_samples = max_samples_per_class
        self._memory = {}  # window -> (X, y) samples of a window left earlier

    def _grid_window(self, window):
        r0, r1, c0, c1 = window
        p = min(1.0, math.sqrt(self.max_pixels / float((r1 - r0) * (c1 - c0))))
        shape = scaled_shape(self.src.shape, p)
        # only the window (and its halo) is read: a grid kept whole read the whole image on every
        # preview, 0.6-1.4 s per stroke on a 24 MP photo, where the window alone takes 0.1 s
        grid = _Grid(self.src, shape, self.sigmas, cache=False)
        sr, sc = grid.rc
        gw = (int(round(r0 * sr)), max(int(round(r1 * sr)), int(round(r0 * sr)) + 1),
              int(round(c0 * sc)), max(int(round(c1 * sc)), int(round(c0 * sc)) + 1))
        return grid, gw

    def _samples(self, scribbles, window, feats=None):
        grid, gw = self._grid_window(window)
        r0, r1, c0, c1 = window
        small = downscale(scribbles[r0:r1, c0:c1], (gw[1] - gw[0], gw[3] - gw[2]), self.n_classes)
        if feats is None:
            feats = grid.features(gw)
        v = grid.valid(gw)
        m = small > 0 if v is None else (small > 0) & v
        buf = unary.SampleBuffer(self.n_classes, max_per_class=self.max_samples)
        if m.any():
            buf.add(feats[m], small[m].astype(np.int64) - 1)
        return buf.arrays(), feats, grid, gw

    def remember(self, scribbles, window):
        """Keep the samples of ``window`` (call when leaving it)."""
        r0, r1, c0, c1 = window
        if not scribbles[r0:r1, c0:c1].any():
            self._memory.pop(tuple(window), None)
            return
        (X, y), *_ = self._samples(scribbles, window)
        self._memory[tuple(window)] = (X, y)

    def remember_windows(self, scribbles, windows, current):
        """Keep the samples of every window of ``windows`` holding strokes, but ``current`` and those kept already.

        The strokes of an earlier session (a resumed autosave) were never left in this one: without
        this the preview of a resumed walk said "scribble two classes first" over windows of two classes.
        """
        for w in windows:
            if tuple(w) != tuple(current) and tuple(w) not in self._memory:
                r0, r1, c0, c1 = w
                if scribbles[r0:r1, c0:c1].any():
                    self.remember(scribbles, w)

    def labels(self, scribbles, window):
        """Preview labels of ``window``.

        Parameters
        ----------
        scribbles : ndarray of uint8, shape (H, W)
        window : tuple (row0, row1, col0, col1)

        Returns
        -------
        ndarray of uint8, shape (h, w) on the preview grid (resize to display), 255 = no-data;
        or None when fewer than two classes have been scribbled so far.
        """
        (X, y), feats, grid, gw = self._samples(scribbles, window)
        xs, ys = [X] if len(X) else [], [y] if len(y) else []
        for key, (mx, my) in self._memory.items():
            if key != tuple(window) and len(mx):
                xs.append(mx)
                ys.append(my)
        if not ys or len(np.unique(np.concatenate(ys))) < 2:
            return None
        clf = self.factory()
        clf.fit(np.concatenate(xs), np.concatenate(ys))
        lab = unary.predict_proba(clf, feats, self.n_classes).argmax(axis=0).astype(np.uint8)
        v = grid.valid(gw)
        if v is not None:
            lab[~v] = NODATA
        return lab
