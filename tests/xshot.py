"""A window's pixels straight from the X server (XGetImage through libX11), for the window tests.

ImageMagick's ``import -window ID`` reads the same pixels but takes ~1.3 s a grab (its start-up and a
round of server queries), which made the screenshot polls of the window tests most of their time; this
takes a few milliseconds. Where libX11 or a 32-bit-per-pixel TrueColor image is not available, ``grab``
falls back to ``import``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading

import numpy as np

_lock = threading.Lock()
_lib = None


class _XImage(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte)), ("byte_order", ctypes.c_int),
                ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int),
                ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int),
                ("red_mask", ctypes.c_ulong), ("green_mask", ctypes.c_ulong), ("blue_mask", ctypes.c_ulong)]


_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_ignore = _ERROR_HANDLER(lambda d, e: 0)  # a BadMatch/BadWindow (window gone or unmapped) must not exit pytest


def _x11():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("X11") or "libX11.so.6"
        x = ctypes.cdll.LoadLibrary(name)
        x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x.XGetGeometry.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong)] + \
            [ctypes.POINTER(ctypes.c_int)] * 2 + [ctypes.POINTER(ctypes.c_uint)] * 4
        x.XGetImage.restype = ctypes.POINTER(_XImage)
        x.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
        x.XDestroyImage.argtypes = [ctypes.POINTER(_XImage)]
        x.XSetErrorHandler.restype = ctypes.c_void_p
        x.XSetErrorHandler.argtypes = [ctypes.c_void_p]
        _lib = x
    return _lib


def _shift(mask):
    return (mask & -mask).bit_length() - 1


def _xgetimage(display: str, win: str):
    """RGB uint8 (h, w, 3) of window ``win``, or None when this path cannot read it."""
    try:
        x = _x11()
    except OSError:
        return None
    with _lock:
        d = x.XOpenDisplay(display.encode())
        if not d:
            return None
        old = x.XSetErrorHandler(ctypes.cast(_ignore, ctypes.c_void_p))
        try:
            root, xy, wh = ctypes.c_ulong(), [ctypes.c_int() for _ in range(2)], [ctypes.c_uint() for _ in range(4)]
            if not x.XGetGeometry(d, int(win, 0), ctypes.byref(root), *map(ctypes.byref, xy), *map(ctypes.byref, wh)):
                raise RuntimeError(f"window {win} not found on {display}")
            w, h = wh[0].value, wh[1].value
            img = x.XGetImage(d, int(win, 0), 0, 0, w, h, ctypes.c_ulong(-1).value, 2)  # AllPlanes, ZPixmap
            x.XSync(d, 0)
            if not img:
                raise RuntimeError(f"XGetImage of window {win} on {display} failed (unmapped?)")
            try:
                im = img.contents
                if im.bits_per_pixel != 32 or im.byte_order != 0 or not (im.red_mask and im.green_mask and im.blue_mask):
                    return None
                buf = np.ctypeslib.as_array(im.data, shape=(im.height * im.bytes_per_line,))
                px = buf.view("<u4").reshape(im.height, im.bytes_per_line // 4)[:, :im.width]
                out = np.empty((im.height, im.width, 3), np.uint8)
                for i, m in enumerate((im.red_mask, im.green_mask, im.blue_mask)):
                    out[..., i] = (px & m) >> _shift(m)
                return out
            finally:
                x.XDestroyImage(img)
        finally:
            x.XSync(d, 0)
            x.XSetErrorHandler(old)
            x.XCloseDisplay(d)


def grab(env: dict, win: str, path=None) -> np.ndarray:
    """The pixels of X window ``win`` (an id as xdotool prints it) on ``env['DISPLAY']`` as RGB uint8 (h, w, 3);
    also written to ``path`` (PNG) when given, for a failed test to be looked at."""
    from PIL import Image

    a = _xgetimage(env["DISPLAY"], str(win))
    if a is None:  # the slow but general way
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = path or os.path.join(tmp, "shot.png")
            subprocess.run(["import", "-window", str(win), f"png:{p}"], env=env, check=True, timeout=30,
                           capture_output=True)
            return np.array(Image.open(p).convert("RGB"))
    if path is not None:
        Image.fromarray(a).save(path, compress_level=1)
    return a
