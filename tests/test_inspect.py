"""Inspection warnings: a stroke drawn with the wrong class is pointed at; a class never scribbled is named."""
import re

import numpy as np
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.classes import load_classes
from label_tools.cli import main
from label_tools.inspect import bbox_text, inspect_run


def test_wrong_class_stroke_and_never_scribbled_class_warned(tmp_path, capsys):
    img, mask = make_scene(150, 220)
    scr = scene_scribbles(mask)
    # a stroke of "sand" (value 2) drawn inside the water (class 0, left part, below the ellipse)
    r0, r1, c0, c1 = 120, 124, 20, 70
    assert (mask[r0:r1, c0:c1] == 0).all()
    scr[r0 - 3:r1 + 3, c0 - 3:c1 + 3] = 0
    scr[r0:r1, c0:c1] = 2
    ip, sp, lp = tmp_path / "scene.png", tmp_path / "scr.png", tmp_path / "classes.txt"
    Image.fromarray(img).save(ip)
    Image.fromarray(scr).save(sp)
    lp.write_text("water\nsand\ngrass\nrock\n")
    out = tmp_path / "out"
    assert main([str(ip), "--scribbles", str(sp), "--labels", str(lp), "-o", str(out)]) == 0
    report = (out / "scene_report.txt").read_text()
    warnings = [line for line in report.splitlines() if line.startswith("warning:")]
    assert any("never scribbled: rock" in w for w in warnings), warnings
    strokes = [w for w in warnings if "stroke of class sand" in w]
    assert len(strokes) == 1, warnings
    x0, y0, x1, y1 = (int(v) for v in re.search(r"x0,y0,x1,y1 = (\d+),(\d+),(\d+),(\d+)", strokes[0]).groups())
    assert abs(x0 - c0) <= 2 and abs(y0 - r0) <= 2 and abs(x1 - (c1 - 1)) <= 2 and abs(y1 - (r1 - 1)) <= 2
    assert "calls" in strokes[0] and "water" in strokes[0] and "redraw it as water" in strokes[0]
    err = capsys.readouterr().err
    assert "warning: stroke of class sand" in err and "never scribbled: rock" in err


def test_quiet_hides_warnings_but_report_keeps_them(tmp_path, capsys):
    img, mask = make_scene(90, 140)
    ip, sp, lp = tmp_path / "scene.png", tmp_path / "scr.png", tmp_path / "classes.txt"
    Image.fromarray(img).save(ip)
    Image.fromarray(scene_scribbles(mask)).save(sp)
    lp.write_text("water\nsand\ngrass\nrock\n")
    assert main([str(ip), "--scribbles", str(sp), "--labels", str(lp), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "warning: class never scribbled: rock" in (tmp_path / "o" / "scene_report.txt").read_text()


def test_no_warning_on_clean_scene():
    img, mask = make_scene(90, 140)
    labels = mask.astype(np.uint8)
    classes = load_classes(None, None, n_classes=3)
    assert inspect_run(labels, classes, scribbled=np.array([50, 40, 30])) == []


def test_absent_class_and_fragments_warned():
    rng = np.random.default_rng(0)
    labels = np.zeros((400, 500), np.uint8)
    labels[rng.random(labels.shape) < 0.01] = 1  # class 1 only as salt noise
    classes = load_classes(None, None, n_classes=3)
    w = inspect_run(labels, classes, scribbled=np.array([500, 300, 400]))
    assert any(s.startswith("warning: class class3 was scribbled (400 px) but is almost absent") for s in w), w
    assert any(s.startswith("warning: class class2 is broken into many tiny fragments") for s in w), w


def test_bbox_text_inclusive():
    assert bbox_text((10, 14, 20, 70)) == "20,10,69,13"


def test_classes_known_from_a_model_are_not_called_never_scribbled():
    classes = load_classes(None, None, n_classes=4)
    labels = np.repeat(np.arange(4, dtype=np.uint8), 100).reshape(20, 20)
    scribbled = np.array([50, 0, 0, 30])
    warned = inspect_run(labels, classes, scribbled=scribbled)
    assert "warning: classes never scribbled: class2, class3; they cannot appear" in warned[0]
    warned = inspect_run(labels, classes, scribbled=scribbled, known=np.array([True, True, False, True]))
    assert warned[0].startswith("warning: class never scribbled: class3; it cannot appear")
    assert not inspect_run(labels, classes, scribbled=scribbled, known=np.ones(4, bool))


def test_refit_on_a_model_names_only_classes_nobody_scribbled(tmp_path):
    # a model that knows all three classes, refitted with strokes of two: no "never scribbled" warning
    img, mask = make_scene(90, 140)
    ip, sp, lp = tmp_path / "scene.png", tmp_path / "scr.png", tmp_path / "classes.txt"
    Image.fromarray(img).save(ip)
    scr = scene_scribbles(mask)
    Image.fromarray(scr).save(sp)
    lp.write_text("water\nsand\ngrass\n")
    model = tmp_path / "m.skops"
    assert main([str(ip), "--scribbles", str(sp), "--labels", str(lp), "-o", str(tmp_path / "a"), "-q",
                 "--save-model", str(model)]) == 0
    report = (tmp_path / "a" / "scene_report.txt").read_text()
    assert "(chosen from held-out strokes" in report or "0.6 (default" in report  # never a bare weight
    two = np.where(scr == 3, 0, scr).astype(np.uint8)
    Image.fromarray(two).save(tmp_path / "two.png")
    assert main([str(ip), "--model", str(model), "--scribbles", str(tmp_path / "two.png"), "-o", str(tmp_path / "b"),
                 "-q"]) == 0
    assert "never scribbled" not in (tmp_path / "b" / "scene_report.txt").read_text()
    assert main([str(ip), "--scribbles", str(tmp_path / "two.png"), "--labels", str(lp), "-o", str(tmp_path / "c"),
                 "-q"]) == 0
    assert "warning: class never scribbled: grass" in (tmp_path / "c" / "scene_report.txt").read_text()


def test_multipage_tiff_warned_first_page_labelled(tmp_path, capsys):
    """A two-page TIFF (a stack): the first page is labelled, and the report and stderr say the second
    was not and how to label it; a one-page TIFF of the same pixels gives no such warning."""
    img, mask = make_scene(90, 140)
    scr = scene_scribbles(mask)
    Image.fromarray(scr).save(tmp_path / "scr.png")
    pages = [Image.fromarray(img), Image.fromarray(np.ascontiguousarray(img[::-1]))]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "single.tif")
    for name in ("stack", "single"):
        assert main([str(tmp_path / f"{name}.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o",
                     str(tmp_path / name)]) == 0
    stack = (tmp_path / "stack" / "stack_report.txt").read_text()
    assert "warning: stack.tif holds 2 images (TIFF pages); only the first was labelled" in stack
    assert "tiffsplit stack.tif" in stack
    assert "TIFF pages" not in (tmp_path / "single" / "single_report.txt").read_text()
    # the first page it is: the labels equal the one-page file's
    a, b = (np.asarray(Image.open(tmp_path / n / f"{n}_mres_label.png")) for n in ("stack", "single"))
    assert np.array_equal(a, b)
    assert "holds 2 images (TIFF pages)" in capsys.readouterr().err
