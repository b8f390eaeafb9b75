"""Model files: round trip, refusal of anything that could run code, format versions, refit."""
import json
import os
import pickle
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from conftest import make_scene, scene_scribbles
from label_tools.classes import load_classes
from label_tools.errors import InputError
from label_tools.io import ArraySource
from label_tools.model import CARRIED_IMAGES, Model, cap_carried, drop_conflicts
from label_tools.modelfile import ALLOWED_TYPES, FORMAT_VERSION, HEADER, load_model, read_header
from label_tools.pipeline import Settings

NAMES = ("water", "sand", "grass")


@pytest.fixture(scope="module")
def fitted():
    img, mask = make_scene(80, 130, seed=0)
    classes = load_classes(None, None, n_classes=3)
    classes = type(classes)(NAMES, classes.colors)
    m = Model.fit(img, scene_scribbles(mask), classes=classes, settings=Settings(crf_weight=0.5))
    m.predict(img)  # uses up the fit's feature cache, as a run does
    m.chosen = {"crf_weight": 0.4}
    return m


def test_round_trip_labels_identical(fitted, tmp_path):
    p = tmp_path / "m.skops"
    fitted.save(str(p))
    assert read_header(str(p))["format_version"] == FORMAT_VERSION
    m = load_model(str(p))
    assert m.classes.names == NAMES
    np.testing.assert_array_equal(m.classes.colors, fitted.classes.colors)
    assert m.settings == fitted.settings and m.n_bands == 3 and m.chosen == {"crf_weight": 0.4}
    assert m.effective_settings().crf_weight == 0.4
    np.testing.assert_array_equal(m.X, fitted.X)
    np.testing.assert_array_equal(m.y, fitted.y)
    assert m.X.dtype == np.float32 and m.y.dtype == np.int64
    assert m.info["file"]["versions"]["scikit-learn"]
    other, _ = make_scene(70, 90, seed=5)  # an image the model never saw
    np.testing.assert_array_equal(m.predict(other).labels, fitted.predict(other).labels)


def test_every_stored_type_is_allowed(fitted, tmp_path):
    from label_tools.modelfile import _schema_types

    p = tmp_path / "m.skops"
    fitted.save(str(p))
    types = _schema_types(str(p))
    assert "sklearn.tree._tree.Tree" in types and set(types) <= ALLOWED_TYPES
    with zipfile.ZipFile(p) as z:
        assert json.loads(z.read(HEADER))["format"] == "label_tools.model"


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.skops"
    evil.write_bytes(pickle.dumps(_RunsCommand(marker)))
    with pytest.raises(InputError, match="not a label_tools model file.*never loaded"):
        load_model(str(evil))
    assert not marker.exists()


def test_skops_archive_naming_os_system_is_refused(fitted, tmp_path):
    import skops.io as sio

    p = tmp_path / "evil.skops"
    sio.dump({"format": "label_tools.model", "classifier": os.system}, str(p))
    with zipfile.ZipFile(p, "a") as z:
        z.writestr(HEADER, json.dumps({"format": "label_tools.model", "format_version": FORMAT_VERSION}))
    with pytest.raises(InputError, match=r"outside the trusted list \(posix.system\)"):
        load_model(str(p))


def test_other_format_version_says_so(fitted, tmp_path):
    p = tmp_path / "m.skops"
    fitted.save(str(p))
    q = tmp_path / "future.skops"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(q, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == HEADER:
                data = json.dumps({"format": "label_tools.model", "format_version": 7, "label_tools": "9.0"})
            zout.writestr(item, data)
    with pytest.raises(InputError, match=r"written by label_tools 9.0 in model format 7; this label_tools .* reads "
                                         r"format 1 only"):
        load_model(str(q))


@pytest.mark.parametrize("content,match", [
    (b"not a model\n", "not a label_tools model file"),
    (None, "not a label_tools model file.*no label_tools.json header"),
])
def test_invalid_files(tmp_path, content, match):
    p = tmp_path / "bad.skops"
    if content is None:
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("hello.txt", "hi")
    else:
        p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_model(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "nope.skops"))


def test_refit_new_scribbles_win(tmp_path):
    """The same pixels labelled class 1 by the model and class 2 by new scribbles end as class 2."""
    img, mask = make_scene(80, 130, seed=0)
    classes = load_classes(None, None, n_classes=3)
    scr = scene_scribbles(mask)
    base = Model.fit(img, scr, classes=classes)
    flipped = scr.copy()
    flipped[scr == 1], flipped[scr == 2] = 2, 1  # classes 1 and 2 swapped
    grown = Model.fit(img, flipped, classes=classes, base=base)
    lab = grown.predict(img).labels
    assert ((lab == 1) == (mask == 0)).mean() > 0.9  # what was water is now called sand
    assert ((lab == 0) == (mask == 1)).mean() > 0.9
    # contradicted samples were dropped, so the grown model is not twice the size
    assert len(grown.y) < 1.2 * len(base.y)


def test_refit_keeps_samples_from_other_images():
    img, mask = make_scene(80, 130, seed=0)
    img2, mask2 = make_scene(80, 130, seed=3)
    classes = load_classes(None, None, n_classes=3)
    base = Model.fit(img, scene_scribbles(mask), classes=classes)
    grown = Model.fit(img2, scene_scribbles(mask2, seed=1), classes=classes, base=base)
    assert len(grown.y) > 1.5 * len(base.y)
    assert grown.info["images"] == ["<array>", "<array>"]


def test_drop_conflicts_exact():
    X_new = np.array([[0, 0], [0, 1], [10, 10], [10, 11]], np.float32)
    y_new = np.array([0, 0, 1, 1])
    X_old = np.array([[0, 0.5], [10, 10.5], [0, 0.2], [50, 50]], np.float32)
    y_old = np.array([1, 1, 0, 0])
    X, y = drop_conflicts(X_old, y_old, X_new, y_new)
    np.testing.assert_array_equal(X, X_old[1:])  # only the old class-1 sample inside class 0's scribbles goes
    np.testing.assert_array_equal(y, y_old[1:])


def test_cap_carried_exact():
    """Per class, old + new stay within the cap; new samples all kept; old ones drawn uniformly, seeded."""
    st = Settings(max_samples_per_class=10, max_samples=30)  # 3 classes: cap = 2 x 30 / 3 = 20 per class
    y_old = np.repeat([0, 1, 2], [50, 5, 30])
    X_old = np.arange(len(y_old), dtype=np.float32)[:, None]
    y_new = np.repeat([0, 1, 2], [8, 30, 20])
    X, y = cap_carried(X_old, y_old, y_new, 3, st)
    assert CARRIED_IMAGES == 2
    np.testing.assert_array_equal(np.bincount(y, minlength=3), [12, 0, 0])  # 20 - 8, 20 - 30 -> 0, 20 - 20
    assert set(X[:, 0].astype(int)) <= set(range(50)) and len(set(X[:, 0])) == 12  # distinct class-0 rows
    X2, _ = cap_carried(X_old, y_old, y_new, 3, st)
    np.testing.assert_array_equal(X, X2)
    Xs, ys = cap_carried(X_old[:6], y_old[:6], y_new[:0], 3, st)  # under the cap: unchanged
    assert Xs is X_old[:6] or np.array_equal(Xs, X_old[:6])


def test_refits_keep_samples_bounded():
    """A collection refitted image after image: the model's samples per class stop growing at the cap."""
    classes = load_classes(None, None, n_classes=3)
    st = Settings(max_samples_per_class=300, max_samples=900)
    cap = CARRIED_IMAGES * 900 // 3
    m, sizes = None, []
    for seed in range(5):
        img, mask = make_scene(80, 130, seed=seed)
        m = Model.fit(img, scene_scribbles(mask, seed=seed), classes=classes, settings=st, base=m)
        sizes.append(np.bincount(m.y, minlength=3))
    assert sizes[0].max() <= 300
    assert all((s <= cap).all() for s in sizes)
    assert sizes[-1].sum() > sizes[0].sum()  # earlier images still count
    assert len(m.info["images"]) == 5


def test_model_stretch_applied_to_rasters_of_same_dtype():
    rng = np.random.default_rng(0)
    a = rng.integers(1000, 2000, (40, 50, 2)).astype(np.uint16)
    b = rng.integers(1000, 4000, (40, 50, 2)).astype(np.uint16)  # brighter content: its own stretch differs
    sa, sb = ArraySource(a), ArraySource(b)
    scr = np.zeros((40, 50), np.uint8)
    scr[5:10, 5:30], scr[25:30, 5:30] = 1, 2
    m = Model.fit(sa, scr, classes=load_classes(None, None, n_classes=2))
    assert m.stretch["dtype"] == "uint16"
    assert not np.allclose(sb._hi, sa._hi)
    assert m.apply_stretch(sb)
    np.testing.assert_array_equal(sb._lo, sa._lo)
    np.testing.assert_array_equal(sb._hi, sa._hi)
    assert not m.apply_stretch(ArraySource(b.astype(np.float32)))  # another dtype keeps its own


def test_stretch_per_image_by_default_training_stretch_on_request(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(1000, 2000, (40, 50, 2)).astype(np.uint16)
    a[:20] += 1500  # two materials
    scr = np.zeros((40, 50), np.uint8)
    scr[5:10, 5:30], scr[25:30, 5:30] = 1, 2
    m = Model.fit(a, scr, classes=load_classes(None, None, n_classes=2))
    m.predict(a)
    m.save(str(tmp_path / "m.skops"))
    m = load_model(str(tmp_path / "m.skops"))
    np.testing.assert_array_equal(m.stretch["hi"], ArraySource(a)._hi)
    b = (a * 2).astype(np.uint16)  # twice as bright: its own stretch undoes that, the training stretch does not
    own, fixed = ArraySource(b), ArraySource(b)
    hi_own = own._hi.copy()
    lab_own = m.predict(own).labels
    np.testing.assert_array_equal(own._hi, hi_own)
    # the forest as trained (not adapted to the image, label_tools.adapt, which would undo much of it)
    lab_fixed = m.predict(fixed, stretch="model", settings=replace(m.effective_settings("model"), adapt=0.0)).labels
    np.testing.assert_array_equal(fixed._hi, m.stretch["hi"])
    truth = np.where(np.arange(40)[:, None] < 20, 0, 1) * np.ones((1, 50), int)
    assert (lab_own == truth).mean() > 0.95
    assert (lab_fixed == truth).mean() < 0.7  # everything looks like the bright material


def _two_stains(gain, offset, seed):
    """Two materials (left/right halves) with texture, as an 8-bit photo; a different 'stain' = gain and
    offset of the bands."""
    rng = np.random.default_rng(seed)
    a = np.zeros((60, 80, 3), np.float32)
    a[:, :40] = (0.55, 0.35, 0.6)
    a[:, 40:] = (0.8, 0.6, 0.75)
    a += rng.normal(0, 0.04, a.shape).astype(np.float32)
    return (np.clip(a * gain + offset, 0, 1) * 255).astype(np.uint8)  # a photo: no stretch by io.py


def test_model_carries_over_to_another_stain_by_each_images_own_stretch(tmp_path):
    truth = np.zeros((60, 80), int)
    truth[:, 40:] = 1
    scr = np.zeros((60, 80), np.uint8)
    scr[10:50:8, 5:30], scr[10:50:8, 50:75] = 1, 2
    classes = load_classes(None, None, n_classes=2)
    a = _two_stains(1.0, 0.0, 0)
    b = _two_stains(0.9, (-0.2, -0.2, -0.1), 1)  # another stain: the right material of b looks like a's left
    m = Model.fit(a, scr, classes=classes)
    assert (m.predict(a).labels == truth).mean() > 0.99
    assert len(m.chosen["training_band_stats"]) == 2 and len(m.chosen["training_band_stats"][0]) == 3
    m.save(str(tmp_path / "m.skops"))
    m = load_model(str(tmp_path / "m.skops"))
    assert m.settings.standardise
    assert (m.predict(b).labels == truth).mean() > 0.95  # each image's own stretch
    assert (m.predict(b, stretch="model").labels == truth).mean() < 0.8  # the training image's: stain shift stays
    raw = Model.fit(a, scr, classes=classes, settings=Settings(standardise=False))
    np.testing.assert_array_equal(raw.predict(a).labels, m.predict(a).labels)  # same labels on the training image
    assert (raw.predict(b).labels == truth).mean() < 0.8


def test_model_saved_before_standardise_existed_loads_with_it_off():
    from label_tools.modelfile import _settings_from_dict

    assert _settings_from_dict({"sigmas": [1.0, 2.0]}).standardise is False
    assert _settings_from_dict({"standardise": True, "band_stats": [[0.1], [0.5]]}).band_stats == ((0.1,), (0.5,))
