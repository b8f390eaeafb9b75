"""QA round 8: defects found using label_tools as its users do (each test failed before its fix)."""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles


def _md5(p):
    with open(p, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture
def small_scene(tmp_path):
    img, mask = make_scene(48, 64)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    return tmp_path


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_scribbles_named_like_an_output_are_not_replaced_with_overwrite(small_scene, capsys):
    """A scribble file that has an output's name (`photo_mres_label.png` beside the photo) was replaced by
    the label image with --overwrite (and without it the message told the user to pass --overwrite):
    the person's strokes were lost. Now it is refused in one line, exit 2, before anything runs."""
    from label_tools.cli import main

    d = small_scene
    strokes = d / "photo_mres_label.png"
    os.replace(d / "strokes.png", strokes)
    before = _md5(strokes)
    for extra in ([], ["--overwrite"]):
        rc = main([str(d / "photo.png"), "--scribbles", str(strokes), *extra, "-q"])
        err = _one_line_error(capsys)
        assert rc == 2, err
        assert "photo_mres_label.png" in err and "--scribbles" in err and "--overwrite" not in err.split(":")[0], err
        assert _md5(strokes) == before
        assert sorted(os.listdir(d)) == ["photo.png", "photo_mres_label.png"]


def test_init_file_that_is_an_earlier_output_is_not_replaced(small_scene, capsys):
    """--init out/photo_mres_label.png -o out --overwrite replaced the pre-label file the run reads."""
    from label_tools.cli import main

    d, out = small_scene, small_scene / "out"
    assert main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    init = out / "photo_mres_label.png"
    before = {f: _md5(out / f) for f in os.listdir(out)}
    rc = main([str(d / "photo.png"), "--init", str(init), "--scribbles", str(d / "strokes.png"), "-o", str(out),
               "--overwrite", "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "--init" in err and "photo_mres_label.png" in err, err
    assert {f: _md5(out / f) for f in os.listdir(out)} == before


def test_output_directory_under_a_file_says_the_parent_is_a_file(small_scene, capsys):
    """-o afile/sub said the parent 'does not exist either', though it exists: it is a file."""
    from label_tools.cli import main

    d = small_scene
    (d / "afile").write_text("x")
    rc = main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "-o", str(d / "afile" / "sub"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "is a file" in err and "does not exist either" not in err, err


def test_grid_scale_that_swallows_a_class_says_so(tmp_path, capsys):
    """--grid-scale 0.01 on a small image put both classes' strokes in one grid pixel and the error said
    "scribbles cover 1 class (class2); scribble at least two classes" of scribbles covering two.
    Now the line names --grid-scale, the grid size and the class that vanished."""
    from label_tools.cli import main

    img = np.zeros((8, 8), np.uint8)
    img[:, 4:] = 200
    scr = np.zeros((8, 8), np.uint8)
    scr[1:7, 1], scr[1:7, 6] = 1, 2
    Image.fromarray(img).save(tmp_path / "tiny.png")
    Image.fromarray(scr).save(tmp_path / "tiny_s.png")
    rc = main([str(tmp_path / "tiny.png"), "--scribbles", str(tmp_path / "tiny_s.png"), "--grid-scale", "0.01",
               "-o", str(tmp_path / "out"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "--grid-scale 0.01" in err and "1 x 1 px" in err and "class1" in err, err
    assert "scribble at least two classes" not in err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    # a grid that keeps both classes still labels the image
    assert main([str(tmp_path / "tiny.png"), "--scribbles", str(tmp_path / "tiny_s.png"), "--grid-scale", "0.5",
                 "-o", str(tmp_path / "out"), "-q"]) == 0


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from label_tools.cli import main

    d = tmp_path_factory.mktemp("model")
    img, mask = make_scene(48, 64)
    Image.fromarray(img).save(d / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(d / "strokes.png")
    assert main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "-o", str(d / "out"), "-q",
                 "--save-model", str(d / "m.skops")]) == 0
    return d


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_damaged_model_file_says_damaged(model_file, tmp_path, capsys, damage):
    """A model file cut short (an interrupted copy) was called 'not a label_tools model file (... pickle/joblib
    files are never loaded)', which sent the user looking for the wrong file; a flipped byte gave
    'cannot load (error: Error -3 while decompressing data ...)'. Both now say the file is damaged."""
    from label_tools.cli import main

    data = bytearray((model_file / "m.skops").read_bytes())
    if damage == "cut":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    bad = tmp_path / "m.skops"
    bad.write_bytes(bytes(data))
    rc = main(["--model", str(bad), "--headless", str(model_file / "photo.png"), "-o", str(tmp_path / "o"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "'" + str(bad) + "' is damaged" in err and "never loaded" not in err, err
    assert not (tmp_path / "o").exists()


def test_batch_naming_an_image_twice_labels_it_once(model_file, tmp_path, capsys):
    """`--headless frames/ frames/photo.png` (a folder and one of its files, or a glob plus a file) stopped with
    "inputs 'frames/photo.png' and 'frames/photo.png' have the same name: rename one": the same file was taken
    for two images. Now it is labelled once (collections already did so)."""
    from label_tools.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "photo.png").write_bytes((model_file / "photo.png").read_bytes())
    out = tmp_path / "o"
    rc = main(["--model", str(model_file / "m.skops"), "--headless", str(frames), str(frames / "photo.png"),
               os.path.join(str(frames), ".", "photo.png"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "same name" not in err, err
    assert sorted(os.listdir(out)) == ["photo_mres.mat", "photo_mres.png", "photo_mres_label.png", "photo_report.txt"]
    # two different files of one name are still refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.png").write_bytes((model_file / "photo.png").read_bytes())
    rc = main(["--model", str(model_file / "m.skops"), "--headless", str(frames), str(other / "photo.png"),
               "-o", str(tmp_path / "o2"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "same name 'photo'" in err, err


def test_non_ascii_class_names_read_back_whole_in_octave_and_scipy(small_scene):
    """The .mat's `labels` were written as UTF-8 bytes under a character count: GNU Octave cut 'wåter (deep)'
    to 'wåter (deep' and lost '水' entirely. Now they are UTF-16 characters, read whole by Octave and scipy
    (MATLAB's own format); a name beyond the BMP (emoji) still reads back in scipy."""
    import shutil
    import subprocess

    from scipy.io import loadmat

    from label_tools.cli import main

    d = small_scene
    names = ["wåter (deep)", "水", "Σ sand"]
    (d / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    assert main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "--labels", str(d / "classes.txt"),
                 "-o", str(d / "o"), "-q"]) == 0
    mat = d / "o" / "photo_mres.mat"
    assert [str(x[0]) for x in loadmat(mat)["labels"].ravel()] == names
    octave = shutil.which("octave-cli") or shutil.which("octave")
    if octave is not None:
        out = subprocess.run([octave, "--no-gui", "--quiet", "--eval",
                              f"s = load('{mat}'); printf('%s|', s.labels{{:}});"],
                             capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.decode("utf-8").strip().splitlines()
        assert lines[0] == "|".join(names) + "|", lines
    # beyond the BMP: scipy (and label-export, which reads the names from the .mat) still reads it
    from label_tools import writers
    from label_tools.classes import Classes
    from label_tools.export import classes_from_mat

    cl = Classes(("\U0001f30a water", "land"), np.array([[0, 0, 255], [0, 255, 0]], np.uint8))
    p = d / "e_mres.mat"
    writers.write_mat(str(p), scribbles=np.zeros((3, 2), np.uint8), labels=np.zeros((3, 2), np.uint8), classes=cl,
                      probs=np.full((2, 3, 2), 0.5, np.float32))
    assert classes_from_mat(str(p))[0] == ("\U0001f30a water", "land")


def test_png_on_a_full_disk_is_an_oserror_without_libpng_noise(capfd):
    """On a full disk cv2.imwrite printed "libpng error: Write Error" on stderr beside label-image's own line
    (two lines, -q or not). PNGs are now encoded in memory and written by Python: an ENOSPC OSError, which
    the output set turns into its one line, and nothing else on stderr. /dev/full is a disk that is full."""
    import errno

    from label_tools.files import write_png

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError) as e:
        write_png("/dev/full", np.zeros((64, 64), np.uint8))
    assert e.value.errno == errno.ENOSPC
    assert capfd.readouterr().err == ""


def test_export_on_a_full_disk_is_one_line(small_scene, tmp_path, monkeypatch, capsys):
    """label-export on a full disk ended in a traceback (OSError: [Errno 28] from writing dataset.json or a tile).
    Now one line naming the dataset folder, exit 2, and the folder is not there."""
    import errno

    from label_tools import export
    from label_tools.cli import main

    d = small_scene
    assert main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "-o", str(d / "res"), "-q"]) == 0

    def full(path, a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(export, "_write_png", full)
    capsys.readouterr()
    rc = export.main([str(d / "res"), "-o", str(tmp_path / "ds"), "--tile", "32", "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "No space left on device" in err and str(tmp_path / "ds") in err, err
    assert not (tmp_path / "ds").exists()


def test_model_applied_to_its_bands_in_another_order_is_refused(tmp_path, capsys):
    """A model fitted on a stack with bands B,G,R,NIR was applied silently to the same bands stored R,G,B,NIR
    (another tool's export): every feature read from the wrong band. Now one line naming both orders and the
    --feature-bands that fixes it; with that option the image is labelled."""
    import rasterio

    from label_tools.cli import main

    img, mask = make_scene(48, 64)
    bands = np.stack([img[..., 2], img[..., 1], img[..., 0], img.mean(-1).astype(np.uint8)]).astype(np.uint16) * 40
    names = ["B", "G", "R", "NIR"]
    order = [2, 1, 0, 3]
    prof = dict(driver="GTiff", width=64, height=48, count=4, dtype="uint16", crs="EPSG:32633",
                transform=rasterio.Affine(10, 0, 500000, 0, -10, 4600000))
    for name, idx in (("a.tif", [0, 1, 2, 3]), ("b.tif", order)):
        with rasterio.open(tmp_path / name, "w", **prof) as d:
            d.write(bands[idx])
            for i, k in enumerate(idx):
                d.set_band_description(i + 1, names[k])
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "s.png")
    m = tmp_path / "m.skops"
    assert main([str(tmp_path / "a.tif"), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "o"), "-q",
                 "--save-model", str(m)]) == 0
    capsys.readouterr()
    rc = main(["--model", str(m), "--headless", str(tmp_path / "b.tif"), "-o", str(tmp_path / "o2"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "R, G, B, NIR" in err and "B, G, R, NIR" in err and "--feature-bands 3,2,1,4" in err, err
    assert not (tmp_path / "o2").exists()
    assert main(["--model", str(m), "--headless", str(tmp_path / "b.tif"), "-o", str(tmp_path / "o2"), "-q",
                 "--feature-bands", "3,2,1,4"]) == 0


def test_model_that_cannot_be_saved_says_the_outputs_were_written(small_scene, monkeypatch, capsys):
    """--save-model failing after the outputs were put in place (the disk filled up in between) said only
    "--save-model: cannot write ...": the user, told of an error, ran again and was refused because the
    outputs exist. Now the line says the outputs were written and to run again with --overwrite."""
    from label_tools import modelfile
    from label_tools.cli import main
    from label_tools.errors import OutputError

    d = small_scene

    def full(model, path):
        raise OutputError(f"--save-model: cannot write {path!r} (No space left on device)")

    monkeypatch.setattr(modelfile, "save_model", full)
    rc = main([str(d / "photo.png"), "--scribbles", str(d / "strokes.png"), "-o", str(d / "o"), "-q",
               "--save-model", str(d / "m.skops")])
    err = _one_line_error(capsys)
    assert rc == 2 and "No space left on device" in err and "were written" in err and "--overwrite" in err, err
    assert (d / "o" / "photo_mres_label.png").exists() and not (d / "m.skops").exists()


def _paletted_geotiff(path, h=60, w=80, nodata_rows=0):
    """A one-band paletted GeoTIFF: left half dark blue, right half yellow, as colours; its indices shuffled
    (even = blue, odd = yellow), as a scanned map's or an 8-bit export's palette orders colours."""
    import rasterio

    rng = np.random.default_rng(0)
    idx = np.zeros((h, w), np.uint8)
    idx[:, : w // 2] = rng.integers(1, 64, (h, w // 2)) * 2
    idx[:, w // 2:] = rng.integers(0, 64, (h, w - w // 2)) * 2 + 1
    idx[:nodata_rows] = 0
    cmap = {i: ((20, 20, 120, 255) if i % 2 == 0 else (230, 220, 100, 255)) for i in range(256)}
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=rasterio.Affine(10, 0, 500000, 0, -10, 4600000), photometric="palette",
                       nodata=0 if nodata_rows else None) as d:
        d.write(idx[None])
        d.write_colormap(1, cmap)
    scr = np.zeros((h, w), np.uint8)
    scr[nodata_rows + 5: h - 5, 8:12], scr[nodata_rows + 5: h - 5, w - 12: w - 8] = 1, 2
    return scr


@pytest.mark.parametrize("nodata_rows", [0, 6])
def test_paletted_geotiff_is_labelled_by_its_colours(tmp_path, nodata_rows):
    """A one-band paletted GeoTIFF was labelled on its palette indices, whose order says nothing of colour: a
    third of a plain blue half came out as the yellow class. It is now read as the RGB of its colour table
    (as QGIS shows it and as a paletted PNG already was), a no-data index as no-data; the report says so."""
    import rasterio

    from label_tools.cli import main

    scr = _paletted_geotiff(tmp_path / "map.tif", nodata_rows=nodata_rows)
    Image.fromarray(scr).save(tmp_path / "s.png")
    assert main([str(tmp_path / "map.tif"), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "o"),
                 "-q"]) == 0
    lab = np.array(Image.open(tmp_path / "o" / "map_mres_label.png"))
    r = nodata_rows
    assert (lab[r:, :40] == 0).mean() > 0.97 and (lab[r:, 40:] == 1).mean() > 0.97
    assert (lab[:r] == 255).all()
    report = (tmp_path / "o" / "map_report.txt").read_text()
    assert "colour table" in report and "3 band(s)" in report
    with rasterio.open(tmp_path / "o" / "map_mres_geo.tif") as g:
        assert g.crs.to_epsg() == 32633 and g.transform == rasterio.Affine(10, 0, 500000, 0, -10, 4600000)


def test_paletted_source_exports_colour_tiles(tmp_path):
    """label-export cut a paletted GeoTIFF into grey tiles of palette indices (its colour table dropped): a
    network trained on them sees shuffled numbers. Now the tiles are the RGB label-image labelled."""
    import rasterio

    from label_tools.cli import main
    from label_tools.export import main as export

    scr = _paletted_geotiff(tmp_path / "map.tif")
    Image.fromarray(scr).save(tmp_path / "s.png")
    assert main([str(tmp_path / "map.tif"), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "o"),
                 "-q"]) == 0
    assert export([str(tmp_path / "o"), "-o", str(tmp_path / "ds"), "--tile", "32", "--val-fraction", "0", "-q"]) == 0
    with rasterio.open(tmp_path / "ds" / "train" / "images" / "map_r00000_c00000.tif") as t:
        a = t.read()
        assert t.count == 3 and t.transform == rasterio.Affine(10, 0, 500000, 0, -10, 4600000)
    assert tuple(a[:, 0, 0]) == (20, 20, 120)  # the left half's blue, not an index


def test_one_empty_band_names_the_band_and_the_options_that_leave_it_out(tmp_path, capsys):
    """A 5-band float stack with band 3 all NaN (an empty band of an export) was refused as 'holds only
    no-data pixels', though four bands hold data; and --feature-bands without band 3 was refused the same way
    (the displayed bands count too). Now the line names band 3 and the options; with them the image is labelled."""
    import rasterio

    from label_tools.cli import main

    img, mask = make_scene(48, 64)
    a = np.concatenate([np.moveaxis(img, -1, 0), img[None, ..., :2].mean(-1)]).astype(np.float32)
    a = np.concatenate([a, a[:1] * 0.5])
    a[2] = np.nan
    with rasterio.open(tmp_path / "s2.tif", "w", driver="GTiff", width=64, height=48, count=5, dtype="float32",
                       crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 4600000)) as d:
        d.write(a)
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "s.png")
    base = [str(tmp_path / "s2.tif"), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "o"), "-q"]
    assert main(base) == 2
    err = _one_line_error(capsys)
    assert "band 3 is no-data everywhere" in err and "--feature-bands 1,2,4,5 --bands 1,2,4" in err, err
    assert main(base + ["--feature-bands", "1,2,4,5"]) == 2
    err = _one_line_error(capsys)
    assert "band 3" in err and "--bands 1,2,4" in err, err
    assert main(base + ["--feature-bands", "1,2,4,5", "--bands", "1,2,4"]) == 0
    assert (tmp_path / "o" / "s2_mres_geo.tif").exists()


def test_model_file_naming_fewer_classes_than_its_forest_is_refused(model_file, tmp_path, capsys):
    """A model file whose class list was cut short (edited, or written by a script that changed
    ``model.classes``) ended in a traceback (IndexError: index 2 is out of bounds) when applied. It is now
    refused when loaded, in one line; a model naming a class its forest never saw still loads."""
    from label_tools.classes import Classes
    from label_tools.cli import main
    from label_tools.modelfile import load_model, save_model

    m = load_model(str(model_file / "m.skops"))
    assert len(m.classes) == 3 and list(m.classifier.classes_) == [0, 1, 2]
    m.classes = Classes(tuple(m.classes.names[:2]), np.asarray(m.classes.colors[:2], np.uint8))
    save_model(m, str(tmp_path / "cut.skops"))
    rc = main(["--model", str(tmp_path / "cut.skops"), "--headless", str(model_file / "photo.png"),
               "-o", str(tmp_path / "o"), "-q"])
    err = _one_line_error(capsys)
    assert rc == 2 and "inconsistent" in err and "up to 2" in err and "names 2 classes" in err, err
    assert not (tmp_path / "o").exists()
    m.classes = Classes(("a", "b", "c", "d"), np.arange(12, dtype=np.uint8).reshape(4, 3))
    save_model(m, str(tmp_path / "more.skops"))
    assert load_model(str(tmp_path / "more.skops")).classes.names == ("a", "b", "c", "d")


def test_own_geotiff_as_init_keeps_its_class_names_with_init_offset_1(tmp_path):
    """label_tools' own _mres_geo.tif holds class id + 1 with 0 = no-data, so `--init-offset 1` is a natural
    thing to pass with it: the ids were read right, but its stored class names were dropped (class1, class2)."""
    import rasterio

    from label_tools.cli import main

    img, mask = make_scene(48, 64)
    a = np.moveaxis(img, -1, 0)
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 4600000)) as d:
        d.write(a)
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "s.png")
    (tmp_path / "c.txt").write_text("water\nsand\ngrass\n")
    assert main([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / "s.png"), "--labels",
                 str(tmp_path / "c.txt"), "-o", str(tmp_path / "o"), "-q"]) == 0
    for offset in ([], ["--init-offset", "1"]):
        out = tmp_path / f"o{len(offset)}"
        assert main([str(tmp_path / "scene.tif"), "--init", str(tmp_path / "o" / "scene_mres_geo.tif"), *offset,
                     "--headless", "-o", str(out), "-q"]) == 0
        report = (out / "scene_report.txt").read_text()
        assert "water:" in report and "grass:" in report and "class1" not in report, (offset, report)
