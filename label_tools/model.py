"""A fitted labelling model: the classifier plus everything that shapes its features and output.

``Model.fit`` trains on one image's scribbles (optionally on top of an earlier model's samples),
``Model.predict`` labels any image with the same band layout. Everything a new image needs to be
labelled the same way travels with the object: feature settings (sigmas, bands, grid), CRF
settings, class names and colours, the training samples (bounded per class, so the model can be
refitted with more), and per-image choices made while fitting (``chosen``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import pipeline
from .classes import Classes
from .errors import InputError
from .io import ArraySource, ImageSource


@dataclass
class Model:
    """A fitted scribble model.

    Attributes
    ----------
    classifier : fitted estimator
        ``predict_proba`` on float32 features of shape (N, F).
    classes : Classes
        Class names and colours; class id ``i`` is ``classes.names[i]``.
    settings : pipeline.Settings
        Feature, grid and CRF settings used for fitting and applied when predicting.
    n_bands : int
        Number of feature bands the model expects in an input image.
    X : ndarray of float32, shape (N, F)
        The training samples (at most ``settings.max_samples_per_class`` per class per image).
    y : ndarray of int64, shape (N,)
        0-based class ids of ``X``.
    chosen : dict
        Settings chosen per image while fitting (e.g. a CRF weight chosen from held-out strokes).
    info : dict
        Free-form provenance (training images, versions).
    stretch : dict or None
        ``{"dtype": str, "lo": float32 (n_bands,), "hi": float32 (n_bands,)}``: how the first training
        image's feature bands were scaled to [0, 1]; applied to images of the same dtype (see
        :meth:`apply_stretch`).
    band_names : tuple of str
        Names of the feature bands of the training image (for messages).
    """

    classifier: object
    classes: Classes
    settings: pipeline.Settings
    n_bands: int
    X: np.ndarray
    y: np.ndarray
    chosen: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    stretch: dict | None = None
    band_names: tuple = ()
    _cache: dict | None = field(default=None, repr=False, compare=False)
    counts: np.ndarray | None = field(default=None, repr=False, compare=False)
    strokes: object = field(default=None, repr=False, compare=False)  # holdout.Strokes of the last fit (not saved)
    fitted_image: object = field(default=None, repr=False, compare=False)  # see fitted_on (not saved)

    def save(self, path: str):
        """Write the model to ``path`` (a skops archive that loads without running code)."""
        from .modelfile import save_model

        save_model(self, path)

    @staticmethod
    def load(path: str) -> "Model":
        """Read a model written by :meth:`save`; types outside a trusted list are refused unloaded."""
        from .modelfile import load_model

        return load_model(path)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1]) if self.X.ndim == 2 and self.X.shape[0] else 0

    @classmethod
    def fit(cls, image, scribbles, *, classes: Classes, settings: pipeline.Settings = pipeline.Settings(),
            classifier=None, base: "Model | None" = None, progress=None, weak_base: bool = False) -> "Model":
        """Fit on one image's scribbles, on top of ``base``'s samples if given.

        Parameters
        ----------
        image : ImageSource or ndarray, shape (H, W) or (H, W, C)
        scribbles : ndarray of uint8, shape (H, W)
            0 = unlabelled, k = class k-1.
        classes : Classes
        settings : pipeline.Settings
        classifier : estimator, optional
            Unfitted classifier; default :func:`label_tools.unary.default_classifier`.
        base : Model, optional
            An earlier model: its samples are kept and this image's are added.
        progress : callable(stage, done, total), optional
        weak_base : bool
            ``base`` was fitted on pre-labels (weak labels, ``--init``): the strokes also drop the
            weak samples they contradict away from them (:func:`drop_weak_conflicts`).

        Returns
        -------
        Model
        """
        src = image if isinstance(image, ImageSource) else ArraySource(image)
        n_bands = _feature_bands(src)
        extra = None
        if base is not None:
            base.check_source(src)
            base.check_classes(classes)
            settings = base.settings

            def extra(X, y):  # the new scribbles win where they disagree with the model's samples
                X_old, y_old = (drop_weak_conflicts if weak_base else drop_conflicts)(base.X, base.y, X, y)
                return cap_carried(X_old, y_old, y, len(classes), settings)
        try:
            tr = pipeline.train(src, scribbles, n_classes=len(classes), settings=settings, classifier=classifier,
                                class_names=classes.names, progress=progress, extra=extra)
        except InputError as e:
            lost = _lost_on_grid(src, scribbles, settings, classes) if str(e).startswith("scribbles cover") else None
            if lost is None:
                raise
            raise lost from None
        # the shares the forest sees on an image the person scribbled on (a refit without strokes of its
        # own keeps the earlier image's: this one was labelled as a carried model labels it)
        own = tr.counts is None or int(np.sum(tr.counts)) > 0
        shares = class_shares(tr.classifier, tr.cache, len(classes)) if own or base is None else \
            base.chosen.get("class_shares")
        if shares is not None:
            tr.chosen["class_shares"] = shares
        info = dict(base.info) if base is not None else {}
        info.setdefault("images", [])
        info["images"] = list(info["images"]) + [getattr(src, "path", "<array>")]
        info["timings"] = tr.timings
        stretch = base.stretch if base is not None else _stretch_of(src)
        band_names = base.band_names if base is not None else tuple(getattr(src, "band_names", ()) or ())
        return cls(tr.classifier, classes, settings, n_bands, tr.X, tr.y,
                   chosen=dict(tr.chosen or (base.chosen if base is not None else {})), info=info, _cache=tr.cache,
                   counts=tr.counts, stretch=stretch, band_names=band_names,
                   strokes=getattr(tr, "strokes", None), fitted_image=_image_key(image, tr.counts))

    def check_classes(self, classes: Classes):
        """Raise InputError unless ``classes`` has the model's class names, in its order."""
        if tuple(classes.names) != tuple(self.classes.names):
            raise InputError(f"the model's classes are {', '.join(self.classes.names)} ({len(self.classes)}) but "
                             f"the labels given are {', '.join(classes.names)} ({len(classes)}); give the model's "
                             "labels file, in the same order, or leave out --labels")

    def check_colors(self, colors, path: str):
        """Raise InputError unless ``colors`` (uint8 RGB, shape (K, 3), read from the colours file ``path``)
        are the model's class colours, in its order: the model's are the ones used (for the outputs and to
        read scribbles painted in colour), so other colours would be said to be used and silently not be."""
        mine = np.asarray(self.classes.colors, np.uint8).reshape(-1, 3)
        got = np.asarray(colors, np.uint8).reshape(-1, 3)
        if got.shape == mine.shape and (got == mine).all():
            return
        hexes = lambda a: ", ".join("#%02x%02x%02x" % tuple(int(v) for v in c) for c in a)  # noqa: E731
        raise InputError(f"--colors {path!r} gives {hexes(got)} but the model's classes "
                         f"({', '.join(self.classes.names)}) have the colours {hexes(mine)}; give the model's "
                         "colours file, in the same order, or leave out --colors (the model's colours are used)")

    def apply_stretch(self, src: ImageSource) -> bool:
        """Scale ``src``'s feature bands as the training image's were, when both have the same dtype.

        Not the default (see :meth:`predict`'s ``stretch``). Returns True when applied.
        """
        if self.stretch is None or str(getattr(src, "dtype", "")) != self.stretch["dtype"]:
            return False
        n = self.n_bands
        lo, hi = np.asarray(src._lo, np.float32).copy(), np.asarray(src._hi, np.float32).copy()
        if len(lo) < n or len(self.stretch["lo"]) != n:
            return False
        lo[:n], hi[:n] = self.stretch["lo"], self.stretch["hi"]
        src._lo, src._hi = lo, hi  # the source's own scaling attributes (io.ImageSource.read)
        return True

    def check_source(self, src: ImageSource):
        """Raise InputError unless ``src`` has the band count the model was fitted on, and its named
        bands (GeoTIFF band descriptions) are not the model's in another order."""
        n = _feature_bands(src)
        if n != self.n_bands:
            raise InputError(f"image {getattr(src, 'path', '<array>')!r} has {n} feature band{'s' if n != 1 else ''} "
                             f"but the model was fitted on {self.n_bands}; use an image with the same bands "
                             "(or --feature-bands)")
        reordered = _reordered_bands(self.band_names, src, n)
        if reordered is not None:
            mine = tuple(getattr(src, "band_names", ()) or ())[:n]
            shown = _shown_bands(self, src, n)
            raise InputError(f"image {getattr(src, 'path', '<array>')!r} has the model's bands in another order "
                             f"({', '.join(mine)}; the model was fitted on {', '.join(self.band_names)}): give "
                             f"--feature-bands {','.join(map(str, reordered))}"
                             + (f" --bands {','.join(map(str, shown))}" if shown else "")
                             + " to use them in the model's order")

    def effective_settings(self, stretch: str = "image") -> pipeline.Settings:
        """``settings`` with the per-image choices (``chosen``) applied.

        With ``stretch="model"`` the feature bands are also stretched by the training image's
        percentiles (``chosen["training_band_stats"]``) instead of each image's own.
        """
        known = {k: v for k, v in self.chosen.items() if k in pipeline.Settings.__dataclass_fields__}
        settings = replace(self.settings, **known) if known else self.settings
        stats = self.chosen.get("training_band_stats")
        if stretch == "model" and settings.standardise and stats is not None:
            settings = replace(settings, band_stats=tuple(tuple(float(v) for v in part) for part in stats))
        return settings

    def samples(self):
        """(X, y): the training samples a carried prediction adapts from (``Settings.adapt``), or None."""
        return None if self.X is None or self.y is None or not len(self.y) else (self.X, self.y)

    def carry_settings(self, settings: pipeline.Settings, image, src=None, *, carried: bool | None = None):
        """``settings`` for labelling ``image``: marked ``applied`` (with the training image's class
        shares, ``chosen["class_shares"]``) unless ``image`` is the one the model was fitted on
        (:func:`fitted_on`) or ``carried`` says otherwise. See :meth:`predict`."""
        if not (carried if carried is not None else not fitted_on(self, image, src)):
            return settings
        shares = self.chosen.get("class_shares")
        return replace(settings, applied=True, carry_shares=tuple(shares) if shares else None)

    def predict(self, image, *, progress=None, on_probs=None, settings: pipeline.Settings | None = None,
                upsample: bool = True, stretch: str = "image", carried: bool | None = None) -> pipeline.Result:
        """Dense labels for ``image``.

        Parameters
        ----------
        image : ImageSource or ndarray, shape (H, W) or (H, W, C)
        progress : callable(stage, done, total), optional
        on_probs : callable(window, probs, labels), optional
            Full-resolution probabilities tile by tile (:func:`label_tools.upsample.upsample_labels`).
        settings : pipeline.Settings, optional
            Replaces :meth:`effective_settings` for this prediction (its sigmas must be the model's).
        upsample : bool
            False: stop at the grid probabilities (``labels`` None), see :func:`label_tools.pipeline.predict`.
        stretch : {"image", "model"}
            How the bands are scaled: "image" = by the image's own robust percentiles, as every
            single run scales it (the default); "model" = as the training image was (a raster's or
            non-8-bit array's :attr:`stretch` for images of the same dtype, and the feature
            stretch of ``Settings.standardise`` for all). Per image is the default by measurement:
            on the Sentinel-2 pair (one area, two dates) a model from one date scored mean IoU
            0.380 on the other with each image's own stretch and 0.352 with the training image's,
            on H&E tiles 0.288 against 0.128, because the percentiles absorb differences of
            radiometry and stain (benchmarks/collections.py). The training
            stretch stays in the model (and its file) for data whose absolute values matter.
        carried : bool or None
            True: the image is not the one the model was just fitted on, so the forest's
            probabilities are moved towards the image's own class shares before the CRF
            (``Settings.applied``, :func:`label_tools.refine.carry`; also with ``settings`` given).
            None (default): True unless ``image`` is the one the model was fitted on, with
            strokes of its own (:func:`fitted_on`). A model from the first H&E tile scores mean IoU
            0.271 -> 0.385 on the other four (three scribble seeds), other collections move by
            -0.004..+0.010 (docs/benchmarks.md, Collections).

        Returns
        -------
        pipeline.Result
        """
        src = image if isinstance(image, ImageSource) else ArraySource(image)
        self.check_source(src)
        if stretch == "model" and self._cache is None:  # a new image: scale it as the training image was
            self.apply_stretch(src)
        elif stretch not in ("image", "model"):
            raise ValueError(f"stretch: expected 'image' or 'model', got {stretch!r}")
        cache, self._cache = self._cache, None  # features cached from fitting serve one prediction only
        settings = self.effective_settings(stretch) if settings is None else settings
        settings = self.carry_settings(settings, image, src, carried=carried)
        r = pipeline.predict(src, self.classifier, n_classes=self.n_classes, settings=settings,
                             progress=progress, cache=cache, on_probs=on_probs, upsample=upsample,
                             samples=self.samples())
        if self.counts is not None and cache is not None:
            r.samples = self.counts
        r.chosen = dict(self.chosen)
        return r


#: :func:`class_shares` asks the forest about at most this many pixels of the training image.
SHARE_PIXELS = 20_000


def class_shares(classifier, cache, n_classes: int, *, max_pixels: int = SHARE_PIXELS):
    """The class shares a freshly fitted forest sees on its training image.

    The mean of its probabilities over a regular subsample of the model grid's pixels whose
    features :func:`label_tools.pipeline.train` kept (``Trained.cache``: the scribbled tiles, i.e.
    the whole grid of an image up to a few MP); no-data pixels left out. A carried model moves
    its probabilities on other images to these shares (:func:`label_tools.refine.carry`).

    Parameters
    ----------
    classifier : fitted estimator
    cache : dict or None
        ``Trained.cache``.
    n_classes : int
    max_pixels : int

    Returns
    -------
    list of K floats (rounded to 4 digits, summing to about 1), or None when no features were kept.
    """
    from . import unary

    if not isinstance(cache, dict) or not cache.get("tiles") or "layout" not in cache:
        return None
    _, shape, grid_tiles = cache["layout"]
    grid = cache["grid"]
    total = sum(int(np.prod(f.shape[1:])) for f in cache["tiles"].values())  # tiles kept plane by plane (F, h, w)
    step = max(1, int(np.ceil(np.sqrt(total / float(max_pixels)))))
    rows = []
    for i, f in sorted(cache["tiles"].items()):
        outer = pipeline.grow(grid_tiles[i].inner, pipeline.SPARSE_STEP, shape)
        sub = f[:, ::step, ::step]
        valid = grid.valid(outer)
        sub = sub.reshape(len(sub), -1) if valid is None else sub[:, np.asarray(valid, bool)[::step, ::step]]
        rows.append(np.ascontiguousarray(sub.T))
    X = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    if len(X) == 0:
        return None
    p = unary.predict_proba(classifier, X[None], n_classes)[:, 0]
    m = p.astype(np.float64).mean(axis=1)
    return [round(float(v), 4) for v in m / m.sum()]


def _image_key(image, counts):
    """What :func:`fitted_on` recognises the fitted image by: weak references to the object given to
    :meth:`Model.fit` (an array or an ImageSource) and its file path; None when that image had no
    strokes of its own (a refit that only accepted a carried model's labels)."""
    import weakref

    if counts is not None and int(np.sum(counts)) == 0:
        return None
    try:
        ref = weakref.ref(image)
    except TypeError:
        ref = None
    path = getattr(image, "path", None)
    return {"ref": ref, "path": path if isinstance(path, str) and path != "<array>" else None}


def fitted_on(model, image, src=None) -> bool:
    """True when ``image`` is the one ``model`` was fitted on, with strokes of its own.

    The same object given to :meth:`Model.fit` (an array, or an ImageSource), or a source of the
    same file. Such an image is labelled as a single scribble run labels it; any other image is
    labelled as a carried model does (:func:`label_tools.refine.carry`).

    Parameters
    ----------
    model : Model
    image : ndarray or ImageSource
        As given to :meth:`Model.predict`.
    src : ImageSource, optional
        ``image`` wrapped as a source.
    """
    key = model.fitted_image
    if not key:
        return False
    ref = key["ref"]() if key["ref"] is not None else None
    if ref is not None and (ref is image or ref is src):
        return True
    path = getattr(src if src is not None else image, "path", None)
    return key["path"] is not None and path == key["path"]


def _feature_bands(src) -> int:
    return int(getattr(src, "feature_count", src.count))


def _stretch_of(src) -> dict | None:
    lo, hi = getattr(src, "_lo", None), getattr(src, "_hi", None)
    if lo is None or hi is None:
        return None
    n = _feature_bands(src)
    return {"dtype": str(src.dtype), "lo": np.asarray(lo[:n], np.float32), "hi": np.asarray(hi[:n], np.float32)}


#: Samples a model carries per class, as a multiple of one image's largest share (``max_samples / K``).
CARRIED_IMAGES = 2


def cap_carried(X_old, y_old, y_new, n_classes: int, settings, seed: int = 0):
    """The earlier samples, thinned so that old + new stay within a bound per class.

    A collection refits after every image; without a bound the samples (and the fitting time) grow
    with the number of images. Per class, old and new together keep at most ``CARRIED_IMAGES x
    max_samples / K`` (at least one image's ``max_samples_per_class``); the new image's samples are
    all kept and the earlier ones drawn uniformly (seeded), so each refit halves, roughly, the share
    of the oldest images: recent images weigh more, none vanishes at once.

    Parameters
    ----------
    X_old : ndarray of float32, shape (M, F)
    y_old : ndarray of int64, shape (M,)
    y_new : ndarray of int64, shape (N,)
        Classes of this image's samples.
    n_classes : int
    settings : label_tools.pipeline.Settings

    Returns
    -------
    X : ndarray of float32, shape (M', F)
    y : ndarray of int64, shape (M',)
    """
    cap = max(int(settings.max_samples_per_class),
              CARRIED_IMAGES * int(settings.max_samples) // max(n_classes, 1))
    new = np.bincount(np.asarray(y_new, np.int64), minlength=n_classes)
    rng = np.random.default_rng(seed)
    keep = []
    for k in range(n_classes):
        idx = np.flatnonzero(y_old == k)
        room = max(cap - int(new[k]), 0)
        if len(idx) > room:
            idx = np.sort(rng.choice(idx, room, replace=False))
        keep.append(idx)
    keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    if len(keep) == len(y_old):
        return X_old, y_old
    return X_old[keep], y_old[keep]


JUDGE_GROUPS = 8  # k-means groups per pre-labelled class at most (drop_weak_conflicts)
JUDGE_MIN_GROUP = 50  # weak samples per group at least
JUDGE_SHARE = 0.25  # share of a class's stroke samples nearest to a group of another class that claims it


def drop_weak_conflicts(X_old, y_old, X_new, y_new, *, seed: int = 0):
    """Weak samples (pre-labels) minus those the strokes contradict, near them or not.

    :func:`drop_conflicts` drops the weak samples next to a stroke of another class in feature
    space, but a stroke is thin: when the pre-labels put a whole region in the wrong class (a
    network's beach read as water), most of that region's weak samples lie beyond the stroke's
    reach, outnumber it and win the refit. So each pre-labelled class's weak samples are grouped
    (k-means, :data:`JUDGE_GROUPS` groups at most, features standardised over all weak samples) and
    a group goes whole when strokes of another class are nearer to its centre than to any centre of
    their own class's groups: the person said that kind of pixel is something else. Groups of the
    stroked class itself, and groups no stroke is nearest to, stay.

    Parameters
    ----------
    X_old : ndarray of float32, shape (M, F)
        Weak samples.
    y_old : ndarray of int64, shape (M,)
    X_new : ndarray of float32, shape (N, F)
        The strokes' samples.
    y_new : ndarray of int64, shape (N,)
    seed : int

    Returns
    -------
    X : ndarray of float32, shape (M', F)
    y : ndarray of int64, shape (M',)
    """
    X_old, y_old = drop_conflicts(X_old, y_old, X_new, y_new)
    X_new, y_new = np.asarray(X_new, np.float32), np.asarray(y_new, np.int64)
    if len(y_new) < 2 or len(y_old) == 0:
        return X_old, y_old
    from scipy.cluster.vq import kmeans2

    sd = X_old.std(axis=0)
    sd[sd <= 0] = 1
    a = X_old / sd
    centres, owner, member = [], [], np.full(len(y_old), -1)
    rng = np.random.default_rng(seed)
    for k in np.unique(y_old):
        idx = np.flatnonzero(y_old == k)
        g = int(min(JUDGE_GROUPS, max(1, len(idx) // JUDGE_MIN_GROUP)))
        fit = idx if len(idx) <= 5000 else rng.choice(idx, 5000, replace=False)
        c, _ = kmeans2(a[fit].astype(np.float64), g, minit="++", seed=seed)
        d = ((a[idx, None, :] - c[None].astype(np.float32)) ** 2).sum(-1)
        member[idx] = len(centres) + d.argmin(1)
        centres.extend(c)
        owner.extend([int(k)] * len(c))
    centres, owner = np.asarray(centres, np.float32), np.asarray(owner)
    b = X_new / sd
    d = ((b[:, None, :] - centres[None]) ** 2).sum(-1)
    near = d.argmin(1)
    claimed = []
    for k in np.unique(y_new):  # a group goes when a quarter of a class's stroke samples are nearest to it
        votes = np.bincount(near[(y_new == k) & (owner[near] != k)], minlength=len(centres))
        claimed.extend(np.flatnonzero(votes >= JUDGE_SHARE * np.count_nonzero(y_new == k)))
    drop = np.isin(member, claimed)
    return X_old[~drop], y_old[~drop]


def drop_conflicts(X_old, y_old, X_new, y_new):
    """The earlier samples minus those the new ones contradict.

    An earlier sample is dropped when its nearest new sample (features standardised by the new
    samples' spread) has another class and lies no farther than new samples of one class typically
    lie from each other (the 90th percentile of their nearest-neighbour distances): there the user
    has just said something else, so the new scribbles decide.

    Parameters
    ----------
    X_old : ndarray of float32, shape (M, F)
    y_old : ndarray of int64, shape (M,)
    X_new : ndarray of float32, shape (N, F)
    y_new : ndarray of int64, shape (N,)

    Returns
    -------
    X : ndarray of float32, shape (M', F)
    y : ndarray of int64, shape (M',)
    """
    X_old, y_old = np.asarray(X_old, np.float32), np.asarray(y_old, np.int64)
    if len(X_new) < 2 or len(X_old) == 0:
        return X_old, y_old
    from scipy.spatial import cKDTree

    sd = X_new.std(axis=0)
    sd[sd <= 0] = 1
    a, b = X_new / sd, X_old / sd
    tree = cKDTree(a)
    d_new, i_new = tree.query(a, k=2)
    same = y_new[i_new[:, 1]] == y_new
    radius = np.percentile(d_new[same, 1], 90) if same.any() else 0.0
    d, i = tree.query(b, k=1)
    drop = (d <= radius) & (y_new[i] != y_old)
    return X_old[~drop], y_old[~drop]


def _lost_on_grid(src, scribbles, settings, classes):
    """An InputError when ``--grid-scale`` (given explicitly) makes scribbled classes vanish on the model
    grid (each grid pixel takes the class scribbled most inside it), else None.

    Without it a coarse grid on a small image said "scribbles cover 1 class" of scribbles that cover
    two: the person was told to scribble what they had scribbled."""
    from .scribbles import downscale, value_counts
    from .tiling import scaled_shape

    if settings.scale is None or not isinstance(scribbles, np.ndarray) or scribbles.shape != tuple(src.shape):
        return None
    n = len(classes)
    full = value_counts(scribbles)[1:n + 1] > 0
    shape = scaled_shape(tuple(src.shape), settings.scale)
    small = value_counts(downscale(scribbles, shape, n))[1:n + 1] > 0
    lost = [classes.names[k] for k in np.nonzero(full[:len(small)] & ~small[:len(full)])[0]]
    if full.sum() < 2 or not lost:
        return None
    return InputError(f"--grid-scale {settings.scale:g}: on the {shape[1]} x {shape[0]} px model grid the strokes of "
                      f"{', '.join(lost)} vanish under other classes' (each grid pixel takes the class scribbled "
                      "most inside it); give a larger --grid-scale (or leave it out for auto)")


def _shown_bands(model, src, n: int):
    """1-based band numbers of ``src`` holding the bands the model was shown (``--bands``, which also
    feed the CRF's colour kernel) by their names, when ``src`` shows other ones; else None.

    Reordering the feature bands alone leaves the display on the model's band numbers, which in a
    reordered stack are other bands: the CRF then smooths along other edges."""
    info = getattr(model, "info", None) or {}
    names = tuple(model.band_names or ())
    fb = list(info.get("feature_bands") or range(1, n + 1))
    db = list(info.get("bands") or fb[:3 if n >= 3 else 1])
    if len(names) != n or len(fb) != n or any(b not in fb for b in db):
        return None
    want = [names[fb.index(b)] for b in db]
    mine = tuple(getattr(src, "band_names", ()) or ())[:n]
    numbers = list(getattr(src, "_bands", range(1, n + 1)))[:n]
    display = tuple(getattr(src, "_display", ()) or ())
    if any(w not in mine for w in want):
        return None
    if all(d < n for d in display) and [mine[d] for d in display] == want:
        return None  # already shown as the model was
    return [numbers[mine.index(w)] for w in want]


def _reordered_bands(model_names, src, n: int):
    """1-based band numbers of ``src`` that put its feature bands in the model's order, when its band
    names are the model's (all given, none twice) in another order; else None.

    A Sentinel-2 stack exported B4,B3,B2,B8 by one tool and B2,B3,B4,B8 by another has the same band
    count: the model was applied to it silently, each feature read from the wrong band."""
    import re

    names = tuple(getattr(src, "band_names", ()) or ())[:n]
    model_names = tuple(model_names or ())
    if len(names) != n or len(model_names) != n or names == model_names:
        return None
    plain = re.compile(r"band \d+")  # a band without a description
    if any(not b or plain.fullmatch(b) for b in names + model_names):
        return None
    if len(set(names)) != n or set(names) != set(model_names):
        return None
    numbers = list(getattr(src, "_bands", range(1, n + 1)))[:n]
    return [numbers[names.index(b)] for b in model_names]
