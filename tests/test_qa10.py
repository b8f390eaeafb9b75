"""qa10: bad-input cases found in the session-15 sweep."""
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
    (["--workers", "0"], "argument --workers: expected a number of worker processes >= 1, got '0'"),
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
