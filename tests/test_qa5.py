"""What a fifth QA pass, using label-image and label-export as their users do, found wrong (each test failed
before its fix)."""
import json
import os
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE, shared
from label_tools import export
from label_tools.cli import main

BEACH = os.path.join(SAMPLE, "beach.png")
BEACH_SCR = os.path.join(SAMPLE, "beach_scribbles.png")
CLASSES = os.path.join(SAMPLE, "classes.txt")
COLORS = os.path.join(SAMPLE, "colors.txt")


def _landsat_tenth():
    """The real Landsat 7 RGB tile (79 x 71, uint8, nodata 0) and scribbles of sea (1) and land (2)."""
    import rasterio

    with rasterio.open(shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif")) as ds:
        data, profile = ds.read(), dict(ds.profile)
    scr = np.zeros(data.shape[1:], np.uint8)
    scr[40:45, 45:55] = 1  # sea
    scr[30:35, 20:28] = 2  # land
    return data, profile, scr


def _write(path, data, **profile):
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                           count=data.shape[0], dtype=data.dtype, **profile) as ds:
            ds.write(data)
            for i in range(data.shape[0]):
                ds.set_band_description(i + 1, f"B{i + 1}")
            return ds


def test_export_of_a_raster_placed_by_ground_control_points_carries_them(tmp_path):
    """label-export of the results of a raster georeferenced by ground control points alone (an unrectified
    scene, a frame placed in QGIS's georeferencer). Before: PNG chips with no placement at all
    ('Corner Coordinates: Upper Left (0.0, 0.0)' in gdalinfo), although label-image's own outputs carry the
    GCPs; now GeoTIFF chips (image and label) carrying every GCP moved into the chip's pixels, so a GIS puts
    each chip's pixels where they are in the source."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS
    from rasterio.transform import GCPTransformer

    data, _, scr = _landsat_tenth()
    h, w = data.shape[1:]
    gcps = [GroundControlPoint(row=r, col=c, x=101985.0 + c * 3004.177 + r * 150.0, y=2826915.0 - r * 3034.225,
                               id=str(i)) for i, (r, c) in enumerate([(0, 0), (0, w), (h, 0), (h, w)])]
    _write(tmp_path / "frame.tif", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "frame.tif", "r+") as ds:
            ds.gcps = (gcps, CRS.from_epsg(32618))
        with rasterio.open(tmp_path / "frame.tif") as ds:
            gcps = ds.gcps[0]  # as GDAL stored them (ids renumbered from 1)
    Image.fromarray(scr).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "frame.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    assert export.main([str(tmp_path / "out"), "-o", str(tmp_path / "ds"), "--tile", "32", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert len(info["tiles"]) == 9  # 79 x 71 in 32-px tiles
    labels = np.array(Image.open(tmp_path / "out" / "frame_mres_label.png"))
    source = GCPTransformer(gcps)
    for t in info["tiles"]:
        r, c, th, tw = t["window"]
        assert t["image"].endswith(".tif") and t["label"].endswith(".tif")
        for name in (t["image"], t["label"]):
            with rasterio.open(tmp_path / "ds" / name) as chip:
                got, crs = chip.gcps
                assert crs.to_epsg() == 32618 and chip.crs is None and chip.transform.is_identity
                assert [(p.row, p.col, p.x, p.y, p.id) for p in got] == [
                    (p.row - r, p.col - c, p.x, p.y, p.id) for p in gcps]
                # the chip's pixel (5, 7) lands where the source's pixel (r + 5, c + 7) does
                assert np.allclose(GCPTransformer(got).xy(5, 7), source.xy(r + 5, c + 7))
                a = chip.read()
        with rasterio.open(tmp_path / "ds" / t["image"]) as chip:
            assert np.array_equal(chip.read()[:, :th, :tw], data[:, r: r + th, c: c + tw])
            assert chip.descriptions == ("B1", "B2", "B3")
        assert np.array_equal(a[0, :th, :tw], labels[r: r + th, c: c + tw])


@pytest.mark.parametrize("dtype, nodata", [("int16", -32768), ("float32", np.nan), ("float32", -9999.0)])
def test_export_pads_edge_chips_with_the_source_nodata(tmp_path, dtype, nodata):
    """Edge chips of a georeferenced int16 raster with negative values (nodata -32768) or a float32 raster
    (nodata NaN, or -9999). Before: padded with 0, a valid value there, so a GIS showed a strip of zeros as
    data beside the chip's real no-data (and 13-band chips lost their band names); now padded with the
    source's no-data value, and the band descriptions are kept."""
    import rasterio

    data, profile, scr = _landsat_tenth()
    valid = (data != 0).any(axis=0)
    x = data.astype(np.float32) * 10 - 1200 if dtype == "int16" else data.astype(np.float32) / 255
    x[:, ~valid] = nodata
    _write(tmp_path / "scene.tif", x.astype(dtype), crs=profile["crs"], transform=profile["transform"],
           nodata=nodata)
    Image.fromarray(scr).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    assert export.main([str(tmp_path / "out"), "-o", str(tmp_path / "ds"), "--tile", "32", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    edge = [t for t in info["tiles"] if t["window"][2] < 32 or t["window"][3] < 32]
    assert len(edge) == 4  # of 5: the all-no-data corner chip is skipped
    for t in edge:
        r, c, th, tw = t["window"]
        with rasterio.open(tmp_path / "ds" / t["image"]) as chip:
            a = chip.read()
            assert chip.dtypes[0] == dtype and np.array_equal(chip.nodata, nodata, equal_nan=True)
            assert chip.descriptions == ("B1", "B2", "B3")
            # padding is no-data to GDAL: outside the chip's mask
            pad = np.ones((32, 32), bool)
            pad[:th, :tw] = False
            assert np.array_equal(a[:, pad], np.full((3, pad.sum()), nodata, dtype), equal_nan=True)
            assert not chip.read_masks(1)[pad].any()
            assert np.array_equal(a[:, :th, :tw], x.astype(dtype)[:, r: r + th, c: c + tw], equal_nan=True)


@pytest.fixture
def tenth_results(tmp_path):
    """A real label-image run on the small Landsat tile: (results folder, source image)."""
    import shutil

    _, _, scr = _landsat_tenth()
    src = tmp_path / "src" / "scene.tif"
    src.parent.mkdir()
    shutil.copy(shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif"), src)
    Image.fromarray(scr).save(tmp_path / "src" / "scr.png")
    assert main([str(src), "--scribbles", str(tmp_path / "src" / "scr.png"), "-o", str(tmp_path / "res"), "-q"]) == 0
    return tmp_path / "res", src


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("where", ["results", "parent of results", "source folder"])
def test_export_never_replaces_what_it_exports(tenth_results, tmp_path, capsys, where):
    """``label-export res -o res --overwrite`` (the results folder given as the dataset too, or a folder
    holding it or the source images). Before: exit 0, and the results (or the source images) were deleted,
    replaced by the dataset; now one line naming the folder and what it holds, exit 2, nothing touched."""
    res, src = tenth_results
    out = {"results": res, "parent of results": tmp_path, "source folder": src.parent}[where]
    before = _listing(tmp_path)
    assert export.main([str(res), "-o", str(out), "--overwrite", "--tile", "32"]) == 2
    what = f"the source image {str(src)!r}" if where == "source folder" else f"the results folder {str(res)!r}"
    assert capsys.readouterr().err == (f"label-export: error: -o/--output {str(out)!r} holds {what} being exported; "
                                       "replacing it would delete it: give a new folder for the dataset\n")
    assert _listing(tmp_path) == before


def test_export_negative_seed_is_one_line(tenth_results, tmp_path, capsys):
    """``label-export res -o ds --seed -1``. Before: a numpy traceback ('ValueError: expected non-negative
    integer'), exit 1; now one line, exit 2, nothing written."""
    res, _ = tenth_results
    before = _listing(tmp_path)
    assert export.main([str(res), "-o", str(tmp_path / "ds"), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "label-export: error: --seed: expected a whole number >= 0, got -1\n"
    assert _listing(tmp_path) == before


def test_scribble_value_beyond_the_colours_file_names_it(tmp_path, capsys):
    """The sample's scribbles (values 1, 2) with a colours file of one colour and no --labels. Before:
    '... has value 2 but the labels give only 1 classes', blaming a labels file never given; now the line
    names the colours file that set the number of classes."""
    (tmp_path / "colors.txt").write_text("navy\n")
    assert main([BEACH, "--scribbles", BEACH_SCR, "--colors", str(tmp_path / "colors.txt"), "-o",
                 str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: scribble file {BEACH_SCR!r} has value 2 but colours file "
        f"{str(tmp_path / 'colors.txt')!r} gives only 1 class (values 1..1; 0 = unlabelled)\n")
    assert not (tmp_path / "o").exists()


def test_export_chips_keep_the_source_internal_mask(tmp_path):
    """A GeoTIFF whose no-data is an internal per-dataset mask, not a nodata value (as ``gdal_translate -mask``
    writes it). Before: the chips had no mask ('Mask Flags:
    ALL_VALID'), so the collar and the padding showed as 0-valued data; now each chip carries the source's
    mask over its window, the padding outside it."""
    import rasterio

    data, profile, scr = _landsat_tenth()
    valid = (data != 0).any(axis=0)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                           count=3, dtype="uint16", crs=profile["crs"], transform=profile["transform"]) as ds:
            ds.write(data.astype(np.uint16) * 100)
            ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    Image.fromarray(scr).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    assert export.main([str(tmp_path / "out"), "-o", str(tmp_path / "ds"), "--tile", "32", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert len(info["tiles"]) == 8 and not list((tmp_path / "ds").rglob("*.msk"))
    for t in info["tiles"]:
        r, c, th, tw = t["window"]
        with rasterio.open(tmp_path / "ds" / t["image"]) as chip:
            assert chip.nodata is None and chip.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
            want = np.zeros((32, 32), bool)
            want[:th, :tw] = valid[r: r + th, c: c + tw]
            assert np.array_equal(chip.dataset_mask() > 0, want)


def test_export_names_of_same_stem_sources_never_collide(tmp_path):
    """Three result folders: ``a/photo.png``, ``b/photo.png`` and ``c/photo_2.png`` (real photo crops). Before:
    the second 'photo' was renamed 'photo_2', the very name of the third source, whose tiles then overwrote
    its tiles (dataset.json listed the same file twice, for two sources); now every source's tiles have names
    of their own."""
    from conftest import scene_scribbles

    grey = np.array(Image.open(shared("isbi2012_em_membranes", "images", "00.png")))
    mask = np.array(Image.open(shared("isbi2012_em_membranes", "masks", "00.png")))
    for i, (folder, name) in enumerate([("a", "photo"), ("b", "photo"), ("c", "photo_2")]):
        (tmp_path / folder).mkdir()
        img = tmp_path / folder / f"{name}.png"
        crop = (slice(40 * i, 40 * i + 64), slice(0, 48))
        Image.fromarray(grey[crop]).save(img)
        Image.fromarray(scene_scribbles(mask[crop], seed=i)).save(tmp_path / folder / "scr.png")
        assert main([str(img), "--scribbles", str(tmp_path / folder / "scr.png"), "-o",
                     str(tmp_path / f"res_{folder}"), "-q"]) == 0
    assert export.main([str(tmp_path / f"res_{f}") for f in "abc"] + ["-o", str(tmp_path / "ds"), "--tile", "32",
                                                                     "--val-fraction", "0", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    names = [t["image"] for t in info["tiles"]]
    assert len(info["tiles"]) == 3 * 4 and len(set(names)) == len(names)
    assert len(list((tmp_path / "ds" / "train" / "images").iterdir())) == 12
    assert sorted({n.split("/")[-1].split("_r0")[0] for n in names}) == ["photo", "photo_2", "photo_3"]
    for t in info["tiles"]:
        r, c, th, tw = t["window"]
        src = np.array(Image.open(t["source"]))
        assert np.array_equal(np.array(Image.open(tmp_path / "ds" / t["image"]))[:th, :tw], src[r: r + th, c: c + tw])


def test_export_of_a_damaged_source_is_one_line(tenth_results, tmp_path, capsys):
    """The source GeoTIFF got damaged after label-image ran (a bad copy). Before: a rasterio traceback
    ('RasterioIOError: Read failed. See previous exception for details.'), exit 1; now one line naming the
    file and the window, exit 2, and no dataset folder."""
    import rasterio

    res, src = tenth_results
    with rasterio.open(src) as ds:
        data, profile = ds.read(), dict(ds.profile)
    profile.update(compress="deflate", tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(data)
    n = os.path.getsize(src)
    rng = np.random.default_rng(0)
    with open(src, "r+b") as f:
        for off in range(n // 5, 4 * n // 5, n // 20):
            f.seek(off)
            f.write(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    assert export.main([str(res), "-o", str(tmp_path / "ds"), "--tile", "32"]) == 2
    err = capsys.readouterr().err
    # read as label-image reads it (io.RasterSource, which samples the pixels when it opens), or tile by tile
    assert re.match(rf"label-export: error: (source )?image {re.escape(repr(str(src)))} cannot be read at rows ", err), err
    assert "the file is damaged or truncated; " in err and err.count("\n") == 1, err
    assert not (tmp_path / "ds").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".ds")]


def test_export_results_folder_given_twice_says_so(tenth_results, tmp_path, capsys):
    """``label-export res res/ -o ds`` (a shell glob or a repeated argument). Before: 'source image ... is
    labelled twice, in 'res/scene_mres_geo.tif' and 'res/scene_mres_geo.tif'', one file named twice as if two;
    now the line says the folder is given twice."""
    res, _ = tenth_results
    assert export.main([str(res), str(res) + os.sep, "-o", str(tmp_path / "ds")]) == 2
    assert capsys.readouterr().err == (f"label-export: error: results folder {str(res) + os.sep!r} is given twice "
                                       f"(also as {str(res)!r}); give it once\n")
    assert not (tmp_path / "ds").exists()


def _rpc_scene(path):
    """The small Landsat tile placed by rational polynomial coefficients alone (no CRS, no transform, no
    GCPs), as a satellite scene before orthorectification is; returns (data, RPC, scribbles)."""
    import rasterio
    from rasterio.rpc import RPC

    data, _, scr = _landsat_tenth()
    h, w = data.shape[1:]
    one = [1.0] + [0.0] * 19
    line = [0.0] * 20
    line[1], line[2] = 0.1, -1.0  # line from latitude, a little from longitude: not a plain grid
    samp = [0.0] * 20
    samp[1], samp[2] = 1.0, 0.05
    rpc = RPC(height_off=0.0, height_scale=500.0, lat_off=25.0, lat_scale=0.5, line_den_coeff=one,
              line_num_coeff=line, line_off=h / 2, line_scale=h / 2, long_off=-77.5, long_scale=0.5,
              samp_den_coeff=one, samp_num_coeff=samp, samp_off=w / 2, samp_scale=w / 2)
    _write(path, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "r+") as ds:
            ds.rpcs = rpc
        with rasterio.open(path) as ds:
            assert ds.crs is None and ds.transform.is_identity and not ds.gcps[0]
            rpc = ds.rpcs  # as GDAL stored it
    return data, rpc, scr


def _lonlat(path, row, col):
    """(lon, lat) of a pixel's corner through the raster's RPCs, as GDAL computes it."""
    import rasterio
    from rasterio.transform import RPCTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            with RPCTransformer(ds.rpcs) as t:
                return t.xy(row, col, offset="ul")


def test_raster_placed_by_rpcs_keeps_them_on_every_output_and_chip(tmp_path):
    """A scene georeferenced by RPCs alone (a satellite L1 product). Before: treated as a plain photo: no
    '_mres_geo.tif', unplaced probabilities and uncertainty rasters, and label-export wrote PNG chips; now
    the label GeoTIFF, probabilities and uncertainty map carry the source's RPCs (the report says so), and
    every exported chip carries them with its offsets moved, so its pixels land where they came from."""
    import rasterio

    data, rpc, scr = _rpc_scene(tmp_path / "scene.tif")
    Image.fromarray(scr).save(tmp_path / "scr.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out),
                 "--save-probs", "-q"]) == 0
    report = (out / "scene_report.txt").read_text().splitlines()
    assert "rational polynomial coefficients (RPCs): copied to the output rasters" in report
    labels = np.array(Image.open(out / "scene_mres_label.png"))
    for name in ("scene_mres_geo.tif", "scene_probs.tif", "scene_uncertainty.tif"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(out / name) as ds:
                assert ds.rpcs.to_dict() == rpc.to_dict() and ds.crs is None and ds.transform.is_identity
                assert (ds.width, ds.height) == (data.shape[2], data.shape[1])
                if name == "scene_mres_geo.tif":
                    assert np.array_equal(ds.read(1), np.where(labels == 255, 0, labels + 1))
        assert np.allclose(_lonlat(out / name, 30, 40), _lonlat(tmp_path / "scene.tif", 30, 40))
    assert export.main([str(out), "-o", str(tmp_path / "ds"), "--tile", "32", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert len(info["tiles"]) == 9
    for t in info["tiles"]:
        r, c, th, tw = t["window"]
        for name in (t["image"], t["label"]):
            assert name.endswith(".tif")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(tmp_path / "ds" / name) as chip:
                    got = chip.rpcs.to_dict()
            want = dict(rpc.to_dict(), line_off=rpc.line_off - r, samp_off=rpc.samp_off - c)
            assert got.keys() == want.keys() and all(np.allclose(got[k], want[k]) for k in want)
            assert np.allclose(_lonlat(tmp_path / "ds" / name, 5, 7), _lonlat(tmp_path / "scene.tif", r + 5, c + 7))


def test_probabilities_of_four_classes_are_not_an_alpha_band(tmp_path):
    """``--save-probs`` with four classes (the sample's strokes and a labels file of four). Before: GDAL made
    the 4-band uint8 file RGBA, so the 4th class's probability was its alpha band ('ColorInterp=Alpha', mask
    flags 'PER_DATASET ALPHA'): every pixel where that class has probability 0, here all of them, was
    no-data to GDAL and QGIS; now the bands are plain grey bands and every pixel holds data."""
    import rasterio
    from rasterio.enums import ColorInterp, MaskFlags

    (tmp_path / "classes.txt").write_text("water\nland\nsurf\nsky\n")
    assert main([BEACH, "--scribbles", BEACH_SCR, "--labels", str(tmp_path / "classes.txt"), "-o", str(tmp_path / "o"),
                 "--save-probs", "-q"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "o" / "beach_probs.tif") as ds:
            assert ds.count == 4 and ColorInterp.alpha not in ds.colorinterp
            assert all(f == [MaskFlags.all_valid] for f in ds.mask_flag_enums)
            assert (ds.dataset_mask() == 255).all()
            assert ds.descriptions == ("water", "land", "surf", "sky")


def test_export_chips_of_a_four_band_source_keep_its_band_meaning(tmp_path):
    """label-export of a 4-band uint8 GeoTIFF (red, green, blue, near-infrared, as NAIP-like aerial imagery
    comes). Before: GDAL made each chip RGBA, its near-infrared band the alpha band (mask flags 'PER_DATASET
    ALPHA': dark water pixels no-data in a GIS); now the chips keep the source's colour interpretation
    (RGB + undefined), and an RGBA source's chips keep their alpha."""
    import rasterio
    from rasterio.enums import ColorInterp as C

    data, profile, scr = _landsat_tenth()
    nir = (255 - data[2]).astype(np.uint8)[None]
    for name, ci in [("rgbn", (C.red, C.green, C.blue, C.undefined)), ("rgba", (C.red, C.green, C.blue, C.alpha))]:
        folder = tmp_path / name
        folder.mkdir()
        four = np.concatenate([data, nir if name == "rgbn" else np.full_like(nir, 255)])
        with rasterio.open(folder / "scene.tif", "w", driver="GTiff", width=four.shape[2], height=four.shape[1],
                           count=4, dtype="uint8", crs=profile["crs"], transform=profile["transform"],
                           photometric="MINISBLACK") as ds:
            ds.write(four)
            ds.colorinterp = ci
        Image.fromarray(scr).save(folder / "scr.png")
        assert main([str(folder / "scene.tif"), "--scribbles", str(folder / "scr.png"), "-o", str(folder / "out"),
                     "-q"]) == 0
        assert export.main([str(folder / "out"), "-o", str(folder / "ds"), "--tile", "32", "-q"]) == 0
        info = json.loads((folder / "ds" / "dataset.json").read_text())
        assert len(info["tiles"]) == 9
        for t in info["tiles"]:
            r, c, th, tw = t["window"]
            with rasterio.open(folder / "ds" / t["image"]) as chip:
                assert chip.colorinterp == ci
                assert np.array_equal(chip.read()[:, :th, :tw], four[:, r: r + th, c: c + tw])
                if name == "rgbn":
                    assert (chip.dataset_mask() == 255).all()


def test_empty_output_option_is_refused(tenth_results, tmp_path, capsys, monkeypatch):
    """``-o "$OUT"`` with OUT unset. Before: label-export ... -o "" --overwrite replaced the current folder
    (every file in it deleted, the dataset put there), and label-image -o "" wrote beside the image as if -o
    were left out; now both stop with one line, exit 2, nothing written."""
    res, src = tenth_results
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "mine.txt").write_text("keep")
    monkeypatch.chdir(cwd)
    before = _listing(tmp_path)
    with pytest.raises(SystemExit) as e:
        export.main([str(res), "-o", "", "--overwrite"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("label-export: error: argument -o/--output: expected a dataset folder, got an "
                                       "empty value (see label-export --help)\n")
    with pytest.raises(SystemExit) as e:
        main([str(src), "--scribbles", str(src.parent / "scr.png"), "-o", ""])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("label-image: error: argument -o/--output: expected a folder, got an empty "
                                       "value: give a folder, or leave out -o to write beside each image (see "
                                       "label-image --help)\n")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("model", ["", "models/"])
def test_save_model_path_that_is_no_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch, model):
    """``--save-model ""`` (an unset variable) or ``--save-model models/`` (a folder not made yet). Before:
    the run labelled the image, wrote its four outputs, then stopped with '--save-model: cannot write ''' and
    exit 2, its outputs left behind; now it stops before any work, nothing written."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main([BEACH, "--scribbles", BEACH_SCR, "-o", str(out), "--save-model", model, "-q"]) == 2
    assert capsys.readouterr().err == (f"label-image: error: --save-model: expected a file path such as model.skops, "
                                       f"got {model!r}\n")
    assert os.listdir(tmp_path) == []


def test_gcp_placed_frame_refuses_another_frames_labels_and_scribbles(tmp_path, capsys):
    """Two drone frames of one size, each placed by its own ground control points. Before: frame A's label
    GeoTIFF (carrying A's GCPs) was taken as --init for frame B, and A's georeferenced scribbles as B's,
    without a word (the grid check looked at CRS and transform only); now both are refused in one line, as
    a map raster given for a GCP-placed frame is; frame A's own files are still taken."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    data, profile, scr = _landsat_tenth()
    h, w = data.shape[1:]

    def frame(name, east):
        gcps = [GroundControlPoint(row=r, col=c, x=east + c * 3004.177, y=2826915.0 - r * 3034.225)
                for r, c in [(0, 0), (0, w), (h, 0), (h, w)]]
        _write(tmp_path / name, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(tmp_path / name, "r+") as ds:
                ds.gcps = (gcps, CRS.from_epsg(32618))

    frame("a.tif", 101985.0)
    frame("b.tif", 151985.0)
    Image.fromarray(scr).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "a.tif"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "a"),
                 "-q"]) == 0
    a_labels = str(tmp_path / "a" / "a_mres_geo.tif")
    # A's labels as pre-labels: taken for A, refused for B
    assert main([str(tmp_path / "a.tif"), "--init", a_labels, "--headless", "-o", str(tmp_path / "a2"), "-q"]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "b.tif"), "--init", a_labels, "--headless", "-o", str(tmp_path / "b"), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: --init {a_labels!r}: is placed by other ground control points than the image (4 "
        "against the image's 4, not at the same places): give pre-labels made for this image\n")
    # A's scribbles as a GCP-placed GeoTIFF: refused for B
    shutil_src = tmp_path / "a_scr.tif"
    _write(shutil_src, scr[None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "a.tif") as ds, rasterio.open(shutil_src, "r+") as dst:
            dst.gcps = ds.gcps
    assert main([str(tmp_path / "b.tif"), "--scribbles", str(shutil_src), "-o", str(tmp_path / "b"), "-q"]) == 2
    assert "is placed by other ground control points than the image" in capsys.readouterr().err
    # a map raster of the frame's size given for a GCP-placed frame
    _write(tmp_path / "map.tif", scr[None], crs=profile["crs"], transform=profile["transform"])
    assert main([str(tmp_path / "b.tif"), "--scribbles", str(tmp_path / "map.tif"), "-o", str(tmp_path / "b"),
                 "-q"]) == 2
    assert capsys.readouterr().err == (
        f"label-image: error: --scribbles {str(tmp_path / 'map.tif')!r}: lies on a map grid "
        f"({profile['crs'].to_string()}) but the image is placed by 4 ground control points alone: give scribbles "
        "drawn on the image's own pixels\n")
    assert not (tmp_path / "b").exists()
