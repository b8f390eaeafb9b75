"""qa23: the annotator used as a person uses it (found driving the real window under Xvfb on the sample,
a coast photo, a 13-band Sentinel-2 GeoTIFF, 16-bit EM, a 60 x 40 image and a 4000 x 300 panorama).

Headless here, as in test_qa13.py: the OpenCV window calls are recorded, the drawing, the session, the
autosave and the quick uncertainty model are the real ones.
"""
import logging

import numpy as np
import pytest

from conftest import make_scene, scene_scribbles, start_xvfb

pytest.importorskip("cv2")

from label_tools import annotate, session as sess  # noqa: E402
from label_tools.annotate_uncertainty import QuickUncertainty  # noqa: E402
from label_tools.io import ArraySource  # noqa: E402
from test_qa13 import _annotator  # noqa: E402

ESC = 27


def _walker(tmp_path, side=170, order="uncertainty"):
    """An annotator on a 240 x 330 scene (4 windows at side 170) with the quick model and the walk order."""
    img, mask = make_scene(240, 330)
    src = ArraySource(img)
    ann = _annotator(tmp_path, src, side=side)
    ann.quick = QuickUncertainty(src, 3, sigmas=(1, 2))
    ann.order = order
    return ann, mask


def _leave(ann):
    """Esc through the classes of the current window."""
    for _ in range(ann.s.n_classes - ann.s.class_index):
        ann.on_key(ESC)


def test_the_uncertainty_walk_ends_once_every_window_is_visited(tmp_path):
    """--order uncertainty visited the 4 windows (1, 4, 2, 3), then showed window 4 again (row order after the
    last one visited), and with 12 windows all those after it: the walk now ends there and the labels are
    computed, as after the last window in row order."""
    ann, mask = _walker(tmp_path)
    ann.s.scribbles[:120, :165] = scene_scribbles(mask)[:120, :165]
    seen = [ann.s.window_index]
    while not ann.s.done and len(seen) < 8:
        _leave(ann)
        if not ann.s.done:
            seen.append(ann.s.window_index)
    assert ann.s.done
    assert sorted(seen) == [0, 1, 2, 3], f"windows shown: {seen}"


def test_a_resumed_uncertainty_walk_does_not_go_back_to_windows_already_visited(tmp_path):
    """Killed after the walk had visited windows 1 and 4 (and resumed at window 2), the walk led back to
    window 4: the windows visited were not saved with the position. They are now."""
    ann, mask = _walker(tmp_path)
    ann.s.scribbles[:120, :165] = scene_scribbles(mask)[:120, :165]
    _leave(ann)
    first = ann.s.window_index
    _leave(ann)
    second = ann.s.window_index
    assert ann.s.visited == {0, first}
    # the autosave on disk, read back as a new run does (kill -9 now)
    scr, state = sess.load(str(tmp_path), "img", ann.s.shape, ann.s.n_classes)
    s = sess.Session(ann.s.shape, ann.s.n_classes, ann.s.windows, scribbles=scr)
    assert s.restore(state) and s.window_index == second
    assert s.visited == {0, first}
    ann2, _ = _walker(tmp_path)
    ann2.s = s
    seen = []
    while not s.done and len(seen) < 8:
        _leave(ann2)
        if not s.done:
            seen.append(s.window_index)
    assert s.done and not {0, first} & set(seen), f"walked back to a visited window: {seen}"


def test_a_damaged_visited_list_is_a_damaged_autosave(tmp_path):
    import json

    ann, _ = _walker(tmp_path)
    ann.save()
    js = tmp_path / "img_scribbles.json"
    state = json.loads(js.read_text())
    state["visited"] = [0, "x"]
    js.write_text(json.dumps(state))
    with pytest.raises(sess.DamagedAutosave, match="'visited' should be a list of window numbers"):
        sess.load(str(tmp_path), "img", ann.s.shape, ann.s.n_classes)


def test_b_goes_back_to_the_window_the_walk_came_from(tmp_path):
    """B after the uncertainty walk (or N) had jumped from window 1 to window 4 went to window 3, one never
    shown: 'back to the previous window' is the window the person was in before."""
    ann, mask = _walker(tmp_path)
    ann.s.scribbles[:120, :165] = scene_scribbles(mask)[:120, :165]
    _leave(ann)
    came_to = ann.s.window_index
    assert came_to != 1  # the walk jumped over window 2 (else this test tells nothing)
    ann.on_key(ord("b"))
    assert ann.s.window_index == 0
    ann.on_key(ord("b"))  # nothing before the first window: stays
    assert ann.s.window_index == 0
    # row order: B is the window to the left, as before
    ann, _ = _walker(tmp_path, order="rows")
    ann.on_key(ord("s"))
    ann.on_key(ord("s"))
    assert ann.s.window_index == 2
    ann.on_key(ord("b"))
    assert ann.s.window_index == 1


def _screen_strokes(ann):
    """The annotation window's frame (RGB, picture only), the scribbles at screen size, the picture size."""
    import cv2

    pic = ann._base_image()
    h, w = pic.shape[:2]
    r0, r1, c0, c1 = ann.s.window
    lab = cv2.resize(np.ascontiguousarray(ann.s.scribbles[r0:r1, c0:c1]), (w, h), interpolation=cv2.INTER_NEAREST)
    frame = ann.cv2.shown[annotate.WIN_ANNOTATE][:h, :, ::-1].astype(int)
    return frame, lab


def test_the_uncertainty_overlay_lies_under_the_strokes(tmp_path):
    """With U on, the heat map was blended over the strokes: strokes drawn where the model is unsure (two
    classes side by side on the same ground, as a person corrects a boundary) turned orange and yellow, and
    the person could not see which class they had drawn. The overlay now lies under the strokes, in both
    windows, as the preview and the pre-labels do."""
    ann, _ = _walker(tmp_path, side=400)
    scr = ann.s.scribbles
    scr[50:53, 20:300] = 1
    scr[56:59, 20:300] = 2  # the same ground: the quick model is unsure there
    scr[200:203, 20:300] = 3
    ann.ov_scr = annotate.reduce_labels(scr, ann.ov_shape)  # as strokes drawn with the mouse update it
    ann.on_key(ord("u"))
    assert ann.show_uncertainty and ann._has_map
    frame, lab = _screen_strokes(ann)
    colors = np.asarray(ann.classes.colors, int)
    m = lab > 0
    off = np.abs(frame[m] - colors[lab[m] - 1]).max(axis=1)
    assert (off > 0).sum() == 0, f"{(off > 0).sum()} of {m.sum()} stroke pixels recoloured (up to {off.max()})"
    # the heat map is there, around the strokes
    picture = ann._base_image().astype(int)
    assert (np.abs(frame - picture).max(axis=2)[~m] > 40).mean() > 0.05
    # the overview: its strokes on top too (away from the window's outline)
    ov = ann.cv2.shown[annotate.WIN_OVERVIEW][..., ::-1].astype(int)
    inner = np.zeros(ann.ov_shape, bool)
    inner[4:-4, 4:-4] = True
    m = (ann.ov_scr > 0) & inner
    assert m.sum() > 100
    off = np.abs(ov[m] - colors[ann.ov_scr[m] - 1]).max(axis=1)
    assert (off > 0).sum() == 0, f"{(off > 0).sum()} of {m.sum()} overview stroke pixels recoloured"


def test_esc_past_the_last_window_with_one_class_asks_as_q_does(tmp_path):
    """Q with strokes of one class asks on the status line first; Esc past the last class of the last window
    (the usual way to finish) closed the windows and the run ended in the one-line error. It asks too now,
    and the person stays in the last window."""
    img, _ = make_scene(60, 40)  # a tiny image: one window, Esc, Esc ends it
    ann = _annotator(tmp_path, ArraySource(img))
    assert len(ann.s.windows) == 1
    ann.mouse_down(100, 100)
    ann.mouse_up()
    for _ in range(ann.s.n_classes):
        ann.on_key(ESC)
    assert not ann.s.done
    assert ann.notice.startswith("only class1 is scribbled: draw another class, or press Q again")
    ann.on_key(ord("q"))  # Q right after it quits, as after Q
    assert ann.s.done
    # two classes: Esc past the end computes, without asking
    ann = _annotator(tmp_path, ArraySource(img))
    ann.mouse_down(100, 100)
    ann.mouse_up()
    ann.on_key(ord("2"))
    ann.mouse_down(300, 300)
    ann.mouse_up()
    for _ in range(ann.s.n_classes - 1):
        ann.on_key(ESC)
    assert ann.s.done and ann.notice is None


def test_n_with_no_other_window_says_so(tmp_path, caplog):
    """N on an image of one window (a 100 x 101 Sentinel-2 patch, a 60 x 40 crop) did nothing, silently."""
    ann, mask = _walker(tmp_path, side=400)
    assert len(ann.s.windows) == 1
    ann.s.scribbles[:] = scene_scribbles(mask)
    with caplog.at_level(logging.INFO, logger="label_tools"):
        ann.on_key(ord("n"))
    assert "N: no other window to go to: this image has 1 window worth labelling" in caplog.text


@pytest.fixture
def hidpi_display():
    """A private Xvfb of 1600 x 1000 at 150 dpi (a HiDPI laptop screen's scaling: Tk's 2.08, matplotlib's 1.56)."""
    import os
    import shutil

    for tool in ("Xvfb", "xdotool"):
        if not shutil.which(tool):
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed (CI installs it with apt-get)")
            pytest.skip(f"{tool} not installed")
    proc, number = start_xvfb("-dpi", "150")
    try:
        yield number
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.window
def test_the_matplotlib_window_is_its_frame_size_on_a_high_dpi_screen(hidpi_display, tmp_path):
    """--backend matplotlib on a 150-dpi screen: matplotlib scaled the figure by the screen's dpi, so the
    annotation window, sized to fit the 1600 x 1000 screen (1040 x 720 for the sample at -w 460), came out
    1625 x 1125, off the screen, its picture resampled (1.04 times on this machine's 100-dpi Xvfb). It is
    now one screen pixel per frame pixel."""
    from test_annotate_window import Driver

    out = tmp_path / "out"
    out.mkdir()
    drv = Driver(hidpi_display, tmp_path)
    drv.outdir = out
    drv.start("--no-resume", "--backend", "matplotlib")
    try:
        deadline = __import__("time").monotonic() + 30
        while True:  # the window is sized again once the toolkit has told its scaling
            geo = drv.xdo("getwindowgeometry", drv.win)
            x = int(geo.split("Position:")[1].split(",")[0])
            w, h = (int(v) for v in geo.split("Geometry:")[1].split()[0].split("x"))
            if (w, h) == (1040, 720) or __import__("time").monotonic() > deadline:
                break
            __import__("time").sleep(0.3)
        assert (w, h) == (1040, 720), f"annotation window {w} x {h} at x = {x} on a 1600 x 1000 screen"
        assert x + w <= 1600
    finally:
        drv.proc.kill()
        drv.proc.wait(10)


def test_init_with_our_own_geotiff_asks_for_no_labels_file(tmp_path, monkeypatch):
    """The annotator with --init scene_mres_geo.tif and no --labels opened a file dialog for a labels file
    (and then one for colours), though the README says that file's class names and colours are read back
    from it, as they are with --headless. Other --init files still ask."""
    from argparse import Namespace

    from affine import Affine

    from label_tools.classes import load_classes
    from label_tools.io import Georef
    from label_tools.writers import write_geotiff

    prof = dict(driver="GTiff", width=3, height=2, count=1, dtype="uint8", crs="EPSG:32633",
                transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0))
    geo = str(tmp_path / "scene_mres_geo.tif")
    write_geotiff(geo, np.array([[0, 1, 2], [2, 1, 0]], np.uint8), Georef(prof, None, prof["transform"]),
                  load_classes(None, None, n_classes=3))
    asked = []
    monkeypatch.setattr(annotate, "has_display", lambda: True)
    monkeypatch.setattr(annotate, "ask_file", lambda what, **kw: asked.append(kw["option"]) or f"/x/{what[:6]}")
    args = Namespace(labels=None, colors=None, init=geo)
    annotate.ask_missing_class_files(args)
    assert asked == [] and args.labels is None and args.colors is None
    args = Namespace(labels=None, colors=None, init=str(tmp_path / "other.png"))  # not ours: asked for
    annotate.ask_missing_class_files(args)
    assert asked == ["--labels", "--colors"]


def test_the_overview_of_a_small_image_is_magnified(tmp_path):
    """A 60 x 40 image had a 60 x 40 overview, too small to see or click; the annotation window was magnified
    already. The overview now grows (at most 4 x) until its longer side is 240 pixels, pixels kept crisp."""
    import time

    img, _ = make_scene(40, 60)
    src = ArraySource(img)
    ann = _annotator(tmp_path, src)
    assert ann.ov_shape == (160, 240)
    deadline = time.monotonic() + 10
    while ann._ov_ready is None and time.monotonic() < deadline:  # made on a thread
        time.sleep(0.02)
    ov = ann._ov_ready
    assert ov is not None and ov.shape == (160, 240, 3)
    # nearest-neighbour growth: every 4 x 4 block is one source pixel
    blocks = ov.reshape(40, 4, 60, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    np.testing.assert_array_equal(blocks[:, 0, :, 0], src.read_display())
    # a large image's overview is not magnified
    big = _annotator(tmp_path, ArraySource(make_scene(300, 400)[0]))
    assert max(big.ov_shape) <= 400


def test_the_brush_size_carries_to_the_next_image_of_a_collection(tmp_path, monkeypatch):
    """The brush went back to 3 at every image of a collection walk; it now stays as the person set it (an image
    resumed from its autosave keeps its own)."""
    from label_tools.classes import load_classes

    seen = []

    def fake_run(self):  # the person sets brush 7 on the first image
        seen.append(self.s.brush)
        self.s.brush = 7
        return 1.0

    monkeypatch.setattr(annotate, "has_display", lambda: True)
    monkeypatch.setattr(annotate.Annotator, "run", fake_run)
    monkeypatch.setitem(annotate._last, "brush", 3)
    classes = load_classes(n_classes=3)
    for name in ("a", "b"):
        annotate.annotate(ArraySource(make_scene(40, 60)[0]), classes, window=500, outdir=str(tmp_path), stem=name,
                          resume=False)
    assert seen == [3, 7]
