"""qa13: the annotator used as a person uses it (found driving the real window under Xvfb).

Headless here: the annotator's OpenCV window calls are replaced by a recorder (as in
test_annotate_repaint.py), the drawing and the models are the real ones.
"""
import numpy as np
import pytest

from conftest import make_scene, scene_scribbles

pytest.importorskip("cv2")

from label_tools import annotate  # noqa: E402
from label_tools.annotate_preview import Preview  # noqa: E402
from label_tools.annotate_uncertainty import NO_MODEL, with_uncertainty  # noqa: E402
from label_tools.io import ArraySource  # noqa: E402
from label_tools.session import Session  # noqa: E402


class Frames:
    """OpenCV with its window calls recorded: ``shown[name]`` is the last frame put in window ``name``."""

    def __init__(self, cv2):
        self._cv2, self.shown = cv2, {}

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def imshow(self, name, frame):
        self.shown[name] = frame.copy()

    def setWindowTitle(self, *a):
        pass


def _annotator(tmp_path, src, side=460):
    import cv2

    from label_tools.classes import load_classes

    classes = load_classes(n_classes=3)
    windows = annotate.annotation_windows(src.shape, side)
    cls = with_uncertainty(annotate.Annotator)
    ann = cls(src, classes, Session(src.shape, len(classes), windows), outdir=str(tmp_path), stem="img",
              preview=Preview(src, len(classes), sigmas=(1, 2), max_pixels=4000))
    ann.cv2 = Frames(cv2)
    ann.t_open = 0.0  # as run() sets it
    return ann


def test_preview_stays_on_in_the_next_window(tmp_path):
    """P on, strokes of two classes in window 1, Esc to window 2: the preview was gone there (the status
    line still said 'preview') until the next stroke, though the strokes of window 1 make a model."""
    img, mask = make_scene(240, 330)
    src = ArraySource(img)
    ann = _annotator(tmp_path, src, side=170)
    assert ann.s.window == (0, 120, 0, 165) and len(ann.s.windows) == 4
    scr = scene_scribbles(mask)
    ann.s.scribbles[:120, :165] = scr[:120, :165]
    assert len(np.unique(scr[:120, :165])) >= 3  # two classes or more in window 1
    ann.on_key(ord("p"))
    assert ann._preview_labels is not None
    for _ in range(ann.s.n_classes):  # Esc through the classes: window 2
        ann.on_key(27)
    assert ann.s.window_index == 1
    assert ann._preview_labels is not None, "no preview in the next window"
    assert "preview" in ann._mode() and NO_MODEL not in ann._mode()
    # and it is drawn: the frame differs from the picture alone where the preview is
    picture = ann._base_image()
    frame = ann.cv2.shown[annotate.WIN_ANNOTATE][: picture.shape[0], :, ::-1]
    assert (np.abs(frame.astype(int) - picture).max(axis=2) > 30).mean() > 0.2


def test_preview_with_one_class_says_so_on_the_status_line(tmp_path):
    """P with only one class scribbled has nothing to show: the status line said 'preview' over the
    bare picture (the reason went to the terminal only); it now says what to do, as U does."""
    img, mask = make_scene(120, 160)
    ann = _annotator(tmp_path, ArraySource(img))
    ann.s.scribbles[10:14, 10:60] = 1
    ann.on_key(ord("p"))
    assert ann._mode() == f"preview: {NO_MODEL}"
    ann.s.scribbles[100:104, 100:150] = 2  # a stroke of another class (as mouse_up does): the preview runs
    ann._preview_labels, ann._preview_tried = None, False
    ann.render_annotation()
    assert ann._preview_labels is not None and ann._mode() == "preview"


def test_preview_reads_only_its_window():
    """The preview of a 500 x 500 window read the whole image (its grid kept whole) on every stroke
    with P on and at every window left: 0.6-1.4 s on a 6000 x 4000 photo, against the 0.3 s budget."""
    img, mask = make_scene(1200, 1600)
    src = ArraySource(img)
    reads = []
    raw = src._read_raw

    def spy(window, out_shape, resampling="average"):
        reads.append(window)
        return raw(window, out_shape, resampling)

    src._read_raw = spy
    scr = np.zeros(mask.shape, np.uint8)
    scr[20:24, 20:180] = 1
    scr[150:154, 20:180] = 2
    pv = Preview(src, 3, sigmas=(1, 2, 4), max_pixels=4000)
    assert pv.labels(scr, (0, 200, 0, 200)) is not None
    pv.remember(scr, (0, 200, 0, 200))
    assert reads
    largest = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in reads)
    assert largest <= 4 * 200 * 200, f"read {largest} pixels for a 200 x 200 window"


def test_preview_of_a_resumed_walk_uses_the_strokes_of_the_earlier_session(tmp_path):
    """Resumed at window 2 with strokes of two classes in window 1 (drawn before a kill or Ctrl-C), P said
    'scribble two classes first': only windows left in this session were remembered."""
    img, mask = make_scene(240, 330)
    ann = _annotator(tmp_path, ArraySource(img), side=170)
    scr = scene_scribbles(mask)
    ann.s.scribbles[:120, :165] = scr[:120, :165]  # as Session(scribbles=...) of a resumed autosave
    ann.s.window_index = 1
    ann.on_key(ord("p"))
    assert ann._preview_labels is not None and ann._mode() == "preview"


def test_a_tiny_image_is_magnified_and_strokes_land_under_the_mouse(tmp_path):
    """A 40 x 30 image was shown 160 x 120 (magnified 4 times at most): a brush of 3 was 12 screen pixels
    and the help overlay showed 7 of its lines. It is magnified to 640 pixels on its longer side now."""
    img, _ = make_scene(30, 40)
    ann = _annotator(tmp_path, ArraySource(img))
    assert ann._base_image().shape[:2] == (480, 640)
    ann.mouse_down(639, 479)  # the bottom right screen pixel is the bottom right image pixel
    ann.mouse_up()
    assert ann.s.scribbles[29, 39] == 1 and ann.s.scribbles[:20, :30].sum() == 0
    assert [round(v) for v in ann._to_image(5 * 16 + 8, 7 * 16 + 8)] == [7, 5]  # the middle of pixel (7, 5)


def test_help_of_a_thin_strip_shows_every_line(tmp_path):
    """A 20-pixel-high strip's window is a few dozen screen pixels high: H showed two lines and told the
    person to enlarge a window that cannot be resized. The help now gets a taller frame while it is on,
    and a press beside or below the picture draws nothing."""
    import cv2

    from label_tools.annotate import help_layout

    img, _ = make_scene(20, 1500)
    ann = _annotator(tmp_path, ArraySource(img))
    picture = ann._base_image()
    ann.on_key(ord("h"))
    frame = ann.cv2.shown[annotate.WIN_ANNOTATE]
    names = ann.classes.names
    _, _, (bw, bh) = help_layout(names, 10_000, 10_000, cv2)
    assert frame.shape[0] > bh > 2 * picture.shape[0] and frame.shape[1] == picture.shape[1]
    _, placed, _ = help_layout(names, frame.shape[1], frame.shape[0] - 26, cv2)
    assert not any(t.startswith("... ") for t, _, _ in placed)
    ann.mouse_down(10, picture.shape[0] + 5)
    ann.mouse_up()
    assert not ann.s.scribbles.any()
    ann.on_key(ord("h"))  # off: the picture's own size again
    assert ann.cv2.shown[annotate.WIN_ANNOTATE].shape[0] < bh


def test_a_resumed_session_says_where_it_opens():
    """'resuming from X' was all a resumed run said: not the window and class it opens at, nor that a
    position saved with another -w (another window count) was dropped for the first window."""
    from label_tools.tiling import annotation_windows

    windows = annotation_windows((614, 920), 460)
    scr = np.zeros((614, 920), np.uint8)
    scr[10:20, 10:100] = 1
    scr[200:210, 10:100] = 2
    s = Session((614, 920), 3, windows, scribbles=scr)
    state = {"window_index": 2, "class_index": 1, "brush": 5, "n_windows": 4, "shape": [614, 920]}
    assert s.restore(state)
    note = s.resume_note("out/a_scribbles.png", ("water", "sand", "land"), state, True)
    assert note == "resuming from out/a_scribbles.png: window 3/4, class 2/3 sand; 1800 scribbled pixels of 2 classes"
    s = Session((614, 920), 3, annotation_windows((614, 920), 300), scribbles=scr)  # resumed with -w 300
    assert not s.restore(state) and s.window_index == 0
    note = s.resume_note("out/a_scribbles.png", ("water", "sand", "land"), state, False)
    assert "window 1/12: the autosave was made with 4 windows (another -w)" in note


def test_z_with_nothing_to_undo_says_why(tmp_path, caplog):
    """After a resume the strokes of the earlier session are not undoable: Z did nothing, silently."""
    import logging

    img, mask = make_scene(120, 160)
    ann = _annotator(tmp_path, ArraySource(img), side=80)
    ann.s.scribbles[10:14, 10:60] = 1  # resumed strokes
    with caplog.at_level(logging.INFO, logger="label_tools"):
        ann.on_key(ord("z"))
    assert "nothing to undo (strokes drawn before this session was resumed cannot be undone" in caplog.text
    assert ann.s.scribbles[10:14, 10:60].all()
    # a stroke in window 1, then Esc to window 2: Z undoes it there, and says where it was
    ann.s.window_index = 0
    ann.mouse_down(100, 100)
    ann.mouse_up()
    ann.s.window_index = 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="label_tools"):
        ann.on_key(ord("z"))
    assert "undid the last stroke, drawn in window 1/" in caplog.text and ann.s.scribbles[10:14, 10:60].all()


def test_the_brush_is_drawn_at_the_mouse_and_grows_with_plus(tmp_path):
    """+ and - changed only the number on the status line: the brush's size was seen only by drawing.
    The annotation window now draws the brush as a circle at the mouse, the size a stroke paints."""
    img, _ = make_scene(120, 160)
    ann = _annotator(tmp_path, ArraySource(img))
    ann.render_annotation()
    d = ann._scale()
    clean = ann.cv2.shown[annotate.WIN_ANNOTATE].copy()
    cv2 = ann.cv2

    def ring(frame, r):  # brightest pixel on the circle of radius r around (200, 150), against the clean frame
        ys, xs = np.nonzero(np.abs(np.hypot(*np.mgrid[-150:150, -200:200][::-1]) - r) < 0.7)
        return np.abs(frame[ys, xs].astype(int) - clean[ys, xs]).max()

    ann.on_mouse(cv2.EVENT_MOUSEMOVE, 200, 150, 0, None)
    r3 = (3 - 0.5) * d
    assert ring(ann.cv2.shown[annotate.WIN_ANNOTATE], r3) > 60
    ann.on_key(ord("+"))
    ann.on_key(ord("+"))
    assert ann.s.brush == 5
    frame = ann.cv2.shown[annotate.WIN_ANNOTATE]
    assert ring(frame, (5 - 0.5) * d) > 60 and ring(frame, r3) < 30
    assert not ann.s.scribbles.any()  # hovering draws no stroke
    # the stroke it paints is that wide
    ann.mouse_down(200, 150)
    ann.mouse_up()
    rows = np.nonzero(ann.s.scribbles.any(axis=1))[0]
    assert len(rows) == 2 * 5 - 1
    ann.on_mouse(cv2.EVENT_MOUSEMOVE, 10, ann._base_image().shape[0] + 5, 0, None)  # on the status line: no circle
    np.testing.assert_array_equal(ann.cv2.shown[annotate.WIN_ANNOTATE], ann._clean)


def test_the_brush_does_not_paint_no_data(tmp_path):
    """A stroke across a GeoTIFF's black no-data border was painted and saved there, though no-data pixels
    are never labelled (the strokes shown were not the strokes used). The brush leaves them alone now."""
    img, _ = make_scene(120, 160)
    valid = np.ones((120, 160), bool)
    valid[:, :60] = False  # a no-data border on the left
    ann = _annotator(tmp_path, ArraySource(img, valid=valid))
    d = ann._scale()
    ann.on_key(ord("+"))
    ann.mouse_down(int(10 * d), int(50 * d))  # from column 10 (no-data) to column 120 (data)
    ann.mouse_drag(int(120 * d), int(50 * d))
    ann.mouse_up()
    scr = ann.s.scribbles
    assert not scr[:, :60].any() and scr[45:55, 60:120].any()
    ann.mouse_down(int(20 * d), int(90 * d))  # a stroke on no-data only: nothing, and nothing to undo
    ann.mouse_up()
    assert len(ann.s.strokes) == 1 and not scr[:, :60].any()


def test_a_digit_without_a_class_says_so(tmp_path, caplog):
    """4 with three classes did nothing, silently (the status line kept class 1)."""
    import logging

    img, _ = make_scene(120, 160)
    ann = _annotator(tmp_path, ArraySource(img))
    with caplog.at_level(logging.INFO, logger="label_tools"):
        ann.on_key(ord("4"))
        ann.on_key(ord("2"))
    assert "4: no such class (the classes are 1-3)" in caplog.text and ann.s.class_index == 1
    assert "2: no such class" not in caplog.text


def test_a_stopped_annotator_says_how_to_resume(monkeypatch, capsys):
    """Ctrl-C or SIGTERM with the annotator open said the scribbles were kept, not how to go on."""
    import os

    from conftest import SAMPLE
    from label_tools import cli

    def stopped(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", stopped)
    assert cli.main([os.path.join(SAMPLE, "beach.png")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("label-image: stopped by SIGINT; no output was left half-written; scribbles drawn so far are kept "
                   "in the scribble file: run the same command again to resume")
