"""Forests on few samples (the strokes of a tiny image): the same trees as before, and no warning.

scikit-learn warns (UserWarning, on the user's terminal) when a fractional ``max_samples`` gives a
small bootstrap; ``unary.bootstrap_size`` passes the same count as an integer.
"""
import warnings

import numpy as np
import pytest
from PIL import Image

from label_tools import unary
from label_tools.cli import main


@pytest.mark.parametrize("n,weighted", [(9, False), (9, True), (400, False), (4001, True)])
def test_bootstrap_size_draws_what_the_fraction_drew(n, weighted):
    """Integer max_samples from bootstrap_size gives the very forest the fraction gave (same
    probabilities bit for bit), with class weights and sample weights as the pipeline uses them."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0.3).astype(np.int64) + (X[:, 1] > 1)
    cw = unary.class_weights(y)
    sw = np.where(np.arange(n) % 3 == 0, 0.5, 1.0) if weighted else None
    a = unary.default_classifier(n_estimators=6, max_samples=0.5, class_weight=cw, n_jobs=1)
    b = unary.default_classifier(n_estimators=6, class_weight=cw, n_jobs=1,
                                 max_samples=unary.bootstrap_size(0.5, y, class_weight=cw, sample_weight=sw))
    assert isinstance(b.max_samples, int) and b.max_samples >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fraction's warning on few samples
        a.fit(X, y, sample_weight=sw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.fit(X, y, sample_weight=sw)
    assert a._n_samples_bootstrap == b._n_samples_bootstrap == b.max_samples
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


def test_tiny_image_runs_without_warnings(tmp_path, capfd):
    """A 16 x 12 photo with two 4-5 px strokes: labels written, exit 0, nothing on stderr but our lines
    (pytest turns any Python warning into an error here)."""
    rng = np.random.default_rng(0)
    img = np.zeros((12, 16, 3), np.uint8)
    img[:6] = (30, 90, 160)
    img[6:] = (200, 180, 120)
    img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
    scr = np.zeros((12, 16), np.uint8)
    scr[1, 1:5] = 1
    scr[10, 10:15] = 2
    Image.fromarray(img).save(tmp_path / "tiny.png")
    Image.fromarray(scr).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "tiny.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "o"),
                 "-q"]) == 0
    labels = np.asarray(Image.open(tmp_path / "o" / "tiny_mres_label.png"))
    assert labels.shape == (12, 16) and labels[0, 0] == 0 and labels[11, 15] == 1
    err = capfd.readouterr().err
    assert "Warning" not in err and "warn(" not in err, err
