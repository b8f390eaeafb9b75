import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from label_tools import unary
from label_tools.crf import CRFParams, refine
from label_tools.errors import InputError


def test_sample_buffer_bounded_and_seeded():
    rng = np.random.default_rng(0)
    buf = unary.SampleBuffer(3, max_per_class=50, seed=1)
    for _ in range(4):
        x = rng.random((100, 5)).astype(np.float32)
        buf.add(x, np.r_[np.zeros(80, int), np.full(20, 2)])
    X, y = buf.arrays()
    assert np.bincount(y, minlength=3).tolist() == [50, 0, 50]
    assert buf.counts.tolist() == [320, 0, 80]
    assert X.shape == (100, 5)


def test_fit_needs_two_classes():
    with pytest.raises(InputError, match="1 class .*water.*at least two classes"):
        unary.fit(np.zeros((5, 2), np.float32), np.zeros(5, int), class_names=["water", "land"])


def test_predict_proba_absent_class_zero():
    X = np.array([[0.0], [1.0], [0.1], [0.9]], np.float32)
    clf = unary.fit(X, np.array([0, 2, 0, 2]), classifier=DecisionTreeClassifier(random_state=0))
    p = unary.predict_proba(clf, np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4, 1), 3)
    assert p.shape == (3, 3, 4) and p.dtype == np.float32
    assert (p[1] == 0).all() and np.allclose(p.sum(0), 1)
    assert p[0, 0, 0] == 1 and p[2, -1, -1] == 1


def test_crf_cleans_noisy_unary_non_square():
    """Two colour halves with a noisy unary: the CRF output agrees with the colours far better."""
    h, w = 30, 50
    rng = np.random.default_rng(0)
    truth = np.zeros((h, w), int)
    truth[:, 20:] = 1
    img = np.where(truth[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    p1 = np.where(truth == 1, 0.65, 0.35) + rng.normal(0, 0.25, (h, w))
    p1 = np.clip(p1, 0.01, 0.99)
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    q = refine(probs, img, params=CRFParams(n_iter=5, bilateral_sxy=20))
    assert q.shape == (2, h, w) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-4)
    before = (probs.argmax(0) == truth).mean()
    after = (q.argmax(0) == truth).mean()
    assert before < 0.9 and after > 0.99


def test_crf_bad_image_shape():
    with pytest.raises(ValueError, match=r"expected uint8 of shape \(4, 6, 3\)"):
        refine(np.ones((2, 4, 6), np.float32), np.zeros((6, 4, 3), np.uint8))


def test_class_weights_mild_and_normalised():
    y = np.r_[np.zeros(1600, int), np.full(100, 2)]
    w = unary.class_weights(y)
    assert set(w) == {0, 2}
    assert w[2] / w[0] == pytest.approx(16 ** 0.25)  # 16x fewer samples -> 2x the weight, not 16x
    assert (w[0] * 1600 + w[2] * 100) / len(y) == pytest.approx(1.0)


def test_sparse_prediction_matches_dense_and_asks_fewer_pixels():
    from conftest import make_scene
    from label_tools.features import multiscale_features

    img, mask = make_scene(90, 130)
    f = multiscale_features(img.astype(np.float32) / 255, sigmas=(1, 2, 4))
    rng = np.random.default_rng(0)
    idx = rng.choice(mask.size, 600, replace=False)
    clf = unary.fit(f.reshape(-1, f.shape[-1])[idx], mask.ravel()[idx])
    asked = []

    class Counting:
        classes_ = clf.classes_

        def predict_proba(self, X):
            asked.append(len(X))
            return clf.predict_proba(X)

    dense = unary.predict_proba(clf, f, 3)
    sparse = unary.predict_proba_sparse(Counting(), f, 3, step=2)
    assert (dense.argmax(0) == sparse.argmax(0)).mean() > 0.999
    np.testing.assert_array_equal(sparse[:, ::2, ::2], dense[:, ::2, ::2])  # lattice points exact
    assert sum(asked) < 0.7 * mask.size
    # a tile with 2 px of context predicts exactly what the whole image gives
    part = unary.predict_proba_sparse(clf, f[11:60, 23:101], 3, step=2, origin=(11, 23))
    np.testing.assert_allclose(part[:, 2:-2, 2:-2], sparse[:, 13:58, 25:99], atol=1e-6)


def test_sparse_prediction_from_planes_is_the_same():
    from conftest import make_scene
    from label_tools.features import multiscale_features

    img, mask = make_scene(90, 130)
    x = img.astype(np.float32) / 255
    f = multiscale_features(x, sigmas=(1, 2, 4))
    p = multiscale_features(x, sigmas=(1, 2, 4), planes=True)
    idx = np.random.default_rng(1).choice(mask.size, 600, replace=False)
    clf = unary.fit(f.reshape(-1, f.shape[-1])[idx], mask.ravel()[idx])
    for kw in (dict(step=2, origin=(3, 1)), dict(step=1)):
        np.testing.assert_array_equal(unary.predict_proba_sparse(clf, p, 3, planes=True, **kw),
                                      unary.predict_proba_sparse(clf, f, 3, **kw))
    # a window of the planes (as the pipeline's tiles are) gives the window's prediction
    np.testing.assert_array_equal(unary.predict_proba_sparse(clf, p[:, 11:60, 23:101], 3, planes=True, origin=(11, 23)),
                                  unary.predict_proba_sparse(clf, f[11:60, 23:101], 3, origin=(11, 23)))


def test_forest_probabilities_tree_by_tree_equal_the_forests_without_its_parallel(monkeypatch):
    """unary._proba sums the trees itself: bit for bit the forest's own predict_proba, and never
    through scikit-learn's Parallel (whose workers reset the process-wide warning filters, which
    two threads predicting at once would disturb)."""
    import sklearn.utils.parallel as skp

    rng = np.random.default_rng(0)
    X = rng.random((3000, 7)).astype(np.float32)
    y = rng.integers(0, 3, 3000)
    clf = unary.default_classifier(n_estimators=9, class_weight=unary.class_weights(y)).fit(X, y)
    Z = rng.random((70000, 7)).astype(np.float32)
    want = unary._serial(clf).predict_proba(Z)

    def no_parallel(*a, **k):
        raise AssertionError("scikit-learn Parallel used")

    monkeypatch.setattr(skp.Parallel, "__call__", no_parallel)
    np.testing.assert_array_equal(unary._proba(clf, Z, chunk=20000), want)  # threads over blocks
    np.testing.assert_array_equal(unary._proba(clf, Z[:100]), want[:100])


def test_refiner_built_once_equals_refine_for_each_unary():
    from label_tools.crf import Refiner

    rng = np.random.default_rng(3)
    k, h, w = 3, 40, 56
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    valid = np.ones((h, w), bool)
    valid[:5] = False
    params = CRFParams(n_iter=5)
    crf = Refiner(img, k, params=params)
    for seed in range(3):  # the same kernels, a new unary each time
        p = rng.dirichlet(np.ones(k), size=h * w).T.reshape(k, h, w).astype(np.float32)
        got = crf.refine(p, valid=valid if seed == 1 else None)
        want = refine(p, img, params=params, valid=valid if seed == 1 else None)
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="probs: expected shape"):
        crf.refine(np.ones((k, h + 1, w), np.float32) / k)
    one = Refiner(img, 1)
    assert (one.refine(np.ones((1, h, w), np.float32)) == 1).all()
