"""qa10: bad-input cases found in the session-15 sweep."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from label_tools.cli import main


@pytest.mark.parametrize("argv, expect", [
    (["--init-offset", "x"], "argument --init-offset: expected 0 (the --init file's ids start at 0) or 1 (they "
                             "start at 1 and 0 is no-data), got 'x'"),
    (["--init-offset", "2"], "argument --init-offset: expected 0 (the --init file's ids start at 0) or 1"),
    (["--init-offset", "1.0"], "argument --init-offset: expected 0 (the --init file's ids start at 0) or 1"),
    (["--bands", "0"], "argument --bands: expected band numbers from 1 (the first band is 1), got '0'"),
    (["--bands", "3,-1,2"], "argument --bands: expected band numbers from 1 (the first band is 1), got '3,-1,2'"),
    (["--bands", "4,3,2,1"], "argument --bands: expected 1 or 3 band numbers (grey or red,green,blue), got 4"),
    (["--bands", "1,2"], "argument --bands: expected 1 or 3 band numbers (grey or red,green,blue), got 2"),
    (["--feature-bands", "0,1"], "argument --feature-bands: expected band numbers from 1 (the first band is 1)"),
    (["-w", "x"], "argument -w/--window: expected a whole number of pixels >= 16, got 'x'"),
    (["-s", "2"], "argument -s/--scale: expected a number in (0, 1] or 'auto', got 2"),
    (["--grid-scale", "x"], "argument --grid-scale: expected a number in (0, 1] or 'auto', got 'x'"),
    (["--sigmas", "1,x"], "argument --sigmas: expected comma-separated numbers such as 1,2,4,8,16"),
    (["--crf-weight", "2"], "argument --crf-weight: expected a number in [0, 1], got '2'"),
    (["--crf-iter", "1.5"], "argument --crf-iter: expected a whole number >= 0, got '1.5'"),
    (["--workers", "0"], "argument --workers: expected a whole number of worker processes >= 1, got '0'"),
])
def test_bad_numeric_option_is_one_line_naming_it(capsys, argv, expect):
    # --init-offset x gave argparse's "invalid int value: 'x'", and --bands 0 / 4,3,2,1 were only refused
    # after the image was read (or hidden behind "no display"), --bands 4,3,2,1 as "band 4 is out of range"
    with pytest.raises(SystemExit) as e:
        main(["missing.png", "--scribbles", "missing_scribbles.png"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("label-image: error: " + expect), err
    assert "invalid" not in err and "usage:" not in err


def _pages(tmp_path):
    rng = np.random.default_rng(0)
    first = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))
    second = Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8))
    first.save(tmp_path / "pages.tif", save_all=True, append_images=[second])
    return str(tmp_path / "pages.tif")


@pytest.mark.parametrize("with_labels", [False, True])
def test_init_sized_for_another_tiff_page_says_only_first_page_labelled(tmp_path, capsys, with_labels):
    # pre-labels made for the second page of a multi-page TIFF: the refusal said only "does not match the
    # image's 80 x 60", not that only the first page is labelled (the scribbles already said so, aad033c)
    image = _pages(tmp_path)
    pre = np.full((40, 50), 255, np.uint8)
    pre[:20], pre[20:] = 0, 1
    Image.fromarray(pre).save(tmp_path / "pre.png")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    argv = [image, "--init", str(tmp_path / "pre.png"), "-o", str(tmp_path / "out"), "--headless", "-q"] + (
        ["--labels", str(tmp_path / "labels.txt")] if with_labels else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "size 50 x 40 does not match the image's 80 x 60" in err[0]
    assert "holds 2 images (TIFF pages) and only the first, 80 x 60 px, is labelled" in err[0]
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_init_of_wrong_size_on_single_page_tiff_names_no_pages(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "one.tif")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "pre.png")
    assert main([str(tmp_path / "one.tif"), "--init", str(tmp_path / "pre.png"), "-o", str(tmp_path / "out"),
                 "--headless", "-q"]) == 2
    err = capsys.readouterr().err
    assert "size 50 x 40 does not match the image's 80 x 60" in err
    assert "TIFF pages" not in err


def _report(out):
    [rep] = [f for f in os.listdir(out) if f.endswith("_report.txt")]
    return (out / rep).read_text()


@pytest.mark.parametrize("quiet", [False, True])
def test_constant_band_of_a_geotiff_is_named_in_a_warning(tmp_path, capsys, quiet):
    # a stack whose band 2 holds one value everywhere (an empty band, not declared no-data) was labelled
    # without a word: the band carries nothing, and is often the wrong band
    import rasterio

    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(48, 64)
    x = img.transpose(2, 0, 1).astype(np.float32)
    x[1] = 5.0
    with rasterio.open(tmp_path / "stack.tif", "w", driver="GTiff", width=64, height=48, count=3, dtype="float32",
                       crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000)) as d:
        d.write(x)
        d.set_band_description(2, "B03")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "stack.tif"), "--scribbles", str(tmp_path / "strokes.png"), "-o", str(out)]
                + (["-q"] if quiet else [])) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    expect = ("warning: band 2 (B03) holds one value (5) in every pixel: it carries no information for the labels; "
              "if that is not expected, check the file (an empty band, the wrong band); --feature-bands 1,3 leaves "
              "it out")
    assert err == ([] if quiet else [f"label-image: stack.tif: {expect}"]), err
    assert expect in _report(out)


def test_constant_channels_of_a_photo_are_named_and_none_for_a_normal_photo(tmp_path, capsys):
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(48, 64)
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    Image.fromarray(img).save(tmp_path / "plain.png")
    img = img.copy()
    img[..., 0], img[..., 2] = 0, 255
    Image.fromarray(img).save(tmp_path / "green.png")
    assert main([str(tmp_path / "plain.png"), "--scribbles", str(tmp_path / "strokes.png"), "-o",
                 str(tmp_path / "o1")]) == 0
    assert "holds one value" not in capsys.readouterr().err and "one value" not in _report(tmp_path / "o1")
    assert main([str(tmp_path / "green.png"), "--scribbles", str(tmp_path / "strokes.png"), "-o",
                 str(tmp_path / "o2")]) == 0
    err = capsys.readouterr().err
    assert ("green.png: warning: bands 1, 3 hold one value each (0, 255) in every pixel: they carry no information "
            "for the labels; if that is not expected, check the file (an empty band, the wrong band); "
            "--feature-bands 2 leaves them out") in err, err


def test_constant_band_is_confirmed_on_every_pixel_and_blank_image_gives_none():
    from label_tools.io import ArraySource

    a = np.zeros((2000, 2000, 2), np.uint8)
    a[..., 0] = np.arange(2000)[None, :] % 251
    assert ArraySource(a).constant_bands() == [(2, "", 0.0)]
    a[1, 1, 1] = 9  # not in the statistics sample (every other pixel): the band is not constant after all
    src = ArraySource(a)
    assert src._flat_bands == ((1, 0.0),)
    assert src.constant_bands() == []
    assert ArraySource(np.full((30, 40, 3), 7, np.uint8)).constant_bands() == []  # blank: refused elsewhere


@pytest.mark.parametrize("which", ["image.png", "image.tif", "scribbles", "init.png", "init.tif", "model"])
def test_empty_file_is_called_empty(tmp_path, capsys, which):
    # a 0-byte file (an interrupted copy or download) was called "not recognized as being in a supported file
    # format" / "cannot identify image file" / "not a label_tools model file (... pickle/joblib ...)"
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(30, 40)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    empty = tmp_path / ("empty" + (os.path.splitext(which)[1] or (".skops" if which == "model" else ".png")))
    empty.write_bytes(b"")
    image, rest = str(tmp_path / "photo.png"), ["--scribbles", str(tmp_path / "strokes.png")]
    what = {"image.png": "image", "image.tif": "image", "scribbles": "scribble file", "init.png": "--init",
            "init.tif": "--init", "model": "--model:"}[which]
    if which.startswith("image"):
        image = str(empty)
    elif which == "scribbles":
        rest = ["--scribbles", str(empty)]
    elif which.startswith("init"):
        rest = ["--init", str(empty), "--headless"]
    else:
        rest = ["--model", str(empty), "--headless"]
    assert main([image, *rest, "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"label-image: error: {what} {str(empty)!r} is empty (0 bytes): an interrupted copy" in err, err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("option, content, expect", [
    ("--labels", "w\xe4ter\nland\n".encode("latin-1"), "labels file {p!r} is not UTF-8 text (it holds byte 0xe4): save "
                                                       "it as UTF-8 (or check it is the right file)"),
    ("--colors", None, "colours file {p!r} is a directory; give the text file, one entry per line"),
])
def test_labels_file_not_utf8_or_a_directory_says_so(tmp_path, capsys, option, content, expect):
    # a Latin-1 labels file (a Windows editor) gave "cannot be read as text ('utf-8' codec can't decode byte 0xe4
    # in position 1: invalid continuation byte)"; a directory "cannot be read as text ([Errno 21] ...)"
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(30, 40)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    p = tmp_path / "classes.txt"
    if content is None:
        p.mkdir()
    else:
        p.write_bytes(content)
    assert main([str(tmp_path / "photo.png"), "--scribbles", str(tmp_path / "strokes.png"), option, str(p), "-o",
                 str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == "label-image: error: " + expect.format(p=str(p)) + "\n", err


def test_save_model_under_a_file_says_it_is_a_file(tmp_path, capsys):
    # --save-model afile/m.skops said "directory '.../afile' is a file; create it or choose another path"
    (tmp_path / "afile").write_text("x")
    assert main(["missing.png", "--scribbles", "missing.png", "--save-model", str(tmp_path / "afile" / "m.skops"),
                 "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == (f"label-image: error: --save-model: {str(tmp_path / 'afile')!r} is a file, not a directory; "
                   "choose another path\n"), err


@pytest.mark.parametrize("how", ["no colours", "--colors", "--model"])
def test_init_of_ids_saved_as_rgb_says_so(tmp_path, capsys, how):
    # class ids some tool saved as RGB (three equal channels): the line asked for --colors only, and with
    # --model (whose colours were used) said "no pixel has a class colour of --colors; check the colours file"
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(30, 40)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    ids = np.where(mask > 0, 1, 0).astype(np.uint8)
    Image.fromarray(np.stack([ids] * 3, -1)).save(tmp_path / "pre.png")
    pre = str(tmp_path / "pre.png")
    hint = ("; its three channels are equal everywhere: if it holds class ids, save it as one grey channel (e.g. "
            "`gdal_translate -b 1 pre.png ids.tif`)")
    extra = []
    if how == "--colors":
        (tmp_path / "colors.txt").write_text("red\nblue\nyellow\n")
        extra = ["--colors", str(tmp_path / "colors.txt")]
        expect = f"--init {pre!r}: no pixel has one of the class colours of --colors; check the colours file" + hint
    elif how == "--model":
        assert main([str(tmp_path / "photo.png"), "--scribbles", str(tmp_path / "strokes.png"), "--save-model",
                     str(tmp_path / "m.skops"), "-o", str(tmp_path / "fit"), "-q"]) == 0
        extra = ["--model", str(tmp_path / "m.skops")]
        expect = (f"--init {pre!r}: no pixel has one of the class colours of the model (--model "
                  f"{str(tmp_path / 'm.skops')!r}); check that it was made with these classes" + hint)
    else:
        expect = f"--init {pre!r}: a colour label image needs the class colours: pass --colors" + hint
    capsys.readouterr()
    assert main([str(tmp_path / "photo.png"), "--init", pre, "--headless", "-o", str(tmp_path / "out"), "-q",
                 *extra]) == 2
    assert capsys.readouterr().err == f"label-image: error: {expect}\n"


def test_export_tile_too_large_for_memory_is_one_line(tmp_path, capsys, monkeypatch):
    # label-export --tile 100000 ended in a numpy MemoryError traceback (after filling a 10 GB label tile)
    from conftest import make_scene, scene_scribbles

    from label_tools import export, imagecheck

    img, mask = make_scene(30, 40)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    assert main([str(tmp_path / "photo.png"), "--scribbles", str(tmp_path / "strokes.png"), "-o",
                 str(tmp_path / "res"), "-q"]) == 0
    monkeypatch.setattr(imagecheck, "available_memory", lambda: 1 << 30)
    capsys.readouterr()
    assert export.main([str(tmp_path / "res"), "-o", str(tmp_path / "ds"), "--tile", "20000", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == ("label-export: error: --tile 20000: one tile of 20000 x 20000 px (3 bands of uint8, labels and "
                   "mask) needs 1.9 GiB but 1.0 GiB of memory is available "
                   f"({str(tmp_path / 'photo.png')!r} is 40 x 30 px); choose a smaller --tile, such as 512\n"), err
    assert sorted(os.listdir(tmp_path)) == ["photo.png", "res", "strokes.png"]
    assert export.main([str(tmp_path / "res"), "-o", str(tmp_path / "ds"), "--tile", "64", "-q"]) == 0


def test_outputs_of_another_image_with_the_same_stem_are_named_and_never_skipped(tmp_path, capsys, caplog):
    # frames/a.tif labelled into out/, then other/a.png into out/: the run said only "output exists; pass
    # --overwrite" (which would replace a.tif's results), and a headless batch "skipped a.png: outputs exist"
    # although a.png was never labelled
    from conftest import make_scene, scene_scribbles

    img, mask = make_scene(30, 40)
    for d in ("frames", "other", "moved"):
        (tmp_path / d).mkdir()
    Image.fromarray(img).save(tmp_path / "frames" / "a.tif")
    Image.fromarray(img).save(tmp_path / "other" / "a.png")
    Image.fromarray(scene_scribbles(mask).astype(np.uint8)).save(tmp_path / "strokes.png")
    out, tif, png = tmp_path / "out", str(tmp_path / "frames" / "a.tif"), str(tmp_path / "other" / "a.png")
    assert main([tif, "--scribbles", str(tmp_path / "strokes.png"), "-o", str(out), "-q", "--save-model",
                 str(tmp_path / "m.skops")]) == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert main([png, "--scribbles", str(tmp_path / "strokes.png"), "-o", str(out), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: output {str(out / 'a_mres.png')!r} already exists and holds the results of another "
        f"image, {tif!r} (same name 'a'); write this one elsewhere with -o (or rename it); --overwrite would replace "
        "that image's results\n")
    model = ["--model", str(tmp_path / "m.skops"), "--headless", "-o", str(out)]
    caplog.set_level(logging.INFO, logger="label_tools")
    caplog.clear()
    assert main([*model, str(tmp_path / "other")]) == 1
    assert "skipped a.png" not in caplog.text and f"failed {png}: output" in caplog.text
    assert "holds the results of another image" in caplog.text
    caplog.clear()
    assert main([*model, str(tmp_path / "frames")]) == 0  # its own results: skipped, as before
    assert "skipped a.tif: outputs exist" in caplog.text
    os.replace(tif, tmp_path / "moved" / "a.tif")  # the same image after its folder moved: still its own
    caplog.clear()
    assert main([*model, str(tmp_path / "moved")]) == 0
    assert "skipped a.tif: outputs exist" in caplog.text
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_second_collection_of_the_same_name_does_not_replace_the_first_ones_model(tmp_path):
    # A/survey and B/survey walked into one -o share survey_collection.json and survey_model.skops: the second
    # walk replaced the first one's model (and state) without a word; a model file not the walk's own too
    from conftest import make_scene, scene_scribbles

    from label_tools import collection
    from label_tools.classes import load_classes
    from label_tools.errors import OutputError
    from label_tools.io import open_image
    from label_tools.model import Model
    from label_tools.pipeline import Settings

    settings = Settings(scale=1.0, crf_weight=0.0)
    classes = load_classes(None, None, n_classes=3)
    out = tmp_path / "out"
    out.mkdir()
    folders = []
    for i, name in enumerate("AB"):
        d = tmp_path / name / "survey"
        d.mkdir(parents=True)
        img, mask = make_scene(40, 56, seed=i)
        Image.fromarray(img).save(d / f"{name.lower()}.png")
        Image.fromarray(scene_scribbles(mask, seed=i).astype(np.uint8)).save(tmp_path / f"{name.lower()}_scr.png")
        folders.append(d)
    calls = []

    def step(src, index, *, base, prelabels, resume, title_note, model_path):
        calls.append(src.path)
        scr = np.asarray(Image.open(tmp_path / f"{os.path.splitext(os.path.basename(src.path))[0]}_scr.png"))
        model = Model.fit(src, scr, classes=classes, settings=settings, base=base)
        for suffix in ("_mres.png", "_mres_label.png", "_mres.mat", "_report.txt"):
            (out / (os.path.splitext(os.path.basename(src.path))[0] + suffix)).write_bytes(b"x")
        model.save(model_path)
        return model

    def walk(d, **kw):
        images = collection.list_images([str(d)])
        return collection.walk(images, outdir=str(out), name="survey", step=step, open_image=open_image,
                               classes=classes, settings=settings,
                               outputs_of=lambda p: [str(out / (os.path.splitext(os.path.basename(p))[0] + s))
                                                     for s in ("_mres.png", "_mres_label.png", "_mres.mat",
                                                               "_report.txt")], **kw)

    walk(folders[0])
    model = out / "survey_model.skops"
    first = model.read_bytes()
    with pytest.raises(OutputError, match=r"survey_collection.json' is the state of another collection of the same "
                                          r"name \(1 other image, from '.*A/survey'\), whose model this walk would "
                                          r"replace: give another -o folder, or pass --overwrite"):
        walk(folders[1])
    assert model.read_bytes() == first and len(calls) == 1
    walk(folders[0])  # the same walk again: its own state and model, nothing to do
    assert model.read_bytes() == first and len(calls) == 1
    (out / "survey_collection.json").unlink()  # a model file with no walk of its own
    with pytest.raises(OutputError, match=r"collection model '.*survey_model.skops' already exists and is not this "
                                          r"walk's: pass --overwrite"):
        walk(folders[1])
    assert model.read_bytes() == first and len(calls) == 1
    walk(folders[1], overwrite=True)
    assert model.read_bytes() != first and len(calls) == 2


def test_empty_autosave_is_called_cut_short_not_a_copy_to_redo(tmp_path):
    # a 0-byte <stem>_scribbles.png (a power cut after the rename, before the data reached the disk) was called
    # "not recognized as being in a supported file format", then (e4059c9) "copy or export it again"
    from label_tools import session

    png, js = session.scribble_paths(str(tmp_path), "photo")
    open(png, "wb").close()
    with pytest.raises(session.DamagedAutosave) as e:
        session.load(str(tmp_path), "photo", (30, 40), 2)
    assert str(e.value) == (f"autosave cannot be resumed: scribble file {png!r} is empty (0 bytes; the computer "
                            "stopped while it was being saved)")
    assert e.value.paths == [png]


def test_one_colour_for_two_classes_reads_right(tmp_path):
    # "colours file 'c.txt' has 1 colours but labels file 'l.txt' gives 2 classes"
    from label_tools.classes import load_classes
    from label_tools.errors import InputError

    lab, col = tmp_path / "l.txt", tmp_path / "c.txt"
    lab.write_text("water\nland\n")
    col.write_text("red\n")
    with pytest.raises(InputError) as e:
        load_classes(str(lab), str(col), n_classes=None)
    assert str(e.value) == (f"colours file {str(col)!r} has 1 colour but labels file {str(lab)!r} gives 2 classes: "
                            "give one colour per class, in the same order")
