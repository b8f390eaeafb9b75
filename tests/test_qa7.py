"""QA round 7: defects found using label_tools as its users do (each test failed before its fix)."""
import time

import numpy as np

from conftest import make_scene


def _frames_annotator(monkeypatch, tmp_path, image, names=("water", "sand", "grass")):
    """The annotator class the CLI builds (status line included), its frames captured instead of shown."""
    from label_tools import annotate
    from label_tools.annotate_uncertainty import with_uncertainty
    from label_tools.classes import load_classes
    from label_tools.io import ArraySource
    from label_tools.session import Session
    from label_tools.tiling import annotation_windows

    monkeypatch.setattr(annotate, "screen_size", lambda: (1600, 1000))

    class Captured(annotate.Annotator):
        def _show(self, name, rgb, title=None):
            self.frames[name] = rgb.copy()

    cls = with_uncertainty(Captured)
    classes = load_classes(n_classes=len(names))
    src = ArraySource(image, "scene.png")
    s = Session(src.shape, len(names), annotation_windows(src.shape, 100))
    ann = cls(src, classes, s, outdir=str(tmp_path), stem="scene")
    ann.frames, ann.t_open = {}, time.perf_counter()
    return ann


def test_status_line_leaves_the_picture_whole(monkeypatch, tmp_path):
    """The status line was drawn over the picture's bottom 26 window rows, darkened to a fifth: the part of
    the image being labelled there could not be seen (and strokes drawn there landed on hidden pixels).
    Now the band is added below the picture, which is shown whole, and a press on the band draws nothing."""
    from label_tools.annotate import WIN_ANNOTATE
    from label_tools.annotate_uncertainty import STATUS_BAND

    img, _ = make_scene(96, 140)
    img[:] = 200  # a bright picture: any darkening of it shows
    img[90:] = (250, 240, 30)  # its bottom rows, the ones the band covered
    ann = _frames_annotator(monkeypatch, tmp_path, img)
    ann.render_annotation()
    frame = ann.frames[WIN_ANNOTATE]
    picture = ann._base_image()
    h, w = picture.shape[:2]
    assert frame.shape == (h + STATUS_BAND, w, 3)
    np.testing.assert_array_equal(frame[:h], picture)  # every picture pixel as it is, the bottom rows too
    band = frame[h:]
    assert band.mean() < 60 and (band.max(axis=2) > 200).sum() > 150  # dark band with the light status text

    # a press on the status line is not a stroke; one on the picture's last row is
    ann.mouse_down(w // 2, h + STATUS_BAND // 2)
    ann.mouse_drag(w // 2 + 20, h + STATUS_BAND // 2)
    ann.mouse_up()
    assert not ann.s.scribbles.any()
    ann.mouse_down(w // 2, h - 1)
    ann.mouse_up()
    assert ann.s.scribbles[95].any()

