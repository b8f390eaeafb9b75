"""End to end: the real OpenCV annotation window under Xvfb, driven with xdotool like a person.

Strokes for two classes in two windows, a Z that removes one stroke, a kill midway, a resumed run
that starts where the user stopped, Esc through to the end; then the scribble file and every output
are checked.
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
from scipy.io import loadmat

from conftest import SAMPLE, start_xvfb

pytestmark = pytest.mark.window
W = 460  # window side: beach.png (920 x 614) -> 4 windows of 460 x 307


@pytest.fixture(scope="module")
def display():
    """An X display: the one set, or a private Xvfb."""
    for tool in ("xdotool",):
        if not shutil.which(tool):
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed (CI installs it with apt-get)")
            pytest.skip(f"{tool} not installed")
    if os.environ.get("LABEL_TOOLS_TEST_DISPLAY"):
        yield os.environ["LABEL_TOOLS_TEST_DISPLAY"]
        return
    if not shutil.which("Xvfb"):
        if os.environ.get("CI"):
            pytest.fail("Xvfb is not installed (CI installs it with apt-get)")
        pytest.skip("Xvfb not installed")
    proc, number = start_xvfb()
    yield number
    proc.terminate()
    proc.wait(10)


class Driver:
    def __init__(self, display, outdir, stem="beach"):
        self.stem = stem
        self.env = dict(os.environ, DISPLAY=display)
        self.env.pop("CI", None)
        self.outdir = outdir
        self.proc = None
        self.log = outdir / "run.log"

    def xdo(self, *args):
        return subprocess.run(["xdotool", *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def start(self, *extra):
        cmd = [sys.executable, "-m", "label_tools.cli", os.path.join(SAMPLE, "beach.png"),
               "--labels", os.path.join(SAMPLE, "classes.txt"), "--colors", os.path.join(SAMPLE, "colors.txt"),
               "-o", str(self.outdir), "-w", str(W), "-s", "0.5", "-v", *extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        self.win = ""
        while time.time() < deadline and not self.win:
            self.win = self.xdo("search", "--onlyvisible", "--name", "label_tools annotate").split("\n")[0]
            time.sleep(0.2)
        assert self.win, f"annotation window did not open: {self.log.read_text()}"
        time.sleep(0.5)
        geo = self.xdo("getwindowgeometry", self.win)
        size = geo.split("Geometry:")[1].split()[0]
        self.width = int(size.split("x")[0])

    def state(self):
        return json.loads((self.outdir / f"{self.stem}_scribbles.json").read_text())

    def scribbles(self):
        return np.array(Image.open(self.outdir / f"{self.stem}_scribbles.png"))

    def wait_for(self, cond, what, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if cond():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; log: {self.log.read_text()[-2000:]}")

    def stroke(self, window, pts):
        """Drag through image pixels pts [(row, col), ...] inside annotation window ``window``."""
        r0, c0 = window
        d = self.width / W
        xy = [(int((c - c0 + 0.5) * d - 0.5), int((r - r0 + 0.5) * d - 0.5)) for r, c in pts]
        self.xdo("mousemove", "--window", self.win, *xy[0])
        time.sleep(0.1)
        self.xdo("mousedown", 1)
        for x, y in xy[1:]:
            self.xdo("mousemove", "--window", self.win, x, y)
            time.sleep(0.05)
        self.xdo("mouseup", 1)

    def key(self, name, times=1):
        for _ in range(times):
            self.xdo("key", "--window", self.win, name)
            time.sleep(0.25)


def test_annotate_kill_resume_finish(display, tmp_path):
    out = tmp_path / "out"
    drv = Driver(display, tmp_path)
    drv.outdir = out
    out.mkdir()
    drv.start("--no-resume")

    # window 1 (rows 0..307, cols 0..460): water stroke, Esc, two land strokes, Z removes the second
    drv.stroke((0, 0), [(270, 50), (270, 150), (280, 250)])
    drv.wait_for(lambda: (drv.scribbles() == 1).sum() > 200, "water stroke saved")
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2")
    drv.stroke((0, 0), [(20, 50), (20, 250)])
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > 200, "land stroke 1 saved")
    first_land = drv.scribbles()
    drv.stroke((0, 0), [(40, 300), (60, 420)])
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > (first_land == 2).sum() + 100, "land stroke 2 saved")
    drv.key("z")
    drv.wait_for(lambda: np.array_equal(drv.scribbles(), first_land), "undo of land stroke 2 only")
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["window_index"] == 1, "window 2")

    # window 2 (rows 0..307, cols 460..920): one stroke per class
    drv.stroke((0, 460), [(280, 500), (280, 700)])
    drv.wait_for(lambda: (drv.scribbles()[:, 460:] == 1).sum() > 100, "water stroke in window 2")
    before_kill = drv.scribbles()

    # the process dies midway (kill -9): nothing drawn is lost
    drv.proc.send_signal(signal.SIGKILL)
    drv.proc.wait(10)
    np.testing.assert_array_equal(drv.scribbles(), before_kill)

    drv.start("--resume")
    time.sleep(0.5)
    assert drv.state()["window_index"] == 1  # back at the window where the user stopped
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2 after resume")
    drv.stroke((0, 460), [(30, 600), (30, 880)])
    drv.wait_for(lambda: (drv.scribbles()[:, 460:] == 2).sum() > 100, "land stroke in window 2")
    final = drv.scribbles()
    drv.key("Escape", 5)  # rest of window 2, windows 3 and 4 -> done
    assert drv.proc.wait(120) == 0, drv.log.read_text()[-2000:]

    # scribble file: both classes, in both windows, undo honoured, every stroke kept
    np.testing.assert_array_equal(drv.scribbles(), final)
    assert (final[:, :460] == 1).any() and (final[:, :460] == 2).any()
    assert (final[:, 460:] == 1).any() and (final[:, 460:] == 2).any()
    assert not final[40:70, 300:430].any()  # the undone stroke
    assert (final[final > 0] == before_kill[final > 0]).sum() >= (before_kill > 0).sum()

    # outputs
    names = sorted(p.name for p in out.iterdir())
    assert {"beach_mres.png", "beach_mres_label.png", "beach_mres.mat", "beach_report.txt"} <= set(names)
    m = loadmat(out / "beach_mres.mat")
    np.testing.assert_array_equal(m["sparse"], final)
    lab = np.array(Image.open(out / "beach_mres_label.png"))
    assert lab.shape == (614, 920) and set(np.unique(lab)) == {0, 1}
    assert (lab[final == 1] == 0).mean() > 0.9 and (lab[final == 2] == 1).mean() > 0.9
    rep = (out / "beach_report.txt").read_text()
    secs = float(rep.split("annotation time: ")[1].split(" s")[0])
    assert secs > 1.0
    assert "drawn in the annotator" in rep


def test_annotate_geotiff_then_q(display, tmp_path):
    """A GeoTIFF opens in the annotator too; Q computes with what exists; the label GeoTIFF is written."""
    import rasterio

    from conftest import shared

    tif = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    out = tmp_path / "geo"
    env = dict(os.environ, DISPLAY=display)
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "label_tools.cli", tif, "--labels", os.path.join(SAMPLE, "classes.txt"),
           "--colors", os.path.join(SAMPLE, "colors.txt"), "-o", str(out), "-w", "400", "--no-resume"]
    log = tmp_path / "geo.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    drv = Driver(display, tmp_path, stem="RGB.byte")
    drv.outdir, drv.proc, drv.log = out, proc, log
    deadline = time.time() + 60
    while time.time() < deadline and not drv.xdo("search", "--onlyvisible", "--name", "label_tools annotate"):
        time.sleep(0.2)
    drv.win = drv.xdo("search", "--onlyvisible", "--name", "label_tools annotate").split("\n")[0]
    assert drv.win, log.read_text()
    time.sleep(0.5)
    drv.width = int(drv.xdo("getwindowgeometry", drv.win).split("Geometry:")[1].split()[0].split("x")[0])
    global W
    saved, W = W, 395  # -w 400: the 791 x 718 scene in 2 x 2 windows of 395-396 x 359
    try:
        drv.stroke((0, 0), [(250, 250), (300, 330)])  # sea, inside the scene
        drv.wait_for(lambda: (drv.scribbles() == 1).sum() > 50, "class 1 stroke")
        drv.key("2")
        drv.stroke((0, 0), [(300, 150), (350, 160)])
        drv.wait_for(lambda: (drv.scribbles() == 2).sum() > 50, "class 2 stroke")
    finally:
        W = saved
    drv.key("q")
    assert proc.wait(120) == 0, log.read_text()[-2000:]
    with rasterio.open(tif) as s, rasterio.open(out / "RGB.byte_mres_geo.tif") as d:
        assert d.crs == s.crs and d.transform == s.transform
        lab = d.read(1)
        valid = s.dataset_mask() > 0
    assert (lab[~valid] == 0).all() and set(np.unique(lab[valid])) <= {1, 2}
