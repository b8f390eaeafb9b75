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
