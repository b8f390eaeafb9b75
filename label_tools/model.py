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
    """

    classifier: object
    classes: Classes
    settings: pipeline.Settings
    n_bands: int
    X: np.ndarray
    y: np.ndarray
    chosen: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    _cache: dict | None = field(default=None, repr=False, compare=False)
    counts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1]) if self.X.ndim == 2 and self.X.shape[0] else 0

    @classmethod
    def fit(cls, image, scribbles, *, classes: Classes, settings: pipeline.Settings = pipeline.Settings(),
            classifier=None, base: "Model | None" = None, progress=None) -> "Model":
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

        Returns
        -------
        Model
        """
        src = image if isinstance(image, ImageSource) else ArraySource(image)
        n_bands = _feature_bands(src)
        extra = None
        if base is not None:
            base.check_source(src)
            if len(base.classes) != len(classes):
                raise InputError(f"the model has {len(base.classes)} classes ({', '.join(base.classes.names)}) "
                                 f"but {len(classes)} were given ({', '.join(classes.names)})")
            settings = base.settings
            extra = (base.X, base.y)
        tr = pipeline.train(src, scribbles, n_classes=len(classes), settings=settings, classifier=classifier,
                            class_names=classes.names, progress=progress, extra=extra)
        info = dict(base.info) if base is not None else {}
        info.setdefault("images", [])
        info["images"] = list(info["images"]) + [getattr(src, "path", "<array>")]
        info["timings"] = tr.timings
        return cls(tr.classifier, classes, settings, n_bands, tr.X, tr.y,
                   chosen=dict(tr.chosen or (base.chosen if base is not None else {})), info=info, _cache=tr.cache,
                   counts=tr.counts)

    def check_source(self, src: ImageSource):
        """Raise InputError unless ``src`` has the band count the model was fitted on."""
        n = _feature_bands(src)
        if n != self.n_bands:
            raise InputError(f"image {getattr(src, 'path', '<array>')!r} has {n} feature band{'s' if n != 1 else ''} "
                             f"but the model was fitted on {self.n_bands}; use an image with the same bands "
                             "(or --feature-bands)")

    def effective_settings(self) -> pipeline.Settings:
        """``settings`` with the per-image choices (``chosen``) applied."""
        known = {k: v for k, v in self.chosen.items() if k in pipeline.Settings.__dataclass_fields__}
        return replace(self.settings, **known) if known else self.settings

    def predict(self, image, *, progress=None, on_probs=None) -> pipeline.Result:
        """Dense labels for ``image``.

        Parameters
        ----------
        image : ImageSource or ndarray, shape (H, W) or (H, W, C)
        progress : callable(stage, done, total), optional
        on_probs : callable(window, probs, labels), optional
            Full-resolution probabilities tile by tile (:func:`label_tools.pipeline.upsample_labels`).

        Returns
        -------
        pipeline.Result
        """
        src = image if isinstance(image, ImageSource) else ArraySource(image)
        self.check_source(src)
        cache, self._cache = self._cache, None  # features cached from fitting serve one prediction only
        r = pipeline.predict(src, self.classifier, n_classes=self.n_classes, settings=self.effective_settings(),
                             progress=progress, cache=cache, on_probs=on_probs)
        if self.counts is not None and cache is not None:
            r.samples = self.counts
        r.chosen = dict(self.chosen)
        return r


def _feature_bands(src) -> int:
    return int(getattr(src, "feature_count", src.count))
