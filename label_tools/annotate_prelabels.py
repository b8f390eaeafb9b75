"""Pre-labels in the annotation window: the current model's labels, drawn under the person's strokes.

In a collection (``label-image FOLDER/``) every image from the second on opens with the labels the
model learned so far shown as a translucent colour overlay, so the person only strokes where they
are wrong. The drawing is a pure function (:func:`prelabel_overlay`); :func:`with_prelabels` adds it
to an annotator class (OpenCV or matplotlib) without touching its drawing code: the overlay is blended
into the window's base image, under the preview and the strokes. Key L toggles it.
"""
from __future__ import annotations

import numpy as np

NODATA = 255
ALPHA = 0.4


def prelabel_overlay(rgb, labels, colors, *, alpha: float = ALPHA, edges: bool = True) -> np.ndarray:
    """``rgb`` with ``labels`` blended over it in the class colours (a new array).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The window as displayed.
    labels : ndarray of uint8, shape (hl, wl)
        0-based class ids for the same window at any resolution (resized here, nearest); 255 = none
        (left as it is).
    colors : ndarray of uint8, shape (K, 3)
        RGB per class.
    alpha : float
        Opacity of the colour, in [0, 1].
    edges : bool
        Draw the boundaries between classes opaque, one pixel wide, so they show on any image.

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)
    """
    import cv2

    h, w = rgb.shape[:2]
    lab = np.ascontiguousarray(labels, np.uint8)
    if lab.shape != (h, w):
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    lut = np.zeros((256, 3), np.float32)
    lut[: len(colors)] = np.asarray(colors, np.float32)
    valid = lab != NODATA
    out = rgb.astype(np.float32)
    out[valid] = out[valid] * (1 - alpha) + lut[lab[valid]] * alpha
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if edges:
        grown = cv2.dilate(lab, np.ones((3, 3), np.uint8))
        shrunk = cv2.erode(lab, np.ones((3, 3), np.uint8))
        edge = (grown != shrunk) & valid
        out[edge] = lut[lab[edge]].astype(np.uint8)
    return out


def crop_labels(labels, window) -> np.ndarray:
    """The part of image-sized ``labels`` (uint8 (H, W)) under ``window`` (row0, row1, col0, col1)."""
    r0, r1, c0, c1 = window
    return np.ascontiguousarray(labels[r0:r1, c0:c1])


class PrelabelMixin:
    """Blend pre-labels into the annotator's base image of each window (see :func:`with_prelabels`).

    Attributes set by :func:`with_prelabels`: ``prelabels`` (uint8 (H, W), 0-based, 255 = none),
    ``show_prelabels`` (bool) and ``title_note`` (text added to the window title).
    """

    prelabels = None
    show_prelabels = True
    title_note = ""
    _pl_key = None
    _pl_img = None

    def _base_image(self):
        base = super()._base_image()
        if self.prelabels is None or not self.show_prelabels:
            return base
        key = (tuple(self.s.window), id(base))
        if self._pl_key != key:
            self._pl_img = prelabel_overlay(base, crop_labels(self.prelabels, self.s.window), self.classes.colors)
            self._pl_key = key
        return self._pl_img

    def _show(self, name, rgb, title=None):
        if title is not None:
            if self.title_note:
                title += f" | {self.title_note}"
            if self.prelabels is not None:
                title += " | pre-labels " + ("on (L)" if self.show_prelabels else "off (L)")
        super()._show(name, rgb, title)

    def key_prelabels(self, ch):  # L (annotate.KEYS)
        if self.prelabels is None:
            return None
        self.show_prelabels = not self.show_prelabels
        self.render_annotation()
        return None


_classes = {}


def with_prelabels(cls):
    """``cls`` (an annotator class) with :class:`PrelabelMixin` mixed in."""
    if cls not in _classes:
        _classes[cls] = type(cls.__name__ + "WithPrelabels", (PrelabelMixin, cls), {})
    return _classes[cls]
