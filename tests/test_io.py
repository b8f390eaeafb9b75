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
