"""End to end: a collection of two images in the real OpenCV annotator under Xvfb, driven with xdotool.

Strokes for both classes on the first image; the second opens with the model's pre-labels, checked
on the window's own pixels (screenshots with pre-labels on and, after L, off); a kill and a restart of
the same command come back to the second image; Esc finishes it. Both results and the model are
checked on disk.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import xshot
from conftest import SAMPLE
from test_annotate_window import Driver, display  # noqa: F401  (the Xvfb fixture)

pytestmark = pytest.mark.window
ALPHA = 0.4


class CollectionDriver(Driver):
    def start_cmd(self, cmd, title):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.find(title)

    def find(self, title, timeout=90):
        deadline = time.time() + timeout
        self.win = ""
        while time.time() < deadline and not self.win:
            assert self.proc.poll() is None, f"label-image ended early: {self.log.read_text()[-3000:]}"
            self.win = self.xdo("search", "--onlyvisible", "--name", title).split("\n")[0]
            time.sleep(0.2)
        assert self.win, f"no window titled {title!r}: {self.log.read_text()[-3000:]}"
        time.sleep(0.8)
        geo = self.xdo("getwindowgeometry", self.win)
        self.width, self.height = map(int, geo.split("Geometry:")[1].split()[0].split("x"))

    def screenshot(self, path):
        """The annotation window's pixels as RGB uint8 (h, w, 3), grabbed from the X server."""
        return xshot.grab(self.env, self.win, path)  # XGetImage: as ImageMagick's import, 20x faster

    def settled(self, path, cond=lambda a: True, timeout=30):
        """A screenshot once the window has stopped changing (two grabs alike) and ``cond`` holds."""
        deadline = time.time() + timeout
        last = self.screenshot(path)
        while time.time() < deadline:
            time.sleep(0.4)
            cur = self.screenshot(path)
            if cur.shape == last.shape and np.array_equal(cur, last) and cur.std() > 5 and cond(cur):
                return cur
            last = cur
        raise AssertionError(f"the window did not settle: {self.log.read_text()[-2000:]}")


@pytest.fixture
def two_images(tmp_path):
    if not shutil.which("import"):
        if os.environ.get("CI"):
            pytest.fail("ImageMagick's import is not installed (CI installs it with apt-get)")
        pytest.skip("ImageMagick's import (screenshots) not installed")
    beach = np.array(Image.open(os.path.join(SAMPLE, "beach.png")).convert("RGB"))  # 614 x 920
    d = tmp_path / "shore"
    d.mkdir()
    Image.fromarray(beach[:, :460]).save(d / "a_left.png")
    Image.fromarray(beach[:, 460:]).save(d / "b_right.png")
    return d


@pytest.fixture
def driver(display, tmp_path):  # noqa: F811
    drv = CollectionDriver(display, tmp_path, stem="a_left")
    yield drv
    if drv.proc is not None and drv.proc.poll() is None:  # a failed check leaves no window behind
        drv.proc.kill()
        drv.proc.wait(10)


def test_collection_prelabels_kill_resume(driver, two_images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    drv = driver
    drv.outdir = out
    cmd = [sys.executable, "-m", "label_tools.cli", str(two_images), "--labels", os.path.join(SAMPLE, "classes.txt"),
           "--colors", os.path.join(SAMPLE, "colors.txt"), "-o", str(out), "-w", "620", "-s", "0.5", "-v"]
    drv.start_cmd(cmd, "image 1/2")
    assert "pre-labels" not in drv.xdo("getwindowname", drv.win)  # no model yet on the first image

    # image 1: water strokes low, land strokes high (the window is the whole 614 x 460 image)
    drv.stroke((0, 0), [(420, 30), (420, 200), (430, 430)])
    drv.stroke((0, 0), [(560, 30), (570, 430)])
    drv.wait_for(lambda: (drv.scribbles() == 1).sum() > 300, "water strokes saved")
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2")
    drv.stroke((0, 0), [(30, 30), (30, 430)])
    drv.stroke((0, 0), [(120, 30), (110, 430)])
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > 300, "land strokes saved")
    drv.key("Escape")  # last class of the only window: image 1 is done, its outputs and the model are written

    # image 2 opens with the model's pre-labels
    drv.find("image 2/2")
    title = drv.xdo("getwindowname", drv.win)
    assert "pre-labels on" in title, title
    drv.wait_for(lambda: (out / "a_left_mres_label.png").exists() and (out / "shore_model.skops").exists(),
                 "image 1 outputs and the model")
    state = json.loads((out / "shore_collection.json").read_text())
    assert state["index"] == 1 and state["done"] == [str(two_images / "a_left.png")]
    import cv2

    img = np.array(Image.open(two_images / "b_right.png"))
    from label_tools.annotate_uncertainty import STATUS_BAND

    pic_h = drv.height - STATUS_BAND  # the status line is a band below the picture
    scaled = cv2.resize(img, (drv.width, pic_h), interpolation=cv2.INTER_AREA).astype(float)

    def plain(a):  # the window shows the image alone, scaled to the window
        a = a[:pic_h]
        return a.shape == scaled.shape and np.abs(a.astype(float) - scaled).mean() < 6

    on = drv.settled(tmp_path / "on.png", lambda a: not plain(a))  # pre-labels drawn over the image
    drv.key("l")
    drv.wait_for(lambda: "pre-labels off" in drv.xdo("getwindowname", drv.win), "L turns pre-labels off")
    off = drv.settled(tmp_path / "off.png", plain)
    assert on.shape == off.shape == (drv.height, drv.width, 3)

    # kill and restart the same command: the walk comes back to image 2, finished with Esc, no new strokes
    drv.proc.send_signal(signal.SIGKILL)
    drv.proc.wait(10)
    drv.start_cmd(cmd, "image 2/2")
    drv.key("Escape", 2)
    assert drv.proc.wait(180) == 0, drv.log.read_text()[-3000:]

    # with no new strokes, image 2's labels are the pre-labels the window showed: check the window's pixels.
    # Where the model says class k (away from class boundaries), the shown pixel is the image blended with
    # colour k at ALPHA; with pre-labels off it is the image alone.
    lab = np.array(Image.open(out / "b_right_mres_label.png"))
    assert lab.shape == (614, 460)
    colors = np.array([[0x1f, 0x5f, 0xbf], [0xd9, 0xb3, 0x6c]], float)
    lab_w = cv2.resize(lab, (drv.width, pic_h), interpolation=cv2.INTER_NEAREST)
    on, off = on[:pic_h], off[:pic_h]
    for k in (0, 1):
        inside = cv2.erode((lab_w == k).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert inside.mean() > 0.1, f"class {k} covers too little of image 2 to check"
        want = off[inside].astype(float) * (1 - ALPHA) + colors[k] * ALPHA
        err = np.abs(on[inside].astype(float) - want).max(axis=1)
        assert (err <= 3).mean() > 0.97, (k, np.percentile(err, [50, 90, 99]))
        assert np.abs(on[inside].astype(float) - off[inside]).mean() > 10  # the pre-labels are visible

    # both results, the model, and the walk's state
    for st in ("a_left", "b_right"):
        assert {f"{st}_mres.png", f"{st}_mres_label.png", f"{st}_mres.mat", f"{st}_report.txt"} <= set(os.listdir(out))
    lab1 = np.array(Image.open(out / "a_left_mres_label.png"))
    scr1 = np.array(Image.open(out / "a_left_scribbles.png"))
    assert (lab1[scr1 == 1] == 0).mean() > 0.9 and (lab1[scr1 == 2] == 1).mean() > 0.9
    assert not np.array(Image.open(out / "b_right_scribbles.png")).any()
    state = json.loads((out / "shore_collection.json").read_text())
    assert state["index"] == 2 and state["done"] == [str(two_images / "a_left.png"), str(two_images / "b_right.png")]
    from label_tools.model import Model

    model = Model.load(str(out / "shore_model.skops"))
    assert tuple(model.classes.names) == ("water", "land") and model.n_bands == 3
    assert [os.path.basename(p) for p in model.info["images"]] == ["a_left.png", "b_right.png"]
    assert (model.y == 0).sum() > 100 and (model.y == 1).sum() > 100  # image 1's samples, carried through image 2
