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


def test_carry_shifts_half_way_to_the_mean_probability():
    clf = _forest([0.5, 0.5])
    # 10 pixels: the forest's mean is 0.24 / 0.76; half way in log space from 0.5 / 0.5:
    # sqrt(0.5 * 0.24) : sqrt(0.5 * 0.76) = 0.3598 : 0.6402
    p0 = np.array([0.9, 0.7] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf)
    assert info["target"] == [0.24, 0.76] and info["training"] == [0.5, 0.5] and info["iterations"] == 1
    assert info["image"] == [0.3598, 0.6402] and info["applied"] and info["kept"] == 1.0
    want = np.sqrt(0.24 / 0.76)  # the weight ratio of class 0 to class 1
    np.testing.assert_allclose(out[:, 0, 1], [0.7 * want / (0.7 * want + 0.3), 0.3 / (0.7 * want + 0.3)], rtol=1e-5)
    # all the way (strength 1): weights 0.48 / 1.52; pixel 1 (0.336 : 0.456) turns to class 1, so class 0
    # keeps half its pixels: just allowed with keep 0.5, refused with 0.6
    out, info = refine.carry(p, clf, strength=1.0)
    assert info["image"] == [0.24, 0.76] and info["kept"] == 0.5 and info["applied"]
    np.testing.assert_allclose(out[:, 0, 1], [0.336 / 0.792, 0.456 / 0.792], rtol=1e-5)
    out, info = refine.carry(p, clf, strength=1.0, keep=0.6)
    assert out is p and not info["applied"]
    out, info = refine.carry(p, clf, strength=0.0)  # not moved at all
    assert info["image"] == [0.5, 0.5]
    np.testing.assert_allclose(out, p, rtol=1e-6)


def test_carry_shifts_to_a_given_target():
    clf = _forest([0.5, 0.5])
    p0 = np.array([0.9, 0.7] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf, target=[0.2, 0.8])  # sqrt(0.1) : sqrt(0.4) = 1/3 : 2/3, whatever the mean
    assert info["target"] == [0.2, 0.8] and info["image"] == [0.3333, 0.6667] and info["iterations"] == 0
    np.testing.assert_allclose(out, refine.shift_prior(p, np.array([0.5, 0.5]), np.array([1 / 3, 2 / 3])),
                               rtol=1e-5)
    # a target of another length (a model of other classes) falls back to the image's mean
    assert refine.carry(p, clf, target=[1.0])[1]["target"] == [0.24, 0.76]


def test_carry_refuses_a_shift_that_empties_a_class():
    clf = _forest([0.5, 0.5])
    # class 0 wins 2 of 10 pixels, narrowly; the mean (0.2 / 0.8) takes both away
    p0 = np.array([0.55, 0.55] + [0.1] * 8, np.float32)
    p = np.stack([p0, 1 - p0])[:, None, :]
    out, info = refine.carry(p, clf)
    assert info["applied"] is False and info["kept"] == 0.0
    assert out is p
    out, info = refine.carry(p, clf, keep=0.0, strength=1.0)  # no guard, all the way: class 0 gone
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
    assert r.class_prior["target"] == pytest.approx(shares, abs=2e-4) and r.class_prior["iterations"] == 0
    # ... the mean of the forest's probabilities over the image (own.forest_probs: the whole grid, every pixel)
    np.testing.assert_allclose(shares, own.forest_probs.reshape(3, -1).mean(axis=1), atol=0.02)
    # settings given by the caller (as job.py does) still get it
    r2 = model.predict(other, settings=replace(model.effective_settings(), crf_weight=0.0))
    assert r2.class_prior == r.class_prior
    again = model.predict(src, carried=False)
    np.testing.assert_array_equal(again.labels, own.labels)


def _pair(folder, name):
    img = np.array(Image.open(shared(folder, "images", name)))
    img = img[..., :3] if img.ndim == 3 else img
    mask = (np.array(Image.open(shared(folder, "masks", name))) > 0).astype(int)
    return img, (mask[..., 0] if mask.ndim == 3 else mask)


def _miou(pred, mask):
    return np.mean([((pred == c) & (mask == c)).sum() / ((pred == c) | (mask == c)).sum() for c in (0, 1)])


def _carried_model(folder, name, tmp_path):
    img0, m0 = _pair(folder, name)
    model = Model.fit(img0, synthetic_scribbles(m0, fraction=0.01, seed=0),
                      classes=Classes(("zero", "one"), ((0, 0, 0), (255, 255, 255))))
    model.save(str(tmp_path / "m.skops"))
    return Model.load(str(tmp_path / "m.skops"))  # as --model FILE: the shares travel in the file


def test_he_tiles_carried_over_gain_from_the_shift(tmp_path):
    # a model from H&E tile 02 applied to tiles 06 and 07 (another stain): the scribbles are about half
    # nuclei, the forest sees 27 % on tile 02 (README, Collections: 0.463 / 0.450 -> 0.610 / 0.604)
    model = _carried_model("he_nuclei_miccai", "image02.png", tmp_path)
    shares = model.chosen["class_shares"]
    assert 0.15 < shares[1] < 0.35
    for name in ("image06.png", "image07.png"):
        img, m = _pair("he_nuclei_miccai", name)
        r = model.predict(img)
        assert r.class_prior["applied"] and r.class_prior["target"] == pytest.approx(shares, abs=2e-4)
        assert shares[1] < r.class_prior["image"][1] < r.class_prior["training"][1]  # half way, in log space
        plain = model.predict(img, carried=False)
        assert (r.labels == 1).mean() < (plain.labels == 1).mean() - 0.1  # far fewer nucleus pixels
        assert _miou(r.labels, m) > _miou(plain.labels, m) + 0.1


def test_em_membranes_carried_over_fewer_membrane_pixels(tmp_path):
    # slices 10 and 15 of a model from slice 00: membranes 20-24 % of the mask, 33 % of the unshifted labels
    model = _carried_model("isbi2012_em_membranes", "00.png", tmp_path)
    for name in ("10.png", "15.png"):
        img, m = _pair("isbi2012_em_membranes", name)
        r, plain = model.predict(img), model.predict(img, carried=False)
        assert (r.labels == 0).mean() < (plain.labels == 0).mean() - 0.02
        assert _miou(r.labels, m) > _miou(plain.labels, m) + 0.01  # 0.677 / 0.639 -> 0.696 / 0.664
