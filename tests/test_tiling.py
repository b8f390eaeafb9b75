import numpy as np
import pytest

from label_tools.tiling import annotation_windows, auto_scale, grow, scaled_shape, tiles


@pytest.mark.parametrize("shape,tile,overlap", [((100, 37), 16, 5), ((7, 300), 64, 0), ((513, 257), 128, 32),
                                                ((5, 5), 100, 3)])
def test_inner_windows_cover_once_and_reassemble(shape, tile, overlap):
    rng = np.random.default_rng(0)
    img = rng.random(shape)
    out = np.full(shape, np.nan)
    hits = np.zeros(shape, int)
    for t in tiles(shape, tile, overlap):
        r0, r1, c0, c1 = t.outer
        piece = img[r0:r1, c0:c1]  # what a worker would see
        out[t.inner[0]:t.inner[1], t.inner[2]:t.inner[3]] = piece[t.crop]
        hits[t.inner[0]:t.inner[1], t.inner[2]:t.inner[3]] += 1
        assert t.outer[0] == max(t.inner[0] - overlap, 0) and t.outer[3] == min(t.inner[3] + overlap, shape[1])
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, img)


def test_tiles_even_no_sliver():
    sizes = {t.inner[3] - t.inner[2] for t in tiles((10, 1030), 512)}
    assert sizes <= {343, 344}


def test_annotation_windows_non_square():
    wins = annotation_windows((120, 250), 100)
    assert wins[0] == (0, 100, 0, 100) and wins[-1] == (100, 120, 200, 250)
    assert len(wins) == 6


def test_scale_helpers():
    assert scaled_shape((101, 50), 0.5) == (50, 25)
    assert auto_scale((1000, 1000), 1e6) == 1.0
    assert auto_scale((2000, 2000), 1e6) == pytest.approx(0.5)
    assert grow((0, 10, 5, 10), 3, (12, 11)) == (0, 12, 2, 11)
