"""QA round 6: what a new user with phone photos, drone JPEGs, GeoTIFFs and microscopy TIFFs ran into."""
import ctypes
import ctypes.util
import os
import time

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE
from test_annotate_window import Driver, display  # noqa: F401  (the Xvfb fixture)


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def wm_close(display_name: str, win: str):
    """Send WM_DELETE_WINDOW to ``win``, as a window manager's close button does (Xvfb runs no manager)."""
    x = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    x.XInternAtom.restype, x.XInternAtom.argtypes = ctypes.c_ulong, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(_XEvent)]
    x.XFlush.argtypes = x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    d = x.XOpenDisplay(display_name.encode())
    assert d, f"cannot open display {display_name}"
    ev = _XEvent()
    ev.xclient.type = 33  # ClientMessage
    ev.xclient.window = int(win)
    ev.xclient.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", False)
    ev.xclient.format = 32
    ev.xclient.l[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", False)
    x.XSendEvent(d, int(win), False, 0, ctypes.byref(ev))
    x.XFlush(d)
    x.XCloseDisplay(d)


@pytest.mark.window
def test_closing_both_annotator_windows_with_the_close_button_computes_with_the_strokes(display, tmp_path):
    """The overview closed first, then the annotation window: Qt had no window left and
    getWindowProperty raised (a traceback, exit 1, no labels) instead of computing."""
    out = tmp_path / "out"
    out.mkdir()
    drv = Driver(display, out)
    drv.start("--no-resume")
    drv.stroke((0, 0), [(300, 50), (300, 250)])
    drv.wait_for(lambda: (drv.scribbles() == 1).sum() > 100, "water stroke saved")
    drv.key("2")
    drv.stroke((0, 0), [(20, 50), (20, 250)])
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > 100, "land stroke saved")
    drawn = drv.scribbles()
    overview = drv.xdo("search", "--onlyvisible", "--name", "label_tools overview").split("\n")[0]
    wm_close(display, overview)
    time.sleep(0.5)
    wm_close(display, drv.win)
    assert drv.proc.wait(120) == 0, drv.log.read_text()[-2000:]
    assert "Traceback" not in drv.log.read_text()
    lab = np.array(Image.open(out / "beach_mres_label.png"))
    assert lab.shape == (614, 920)
    assert (lab[drawn == 1] == 0).mean() > 0.9 and (lab[drawn == 2] == 1).mean() > 0.9
    np.testing.assert_array_equal(drv.scribbles(), drawn)


@pytest.mark.window
def test_show_window_closed_with_the_close_button_ends_cleanly(display, tmp_path):
    """--show's result window is the only one: its close button took Qt's GUI object with it (exit 1, traceback)."""
    import subprocess
    import sys

    drv = Driver(display, tmp_path)
    cmd = [sys.executable, "-m", "label_tools.cli", os.path.join(SAMPLE, "beach.png"),
           "--scribbles", os.path.join(SAMPLE, "beach_scribbles.png"), "--labels", os.path.join(SAMPLE, "classes.txt"),
           "-o", str(tmp_path / "out"), "--crf-weight", "0.5", "--show", "-q"]
    with open(drv.log, "wb") as log:
        proc = subprocess.Popen(cmd, env=drv.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    drv.proc = proc
    win = ""
    deadline = time.time() + 60
    while not win and time.time() < deadline and proc.poll() is None:
        win = drv.xdo("search", "--onlyvisible", "--name", "label_tools result").split("\n")[0]
        time.sleep(0.2)
    assert win, drv.log.read_text()
    time.sleep(0.3)
    wm_close(display, win)
    assert proc.wait(60) == 0, drv.log.read_text()[-2000:]
    assert drv.log.read_text() == ""
    assert (tmp_path / "out" / "beach_mres_label.png").exists()
