"""End to end under Xvfb: the U overlay, the N jump, --order uncertainty and the in-window status line,
checked on the window's own pixels (screenshots) and on the saved position, in both window toolkits
(OpenCV, and the matplotlib fallback)."""
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

import xshot
from conftest import SAMPLE
from test_annotate_window import Driver, display  # noqa: F401  (the module-scoped Xvfb fixture)

pytestmark = pytest.mark.window
W = 230  # beach.png (920 x 614) -> 3 rows x 4 columns of windows, 230 x 204-205


class UDriver(Driver):
    def screenshot(self, path):
        return xshot.grab(self.env, self.win, path).astype(int)  # XGetImage: as ImageMagick's import, 20x faster

    def settled(self, path, timeout=15.0, quiet=1.2):
        """A screenshot once the window has stopped changing (matplotlib paints on its next event-loop tick):
        grabs 0.2 s apart, all alike for ``quiet`` s (ImageMagick's grabs, 1.3 s each, were two ~1.7 s apart)."""
        last = self.screenshot(None)
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.screenshot(None)
            if not np.array_equal(now, last):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        if path is not None:  # kept for a failed test to be looked at
            Image.fromarray(last.astype(np.uint8)).save(path, compress_level=1)
        return last

    def settled_until(self, path, cond, timeout=30.0):
        """``settled`` again until ``cond(shot)`` holds or ``timeout`` s have passed (the caller asserts)."""
        deadline = time.monotonic() + timeout
        while True:
            shot = self.settled(path)
            if cond(shot) or time.monotonic() > deadline:
                return shot

    def water_and_land(self):
        """Window 1 (rows 0..204, cols 0..230): a water stroke below the surf line, a land stroke above."""
        self.stroke230((0, 0), [(190, 20), (190, 200)])
        self.wait_for(lambda: (self.scribbles() == 1).sum() > 100, "water stroke")
        self.key("2")
        self.stroke230((0, 0), [(15, 20), (15, 200)])
        self.wait_for(lambda: (self.scribbles() == 2).sum() > 100, "land stroke")

    def stroke230(self, window, pts):
        import test_annotate_window as t

        saved, t.W = t.W, W
        try:
            self.stroke(window, pts)
        finally:
            t.W = saved


def screenshot_driver(display, tmp_path):
    """An output folder and a driver that takes screenshots (xshot: XGetImage, or ImageMagick's ``import``
    where that cannot read the display; CI installs it)."""
    if not shutil.which("import"):
        if os.environ.get("CI"):
            pytest.fail("ImageMagick's import is not installed (CI installs it with apt-get)")
        pytest.skip("ImageMagick's import (screenshots) not installed")
    out = tmp_path / "out"
    out.mkdir()
    drv = UDriver(display, tmp_path)
    drv.outdir = out
    return out, drv


def expected_next(scribbles, exclude):
    """The window the annotator should pick: most uncertain by the same quick model, not in ``exclude``."""
    from label_tools.annotate import annotation_windows
    from label_tools.annotate_uncertainty import QuickUncertainty
    from label_tools.io import open_image

    src = open_image(os.path.join(SAMPLE, "beach.png"))
    q = QuickUncertainty(src, 2)
    windows = annotation_windows(src.shape, W)
    scores = q.window_scores(q.map(scribbles), windows, src.shape)
    order = [int(j) for j in np.argsort(-scores, kind="stable") if int(j) not in exclude]
    return order[0], windows


@pytest.mark.parametrize("backend", ["opencv", "matplotlib"])
def test_uncertainty_keys_order_and_status_line(display, tmp_path, backend):  # noqa: F811
    out, drv = screenshot_driver(display, tmp_path)
    drv.start("--no-resume", "--order", "uncertainty", "-w", str(W), "--backend", backend)
    try:
        # status line: a dark band at the bottom with light text, changing with the class
        deadline = time.monotonic() + 120  # a loaded machine can take long to paint the first frame
        while True:  # the first frames may not be painted yet: wait until the window shows its picture
            a = drv.screenshot(tmp_path / "a.png")
            band = a[-26:]
            if (band.mean() < 60 and (band.max(axis=2) > 200).sum() > 150) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert band.mean() < 60 and (band.max(axis=2) > 200).sum() > 150, (
            f"no status band after 120 s (band mean {band.mean():.0f}); annotator "
            f"{'running' if drv.proc.poll() is None else f'exited {drv.proc.poll()}'}; "
            f"log: {drv.log.read_text()[-2000:]}")
        drv.key("2")
        drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2")
        b = drv.settled_until(tmp_path / "b.png", lambda b: np.abs(b[-26:] - band).sum(axis=2).astype(bool).sum() > 30)
        assert np.abs(b[-26:] - band).sum(axis=2).astype(bool).sum() > 30  # "class 2/2 land" drawn
        assert np.array_equal(b[:-30], a[:-30])  # the picture above is untouched
        drv.key("1")
        drv.wait_for(lambda: drv.state()["class_index"] == 0, "class 1")

        drv.water_and_land()

        # U: the uncertainty overlay changes the picture; U again restores it
        plain = drv.settled(tmp_path / "plain.png")
        drv.key("u")
        time.sleep(1.0)
        over = drv.settled_until(tmp_path / "over.png",
                                 lambda over: (np.abs(over[:-30] - plain[:-30]).sum(axis=2) > 30).mean() > 0.02)
        changed = np.abs(over[:-30] - plain[:-30]).sum(axis=2) > 30
        assert changed.mean() > 0.02, changed.mean()
        drv.key("u")
        time.sleep(1.0)
        again = drv.settled(tmp_path / "again.png")
        assert np.abs(again[:-30] - plain[:-30]).sum(axis=2).max() <= 3

        # --order uncertainty: Esc past the last class goes to the least certain window, not window 2
        seq = [0]
        for _ in range(2):
            scr = drv.scribbles()
            want, windows = expected_next(scr, set(seq))
            drv.key("Escape", 2 - drv.state()["class_index"])
            # (the row-order step is saved for an instant before the walk turns to the least certain window)
            drv.wait_for(lambda: drv.state()["window_index"] == want, f"window {want} after {seq}")
            seq.append(want)
        assert seq != [0, 1, 2], seq

        # N: the most uncertain window other than the current one, at any time
        want, _ = expected_next(drv.scribbles(), {seq[-1]})
        drv.key("n")
        drv.wait_for(lambda: drv.state()["window_index"] == want, f"N to window {want}")
        drv.key("q")
        assert drv.proc.wait(180) == 0, drv.log.read_text()[-2000:]
    finally:
        if drv.proc.poll() is None:
            drv.proc.kill()
            drv.proc.wait(10)
    assert (out / "beach_mres_label.png").exists()


def press_p(drv, nth):
    """P, sent again if the annotator has not logged it as its ``nth`` P within 20 s (a key sent while
    a loaded machine is busy is sometimes lost between xdotool and the window)."""
    def handled():
        return drv.log.read_text().count("key 'p': key_preview") >= nth

    drv.key("p")
    try:
        drv.wait_for(handled, f"P number {nth} handled", timeout=20)
    except AssertionError:
        drv.key("p")
        drv.wait_for(handled, f"P number {nth} handled", timeout=20)


def test_preview_key_paints_labels_of_the_strokes_so_far(display, tmp_path):  # noqa: F811
    """P in the real OpenCV window: the preview (label_tools.annotate_preview) paints the window with
    the labels of the strokes so far, water below the surf line and land above; P again removes it."""
    out, drv = screenshot_driver(display, tmp_path)
    drv.start("--no-resume", "-w", str(W), "-v")  # -v twice: the annotator logs each key it handles
    try:
        drv.water_and_land()
        plain = drv.settled(tmp_path / "plain.png")
        before = plain[:-30]
        press_p(drv, 1)
        deadline = time.monotonic() + 90  # the preview is computed before the window repaints: slow when loaded
        while True:
            pic = drv.settled(tmp_path / "preview.png")[:-30]
            changed = np.abs(pic - before).sum(axis=2) > 20
            if changed.mean() > 0.5 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert changed.mean() > 0.5, changed.mean()  # the whole window is painted, not only the strokes
        water, land = np.array([0x1f, 0x5f, 0xbf]), np.array([0xd9, 0xb3, 0x6c])  # sample_data/colors.txt
        h = pic.shape[0]
        top, bottom = pic[int(0.1 * h):int(0.14 * h)], pic[int(0.75 * h):int(0.85 * h)]
        top0, bottom0 = before[int(0.1 * h):int(0.14 * h)], before[int(0.75 * h):int(0.85 * h)]
        # each band moved toward its class's colour (alpha 0.45): land above the surf line, water below
        assert np.abs(top - land).sum(axis=2).mean() < np.abs(top0 - land).sum(axis=2).mean() - 20
        assert np.abs(bottom - water).sum(axis=2).mean() < np.abs(bottom0 - water).sum(axis=2).mean() - 20
        press_p(drv, 2)
        time.sleep(1.0)
        again = drv.settled(tmp_path / "again.png")
        assert np.abs(again[:-30] - before).sum(axis=2).max() <= 3
        drv.key("q")
        assert drv.proc.wait(180) == 0, drv.log.read_text()[-2000:]
    finally:
        if drv.proc.poll() is None:
            drv.proc.kill()
            drv.proc.wait(10)
    assert "scribble at least two classes first" not in drv.log.read_text()
