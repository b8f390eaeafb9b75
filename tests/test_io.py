import numpy as np
import pytest
from PIL import Image

from label_tools.errors import InputError, OptionError
from label_tools.io import ArraySource, open_image


def test_rgb_png_roundtrip_display(tmp_path, scene):
    img, _ = scene
    p = tmp_path / "a.png"
    Image.fromarray(img).save(p)
    src = open_image(str(p))
    assert src.shape == (96, 140) and src.count == 3
    np.testing.assert_array_equal(src.read_display(), img)
    f = src.read((10, 20, 30, 45))
    assert f.shape == (10, 15, 3) and f.dtype == np.float32
    np.testing.assert_allclose(f, img[10:20, 30:45] / 255.0, atol=1e-6)


def test_rgba_alpha_ignored(tmp_path, scene):
    img, _ = scene
    rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
    p = tmp_path / "a.png"
    Image.fromarray(rgba).save(p)
    src = open_image(str(p))
    assert src.count == 3
    np.testing.assert_array_equal(src.read_display(), img)


def test_grey_and_16bit(tmp_path):
    g = (np.arange(30 * 50).reshape(30, 50) * 40).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g).save(p)
    src = open_image(str(p))
    assert src.count == 1 and src.dtype == "uint16"
    d = src.read_display()
    assert d.shape == (30, 50, 3) and d[..., 0].min() == 0 and d[..., 0].max() == 255
    assert (d[..., 0] == d[..., 2]).all()


def test_exif_orientation(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :5] = 255  # bright band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "o.jpg"
    Image.fromarray(img).save(p, exif=exif.tobytes(), quality=95)
    src = open_image(str(p))
    assert src.shape == (40, 20)
    d = src.read_display()
    assert d[:5].mean() > 200 and d[-10:].mean() < 50  # left band is now on top



@pytest.mark.parametrize("where", ["before", "after", "none"])
def test_exif_orientation_of_a_png_found_without_decoding(tmp_path, where):
    """A PNG's eXIf chunk is found by walking the chunk headers, before the pixel data or after it
    (Pillow decodes the whole image to look there); a PNG without one is as stored."""
    import struct
    import zlib

    from label_tools.io import exif_orientation

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "o.png"
    Image.fromarray(img).save(p, exif=exif.tobytes() if where == "before" else None)
    if where == "after":  # move the chunk behind the pixels, just before IEND
        data = p.read_bytes()
        body = exif.tobytes()
        if body.startswith(b"Exif\x00\x00"):
            body = body[6:]
        chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
        end = data.rindex(b"IEND") - 4
        p.write_bytes(data[:end] + chunk + data[end:])
        assert data.index(b"IDAT") < p.read_bytes().index(b"eXIf")
    want = 1 if where == "none" else 6
    with Image.open(p) as im:
        assert im.getexif().get(0x0112, 1) == want  # Pillow agrees on the file made
    assert exif_orientation(str(p)) == want
    src = open_image(str(p))
    assert src.shape == ((20, 40) if where == "none" else (40, 20))

def test_missing_and_garbage(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_image(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"bad\.jpg.*cannot be read"):
        open_image(str(bad))


def test_resampled_read_and_bands():
    a = np.random.default_rng(0).integers(0, 255, (40, 60, 4), dtype=np.uint8)
    src = ArraySource(a, display_bands=[3, 2, 1])
    assert src.read(out_shape=(20, 30)).shape == (20, 30, 4)
    np.testing.assert_array_equal(src.read_display(), a[..., [2, 1, 0]])
    with pytest.raises(OptionError, match="--bands: band 5 is out of range"):
        ArraySource(a, display_bands=[5, 1, 2])


def test_float_robust_stretch():
    a = np.random.default_rng(0).normal(1000, 10, (50, 70)).astype(np.float32)
    a[0, 0] = 1e9  # one outlier must not flatten the rest
    d = ArraySource(a).read_display()
    assert d[1:, 1:].std() > 30


def test_plain_tiff_16bit_rgb_no_georef(tmp_path):
    import cv2

    a = (np.random.default_rng(0).random((40, 70, 3)) * 60000).astype(np.uint16)
    p = str(tmp_path / "plain.tif")
    cv2.imwrite(p, a[..., ::-1])
    src = open_image(p)
    assert src.georef is None and src.shape == (40, 70) and src.count == 3
    d = src.read_display()
    assert d.dtype == np.uint8 and d.shape == (40, 70, 3)
    assert np.corrcoef(d[..., 0].ravel(), a[..., 0].ravel())[0, 1] > 0.99  # band order kept (R first)


@pytest.mark.parametrize("bands, kw", [(3, {}), (None, {}), (4, {}), (5, {"display_bands": [5, 3, 1]}), (3, {"nodata": True})])
def test_uint8_display_fast_path_equals_scaled_read(bands, kw):
    """8-bit arrays are displayed straight from their bytes: exactly what the float round trip gives."""
    from label_tools.io import ImageSource

    rng = np.random.default_rng(3)
    shape = (37, 53) if bands is None else (37, 53, bands)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    a.flat[:256] = np.arange(256)
    valid = rng.random((37, 53)) > 0.3 if kw.pop("nodata", False) else None
    src = ArraySource(a, valid=valid, **kw)
    for win, out in [(None, None), ((3, 30, 5, 40), None), ((3, 30, 5, 40), (9, 11)), (None, (20, 25)),
                     ((0, 37, 0, 53), (80, 90))]:
        fast = src.read_display(win, out_shape=out)
        x = ImageSource.read(src, win, out_shape=out)[..., list(src._display)]
        x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
        assert fast.dtype == np.uint8 and fast.flags.c_contiguous
        np.testing.assert_array_equal(fast, np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))
    if valid is not None:
        assert (src.read_display()[~valid] == 0).all()
