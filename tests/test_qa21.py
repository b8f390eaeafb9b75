"""README audit (qa21): places where the README and the command disagreed, fixed in the code."""
import os

import pytest
from PIL import Image

from conftest import make_scene, one_error_line, pipe_path, scene_scribbles
from label_tools.cli import main


@pytest.fixture
def photo(small_photo):
    """A small photo and its scribbles (values 1..3)."""
    return small_photo[:2]


@pytest.mark.parametrize("how", ["scribbles", "headless"])
def test_image_from_a_pipe_without_o_is_said_to_be_apipe_path(photo, tmp_path, capsys, how):
    # README: a pipe (`<(curl ...)`) given as the image is refused in one line saying so. Without -o the
    # outputs' default folder is the pipe's, /dev/fd, which was checked first: 'output directory '/dev/fd' is
    # not writable (No such file or directory)', naming neither the image nor what was wrong with it.
    img, scr = photo
    model = tmp_path / "m.skops"
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(model),
                 "-q"]) == 0
    pipe = pipe_path(img.read_bytes()[:32768])
    try:
        argv = ([pipe, "--scribbles", str(scr)] if how == "scribbles" else ["--model", str(model), "--headless", pipe])
        assert main(argv + ["-q"]) == 2
    finally:
        os.close(int(pipe.rsplit("/", 1)[1]))
    assert one_error_line(capsys) == (f"label-image: error: image {pipe!r} is a pipe or a device, not a file: it has "
                                      "to be read more than once; save it to a file and give that")


def test_help_of_headless_says_scribble_runs_over_outputs_are_refused(photo, tmp_path, capsys):
    # --help said 'images whose outputs exist are skipped unless --overwrite' for every --headless run; a
    # --scribbles (or --init) run over existing outputs is refused (exit 2), as the README's option table says
    from label_tools.cli import build_parser

    img, scr = photo
    out = tmp_path / "o"
    assert main([str(img), "--scribbles", str(scr), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main([str(img), "--scribbles", str(scr), "--headless", "-o", str(out), "-q"]) == 2
    assert "already exists; pass --overwrite" in one_error_line(capsys)
    helps = {a.dest: " ".join(a.help.split()) for a in build_parser()._actions if a.help}
    assert "skipped unless --overwrite (with --scribbles or --init they are refused" in helps["headless"]


def test_help_of_feature_bands_says_an_alpha_band_is_left_out(tmp_path, capsys):
    # README: --feature-bands defaults to all bands but an alpha band (in an RGBA GeoTIFF the no-data mask, as
    # GDAL reads it; the report says 'feature bands: all but the alpha band 4'); --help said '(default: all)'
    import numpy as np
    import rasterio
    import rasterio.transform

    from label_tools.cli import build_parser

    img, mask = make_scene(60, 84)
    alpha = np.full(mask.shape, 255, np.uint8)
    alpha[:8, :8] = 0
    with rasterio.open(tmp_path / "rgba.tif", "w", driver="GTiff", width=84, height=60, count=4, dtype="uint8",
                       photometric="RGB", alpha="YES", crs="EPSG:32633",
                       transform=rasterio.transform.Affine(1, 0, 500000, 0, -1, 5000060)) as w:
        w.write(np.concatenate([img.transpose(2, 0, 1), alpha[None]]))
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "rgba.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "o"),
                 "-q"]) == 0, capsys.readouterr().err
    report = (tmp_path / "o" / "rgba_report.txt").read_text()
    assert "  feature bands: all but the alpha band 4 (it masks no-data)\n" in report
    helps = {a.dest: " ".join(a.help.split()) for a in build_parser()._actions if a.help}
    assert "(default: all but an alpha band" in helps["feature_bands"]
