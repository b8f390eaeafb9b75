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


def _phone_photo(tmp_path, orientation=6):
    """beach.png stored turned back, with the EXIF tag that turns it upright again (as phones save portraits)."""
    im = Image.open(os.path.join(SAMPLE, "beach.png"))
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "phone.jpg"
    im.transpose(Image.Transpose.ROTATE_90).save(p, quality=95, exif=exif.tobytes())
    return p


@pytest.mark.parametrize("option", ["--scribbles", "--init"])
def test_file_drawn_on_the_unturned_pixels_of_a_phone_photo_says_so(tmp_path, capsys, option):
    from label_tools.cli import main

    photo = _phone_photo(tmp_path)
    unturned = tmp_path / "drawn_in_qgis.png"
    scr = np.array(Image.open(os.path.join(SAMPLE, "beach_scribbles.png")))
    Image.fromarray(np.rot90(scr)).save(unturned)
    extra = ["--scribbles", str(unturned)] if option == "--scribbles" else ["--init", str(unturned), "--headless"]
    rc = main([str(photo), *extra, "--labels", os.path.join(SAMPLE, "classes.txt"), "-o", str(tmp_path / "out"),
               "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "614 x 920" in err and "EXIF orientation 6" in err and "turned 90\u00b0 clockwise" in err, err
    assert not (tmp_path / "out").exists()


def test_scribbles_of_another_size_say_nothing_of_orientation(tmp_path, capsys):
    """The note is for the stored size only: a plain photo, or a size that is no turn of it, keeps the old line."""
    from label_tools.cli import main

    photo = _phone_photo(tmp_path)
    wrong = tmp_path / "s.png"
    Image.fromarray(np.zeros((600, 920), np.uint8)).save(wrong)
    assert main([str(photo), "--scribbles", str(wrong), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "920 x 600 px but the image is 920 x 614 px" in err and "EXIF" not in err, err


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_with_transparency_and_an_exif_orientation_is_turned_like_every_other_photo(tmp_path, orientation):
    """A PNG with alpha was read with IMREAD_UNCHANGED, which leaves EXIF orientation out: the labels came out
    unturned while label-export (and photo viewers) turned the same file."""
    from PIL import ImageOps

    from label_tools.io import open_image, read_photo

    rng = np.random.default_rng(0)
    rgba = rng.integers(1, 255, (30, 50, 4), dtype=np.uint8)
    rgba[:4, :7, 3] = 0  # transparent corner: no-data
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "a.png"
    Image.fromarray(rgba).save(p, exif=exif.tobytes())
    upright = np.array(ImageOps.exif_transpose(Image.open(p)))
    src = open_image(str(p))
    assert src.shape == upright.shape[:2] and src.orientation == orientation
    np.testing.assert_array_equal(src.read_display(), np.where(upright[..., 3:] > 0, upright[..., :3], 0))
    np.testing.assert_array_equal(src.read_valid(), upright[..., 3] > 0)
    np.testing.assert_array_equal(read_photo(str(p)), upright[..., :3])


def test_twenty_classes_are_all_reachable_by_keys():
    """With 20 classes only 1-9 had keys: a class past 9 could be reached by Esc alone, and once passed only in
    the next window. Two digits typed quickly now name it; slower, or past the class count, they are two jumps."""
    from label_tools.session import DIGIT_PAIR_SECONDS, Session

    s = Session((40, 60), 20, [(0, 40, 0, 60)])
    assert s.class_digit(1, 100.0) and s.class_index == 0
    assert s.class_digit(5, 100.3) and s.class_index == 14  # class 15
    assert s.class_digit(2, 101.0) and s.class_index == 1
    assert s.class_digit(0, 101.2) and s.class_index == 19  # class 20
    assert s.class_digit(1, 102.0) and s.class_digit(3, 102.0 + DIGIT_PAIR_SECONDS + 0.1) and s.class_index == 2
    assert s.class_digit(2, 104.0) and s.class_digit(7, 104.1) and s.class_index == 6  # no class 27: class 7
    assert not s.class_digit(0, 106.0) and s.class_index == 6
    assert s.window_index == 0
    nine = Session((40, 60), 9, [(0, 40, 0, 60)])
    assert nine.class_digit(1, 0.0) and nine.class_digit(2, 0.1) and nine.class_index == 1  # 9 classes: one digit


def test_help_overlay_lists_every_class_past_nine():
    import cv2

    from label_tools.annotate import help_layout

    names = [f"class {i}" for i in range(1, 21)]
    _, placed, _ = help_layout(names, 800, 800, cv2)
    text = " ".join(t for t, _, _ in placed)
    assert "20 class 20" in text and "10 class 10" in text and "more lines" not in text
    assert any("two digits" in t for t, _, _ in placed)


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_sar_raster_is_refused_not_labelled_by_its_real_part(tmp_path, capsys, dtype):
    """A SAR single-look complex GeoTIFF was read through GDAL's float conversion, which keeps the real part
    alone (phase noise, not backscatter): labels came out of it without a word."""
    import rasterio

    from label_tools.cli import main

    p = tmp_path / "slc.tif"
    z = (np.arange(40 * 60).reshape(40, 60) % 7 + 1j).astype("complex64")
    from affine import Affine

    with rasterio.open(p, "w", driver="GTiff", height=40, width=60, count=1, dtype=dtype, crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as d:
        d.write(z if dtype == "complex64" else (z * 10).astype("complex64"), 1)
    scr = np.zeros((40, 60), np.uint8)
    scr[5, 5:20], scr[30, 30:50] = 1, 2
    Image.fromarray(scr).save(tmp_path / "s.png")
    rc = main([str(p), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "slc.tif" in err and "complex" in err and "amplitude" in err, err
    assert not (tmp_path / "out").exists()
