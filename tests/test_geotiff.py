"""GeoTIFF input: the label GeoTIFF lands exactly on the source, coloured, with class names."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from PIL import Image
from scipy.io import loadmat

from conftest import SAMPLE, shared
from label_tools.cli import main
from label_tools.synthetic import synthetic_scribbles

LABELS = os.path.join(SAMPLE, "classes.txt")
COLORS = os.path.join(SAMPLE, "colors.txt")


def brightness_scribbles(path, tmp_path):
    """Scribbles for a raster without a mask: dark vs bright valid pixels, drawn as synthetic strokes."""
    with rasterio.open(path) as ds:
        a = ds.read().astype(float)
        valid = ds.dataset_mask() > 0
    g = a.mean(0)
    mask = np.where(valid, (g > np.percentile(g[valid], 40)).astype(int), -1)
    scr = synthetic_scribbles(mask, fraction=0.01)
    p = tmp_path / "scribbles.png"
    Image.fromarray(scr).save(p)
    return str(p), valid


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.fixture
def rgb_byte(tmp_path):
    src = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    scr, valid = brightness_scribbles(src, tmp_path)
    out = tmp_path / "out"
    assert run_cli(src, "--scribbles", scr, "--labels", LABELS, "--colors", COLORS, "-o", out) == 0
    return src, out, valid


def test_georeferencing_kept_exactly(rgb_byte):
    src, out, valid = rgb_byte
    geo = out / "RGB.byte_mres_geo.tif"
    with rasterio.open(src) as s, rasterio.open(geo) as d:
        assert d.crs == s.crs and d.crs.to_epsg() == 32618
        assert d.transform == s.transform  # exact, no rounding of the 300.038 x 300.042 m pixels
        assert (d.width, d.height) == (s.width, s.height)
        assert d.count == 1 and d.dtypes[0] == "uint8" and d.nodata == 0
        assert d.profile["compress"] == "deflate" and d.profile["tiled"]
        lab = d.read(1)
        cmap = d.colormap(1)
        assert cmap[1][:3] == (31, 95, 191) and cmap[2][:3] == (217, 179, 108)
        assert d.tags(1)["CLASS_1"] == "water" and d.tags(1)["CLASS_2"] == "land"
    assert (lab[~valid] == 0).all()  # no-data stays no-data
    assert set(np.unique(lab[valid])) == {1, 2}
    png = np.array(Image.open(out / "RGB.byte_mres_label.png"))
    # pixel alignment: the GeoTIFF is the PNG + 1 where there is data, PNG 255 = no-data
    np.testing.assert_array_equal(lab[valid], png[valid] + 1)
    assert (png[~valid] == 255).all()
    m = loadmat(out / "RGB.byte_mres.mat")
    np.testing.assert_array_equal(m["class"], png)


def test_report_has_areas(rgb_byte):
    _, out, valid = rgb_byte
    rep = (out / "RGB.byte_report.txt").read_text()
    assert "crs: EPSG:32618" in rep and f"no-data: {(~valid).sum()} px" in rep
    line = next(ln for ln in rep.splitlines() if ln.startswith("water: "))
    px = int(line.split("(")[1].split(" px")[0])
    m2 = float(line.split("px) ")[1].split(" m2")[0])
    assert m2 == pytest.approx(px * 300.0379266750948 * 300.041782729805, rel=1e-6)


def test_gdalinfo_reads_it_as_a_gis_client_would(rgb_byte):
    if not shutil.which("gdalinfo"):
        if os.environ.get("CI"):
            pytest.fail("gdalinfo missing (CI installs gdal-bin)")
        pytest.skip("gdalinfo (gdal-bin) not installed")
    _, out, _ = rgb_byte
    r = subprocess.run(["gdalinfo", "-json", str(out / "RGB.byte_mres_geo.tif")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["size"] == [791, 718]
    assert info["geoTransform"] == [101985.0, 300.0379266750948, 0.0, 2826915.0, 0.0, -300.041782729805]
    assert 'ID["EPSG",32618]' in info["coordinateSystem"]["wkt"]
    band = info["bands"][0]
    assert band["type"] == "Byte" and band["noDataValue"] == 0 and band["colorInterpretation"] == "Palette"
    assert band["categories"][:3] == ["no-data", "water", "land"]
    assert band["colorTable"]["entries"][1] == [31, 95, 191, 255]


def test_crs_without_epsg_code_kept_as_wkt(tmp_path):
    src = shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif")
    scr, _ = brightness_scribbles(src, tmp_path)
    assert run_cli(src, "--scribbles", scr, "-o", tmp_path / "o") == 0
    with rasterio.open(src) as s, rasterio.open(tmp_path / "o" / "rgb-byte-tenth_mres_geo.tif") as d:
        assert s.crs.to_epsg() is None
        assert d.crs == s.crs and d.crs.to_wkt() == s.crs.to_wkt()
        assert d.transform == s.transform and d.shape == s.shape


def miou(pred, mask):
    v = mask >= 0
    return np.mean([((pred == c) & (mask == c) & v).sum() / (((pred == c) | (mask == c)) & v).sum()
                    for c in np.unique(mask[v])])


def test_sentinel2_13_band_float(tmp_path):
    src = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    with rasterio.open(shared("s2_slovenia_lulc", "masks", "s2l1c_refscene2.tif")) as ds:
        mask = ds.read(1).astype(int)
    mask[mask == 255] = -1
    scr = synthetic_scribbles(mask, fraction=0.01)
    Image.fromarray(scr).save(tmp_path / "s.png")
    assert run_cli(src, "--scribbles", tmp_path / "s.png", "--bands", "4,3,2", "-o", tmp_path / "o") == 0
    with rasterio.open(src) as s, rasterio.open(tmp_path / "o" / "s2l1c_refscene2_mres_geo.tif") as d:
        assert d.crs == s.crs and d.transform == s.transform and d.shape == (101, 100)
        lab = d.read(1).astype(int) - 1
    # the forest uses all 13 bands; RGB-only baselines score 0.30-0.35 here
    assert miou(lab, mask) > 0.4


def test_feature_bands_option(tmp_path):
    src = shared("s2_slovenia_lulc", "images", "s2l1c_refscene2.tif")
    scr = np.zeros((101, 100), np.uint8)
    scr[10:20, 10:30] = 1
    scr[60:70, 50:90] = 2
    Image.fromarray(scr).save(tmp_path / "s.png")
    assert run_cli(src, "--scribbles", tmp_path / "s.png", "--bands", "4,3,2", "--feature-bands", "2,3,4,8",
                   "-o", tmp_path / "o") == 0
    assert "feature bands: [2, 3, 4, 8]" in (tmp_path / "o" / "s2l1c_refscene2_report.txt").read_text()


@pytest.mark.parametrize("case", ["band out of range", "not a raster", "all no-data"])
def test_bad_rasters(tmp_path, case, capsys):
    scr = tmp_path / "s.png"
    Image.fromarray(np.ones((20, 30), np.uint8)).save(scr)
    extra = []
    if case == "band out of range":
        src = shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif")
        extra = ["--bands", "1,2,7"]
        expect = "--bands: band 7 is out of range"
    elif case == "not a raster":
        src = tmp_path / "junk.tif"
        src.write_bytes(b"II*\x00 this is not a tiff")
        expect = "cannot be opened as a raster"
    else:
        src = tmp_path / "empty.tif"
        prof = dict(driver="GTiff", width=30, height=20, count=1, dtype="uint16", nodata=0, crs="EPSG:32633",
                    transform=rasterio.Affine(10, 0, 0, 0, -10, 0))
        with rasterio.open(src, "w", **prof) as d:
            d.write(np.zeros((1, 20, 30), np.uint16))
        expect = "only no-data"
    out = tmp_path / "out"
    assert run_cli(src, "--scribbles", scr, "-o", out, *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expect in err, err
    assert not out.exists()


def test_probs_and_uncertainty_geotiffs_mask_the_no_data(tmp_path):
    """--save-probs on a Landsat scene with no-data borders: the probability and uncertainty GeoTIFFs
    carry an internal mask that is exactly the label GeoTIFF's valid area (gdalinfo: PER_DATASET), so a
    GIS client tells no-data from a 0 probability or a most-uncertain 255; a photo's files get no mask."""
    src = shared("geotiff_rasterio", "images", "RGB.byte.tif")
    scr, valid = brightness_scribbles(src, tmp_path)
    out = tmp_path / "out"
    assert run_cli(src, "--scribbles", scr, "-o", out, "--save-probs", "-q") == 0
    with rasterio.open(out / "RGB.byte_mres_geo.tif") as ds:
        labelled = ds.read(1) > 0  # id + 1, 0 = no-data
    assert 0.1 < 1 - labelled.mean() < 0.9  # the scene really has no-data borders
    for name in ("RGB.byte_probs.tif", "RGB.byte_uncertainty.tif"):
        with rasterio.open(out / name) as ds:
            assert all(f == [rasterio.enums.MaskFlags.per_dataset] for f in ds.mask_flag_enums), name
            assert np.array_equal(ds.dataset_mask() > 0, labelled), name
            if name.endswith("probs.tif"):
                p = ds.read()
                assert (p[:, ~labelled] == 0).all() and (p[:, labelled].sum(0) > 200).all()
            else:
                assert (ds.read(1)[~labelled] == 255).all()
        info = subprocess.run(["gdalinfo", str(out / name)], capture_output=True, text=True, check=True).stdout
        assert "Mask Flags: PER_DATASET" in info, info
    # a photo (no no-data): no mask in the probability file
    photo = tmp_path / "photo"
    assert run_cli(os.path.join(SAMPLE, "beach.png"), "--scribbles", os.path.join(SAMPLE, "beach_scribbles.png"),
                   "--labels", LABELS, "-o", photo, "--save-probs", "-q") == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(photo / "beach_probs.tif") as ds:
            assert all(f == [rasterio.enums.MaskFlags.all_valid] for f in ds.mask_flag_enums)
