"""The edge-following upsampling stage (label_tools.upsample) on its own; the whole pipeline's use of it
(tiles covering the image, seams, determinism across windows) is tested in test_pipeline.py and
test_determinism.py."""
import numpy as np
import pytest

from label_tools.upsample import guided_coefficients


def test_guided_filter_preserves_constant_and_follows_guide():
    g = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    maps = np.full((2, 20, 30), 0.3, np.float32)
    a, b = guided_coefficients(g, maps, radius=2, eps=1e-3)
    np.testing.assert_allclose(a * g + b, maps, atol=1e-5)
    step = np.zeros((20, 30), np.float32)
    step[:, 13:] = 1
    blurry = np.clip((np.arange(30) - 9) / 8.0, 0, 1)[None].repeat(20, 0).astype(np.float32)[None]
    a, b = guided_coefficients(step, blurry, radius=3, eps=1e-4)
    sharp = (a * step + b)[0]
    assert (sharp[:, :13] < 0.5).all() and (sharp[:, 13:] > 0.5).all()  # the edge moves to the guide's


def test_normalise_filtered_keeps_argmax_and_handles_all_negative():
    from label_tools.upsample import normalise_filtered

    q = np.array([[[0.7, -0.2]], [[0.5, -0.1]], [[-0.2, -0.3]]], np.float32)  # (3, 1, 2)
    p = normalise_filtered(q.copy())
    np.testing.assert_allclose(p[:, 0, 0], [0.7 / 1.2, 0.5 / 1.2, 0], rtol=1e-6)
    np.testing.assert_array_equal(p[:, 0, 1], [0, 1, 0])  # all outputs <= 0: one-hot at the largest


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_argmax_classes_equals_numpy_first_on_ties(k):
    from label_tools.upsample import argmax_classes

    rng = np.random.default_rng(k)
    q = rng.normal(size=(k, 19, 23)).astype(np.float32)
    q[:, :4] = 0.25  # all tied: class 0
    q[-1, 5] = q[0, 5] + 1
    q[0, 6] = q[-1, 6] = q[:, 6].max() + 1  # tie between first and last: first
    got = argmax_classes(q)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, q.argmax(axis=0))
    out = np.full((19, 23), 9, np.uint8)
    assert argmax_classes(q, out=out) is out
    np.testing.assert_array_equal(out, q.argmax(axis=0))


def test_in_order_keeps_order_and_bounds_pending():
    import threading
    import time

    from label_tools.upsample import _in_order

    running, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002 * (i % 3))
        with lock:
            running[0] -= 1
        return i * i

    out = []
    for v in _in_order(work, list(range(40)), workers=2):
        out.append(v)
        time.sleep(0.001)
    assert out == [i * i for i in range(40)]
    assert peak[0] <= 2
    assert list(_in_order(work, [3], workers=2)) == [9]
    assert list(_in_order(work, [], workers=2)) == []


def test_upsample_radius_shrinks_only_when_the_grid_is_capped_below_the_structures():
    from label_tools.upsample import upsample_radius

    assert upsample_radius(0.5, None) == 2
    assert upsample_radius(0.59, 0.59) == 2  # the grid follows the scribbled structures
    assert upsample_radius(0.8, 0.4) == 2
    assert upsample_radius(0.245, 0.533) == 1  # 100 MP: grid capped at 6 MP, nuclei need 0.53
    assert upsample_radius(0.01, 0.9) == 1


@pytest.mark.parametrize("fine", [0, 2])
def test_probabilities_do_not_depend_on_the_window_size(fine):
    """Across window seams the probabilities are the ones a single window gives: each window reads
    its own margin, so 64-pixel windows (many seams, non-square image) give one 1024-pixel window's
    probabilities up to float rounding (the box filters' running sums start elsewhere), and the
    labels differ only where two classes tie within that rounding."""
    from conftest import make_scene, scene_scribbles
    from label_tools.io import ArraySource
    from label_tools.pipeline import Settings, predict, train
    from label_tools.upsample import upsample_labels

    img, mask = make_scene(210, 330)
    src = ArraySource(img)
    s = Settings(scale=0.35, sigmas=(1, 2))
    tr = train(src, scene_scribbles(mask), n_classes=3, settings=s)
    r = predict(src, tr.classifier, n_classes=3, settings=s, upsample=False)

    def run(tile):
        probs = np.full((3,) + mask.shape, np.nan, np.float32)

        def keep(win, q, lab):
            probs[:, win[0]:win[1], win[2]:win[3]] = q

        return upsample_labels(src, r.probs, tile=tile, fine=fine, on_tile=keep), probs

    one, p_one = run(1024)
    seams, p_seams = run(64)
    assert not np.isnan(p_seams).any()
    assert np.abs(p_seams - p_one).max() < 1e-4
    top2 = np.sort(p_one, axis=0)[-2:]
    differ = seams != one
    assert (top2[1] - top2[0])[differ].max(initial=0) < 1e-4
    assert differ.mean() < 1e-3 and (one == mask).mean() > 0.95
