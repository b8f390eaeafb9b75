"""What a fourth QA pass, using label-image as its users do, found wrong (each test failed before its fix)."""
import os

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
