"""Damaged and lying images, found before decoding; NaN/inf as no-data; large real images still read."""
import struct
import zlib

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.cli import main
from label_tools.errors import InputError
from label_tools.imagecheck import check_declared_size, check_jpeg, check_png
from label_tools.io import ArraySource, open_image, read_photo


def encode(ext, arr, *params):
    import cv2

    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


@pytest.fixture
def photo():
    return make_scene(64, 96)[0]


def test_png_structure(tmp_path, photo):
    data = encode(".png", photo)
    assert check_png("x.png", data) == (64, 96, 3, 1)
    with pytest.raises(InputError, match=r"'x.png' is damaged: truncated"):
        check_png("x.png", data[:-1])
    i = data.index(b"IDAT") + 10
    with pytest.raises(InputError, match="CRC error in chunk IDAT"):
        check_png("x.png", data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    grey16 = encode(".png", np.zeros((5, 7), np.uint16))
    assert check_png("g.png", grey16) == (5, 7, 1, 2)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_structure(photo, progressive):
    import cv2

    data = encode(".jpg", photo, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive))
    assert check_jpeg("p.jpg", data) == (64, 96, 3, 1)
    for cut in (len(data) - 2, len(data) // 2, data.index(b"\xff\xda") + 2, 3):
        with pytest.raises(InputError, match="'p.jpg' is damaged"):
            check_jpeg("p.jpg", data[:cut])
    assert check_jpeg("p.jpg", data + b"trailing camera data") == (64, 96, 3, 1)  # after EOI: allowed


def test_declared_size_against_memory():
    check_declared_size("big.png", (6000, 8000, 3, 1), memory=1 << 30)  # 48 MP photo, 1 GiB free: fine
    with pytest.raises(InputError) as e:
        check_declared_size("big.png", (60000, 80000, 3, 1), memory=8 << 30)
    msg = str(e.value)
    assert "\n" not in msg and "'big.png' declares 80000 x 60000 px (4800 MP" in msg and "tiled GeoTIFF" in msg


def test_lying_png_header_one_line(tmp_path, capsys):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    p = tmp_path / "liar.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 300000, 300000, 8, 2, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="declares 300000 x 300000 px"):
        read_photo(str(p))


def test_real_large_png_is_read(tmp_path):
    """A real 40-megapixel PNG is read whole (the size check refuses only what cannot fit in memory)."""
    a = np.zeros((5000, 8000), np.uint8)
    a[::100] = 255
    a[:, ::77] = 128
    p = tmp_path / "large.png"
    p.write_bytes(encode(".png", a))
    got = read_photo(str(p))
    assert got.shape == (5000, 8000) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[::500, ::500], a[::500, ::500])


def test_truncated_jpeg_not_labelled(tmp_path, photo, capsys):
    """The reported bug: libjpeg filled a half JPEG with grey and the run labelled it with exit 0."""
    d = tmp_path
    data = encode(".jpg", photo[..., ::-1])
    (d / "half.jpg").write_bytes(data[: len(data) // 2])
    img, mask = make_scene(64, 96)
    Image.fromarray(scene_scribbles(mask)).save(d / "s.png")
    assert main([str(d / "half.jpg"), "--scribbles", str(d / "s.png"), "-o", str(d / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "half.jpg" in err and "truncated" in err
    assert not (d / "out").exists()


# ---------------------------------------------------------------------------- no-data
def test_array_nan_inf_are_nodata():
    a = np.ones((4, 5, 2), np.float32)
    a[0, 0, 0] = np.nan
    a[1, 1, 1] = np.inf
    a[2, 2, 0] = -np.inf
    src = ArraySource(a)
    valid = src.read_valid()
    assert src.has_nodata and valid.sum() == 17
    assert not valid[0, 0] and not valid[1, 1] and not valid[2, 2]
    x = src.read()
    assert np.isfinite(x).all() and (x[~valid] == 0).all()
    with pytest.raises(InputError, match="only no-data"):
        ArraySource(np.full((3, 3), np.nan, np.float32), "allnan")


def _geotiff(path, arr):
    import rasterio

    prof = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=str(arr.dtype),
                crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000))
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)


def test_partly_nan_raster_labels_nan_as_nodata(tmp_path, capsys):
    import rasterio

    img, mask = make_scene(80, 120)
    a = np.moveaxis(img, -1, 0).astype(np.float32) / 255
    a[:, :, :20] = np.nan  # a NaN strip on the left
    a[1, 60:70, 100:110] = np.inf
    _geotiff(tmp_path / "f.tif", a)
    scr = scene_scribbles(mask)
    scr[5:15, 2:15] = 1  # a stroke on NaN pixels: ignored, not an error
    Image.fromarray(scr).save(tmp_path / "s.png")
    src = open_image(str(tmp_path / "f.tif"))
    valid = src.read_valid()
    assert src.has_nodata and not valid[:, :20].any() and not valid[60:70, 100:110].any()
    assert valid[:, 20:].sum() == 80 * 100 - 100
    assert main([str(tmp_path / "f.tif"), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "o"),
                 "-q"]) == 0
    lab = np.array(Image.open(tmp_path / "o" / "f_mres_label.png"))
    assert (lab[:, :20] == 255).all() and (lab[60:70, 100:110] == 255).all() and (lab[valid] != 255).all()
    with rasterio.open(tmp_path / "o" / "f_mres_geo.tif") as g:
        geo = g.read(1)
    assert (geo[~valid] == 0).all() and (geo[valid] > 0).all()
