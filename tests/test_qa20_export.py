"""label-export of results labelled on one plane of a stack (``label-image --plane``).

label-export refused them (it read a file's first plane only). Now it reads the plane the report records, so
every image tile holds that plane's pixels under that plane's labels. The stacks are written by tifffile, as Fiji
and OME writers do, with content that differs from plane to plane: a tile of the wrong plane cannot pass.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

tifffile = pytest.importorskip("tifffile")

from label_tools.cli import main as label_image  # noqa: E402
from label_tools.export import main as export_main  # noqa: E402

H, W = 40, 56  # non-square, not a multiple of the tile: edge tiles are padded
C, Z, T = 2, 3, 2
TILE = 16


def _tzc():
    """uint16 (T, Z, C, H, W): plane (z, t) dark left of column 8 + 6 (z + Z t), bright from it, with noise that
    differs in every plane and channel."""
    rng = np.random.default_rng(0)
    a = np.empty((T, Z, C, H, W), np.uint16)
    for t in range(T):
        for z in range(Z):
            for c in range(C):
                p = np.full((H, W), 200, np.uint16)
                p[:, 8 + 6 * (z + Z * t):] = 1200 + 400 * c
                a[t, z, c] = p + rng.integers(0, 60, (H, W)).astype(np.uint16)
    return a


def _pages():
    """uint8 (5, H, W) pages of a plain multi-page TIFF, page p's edge at column 8 + 8 p."""
    rng = np.random.default_rng(1)
    a = np.full((5, H, W), 30, np.uint8)
    for p in range(5):
        a[p, :, 8 + 8 * p:] = 200
    return a + rng.integers(0, 20, a.shape).astype(np.uint8)


@pytest.fixture
def stacks(tmp_path):
    """An ImageJ hyperstack, an OME-TIFF of the same planes, a plain multi-page TIFF, and scribbles for them all."""
    a = _tzc()
    tifffile.imwrite(tmp_path / "hs.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    tifffile.imwrite(tmp_path / "cells.ome.tif", a, ome=True,
                     metadata={"axes": "TZCYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    tifffile.imwrite(tmp_path / "pages.tif", _pages())
    scr = np.zeros((H, W), np.uint8)
    scr[4:36, 1:5] = 1  # dark in every plane
    scr[4:36, 51:55] = 2  # bright in every plane
    Image.fromarray(scr).save(tmp_path / "s.png")
    return tmp_path


def _label(d, image, *more, out="res"):
    assert label_image([str(d / image), "--scribbles", str(d / "s.png"), "-o", str(d / out), "-q", *more]) == 0


def _read(path):
    """(h, w, bands) of a PNG or GeoTIFF tile."""
    if str(path).endswith(".tif"):
        import rasterio

        with rasterio.open(path) as f:
            return np.moveaxis(f.read(), 0, -1)
    a = np.asarray(Image.open(path))
    return a[..., None] if a.ndim == 2 else a


def _tiles_hold(ds, record, plane_pixels, labels):
    """The record's image tile is the crop of ``plane_pixels`` (H, W, bands) at its window, its label tile the crop of
    ``labels``, both padded at the edges (image 0, labels 255)."""
    r, c, h, w = record["window"]
    img, lab = _read(ds / record["image"]), _read(ds / record["label"])[..., 0]
    assert img.shape == (TILE, TILE, plane_pixels.shape[2]) and lab.shape == (TILE, TILE)
    np.testing.assert_array_equal(img[:h, :w], plane_pixels[r:r + h, c:c + w])
    np.testing.assert_array_equal(lab[:h, :w], labels[r:r + h, c:c + w])
    assert (img[h:] == 0).all() and (img[:, w:] == 0).all() and (lab[h:] == 255).all() and (lab[:, w:] == 255).all()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("image", ["hs.tif", "cells.ome.tif"])
def test_planes_of_a_hyperstack_tiled_from_their_own_pixels(stacks, image):
    """Three planes of one stack (the first by default, --plane 3,2 and --plane z2), labelled into one folder, are
    exported together: each tile is its own plane's channels under its own plane's labels, the record names the
    plane, and all three go to one side of the split (planes of one stack are one source)."""
    _label(stacks, image)
    _label(stacks, image, "--plane", "3,2")
    _label(stacks, image, "--plane", "z2")
    stem = image.split(".")[0]  # "cells.ome.tif": outputs named cells_...
    planes = {stem: (None, 0, 0), f"{stem}_z03_t02": ("3,2", 2, 1), f"{stem}_z02_t01": ("z2", 1, 0)}
    ds = stacks / "ds"
    assert export_main([str(stacks / "res"), "-o", str(ds), "--tile", str(TILE), "--val-fraction", "0.5", "-q"]) == 0
    info = json.loads((ds / "dataset.json").read_text())
    a = _tzc()
    seen = {}
    for rec in info["tiles"]:
        name = os.path.basename(rec["image"])
        base = next(b for b in sorted(planes, key=len, reverse=True) if name.startswith(b + "_r"))
        given, z, t = planes[base]
        assert rec.get("plane") == given
        labels = np.asarray(Image.open(stacks / "res" / f"{base}_mres_label.png"))
        _tiles_hold(ds, rec, np.moveaxis(a[t, z], 0, -1), labels)
        seen.setdefault(base, set()).add(rec["split"])
    n = -(-H // TILE) * -(-W // TILE)
    assert {b: len([r for r in info["tiles"] if os.path.basename(r["image"]).startswith(b + "_r")])
            for b in planes} == {b: n for b in planes}  # every tile of every plane (none all no-data)
    assert len({s for v in seen.values() for s in v}) == 1  # one source: one side of the split
    assert info["sources"]["train"] == [str(stacks / image)] and info["sources"]["val"] == []


def test_page_of_a_multipage_tiff(stacks):
    """--plane 4 of a plain multi-page TIFF: PNG tiles of page 4, not page 1 (whose edge is 24 columns left)."""
    _label(stacks, "pages.tif", "--plane", "4")
    ds = stacks / "ds"
    assert export_main([str(stacks / "res"), "-o", str(ds), "--tile", str(TILE), "-q"]) == 0
    info = json.loads((ds / "dataset.json").read_text())
    labels = np.asarray(Image.open(stacks / "res" / "pages_p04_mres_label.png"))
    assert labels[H // 2, 8 + 8 * 3 - 2] == 0 and labels[H // 2, 8 + 8 * 3 + 2] == 1  # page 4's edge was labelled
    page = _pages()[3][..., None]
    assert len(info["tiles"]) == -(-H // TILE) * -(-W // TILE)
    for rec in info["tiles"]:
        assert rec["image"].endswith(".png") and rec["plane"] == "4"
        _tiles_hold(ds, rec, page, labels)


def _tree(root):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(root) for f in fs}


def test_plane_the_source_no_longer_has_one_line_exit_2_nothing_written(stacks, capsys):
    """The stack replaced by one of 2 z-slices and 1 time point after --plane 3,2 was labelled: one line naming the
    result, the source and the plane, exit 2, nothing written."""
    _label(stacks, "hs.tif", "--plane", "3,2")
    tifffile.imwrite(stacks / "hs.tif", _tzc()[:1, :2], imagej=True, metadata={"axes": "TZCYX"})
    before = _tree(stacks)
    assert export_main([str(stacks / "res"), "-o", str(stacks / "ds"), "--tile", str(TILE)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("label-export: error: result "), err
    for needle in ("hs_z03_t02_mres_label.png", repr(str(stacks / "hs.tif")), "(--plane 3,2)",
                   "it is an ImageJ hyperstack of 2 channels, 2 z-slices now", "the source changed since the run", "put back the stack it was labelled on"):
        assert needle in err, (needle, err)
    assert _tree(stacks) == before


def test_one_plane_in_two_folders_is_labelled_twice(stacks, capsys):
    """The same plane in two result folders is refused as a source labelled twice (naming the plane); the first
    plane chosen with --plane 1,1 is the first plane of a run without --plane."""
    _label(stacks, "hs.tif", "--plane", "2,2", out="a")
    _label(stacks, "hs.tif", "--plane", "z2,t2", out="b")
    assert export_main([str(stacks / "a"), str(stacks / "b"), "-o", str(stacks / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"z-slice 2 at time point 2 of source image {str(stacks / 'hs.tif')!r} is " \
        "labelled twice" in err, err
    _label(stacks, "hs.tif", out="c")
    _label(stacks, "hs.tif", "--plane", "1,1", out="d")
    assert export_main([str(stacks / "c"), str(stacks / "d"), "-o", str(stacks / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"source image {str(stacks / 'hs.tif')!r} is labelled twice" in err, err
    assert not (stacks / "ds").exists()
    assert export_main([str(stacks / "a"), str(stacks / "c"), "-o", str(stacks / "ds"), "--tile", str(TILE),
                        "-q"]) == 0  # two planes of one stack, from two folders
