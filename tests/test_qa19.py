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
