"""A carried model adapts to the image it is applied to (label_tools/adapt.py, pipeline.predict's
``samples``): exact pieces, then real EM slices."""
from dataclasses import replace

import numpy as np
from PIL import Image

from conftest import make_scene, scene_scribbles, shared
from label_tools import adapt
from label_tools.classes import Classes
from label_tools.io import ArraySource
from label_tools.model import Model
from label_tools.synthetic import synthetic_scribbles


def test_pseudo_labels_take_each_class_surest_pixels_up_to_its_sample_count():
    # 10 pixels of class 0 with confidence 0.55..1.0, 5 of class 1 with 0.6..1.0
    p0 = np.concatenate([np.linspace(0.55, 1.0, 10), 1 - np.linspace(0.6, 1.0, 5)])
    probs = np.stack([p0, 1 - p0]).astype(np.float32)
    idx, lab = adapt.pseudo_labels(probs, np.array([100, 100]), top=0.2, ratio=1.0)
    # top 20 %: the two surest of class 0 (positions 8, 9), the surest of class 1 (position 14)
    assert idx.tolist() == [8, 9, 14] and lab.tolist() == [0, 0, 1]
    # at most ratio x the model's samples: 1 of class 0 (drawn among 8, 9), none of class 1
    idx, lab = adapt.pseudo_labels(probs, np.array([2, 0]), top=0.2, ratio=0.5)
    assert len(idx) == 1 and idx[0] in (8, 9) and lab.tolist() == [0]
    # a class nobody labels gets none; wider top -> more
    idx, lab = adapt.pseudo_labels(probs, np.array([100, 100]), top=1.0)
    assert sorted(idx.tolist()) == list(range(15)) and (lab == probs.argmax(0)[idx]).all()


def test_reservoir_keeps_valid_pixels_with_their_features():
    # features of a tile's outer window, feature 0 = grid row, feature 1 = grid column
    outer, inner = (8, 40, 0, 30), (10, 30, 0, 25)
    r, c = np.mgrid[outer[0]:outer[1], outer[2]:outer[3]]
    f = np.stack([r, c]).astype(np.float32)
    valid = np.ones((20, 25), bool)
    valid[:, :5] = False
    res = adapt.Reservoir(500, max_pixels=1000)  # rate 1: every valid pixel
    res.add(f, inner, outer, valid)
    rows, cols, x = res.arrays()
    assert len(rows) == 20 * 20 and cols.min() == 5 and rows.min() == 10 and rows.max() == 29
    np.testing.assert_array_equal(x[:, 0], rows) and np.testing.assert_array_equal(x[:, 1], cols)
    half = adapt.Reservoir(2000, max_pixels=1000, seed=1)  # rate 1/2
    half.add(f, inner, outer, None)
    n = len(half.arrays()[0])
    assert 180 < n < 320


def test_only_carried_predictions_adapt():
    img, mask = make_scene()
    classes = Classes(("a", "b", "c"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
    src = ArraySource(img)
    model = Model.fit(src, scene_scribbles(mask), classes=classes)
    own = model.predict(src)  # the image just fitted on: as a single run, no adaptation
    assert own.class_prior is None and own.classifier is model.classifier
    other, _ = make_scene(seed=3)
    r = model.predict(other)
    assert r.classifier is not model.classifier and sum(r.class_prior["adapted"]) > 0
    assert all(0 < n <= m for n, m in zip(r.class_prior["adapted"], np.bincount(model.y, minlength=3)))
    off = model.predict(other, settings=replace(model.effective_settings(), adapt=0.0))
    assert off.classifier is model.classifier and "adapted" not in off.class_prior
    again = model.predict(src, carried=False)
    np.testing.assert_array_equal(again.labels, own.labels)


def _pair(name):
    img = np.array(Image.open(shared("isbi2012_em_membranes", "images", name)))
    mask = (np.array(Image.open(shared("isbi2012_em_membranes", "masks", name))) > 0).astype(int)
    return img, mask


def _miou(pred, mask):
    return np.mean([((pred == c) & (mask == c)).sum() / ((pred == c) | (mask == c)).sum() for c in (0, 1)])


def test_em_slices_carried_over_gain_from_adapting(tmp_path):
    # a model from slice 00 (scribble seed 1, where the carried forest is weakest) on slices 05 and 20
    img0, m0 = _pair("00.png")
    model = Model.fit(img0, synthetic_scribbles(m0, fraction=0.01, seed=1),
                      classes=Classes(("membrane", "cell"), ((0, 0, 0), (255, 255, 255))))
    model.save(str(tmp_path / "m.skops"))
    model = Model.load(str(tmp_path / "m.skops"))  # as --model FILE: the samples travel in the file
    off = replace(model.effective_settings(), adapt=0.0)
    for name in ("05.png", "20.png"):
        img, m = _pair(name)
        r, plain = model.predict(img), model.predict(img, settings=off)
        assert _miou(r.labels, m) > _miou(plain.labels, m) + 0.02
