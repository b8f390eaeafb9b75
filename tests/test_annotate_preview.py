"""The annotator's preview (P key) without a window: label_tools.annotate_preview.Preview."""
import numpy as np

from conftest import make_scene, scene_scribbles
from label_tools.annotate_preview import Preview
from label_tools.io import ArraySource


def test_preview_labels_a_window_from_its_scribbles_on_a_coarse_grid():
    img, mask = make_scene(240, 330)
    scr = scene_scribbles(mask)
    pv = Preview(ArraySource(img), 3, sigmas=(1, 2), max_pixels=4000)
    win = (0, 240, 0, 330)
    lab = pv.labels(scr, win)
    assert lab.dtype == np.uint8 and lab.size <= 4000 * 1.1  # the preview grid, not full resolution
    h, w = lab.shape
    assert abs(w / h - 330 / 240) < 0.1
    small = mask[((np.arange(h) + 0.5) * 240 / h).astype(int)][:, ((np.arange(w) + 0.5) * 330 / w).astype(int)]
    assert (lab == small).mean() > 0.9


def test_preview_needs_two_classes_and_remembers_windows_left():
    img, mask = make_scene(200, 300)
    scr = scene_scribbles(mask)
    left, right = (0, 200, 0, 150), (0, 200, 150, 300)
    only_right = np.where(np.arange(300)[None, :] >= 150, scr, 0).astype(np.uint8)
    one_class = np.where(only_right == 2, 2, 0).astype(np.uint8)  # class 1 alone (mask id 1 is the right side)
    pv = Preview(ArraySource(img), 3, sigmas=(1, 2), max_pixels=3000)
    assert pv.labels(one_class, right) is None  # one class scribbled: nothing to preview
    # strokes of the other classes drawn in the left window, then left: the right window's preview uses them
    only_left = np.where(np.arange(300)[None, :] < 150, scr, 0).astype(np.uint8)
    assert len(np.unique(only_left[only_left > 0])) >= 2
    pv.remember(only_left, left)
    lab = pv.labels(one_class, right)
    assert lab is not None and set(np.unique(lab)) <= {0, 1, 2}
    pv.remember(np.zeros_like(scr), left)  # strokes of the window undone: forgotten
    assert pv.labels(one_class, right) is None
