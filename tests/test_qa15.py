"""qa15: microscopy and remote-sensing files as they arrive (found by a sweep of real file kinds).

Each test makes its small file with the library a user's tool would have used (Pillow, tifffile,
rasterio/GDAL) and reads it the way ``label-image`` does.
"""
import os

import numpy as np
import pytest

from label_tools.io import open_image


def _write_png(path, grey, *, depth, trns):
    """A grey PNG of ``depth`` bits (1, 2 or 4: Pillow writes 8) with a tRNS chunk, written chunk by chunk."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w = grey.shape
    per = 8 // depth
    rows = []
    for r in grey:
        packed = np.zeros((w + per - 1) // per, np.uint8)
        for i, v in enumerate(r):
            packed[i // per] |= int(v) << (8 - depth * (i % per + 1))
        rows.append(b"\x00" + packed.tobytes())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
                + chunk(b"tRNS", trns) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _two_regions(h=30, w=44, seed=0):
    """uint8 (h, w) grey: left half dark, right half bright, with noise; and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 1
    img = np.where(mask == 1, 180, 60) + rng.integers(-20, 20, (h, w))
    return img.astype(np.uint8), mask


@pytest.mark.parametrize("kind", ["palette", "grey", "rgb", "grey4bit"])
def test_png_trns_transparency_is_nodata(tmp_path, kind):
    """A PNG made transparent by a tRNS chunk (a palette with transparent entries, GIMP's indexed export; or
    one grey or RGB value keyed out) had its transparent pixels labelled as the key colour: only an alpha
    channel made pixels no-data."""
    from PIL import Image

    img, _ = _two_regions()
    transparent = np.zeros(img.shape, bool)
    transparent[:5, :] = True
    transparent[20:, 3] = True
    p = str(tmp_path / f"{kind}.png")
    if kind == "palette":
        idx = (img > 120).astype(np.uint8)
        idx[transparent] = 2
        im = Image.fromarray(idx, mode="P")
        im.putpalette([30, 60, 160, 200, 180, 90, 255, 0, 255] + [0] * 253 * 3)
        im.save(p, transparency=bytes([255, 255, 0]))
    elif kind == "grey":
        g = np.maximum(img, 1)
        g[transparent] = 0
        Image.fromarray(g).save(p, transparency=0)
    elif kind == "rgb":
        rgb = np.stack([img, img // 2, 255 - img], axis=-1)
        rgb[transparent] = (255, 0, 255)
        rgb[~transparent & (rgb == (255, 0, 255)).all(-1)] = (254, 0, 255)
        Image.fromarray(rgb).save(p, transparency=(255, 0, 255))
    else:  # a 4-bit grey PNG keyed on value 0 (libpng widens it to 8 bits)
        g = np.maximum(img // 17, 1).astype(np.uint8)
        g[transparent] = 0
        _write_png(p, g, depth=4, trns=b"\x00\x00")
    src = open_image(p)
    assert src.has_nodata
    np.testing.assert_array_equal(src.read_valid(), ~transparent)
