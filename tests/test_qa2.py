"""Report lines a QA pass found inexact: what the report says must be what the run did."""
import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.cli import main


def settings_lines(report_path):
    """{key: value} of the report's ``settings:`` block (one level, as written)."""
    lines = report_path.read_text().splitlines()
    out = {}
    for ln in lines[lines.index("settings:") + 1:]:
        if not ln.startswith("  "):
            break
        if not ln.startswith("   ") and ": " in ln:
            k, v = ln.strip().split(": ", 1)
            out[k] = v
    return out


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    img, mask = make_scene(90, 130)
    Image.fromarray(img).save(d / "scene.png")
    Image.fromarray(scene_scribbles(mask)).save(d / "scribbles.png")
    pre = mask.astype(np.uint8)
    pre[::15], pre[:, ::15] = 255, 255  # unknown lines: each region in many pieces, enough to hold some out
    Image.fromarray(pre).save(d / "pre.png")
    return d


def test_crf_iter_0_reports_the_crf_off_not_a_weight(scene_files, tmp_path):
    d = scene_files
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "--crf-iter", "0", "-o",
                 str(tmp_path / "off"), "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    s = settings_lines(tmp_path / "off" / "scene_report.txt")
    assert s["crf weight"] == "off (--crf-iter 0: the CRF did not run; labels from the forest)"
    assert s["crf scale (-s)"] == "off"
    # a model applied with --crf-iter 0 too; and without it the weight is reported as before
    assert main([str(d / "scene.png"), "--model", str(tmp_path / "m.skops"), "--headless", "--crf-iter", "0",
                 "-o", str(tmp_path / "applied"), "-q"]) == 0
    assert settings_lines(tmp_path / "applied" / "scene_report.txt")["crf weight"].startswith("off (--crf-iter 0")
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "-o", str(tmp_path / "on"),
                 "-q"]) == 0
    s = settings_lines(tmp_path / "on" / "scene_report.txt")
    assert s["crf weight"] == "0.6 (default: too few strokes to hold any out)"
    assert s["crf scale (-s)"] != "off"


def test_init_without_strokes_says_the_prelabels_were_the_labels(scene_files, tmp_path):
    d = scene_files
    assert main([str(d / "scene.png"), "--init", str(d / "pre.png"), "--headless", "-o", str(tmp_path / "a"),
                 "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    s = settings_lines(tmp_path / "a" / "scene_report.txt")
    assert s["scribbles"] == "none: no strokes; fitted on the --init pre-labels as weak labels"
    assert "model" not in s
    assert "(chosen from held-out --init pre-labels (weak labels) of this image;" in s["crf weight"]
    # a model refitted with pre-labels alone
    assert main([str(d / "scene.png"), "--model", str(tmp_path / "m.skops"), "--init", str(d / "pre.png"),
                 "--headless", "-o", str(tmp_path / "b"), "-q"]) == 0
    s = settings_lines(tmp_path / "b" / "scene_report.txt")
    assert s["scribbles"] == "none: no strokes; fitted on the --init pre-labels as weak labels and the model's samples"
    assert s["model"] == f"{tmp_path / 'm.skops'} (refitted with the --init pre-labels)"
    # a model refitted with strokes and pre-labels; a model applied as it is
    assert main([str(d / "scene.png"), "--model", str(tmp_path / "m.skops"), "--init", str(d / "pre.png"),
                 "--scribbles", str(d / "scribbles.png"), "-o", str(tmp_path / "c"), "-q"]) == 0
    s = settings_lines(tmp_path / "c" / "scene_report.txt")
    assert s["model"] == f"{tmp_path / 'm.skops'} (refitted with the scribbles and the --init pre-labels)"
    assert s["scribbles"] == str(d / "scribbles.png")
    assert main([str(d / "scene.png"), "--model", str(tmp_path / "m.skops"), "--headless", "-o",
                 str(tmp_path / "d"), "-q"]) == 0
    s = settings_lines(tmp_path / "d" / "scene_report.txt")
    assert s["scribbles"] == "none (model applied)" and s["model"] == str(tmp_path / "m.skops")
