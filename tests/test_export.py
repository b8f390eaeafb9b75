"""label-export: result folders -> tiles; every tile reopened and compared with its source crop."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools import export
from label_tools.cli import main as label_image

NAMES = ["water", "sand", "grass"]
TILE, OVERLAP = 32, 8


def _geotiff(path, h=70, w=90):
    """A 3-band uint16 GeoTIFF in UTM with a no-data corner (0) + its mask."""
    import rasterio
    from affine import Affine

    img, mask = make_scene(h, w, seed=3)
    data = np.moveaxis(img.astype(np.uint16) * 40 + 100, -1, 0)
    data[:, :36, :36] = 0  # a no-data corner: the tile at (0, 0) is all no-data
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4100000)) as d:
        d.write(data)
    return mask


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two result folders of real label-image runs: three photos (grey, RGB, RGB) and one GeoTIFF."""
    root = tmp_path_factory.mktemp("export")
    src = root / "src"
    src.mkdir()
    (src / "classes.txt").write_text("\n".join(NAMES) + "\n")
    (src / "colors.txt").write_text("blue\n#e0c080\ntab:green\n")
    runs = []
    for i, (h, w) in enumerate([(70, 110), (50, 45), (40, 64)]):
        img, mask = make_scene(h, w, seed=i)
        if i == 1:
            img = img[..., 1]  # a grey photo keeps one band
        Image.fromarray(img).save(src / f"photo{i}.png")
        Image.fromarray(scene_scribbles(mask, seed=i)).save(src / f"photo{i}_scribbles.png")
        runs.append((src / f"photo{i}.png", root / ("resA" if i < 2 else "resB")))
    mask = _geotiff(src / "scene.tif")
    scr = scene_scribbles(mask, seed=5)
    scr[:36, :36] = 0
    Image.fromarray(scr).save(src / "scene_scribbles.png")
    runs.append((src / "scene.tif", root / "resB"))
    for image, out in runs:
        code = label_image([str(image), "--scribbles", str(image).replace(image.suffix, "_scribbles.png"),
                            "--labels", str(src / "classes.txt"), "--colors", str(src / "colors.txt"),
                            "-o", str(out), "-s", "1", "-q"])
        assert code == 0
    return root


def _read(path):
    if path.endswith(".tif"):
        import rasterio

        with rasterio.open(path) as d:
            return np.moveaxis(d.read(), 0, -1)
    a = np.array(Image.open(path))
    return a[..., None] if a.ndim == 2 else a


def _source(path):
    if path.endswith(".tif"):
        return _read(path)
    a = np.array(Image.open(path))
    return a[..., None] if a.ndim == 2 else a


def test_every_tile_is_its_source_crop(results, tmp_path, capsys):
    out = tmp_path / "ds"
    code = export.main([str(results / "resA"), str(results / "resB"), "-o", str(out), "--tile", str(TILE),
                        "--overlap", str(OVERLAP), "--val-fraction", "0.5", "--seed", "1"])
    assert code == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["classes"] == NAMES and info["colors"] == ["#0000ff", "#e0c080", "#2ca02c"]
    assert info["tile"] == TILE and info["overlap"] == OVERLAP
    sources = sorted(str(results / "src" / n) for n in ("photo0.png", "photo1.png", "photo2.png", "scene.tif"))
    # split by source: 2 of 4 in val, none in both, and every tile's split is its source's
    assert sorted(info["sources"]["train"] + info["sources"]["val"]) == sources
    assert len(info["sources"]["val"]) == 2 and not set(info["sources"]["train"]) & set(info["sources"]["val"])
    split_of = {s: k for k in ("train", "val") for s in info["sources"][k]}
    counts = {k: np.zeros(3, np.int64) for k in ("train", "val")}
    labels_of = {}
    for stem, d in [("photo0", "resA"), ("photo1", "resA"), ("photo2", "resB"), ("scene", "resB")]:
        labels_of[stem] = np.array(Image.open(results / d / f"{stem}_mres_label.png"))
    seen = set()
    for t in info["tiles"]:
        assert t["split"] == split_of[t["source"]]
        assert os.path.basename(t["image"]) == os.path.basename(t["label"])
        assert t["image"].startswith(t["split"] + "/images/") and t["label"].startswith(t["split"] + "/labels/")
        img, lab = _read(str(out / t["image"])), _read(str(out / t["label"]))[..., 0]
        src = _source(t["source"])
        r, c, h, w = t["window"]
        assert img.shape == (TILE, TILE, src.shape[2]) and img.dtype == src.dtype and lab.shape == (TILE, TILE)
        np.testing.assert_array_equal(img[:h, :w], src[r: r + h, c: c + w])
        assert not img[h:].any() and not img[:, w:].any()  # padding is 0
        stem = os.path.splitext(os.path.basename(t["source"]))[0]
        np.testing.assert_array_equal(lab[:h, :w], labels_of[stem][r: r + h, c: c + w])
        assert (lab[h:] == 255).all() and (lab[:, w:] == 255).all()
        assert (lab != 255).any()
        counts[t["split"]] += np.bincount(lab.ravel(), minlength=256)[:3]
        seen.add((stem, r, c))
    for k in ("train", "val"):
        assert [info["pixel_counts"][k][n] for n in NAMES] == counts[k].tolist()
    # tiles step by tile - overlap and cover the image; photo0 is 70 x 110: rows 0, 24, 48 x cols 0, 24, 48, 72, 96
    assert {(r, c) for s, r, c in seen if s == "photo0"} == {(r, c) for r in (0, 24, 48) for c in (0, 24, 48, 72, 96)}
    # the all-no-data tile of the GeoTIFF (its top-left corner) is skipped, its neighbours are not
    assert ("scene", 0, 0) not in seen and ("scene", 0, 24) in seen
    assert (labels_of["scene"][:36, :36] == 255).all()
    # every file in the dataset is listed
    listed = {t["image"] for t in info["tiles"]} | {t["label"] for t in info["tiles"]}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "dataset.json"}
    assert on_disk == listed


def test_geotiff_chips_land_on_the_source(results, tmp_path):
    import rasterio
    from affine import Affine

    out = tmp_path / "ds"
    assert export.main([str(results / "resB"), "-o", str(out), "--tile", "32", "-q"]) == 0
    info = json.loads((out / "dataset.json").read_text())
    geo = [t for t in info["tiles"] if t["source"].endswith("scene.tif")]
    assert len(geo) == 3 * 3 - 1  # 70 x 90 in 32-px tiles, less the all-no-data corner
    with rasterio.open(results / "src" / "scene.tif") as s:
        for t in geo:
            r, c, h, w = t["window"]
            assert t["image"].endswith(".tif")
            with rasterio.open(out / t["image"]) as im, rasterio.open(out / t["label"]) as lb:
                assert im.crs == s.crs and lb.crs == s.crs
                t = s.transform
                assert im.transform == Affine(10, 0, t.c + 10 * c, 0, -10, t.f - 10 * r) == lb.transform
                assert (im.count, im.dtypes[0], im.nodata) == (3, "uint16", 0)
                assert (lb.count, lb.dtypes[0], lb.nodata) == (1, "uint8", 255)
                # the chip's georeferencing puts its pixels where they are in the source
                x, y = im.xy(5, 7)
                sr, sc = s.index(x, y)
                assert (sr, sc) == (r + 5, c + 7)
                if h > 5 and w > 7:
                    assert im.read()[:, 5, 7].tolist() == s.read(window=((sr, sr + 1), (sc, sc + 1)))[:, 0, 0].tolist()


def test_labels_from_the_geotiff_alone(results, tmp_path):
    """A result folder with only <stem>_mres_geo.tif (no label PNG) gives the same label tiles."""
    only = tmp_path / "only"
    only.mkdir()
    for n in ("scene_mres_geo.tif", "scene_report.txt", "scene_mres.mat"):
        shutil.copy(results / "resB" / n, only / n)
    a, b = tmp_path / "a", tmp_path / "b"
    assert export.main([str(only), "-o", str(a), "--tile", "32", "-q"]) == 0
    png_only = tmp_path / "png"
    png_only.mkdir()
    for n in ("scene_mres_label.png", "scene_report.txt", "scene_mres.mat"):
        shutil.copy(results / "resB" / n, png_only / n)
    assert export.main([str(png_only), "-o", str(b), "--tile", "32", "-q"]) == 0
    ia, ib = json.loads((a / "dataset.json").read_text()), json.loads((b / "dataset.json").read_text())
    assert ia["tiles"] == ib["tiles"] and len(ia["tiles"]) == 8
    for t in ia["tiles"]:
        np.testing.assert_array_equal(_read(str(a / t["label"])), _read(str(b / t["label"])))


def test_split_by_source():
    srcs = [f"/d/img{i}.png" for i in range(5)]
    assert set(export.split_sources(srcs[:1], val_fraction=0.5, seed=0).values()) == {"train"}
    for frac, n_val in [(0.2, 1), (0.01, 1), (0.5, 3), (0.0, 0), (0.99, 4)]:
        s = export.split_sources(srcs, val_fraction=frac, seed=0)
        assert sum(v == "val" for v in s.values()) == n_val
    a = export.split_sources(srcs, val_fraction=0.4, seed=7)
    assert a == export.split_sources(list(reversed(srcs)), val_fraction=0.4, seed=7)  # order of arguments irrelevant
    assert len({tuple(sorted(export.split_sources(srcs, val_fraction=0.4, seed=k).items())) for k in range(10)}) > 1


def test_tile_starts():
    assert export.tile_starts(100, 32, 0) == [0, 32, 64, 96]
    assert export.tile_starts(96, 32, 0) == [0, 32, 64]
    assert export.tile_starts(70, 32, 8) == [0, 24, 48]
    assert export.tile_starts(10, 32, 0) == [0]


@pytest.mark.parametrize("extra, match", [
    (["--tile", "8"], "--tile: expected a whole number of pixels >= 16, got 8"),
    (["--overlap", "32", "--tile", "32"], r"--overlap: expected a whole number in \[0, tile\)"),
    (["--val-fraction", "1"], r"--val-fraction: expected a number in \[0, 1\), got 1.0"),
    (["--val-fraction", "-0.1"], r"--val-fraction: expected a number in \[0, 1\)"),
    (["--tile", "abc"], "expected a whole number, got 'abc'"),
])
def test_bad_options(results, tmp_path, capsys, extra, match):
    import re

    out = tmp_path / "ds"
    with pytest.raises(SystemExit) if "abc" in extra else _nothing():
        code = export.main([str(results / "resA"), "-o", str(out), *extra])
        assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err
    assert not out.exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_bad_inputs(results, tmp_path, capsys):
    out = tmp_path / "ds"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export.main([str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "results folder" in capsys.readouterr().err and not out.exists()
    assert export.main([str(empty), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results" in err and not out.exists()
    # a report whose source image has gone
    broken = tmp_path / "broken"
    shutil.copytree(results / "resA", broken)
    rep = broken / "photo0_report.txt"
    rep.write_text(rep.read_text().replace(str(results / "src" / "photo0.png"), str(tmp_path / "gone.png")))
    assert export.main([str(broken), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "gone.png" in err and "does not exist" in err and not out.exists()
    # the same source in two folders
    shutil.copytree(results / "resA", tmp_path / "resA_copy")
    assert export.main([str(results / "resA"), str(tmp_path / "resA_copy"), "-o", str(out)]) == 2
    assert "labelled twice" in capsys.readouterr().err and not out.exists()
    # one folder given twice
    assert export.main([str(results / "resA"), str(results / "resA"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (f"label-export: error: results folder {str(results / 'resA')!r} is given "
                                       "twice; give it once\n") and not out.exists()
    # an existing non-empty dataset is kept without --overwrite, replaced with it
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert export.main([str(results / "resA"), "-o", str(out), "--tile", "32"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep"
    assert export.main([str(results / "resA"), "-o", str(out), "--tile", "32", "--overwrite", "-q"]) == 0
    assert not (out / "mine.txt").exists() and (out / "dataset.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no temporary folders left


def test_console_script_help():
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "label-export")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--val-fraction" in r.stdout and "DATASET" in r.stdout


def test_counts_in_the_log_agree_with_their_number(results, tmp_path, caplog):
    """A 70 x 110 photo in one 128-px tile is '1 tile', not '1 tiles'; the summary counts images alike."""
    out = tmp_path / "one"
    with caplog.at_level(logging.INFO, logger=export.log.name):
        assert export.main([str(results / "resA"), "-o", str(out), "--tile", "128", "--val-fraction", "0.5",
                            "--seed", "1"]) == 0
    err = caplog.text
    info = json.loads((out / "dataset.json").read_text())
    assert len(info["tiles"]) == 2 and len(info["sources"]["train"]) == 1
    assert "photo0.png: 1 tile -> " in err and "photo1.png: 1 tile -> " in err and "1 tiles" not in err
    assert "1 train tile from 1 image, 1 val tile from 1 image" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device on which every write fails with ENOSPC)")
def test_geotiff_chip_on_a_full_disk_is_one_oserror_without_libtiff_noise(capfd):
    """On a full disk GDAL's own chip writes printed dozens of libtiff lines per chip ("_tiffSeekProc: No
    space left on device", "TIFFWriteDirectoryTagData: IO error") and raised nothing, so label-export went
    on to the next chip. Chips are now made in memory and written by Python: one OSError, nothing on stderr."""
    import errno

    from affine import Affine

    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(OSError) as e:
        export._write_tif("/dev/full", a, profile={"crs": "EPSG:32618"}, transform=Affine(1, 0, 0, 0, -1, 0),
                          nodata=None, mask=np.full((32, 32), 255, np.uint8))
    assert e.value.errno == errno.ENOSPC
    out, err = capfd.readouterr()
    assert err == "" and out == ""


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_hyperstack_and_ascii_grid_sources_as_label_image_read_them(tmp_path):
    """label-export opened sources by file name alone: an ImageJ hyperstack's chips held its first page (channel 1)
    while label-image had labelled its two channels as bands, and an ESRI ASCII grid (.asc), which label-image
    reads through GDAL, was refused. Now both are read the way label-image read them."""
    img, mask = make_scene(40, 64, seed=2)
    ch = [np.ascontiguousarray(img[..., 0], np.uint16) * 10, np.ascontiguousarray(img[..., 2], np.uint16) * 20 + 7]
    planes = [Image.fromarray(c) for c in ch] * 2  # 2 channels x 2 z-slices
    desc = "ImageJ=1.54f\nimages=4\nchannels=2\nslices=2\nframes=1\nhyperstack=true\nmode=composite\n"
    planes[0].save(tmp_path / "hs.tif", format="TIFF", save_all=True, append_images=planes[1:], tiffinfo={270: desc})
    grid = img[..., 1].astype(np.float32) / 3
    with open(tmp_path / "dem.asc", "w") as f:
        f.write("ncols 64\nnrows 40\nxllcorner 1000\nyllcorner 2000\ncellsize 5\nNODATA_value -9999\n")
        for row in grid:
            f.write(" ".join(f"{v:.4f}" for v in row) + "\n")
    Image.fromarray(scene_scribbles(mask, seed=2)).save(tmp_path / "s.png")
    for name in ("hs.tif", "dem.asc"):
        assert label_image([str(tmp_path / name), "--scribbles", str(tmp_path / "s.png"), "-o", str(tmp_path / "res"),
                            "-q"]) == 0
    assert export.main([str(tmp_path / "res"), "-o", str(tmp_path / "ds"), "--tile", "32", "--val-fraction", "0"]) == 0
    chips = sorted((tmp_path / "ds" / "train" / "images").iterdir())
    hs = [p for p in chips if p.name.startswith("hs_")]
    dem = [p for p in chips if p.name.startswith("dem_")]
    assert len(hs) == 4 and len(dem) == 4, [p.name for p in chips]
    a = _read(str(next(p for p in hs if "_r00000_c00032" in p.name)))
    np.testing.assert_array_equal(a, np.stack(ch, -1)[:32, 32:64])
    b = _read(str(next(p for p in dem if "_r00000_c00000" in p.name)))
    np.testing.assert_allclose(b[..., 0], grid[:32, :32], atol=1e-4)
