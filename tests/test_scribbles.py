import numpy as np
import pytest
from PIL import Image

from label_tools.errors import InputError
from label_tools.scribbles import downscale, read_scribbles, save_scribbles, scribbles_from_rgb


def test_grey_roundtrip_atomic(tmp_path):
    s = np.zeros((30, 50), np.uint8)
    s[5:8, 10:40] = 1
    s[20, :] = 3
    p = str(tmp_path / "s.png")
    save_scribbles(p, s)
    np.testing.assert_array_equal(read_scribbles(p, (30, 50), n_classes=3), s)
    assert [f.name for f in tmp_path.iterdir()] == ["s.png"]  # no temp file left


def test_size_mismatch(tmp_path):
    p = str(tmp_path / "s.png")
    Image.fromarray(np.zeros((30, 50), np.uint8)).save(p)
    with pytest.raises(InputError, match=r"s\.png.*50 x 30 px but the image is 60 x 30"):
        read_scribbles(p, (30, 60))


def test_value_without_class(tmp_path):
    p = str(tmp_path / "s.png")
    a = np.zeros((10, 10), np.uint8)
    a[0, 0] = 4
    Image.fromarray(a).save(p)
    with pytest.raises(InputError, match="value 4 but the labels give only 2 classes"):
        read_scribbles(p, (10, 10), n_classes=2)


def test_rgb_painting_maps_through_colours(tmp_path):
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    rgb = np.zeros((12, 16, 3), np.uint8)  # black = unlabelled
    rgb[2, :] = [250, 10, 5]  # anti-aliased red
    rgb[8, :] = [0, 0, 255]
    rgb[10, :] = [128, 128, 128]  # grey: no class
    p = str(tmp_path / "paint.png")
    Image.fromarray(rgb).save(p)
    s = read_scribbles(p, (12, 16), colors=colors)
    assert (s[2] == 1).all() and (s[8] == 2).all() and (s[10] == 0).all() and s.sum() == 16 * 3
    with pytest.raises(InputError, match="--colors"):
        read_scribbles(p, (12, 16))


def test_rgba_transparent_unlabelled():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255
    s = scribbles_from_rgb(rgba, np.array([[255, 0, 0]], np.uint8))
    assert s[:2].all() and not s[2:].any()


def test_downscale_keeps_thin_strokes():
    s = np.zeros((100, 150), np.uint8)
    s[50, 10:140] = 2  # 1-px line
    s[10:30, 10:30] = 1
    d = downscale(s, (20, 30), 2)
    assert d.shape == (20, 30) and (d == 2).sum() >= 25 and (d == 1).sum() >= 16


def test_palette_png_maps_through_colours(tmp_path):
    idx = np.zeros((8, 10), np.uint8)
    idx[2] = 1
    idx[5] = 2
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p = str(tmp_path / "pal.png")
    im.save(p)
    s = read_scribbles(p, (8, 10), colors=np.array([[0, 0, 255], [255, 0, 0]], np.uint8))
    assert (s[2] == 2).all() and (s[5] == 1).all() and s.sum() == 30  # colours, not palette indices


def test_size_checked_before_decoding(tmp_path):
    p = str(tmp_path / "big.png")
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(p)
    with pytest.raises(InputError, match="400 x 300 px but the image is 40 x 30"):
        read_scribbles(p, (30, 40))


def test_value_counts_exact_in_blocks_and_on_views():
    from label_tools.scribbles import value_counts

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (301, 207)).astype(np.uint8)
    a[:50] = 7  # a bin far above the others
    ref = np.bincount(a.ravel(), minlength=256)
    np.testing.assert_array_equal(value_counts(a), ref)
    np.testing.assert_array_equal(value_counts(a, block_pixels=1000), ref)  # many row blocks
    np.testing.assert_array_equal(value_counts(a[::3, 1::2]), np.bincount(a[::3, 1::2].ravel(), minlength=256))
    assert value_counts(a).dtype == np.int64


def test_read_before_the_image_size_is_known(tmp_path):
    """The early read (job.py, beside the image): the file's own size, nothing decoded above
    ``max_pixels``, ``on_open`` called before decoding; the size is then checked as usual."""
    from label_tools.scribbles import check_shape, read_scribbles

    a = np.zeros((30, 50), np.uint8)
    a[3:9, 4:20] = 2
    Image.fromarray(a).save(tmp_path / "s.png")
    calls = []
    got = read_scribbles(str(tmp_path / "s.png"), None, max_pixels=1500, on_open=lambda: calls.append(1))
    np.testing.assert_array_equal(got, a)
    assert calls == [1]
    assert read_scribbles(str(tmp_path / "s.png"), None, max_pixels=1499, on_open=lambda: calls.append(2)) is None
    assert calls == [1, 2]
    with pytest.raises(InputError, match="50 x 30 px but the image is 40 x 30 px"):
        check_shape(str(tmp_path / "s.png"), got.shape, (30, 40))
