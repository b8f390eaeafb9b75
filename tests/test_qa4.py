"""What a fourth QA pass, using label-image as its users do, found wrong (each test failed before its fix)."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE, shared
from label_tools.cli import main

BEACH = os.path.join(SAMPLE, "beach.png")
BEACH_SCR = os.path.join(SAMPLE, "beach_scribbles.png")
CLASSES = os.path.join(SAMPLE, "classes.txt")
COLORS = os.path.join(SAMPLE, "colors.txt")


def test_save_model_into_the_new_output_folder(tmp_path, capsys):
    """``-o out --save-model out/m.skops`` with ``out`` not made yet: the run makes ``out``, so the model
    may go there. Before: exit 2, 'label-image: error: --save-model: directory '.../out' does not exist;
    create it or choose another path', nothing labelled."""
    from label_tools.modelfile import load_model

    out = tmp_path / "out"
    assert main([BEACH, "--scribbles", BEACH_SCR, "--labels", CLASSES, "--colors", COLORS, "-o", str(out),
                 "--save-model", str(out / "m.skops"), "-q"]) == 0
    assert sorted(os.listdir(out)) == ["beach_mres.mat", "beach_mres.png", "beach_mres_label.png",
                                       "beach_report.txt", "m.skops"]
    assert load_model(str(out / "m.skops")).classes.names == ("water", "land")
    assert capsys.readouterr().err == ""


def test_save_model_in_a_missing_folder_other_than_the_output_is_still_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([BEACH, "--scribbles", BEACH_SCR, "--labels", CLASSES, "-o", str(out),
                 "--save-model", str(tmp_path / "elsewhere" / "m.skops"), "-q"]) == 2
    assert capsys.readouterr().err == (f"label-image: error: --save-model: directory "
                                       f"{str(tmp_path / 'elsewhere')!r} does not exist; create it or choose "
                                       "another path\n")
    assert not out.exists()


def test_grey_png_with_alpha_is_one_grey_band(tmp_path):
    """An EM slice saved as grey + alpha (Fiji, GIMP exports) is labelled as the grey slice it is. Before:
    OpenCV turned it into three equal colour bands ('size: 512 x 512 px (width x height), 3 band(s)',
    three times the features) and a model fitted on it refused the plain grey slices ('has 1 feature bands
    but the model was fitted on 3')."""
    from label_tools.synthetic import synthetic_scribbles

    grey = np.array(Image.open(shared("isbi2012_em_membranes", "images", "00.png")))
    mask = np.array(Image.open(shared("isbi2012_em_membranes", "masks", "00.png")))
    assert grey.ndim == 2
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA").save(tmp_path / "slice.png")
    Image.fromarray(grey).save(tmp_path / "plain.png")
    Image.fromarray(synthetic_scribbles(mask)).save(tmp_path / "scr.png")
    for name in ("slice", "plain"):
        assert main([str(tmp_path / f"{name}.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path),
                     "-q"]) == 0
    report = (tmp_path / "slice_report.txt").read_text().splitlines()
    assert "size: 512 x 512 px (width x height), 1 band(s)" in report
    a = np.array(Image.open(tmp_path / "slice_mres_label.png"))
    b = np.array(Image.open(tmp_path / "plain_mres_label.png"))
    assert a.shape == (512, 512) and np.array_equal(a, b)


def test_alpha_band_of_an_rgba_geotiff_masks_and_is_no_feature(tmp_path):
    """An RGBA orthomosaic (alpha 0 outside the footprint, as ODM/Metashape/QGIS write them): the alpha
    band is the no-data mask, not a fourth colour band. Before: the features used it ('feature bands: all',
    4 bands), and the model fitted on it refused the same scene as RGB ('has 3 feature bands but the model
    was fitted on 4')."""
    import rasterio
    from rasterio.enums import ColorInterp

    from label_tools.modelfile import load_model

    src = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    with rasterio.open(src) as ds:
        rgb, profile = ds.read(), ds.profile
    alpha = np.where((rgb > 0).any(axis=0), 255, 0).astype(np.uint8)
    profile.update(count=4, nodata=None)
    with rasterio.open(tmp_path / "ortho.tif", "w", **profile) as ds:
        ds.write(np.concatenate([rgb, alpha[None]]))
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    Image.fromarray(_landsat_strokes(alpha.shape)).save(tmp_path / "scr.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "ortho.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out),
                 "--save-model", str(out / "m.skops"), "-q"]) == 0
    report = (out / "ortho_report.txt").read_text().splitlines()
    assert "  feature bands: all but the alpha band 4 (it masks no-data)" in report
    model = load_model(str(out / "m.skops"))
    assert model.n_bands == 3 and model.band_names == ("band 1", "band 2", "band 3")
    with rasterio.open(out / "ortho_mres_geo.tif") as ds:
        labels = ds.read(1)
    assert np.array_equal(labels == 0, alpha == 0)  # no-data exactly where alpha is 0
    assert main(["--model", str(out / "m.skops"), "--headless", src, "-o", str(out), "-q"]) == 0
    with rasterio.open(out / "RGB.byte_mres_geo.tif") as ds:
        assert (ds.read(1) == labels).mean() > 0.95


@pytest.mark.parametrize("labels", [False, True])
def test_instance_mask_given_as_init_is_refused(tmp_path, capsys, labels):
    """The H&E tiles' 16-bit instance mask (one id per nucleus) given to --init. Before: without --labels,
    a run of 128 classes ('class1' ... 'class128', one per nucleus, a legend of 128 entries); with a
    2-class labels file, 'holds class id 127 but there are only 2 classes'. Now one line saying it looks
    like an instance mask and what --init takes."""
    init = shared("he_nuclei_miccai", "instances", "image02.png")
    out = tmp_path / "out"
    args = [shared("he_nuclei_miccai", "images", "image02.png"), "--init", init, "--headless", "-o", str(out)]
    if labels:
        (tmp_path / "classes.txt").write_text("background\nnucleus\n")
        args += ["--labels", str(tmp_path / "classes.txt")]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: --init {init!r}: holds 128 different ids, 127 of them a single connected region "
        "each: an instance mask (one id per object)? --init takes class ids (0..K-1 in labels-file order, "
        "255 = unknown): give the class mask (e.g. background 0, objects 1), or --labels naming every class "
        "if the ids are classes\n")
    assert not out.exists()  # not even the folder (a headless run made it before reading the image)


@pytest.mark.parametrize("target", ["image", "scribbles", "output"])
def test_save_model_never_replaces_the_image_scribbles_or_an_output(tmp_path, capsys, target):
    """A slip in the --save-model path with --overwrite (to replace last run's outputs). Before: the model
    archive was written over the photo, the scribbles or the run's own figure; now one line, exit 2, nothing
    written, the file as it was."""
    import shutil

    image, scr = tmp_path / "beach.png", tmp_path / "beach_scribbles.png"
    shutil.copy(BEACH, image)
    shutil.copy(BEACH_SCR, scr)
    out = tmp_path / "out"
    out.mkdir()
    path = {"image": image, "scribbles": scr, "output": out / "beach_mres.png"}[target]
    before = path.read_bytes() if path.exists() else None
    assert main([str(image), "--scribbles", str(scr), "-o", str(out), "--save-model", str(path), "--overwrite",
                 "-q"]) == 2
    what = {"image": "the image to label", "scribbles": "the --scribbles file",
            "output": "one of this run's outputs (beach_mres.png)"}[target]
    assert capsys.readouterr().err == (f"label-image: error: --save-model: {str(path)!r} is {what}; the model "
                                       "would replace it: give another file, such as model.skops\n")
    assert os.listdir(out) == []
    assert (path.read_bytes() if path.exists() else None) == before
    assert image.read_bytes() == Path(BEACH).read_bytes() and scr.read_bytes() == Path(BEACH_SCR).read_bytes()


def test_transparent_pixels_of_a_png_are_no_data(tmp_path):
    """An H&E tile cut out as RGBA with its left 100 columns transparent (alpha 0). Before: alpha was
    dropped and the transparent strip labelled like tissue (no 'no-data' line, 239,120 px in the fractions);
    now it is no-data as in an RGBA GeoTIFF: 255 in the label PNG, out of the fractions."""
    from label_tools.synthetic import synthetic_scribbles

    rgba = np.array(Image.open(shared("he_nuclei_miccai", "images", "image02.png")))
    mask = np.array(Image.open(shared("he_nuclei_miccai", "masks", "image02.png")))
    assert rgba.shape == (490, 488, 4) and (rgba[..., 3] == 255).all()
    rgba[:, :100, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    Image.fromarray(synthetic_scribbles(mask)).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "cut.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path),
                 "-q"]) == 0
    labels = np.array(Image.open(tmp_path / "cut_mres_label.png"))
    assert (labels[:, :100] == 255).all() and (labels[:, 100:] < 2).all()
    report = (tmp_path / "cut_report.txt").read_text().splitlines()
    assert report[3:5] == ["size: 488 x 490 px (width x height), 3 band(s)",
                           "no-data: 49000 px (excluded from the fractions)"]


def _landsat_strokes(shape):
    import cv2

    scr = np.zeros(shape, np.uint8)
    for k, line in enumerate([((450, 250), (500, 600)), ((100, 400), (150, 550)), ((250, 300), (330, 450)),
                              ((320, 200), (360, 210))], 1):  # deep water, shallow water, land, cloud
        cv2.line(scr, *line, k, 4)
    return scr


def test_stroke_on_no_data_changes_nothing(tmp_path):
    """RGB.byte.tif (Landsat, no-data collar) with a land stroke drawn entirely in the black collar
    beside four strokes on data. 'Scribbles on no-data pixels are ignored' (README), but the held-out
    check still took it for a stroke. Before: 'warning: stroke of class class3 at x0,y0,x1,y1 =
    7,27,102,32 is mostly contradicted: ... redraw it as class1' and, with the land class's real stroke
    held out beside it, a second false warning on that one; now no warning and the same labels as
    without the collar stroke."""
    import cv2
    import rasterio

    src = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    with rasterio.open(src) as ds:
        valid = ds.dataset_mask() > 0
    scr = _landsat_strokes(valid.shape)
    Image.fromarray(scr).save(tmp_path / "scr.png")
    collar = scr.copy()
    cv2.line(collar, (10, 30), (100, 30), 3, 4)
    assert not valid[collar != scr].any() and (collar != scr).sum() > 300
    Image.fromarray(collar).save(tmp_path / "collar.png")
    for name in ("scr", "collar"):
        assert main([src, "--scribbles", str(tmp_path / f"{name}.png"), "-o", str(tmp_path / name), "-q"]) == 0
    report = (tmp_path / "collar" / "RGB.byte_report.txt").read_text().splitlines()
    assert [ln for ln in report if ln.startswith("warning:")] == []
    with rasterio.open(tmp_path / "scr" / "RGB.byte_mres_geo.tif") as a, \
            rasterio.open(tmp_path / "collar" / "RGB.byte_mres_geo.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))


@pytest.mark.parametrize("case", ["missing folder", "existing model"])
def test_collection_save_model_checked_before_the_first_image(tmp_path, capsys, monkeypatch, case):
    """A collection walk (a folder, in the annotator) with --save-model. Before: a path in a missing
    folder failed only after the first image was annotated and written, leaving outputs the walk had not
    finished (the next run then stopped on them unless --overwrite); an existing model file (another
    survey's) was replaced without --overwrite. Now both stop in one line before any window opens."""
    import shutil

    import label_tools.annotate as annotate_mod

    folder = tmp_path / "survey"
    folder.mkdir()
    for name in ("00", "05"):
        shutil.copy(shared("isbi2012_em_membranes", "images", f"{name}.png"), folder / f"{name}.png")
    opened = []

    def fake_annotate(src, classes, **kw):  # the window: the person strokes both classes
        from label_tools.synthetic import synthetic_scribbles

        opened.append(src.path)
        stem = os.path.splitext(os.path.basename(src.path))[0]
        return synthetic_scribbles(np.array(Image.open(shared("isbi2012_em_membranes", "masks", f"{stem}.png")))), 1.0

    monkeypatch.setattr(annotate_mod, "annotate", fake_annotate)
    monkeypatch.setattr(annotate_mod, "has_display", lambda: True)
    out = tmp_path / "out"
    out.mkdir()
    if case == "missing folder":
        target = tmp_path / "models" / "em.skops"
        message = f"--save-model: directory {str(tmp_path / 'models')!r} does not exist; create it or choose another path"
    else:
        target = tmp_path / "other_survey.skops"
        target.write_bytes(b"another survey's model")
        message = f"--save-model: {str(target)!r} already exists; pass --overwrite to replace it or choose another path"
    (tmp_path / "classes.txt").write_text("membrane\ncell\n")
    assert main([str(folder), "--labels", str(tmp_path / "classes.txt"), "-o", str(out),
                 "--save-model", str(target), "-q"]) == 2
    assert capsys.readouterr().err == f"label-image: error: {message}\n"
    assert opened == [] and os.listdir(out) == []
    if case == "existing model":
        assert target.read_bytes() == b"another survey's model"


def test_colour_scribbles_in_other_colours_than_colors_file(tmp_path, capsys):
    """The beach strokes painted in a paint program's pure blue and a light orange, with the sample's
    colours file (#1f5fbf, #d9b36c). Before: 'scribbles cover 0 classes (none); scribble at least two
    classes', which does not say that the colours were the problem; now the line names the class colours
    and the file's own."""
    scr = np.array(Image.open(BEACH_SCR))
    rgb = np.zeros(scr.shape + (3,), np.uint8)
    rgb[scr == 1] = (0, 0, 255)
    rgb[scr == 2] = (255, 200, 100)
    Image.fromarray(rgb).save(tmp_path / "painted.png")
    out = tmp_path / "out"
    assert main([BEACH, "--scribbles", str(tmp_path / "painted.png"), "--labels", CLASSES, "--colors", COLORS,
                 "-o", str(out), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: scribble file {str(tmp_path / 'painted.png')!r}: no pixel is within colour distance "
        "40 of a --colors colour (water #1f5fbf, land #d9b36c); its commonest painted colours are #0000ff, "
        "#ffc864: paint with the class colours, or give those in --colors\n")
    assert not out.exists()


def test_collection_walk_run_again_keeps_using_its_own_saved_model(tmp_path, monkeypatch):
    """The check above must not stop the walk's own model file: the same command run again (a resumed
    or finished walk) goes on without --overwrite."""
    import shutil

    import label_tools.annotate as annotate_mod
    from label_tools.modelfile import load_model
    from label_tools.synthetic import synthetic_scribbles

    folder = tmp_path / "survey"
    folder.mkdir()
    for name in ("00", "05"):
        shutil.copy(shared("isbi2012_em_membranes", "images", f"{name}.png"), folder / f"{name}.png")

    def fake_annotate(src, classes, **kw):
        stem = os.path.splitext(os.path.basename(src.path))[0]
        return synthetic_scribbles(np.array(Image.open(shared("isbi2012_em_membranes", "masks", f"{stem}.png")))), 1.0

    monkeypatch.setattr(annotate_mod, "annotate", fake_annotate)
    monkeypatch.setattr(annotate_mod, "has_display", lambda: True)
    (tmp_path / "classes.txt").write_text("membrane\ncell\n")
    args = [str(folder), "--labels", str(tmp_path / "classes.txt"), "-o", str(tmp_path / "out"),
            "--save-model", str(tmp_path / "em.skops"), "-q"]
    assert main(args) == 0
    first = (tmp_path / "em.skops").read_bytes()
    assert main(args) == 0  # finished images skipped, the model file is the walk's own
    assert (tmp_path / "em.skops").read_bytes() == first
    assert load_model(str(tmp_path / "em.skops")).classes.names == ("membrane", "cell")


def test_model_applies_the_bands_it_was_fitted_with(tmp_path):
    """A Sentinel-2 model fitted with --bands 4,3,2 --feature-bands 2,3,4,8 (true colour, 10 m bands),
    applied to the other date with --model --headless and no band options. Before: 'image ... has 13
    feature bands but the model was fitted on 4' (and with the feature bands given, the CRF and the
    figure used bands 1,2,3: 5 % of the labels changed); now the model's bands are used, as if given."""
    import rasterio

    from label_tools.synthetic import synthetic_scribbles

    scene2 = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    scene4 = shared("s2_slovenia_lulc", "images", "s2l1c_refscene4.tif")
    with rasterio.open(shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")) as ds:
        Image.fromarray(synthetic_scribbles(ds.read(1))).save(tmp_path / "scr.png")
    bands = ["--bands", "4,3,2", "--feature-bands", "2,3,4,8"]
    model = tmp_path / "fit" / "s2.skops"
    assert main([scene2, "--scribbles", str(tmp_path / "scr.png"), *bands, "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    assert main(["--model", str(model), "--headless", scene4, "-o", str(tmp_path / "plain"), "-q"]) == 0
    assert main(["--model", str(model), "--headless", scene4, *bands, "-o", str(tmp_path / "given"), "-q"]) == 0
    report = (tmp_path / "plain" / "s2l1c_refscene4_report.txt").read_text().splitlines()
    assert "  bands: [4, 3, 2]" in report and "  feature bands: [2, 3, 4, 8]" in report
    with rasterio.open(tmp_path / "plain" / "s2l1c_refscene4_mres_geo.tif") as a, \
            rasterio.open(tmp_path / "given" / "s2l1c_refscene4_mres_geo.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))


def test_collection_prelabels_use_the_model_bands(tmp_path, monkeypatch):
    """A collection walk started from a Sentinel-2 model fitted with --bands 4,3,2: the pre-labels shown
    in the window are the model's labels with those bands, as the image's final labels use them. Before:
    the walk opened the scenes with bands 1,2,3, so the pre-labels differed from what the model gives."""
    import shutil

    import rasterio

    import label_tools.annotate as annotate_mod
    from label_tools.io import open_image
    from label_tools.modelfile import load_model
    from label_tools.synthetic import synthetic_scribbles

    scene2 = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    with rasterio.open(shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")) as ds:
        Image.fromarray(synthetic_scribbles(ds.read(1))).save(tmp_path / "scr.png")
    model = tmp_path / "fit" / "s2.skops"
    assert main([scene2, "--scribbles", str(tmp_path / "scr.png"), "--bands", "4,3,2", "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    folder = tmp_path / "day2"
    folder.mkdir()
    shutil.copy(shared("s2_slovenia_lulc", "images", "s2l1c_refscene4.tif"), folder / "scene4.tif")
    seen = {}

    def fake_annotate(src, classes, **kw):
        seen["prelabels"] = kw["prelabels"]
        return np.zeros(src.shape, np.uint8), 1.0  # the pre-labels accepted as they are

    monkeypatch.setattr(annotate_mod, "annotate", fake_annotate)
    monkeypatch.setattr(annotate_mod, "has_display", lambda: True)
    assert main([str(folder), "--model", str(model), "-o", str(tmp_path / "out"), "-q"]) == 0
    want = load_model(str(model)).predict(open_image(str(folder / "scene4.tif"), bands=[4, 3, 2])).labels
    assert np.array_equal(seen["prelabels"], want)


def test_raster_placed_by_ground_control_points_keeps_them(tmp_path):
    """A Landsat tile georeferenced by ground control points only (no geotransform: an unrectified scene,
    a frame placed in QGIS's georeferencer). Before: no '_mres_geo.tif' and plain, unplaced outputs (the
    source counted as not georeferenced); now the label GeoTIFF, probabilities and uncertainty map carry
    the source's GCPs and CRS, and the report names them."""
    import warnings

    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    with rasterio.open(shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif")) as ds:
        data = ds.read()
    h, w = data.shape[1:]
    gcps = [GroundControlPoint(row=r, col=c, x=101985.0 + c * 3004.177, y=2826915.0 - r * 3034.225)
            for r, c in [(0, 0), (0, w), (h, 0), (h, w)]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "frame.tif", "w", driver="GTiff", width=w, height=h, count=3,
                           dtype="uint8") as ds:
            ds.write(data)
            ds.gcps = (gcps, CRS.from_epsg(32618))
    scr = np.zeros((h, w), np.uint8)
    scr[40:45, 45:55] = 1  # sea
    scr[30:35, 20:28] = 2  # land
    Image.fromarray(scr).save(tmp_path / "scr.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "frame.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out),
                 "--save-probs", "-q"]) == 0
    report = (out / "frame_report.txt").read_text().splitlines()
    assert "ground control points: 4 (EPSG:32618), copied to the output rasters" in report
    for name in ("frame_mres_geo.tif", "frame_probs.tif", "frame_uncertainty.tif"):
        with rasterio.open(out / name) as ds:
            got, crs = ds.gcps
            assert crs.to_epsg() == 32618 and (ds.width, ds.height) == (w, h)
            assert [(p.row, p.col, p.x, p.y) for p in got] == [(p.row, p.col, p.x, p.y) for p in gcps]


def test_model_file_with_a_disguised_function_node_is_refused_before_skops_loads_it(tmp_path, capsys,
                                                                                    monkeypatch):
    """A model archive edited so that one node rebuilds ``os.system`` while its ``__class__``/``__module__``
    say ``builtins.dict``. Before: label_tools' own type check passed it and only skops' trust check
    stopped it, inside ``skops.io.load`` ('cannot load ... (UntrustedTypesFoundException: Untrusted types
    found in the file: ['builtins.dict'].)'); now the node is refused before skops is called, naming it."""
    import json
    import zipfile

    import skops.io

    model = tmp_path / "beach.skops"
    assert main([BEACH, "--scribbles", BEACH_SCR, "--labels", CLASSES, "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    with zipfile.ZipFile(model) as z:
        members = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(members["schema.json"])
    schema["content"]["info"] = {"__class__": "dict", "__module__": "builtins", "__loader__": "FunctionNode",
                                 "content": {"module_path": "os", "function": "system"}}
    members["schema.json"] = json.dumps(schema).encode()
    evil = tmp_path / "evil.skops"
    with zipfile.ZipFile(evil, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    calls = []
    real_load = skops.io.load
    monkeypatch.setattr(skops.io, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    assert main(["--model", str(evil), "--headless", BEACH, "-o", str(tmp_path / "out"), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: --model: {str(evil)!r} holds types outside the trusted list (function os.system); "
        "refused without loading it (only files written by --save-model are accepted)\n")
    assert calls == [] and not (tmp_path / "out").exists()


def test_labels_given_the_colours_file(tmp_path, capsys):
    """--labels and --colors swapped by one: the sample's colours file as the labels. Before: a run whose
    classes were named '#1f5fbf' and '#d9b36c' (report, figure legend, .mat, GeoTIFF categories); now one
    line naming the file."""
    out = tmp_path / "out"
    assert main([BEACH, "--scribbles", BEACH_SCR, "--labels", COLORS, "-o", str(out), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: --labels {COLORS!r}: every line is a colour (#1f5fbf, #d9b36c): is it the colours "
        "file? give the class names with --labels and the colours with --colors\n")
    assert not out.exists()
