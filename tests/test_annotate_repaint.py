"""The OpenCV annotator shows its last frames again while idle (Qt can drop a window's first paint),
and never reopens a window the user closed. A stand-in for OpenCV's window calls; no display needed."""
import os

import numpy as np

from conftest import SAMPLE


class WindowCalls:
    """OpenCV's drawing from cv2 itself; window calls recorded. The annotation window closes after
    ``close_after`` waits, the overview after ``overview_after``."""

    def __init__(self, cv2, close_after, overview_after=None):
        self._cv2, self.waits = cv2, 0
        self.close_after, self.overview_after = close_after, overview_after
        self.shown = []  # (wait count, window name, frame)
        self.open = set()

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def namedWindow(self, name, flags=0):
        self.open.add(name)

    def imshow(self, name, frame):
        self.open.add(name)  # as OpenCV: imshow opens the window again
        self.shown.append((self.waits, name, frame.copy()))

    def moveWindow(self, *a):
        pass

    def setMouseCallback(self, *a):
        pass

    def setWindowTitle(self, *a):
        pass

    def destroyAllWindows(self):
        self.open.clear()

    def waitKey(self, ms=0):
        return -1

    def waitKeyEx(self, ms=0):
        import time

        time.sleep(ms / 1000)
        self.waits += 1
        if self.overview_after is not None and self.waits == self.overview_after:
            self.open.discard("label_tools overview")
        if self.waits == self.close_after:
            self.open.discard("label_tools annotate")
        return -1

    def getWindowProperty(self, name, prop):
        return 1.0 if name in self.open else 0.0


def run_annotator(tmp_path, monkeypatch, **calls):
    import cv2

    from label_tools import annotate
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.session import Session

    monkeypatch.setattr(annotate, "REPAINT_SECONDS", 0.1)
    src = open_image(os.path.join(SAMPLE, "beach.png"))
    classes = load_classes(os.path.join(SAMPLE, "classes.txt"), os.path.join(SAMPLE, "colors.txt"))
    windows = annotate.annotation_windows(src.shape, 460)
    ann = annotate.Annotator(src, classes, Session(src.shape, len(classes), windows), outdir=str(tmp_path),
                             stem="beach")
    fake = WindowCalls(cv2, **calls)
    ann.cv2 = fake
    ann.run()
    return fake


def test_idle_windows_are_shown_their_last_frame_again(tmp_path, monkeypatch):
    fake = run_annotator(tmp_path, monkeypatch, close_after=40)  # 40 waits of 30 ms: 1.2 s idle
    first = [f for w, n, f in fake.shown if n == "label_tools annotate" and w == 0]
    again = [f for w, n, f in fake.shown if n == "label_tools annotate" and w > 0]
    assert first and len(again) >= 3, [(w, n) for w, n, _ in fake.shown]
    assert all(np.array_equal(f, first[-1]) for f in again)  # the same frame, not a new rendering
    assert any(n == "label_tools overview" and w > 0 for w, n, _ in fake.shown)


def test_a_window_the_user_closed_is_not_opened_again(tmp_path, monkeypatch):
    fake = run_annotator(tmp_path, monkeypatch, close_after=40, overview_after=5)
    late = [(w, n) for w, n, _ in fake.shown if n == "label_tools overview" and w >= 5]
    assert late == []
    assert any(n == "label_tools annotate" and w > 5 for w, n, _ in fake.shown)
