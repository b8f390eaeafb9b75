"""Prediction is bit-for-bit reproducible: the same model on the same image gives the same bytes on every
run (a cluster run is compared with the in-process run byte for byte)."""
import numpy as np

from conftest import make_scene, scene_scribbles
from label_tools import unary
from label_tools.io import ArraySource
from label_tools.pipeline import Settings, predict, train
from label_tools.upsample import label_windows, upsample_labels, upsample_window


def test_forest_probabilities_identical_run_to_run():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 12)).astype(np.float32)
    y = (X[:, 0] + 0.7 * rng.normal(size=4000) > 0).astype(int) + (X[:, 1] > 0.6)
    clf = unary.fit(X, y)
    assert clf.n_jobs == -1  # the default forest is threaded: its own predict_proba is not reproducible
    Z = rng.normal(size=(200, 300, 12)).astype(np.float32)
    ref = unary.predict_proba(clf, Z, 3)
    serial = unary._serial(clf).predict_proba(Z.reshape(-1, 12)).T.reshape(3, 200, 300)
    assert np.array_equal(ref, serial.astype(np.float32))
    for _ in range(3):
        assert np.array_equal(unary.predict_proba(clf, Z, 3), ref)


def test_label_windows_block_aligned_and_cover_once():
    wins = label_windows((2500, 1030), 1024)
    cover = np.zeros((2500, 1030), int)
    for r0, r1, c0, c1 in wins:
        assert r0 % 1024 == 0 and c0 % 1024 == 0
        cover[r0:r1, c0:c1] += 1
    assert (cover == 1).all() and len(wins) == 6


def test_windowed_upsampling_equals_whole():
    img, mask = make_scene(300, 420)
    valid = np.ones(mask.shape, bool)
    valid[:40, :60] = False
    src = ArraySource(img, valid=valid)
    s = Settings(scale=0.3, sigmas=(1, 2))
    tr = train(src, scene_scribbles(mask), n_classes=3, settings=s)
    r = predict(src, tr.classifier, n_classes=3, settings=s, upsample=False)
    assert r.labels is None
    whole = upsample_labels(src, r.probs, tile=128)
    pieced = np.full(whole.shape, 77, np.uint8)
    for w in reversed(label_windows(src.shape, 128)):  # any order, any process
        pieced[w[0]:w[1], w[2]:w[3]] = upsample_window(src, r.probs, w)
    assert np.array_equal(pieced, whole)
    assert (whole[:40, :60] == 255).all() and (whole == mask)[valid].mean() > 0.95
