"""QA pass over outputs, export, pre-labels and the cluster (session 21, qa19)."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from PIL import Image
from affine import Affine

from conftest import make_scene, scene_scribbles
from label_tools.cli import main


def small_geotiff(path, h=48, w=70, seed=0):
    """A non-square 3-band uint8 GeoTIFF (EPSG:32633, 10 m pixels) of the test scene; returns its mask."""
    img, mask = make_scene(h, w, seed=seed)
    prof = dict(driver="GTiff", height=h, width=w, count=3, dtype="uint8", crs="EPSG:32633",
                transform=Affine(10.0, 0.0, 465000.0, 0.0, -10.0, 5080000.0))
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(np.moveaxis(img, -1, 0))
    return mask


@pytest.fixture
def geo_input(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    mask = small_geotiff(src / "scene.tif")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(src / "strokes.png")
    (src / "classes.txt").write_text("water\nland\nfield\n")
    return src


def _wrote(caplog):
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote "))
    return line[len("wrote "):].rsplit(" into ", 1)[0].split(", ")


# ------------------------------------------------------------------------------ 1. the .aux.xml sidecar
def test_the_wrote_line_names_every_file_written_and_the_input_folder_is_left_alone(geo_input, tmp_path, caplog):
    """The label GeoTIFF's category sidecar (<stem>_mres_geo.tif.aux.xml) was written but missing from the
    'wrote ...' line; and nothing (no GDAL .aux.xml) may appear beside the input."""
    before = sorted(os.listdir(geo_input))
    out = tmp_path / "out"
    argv = [str(geo_input / "scene.tif"), "--scribbles", str(geo_input / "strokes.png"),
            "--labels", str(geo_input / "classes.txt"), "-o", str(out)]
    caplog.set_level("INFO", logger="label_tools")
    assert main(argv + ["--save-probs"]) == 0
    wrote = _wrote(caplog)
    assert sorted(wrote) == sorted(os.listdir(out)) and "scene_mres_geo.tif.aux.xml" in wrote
    assert sorted(os.listdir(geo_input)) == before
    if shutil.which("gdalinfo"):  # GDAL reads the class names from the sidecar
        info = subprocess.run(["gdalinfo", str(out / "scene_mres_geo.tif")], capture_output=True, text=True).stdout
        assert "scene_mres_geo.tif.aux.xml" in info and "3: field" in info


def test_a_lone_sidecar_left_from_another_run_is_not_replaced_without_overwrite(geo_input, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    aux = out / "scene_mres_geo.tif.aux.xml"
    aux.write_text("<PAMDataset>mine</PAMDataset>\n")
    argv = [str(geo_input / "scene.tif"), "--scribbles", str(geo_input / "strokes.png"),
            "--labels", str(geo_input / "classes.txt"), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "scene_mres_geo.tif.aux.xml" in err and "--overwrite" in err and err.count("\n") == 1, err
    assert os.listdir(out) == [aux.name] and aux.read_text() == "<PAMDataset>mine</PAMDataset>\n"
    assert main(argv + ["--overwrite"]) == 0
    assert "<Category>field</Category>" in aux.read_text()


# ------------------------------------------------------------------------------ 4. round trips, property-based
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from label_tools.classes import MAX_CLASSES, Classes  # noqa: E402

FEW = settings(max_examples=30, deadline=None, database=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# a class name as a labels file can hold one: stripped, one line, not a "#!" comment, any script; no control
# characters (GDAL drops them from metadata: seen, left alone)
name_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda n: n == n.strip() and n.splitlines() == [n] and not n.startswith("#!"))


@st.composite
def label_images(draw, max_side=9):
    """(labels uint8 (H, W): 0-based ids and 255 = no-data, classes): K from 1 to 254, ids drawn among the K
    (some classes absent), the largest ids and 255 favoured."""
    k = draw(st.one_of(st.integers(1, 6), st.integers(MAX_CLASSES - 3, MAX_CLASSES)))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    ids = st.one_of(st.integers(0, k - 1), st.sampled_from([0, k - 1, 255]))
    labels = draw(hnp.arrays(np.uint8, (h, w), elements=ids))
    names = draw(st.lists(name_text, min_size=k, max_size=k, unique=True)) if k <= 6 else \
        [f"c{i}" for i in range(k)]
    colors = draw(hnp.arrays(np.uint8, (k, 3)))
    return labels, Classes(tuple(names), colors)


def _georef(h, w):
    from rasterio.crs import CRS

    from label_tools.io import Georef

    crs, t = CRS.from_epsg(32633), Affine(10.0, 0.0, 465000.0, 0.0, -10.0, 5080000.0)
    return Georef(profile=dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=crs, transform=t),
                  crs=crs, transform=t)


@FEW
@given(label_images())
def test_label_png_read_back_by_init_gives_the_same_class_ids(case):
    """<stem>_mres_label.png (0-based ids, 255 = no-data) given back as --init: the same ids, every class count."""
    import tempfile

    from label_tools.prelabels import read_prelabels
    from label_tools.writers import write_label_png

    labels, classes = case
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x_mres_label.png")
        write_label_png(p, labels)
        got = read_prelabels(p, labels.shape, len(classes), offset=None)
    assert got.dtype == np.uint8 and got.shape == labels.shape
    np.testing.assert_array_equal(got, labels)


@FEW
@given(label_images())
def test_label_geotiff_read_back_by_init_gives_the_same_class_ids_and_classes(case):
    """<stem>_mres_geo.tif (id + 1, 0 = no-data) given back as --init: the same ids, and its metadata gives back
    the class names (also absent classes, any script) and colours."""
    import tempfile

    from label_tools.prelabels import own_classes, read_prelabels
    from label_tools.writers import write_geotiff

    labels, classes = case
    georef = _georef(*labels.shape)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x_mres_geo.tif")
        write_geotiff(p, labels, georef, classes)
        got = read_prelabels(p, labels.shape, len(classes), offset=None, georef=georef)
        own = own_classes(p)
        with rasterio.open(p) as ds:
            assert ds.crs == georef.crs and ds.transform == georef.transform and ds.nodata == 0
            raw = ds.read(1)
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(raw, np.where(labels == 255, 0, labels.astype(int) + 1))
    assert own is not None and own.names == classes.names
    np.testing.assert_array_equal(own.colors, classes.colors)


@FEW
@given(label_images(), st.data())
def test_mat_read_back_by_scipy_keeps_shapes_dtypes_and_names(case, data):
    """<stem>_mres.mat through scipy.io.loadmat (and label-export's reader of its class names): every matrix
    with its shape and dtype, the names whole in any script (non-ASCII, beyond the BMP), absent classes too."""
    import tempfile

    from scipy.io import loadmat

    from label_tools.export import classes_from_mat
    from label_tools.writers import write_mat

    labels, classes = case
    k = len(classes)
    names = data.draw(st.lists(name_text, min_size=k, max_size=k, unique=True), label="names") if k <= 6 \
        else list(classes.names)
    classes = Classes(tuple(names), classes.colors)
    h, w = labels.shape
    gh, gw = data.draw(st.integers(1, h), label="grid h"), data.draw(st.integers(1, w), label="grid w")
    probs = data.draw(hnp.arrays(np.float32, (min(k, 6), gh, gw), elements=st.floats(0, 1, width=32)), label="probs")
    if k > 6:
        probs = np.resize(probs, (k, gh, gw))
    scribbles = np.where(labels == 255, 0, labels.astype(int) + 1).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x_mres.mat")
        write_mat(p, scribbles=scribbles, labels=labels, classes=classes, probs=probs)
        m = loadmat(p)
        back_names, back_colors = classes_from_mat(p)
    for key, want in (("sparse", scribbles), ("class", labels), ("colors", classes.colors), ("preds", probs)):
        assert m[key].dtype == want.dtype and m[key].shape == want.shape, (key, m[key].dtype, m[key].shape)
        np.testing.assert_array_equal(m[key], want)
    assert m["labels"].shape == (1, k)
    assert [str(x[0]) if x.size else "" for x in m["labels"].ravel()] == names
    assert back_names == tuple(names) and back_colors == classes.hex_colors


def _result_folder(root, labels, image, *, names=("water", "land", "field"), geo=False, stem="scene"):
    """A label-image result folder made with the writers (no model): the source image (PNG, or a GeoTIFF),
    <stem>_mres_label.png (and _mres_geo.tif), _mres.mat and a report naming the source. Returns (folder, source)."""
    import cv2

    from label_tools.classes import default_colors
    from label_tools.writers import write_geotiff, write_label_png, write_mat, write_report

    src_dir, res = os.path.join(root, "src"), os.path.join(root, "res")
    os.makedirs(src_dir, exist_ok=True)
    os.makedirs(res, exist_ok=True)
    classes = Classes(tuple(names), default_colors(len(names)))
    h, w = labels.shape
    if geo:
        source = os.path.join(src_dir, stem + ".tif")
        georef = _georef(h, w)
        with rasterio.open(source, "w", **georef.profile) as ds:
            ds.write(np.moveaxis(image, -1, 0))
        write_geotiff(os.path.join(res, stem + "_mres_geo.tif"), labels, georef, classes)
    else:
        source = os.path.join(src_dir, stem + ".png")
        cv2.imwrite(source, image[..., ::-1])
    write_label_png(os.path.join(res, stem + "_mres_label.png"), labels)
    write_mat(os.path.join(res, stem + "_mres.mat"), scribbles=np.zeros_like(labels), labels=labels, classes=classes,
              probs=np.zeros((len(names), 1, 1), np.float32))
    write_report(os.path.join(res, stem + "_report.txt"), image_path=source, shape=(h, w), classes=classes,
                 labels=labels, annotation_seconds=0, processing_seconds=0, settings={})
    return res, source


@settings(FEW, max_examples=25)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(16, 40), st.data())
def test_export_tiles_cover_the_image_and_are_its_crops(h, w, tile, data):
    """label-export: the tiles' windows cover every labelled pixel; each tile is the crop of the image and the
    labels at its window, padded with 0 / 255 (no-data); a GeoTIFF chip lands on its window; a tile is left out
    only when all its labels are no-data."""
    import tempfile

    from label_tools.export import export_dataset

    overlap = data.draw(st.integers(0, tile - 1), label="overlap")
    geo = data.draw(st.booleans(), label="geo")
    labels = data.draw(hnp.arrays(np.uint8, (h, w), elements=st.sampled_from([0, 1, 2, 255])), label="labels")
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.integers(1, 256, (h, w, 3)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        res, source = _result_folder(d, labels, image, geo=geo)
        out = os.path.join(d, "ds")
        info = export_dataset([res], out, tile=tile, overlap=overlap, val_fraction=0.0)
        covered = np.zeros((h, w), bool)
        for t in info["tiles"]:
            r, c, th, tw = t["window"]
            if geo:
                with rasterio.open(os.path.join(out, t["label"])) as ds:
                    lab = ds.read(1)
                    g, t_ = _georef(h, w).transform, ds.transform
                    assert (t_.a, t_.e, t_.c, t_.f) == (g.a, g.e, g.c + g.a * c, g.f + g.e * r)
                with rasterio.open(os.path.join(out, t["image"])) as ds:
                    img = np.moveaxis(ds.read(), 0, -1)
            else:
                lab = np.array(Image.open(os.path.join(out, t["label"])))
                img = np.array(Image.open(os.path.join(out, t["image"])))
            assert lab.shape == (tile, tile) and img.shape == (tile, tile, 3)
            np.testing.assert_array_equal(lab[:th, :tw], labels[r: r + th, c: c + tw])
            np.testing.assert_array_equal(img[:th, :tw], image[r: r + th, c: c + tw])
            assert (lab[th:] == 255).all() and (lab[:, tw:] == 255).all()
            assert (img[th:] == 0).all() and (img[:, tw:] == 0).all()
            covered[r: r + th, c: c + tw] = True
        assert covered[labels != 255].all()
        windows = {tuple(t["window"][:2]) for t in info["tiles"]}
        from label_tools.export import tile_starts

        for r in tile_starts(h, tile, overlap):
            for c in tile_starts(w, tile, overlap):
                if (r, c) not in windows:  # left out: all no-data
                    assert (labels[r: r + tile, c: c + tile] == 255).all()


# ------------------------------------------------------------------------------ 5. label-export's bad input
def _tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        out.update({os.path.relpath(os.path.join(d, x), root) + os.sep: None for x in dirs})  # a folder left empty
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _resized_source(root, res, src):
    import cv2

    cv2.imwrite(src, np.zeros((41, 50, 3), np.uint8))
    return [res, "-o", os.path.join(root, "ds")], [repr(os.path.join(res, "scene_mres_label.png")), "50 x 40",
                                                   "50 x 41", repr(src)]


def _output_is_a_file(root, res, src):
    with open(os.path.join(root, "afile"), "w") as f:
        f.write("mine")
    return [res, "-o", os.path.join(root, "afile")], ["-o/--output", "is a file"]


def _parent_missing(root, res, src):
    return [res, "-o", os.path.join(root, "nope", "ds")], ["-o/--output", repr(os.path.join(root, "nope")),
                                                           "does not exist"]


def _parent_not_writable(root, res, src):
    if os.geteuid() == 0:  # root writes anywhere: a folder no one can write in
        return [res, "-o", "/proc/label_tools_ds"], ["cannot write the dataset '/proc/label_tools_ds'",
                                                     "one you can write to"]
    ro = os.path.join(root, "ro")
    os.mkdir(ro, 0o555)
    return [res, "-o", os.path.join(ro, "ds")], [repr(ro), "is not writable"]


def _no_mat(root, res, src):
    os.remove(os.path.join(res, "scene_mres.mat"))
    return [res, "-o", os.path.join(root, "ds")], [repr(os.path.join(res, "scene_mres.mat")), "missing"]


def _no_report(root, res, src):
    os.remove(os.path.join(res, "scene_report.txt"))
    return [res, "-o", os.path.join(root, "ds")], ["scene_report.txt", "no report"]


def _damaged_labels(root, res, src):
    p = os.path.join(res, "scene_mres_label.png")
    with open(p, "rb") as f:
        head = f.read(60)
    with open(p, "wb") as f:
        f.write(head)
    return [res, "-o", os.path.join(root, "ds")], [repr(p), "cannot be read"]


def _existing_dataset(root, res, src):
    os.makedirs(os.path.join(root, "ds"))
    with open(os.path.join(root, "ds", "mine.txt"), "w") as f:
        f.write("keep")
    return [res, "-o", os.path.join(root, "ds")], ["-o/--output", "exists and is not empty", "--overwrite"]


def _results_is_a_file(root, res, src):
    return [os.path.join(res, "scene_report.txt"), "-o", os.path.join(root, "ds")], ["results folder",
                                                                                     "is not a folder"]


@pytest.mark.parametrize("case", [_resized_source, _output_is_a_file, _parent_missing, _parent_not_writable, _no_mat,
                                  _no_report, _damaged_labels, _existing_dataset, _results_is_a_file],
                         ids=lambda f: f.__name__.strip("_"))
def test_export_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    """The cases tests/test_export.py does not cover: one line naming the file or option, exit 2, every file
    as it was and nothing new (the missing folder, an empty one, a source gone, an existing DATASET: there)."""
    from label_tools.export import main as export_main

    labels = np.zeros((40, 50), np.uint8)
    labels[:, 25:] = 1
    res, src = _result_folder(str(tmp_path), labels, np.full((40, 50, 3), 90, np.uint8))
    argv, needles = case(str(tmp_path), res, src)
    before = _tree(tmp_path)
    assert export_main(argv + ["--tile", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("label-export: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)
    assert _tree(tmp_path) == before


def test_export_refuses_a_result_labelled_on_another_plane(tmp_path, capsys):
    """A result of --plane (one z-slice/time point/page of a stack, said in its report's settings) whose source has
    no such plane now (here: a PNG, of one plane) cannot be tiled from that plane: refused in one line."""
    from label_tools.export import main as export_main

    res, src = _result_folder(str(tmp_path), np.zeros((40, 50), np.uint8), np.full((40, 50, 3), 90, np.uint8))
    rep = os.path.join(res, "scene_report.txt")
    with open(rep, encoding="utf-8") as f:
        text = f.read()
    with open(rep, "w", encoding="utf-8") as f:
        f.write(text.replace("settings:\n", "settings:\n  plane (--plane): 3,2 (z-slice 3 at time point 2)\n"))
    before = _tree(tmp_path)
    assert export_main([res, "-o", str(tmp_path / "ds"), "--tile", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(--plane 3,2);" in err and repr(src) in err, err
    assert _tree(tmp_path) == before


def test_figure_title_names_the_plane_of_a_stack(tmp_path, monkeypatch):
    """A source carrying the plane it was read at (``src.plane["suffix"]``, --plane) gets it in the figure's
    title, as in the output names; a source without one keeps its stem alone."""
    from types import SimpleNamespace

    from label_tools import writers
    from label_tools.classes import default_colors

    titles = []
    monkeypatch.setattr(writers, "write_overlay", lambda *a, title="", **k: titles.append(title))
    img = np.zeros((8, 10, 3), np.uint8)
    classes = Classes(("a", "b"), default_colors(2))
    for plane in (None, {"suffix": "_z03_t02"}, {"suffix": None}):
        src = SimpleNamespace(path="/d/stack.tif", shape=(8, 10), plane=plane, read_display=lambda out_shape: img)
        writers._write_figure("x.png", src, np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8), classes)
    assert titles == ["stack", "stack_z03_t02", "stack"]


@FEW
@given(label_images())
def test_report_class_lines_count_every_labelled_pixel_once(case):
    """The report's class lines: one per class in labels-file order (absent ones at 0), pixels summing to the
    labelled pixels, fractions to 1, and a no-data line with the rest."""
    import re
    import tempfile

    from label_tools.writers import write_report

    labels, classes = case
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x_report.txt")
        write_report(p, image_path="/d/x.png", shape=labels.shape, classes=classes, labels=labels,
                     annotation_seconds=0, processing_seconds=0, settings={})
        with open(p, encoding="utf-8") as f:
            lines = f.read().split("classes (fraction of labelled pixels):\n", 1)[1].split("\n\n", 1)[0].splitlines()
            f.seek(0)
            text = f.read()
    assert len(lines) == len(classes)
    px, frac = [], []
    for line, name in zip(lines, classes.names):
        m = re.fullmatch(r"(.*): (\d\.\d{6}) \((\d+) px\)", line)
        assert m and m.group(1) == name, line
        frac.append(float(m.group(2)))
        px.append(int(m.group(3)))
    np.testing.assert_array_equal(px, np.bincount(labels.ravel(), minlength=256)[: len(classes)])
    labelled = int((labels != 255).sum())
    assert sum(px) == labelled and (labelled == 0 or abs(sum(frac) - 1) <= 1e-6 * len(classes) + 1e-9)
    assert (f"no-data: {labels.size - labelled} px" in text) == (labelled < labels.size)
