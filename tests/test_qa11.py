"""qa11: README workflows run as a user would, on the shared data; the cases where program and README disagreed."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import shared
from label_tools.cli import main


@pytest.fixture
def s2(tmp_path):
    """The Sentinel-2 scene, its land-use mask (0-based ids, 255 = none) and the mask as another GIS tool
    writes it: ids from 1, no-data 0 declared in the raster."""
    import rasterio

    img = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    with rasterio.open(shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")) as r:
        mask, prof = r.read(1), r.profile
    other = tmp_path / "other_tool.tif"
    prof.update(nodata=0)
    with rasterio.open(other, "w", **prof) as w:
        w.write(np.where(mask == 255, 0, mask + 1).astype(np.uint8), 1)
    return img, mask, other


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_init_raster_declaring_nodata_0_needs_init_offset(s2, tmp_path, capsys):
    # A GIS raster with ids from 1 and no-data 0, given to --init without --init-offset 1, was read from 0:
    # every class silently became the next one (forest labelled grassland, no-data cultivated land), exit 0.
    img, mask, other = s2
    out = tmp_path / "o"
    assert main([img, "--init", str(other), "--headless", "-o", str(out), "-q"]) == 2
    line = one_error_line(capsys)
    assert line == (f"label-image: error: --init {str(other)!r}: declares 0 as its no-data value, so its class ids "
                    "most likely start at 1: pass --init-offset 1 (or --init-offset 0 if 0 is a class there)")
    assert not out.exists()
    # said either way, it runs; with --init-offset 1 the labels are the mask's classes, not shifted ones
    assert main([img, "--init", str(other), "--init-offset", "1", "--headless", "-o", str(out), "-q"]) == 0
    lab = np.array(Image.open(out / "s2l1c_refscene2_mres_label.png"))
    known = mask != 255
    assert (lab[known] == mask[known]).mean() > 0.9
    out0 = tmp_path / "o0"
    assert main([img, "--init", str(other), "--init-offset", "0", "--headless", "-o", str(out0), "-q"]) == 0
    lab0 = np.array(Image.open(out0 / "s2l1c_refscene2_mres_label.png"))
    assert (lab0[known] == mask[known] + 1).mean() > 0.9  # as asked: the file's values are the ids


def test_own_label_png_with_init_offset_1_is_refused(s2, tmp_path, capsys):
    # label_tools' own _mres_label.png (0-based) with --init-offset 1 lost its first class to no-data and shifted
    # the others down (the sample: 'the pre-labels hold one class (class1)', which did not say why).
    img, mask, _ = s2
    init = tmp_path / "s2l1c_refscene2_mres_label.png"
    Image.fromarray(mask).save(init)
    out = tmp_path / "o"
    assert main([img, "--init", str(init), "--init-offset", "1", "--headless", "-o", str(out), "-q"]) == 2
    assert one_error_line(capsys) == (f"label-image: error: --init {str(init)!r}: this is label_tools' label image, "
                                      "whose ids start at 0 (255 = no-data): leave out --init-offset 1")
    assert not out.exists()


def test_reordered_stack_hint_gives_the_labels_of_the_model_order(tmp_path, capsys):
    # A model fitted with --bands 4,3,2 applied to the same stack exported with its bands reversed was refused
    # with 'give --feature-bands 13,...,1'; following that hint the display stayed on bands 4,3,2 (B10, B11, B12
    # there), which also feed the CRF, so 6 % of the labels differed from the stack in the model's order. The
    # hint now also names the --bands that show the model's bands; following it gives the same labels.
    import re

    import rasterio

    img = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    scr = shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")
    with rasterio.open(scr) as r:
        mask = r.read(1)
    from label_tools.synthetic import synthetic_scribbles

    Image.fromarray(synthetic_scribbles(mask, fraction=0.03, seed=0).astype(np.uint8)).save(tmp_path / "s.png")
    model = tmp_path / "s2.skops"
    assert main([img, "--bands", "4,3,2", "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "fit"),
                 "--save-model", str(model), "-q"]) == 0
    rev = tmp_path / "rev.tif"
    with rasterio.open(img) as r:
        a, prof, desc = r.read(), r.profile, r.descriptions
    with rasterio.open(rev, "w", **prof) as w:
        w.write(a[::-1])
        w.descriptions = desc[::-1]
    capsys.readouterr()
    assert main(["--model", str(model), "--headless", str(rev), "-o", str(tmp_path / "r"), "-q"]) == 2
    line = one_error_line(capsys)
    hint = re.search(r"give (--feature-bands \S+(?: --bands \S+)?) to use them in the model's order$", line)
    assert hint, line
    assert hint.group(1) == "--feature-bands 13,12,11,10,9,8,7,6,5,4,3,2,1 --bands 10,11,12"
    assert main(["--model", str(model), "--headless", str(rev), "-o", str(tmp_path / "r"), "-q",
                 *hint.group(1).split()]) == 0
    assert main(["--model", str(model), "--headless", img, "-o", str(tmp_path / "a"), "-q"]) == 0
    got = np.array(Image.open(tmp_path / "r" / "rev_mres_label.png"))
    want = np.array(Image.open(tmp_path / "a" / "s2l1c_refscene2_mres_label.png"))
    assert np.array_equal(got, want)


@pytest.fixture
def crops(tmp_path):
    """Two Sentinel-2 coastal crops (172 x 306) in a folder, and the human scribbles of the first as
    label_tools reads them (0 = none, k = class k; the shared files hold 0-based ids, 255 = none)."""
    import shutil

    d = tmp_path / "coast"
    d.mkdir()
    for st in ("s2_20171221_rgb03", "s2_20180120_rgb00"):
        shutil.copy(shared("doodler_sessions", "images", f"{st}.png"), d / f"{st}.png")
    s = np.array(Image.open(shared("doodler_sessions", "scribbles", "s2_20171221_rgb03.png")))
    Image.fromarray(np.where(s == 255, 0, s.astype(int) + 1).astype(np.uint8)).save(tmp_path / "scr.png")
    return d, tmp_path / "scr.png"


@pytest.mark.parametrize("with_model", [False, True])
def test_collection_without_display_names_a_way_that_works(crops, tmp_path, monkeypatch, capsys, with_model):
    # A folder without a display said 'pass --scribbles FILE to label without a window'; doing so was refused
    # with '--scribbles belongs to one image'. The line now names --model FILE --headless (or --headless with a
    # --model), and --scribbles for one image at a time; nothing is written.
    from label_tools import annotate

    d, scr = crops
    extra = []
    if with_model:
        m = tmp_path / "m.skops"
        assert main([str(d / "s2_20171221_rgb03.png"), "--scribbles", str(scr), "-o", str(tmp_path / "fit"),
                     "--save-model", str(m), "-q"]) == 0
        extra = ["--model", str(m)]
    capsys.readouterr()
    monkeypatch.setattr(annotate, "has_display", lambda: False)
    out = tmp_path / "o"
    assert main([str(d), "-o", str(out)] + extra) == 2
    line = one_error_line(capsys)
    way = "--headless to apply --model to every image as it is" if with_model else "--model FILE --headless"
    assert line.startswith("label-image: error: no display for the annotation window a collection is walked in: "
                           "pass " + way), line
    assert line.endswith("or label one image at a time with --scribbles FILE"), line
    assert not out.exists()


def test_images_after_options_are_inputs_too(crops, tmp_path, capsys):
    # `label-image --model m --headless a.png -o out b.png` stopped with 'unrecognized arguments: b.png':
    # positional INPUTs had to be given in one run. Now they may come anywhere, as GNU tools take them.
    d, scr = crops
    a, b = str(d / "s2_20171221_rgb03.png"), str(d / "s2_20180120_rgb00.png")
    m = tmp_path / "m.skops"
    assert main([a, "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(m), "-q"]) == 0
    out = tmp_path / "o"
    assert main(["--model", str(m), "--headless", a, "-o", str(out), b, "-q"]) == 0
    assert {f"{s}_mres_label.png" for s in ("s2_20171221_rgb03", "s2_20180120_rgb00")} <= set(
        p.name for p in out.iterdir())
    from label_tools.export import main as export

    oa, ob = tmp_path / "oa", tmp_path / "ob"
    for img, o in ((a, oa), (b, ob)):
        assert main(["--model", str(m), "--headless", img, "-o", str(o), "-q"]) == 0
    ds = tmp_path / "ds"
    assert export([str(oa), "-o", str(ds), "--tile", "128", str(ob), "-q"]) == 0
    import json

    sources = json.loads((ds / "dataset.json").read_text())["sources"]
    assert sorted(os.path.basename(p) for p in sources["train"] + sources["val"]) == [
        "s2_20171221_rgb03.png", "s2_20180120_rgb00.png"]
