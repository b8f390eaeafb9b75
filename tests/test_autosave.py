"""A damaged annotator autosave: reported in one line, set aside as .bak only when agreed (or --no-resume)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from label_tools import annotate as ann_mod
from label_tools import session as sess
from label_tools.classes import load_classes
from label_tools.errors import InputError
from label_tools.io import ArraySource

H, W = 60, 80


def good_autosave(d, stem="img"):
    s = np.zeros((H, W), np.uint8)
    s[5:10, 5:30] = 1
    s[40:45, 5:30] = 2
    png, js = sess.scribble_paths(str(d), stem)
    Image.fromarray(s).save(png)
    with open(js, "w") as f:
        json.dump({"window_index": 0, "class_index": 1, "brush": 4, "n_windows": 1, "shape": [H, W],
                   "annotation_seconds": 12.5}, f)
    return s, png, js


def _write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGES = {
    "png-truncated": lambda png, js: _truncate(png, os.path.getsize(png) // 2),
    "png-garbage": lambda png, js: _write(png, b"not a png at all"),
    "png-empty": lambda png, js: _write(png, b""),
    "png-wrong-size": lambda png, js: Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(png),
    "png-class-too-high": lambda png, js: Image.fromarray(np.full((H, W), 9, np.uint8)).save(png),
    "json-truncated": lambda png, js: _truncate(js, 10),
    "json-not-object": lambda png, js: _write(js, "[1, 2, 3]", "w"),
    "json-wrong-types": lambda png, js: _write(js, '{"window_index": "two", "brush": 3}', "w"),
    "json-binary": lambda png, js: _write(js, b"\xff\xfe\x00garbage"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_load_reports_damage_in_one_line(tmp_path, damage):
    _, png, js = good_autosave(tmp_path)
    DAMAGES[damage](png, js)
    before = {p: _read(p) for p in (png, js)}
    with pytest.raises(sess.DamagedAutosave) as e:
        sess.load(str(tmp_path), "img", (H, W), 2)
    msg = str(e.value)
    assert "\n" not in msg
    assert (js if damage.startswith("json") else png) in msg
    assert {p: _read(p) for p in (png, js)} == before  # nothing changed by loading


def test_good_autosave_loads(tmp_path):
    s, png, js = good_autosave(tmp_path)
    scr, state = sess.load(str(tmp_path), "img", (H, W), 2)
    np.testing.assert_array_equal(scr, s)
    assert state["class_index"] == 1 and state["annotation_seconds"] == 12.5


@pytest.fixture
def fake_window(monkeypatch):
    """annotate() up to the window: the window itself is replaced by a stand-in that records its session."""
    seen = {}

    class FakeAnnotator:
        def __init__(self, src, classes, session, **kw):
            seen["session"] = session
            seen["seconds_before"] = kw["seconds_before"]

        def run(self):
            return 1.0

    monkeypatch.setattr(ann_mod, "has_display", lambda: True)
    monkeypatch.setattr(ann_mod, "choose_backend", lambda b=None: "opencv")
    monkeypatch.setattr(ann_mod, "Annotator", FakeAnnotator)
    return seen


def _annotate(tmp_path, resume):
    rng = np.random.default_rng(0)
    src = ArraySource(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), "img.png")
    return ann_mod.annotate(src, load_classes(None, None, n_classes=2), window=64, outdir=str(tmp_path), stem="img",
                            resume=resume)


@pytest.mark.parametrize("damage", ["png-truncated", "json-truncated"])
def test_no_resume_sets_damaged_autosave_aside(tmp_path, fake_window, damage):
    _, png, js = good_autosave(tmp_path)
    DAMAGES[damage](png, js)
    before = {os.path.basename(p): _read(p) for p in (png, js)}
    scr, _ = _annotate(tmp_path, resume=False)
    assert not scr.any() and fake_window["seconds_before"] == 0.0  # afresh
    baks = sorted(n for n in os.listdir(tmp_path) if ".bak" in n)
    assert len(baks) == 2 and baks[0].endswith(".bak.json") and baks[1].endswith(".bak.png")
    kept = {b: _read(tmp_path / b) for b in baks}
    assert sorted(kept.values()) == sorted(before.values())  # the damaged files, byte for byte


@pytest.mark.parametrize("agree", [True, False])
def test_asked_when_damaged(tmp_path, fake_window, monkeypatch, agree):
    _, png, js = good_autosave(tmp_path)
    DAMAGES["png-garbage"](png, js)
    asked = []
    monkeypatch.setattr(ann_mod, "ask_start_afresh", lambda problem: asked.append(problem) or agree)
    if agree:
        scr, _ = _annotate(tmp_path, resume=None)
        assert not scr.any() and any(n.endswith(".bak.png") for n in os.listdir(tmp_path))
    else:
        with pytest.raises(InputError, match="--no-resume") as e:
            _annotate(tmp_path, resume=None)
        assert "\n" not in str(e.value) and png in str(e.value)
        assert _read(png) == b"not a png at all"  # kept where it was
        assert not any(".bak" in n for n in os.listdir(tmp_path))
    assert len(asked) == 1 and png in asked[0]


def test_resume_refuses_damaged_autosave(tmp_path, fake_window):
    _, png, js = good_autosave(tmp_path)
    DAMAGES["json-wrong-types"](png, js)
    with pytest.raises(InputError, match="--no-resume"):
        _annotate(tmp_path, resume=True)
    assert not any(".bak" in n for n in os.listdir(tmp_path))


def test_resume_good_autosave(tmp_path, fake_window):
    s, png, js = good_autosave(tmp_path)
    scr, _ = _annotate(tmp_path, resume=True)
    np.testing.assert_array_equal(scr, s)
    assert fake_window["seconds_before"] == 12.5 and fake_window["session"].brush == 4


def test_no_answer_means_no(monkeypatch):
    """Without a dialog or a terminal, a damaged autosave is never dropped silently."""
    monkeypatch.setattr(ann_mod, "_tk_root", lambda: (_ for _ in ()).throw(RuntimeError("no tk")))
    monkeypatch.setattr("sys.stdin", None)
    assert ann_mod.ask_start_afresh("autosave damaged") is False


def test_autosave_on_full_disk_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    """A full disk while drawing: one warning naming the folder, the strokes stay in memory, no crash."""
    import errno

    s = sess.Session((H, W), 2, [(0, H, 0, W)])
    a = ann_mod.Annotator.__new__(ann_mod.Annotator)  # the event logic only; no window
    a.s, a.outdir, a.stem, a.seconds = s, str(tmp_path), "img", lambda: 1.0

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sess, "save", full)
    s.begin_stroke(10, 10)
    s.extend_stroke(10, 40)
    assert s.end_stroke()
    with caplog.at_level("WARNING", logger="label_tools"):
        a.save()
        a.save()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0] and "No space left" in warnings[0]
    assert (s.scribbles == 1).sum() > 20
