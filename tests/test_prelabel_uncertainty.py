"""U, N and ``--order uncertainty`` with pre-labels (``--init``, ``--model``, a collection's).

Found by qa23: until the person had drawn strokes of two classes, U said "scribble two classes first" and the
walk went in row order, though the pre-labels being corrected hold every class. The quick model now learns
from the pre-labels as weak labels beside the strokes (the strokes win where they are drawn), as the labelling
itself does, so before any stroke the map shows where the pre-labels disagree with how the image looks.

Headless, as in test_qa13.py: the OpenCV window calls are recorded; drawing, session and quick model are real.
"""
import cv2
import numpy as np

from conftest import make_scene, scene_scribbles
from label_tools.annotate_uncertainty import NO_MODEL, QuickUncertainty
from label_tools.io import ArraySource
from test_qa13 import _annotator


def _wrong_prelabels(mask):
    """The mask as pre-labels, with the class-0 part of its left quarter given class 1 (the region to fix)."""
    pre = mask.astype(np.uint8)
    left = np.zeros(mask.shape, bool)
    left[:, : mask.shape[1] // 4] = True
    wrong = left & (mask == 0)
    pre[wrong] = 1
    return pre, wrong


def _small(a, shape):
    h, w = shape
    return cv2.resize(np.ascontiguousarray(a.astype(np.uint8)), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def test_the_quick_map_from_prelabels_alone_points_at_the_wrong_ones():
    img, mask = make_scene(120, 160)
    q = QuickUncertainty(ArraySource(img), 3, sigmas=(1, 2, 4))
    none = np.zeros(mask.shape, np.uint8)
    assert q.map(none) is None  # no strokes, no pre-labels: no model
    pre, wrong = _wrong_prelabels(mask)
    assert wrong.sum() > 500
    u = q.map(none, prelabels=pre)
    assert u is not None and u.shape == q.shape
    w = _small(wrong, q.shape)
    assert u[w].mean() > 3 * u[~w].mean(), (u[w].mean(), u[~w].mean())


def test_prelabels_of_one_class_need_a_stroke_of_another():
    img, mask = make_scene(120, 160)
    q = QuickUncertainty(ArraySource(img), 3, sigmas=(1, 2))
    one = np.full(mask.shape, 255, np.uint8)
    one[mask == 0] = 0
    none = np.zeros(mask.shape, np.uint8)
    assert q.map(none, prelabels=one) is None
    strokes = scene_scribbles(mask)
    strokes[strokes == 1] = 0  # strokes of the other two classes only
    assert q.map(strokes, prelabels=one) is not None


def test_strokes_win_over_the_prelabels_where_they_are_drawn():
    """A stroke over the wrongly pre-labelled region, of its true class: that region becomes sure."""
    img, mask = make_scene(120, 160)
    q = QuickUncertainty(ArraySource(img), 3, sigmas=(1, 2, 4))
    pre, wrong = _wrong_prelabels(mask)
    none = np.zeros(mask.shape, np.uint8)
    before = q.map(none, prelabels=pre)
    strokes = none.copy()
    rows, cols = np.nonzero(wrong)
    r = int(np.median(rows))
    line = wrong[r]
    strokes[r - 1:r + 2][:, line] = 1  # class 0, drawn along one row of the region
    after = q.map(strokes, prelabels=pre)
    w = _small(wrong, q.shape)
    assert after[w].mean() < before[w].mean(), (before[w].mean(), after[w].mean())


def test_u_shows_the_map_of_prelabels_before_any_stroke(tmp_path):
    img, mask = make_scene(240, 330)
    src = ArraySource(img)
    ann = _annotator(tmp_path, src, side=170)
    ann.quick = QuickUncertainty(src, 3, sigmas=(1, 2))
    ann.prelabels = _wrong_prelabels(mask)[0]
    ann.on_key(ord("u"))
    assert ann.show_uncertainty and ann._has_map
    assert NO_MODEL not in ann._mode()
    ann.prelabels = None  # the same annotator without pre-labels: nothing to show yet
    ann.on_key(ord("u"))
    ann.on_key(ord("u"))
    assert ann.show_uncertainty and not ann._has_map and NO_MODEL in ann._mode()
