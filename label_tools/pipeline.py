"""segment(image, scribbles) -> dense labels. Compute only: no file I/O, no window.

Steps, each on tiles so memory follows the tile size, not the image size:

1. the image is viewed on the model grid, scale ``s`` (``Settings.scale``; auto: at least
   ``Settings.auto_pixels`` pixels, finer when the scribbles show classes close together
   (:func:`structure_scale`), at most ``Settings.max_grid_pixels``);
2. features of the tiles holding scribbles (with a halo) -> training samples (bounded per class)
   -> classifier; those features are kept for step 3 within ``Settings.cache_mb``;
3. per tile: features -> class probabilities (the unary); when the grid is capped coarser than
   the scribbled structures need and the CRF is off, they are corrected to the image's own class
   shares (:mod:`label_tools.refine`);
4. dense CRF at ``Settings.crf_scale`` of the full image (auto: the model grid shrunk to about
   ``Settings.crf_pixels``), on tiles grown by an overlap,
   then the blend ``(1 - w) log p_forest + w log q_crf`` with ``w = Settings.crf_weight``;
5. if ``s < 1``: per full-resolution tile, a fast guided filter fitted on the grid and applied to
   the full-resolution brightness puts label edges on image edges; then argmax
   (:mod:`label_tools.upsample`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import crf as crf_mod
from . import features as feat_mod
from . import adapt as adapt_mod
from . import holdout, unary
from . import refine as refine_mod
from .errors import InputError, OptionError
from .io import ArraySource, ImageSource
from .regions import CRFView
from .scribbles import downscale, value_counts
from .tiling import auto_scale, grow, scaled_shape, tiles, to_full
from .upsample import fine_radius, upsample_labels, upsample_radius

NODATA = 255
CRF_TILE = 1536  # grid pixels per CRF tile side (about 0.25 GB of CRF state at 5 classes)
CRF_OVERLAP = 96
CRF_MIN_FACTOR = 0.25
GRID_CACHE_MB = 96  # read the whole model grid at once when it takes at most this
DEFAULT_CRF_WEIGHT = 0.6  # when none was chosen from held-out strokes
HOLDOUT_PIXELS = 0.3e6
SPARSE_STEP = 2  # forest asked on a lattice of this spacing, exactly only near edges (unary.predict_proba_sparse)  # model-grid pixels around held-out strokes predicted per fold, at most


@dataclass(frozen=True)
class Settings:
    """How :func:`segment` works (``scale``, ``sigmas``, ``crf_weight`` and ``crf.n_iter`` are CLI options).

    Attributes
    ----------
    scale : float or None
        Model-grid scale in (0, 1] (the grid the features and the forest run on); None = auto.
        CLI ``--grid-scale``.
    crf_scale : float or None
        Scale in (0, 1] of the grid the dense CRF runs on, relative to the full-resolution image
        (at most the model grid's, at least ``crf_pixels`` pixels; CLI ``-s/--scale``, as in
        dl_tools); None = auto (the model grid shrunk to about ``crf_pixels``, by at most 4).
    sigmas : tuple of float
        Feature scales in full-resolution pixels at ``scale`` 1 (they shrink with the grid).
    crf_weight : float or None
        Weight in [0, 1] of the CRF in the final blend; 0 = forest only, 1 = CRF only. None = chosen
        per image from held-out strokes (:mod:`label_tools.holdout`) when ``holdout`` is on, else
        ``DEFAULT_CRF_WEIGHT``.
    crf : CRFParams
        CRF kernels in full-resolution pixels.
    auto_pixels : float
        The model grid has at least this many pixels (or the image's) when ``scale`` is None.
    structure_scale : float or None
        Grid scale the scribbled structures need (:func:`structure_scale`; chosen by :func:`train`
        when ``scale`` is None and travels with a model in ``chosen``).
    max_grid_pixels : float
        The auto model grid has at most this many pixels (time and memory).
    crf_pixels : float
        Pixel budget of the auto CRF grid (the model grid shrunk by at most 4), and the fewest
        pixels a ``crf_scale`` grid gets.
    max_samples_per_class : int
        Training samples kept per class on a grid of ``auto_pixels`` (or smaller); on a larger grid
        (a large image holds more scribbled pixels) the cap grows in proportion to the grid's
        pixels, up to ``max_samples`` over all classes (see :func:`samples_per_class`).
    max_samples : int
    tile_mb : float
        Memory budget of one tile's features, MB.
    cache_mb : float
        Memory for features kept from training to prediction (else computed again), MB: the
        features of every scribbled tile when they take at most this, else tiles up to half of it
        (:func:`cache_budget`).
    seed : int
    holdout : bool
        Hold out strokes while training to choose the CRF weight (when ``crf_weight`` is None) and
        to measure each stroke's agreement (``Trained.strokes``).
    standardise : bool
        Stretch each feature band by the image's own robust percentiles before the features
        (:func:`label_tools.features.band_stats`): a model then carries over to images under other
        light or stain; the labels of the image fitted on do not change (models saved before this
        setting existed load with it off).
    band_stats : tuple or None
        (low, range) per feature band to stretch with instead of the image's own: a model applied
        with its training image's scaling (``Model.predict(stretch="model")``).
    applied : bool
        The classifier was fitted on another image (a carried model; ``Model.predict`` sets it):
        its probabilities are shifted towards ``carry_shares`` before the CRF
        (:func:`label_tools.refine.carry`).
    carry_shares : tuple of float or None
        With ``applied``: the class shares the forest saw on its training image
        (``Model.chosen["class_shares"]``); None = this image's mean forest probabilities.
    adapt : float
        With ``applied`` and the model's samples: per class, the share of the pixels the carried
        forest gives that class (its surest) that may become pseudo-labels for a refit on this image
        (:mod:`label_tools.adapt`); 0 = the carried forest as it is.
    """

    scale: float | None = None
    crf_scale: float | None = None
    sigmas: tuple = feat_mod.DEFAULT_SIGMAS
    crf_weight: float | None = None
    crf: crf_mod.CRFParams = crf_mod.CRFParams()
    auto_pixels: float = 0.4e6
    structure_scale: float | None = None
    max_grid_pixels: float = 6e6
    crf_pixels: float = 0.1e6
    max_samples_per_class: int = unary.MAX_SAMPLES_PER_CLASS
    max_samples: int = 24000
    tile_mb: float = 96.0
    cache_mb: float = 256.0
    seed: int = 0
    holdout: bool = True
    standardise: bool = True
    band_stats: tuple | None = None
    applied: bool = False
    carry_shares: tuple | None = None
    adapt: float = adapt_mod.TOP

    def validate(self):
        if self.scale is not None and not (0 < self.scale <= 1):
            raise OptionError(f"--grid-scale: expected a number in (0, 1], got {self.scale}")
        if self.crf_scale is not None and not (0 < self.crf_scale <= 1):
            raise OptionError(f"-s/--scale: expected a number in (0, 1], got {self.crf_scale}")
        if self.crf_weight is not None and not 0 <= self.crf_weight <= 1:
            raise OptionError(f"--crf-weight: expected a number in [0, 1], got {self.crf_weight}")
        try:
            feat_mod.check_sigmas(self.sigmas)
        except ValueError as e:
            raise OptionError(f"--sigmas: {e}") from None
        if self.crf.n_iter < 0:
            raise OptionError(f"--crf-iter: expected 0 or more, got {self.crf.n_iter}")
        return self


@dataclass
class Result:
    """What :func:`segment` returns.

    Attributes
    ----------
    labels : ndarray of uint8, shape (H, W)
        Class id (0-based) per pixel; 255 = no-data.
    probs : ndarray of float32, shape (K, h, w)
        Class probabilities after the CRF blend, on the model grid (h, w) = scale * (H, W).
    crf_probs : ndarray of float32, shape (K, hc, wc), or None
        The CRF's marginals on its own grid (the model grid shrunk to about ``Settings.crf_pixels``);
        None when the CRF is off.
    scale : float
        The model-grid scale used.
    samples : ndarray of int64, shape (K,)
        Scribbled pixels per class on the processing grid (before sub-sampling).
    classifier : fitted estimator
    timings : dict of str -> float
        Seconds per step.
    display : ndarray of uint8, shape (h, w, 3), or None
        The image on the model grid, when it was read whole (reused for the figure).
    crf_scale : float or None
        Scale of the CRF grid relative to the full image; None when the CRF is off.
    chosen : dict
        Settings chosen for this image from its scribbles (e.g. ``{"structure_scale": 0.5,
        "crf_weight": 0.3}``), with the held-out evidence under ``"holdout"``.
    forest_probs : ndarray of float32, shape (K, h, w), or None
        The forest's probabilities on the model grid before the CRF blend (``probs`` itself when
        the CRF is off); used to calibrate the blend (:mod:`label_tools.uncertainty`).
    upsample_radius : int
        Guided-filter radius (grid pixels) of the full-resolution labels
        (:func:`label_tools.upsample.upsample_radius`); pass it to
        :func:`~label_tools.upsample.upsample_labels` / :func:`~label_tools.upsample.upsample_window`.
    upsample_fine : int
        Radius in full-resolution pixels of the second, full-resolution guided filter
        (:func:`label_tools.upsample.fine_radius`; 0 = none); pass it to
        :func:`~label_tools.upsample.upsample_labels` / :func:`~label_tools.upsample.upsample_window`
        with ``upsample_radius``.
    class_prior : dict or None
        When the forest's probabilities were corrected to the image's own class shares
        (:mod:`label_tools.refine`: a grid capped coarser than the scribbled structures, CRF off):
        ``{"training": [K floats], "image": [K floats], "iterations": n}``; for a carried model
        (``Settings.applied``, :func:`label_tools.refine.carry`) also ``"applied"`` (bool) and
        ``"kept"``; else None.
    """

    labels: np.ndarray
    probs: np.ndarray
    crf_probs: np.ndarray | None
    scale: float
    samples: np.ndarray
    classifier: object
    timings: dict = field(default_factory=dict)
    display: np.ndarray | None = None
    crf_scale: float | None = None
    chosen: dict = field(default_factory=dict)
    forest_probs: np.ndarray | None = None
    upsample_radius: int = 2
    class_prior: dict | None = None
    upsample_fine: int = 0
    crf_view: CRFView | None = field(default=None, repr=False)


def _tile_side(n_feat, margin, mb):
    side = int(math.sqrt(mb * 2**20 / (4.0 * max(n_feat, 1)))) - 2 * margin
    return int(min(max(side, 128), 2048))


class _Grid:
    """The model grid: features, colours and no-data mask of its windows, read from the source.

    When the grid is coarser than the image and small enough (``GRID_CACHE_MB``), the whole grid is
    read once, when first needed, and every window is cut from that: a large raster is then decoded
    once, not once per tile and again for the CRF (and a grid made only for its layout reads nothing).
    """

    def __init__(self, src: ImageSource, shape, sigmas, *, cache: bool = True, standardise: bool = False,
                 stats=None, strip_pixels: int | None = None):
        self.src, self.shape = src, tuple(shape)
        self.strip_pixels = strip_pixels
        self.standardise, self._stats = standardise, stats
        self.rc = (shape[0] / src.height, shape[1] / src.width)
        self.sigmas = tuple(max(0.3, s * min(self.rc)) for s in sigmas) if min(self.rc) < 1 else tuple(sigmas)
        self.halo = feat_mod.halo(self.sigmas) if self.sigmas else 0
        self._whole = cache and min(self.rc) < 1 and shape[0] * shape[1] * (src.count + 1) * 4 <= GRID_CACHE_MB * 2**20
        self._read = None

    @property
    def _cache(self):
        """(features, display RGB, valid or None) of the whole grid, read on first use; None if not kept whole."""
        if self._whole and self._read is None:
            H, W = self.src.height, self.src.width
            if self.strip_pixels and H * W > self.strip_pixels:
                self._read = self._read_strips()
            else:
                feat, rgb = self.src.read_both(out_shape=self.shape)
                self._read = (feat, rgb, self.src.read_valid(out_shape=self.shape) if self.src.has_nodata else None)
        return self._read

    def _read_strips(self):
        """The whole grid read in row strips of at most ``strip_pixels`` source pixels (a read on a thread beside
        the annotator's: each strip holds the source's lock alone). Each strip is averaged within itself, so a
        grid row may mix source rows a little differently from a whole read."""
        H, W = self.src.height, self.src.width
        h = self.shape[0]
        n = int(min(h, max(1, math.ceil(H * W / self.strip_pixels))))
        rows = np.linspace(0, h, n + 1).round().astype(int)
        parts = []
        for a, b in zip(rows[:-1], rows[1:]):
            if b <= a:
                continue
            win = (int(round(a * H / h)), int(round(b * H / h)), 0, W)
            feat, rgb = self.src.read_both(win, out_shape=(b - a, self.shape[1]))
            valid = self.src.read_valid(win, out_shape=(b - a, self.shape[1])) if self.src.has_nodata else None
            parts.append((feat, rgb, valid))
        feat, rgb = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        valid = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        return feat, rgb, valid

    def _full(self, window):
        return to_full(window, self.rc, (self.src.height, self.src.width))

    def shrunk(self, shape) -> "_Grid":
        """A coarser grid over the same image (for the CRF), cut from this one's read when cached."""
        import cv2

        g = _Grid(self.src, shape, (), cache=False)
        if self._cache is not None:
            _, rgb, valid = self._cache
            size = (shape[1], shape[0])
            g._read = (None, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                        None if valid is None else
                        cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0)
        return g

    @property
    def cached_display(self):
        """uint8 RGB of the whole grid if it was read whole, else None."""
        return None if self._cache is None else self._cache[1]

    def features(self, window, *, planes: bool = False):
        """float32 (h, w, F) features of ``window`` (grid coordinates), computed with a halo;
        (F, h, w) with ``planes`` (see :func:`features.multiscale_features`)."""
        region = grow(window, self.halo, self.shape)
        shape = (region[1] - region[0], region[3] - region[2])
        if self._cache is not None and self._cache[0] is not None:
            img = self._cache[0][region[0]:region[1], region[2]:region[3]]
        else:
            img = self.src.read(self._full(region), out_shape=shape)
        if self.standardise:
            img = feat_mod.standardise(img, self.stats)
        f = feat_mod.multiscale_features(img, sigmas=self.sigmas, planes=planes)
        r0, c0 = window[0] - region[0], window[2] - region[2]
        rows, cols = slice(r0, r0 + window[1] - window[0]), slice(c0, c0 + window[3] - window[2])
        return f[:, rows, cols] if planes else f[rows, cols]

    @property
    def stats(self):
        """(low, range) per feature band used to standardise (:func:`features.band_stats`): the
        image's own, from the cached grid or a decimated read, unless given."""
        if self._stats is None:
            if self._cache is not None and self._cache[0] is not None:
                sample, valid = self._cache[0], self._cache[2]
            else:
                f = min(1.0, math.sqrt(feat_mod.STATS_PIXELS / float(self.src.height * self.src.width)))
                small = scaled_shape((self.src.height, self.src.width), f)
                sample = self.src.read(out_shape=small, resampling="nearest")
                valid = self.src.read_valid(out_shape=small) if self.src.has_nodata else None
            step = max(1, int(math.sqrt(sample.shape[0] * sample.shape[1] / feat_mod.STATS_PIXELS)))
            self._stats = feat_mod.band_stats(sample[::step, ::step], None if valid is None else valid[::step, ::step])
        return self._stats

    def display(self, window):
        if self._cache is not None:
            return np.ascontiguousarray(self._cache[1][window[0]:window[1], window[2]:window[3]])
        return self.src.read_display(self._full(window), out_shape=(window[1] - window[0], window[3] - window[2]))

    def valid(self, window):
        if not self.src.has_nodata:
            return None
        if self._cache is not None:
            return self._cache[2][window[0]:window[1], window[2]:window[3]]
        return self.src.read_valid(self._full(window), out_shape=(window[1] - window[0], window[3] - window[2]))


def _blend(p, q, w):
    if w <= 0:
        return p
    if w >= 1:
        return q
    logp = (1 - w) * np.log(np.maximum(p, crf_mod.EPS)) + w * np.log(np.maximum(q, crf_mod.EPS))
    logp -= logp.max(axis=0, keepdims=True)
    out = np.exp(logp)
    out /= out.sum(axis=0, keepdims=True)
    return out.astype(np.float32)


def crf_factor(grid_shape, grid_scale, *, crf_scale=None, crf_pixels=Settings.crf_pixels):
    """Shrink factor in (0, 1] from the model grid to the CRF grid.

    ``crf_scale`` (relative to the full image) wins when given, capped at the model grid and with at
    least ``crf_pixels`` pixels (``-s 0.2`` on a 0.25 MP image would leave a 100 x 100 CRF grid, too
    coarse for nuclei: -0.02 mIoU on H&E; a small image's CRF is fast anyway); else the model grid
    is shrunk (by at most ``1 / CRF_MIN_FACTOR``) to about ``crf_pixels`` pixels.
    """
    h, w = grid_shape
    floor = math.sqrt(crf_pixels / float(h * w))  # the CRF grid keeps at least crf_pixels
    if crf_scale is not None:
        return float(min(1.0, max(crf_scale / grid_scale, floor)))
    return float(min(1.0, max(CRF_MIN_FACTOR, floor)))


def _crf_tiles(grid, unary_probs, params, weight, progress, *, factor, tile=CRF_TILE):
    """Blend of forest and CRF probabilities on the forest grid.

    The CRF runs on tiles grown by twice its reach, on the forest grid shrunk by ``factor``
    (:func:`crf_factor`): it only smooths, and its cost grows faster than linearly with the grid.
    Its marginals are interpolated back to the forest grid before the blend.
    """
    import cv2

    k, h, w = unary_probs.shape
    f = factor
    if f < 1:
        ch, cw = scaled_shape((h, w), f)
        small = np.stack([cv2.resize(unary_probs[j], (cw, ch), interpolation=cv2.INTER_AREA) for j in range(k)])
        sub = grid.shrunk((ch, cw))
        params = params.scaled(ch / h)
    else:
        small, sub = unary_probs, grid
    overlap = int(min(math.ceil(2 * params.bilateral_sxy), CRF_OVERLAP))
    crf_tiles = tiles(small.shape[1:], tile, overlap)
    q = np.empty_like(small)
    image = np.empty(small.shape[1:] + (3,), np.uint8)  # kept for the uncertainty map (regions.CRFView)
    valid = None
    for i, t in enumerate(crf_tiles):
        r0, r1, c0, c1 = t.outer
        rgb, ok = sub.display(t.outer), sub.valid(t.outer)
        qt = crf_mod.refine(small[:, r0:r1, c0:c1], rgb, params=params, valid=ok)
        inner = t.inner.toslices()
        q[(slice(None),) + inner] = qt[(slice(None),) + t.crop]
        image[inner] = rgb[t.crop]
        if ok is not None:
            valid = np.ones(small.shape[1:], bool) if valid is None else valid
            valid[inner] = ok[t.crop]
        progress("crf", i + 1, len(crf_tiles))
    up = np.stack([cv2.resize(q[j], (w, h), interpolation=cv2.INTER_LINEAR) for j in range(k)]) if f < 1 else q
    return _blend(unary_probs, up, weight), q, CRFView(image, valid, params, float(weight))


@dataclass
class Trained:
    """What :func:`train` returns: the fitted classifier and the samples it was fitted on.

    Attributes
    ----------
    classifier : fitted estimator
    X : ndarray of float32, shape (N, F)
        Training features (at most :func:`samples_per_class` per class).
    y : ndarray of int64, shape (N,)
        0-based class ids of ``X``.
    counts : ndarray of int64, shape (K,)
        Scribbled pixels per class on the model grid (before sub-sampling).
    scale : float
        Model-grid scale of the training image.
    timings : dict of str -> float
    chosen : dict
        Settings chosen from the scribbles, e.g. ``{"structure_scale": 0.5, "crf_weight": 0.4,
        "holdout": {...}}`` (the evidence: scores per candidate weight, strokes, folds); keys that
        are ``Settings`` fields are applied when predicting.
    strokes : holdout.Strokes or None
        The strokes and the held-out agreement of each; None when ``Settings.holdout`` is off.
    """

    classifier: object
    X: np.ndarray
    y: np.ndarray
    counts: np.ndarray
    scale: float
    timings: dict = field(default_factory=dict)
    cache: dict | None = field(default=None, repr=False)  # (grid shape, tile side) and features of scribbled tiles
    chosen: dict = field(default_factory=dict)
    strokes: "holdout.Strokes | None" = field(default=None, repr=False)


def _check_scribbles(src, scribbles, n_classes, class_names):
    H, W = src.shape
    scribbles = np.asarray(scribbles)
    if scribbles.shape != (H, W):
        raise InputError(f"scribbles: expected shape {(H, W)} (the image's), got {scribbles.shape}")
    counts = value_counts(scribbles)
    if counts[n_classes + 1:].any():
        raise InputError(f"scribbles hold value {int(np.nonzero(counts)[0].max())} but there are only {n_classes} classes")
    if (counts[1:n_classes + 1] > 0).sum() >= 2:
        flat = src.blank_value() if hasattr(src, "blank_value") else None
        if flat is not None:
            value = ", ".join(f"{v:g}" for v in flat)
            raise InputError(
                f"image {src.path!r} is blank: every pixel holds the same value ({value}), so nothing tells the "
                "scribbled classes apart; check the file (an export that failed, an empty tile, the wrong band)")
    return scribbles, counts


GAP_GRID_PX = 8.0  # grid pixels wanted between the closest strokes of different classes


def structure_scale(scribbles, n_classes: int, *, gap_px: float = GAP_GRID_PX, probe_pixels: float = 4e6) -> float:
    """Grid scale that keeps the closest strokes of different classes ``gap_px`` grid pixels apart.

    Per stroke (8-connected component of one class), the distance to the nearest stroke pixel of
    another class; the lower quartile of these over all strokes is the size of the finest
    structures scribbled (a nucleus between background strokes, a membrane between cells). Where
    classes are scribbled close together the grid must be fine; where they lie far apart a coarse
    grid keeps the same detail.

    Parameters
    ----------
    scribbles : ndarray of uint8, shape (H, W)
    n_classes : int
    gap_px : float
    probe_pixels : float
        The scribbles are measured on a grid of at most this many pixels (thin strokes kept).

    Returns
    -------
    float in (0, 1]; 1.0 when fewer than two classes are scribbled.
    """
    import cv2

    H, W = scribbles.shape
    f = min(1.0, math.sqrt(probe_pixels / float(H * W)))
    small = downscale(scribbles, scaled_shape((H, W), f), n_classes) if f < 1 else np.asarray(scribbles)
    present = [k for k in range(1, n_classes + 1) if (small == k).any()]
    if len(present) < 2:
        return 1.0

    def nearest_other(k):  # per stroke of class k: distance to the nearest stroke pixel of another class
        other = (small > 0) & (small != k)
        dist = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5)
        mine = (small == k).astype(np.uint8)
        n, lab = cv2.connectedComponents(mine, connectivity=8)
        m = np.full(n, np.inf, np.float32)
        np.minimum.at(m, lab[mine > 0], dist[mine > 0])
        return m[1:]

    from concurrent.futures import ThreadPoolExecutor

    from .threads import budget

    # classes side by side (OpenCV releases the GIL): 0.15 -> 0.09 s on a 4 MP image, same values
    with ThreadPoolExecutor(max(1, min(budget(), len(present)))) as pool:
        mins = list(pool.map(nearest_other, present))
    gap = float(np.percentile(np.concatenate(mins), 25)) / f
    return float(min(1.0, gap_px / max(gap, 1.0)))


def grid_scale(shape, settings) -> float:
    """The auto model-grid scale of an image of ``shape`` (H, W) under ``settings``.

    At least the scale that gives ``auto_pixels`` pixels, finer up to ``structure_scale``, never
    above ``max_grid_pixels``, never above 1.
    """
    s = auto_scale(shape, settings.auto_pixels)
    if settings.structure_scale is not None:
        s = max(s, min(1.0, settings.structure_scale))
    return float(min(s, auto_scale(shape, max(settings.max_grid_pixels, settings.auto_pixels))))


def samples_per_class(grid_shape, n_classes: int, settings) -> int:
    """Training samples kept per class on a model grid of ``grid_shape``.

    ``max_samples_per_class`` up to a grid of ``auto_pixels``; beyond, in proportion to the grid's
    pixels (a 12 MP image scribbled at 1 % holds 30 times the pixels of a 0.4 MP one, and the
    forest gains from them: +0.016 mIoU on mirror-tiled EM membranes at 12 MP), at most
    ``max_samples / n_classes`` (fitting time), never below ``max_samples_per_class``.
    """
    base = int(settings.max_samples_per_class)
    grow = base * grid_shape[0] * grid_shape[1] / float(settings.auto_pixels)
    return int(max(base, min(grow, settings.max_samples // max(n_classes, 1))))


def _tile_features(grid, inner):
    """Features of a tile's ``inner`` window grown by ``SPARSE_STEP`` (context for the sparse
    prediction, so tiles predict exactly as the whole grid would) -> (features float32 (F, h, w),
    plane by plane, outer window)."""
    outer = grow(inner, SPARSE_STEP, grid.shape)
    return grid.features(outer, planes=True), outer


def _inner(a, inner, outer, axis=0):
    """Cut ``inner`` out of an array covering ``outer`` (rows/columns start at ``axis``)."""
    sl = (slice(inner[0] - outer[0], inner[1] - outer[0]), slice(inner[2] - outer[2], inner[3] - outer[2]))
    return a[(slice(None),) * axis + sl]


def _layout(src, settings):
    """Model grid, its tiles and tile side for ``src`` under ``settings``."""
    H, W = src.shape
    scale = settings.scale if settings.scale is not None else grid_scale((H, W), settings)
    shape = scaled_shape((H, W), scale)
    grid = _Grid(src, shape, settings.sigmas, standardise=settings.standardise, stats=settings.band_stats)
    n_feat = feat_mod.n_features(getattr(src, "feature_count", src.count), grid.sigmas)
    side = _tile_side(n_feat, grid.halo, settings.tile_mb)
    return scale, shape, grid, side, tiles(shape, side)


def cache_budget(grid, tile_windows, settings) -> int:
    """Bytes of features :func:`collect_samples` may keep for :func:`predict`.

    All of ``settings.cache_mb`` when the features of every tile in ``tile_windows`` (inner
    windows, with their context and halo) fit in it: nothing is then computed twice (a 4 MP photo:
    0.2-0.4 CPU s less). Otherwise half of it: keeping a share of the tiles saves only that share
    of the work, and a large grid's peak memory is already high.
    """
    n_feat = feat_mod.n_features(getattr(grid.src, "feature_count", grid.src.count), grid.sigmas)
    need = 0
    for inner in tile_windows:
        r0, r1, c0, c1 = grow(grow(inner, SPARSE_STEP, grid.shape), grid.halo, grid.shape)
        need += (r1 - r0) * (c1 - c0) * n_feat * 4
    full = settings.cache_mb * 2**20
    return int(full if need <= full else full / 2)


def _on_valid(small, grid, grid_tiles):
    """Grid scribbles without their pixels on no-data, which fitting ignores: a stroke there would
    still be held out, predicted and judged (a false 'mostly contradicted' warning, a held-out fold
    without samples). Validity is read only for tiles that hold scribbles.

    Returns
    -------
    ndarray of uint8, shape (h, w): ``small`` itself when nothing lies on no-data, else a copy with
    those pixels 0.
    """
    out = small
    for t in grid_tiles:
        r0, r1, c0, c1 = t.inner
        s = small[r0:r1, c0:c1]
        if not s.any():
            continue
        v = grid.valid(t.inner)
        if v is None:
            continue
        drop = (s > 0) & ~v
        if drop.any():
            out = small.copy() if out is small else out
            out[r0:r1, c0:c1][drop] = 0
    return out


def collect_samples(src, scribbles, *, n_classes: int, settings: Settings = Settings(), progress=None,
                    keep_cache: bool = False):
    """Features of the scribbled pixels, gathered tile by tile on the model grid.

    Parameters
    ----------
    src : ImageSource
    scribbles : ndarray of uint8, shape (H, W)
        0 = unlabelled, k = class k-1.
    n_classes : int
    settings : Settings
    keep_cache : bool
        Keep the features of scribbled tiles (within :func:`cache_budget`) for :func:`predict`.

    Returns
    -------
    X : ndarray of float32, shape (N, F)
    y : ndarray of int64, shape (N,)
    counts : ndarray of int64, shape (K,)
    scale : float
    cache : dict or None
    groups : ndarray of int64, shape (N,)
        Stroke id (1-based, see ``strokes``) of each sample.
    strokes : holdout.Strokes
    """
    progress = progress or (lambda stage, done, total: None)
    scale, shape, grid, side, grid_tiles = _layout(src, settings)
    small = _on_valid(downscale(scribbles, shape, n_classes), grid, grid_tiles)
    strokes = holdout.find_strokes(small, n_classes, src.shape, seed=settings.seed)
    buf = unary.SampleBuffer(n_classes, max_per_class=samples_per_class(shape, n_classes, settings), seed=settings.seed)
    cache, cached_bytes = {}, 0
    if keep_cache:
        room = cache_budget(grid, [t.inner for t in grid_tiles if small[t.inner[0]:t.inner[1], t.inner[2]:t.inner[3]].any()],
                            settings)
    for i, t in enumerate(grid_tiles):
        r0, r1, c0, c1 = t.inner
        s = small[r0:r1, c0:c1]
        if not s.any():
            progress("features", i + 1, len(grid_tiles))
            continue
        fo, outer = _tile_features(grid, t.inner)
        held = fo.base.nbytes if fo.base is not None else fo.nbytes  # a view of the tile with its halo
        if keep_cache and cached_bytes + held <= room:
            cache[i] = fo
            cached_bytes += held
        f = _inner(fo, t.inner, outer, axis=1)
        m = s > 0  # on data only (_on_valid)
        if m.any():
            buf.add(np.ascontiguousarray(f[:, m].T), s[m].astype(np.int64) - 1, strokes.ids[r0:r1, c0:c1][m])
        progress("features", i + 1, len(grid_tiles))
    X, y = buf.arrays()
    key = (id(src), shape, side)
    cache = {"key": key, "tiles": cache, "grid": grid, "layout": (scale, shape, grid_tiles)} if keep_cache else None
    return X, y, buf.counts.copy(), scale, cache, buf.groups(), strokes


def train(image, scribbles, *, n_classes: int, settings: Settings = Settings(), classifier=None, class_names=None,
          progress=None, extra=None, keep_cache: bool = True) -> Trained:
    """Fit the pixel classifier on the scribbled pixels of one image.

    Parameters
    ----------
    image : ImageSource or ndarray, shape (H, W) or (H, W, C)
    scribbles : ndarray of uint8, shape (H, W)
        0 = unlabelled, k = class k-1. Pixels outside the image's valid area are ignored.
    n_classes : int
    settings : Settings
    classifier : estimator, optional
        Unfitted scikit-learn style classifier; default :func:`label_tools.unary.default_classifier`.
    class_names : sequence of str, optional
        For error messages.
    progress : callable(stage, done, total), optional
    extra : tuple (X ndarray float32 (M, F), y ndarray int64 (M,)), or callable, optional
        Samples from earlier images (a saved model's), fitted together with this image's; a callable
        ``extra(X, y) -> (X_old, y_old)`` is given this image's samples first (to drop conflicting ones).
    keep_cache : bool
        Keep features of scribbled tiles for a following :func:`predict` on the same image.

    Returns
    -------
    Trained
    """
    settings = settings.validate()
    src = image if isinstance(image, ImageSource) else ArraySource(image)
    scribbles, counts = _check_scribbles(src, scribbles, n_classes, class_names)
    has_extra = extra is not None and (callable(extra) or len(extra[1]))
    if np.count_nonzero(counts[1:]) < 2 and not has_extra:  # checked again on valid pixels when fitting
        unary.fit(None, np.nonzero(counts[1:])[0], class_names=class_names)
    chosen = {}
    if settings.scale is None and settings.structure_scale is None:
        chosen["structure_scale"] = round(structure_scale(scribbles, n_classes), 4)
        settings = replace(settings, structure_scale=chosen["structure_scale"])
    t0 = time.perf_counter()
    X, y, n, scale, cache, groups, strokes = collect_samples(
        src, scribbles, n_classes=n_classes, settings=settings, progress=progress, keep_cache=True)
    if callable(extra):  # samples of earlier images, chosen knowing this image's (see Model.fit)
        extra = extra(X, y)
        has_extra = len(extra[1]) > 0
    if has_extra:
        X = np.concatenate([extra[0], X]) if len(X) else np.asarray(extra[0], np.float32)
        y = np.concatenate([extra[1], y]) if len(y) else np.asarray(extra[1], np.int64)
        groups = np.concatenate([np.zeros(len(extra[1]), np.int64), groups])
    timings = {"features": time.perf_counter() - t0}
    if settings.standardise:
        chosen["training_band_stats"] = [list(v) for v in cache["grid"].stats]

    def fit():
        t = time.perf_counter()
        c = unary.fit(X, y, classifier=classifier, class_names=class_names)
        timings["fit"] = time.perf_counter() - t
        return c

    from .threads import budget

    if settings.holdout and budget() > 1:
        # the forest is fitted on a thread once the held-out folds' small forests are (scikit-learn
        # fits running at once in two threads disturb the process-wide warning filters), beside
        # their predictions and CRFs: tree building releases the GIL, the fold CRFs hold it, so the
        # two fill both cores (4 MP photo: about 0.3 s less); results those of one after the other
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            fitting = []
            start = lambda: fitting.append(pool.submit(fit))  # noqa: E731
            t0 = time.perf_counter()
            try:
                held = _holdout(src, cache, X, y, groups, strokes, n_classes, settings, classifier, progress,
                                on_fitted=start)
            except BaseException:
                fitting[0].result() if fitting else fit()  # the fit's error (too few classes) first, as in order
                raise
            timings["holdout"] = time.perf_counter() - t0
            clf = fitting[0].result() if fitting else fit()
        chosen.update(held)
    else:
        clf = fit()
        if settings.holdout:
            t0 = time.perf_counter()
            chosen.update(_holdout(src, cache, X, y, groups, strokes, n_classes, settings, classifier, progress))
            timings["holdout"] = time.perf_counter() - t0
    return Trained(clf, X, y, n, scale, timings, cache if keep_cache else None, chosen,
                   strokes if settings.holdout else None)


def _holdout(src, cache, X, y, groups, strokes, n_classes, settings, classifier, progress, on_fitted=None):
    """Choose the CRF weight from held-out strokes and fill ``strokes.agreement`` / ``.predicted`` / ``.support``.

    For each fold, a small forest fitted without the fold's strokes predicts the tiles holding
    them (at most ``HOLDOUT_PIXELS`` grid pixels, seeded choice), the CRF refines that prediction
    per tile, and every candidate weight's blend is scored on the held-out pixels.

    ``on_fitted()``, if given, is called once the fold forests are fitted (not called when no
    fold can be held out).

    Returns
    -------
    dict: ``{"crf_weight": w, "holdout": {...}}`` (weight only when ``settings.crf_weight`` is None),
    or ``{}`` when no fold can be held out (a class with a single stroke, one class left).
    """
    import cv2

    folds = holdout.usable_folds(strokes, groups)
    if not folds:
        return {}
    scale, shape, grid_tiles = cache["layout"]
    grid, feats = cache["grid"], cache["tiles"]
    params = settings.crf.scaled(min(grid.rc))
    crf_on = params.n_iter > 0 and settings.crf_weight != 0
    if settings.crf_weight is not None:
        weights = (settings.crf_weight,)
    else:
        weights = holdout.WEIGHTS if crf_on else (0.0,)
    fold_px = np.concatenate([[-1], strokes.fold])[strokes.ids]  # fold of each grid pixel's stroke
    fold_px[~np.isin(fold_px, folds)] = -1
    rng = np.random.default_rng([settings.seed, len(strokes), int(strokes.pixels.sum())])
    cand = [i for i in rng.permutation(len(grid_tiles))
            if (fold_px[grid_tiles[i].inner[0]:grid_tiles[i].inner[1],
                        grid_tiles[i].inner[2]:grid_tiles[i].inner[3]] >= 0).any()]
    chosen_tiles, budget = [], HOLDOUT_PIXELS
    for i in cand:
        r0, r1, c0, c1 = grid_tiles[i].inner
        if chosen_tiles and (r1 - r0) * (c1 - c0) > budget:
            break
        chosen_tiles.append(i)
        budget -= (r1 - r0) * (c1 - c0)
    fold_of = np.concatenate([[-1], strokes.fold])[groups]
    clfs = {}
    sub = np.zeros(len(y), bool)  # at most holdout.FOLD_SAMPLES per class: the fold forests only compare settings
    for k in np.unique(y):
        idx = np.nonzero(y == k)[0]
        sub[idx if len(idx) <= holdout.FOLD_SAMPLES else rng.choice(idx, holdout.FOLD_SAMPLES, replace=False)] = True
    for f in folds:
        keep = (fold_of != f) & sub
        if classifier is None:
            c = unary.default_classifier(n_estimators=holdout.FOLD_TREES, max_depth=12,
                                         class_weight=unary.class_weights(y[keep]))
        else:
            from sklearn.base import clone

            c = clone(classifier)
        clfs[f] = c.fit(X[keep], y[keep])
    strokes.forests = clfs
    if on_fitted is not None:
        on_fitted()
    factor = crf_factor(shape, scale, crf_scale=settings.crf_scale, crf_pixels=settings.crf_pixels)
    runs = []  # (tile index, fold, the fold forest's probabilities of the tile (K, th, tw), held-out pixels)
    for n_done, i in enumerate(chosen_tiles):
        win = grid_tiles[i].inner
        r0, r1, c0, c1 = win
        fp = fold_px[r0:r1, c0:c1]
        fo, outer = (feats[i], grow(win, SPARSE_STEP, grid.shape)) if i in feats else _tile_features(grid, win)
        for f in folds:
            m = fp == f
            if m.any():
                p = unary.predict_proba_sparse(clfs[f], fo, n_classes, step=SPARSE_STEP, origin=(outer[0], outer[2]),
                                               planes=True)
                runs.append((i, f, _inner(p, win, outer, axis=1), m))
        progress and progress("holdout", n_done + 1, 2 * len(chosen_tiles))
    # the fold CRFs reach as far as the full prediction's will (crf_reach of their forests' labels)
    fold_params = replace(crf_reach(params, [p for _, _, p, _ in runs]), n_iter=min(params.n_iter, holdout.FOLD_CRF_ITER))
    sid, own, preds = [], [], {w: [] for w in weights}
    tile_crf = None  # (tile index, its CRF kernels, valid): the folds of one tile share its image
    for n_done, (i, f, p, m) in enumerate(runs):
        r0, r1, c0, c1 = win = grid_tiles[i].inner
        q = None
        if crf_on and any(w > 0 for w in weights):
            th, tw = r1 - r0, c1 - c0
            ch, cw = scaled_shape((th, tw), factor)
            small = np.stack([cv2.resize(p[j], (cw, ch), interpolation=cv2.INTER_AREA) for j in range(n_classes)])
            if tile_crf is None or tile_crf[0] != i:
                img = cv2.resize(grid.display(win), (cw, ch), interpolation=cv2.INTER_AREA)
                v = grid.valid(win)
                if v is not None:
                    v = cv2.resize(v.astype(np.uint8), (cw, ch), interpolation=cv2.INTER_NEAREST) > 0
                tile_crf = (i, crf_mod.Refiner(img, n_classes, params=fold_params.scaled(ch / th)), v)
            qs = tile_crf[1].refine(small, valid=tile_crf[2])
            q = np.stack([cv2.resize(qs[j], (tw, th), interpolation=cv2.INTER_LINEAR) for j in range(n_classes)])
        sid.append(strokes.ids[r0:r1, c0:c1][m])
        own.append(p[:, m][strokes.cls[sid[-1] - 1], np.arange(len(sid[-1]))])  # the fold forest's p(stroke class)
        for w in weights:
            b = p if w == 0 or q is None else _blend(p, q, w)
            preds[w].append(b[:, m].argmax(axis=0))
        progress and progress("holdout", len(chosen_tiles) + (n_done + 1) * len(chosen_tiles) // len(runs),
                              2 * len(chosen_tiles))
    if not sid:
        return {}
    sid = np.concatenate(sid)
    truth = strokes.cls[sid - 1]
    preds = {w: np.concatenate(v) for w, v in preds.items()}
    scores = {w: holdout.score(preds[w], truth, n_classes) for w in weights}
    n = len(strokes)
    seen = np.bincount(sid - 1, minlength=n)
    per_stroke = {w: (np.bincount(sid - 1, weights=(p == truth), minlength=n) / np.maximum(seen, 1))[seen > 0]
                  for w, p in preds.items()}
    w = holdout.choose_weight(scores, DEFAULT_CRF_WEIGHT if settings.crf_weight is None else settings.crf_weight,
                              per_stroke=per_stroke)
    pred = preds[w]
    hits = np.bincount(sid - 1, weights=(pred == truth), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        strokes.agreement = np.where(seen > 0, hits / np.maximum(seen, 1), np.nan).astype(np.float32)
    votes = np.zeros((n, n_classes), np.int64)
    np.add.at(votes, (sid - 1, pred), 1)
    strokes.predicted = np.where(seen > 0, votes.argmax(axis=1), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        strokes.support = np.where(seen > 0, np.bincount(sid - 1, weights=np.concatenate(own), minlength=n)
                                   / np.maximum(seen, 1), np.nan).astype(np.float32)
    info = {"scores": {f"{k:g}": round(float(v), 4) for k, v in scores.items()}, "folds": len(folds),
            "strokes": int((seen > 0).sum()), "pixels": int(len(sid))}
    out = {"holdout": info}
    if settings.crf_weight is None:
        out["crf_weight"] = float(w)
    return out


def predict(image, classifier, *, n_classes: int, settings: Settings = Settings(), progress=None,
            cache=None, on_probs=None, upsample: bool = True, samples=None) -> Result:
    """Dense labels of an image from a fitted classifier.

    Parameters
    ----------
    image : ImageSource or ndarray, shape (H, W) or (H, W, C)
    classifier : fitted estimator
        Fitted on features made with the same ``settings.sigmas`` and band count.
    n_classes : int
    settings : Settings
    progress : callable(stage, done, total), optional
    cache : dict, optional
        ``Trained.cache`` of a :func:`train` call on this same image.
    on_probs : callable(window, probs, labels), optional
        Receives the full-resolution class probabilities tile by tile (see :func:`label_tools.upsample.upsample_labels`),
        so they can be streamed to a file without holding K x H x W floats.
    upsample : bool
        False: stop at the grid probabilities (``Result.labels`` is None); the full-resolution labels
        are then made window by window with :func:`label_tools.upsample.upsample_window` (as :mod:`label_tools.blocks` does
        on a cluster), giving exactly what :func:`label_tools.upsample.upsample_labels` gives.
    samples : (X, y), optional
        The classifier's training samples (float32 (N, F), int64 (N,)). With ``settings.applied``
        and ``settings.adapt`` > 0 the forest is refitted on them plus pseudo-labels of this image
        before the CRF (:mod:`label_tools.adapt`); ``Result.classifier`` is then the refitted one.

    Returns
    -------
    Result
    """
    settings = settings.validate()
    if settings.crf_weight is None:
        settings = replace(settings, crf_weight=DEFAULT_CRF_WEIGHT)
    src = image if isinstance(image, ImageSource) else ArraySource(image)
    progress = progress or (lambda stage, done, total: None)
    timings = {}
    scale, shape, grid, side, grid_tiles = _layout(src, settings)
    feats = {}
    if cache is not None and cache.get("key") == (id(src), shape, side):
        feats = cache["tiles"]
        grid = cache["grid"]

    adapting = (settings.applied and settings.adapt > 0 and samples is not None and len(samples[1]) > 0
                and unary._is_forest(classifier))
    room = cache_budget(grid, [t.inner for t in grid_tiles], settings) if adapting else 0
    # every tile's features fit in the cache: pseudo-labels drawn from the whole grid, their features read
    # from the kept tiles; else from a random subsample of the grid whose features are kept as it passes
    whole = adapting and room >= settings.cache_mb * 2**20
    reservoir = adapt_mod.Reservoir(shape[0] * shape[1], seed=settings.seed) if adapting and not whole else None
    params = settings.crf.scaled(min(grid.rc))
    crf_on = settings.crf_weight > 0 and params.n_iter > 0

    def forest(clf, keep, stage="classify"):
        """The forest's grid probabilities, then the shift of a capped grid or a carried model."""
        probs = np.empty((n_classes, shape[0], shape[1]), np.float32)
        kept = 0
        for i, t in enumerate(grid_tiles):
            f, outer = (feats.pop(i), grow(t.inner, SPARSE_STEP, shape)) if i in feats else _tile_features(grid, t.inner)
            p = unary.predict_proba_sparse(clf, f, n_classes, step=SPARSE_STEP, origin=(outer[0], outer[2]),
                                           planes=True)
            probs[(slice(None),) + t.inner.toslices()] = _inner(p, t.inner, outer, axis=1)
            if keep:
                if reservoir is not None:
                    reservoir.add(f, t.inner, outer, grid.valid(t.inner))
                held = f.base.nbytes if f.base is not None else f.nbytes
                if whole or kept + held <= room:  # the adapted forest's pass reuses these features
                    feats[i] = f
                    kept += held
            del f
            progress(stage, i + 1, len(grid_tiles))
        class_prior = None
        t1 = time.perf_counter()
        # a grid capped coarser than the structures, no CRF: the forest's probabilities follow the image's class shares
        if refine_mod.applies(scale, settings.structure_scale, settings.crf_weight if crf_on else 0.0):
            probs, class_prior = refine_mod.correct(probs, clf, valid=grid.valid((0, shape[0], 0, shape[1])))
        elif settings.applied:  # a carried model: towards its training image's class shares (refine.carry)
            probs, class_prior = refine_mod.carry(probs, clf, target=settings.carry_shares,
                                                   valid=grid.valid((0, shape[0], 0, shape[1])))
        if class_prior is not None:
            timings["prior"] = timings.get("prior", 0.0) + time.perf_counter() - t1
        return probs, class_prior

    t0 = time.perf_counter()
    probs, class_prior = forest(classifier, adapting)
    if adapting:  # a carried model learns from the pixels it is surest of on this image (label_tools.adapt)
        X, y = samples
        counts = np.bincount(np.asarray(y, np.int64), minlength=n_classes)
        if whole:
            v = grid.valid((0, shape[0], 0, shape[1]))
            at = np.flatnonzero(v) if v is not None else np.arange(shape[0] * shape[1])
            rows, cols = np.divmod(at, shape[1])
            idx, yp = adapt_mod.pseudo_labels(probs.reshape(n_classes, -1)[:, at], counts, top=settings.adapt,
                                              seed=settings.seed)
            fx = adapt_mod.gather(feats, [(t.inner, grow(t.inner, SPARSE_STEP, shape)) for t in grid_tiles],
                                  rows[idx], cols[idx])
        else:
            rows, cols, fx = reservoir.arrays()
            reservoir = None
            idx, yp = adapt_mod.pseudo_labels(probs[:, rows, cols], counts, top=settings.adapt, seed=settings.seed)
            fx = fx[idx]
        if len(yp):
            classifier = adapt_mod.refit(classifier, X, y, fx, yp)
            del fx
            probs, class_prior = forest(classifier, False, "adapt")
        if class_prior is not None:
            class_prior["adapted"] = np.bincount(yp, minlength=n_classes).tolist()
    timings["predict"] = time.perf_counter() - t0

    # dense CRF on large overlapping tiles, blended with the forest
    t0 = time.perf_counter()
    crf_probs, crf_grid_scale, crf_view = None, None, None
    forest_probs = probs
    if crf_on:
        factor = crf_factor(shape, scale, crf_scale=settings.crf_scale, crf_pixels=settings.crf_pixels)
        forest_probs = probs
        params = crf_reach(params, [probs])
        probs, crf_probs, crf_view = _crf_tiles(grid, probs, params, settings.crf_weight, progress, factor=factor)
        crf_grid_scale = scale * crf_probs.shape[1] / shape[0]
    timings["crf"] = time.perf_counter() - t0

    # full-resolution labels
    labels = None
    radius = upsample_radius(scale, settings.structure_scale)
    fine = fine_radius(scale, settings.structure_scale)
    if upsample:
        t0 = time.perf_counter()
        labels = upsample_labels(src, probs, progress=progress, on_tile=on_probs, radius=radius, fine=fine)
        timings["upsample"] = time.perf_counter() - t0
    return Result(labels, probs, crf_probs, scale, np.zeros(n_classes, np.int64), classifier, timings,
                  grid.cached_display, crf_scale=crf_grid_scale, forest_probs=forest_probs, upsample_radius=radius,
                  class_prior=class_prior, upsample_fine=fine, crf_view=crf_view)


REACH_WIDTHS = 4.0  # the CRF's appearance kernel reaches at most this many region widths (crf_reach)


def region_width(labels) -> float:
    """Mean distance in pixels from a pixel of ``labels`` to the nearest class edge.

    Parameters
    ----------
    labels : ndarray of uint8, shape (h, w)

    Returns
    -------
    float; ``inf`` when ``labels`` holds a single class.
    """
    import cv2

    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:] |= lab[1:] != lab[:-1]
    if not edge.any():
        return float("inf")
    d = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # OpenCV's exact transform differs in the last bit of 1 distance in 10 with its thread count (a
    # Dask worker runs on 1 thread, the command line on every core), and that bit moved the CRF's
    # reach and the uncertainty map's width: a --workers run differed from the same run in-process.
    # The squared distances are whole numbers (off by < 0.01 here), so they are rounded to them and
    # the mean is taken of their float64 square roots, the same on any thread count.
    total = 0.0
    for r0 in range(0, d.shape[0], 1024):  # float64 rows a block at a time: memory stays small
        total += float(np.sqrt(np.rint(np.square(d[r0:r0 + 1024], dtype=np.float64))).sum())
    return total / d.size


def crf_reach(params, probs_list, *, widths: float | None = None):
    """``params`` with the appearance kernel no wider than ``widths`` times the regions' width.

    The dense CRF's appearance (bilateral) kernel pulls together pixels of similar colour within
    ``bilateral_sxy``. Where the forest's regions are narrow (cells between EM membranes, a few
    pixels from one edge to the next) a kernel of 60 px reaches across many regions and joins
    the dark insides of cells to the membranes; where regions are wide (a beach, a sky) the wide
    kernel is what cleans them. The width is measured on the forest's own labels, so it follows
    each image: :func:`region_width` (the mean distance to a class edge), pixel-weighted over
    the arrays given. Native yardstick, mean IoU: ISBI membranes 0.666 -> 0.692, Drosophila
    0.554 -> 0.584, every other dataset within -0.013..+0.006 (docs/benchmarks.md).

    Parameters
    ----------
    params : label_tools.crf.CRFParams
        Widths in pixels of the grid the probabilities are on.
    probs_list : list of ndarray of float32, shape (K, h, w)
        The forest's probabilities (one array per tile or per held-out fold).
    widths : float, optional
        Default ``REACH_WIDTHS``; 0 leaves ``params`` as they are.

    Returns
    -------
    label_tools.crf.CRFParams
    """
    widths = REACH_WIDTHS if widths is None else widths
    num = den = 0.0
    for p in probs_list:
        n = p.shape[1] * p.shape[2]
        num += region_width(p.argmax(axis=0).astype(np.uint8)) * n
        den += n
    if widths <= 0 or not den or not np.isfinite(num):
        return params
    return replace(params, bilateral_sxy=float(max(1.0, min(params.bilateral_sxy, widths * num / den))))


def segment(image, scribbles, *, n_classes: int, settings: Settings = Settings(), classifier=None,
            class_names=None, progress=None) -> Result:
    """Turn sparse scribbles into a dense label image: :func:`train` then :func:`predict`.

    Parameters
    ----------
    image : ImageSource or ndarray, shape (H, W) or (H, W, C)
        The image; arrays are wrapped in :class:`~label_tools.io.ArraySource`.
    scribbles : ndarray of uint8, shape (H, W)
        0 = unlabelled, k = class k-1. Pixels outside the image's valid area are ignored.
    n_classes : int
        K, the number of classes (scribble values 1..K).
    settings : Settings
    classifier : estimator, optional
        Unfitted scikit-learn style classifier; default :func:`label_tools.unary.default_classifier`.
    class_names : sequence of str, optional
        For error messages.
    progress : callable(stage: str, done: int, total: int), optional
        Called as work advances.

    Returns
    -------
    Result
    """
    src = image if isinstance(image, ImageSource) else ArraySource(image)
    tr = train(src, scribbles, n_classes=n_classes, settings=settings, classifier=classifier,
               class_names=class_names, progress=progress)
    known = {k: v for k, v in tr.chosen.items() if k in Settings.__dataclass_fields__}
    settings = replace(settings, **known)
    r = predict(src, tr.classifier, n_classes=n_classes, settings=settings, progress=progress, cache=tr.cache)
    r.samples = tr.counts
    r.timings = {**tr.timings, **r.timings}
    r.chosen = tr.chosen
    return r
