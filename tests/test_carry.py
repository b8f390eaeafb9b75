"""A carried model (fitted on one image, applied to another) moves towards the image's class shares
(label_tools/refine.py: carry; Model.predict's ``carried``): exact pieces, then real EM slices."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sklearn.ensemble import RandomForestClassifier

from conftest import make_scene, scene_scribbles, shared
from label_tools import refine
from label_tools.classes import Classes
from label_tools.io import ArraySource
from label_tools.model import Model
from label_tools.synthetic import synthetic_scribbles


def _forest(shares):
    """A forest whose training shares (root nodes, no bootstrap) are exactly ``shares`` (in 1/20)."""
    y = np.concatenate([np.full(int(round(s * 20)), k) for k, s in enumerate(shares)])
    X = np.arange(len(y), dtype=np.float32)[:, None]
    return RandomForestClassifier(n_estimators=2, bootstrap=False, random_state=0).fit(X, y)


def test_carry_shifts_to_the_mean_probability():
    clf = _forest([0.5, 0.5])
    # 10 pixels: the forest's mean is 0.24 / 0.76 -> weights 0.48 / 1.52
    p0 = np.array([0.9, 0.7] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf)
    assert info["image"] == [0.24, 0.76] and info["training"] == [0.5, 0.5] and info["iterations"] == 1
    # pixel 0: 0.9*0.48 : 0.1*1.52 = 0.432 : 0.152 stays class 0; pixel 1: 0.336 : 0.456 turns to class 1
    np.testing.assert_allclose(out[:, 0, 0], [0.432 / 0.584, 0.152 / 0.584], rtol=1e-5)
    np.testing.assert_allclose(out[:, 0, 1], [0.336 / 0.792, 0.456 / 0.792], rtol=1e-5)
    assert info["kept"] == 0.5 and info["applied"]  # class 0 keeps half its pixels: just allowed
    out, info = refine.carry(p, clf, keep=0.6)
    assert out is p and not info["applied"]


def test_carry_shifts_to_a_given_target():
    clf = _forest([0.5, 0.5])
    p0 = np.array([0.9, 0.7] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf, target=[0.2, 0.8])  # weights 0.4 / 1.6, whatever the image's mean
    assert info["image"] == [0.2, 0.8] and info["iterations"] == 0 and info["applied"]
    np.testing.assert_allclose(out[:, 0, 0], [0.36 / 0.52, 0.16 / 0.52], rtol=1e-5)
    np.testing.assert_allclose(out, refine.shift_prior(p, np.array([0.5, 0.5]), np.array([0.2, 0.8])))
    # a target of another length (a model of other classes) falls back to the image's mean
    assert refine.carry(p, clf, target=[1.0])[1]["image"] == [0.24, 0.76]


def test_carry_refuses_a_shift_that_empties_a_class():
    clf = _forest([0.5, 0.5])
    # class 0 wins 2 of 10 pixels, narrowly; the mean (0.2 / 0.8) takes both away
    p0 = np.array([0.55, 0.55] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf)
    assert info["applied"] is False and info["kept"] == 0.0
    assert out is p
    out, info = refine.carry(p, clf, keep=0.0)  # no guard: shifted, class 0 gone
    assert info["applied"] and (out.argmax(axis=0) == 1).all()


def test_carry_skipped_for_an_unknown_classifier():
    from sklearn.linear_model import LogisticRegression

    X, y = np.arange(10, dtype=np.float32)[:, None], np.array([0] * 5 + [1] * 5)
    p = np.full((2, 2, 2), 0.5, np.float32)
    assert refine.carry(p, LogisticRegression().fit(X, y)) == (p, None)


def test_fitted_image_is_not_shifted_other_images_are():
    img, mask = make_scene()
    classes = Classes(("a", "b", "c"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
    src = ArraySource(img)
    model = Model.fit(src, scene_scribbles(mask), classes=classes)
    own = model.predict(src)  # the image just fitted on (the same source): as a single run
    assert own.class_prior is None
    other, _ = make_scene(seed=3)
    r = model.predict(other)
    assert r.class_prior is not None and set(r.class_prior) >= {"applied", "kept", "image", "training"}
    assert model.predict(other, carried=False).class_prior is None
    # the shares moved to are those the forest saw on its training image (Model.chosen)
    shares = model.chosen["class_shares"]
    assert len(shares) == 3 and abs(sum(shares) - 1) < 1e-3
    assert r.class_prior["image"] == pytest.approx(shares, abs=2e-4) and r.class_prior["iterations"] == 0
    # ... the mean of the forest's probabilities over the image (own.forest_probs: the whole grid, every pixel)
    np.testing.assert_allclose(shares, own.forest_probs.reshape(3, -1).mean(axis=1), atol=0.02)
    # settings given by the caller (as job.py does) still get it
    r2 = model.predict(other, settings=replace(model.effective_settings(), crf_weight=0.0))
    assert r2.class_prior == r.class_prior
    again = model.predict(src, carried=False)
    np.testing.assert_array_equal(again.labels, own.labels)


def _slice(name):
    img = np.array(Image.open(shared("isbi2012_em_membranes", "images", name)))
    mask = (np.array(Image.open(shared("isbi2012_em_membranes", "masks", name))) > 0).astype(int)
    return img, mask


def _miou(pred, mask):
    return np.mean([((pred == c) & (mask == c)).sum() / ((pred == c) | (mask == c)).sum() for c in (0, 1)])


def test_em_membranes_carried_over_gain_from_the_shift(tmp_path):
    # a model from slice 00 applied to slices 10 and 15: scribbles are about half membrane, the slices
    # 20-24 % (README, Collections: 0.677 / 0.639 -> 0.721 / 0.707)
    img0, m0 = _slice("00.png")
    model = Model.fit(img0, synthetic_scribbles(m0, fraction=0.01, seed=0),
                      classes=Classes(("membrane", "cell"), ((0, 0, 0), (255, 255, 255))))
    model.save(str(tmp_path / "em.skops"))
    model = Model.load(str(tmp_path / "em.skops"))  # as --model FILE: the shares travel in the file
    shares = model.chosen["class_shares"]
    assert 0.25 < shares[0] < 0.4  # the forest sees about a third membrane on slice 00 (mask: 22 %)
    for name in ("10.png", "15.png"):
        img, m = _slice(name)
        r = model.predict(img)
        assert r.class_prior["image"] == pytest.approx(shares, abs=2e-4)
        assert r.class_prior["applied"] and r.class_prior["image"][0] < 0.4 < r.class_prior["training"][0]
        plain = model.predict(img, carried=False)
        assert (r.labels == 0).mean() < (plain.labels == 0).mean() - 0.03  # fewer membrane pixels
        assert _miou(r.labels, m) > _miou(plain.labels, m) + 0.03
