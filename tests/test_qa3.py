"""Report and warning lines a third QA pass found untrue for --init pre-labels (and their neighbours)."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.classes import load_classes
from label_tools.cli import main
from label_tools.inspect import inspect_run


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


def warning_lines(report_path):
    return [ln for ln in report_path.read_text().splitlines() if ln.startswith("warning:")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A scene of three regions; pre-labels holding two of them (the third's pixels unknown: 255)."""
    d = tmp_path_factory.mktemp("qa3")
    img, mask = make_scene(90, 130)
    Image.fromarray(img).save(d / "scene.png")
    Image.fromarray(scene_scribbles(mask)).save(d / "scribbles.png")
    pre = np.where(mask == 2, 255, mask).astype(np.uint8)  # class 'grass' (id 2) not pre-labelled
    Image.fromarray(pre).save(d / "pre.png")
    (d / "classes.txt").write_text("water\nsand\ngrass\n")
    return d, mask


PRE_KEY = "pre-labelled pixels per class (--init weak labels, away from label edges and strokes; model grid)"


def test_class_missing_from_prelabels_is_not_told_to_be_dropped_from_the_labels_file(files, tmp_path):
    """--init with --labels: a class neither pre-labelled nor scribbled. Dropping it from the labels file
    would shift the ids the pre-labels are read with; the warning says it cannot appear and to stroke it
    if it is there. Before: 'class never scribbled: grass; ... or drop it from the labels file'."""
    d, _ = files
    out = tmp_path / "o"
    assert main([str(d / "scene.png"), "--init", str(d / "pre.png"), "--labels", str(d / "classes.txt"),
                 "--headless", "-o", str(out), "-q"]) == 0
    assert warning_lines(out / "scene_report.txt") == [
        "warning: class in neither the --init pre-labels nor the scribbles: grass; it cannot appear in the labels: "
        "if it is in the image, draw a few strokes of it"]


def test_prelabelled_and_scribbled_counts_reported_apart(files, tmp_path):
    """The report's 'scribbled pixels per class' line held the pre-labels' weak-label counts when there
    were no strokes (--init alone); it now says there were none, and the pre-labelled pixels get a line
    of their own. With strokes, each line holds its own counts."""
    d, mask = files
    out = tmp_path / "alone"
    assert main([str(d / "scene.png"), "--init", str(d / "pre.png"), "--labels", str(d / "classes.txt"),
                 "--headless", "-o", str(out), "-q"]) == 0
    s = settings_lines(out / "scene_report.txt")
    assert s["scribbled pixels per class (model grid)"] == "none (no strokes on this image)"
    weak = [int(v) for v in s[PRE_KEY].strip("[]").split(",")]
    assert weak[0] > 1000 and weak[1] > 1000 and weak[2] == 0  # grass is unknown in the pre-labels

    scr = np.zeros(mask.shape, np.uint8)
    scr[60:63, 80:100] = 2  # one stroke of sand: 60 px on the full-resolution (= model) grid
    Image.fromarray(scr).save(tmp_path / "fix.png")
    out = tmp_path / "fix"
    assert main([str(d / "scene.png"), "--init", str(d / "pre.png"), "--labels", str(d / "classes.txt"),
                 "--scribbles", str(tmp_path / "fix.png"), "-o", str(out), "-q"]) == 0
    s = settings_lines(out / "scene_report.txt")
    assert "grid scale: 1" in (out / "scene_report.txt").read_text()
    assert s["scribbled pixels per class (model grid)"] == "[0, 60, 0]"
    weak2 = [int(v) for v in s[PRE_KEY].strip("[]").split(",")]
    assert weak2[0] == weak[0] and weak2[1] < weak[1] and weak2[2] == 0  # weak labels cleared under the stroke


def test_scribbles_alone_keep_their_line_and_model_applied_says_none(files, tmp_path):
    d, _ = files
    out = tmp_path / "s"
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "--labels", str(d / "classes.txt"),
                 "-o", str(out), "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    s = settings_lines(out / "scene_report.txt")
    scr = np.array(Image.open(d / "scribbles.png"))
    assert s["scribbled pixels per class (model grid)"] == str([int((scr == k).sum()) for k in (1, 2, 3)])
    assert PRE_KEY not in s
    out = tmp_path / "m"
    assert main([str(d / "scene.png"), "--model", str(tmp_path / "m.skops"), "--headless", "-o", str(out), "-q"]) == 0
    assert settings_lines(out / "scene_report.txt")["scribbled pixels per class (model grid)"] == \
        "none (model applied)"  # before: [0, 0, 0]


def test_never_scribbled_advice_fits_where_the_classes_came_from():
    classes = load_classes(None, None, n_classes=3)
    labels = np.repeat(np.arange(3, dtype=np.uint8), 100).reshape(15, 20)
    scribbled = np.array([40, 0, 30])
    assert inspect_run(labels, classes, scribbled=scribbled)[0].endswith(
        "draw a few strokes of it, or drop it from the labels file")
    assert inspect_run(labels, classes, scribbled=scribbled, class_list="scribble values")[0].endswith(
        "if it is in the image, draw a few strokes of it (scribble value 2)")
    assert inspect_run(labels, classes, scribbled=np.array([40, 0, 0]), class_list="scribble values")[0].endswith(
        "if any of them is in the image, draw a few strokes of it (scribble values 2, 3)")
    assert inspect_run(labels, classes, scribbled=scribbled, class_list=None)[0].endswith("draw a few strokes of it")
    # pre-labels supply the class: nothing to warn; both missing: the --init wording, no dropping
    assert inspect_run(labels, classes, scribbled=scribbled, prelabelled=np.array([0, 500, 0]), class_list=None) == []
    w = inspect_run(labels, classes, scribbled=None, prelabelled=np.array([90, 0, 0]), class_list=None)
    assert w == ["warning: classes in neither the --init pre-labels nor the scribbles: class2, class3; they cannot "
                 "appear in the labels: if any of them is in the image, draw a few strokes of it"]


def test_almost_absent_class_says_whether_it_was_scribbled_or_prelabelled():
    classes = load_classes(None, None, n_classes=3)
    labels = np.zeros((200, 200), np.uint8)
    labels[:, 100:] = 1
    labels[0, 0] = 2  # 1 px of class3
    w = inspect_run(labels, classes, scribbled=np.array([300, 300, 0]), prelabelled=np.array([5000, 5000, 400]),
                    class_list=None)
    assert w == ["warning: class class3 was pre-labelled by --init (400 px) but is almost absent from the result "
                 "(1 px, 0.0025%); if it is in the image, draw a few strokes of it across its typical look"]
    w = inspect_run(labels, classes, scribbled=np.array([300, 300, 20]), prelabelled=np.array([5000, 5000, 400]))
    assert w[0].startswith("warning: class class3 was scribbled (20 px) and pre-labelled by --init (400 px) but is "
                           "almost absent")


def test_scribble_values_with_a_gap_without_labels_file(files, tmp_path):
    """No --labels: classes are the scribble values; a value never used is not in any labels file, and
    renumbering the scribbles would shift a dataset's class ids (CamVid's 11 classes, class 8 absent
    from an image): the warning names the value to stroke it with, if the class is there."""
    d, mask = files
    scr = np.array(Image.open(d / "scribbles.png"))
    gap = np.where(scr == 2, 0, scr).astype(np.uint8)  # values 1 and 3: class2 never scribbled
    Image.fromarray(gap).save(tmp_path / "gap.png")
    out = tmp_path / "g"
    assert main([str(d / "scene.png"), "--scribbles", str(tmp_path / "gap.png"), "-o", str(out), "-q"]) == 0
    assert warning_lines(out / "scene_report.txt")[0] == (
        "warning: class never scribbled: class2; it cannot appear in the labels: if it is in the image, draw a few "
        "strokes of it (scribble value 2)")


def test_cluster_run_reports_a_raised_scale_as_in_process(files, tmp_path, monkeypatch):
    """--workers 2 on a raster cut into window tasks (the grid stage on a worker, the report written by
    the client): the '-s not used' warning and the report's crf scale line are those of the in-process
    run, and the labels are identical. Checked because the client's result comes from the workers."""
    pytest.importorskip("distributed")
    from conftest import shared
    from label_tools import blocks

    d, _ = files
    tif = shared("geotiff_rasterio", "images", "RGB.byte.tif")  # 0.57 MP: -s 0.05 is raised to keep 0.1 MP
    model = tmp_path / "m.skops"
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    args = ["--model", str(model), "--headless", tif, "-s", "0.05", "-q"]
    assert main(args + ["-o", str(tmp_path / "here")]) == 0
    monkeypatch.setattr(blocks, "WINDOWED_PIXELS", 1e5)  # this raster takes the window-task path
    assert main(args + ["-o", str(tmp_path / "cluster"), "--workers", "2"]) == 0
    here, there = (tmp_path / w / "RGB.byte_report.txt" for w in ("here", "cluster"))
    assert "'grid': " in settings_lines(there)["step timings (s)"]  # predict_on_cluster's grid stage ran
    assert warning_lines(there) == warning_lines(here)
    assert any(w.startswith("warning: -s/--scale 0.05 not used: the CRF ran at scale 0.4") for w in warning_lines(here))
    assert settings_lines(there)["crf scale (-s)"] == settings_lines(here)["crf scale (-s)"]
    assert settings_lines(here)["crf scale (-s)"].endswith(" (asked 0.05: raised so the CRF grid keeps at least 0.1 MP)")
    a, b = (np.array(Image.open(tmp_path / w / "RGB.byte_mres_label.png")) for w in ("here", "cluster"))
    assert np.array_equal(a, b)


def test_init_offset_1_keeps_a_rasters_declared_nodata_unknown(files, tmp_path, capsys):
    """An --init GeoTIFF with ids from 1 and its no-data value declared as 255 (s2_slovenia_lulc's mask
    with --init-offset 1): 255 is unknown, not class 254. Before: 'error: expected 1..254 classes, got 255',
    naming neither the file nor the option."""
    import rasterio

    from label_tools.prelabels import read_prelabels

    d, mask = files
    a = (mask + 1).astype(np.uint8)
    a[:10] = 255
    path = tmp_path / "pre.tif"
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype="uint8",
                       nodata=255, crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 6000000)) as ds:
        ds.write(a, 1)
    expect = mask.astype(np.uint8)
    expect[:10] = 255
    np.testing.assert_array_equal(read_prelabels(str(path), mask.shape, None, offset=1), expect)
    out = tmp_path / "o"
    assert main([str(d / "scene.png"), "--init", str(path), "--init-offset", "1", "--headless", "-o", str(out),
                 "-q"]) == 0
    assert settings_lines(out / "scene_report.txt")["labels"] == "(none: class1..classK)"
    assert "class3: " in (out / "scene_report.txt").read_text()


def test_init_id_beyond_the_class_limit_is_one_line_naming_the_file(files, tmp_path, capsys):
    d, mask = files
    a = mask.astype(np.uint8)
    a[0, 0] = 254  # no --labels: 255 classes would be needed
    Image.fromarray(a).save(tmp_path / "pre.png")
    out = tmp_path / "o"
    assert main([str(d / "scene.png"), "--init", str(tmp_path / "pre.png"), "--headless", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"label-image: error: --init {str(tmp_path / 'pre.png')!r}: holds value 254, class id 254; "
                   "class ids must be below 254 (255 = unknown)"), err
    assert not out.exists() or not os.listdir(out)


def test_strokes_lost_on_a_coarse_grid_are_named_with_the_grid_not_called_too_short(files, tmp_path):
    """--grid-scale 0.03 on a 130 x 90 scene: a 4 x 3 px model grid on which a class's strokes vanish.
    Before: 'class ... was scribbled (N px) but is almost absent ...; draw longer strokes of it', advice
    that cannot help; now the grid is named and the fix is --grid-scale."""
    import re

    d, _ = files
    out = tmp_path / "o"
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "--labels", str(d / "classes.txt"),
                 "--grid-scale", "0.03", "-o", str(out), "-q"]) == 0
    grid = [int(v) for v in settings_lines(out / "scene_report.txt")["scribbled pixels per class (model grid)"]
            .strip("[]").split(",")]
    lost = [n for n, g in zip(["water", "sand", "grass"], grid) if g == 0]
    assert lost, grid  # the scene's ellipse (grass) is thinner than a grid cell
    w = warning_lines(out / "scene_report.txt")
    m = [ln for ln in w if ln.startswith("warning: the strokes of class")]
    assert m == [f"warning: the strokes of class {', '.join(lost)} vanish on the model grid (4 x 3 px, grid scale "
                 "0.03): the forest never saw it; raise --grid-scale (or leave it out: auto keeps at least 0.4 MP or "
                 "the whole image)"], w
    assert not any(ln.startswith(f"warning: class {n} was scribbled") for n in lost for ln in w), w
    grid_samples = np.array([5, 0, 3])
    labels = np.zeros((20, 20), np.uint8)
    classes = load_classes(None, None, n_classes=3)
    assert inspect_run(labels, classes, scribbled=np.array([50, 40, 30]), grid_samples=grid_samples)[0] == (
        "warning: the strokes of class class2 vanish on the model grid: the forest never saw it; raise --grid-scale "
        "(or leave it out: auto keeps at least 0.4 MP or the whole image)")


def test_doodler_scribbles_with_a_labels_file_say_the_conversion(tmp_path, capsys):
    """A real Doodler session's scribbles (0-based ids, 255 = not scribbled) with --labels: the line says
    what 255 likely is and how to convert, as it already did without --labels (0d5c618)."""
    from conftest import shared

    img = shared("doodler_sessions", "images", "s2_20171221_rgb03.png")
    scr = shared("doodler_sessions", "scribbles", "s2_20171221_rgb03.png")
    (tmp_path / "classes.txt").write_text("water\nland\n")
    assert main([img, "--scribbles", scr, "--labels", str(tmp_path / "classes.txt"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"label-image: error: scribble file {scr!r} has value 255 but labels file "
        f"{str(tmp_path / 'classes.txt')!r} gives only 2 classes (values 1..2; 0 = unlabelled); 0-based ids with 255 = not scribbled (as Doodler's) need ids + 1 and 255 -> 0")


def test_init_offset_without_init_is_refused(files, tmp_path, capsys):
    d, _ = files
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "--init-offset", "1", "-o",
                 str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        "label-image: error: --init-offset 1 says how the --init file's ids are numbered, but no --init LABELS is "
        "given; add --init LABELS or leave out --init-offset")
    assert not (tmp_path / "o").exists()


def test_one_more_contradicted_stroke_reads_singular():
    """Six contradicted strokes: five listed, then '1 more stroke is' (was '1 more strokes are')."""
    from label_tools import inspect

    n = inspect.MAX_STROKE_WARNINGS + 1  # strokes of class1, each in its own fold; 5 of class2 in another
    strokes = _Strokes(cls=[0] * n + [1] * 5, fold=list(range(n)) + [n] * 5, pixels=[50] * (n + 5),
                       agreement=[0.0] * n + [1.0] * 5, predicted=[1] * (n + 5), bbox=[(0, 2, 0, 2)] * (n + 5))
    w = inspect_run(np.zeros((20, 20), np.uint8), load_classes(None, None, n_classes=2), strokes=strokes)
    assert sum(ln.startswith("warning: stroke of class class1") for ln in w) == inspect.MAX_STROKE_WARNINGS
    assert w[-1] == "warning: 1 more stroke is mostly contradicted (the worst are listed above); check it the same way"


class _Strokes:
    """holdout.Strokes' fields, as inspect_run reads them."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __len__(self):
        return len(self.cls)


def test_save_probs_with_init_on_a_windowed_raster_on_a_cluster_is_refused_before_anything_runs(files, tmp_path,
                                                                                                 capsys, monkeypatch):
    """--workers 2 --save-probs --init on a raster the cluster cuts into window tasks: the window tasks make
    probabilities (tests/test_cluster.py), but do not merge pre-labels into them. One line before any
    cluster starts, naming the raster, and nothing written (before this, --save-probs alone was refused
    so; now it runs)."""
    import rasterio

    from conftest import shared
    from label_tools import blocks

    d, _ = files
    model = tmp_path / "m.skops"
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    monkeypatch.setattr(blocks, "WINDOWED_PIXELS", 1e5)  # RGB.byte.tif (0.57 MP) is cut
    big = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    with rasterio.open(big) as ds:
        Image.fromarray(np.zeros((ds.height, ds.width), np.uint8)).save(tmp_path / "pre.png")
    capsys.readouterr()
    out = tmp_path / "o"
    assert main(["--model", str(model), "--headless", big, "--init", str(tmp_path / "pre.png"), "--save-probs",
                 "--workers", "2", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"label-image: error: --init --save-probs with --workers: {big!r} is a raster of 0.1 MP or more, "
        "which the cluster cuts into window tasks that do not merge pre-labels into the probabilities; label it "
        "without --workers, or leave out --save-probs")
    assert not out.exists()


def test_prelabels_of_one_class_corrected_by_strokes_of_the_missing_one(files, tmp_path, capsys):
    """Pre-labels holding one class only (a network that found only background, on a real GrabCut photo)
    and dots of stroke on the object it missed: before, 'scribble file ...: scribbles cover 1 class
    (background); scribble at least two classes' (the first, weak fit saw the pre-labels alone, yet the
    strokes hold the other class). Now the strokes' class joins the weak labels of the first fit (object
    IoU 0.747 measured; pre-labels 0)."""
    import cv2

    from conftest import shared

    ip = shared("grabcut", "images", "106024.jpg")
    mask = np.array(Image.open(shared("grabcut", "masks", "106024.png")))
    Image.fromarray(np.zeros(mask.shape, np.uint8)).save(tmp_path / "background.png")
    scr = np.zeros(mask.shape, np.uint8)
    ys, xs = np.nonzero(mask == 1)
    scr[ys[::50], xs[::50]] = 2  # a dot every 50th object pixel, 3 x 3
    scr = cv2.dilate(scr, np.ones((3, 3), np.uint8))
    Image.fromarray(scr).save(tmp_path / "fix.png")
    (tmp_path / "classes.txt").write_text("background\nobject\n")
    out = tmp_path / "o"
    assert main([ip, "--init", str(tmp_path / "background.png"), "--scribbles", str(tmp_path / "fix.png"),
                 "--labels", str(tmp_path / "classes.txt"), "-o", str(out), "-q"]) == 0
    lab = np.array(Image.open(out / "106024_mres_label.png"))
    valid = mask != 255
    iou = ((lab == 1) & (mask == 1) & valid).sum() / (((lab == 1) | (mask == 1)) & valid).sum()
    assert iou > 0.65, iou
    s = settings_lines(out / "106024_report.txt")
    weak = [int(v) for v in s[PRE_KEY].strip("[]").split(",")]
    assert weak[0] > 0 and weak[1] == 0  # the strokes are not counted as pre-labelled
    assert s["scribbled pixels per class (model grid)"].startswith("[0, ")

    # pre-labels of one class and no stroke of another: one line naming --init
    d, _ = files
    Image.fromarray(np.zeros((90, 130), np.uint8)).save(tmp_path / "water.png")
    capsys.readouterr()
    assert main([str(d / "scene.png"), "--init", str(tmp_path / "water.png"), "--labels", str(d / "classes.txt"),
                 "--headless", "-o", str(tmp_path / "n")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"label-image: error: --init {str(tmp_path / 'water.png')!r}: the pre-labels hold one class (water); the model "
        "needs two classes to tell apart: add strokes of another class (--scribbles FILE, or draw them in the "
        "annotator)")


def test_label_tools_other_outputs_given_as_init_are_refused(files, tmp_path, capsys):
    """A run's uncertainty map or probabilities given as --init: before, the uncertainty map (uint8
    0..255) was read as ~200 classes and 'labelled' in 12 s with a warning naming class1..class23; the
    probability GeoTIFF with --colors ended in 'scribbles cover 1 class'. Now one line saying which file
    to give; recognised by name, and a renamed GeoTIFF by its metadata."""
    import shutil

    d, _ = files
    run = tmp_path / "run"
    assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "--save-probs", "-o", str(run),
                 "-q"]) == 0
    shutil.copy(run / "scene_probs.tif", tmp_path / "renamed.tif")
    Image.fromarray(np.array(Image.open(d / "scribbles.png"))).save(tmp_path / "scene_scribbles.png")
    expect = {
        run / "scene_uncertainty.png": "uncertainty map, not a label image: give the same run's "
                                       f"label image, {str(run / 'scene_mres_label.png')!r}",
        run / "scene_probs.tif": "class-probability raster, not a label image: give the same run's "
                                 f"label image, {str(run / 'scene_mres_label.png')!r}",
        tmp_path / "renamed.tif": "class-probability raster, not a label image: give the same run's "
                                  "<stem>_mres_label.png (or <stem>_mres_geo.tif)",
        tmp_path / "scene_scribbles.png": "autosaved scribbles (class k = value k, 0 = none), not pre-labels: "
                                          "give it with --scribbles",
    }
    shutil.copy(run / "scene_probs.tif", tmp_path / "alone_probs.tif")  # no alone_mres_label.png beside it
    expect[tmp_path / "alone_probs.tif"] = ("class-probability raster, not a label image: give the same run's "
                                            "<stem>_mres_label.png (or <stem>_mres_geo.tif)")
    for path, what in expect.items():
        capsys.readouterr()
        assert main([str(d / "scene.png"), "--init", str(path), "--headless", "-o", str(tmp_path / "o")]) == 2
        assert capsys.readouterr().err.strip() == f"label-image: error: --init {str(path)!r}: this is label_tools' {what}"
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
    # the label image of that run is taken
    assert main([str(d / "scene.png"), "--init", str(run / "scene_mres_label.png"), "--headless", "-o",
                 str(tmp_path / "ok"), "-q"]) == 0


def test_many_almost_absent_classes_are_listed_in_one_line_after_five():
    """An instance mask given as --init (he_nuclei_miccai/instances: 128 ids) gave 29 'almost absent'
    lines on stderr and in the report; now five, then one line naming the rest."""
    from label_tools import inspect

    k = 12
    labels = np.zeros((100, 100), np.uint8)
    w = inspect_run(labels, load_classes(None, None, n_classes=k), prelabelled=np.array([9000] + [50] * (k - 1)),
                    class_list=None)
    assert len(w) == inspect.MAX_ABSENT_WARNINGS + 1
    assert all(ln.startswith(f"warning: class class{i + 2} was pre-labelled by --init (50 px)") for i, ln in
               enumerate(w[:-1]))
    assert w[-1] == ("warning: 6 more classes are almost absent from the result in the same way: class7, class8, "
                     "class9, class10, class11, class12")
    w = inspect_run(labels, load_classes(None, None, n_classes=7), prelabelled=np.array([9000] + [50] * 6))
    assert w[-1] == "warning: 1 more class is almost absent from the result in the same way: class7"


def test_init_raster_of_another_place_is_refused(tmp_path, capsys):
    """s2_slovenia_lulc's mask moved one tile east (same size, same CRS) given as --init: before, laid on
    the image as if it were its own; now one line with both grids. The mask on its own grid, and one
    nudged by less than half a pixel, are taken."""
    import rasterio
    from affine import Affine

    from conftest import shared

    img, mask = shared("s2_slovenia_lulc", "images", "s2l1c_refscene4.tif"), shared("s2_slovenia_lulc", "masks",
                                                                                    "s2l1c_refscene2.tif")
    with rasterio.open(mask) as s:
        a, prof = s.read(), dict(s.profile)
    t = prof["transform"]
    for name, dx in (("east.tif", 1000.0), ("nudged.tif", 3.0)):
        prof["transform"] = Affine(t.a, t.b, t.c + dx, t.d, t.e, t.f)
        with rasterio.open(tmp_path / name, "w", **prof) as d:
            d.write(a)
    capsys.readouterr()
    assert main([img, "--init", str(tmp_path / "east.tif"), "--headless", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"label-image: error: --init {str(tmp_path / 'east.tif')!r}: lies elsewhere than the image (its CRS "
                   f"EPSG:32633, origin {t.c + 1000:.10g}, {t.f:.10g}, pixel 9.99479 x -9.99745; the image's "
                   f"EPSG:32633, {t.c:.10g}, {t.f:.10g}, 9.99479 x -9.99745); give pre-labels made for this image"), err
    for init in (mask, str(tmp_path / "nudged.tif")):
        assert main([img, "--init", init, "--headless", "-o", str(tmp_path / ("out_" + os.path.basename(init))), "-q"]) == 0


def test_help_for_init_reads_right(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "scribbles may then cover one class or none (pre-labels of one class need strokes of another)" in text
    assert "--init-offset N with --init: 1 = the --init file's ids start at 1" in text


@pytest.mark.parametrize("extra, way", [
    ([], ""),
    (["--init", "pre"], ", or --headless to label from the --init pre-labels alone"),
    (["--model", "m"], ", or --headless to apply --model as it is"),
    (["--model", "m", "--init", "pre"], ", or --headless to label from the --init pre-labels and --model"),
])
def test_no_display_names_the_headless_way_when_there_is_one(files, tmp_path, capsys, monkeypatch, extra, way):
    """Without a display the annotator cannot open: with --init or --model, --headless labels anyway, and
    the line says so (it named only --scribbles)."""
    d, mask = files
    from label_tools import annotate

    monkeypatch.setattr(annotate, "has_display", lambda: False)
    paths = {"pre": str(tmp_path / "pre.png"), "m": str(tmp_path / "m.skops")}
    Image.fromarray(mask.astype(np.uint8)).save(paths["pre"])
    if "--model" in extra:
        assert main([str(d / "scene.png"), "--scribbles", str(d / "scribbles.png"), "-o", str(tmp_path / "fit"),
                     "--save-model", paths["m"], "-q"]) == 0
    capsys.readouterr()
    assert main([str(d / "scene.png"), "-o", str(tmp_path / "o"), "--labels", str(d / "classes.txt")]
                + [paths.get(a, a) for a in extra]) == 2
    assert capsys.readouterr().err.strip() == ("label-image: error: no display for the annotation window: pass "
                                               "--scribbles FILE to label without a window" + way)


def test_strokes_on_nodata_only_are_named_as_such(files, tmp_path):
    """A class drawn only on a raster's no-data border (e.g. 'outside' on RGB.byte.tif's black frame):
    before, 'the strokes ... vanish on the model grid: raise --grid-scale' (or, earlier, 'almost absent:
    draw longer strokes'); no-data pixels are ignored when fitting and left out of the labels."""
    import rasterio
    from affine import Affine

    d, mask = files
    img = np.array(Image.open(d / "scene.png"))
    img[:, :12] = 0  # a no-data frame on the left
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=3, dtype="uint8",
                       nodata=0, crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000)) as ds:
        ds.write(np.moveaxis(img, -1, 0))
    scr = np.array(Image.open(d / "scribbles.png"))
    scr = np.where(scr == 3, 0, scr).astype(np.uint8)
    scr[:, :12] = 0
    scr[10:80, 3:8] = 3  # 'grass' only on the no-data frame
    Image.fromarray(scr).save(tmp_path / "scr.png")
    out = tmp_path / "o"
    assert main([str(path), "--scribbles", str(tmp_path / "scr.png"), "--labels", str(d / "classes.txt"), "-o",
                 str(out), "-q"]) == 0
    w = warning_lines(out / "scene_report.txt")
    assert "warning: the strokes of class grass lie on no-data pixels only, which are never labelled (255 in the " \
           "labels, without a class): draw it where the image has data, or leave it out" in w, w
    assert not any("vanish on the model grid" in ln or "grass was scribbled" in ln for ln in w), w


def test_scribble_geotiff_of_another_place_is_refused(tmp_path, capsys):
    """Scribbles rasterised in a GIS onto another tile of the same size: refused as --init is."""
    import rasterio
    from affine import Affine

    from conftest import shared

    img = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    with rasterio.open(shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")) as s:
        m, prof = s.read(1), dict(s.profile)
    scr = np.zeros(m.shape, np.uint8)
    scr[::7, ::7] = np.where(m[::7, ::7] == 1, 1, np.where(m[::7, ::7] == 2, 2, 0))  # forest, grassland dots
    t = prof["transform"]
    prof.update(nodata=None)
    for name, dx in (("here.tif", 0.0), ("east.tif", 1000.0)):
        prof["transform"] = Affine(t.a, t.b, t.c + dx, t.d, t.e, t.f)
        with rasterio.open(tmp_path / name, "w", **prof) as d:
            d.write(scr, 1)
    assert main([img, "--scribbles", str(tmp_path / "here.tif"), "-o", str(tmp_path / "a"), "-q"]) == 0
    capsys.readouterr()
    assert main([img, "--scribbles", str(tmp_path / "east.tif"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"label-image: error: --scribbles {str(tmp_path / 'east.tif')!r}: lies elsewhere than the "
                          "image (its CRS EPSG:32633, origin ") and err.endswith("; give scribbles made for this image")


def test_transparent_prelabel_pixels_are_unknown(tmp_path):
    """Label PNGs with an alpha channel (grey + alpha, RGBA): transparent pixels are unknown, as they are
    unlabelled in scribbles. Before, their grey value was taken as an id (7 here: 'holds class id 7 but
    there are only 3 classes'), and a transparent black pixel as the class coloured black."""
    from label_tools.prelabels import read_prelabels

    ids = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    grey = np.where([[True, True, True], [False, True, True]], ids, 7).astype(np.uint8)
    alpha = np.array([[255, 255, 255], [0, 255, 255]], np.uint8)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    expect = ids.copy()
    expect[1, 0] = 255
    np.testing.assert_array_equal(read_prelabels(str(tmp_path / "la.png"), (2, 3), 3), expect)
    colors = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    rgb = colors[ids]
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    out = read_prelabels(str(tmp_path / "rgba.png"), (2, 3), 3, colors=colors)
    np.testing.assert_array_equal(out, np.where(alpha > 0, ids, 255))


def test_almost_absent_class_whose_strokes_shrank_on_the_grid_is_told_to_raise_the_grid_scale():
    """--grid-scale 0.01 on a 172 x 306 Doodler crop: water's 7107 scribbled px keep 3 on the 2 x 3 px grid;
    'draw longer strokes' cannot help. A class whose few strokes are all on the grid keeps that advice."""
    classes = load_classes(None, None, n_classes=3)
    labels = np.full((100, 100), 2, np.uint8)
    w = inspect_run(labels, classes, scribbled=np.array([7107, 0, 5000]), grid_samples=np.array([3, 0, 3]),
                    grid_text=" (2 x 3 px, grid scale 0.01)", class_list=None)
    assert "warning: class class1 was scribbled (7107 px) but is almost absent from the result (0 px, 0.0000%); its " \
           "strokes keep only 3 px on the model grid (2 x 3 px, grid scale 0.01): raise --grid-scale" in w, w
    w = inspect_run(labels, classes, scribbled=np.array([8, 0, 5000]), grid_samples=np.array([8, 0, 5000]),
                    class_list=None)
    assert any(ln.startswith("warning: class class1 was scribbled (8 px)") and ln.endswith("draw longer strokes of "
               "it across its typical look, or check that its strokes are not drawn with another class") for ln in w), w
