"""qa9: bad-input cases found in the session-14 sweep."""
import os

import numpy as np
import pytest
from PIL import Image

from label_tools.cli import main


@pytest.mark.parametrize("with_labels", [False, True])
def test_scribbles_sized_for_another_tiff_page_say_only_first_page_labelled(tmp_path, capsys, with_labels):
    # a multi-page TIFF whose pages differ in size, scribbles drawn on the second page: the refusal says that
    # only the first page is labelled (it said only "draw on the image at its full size", which they were)
    rng = np.random.default_rng(0)
    first = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))
    second = Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8))
    first.save(tmp_path / "pages.tif", save_all=True, append_images=[second])
    scr = np.zeros((40, 50), np.uint8)
    scr[5:10, 5:20], scr[30:38, 30:45] = 1, 2
    Image.fromarray(scr).save(tmp_path / "scr.png")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    argv = [str(tmp_path / "pages.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"),
            "--headless", "-q"] + (["--labels", str(tmp_path / "labels.txt")] if with_labels else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "is 50 x 40 px but the image is 80 x 60 px" in err[0]
    assert "holds 2 images (TIFF pages) and only the first, 80 x 60 px, is labelled" in err[0]
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_scribbles_of_wrong_size_on_single_page_tiff_name_no_pages(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "one.tif")
    Image.fromarray(np.ones((40, 50), np.uint8)).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "one.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"),
                 "--headless", "-q"]) == 2
    err = capsys.readouterr().err
    assert "is 50 x 40 px but the image is 80 x 60 px" in err
    assert "TIFF pages" not in err
