"""The bands a multispectral raster is shown in by default, and annotator options given where no annotator opens.

A 13-band Sentinel-2 GeoTIFF opened with its first three bands shown: B01 (60 m coastal aerosol, blocky), B02, B03
as red, green, blue, a magenta picture the person had no way to read, and those bands fed the CRF's colour kernel.
The file says which bands are red, green and blue (colour interpretation, band descriptions, Sentinel-2 band
names); those are shown now, and the report and the annotator's first line say so.
"""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, one_error_line, scene_scribbles
from label_tools.cli import main
from label_tools.io import open_image

S2_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def _raster(path, descriptions, colorinterp=None, h=40, w=56):
    rasterio = pytest.importorskip("rasterio")
    img, _ = make_scene(h, w)
    n = len(descriptions)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 60, (n, h, w)).astype(np.uint16)
    data[:3] = np.moveaxis(img, -1, 0)
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=n, dtype="uint16", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5100000)) as dst:
        dst.write(data)
        for b, d in enumerate(descriptions, 1):
            if d:
                dst.set_band_description(b, d)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


@pytest.mark.parametrize("descriptions, shown", [
    (S2_NAMES, (4, 3, 2)),                                                 # Sentinel-2, as the shared stacks
    (["Coastal", "Blue", "Green", "Red", "Red Edge 1", "NIR"], (4, 3, 2)),  # named colours; red edge is not red
    (["nir", "red", "green", "blue"], (2, 3, 4)),
    (["B1", "B2", "B3", "B4", "B5"], (1, 2, 3)),                           # no B8A: not Sentinel-2's numbering
    ([None] * 5, (1, 2, 3)),
    (["red", "red", "green", "blue"], (1, 2, 3)),                          # two bands say red: not decided
])
def test_default_bands_shown_follow_what_the_file_says(tmp_path, descriptions, shown):
    src = open_image(str(_raster(tmp_path / "ms.tif", descriptions)))
    assert src.display_numbers == shown
    assert (src.display_note is None) == (shown == (1, 2, 3))
    # each display channel is read from its band: of all bands, the one it follows most closely
    full = src.read().reshape(-1, src.count)
    rgb = src.read_display().reshape(-1, 3).astype(np.float64)
    for c in range(3):
        corr = [abs(np.corrcoef(rgb[:, c], full[:, j])[0, 1]) for j in range(src.count)]
        assert src.band_numbers[int(np.argmax(corr))] == shown[c]


def test_colour_interpretation_is_asked_first(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    ci = rasterio.enums.ColorInterp
    path = _raster(tmp_path / "bgr.tif", ["x", "y", "z", "w"],
                   colorinterp=[ci.blue, ci.green, ci.red, ci.undefined])
    src = open_image(str(path))
    assert src.display_numbers == (3, 2, 1)
    assert src.display_note == "red, green and blue by the file's colour interpretation"


def test_bands_option_still_wins(tmp_path):
    src = open_image(str(_raster(tmp_path / "s2.tif", S2_NAMES)), bands=[8, 4, 3])
    assert src.display_numbers == (8, 4, 3) and src.display_note is None


def test_report_says_which_bands_were_shown(tmp_path):
    path = _raster(tmp_path / "s2.tif", S2_NAMES)
    _, mask = make_scene(40, 56)
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    out = tmp_path / "out"
    assert main([str(path), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out), "-q"]) == 0
    report = (out / "s2_report.txt").read_text()
    assert "  bands: 4,3,2 (true colour by the Sentinel-2 band names B04, B03, B02)\n" in report
    assert main([str(path), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "o2"), "-q",
                 "--bands", "1,2,3"]) == 0
    assert "  bands: [1, 2, 3]\n" in (tmp_path / "o2" / "s2_report.txt").read_text()


def test_annotator_says_which_bands_it_shows(tmp_path, monkeypatch, caplog):
    import label_tools.annotate as annotate_mod

    path = _raster(tmp_path / "s2.tif", S2_NAMES)
    _, mask = make_scene(40, 56)
    scr = scene_scribbles(mask)
    monkeypatch.setattr(annotate_mod, "has_display", lambda: True)
    monkeypatch.setattr(annotate_mod, "annotate", lambda src, classes, **kw: (scr, 1.0))
    (tmp_path / "classes.txt").write_text("water\nsand\ngrass\n")
    with caplog.at_level(logging.INFO, logger="label_tools"):
        assert main([str(path), "--labels", str(tmp_path / "classes.txt"), "-o", str(tmp_path / "out")]) == 0
    assert f"{path}: showing bands 4,3,2, true colour by the Sentinel-2 band names B04, B03, B02; --bands chooses " \
           "others" in caplog.messages


# ----------------------------------------------------------------------------- annotator options (see also
# test_options_without_effect.py: --order and --backend where no annotator opens)
def test_resume_and_no_resume_together_are_refused(small_photo, tmp_path, capsys):
    img, _, _ = small_photo
    with pytest.raises(SystemExit) as e:  # argparse's own check
        main([str(img), "-o", str(tmp_path / "out"), "--resume", "--no-resume"])
    assert e.value.code == 2
    assert one_error_line(capsys) == ("label-image: error: argument --no-resume: not allowed with argument --resume "
                                      "(see label-image --help)")
    assert not (tmp_path / "out").exists()


def test_a_collection_walk_keeps_order_uncertainty(tmp_path, monkeypatch):
    """Several images in the annotator: every image's window walk gets --order (it always got rows)."""
    import label_tools.annotate as annotate_mod

    d = tmp_path / "photos"
    d.mkdir()
    masks = {}
    for i, name in enumerate(["a", "b"]):
        img, masks[name] = make_scene(48, 64, seed=i)
        Image.fromarray(img).save(d / f"{name}.png")
    orders = []

    def fake_annotate(src, classes, **kw):
        orders.append(kw.get("order"))
        return scene_scribbles(masks[os.path.basename(src.path)[0]]), 1.0

    monkeypatch.setattr(annotate_mod, "has_display", lambda: True)
    monkeypatch.setattr(annotate_mod, "annotate", fake_annotate)
    labels = tmp_path / "classes.txt"
    labels.write_text("water\nsand\ngrass\n")
    assert main([str(d), "--labels", str(labels), "--order", "uncertainty", "-o", str(tmp_path / "out"), "-q"]) == 0
    assert orders == ["uncertainty", "uncertainty"]
