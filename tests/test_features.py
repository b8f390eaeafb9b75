import numpy as np
import pytest

from label_tools.features import halo, multiscale_features, n_features


def test_shape_dtype_non_square():
    img = np.random.default_rng(0).random((23, 41, 2)).astype(np.float32)
    f = multiscale_features(img, sigmas=(1, 2))
    assert f.shape == (23, 41, n_features(2, (1, 2))) == (23, 41, 16)
    assert f.dtype == np.float32 and np.isfinite(f).all()


def test_grey_input():
    f = multiscale_features(np.zeros((10, 12), np.float32), sigmas=(1,))
    assert f.shape == (10, 12, 4)


@pytest.mark.parametrize("window", [(30, 70, 40, 95), (0, 25, 0, 33), (60, 90, 100, 130)])
def test_tile_with_halo_equals_whole(window):
    """A tile computed with halo context equals the same pixels of the whole image's features."""
    sig = (1.0, 3.0)
    img = np.random.default_rng(1).random((90, 130, 3)).astype(np.float32)
    whole = multiscale_features(img, sigmas=sig)
    r0, r1, c0, c1 = window
    m = halo(sig)
    R0, R1, C0, C1 = max(r0 - m, 0), min(r1 + m, 90), max(c0 - m, 0), min(c1 + m, 130)
    part = multiscale_features(img[R0:R1, C0:C1], sigmas=sig)[r0 - R0: r1 - R0, c0 - C0: c1 - C0]
    np.testing.assert_allclose(part, whole[r0:r1, c0:c1], atol=1e-5)


def test_features_respond_to_structure():
    """Edge feature peaks on a step; the ridge eigenvalue is strongly negative on a bright line."""
    img = np.zeros((40, 60), np.float32)
    img[:, 30:] = 1
    f = multiscale_features(img, sigmas=(1,))
    edge = f[20, :, 1]
    assert edge.argmax() in (29, 30)
    line = np.zeros((40, 60), np.float32)
    line[:, 30] = 1
    f = multiscale_features(line, sigmas=(1,))
    assert f[20, 30, 3] < -0.1 and abs(f[20, 10, 3]) < 1e-6


def test_bad_sigmas():
    with pytest.raises(ValueError, match="sigmas"):
        multiscale_features(np.zeros((5, 5), np.float32), sigmas=(0,))


def test_many_bands_beyond_opencv_channel_limit():
    """9 bands x 4 sigmas x 4 = 144 features (> OpenCV's 128 channels): same values as band by band."""
    sig = (1.0, 2.0, 3.0, 4.0)
    img = np.random.default_rng(2).random((20, 31, 9)).astype(np.float32)
    f = multiscale_features(img, sigmas=sig)
    assert f.shape == (20, 31, 144)
    for b in (0, 8):
        one = multiscale_features(img[..., b], sigmas=sig)  # (smoothed x4, then 3 structure x4)
        np.testing.assert_allclose(f[..., b * 4: b * 4 + 4], one[..., :4], atol=1e-6)
        np.testing.assert_allclose(f[..., 36 + b * 12: 36 + b * 12 + 12], one[..., 4:], atol=1e-6)


def test_band_stats_are_the_robust_percentiles_and_standardise_maps_them_to_0_1():
    from label_tools.features import band_stats, standardise

    img = np.stack([np.linspace(0, 1, 2001, dtype=np.float32).reshape(1, -1),
                    np.linspace(2, 4, 2001, dtype=np.float32).reshape(1, -1)], axis=-1)  # (1, 2001, 2)
    lo, rng = band_stats(img)
    np.testing.assert_allclose(lo, (0.005, 2.01), atol=1e-4)
    np.testing.assert_allclose(rng, (0.99, 1.98), atol=1e-4)
    out = standardise(img, (lo, rng))
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(np.percentile(out, (0.5, 99.5), axis=(0, 1)), [[0, 0], [1, 1]], atol=1e-4)
    valid = np.zeros((1, 2001), bool)
    valid[0, 1000:] = True  # only the upper half counts
    lo2, _ = band_stats(img, valid)
    assert lo2[0] > 0.5 and lo2[1] > 3.0
    grey = np.full((4, 5), 0.25, np.float32)
    assert band_stats(grey) == ((0.25,), (0.001,))  # flat band: range floored, no division by zero
    np.testing.assert_allclose(standardise(grey, band_stats(grey)), 0, atol=1e-6)


def test_planes_are_the_same_features_plane_by_plane():
    img = np.random.default_rng(2).random((70, 90, 3)).astype(np.float32)
    f = multiscale_features(img, sigmas=(1, 2, 4))
    p = multiscale_features(img, sigmas=(1, 2, 4), planes=True)
    assert p.shape == (f.shape[-1], 70, 90) and p.flags.c_contiguous
    np.testing.assert_array_equal(np.moveaxis(p, 0, -1), f)
