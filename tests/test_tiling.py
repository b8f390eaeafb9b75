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
    assert len(wins) == 6  # 2 rows x 3 columns, as 100-pixel windows from the corner gave
    assert wins[0] == (0, 60, 0, 83) and wins[-1] == (60, 120, 166, 250)  # shared equally: no 20-row strip


def test_annotation_windows_cover_the_image_once_no_side_above_size():
    for shape, size in [((614, 920), 500), ((614, 920), 300), ((718, 791), 400), ((5, 3000), 16), ((1, 1), 16),
                        ((512, 1024), 256)]:
        wins = annotation_windows(shape, size)
        cover = np.zeros(shape, np.int32)
        for r0, r1, c0, c1 in wins:
            cover[r0:r1, c0:c1] += 1
            assert 0 < r1 - r0 <= size and 0 < c1 - c0 <= size
        assert (cover == 1).all()
        sides = {r1 - r0 for r0, r1, _, _ in wins}, {c1 - c0 for _, _, c0, c1 in wins}
        assert max(sides[0]) - min(sides[0]) <= 1 and max(sides[1]) - min(sides[1]) <= 1
        assert len(wins) == -(-shape[0] // size) * -(-shape[1] // size)
    assert annotation_windows((614, 920), 500)[0] == (0, 307, 0, 460)  # was 500 x 500, then 114-row strips


def test_scale_helpers():
    assert scaled_shape((101, 50), 0.5) == (50, 25)
    assert auto_scale((1000, 1000), 1e6) == 1.0
    assert auto_scale((2000, 2000), 1e6) == pytest.approx(0.5)
    assert grow((0, 10, 5, 10), 3, (12, 11)) == (0, 12, 2, 11)


def test_window_is_the_one_window_type_and_still_a_tuple():
    from label_tools.tiling import Window, to_full
    from label_tools.upsample import label_windows

    a = np.arange(7 * 9).reshape(7, 9)
    w = Window(1, 4, 2, 8)
    np.testing.assert_array_equal(a[w.toslices()], a[1:4, 2:8])
    assert w.shape == (3, 6) and (w.height, w.width) == (3, 6)
    r0, r1, c0, c1 = w  # unpacks, compares and hashes as the bare 4-tuple
    assert (r0, r1, c0, c1) == w and {w: 1}[(1, 4, 2, 8)] == 1
    import json

    assert json.loads(json.dumps(w)) == [1, 4, 2, 8]
    t = tiles((100, 37), 16, 5)[3]
    assert isinstance(t.inner, Window) and isinstance(t.outer, Window)
    assert isinstance(grow(w, 2, (7, 9)), Window) and grow(w, 2, (7, 9)) == (0, 6, 0, 9)
    assert all(isinstance(x, Window) for x in annotation_windows((50, 70), 20) + label_windows((50, 70), 32))
    assert to_full(Window(0, 5, 0, 5), (0.5, 0.5), (11, 11)) == (0, 10, 0, 10)
