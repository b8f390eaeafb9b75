"""Checks made on an image file before it is decoded: structure (truncation, broken markers, CRCs)
and declared size against memory.

Decoders are lenient where a labelling tool must not be: libjpeg fills a truncated JPEG with grey
and only warns, so a half-missing photo would be labelled without a word. These checks walk the
file's own structure (PNG chunks and their CRCs; JPEG markers up to the end-of-image marker) and
read the declared size from the header, so a damaged or lying file is refused in one line naming
it. A JPEG has no checksum: a flipped bit inside its compressed data cannot be seen here.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from .errors import InputError

#: OpenCV refuses to decode more pixels than this (CV_IO_MAX_IMAGE_PIXELS default).
CV_MAX_PIXELS = 1 << 30

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _damaged(path, problem, what="image"):
    return InputError(f"{what} {path!r} is damaged: {problem}; re-export or re-copy the file")


def check_png(path: str, data: bytes | None = None, *, what: str = "image") -> tuple:
    """Walk the chunks of a PNG, checking each length and CRC, up to IEND.

    Returns
    -------
    (height, width, channels, bytes_per_sample) declared in IHDR.

    Raises
    ------
    InputError
        Truncated file, bad CRC, missing IHDR/IDAT/IEND, or a zero size.
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    if not data.startswith(_PNG_SIG):
        raise _damaged(path, "the PNG signature is missing", what)
    pos, n = 8, len(data)
    hdr, seen_idat = None, False
    while True:
        if pos + 8 > n:
            raise _damaged(path, f"truncated after {n} bytes (no IEND chunk)", what)
        length, ctype = struct.unpack(">I4s", data[pos: pos + 8])
        cname = ctype.decode("latin-1")
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise _damaged(path, f"truncated inside chunk {cname} at byte {pos} ({n} bytes, chunk needs {end})", what)
        crc = struct.unpack(">I", data[end - 4: end])[0]
        if zlib.crc32(data[pos + 4: end - 4]) & 0xFFFFFFFF != crc:
            raise _damaged(path, f"CRC error in chunk {cname} at byte {pos}", what)
        if hdr is None:
            if ctype != b"IHDR" or length != 13:
                raise _damaged(path, "the first chunk is not a valid IHDR header", what)
            w, h, depth, colour = struct.unpack(">IIBB", data[pos + 8: pos + 18])
            if w == 0 or h == 0 or depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
                raise _damaged(path, f"the header declares {w} x {h} px, bit depth {depth}, colour type {colour}", what)
            hdr = (h, w, {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[colour], 2 if depth == 16 else 1)
        elif ctype == b"IDAT":
            seen_idat = True
        elif ctype == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise _damaged(path, "it holds no image data (no IDAT chunk)", what)
    return hdr


def check_jpeg(path: str, data: bytes | None = None, *, what: str = "image") -> tuple:
    """Walk the markers of a JPEG (baseline or progressive) up to EOI.

    Segment lengths must fit the file, entropy-coded data may only contain stuffed bytes and
    restart markers, and the file must reach its end-of-image marker.

    Returns
    -------
    (height, width, channels, 1) declared in the frame header.
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise _damaged(path, "the JPEG start-of-image marker is missing", what)
    arr = np.frombuffer(data, np.uint8)
    ff = np.flatnonzero(arr[:-1] == 0xFF)
    pos, frame, scans = 2, None, 0
    while True:
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > n:
            raise _damaged(path, f"truncated after {n} bytes (no end-of-image marker)", what)
        if data[pos] != 0xFF:
            raise _damaged(path, f"no marker where one must be, at byte {pos}", what)
        m = data[pos + 1]
        if m == 0xD9:  # EOI
            break
        if 0xD0 <= m <= 0xD7 or m == 0x01:
            pos += 2
            continue
        if m < 0xC0 or m in (0xD8, 0xFF):
            raise _damaged(path, f"invalid marker 0xFF{m:02X} at byte {pos}", what)
        if pos + 4 > n:
            raise _damaged(path, f"truncated after {n} bytes (inside a marker)", what)
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            raise _damaged(path, f"truncated inside segment 0xFF{m:02X} at byte {pos} ({n} bytes)", what)
        if m in _SOF:
            if length < 8:
                raise _damaged(path, "the frame header is too short", what)
            h, w = struct.unpack(">HH", data[pos + 5: pos + 9])
            frame = (h, w, data[pos + 9], 1)
            if w == 0 or frame[2] == 0:
                raise _damaged(path, f"the frame header declares {w} x {h} px with {frame[2]} components", what)
        pos += 2 + length
        if m == 0xDA:  # start of scan: skip the entropy-coded data to the next real marker
            if frame is None:
                raise _damaged(path, "a scan comes before the frame header", what)
            scans += 1
            i = np.searchsorted(ff, pos)
            while True:
                if i >= len(ff):
                    raise _damaged(path, f"truncated after {n} bytes (image data ends without an end-of-image marker)", what)
                nxt = data[ff[i] + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i += 1
                    continue
                pos = int(ff[i])
                break
    if frame is None or not scans:
        raise _damaged(path, "it holds no frame header or no image data", what)
    if frame[0] == 0:
        raise _damaged(path, "the frame header declares a height of 0 (DNL marker JPEGs are not supported)", what)
    return frame


def check_regular_file(path: str, what: str = "image"):
    """Refuse a pipe or a device (bash's ``<(curl ...)``, ``/dev/stdin``) given as an image, scribble, pre-label
    or model file: each is checked, then read again, which a pipe cannot be (its second read finds nothing,
    which the checks took for an empty, damaged or missing file)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the reader says what is wrong
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise InputError(f"{what} {path!r} is a pipe or a device, not a file: it has to be read more than once; "
                         "save it to a file and give that")


def check_photo(path: str, *, what: str = "image") -> tuple | None:
    """Structure and declared size of a JPEG or PNG (by content, not name); None for other formats.

    Returns
    -------
    (height, width, channels, bytes_per_sample) or None
    """
    check_regular_file(path, what)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_PNG_SIG):
        return check_png(path, what=what)
    if head.startswith(b"\xff\xd8"):
        return check_jpeg(path, what=what)
    return None


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux), or a large number if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_declared_size(path: str, shape: tuple, *, memory: int | None = None):
    """Refuse, in one line, an image whose decoded size cannot fit in memory.

    Parameters
    ----------
    shape : tuple (height, width, channels, bytes_per_sample)
        As declared by the file's header.
    memory : int, optional
        Bytes available (default: :func:`available_memory`).
    """
    h, w, c, b = shape
    need = h * w * max(c, 1) * b * 2  # decoded array + one working copy
    memory = available_memory() if memory is None else memory
    if need > memory:
        raise InputError(
            f"image {path!r} declares {w} x {h} px ({h * w / 1e6:.0f} MP, about {need / 2**30:.1f} GiB to decode) "
            f"but only {memory / 2**30:.1f} GiB of memory is available: if the size is real, convert it to a tiled "
            f"GeoTIFF, which is read window by window (gdal_translate -co TILED=YES -co COMPRESS=DEFLATE "
            f"IMAGE OUT.tif), else the header is damaged")
