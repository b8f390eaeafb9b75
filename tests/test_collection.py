"""Collections without a window: image listing, the walk's state, resuming, pre-label drawing."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools import collection
from label_tools.annotate_prelabels import crop_labels, prelabel_overlay
from label_tools.classes import load_classes
from label_tools.errors import InputError, OutputError
from label_tools.io import open_image, stem
from label_tools.model import Model
from label_tools.pipeline import Settings

SETTINGS = Settings(scale=1.0, crf_weight=0.0)


def test_prelabel_overlay_exact():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    lab = np.array([[0, 0, 1], [255, 1, 1]], np.uint8)  # (2, 3): resized to (4, 6) nearest
    colors = np.array([[200, 0, 0], [0, 0, 250]], np.uint8)
    out = prelabel_overlay(rgb, lab, colors, alpha=0.5, edges=False)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [150, 50, 50])
    np.testing.assert_array_equal(out[0, 5], [50, 50, 175])
    np.testing.assert_array_equal(out[3, 0], [100, 100, 100])  # 255 = none: the image as it is
    np.testing.assert_array_equal(rgb, 100)  # input untouched
    e = prelabel_overlay(rgb, lab, colors, alpha=0.5, edges=True)
    np.testing.assert_array_equal(e[0, 3], [200, 0, 0])  # class boundary drawn opaque in the class colour
    np.testing.assert_array_equal(e[0, 0], [150, 50, 50])  # away from boundaries: as without edges
    np.testing.assert_array_equal(crop_labels(np.arange(20, dtype=np.uint8).reshape(4, 5), (1, 3, 2, 5)),
                                  [[7, 8, 9], [12, 13, 14]])


def test_list_images_skips_outputs_and_refuses_same_stems(tmp_path):
    d = tmp_path / "fields"
    d.mkdir()
    for n in ("b.png", "a.jpg", "c.tif", "a_scribbles.png", "a_mres.png", "a_mres_label.png", "c_mres_geo.tif",
              "notes.txt", ".hidden.png", "x_scribbles.20260101-000000.bak.png"):
        (d / n).write_bytes(b"x")
    assert [os.path.basename(p) for p in collection.list_images([str(d)])] == ["a.jpg", "b.png", "c.tif"]
    assert collection.collection_name([str(d) + "/"]) == "fields"
    assert collection.collection_name([str(d / "b.png"), str(d / "a.jpg")]) == "fields"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="same name 'b'"):
        collection.list_images([str(d), str(tmp_path / "other" / "b.jpg")])
    with pytest.raises(InputError, match="holds no image"):
        collection.list_images([str(tmp_path / "other" / ".."), str(tmp_path)])
    with pytest.raises(InputError, match="does not exist"):
        collection.list_images([str(tmp_path / "nope.png")])


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "fields"
    d.mkdir()
    masks = {}
    for i, name in enumerate(["one", "two", "three"]):
        img, mask = make_scene(60, 90, seed=i)
        Image.fromarray(img).save(d / f"{name}.png")
        masks[name] = mask
    return d, masks


class FakeAnnotator:
    """The per-image step with scribbles from a table instead of a window: fit on top of base, write the labels."""

    def __init__(self, outdir, masks, classes, *, stop_at=None):
        self.outdir, self.masks, self.classes, self.stop_at = outdir, masks, classes, stop_at
        self.calls = []

    def __call__(self, src, index, *, base, prelabels, resume, title_note, model_path):
        st = stem(src.path)
        self.calls.append(dict(stem=st, base=base, prelabels=prelabels, resume=resume, title=title_note))
        if st == self.stop_at:
            raise KeyboardInterrupt  # killed while annotating this image
        scr = scene_scribbles(self.masks[st], seed=index) if index == 0 else np.zeros(src.shape, np.uint8)
        if index == 0:
            Image.fromarray(scr).save(os.path.join(self.outdir, f"{st}_scribbles.png"))
        model = Model.fit(src, scr, classes=self.classes, settings=SETTINGS, base=base)
        labels = model.predict(src).labels
        for p in outputs(self.outdir, src.path):
            Image.fromarray(labels).save(p, format="PNG") if p.endswith(".png") else open(p, "w").close()
        model.save(model_path)
        return model


def outputs(outdir, path):
    from label_tools.writers import output_paths

    return list(output_paths(str(outdir), stem(path)).values())


def test_walk_carries_the_model_and_resumes(folder, tmp_path):
    d, masks = folder
    out = tmp_path / "out"
    out.mkdir()
    classes = load_classes(None, None, n_classes=3)
    images = collection.list_images([str(d)])
    kw = dict(outdir=str(out), name="fields", open_image=open_image, classes=classes, settings=SETTINGS,
              outputs_of=lambda p: outputs(out, p))
    # first session: killed while on the third image ("two" sorts last)
    ann = FakeAnnotator(str(out), masks, classes, stop_at="two")
    with pytest.raises(KeyboardInterrupt):
        collection.walk(images, step=ann, **kw)
    assert [c["stem"] for c in ann.calls] == ["one", "three", "two"]
    assert ann.calls[0]["prelabels"] is None and ann.calls[0]["base"] is None
    # from the second image on: the current model's labels of the whole image are the pre-labels
    pre = ann.calls[1]["prelabels"]
    assert pre.shape == (60, 90) and pre.dtype == np.uint8
    np.testing.assert_array_equal(pre, ann.calls[1]["base"].predict(open_image(str(d / "three.png"))).labels)
    assert (pre == masks["three"]).mean() > 0.9  # a model from image one labels image three
    assert ann.calls[2]["base"] is not ann.calls[1]["base"]  # refitted after each image
    assert ann.calls[2]["title"] == "image 3/3" and ann.calls[2]["resume"] is None
    state = json.loads((out / "fields_collection.json").read_text())
    assert state["index"] == 2 and state["current"] == str(d / "two.png")
    assert state["done"] == [str(d / "one.png"), str(d / "three.png")]
    assert state["model"] == str(out / "fields_model.skops")
    # second session, same command: the finished images are skipped, the stopped one resumes
    ann2 = FakeAnnotator(str(out), masks, classes)
    st = collection.walk(images, step=ann2, **kw)
    assert [c["stem"] for c in ann2.calls] == ["two"] and ann2.calls[0]["resume"] is True
    assert ann2.calls[0]["base"] is not None and ann2.calls[0]["prelabels"].shape == (60, 90)
    assert st.index == 3 and len(st.done) == 3
    # a third run finds everything done and opens nothing
    ann3 = FakeAnnotator(str(out), masks, classes)
    collection.walk(images, step=ann3, **kw)
    assert ann3.calls == []


def test_walk_refuses_outputs_it_did_not_make(folder, tmp_path):
    d, masks = folder
    out = tmp_path / "out"
    out.mkdir()
    classes = load_classes(None, None, n_classes=3)
    images = collection.list_images([str(d)])
    (out / "three_mres_label.png").write_bytes(b"mine")
    ann = FakeAnnotator(str(out), masks, classes)
    with pytest.raises(OutputError, match="three_mres_label.png.*--overwrite"):
        collection.walk(images, step=ann, outdir=str(out), name="fields", open_image=open_image, classes=classes,
                        settings=SETTINGS, outputs_of=lambda p: outputs(out, p))
    assert ann.calls == [] and (out / "three_mres_label.png").read_bytes() == b"mine"


def test_refit_rebuilds_the_model_from_saved_scribbles(folder, tmp_path):
    d, masks = folder
    classes = load_classes(None, None, n_classes=3)
    scr = scene_scribbles(masks["one"], seed=0)
    Image.fromarray(scr).save(tmp_path / "one_scribbles.png")
    m = collection.refit([str(d / "one.png"), str(d / "two.png")], str(tmp_path), classes=classes, settings=SETTINGS,
                         open_image=open_image)
    direct = Model.fit(open_image(str(d / "one.png")), scr, classes=classes, settings=SETTINGS)
    np.testing.assert_array_equal(m.X, direct.X)
    src = open_image(str(d / "three.png"))
    np.testing.assert_array_equal(m.predict(src).labels, direct.predict(src).labels)


def test_one_image_with_a_model_opens_with_its_prelabels(folder, tmp_path, monkeypatch):
    """label-image IMAGE --model FILE (annotator): the window gets the model's labels as pre-labels."""
    import label_tools.annotate as annotate_mod
    from label_tools.job import Job, run_job

    d, masks = folder
    classes = load_classes(None, None, n_classes=3)
    src1 = open_image(str(d / "one.png"))
    model = Model.fit(src1, scene_scribbles(masks["one"]), classes=classes, settings=SETTINGS)
    seen = {}

    def fake_annotate(src, classes, **kw):
        seen.update(kw)
        return np.zeros(src.shape, np.uint8), 1.0  # no strokes: the model's labels are accepted

    monkeypatch.setattr(annotate_mod, "annotate", fake_annotate)
    out = tmp_path / "o"
    o = run_job(Job(image=str(d / "two.png"), outdir=str(out), annotate={"window": 500, "resume": False}), model=model)
    assert o.status == "done", o.message
    want = model.predict(open_image(str(d / "two.png"))).labels
    np.testing.assert_array_equal(seen["prelabels"], want)
    np.testing.assert_array_equal(np.array(Image.open(out / "two_mres_label.png")), want)


def test_cli_collection_bad_input(folder, tmp_path, capsys, monkeypatch):
    from label_tools.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert main([str(empty), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no image" in err
    d, _ = folder
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "o2"
    assert main([str(d), "--labels", os.path.join(os.path.dirname(__file__), "..", "sample_data", "classes.txt"),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no display" in err and "--scribbles" in err
    assert not out.exists()  # nothing written, not even the folder
    assert main([str(d), str(d / "one.png"), "--scribbles", str(d / "one.png")]) == 2
    assert "--scribbles belongs to one image" in capsys.readouterr().err


def test_status_line_names_the_collection_image_and_prelabel_state():
    # the in-window status line carries what only the title showed (titles are not shown everywhere)
    from label_tools.annotate_uncertainty import UncertaintyMixin, status_text
    from label_tools.session import Session

    s = Session((100, 100), 3, [(0, 50, 0, 100), (50, 100, 0, 100)])
    text = status_text(s, ["water", "sand", "grass"], mode="pre-labels on (L)", note="image 2/3")
    assert text == "image 2/3 | class 1/3 water | window 1/2 | brush 3 | pre-labels on (L)"

    class Walk(UncertaintyMixin):
        prelabels, show_prelabels = np.zeros((100, 100), np.uint8), False

    assert Walk()._mode() == "pre-labels off (L)"
