"""--plane: a microscopy stack's z-slice / time point, or a multi-page TIFF's page, to label.

A stack was labelled on its first plane only (z-slice 1 at time point 1, page 1), with a note saying to save
another plane as a file of its own. The stacks here are written by tifffile as Fiji and OME writers do, with
content that differs per plane (a bright region whose left edge moves from plane to plane), so every test can
tell from the labels which plane was read.
"""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

tifffile = pytest.importorskip("tifffile")

from label_tools.cli import main  # noqa: E402
from label_tools.errors import OptionError  # noqa: E402
from label_tools.planes import parse_plane  # noqa: E402

H, W = 24, 36  # non-square: an H/W swap shows
C, Z, T = 2, 3, 2


def _edge(z, t):
    """Column where plane (z, t) (0-based) turns bright: 6, 10, ..., 26, one per plane."""
    return 6 + 4 * (z + Z * t)


def _plane(edge, c, rng):
    """uint16 (H, W): dark left of ``edge``, bright from it on (channel 1 more so), with noise."""
    a = np.full((H, W), 200, np.uint16)
    a[:, edge:] = 1200 + 400 * c
    return a + rng.integers(0, 40, (H, W)).astype(np.uint16)


def _tzc():
    rng = np.random.default_rng(0)
    return np.stack([np.stack([np.stack([_plane(_edge(z, t), c, rng) for c in range(C)]) for z in range(Z)])
                     for t in range(T)])  # (T, Z, C, H, W)


@pytest.fixture
def stacks(tmp_path):
    """An ImageJ hyperstack (TZCYX), an OME-TIFF of the same planes with channel names, a plain multi-page TIFF
    of 5 pages (page p's edge at 6 + 4 (p - 1)), a single-page TIFF and a PNG; and scribbles fitting them all."""
    a = _tzc()
    tifffile.imwrite(tmp_path / "hs.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    tifffile.imwrite(tmp_path / "cells.ome.tif", a, ome=True,
                     metadata={"axes": "TZCYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    rng = np.random.default_rng(1)
    pages = np.stack([(_plane(6 + 4 * p, 0, rng) // 8).astype(np.uint8) for p in range(5)])
    tifffile.imwrite(tmp_path / "pages.tif", pages)
    tifffile.imwrite(tmp_path / "one.tif", pages[0])
    Image.fromarray(pages[0]).save(tmp_path / "photo.png")
    scr = np.zeros((H, W), np.uint8)
    scr[3:21, 1:4] = 1  # dark in every plane
    scr[3:21, 32:35] = 2  # bright in every plane
    Image.fromarray(scr).save(tmp_path / "s.png")
    return tmp_path


def _run(d, image, *more, out="out"):
    return main([str(d / image), "--scribbles", str(d / "s.png"), "-o", str(d / out), "-q", *more])


def _edge_of(label_png):
    """The column where class 2 (id 1) starts, by the median row."""
    lab = np.asarray(Image.open(label_png))
    assert lab.shape == (H, W)
    return int(np.median((lab == 0).sum(axis=1)))


def _digest(folder):
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in sorted(os.listdir(folder))}


OUTPUTS = ("_mres.png", "_mres_label.png", "_mres.mat", "_report.txt")


def test_each_plane_labelled_and_named_apart_first_plane_as_before(stacks):
    """The default labels z-slice 1 at time point 1 into hs_* (names as before --plane existed); each chosen plane
    is the one labelled (its edge), into hs_z.._t.._*, leaving every other plane's outputs byte for byte; the report
    says which plane, in its note and its settings."""
    d, out = stacks, stacks / "out"
    assert _run(d, "hs.tif") == 0
    assert sorted(os.listdir(out)) == sorted("hs" + s for s in OUTPUTS)
    assert _edge_of(out / "hs_mres_label.png") == _edge(0, 0)
    report = (out / "hs_report.txt").read_text()
    assert ("z-slice 1 at time point 1 is labelled (to label another, choose it with --plane Z,T: Z from 1 to 3, "
            "T from 1 to 2)") in report
    assert "plane (--plane)" not in report
    before = _digest(out)
    for given, (z, t), tag in [("3,2", (2, 1), "_z03_t02"), ("2", (1, 0), "_z02_t01"), ("z1,t2", (0, 1), "_z01_t02")]:
        assert _run(d, "hs.tif", "--plane", given) == 0
        assert _edge_of(out / f"hs{tag}_mres_label.png") == _edge(z, t)
        report = (out / f"hs{tag}_report.txt").read_text()
        where = f"z-slice {z + 1} at time point {t + 1}"
        assert (f"warning: hs.tif is an ImageJ hyperstack of 2 channels, 3 z-slices, 2 time points: its 2 channels "
                f"are the bands; {where} is labelled (--plane {given}; outputs named hs{tag}_...)") in report
        assert f"  plane (--plane): {given} ({where})\n" in report
    assert {k: v for k, v in _digest(out).items() if k in before} == before  # the first plane's, untouched
    assert len(os.listdir(out)) == 4 * len(OUTPUTS)


def test_ome_tiff_plane_channels_are_the_bands(stacks):
    """An OME-TIFF: the chosen plane's channels (named) are the bands, and that plane is labelled."""
    from label_tools.io import open_image

    src = open_image(str(stacks / "cells.ome.tif"), plane="2,2")
    try:
        assert src.band_names == ("DAPI", "GFP")
        np.testing.assert_array_equal(src.ds.read(), _tzc()[1, 1])
    finally:
        src.close()
    assert _run(stacks, "cells.ome.tif", "--plane", "2,2") == 0
    out = stacks / "out"
    assert _edge_of(out / "cells_z02_t02_mres_label.png") == _edge(1, 1)  # ".ome.tif" is one extension
    assert "OME-TIFF of 2 channels, 3 z-slices, 2 time points: its 2 channels are the bands; z-slice 2 at time " \
           "point 2 is labelled (--plane 2,2; outputs named cells_z02_t02_...)" in \
           (out / "cells_z02_t02_report.txt").read_text()


def test_multipage_tiff_page(stacks):
    """A plain multi-page TIFF: --plane N is page N (p-tag in the names); without it, page 1 and the warning names
    --plane."""
    out = stacks / "out"
    assert _run(stacks, "pages.tif") == 0
    assert _edge_of(out / "pages_mres_label.png") == 6
    assert ("warning: pages.tif holds 5 images (TIFF pages); only the first was labelled: to label another, choose "
            "it with --plane N: a page from 1 to 5;") in (out / "pages_report.txt").read_text()
    assert _run(stacks, "pages.tif", "--plane", "4") == 0
    assert _edge_of(out / "pages_p04_mres_label.png") == 6 + 4 * 3
    report = (out / "pages_p04_report.txt").read_text()
    assert "warning: pages.tif holds 5 images (TIFF pages); page 4 was labelled (--plane 4; outputs named " \
           "pages_p04_...)" in report
    assert "  plane (--plane): 4 (page 4 of 5)\n" in report


@pytest.mark.parametrize("image,given,line", [
    ("hs.tif", "4", "--plane 4: image '{d}/hs.tif' has 3 z-slices and 2 time points (an ImageJ hyperstack): "
                    "expected --plane Z,T: Z from 1 to 3, T from 1 to 2"),
    ("hs.tif", "1,3", "--plane 1,3: image '{d}/hs.tif' has 3 z-slices and 2 time points (an ImageJ hyperstack): "
                      "expected --plane Z,T: Z from 1 to 3, T from 1 to 2"),
    ("cells.ome.tif", "t3", "--plane t3: image '{d}/cells.ome.tif' has 3 z-slices and 2 time points (an OME-TIFF): "
                            "expected --plane Z,T: Z from 1 to 3, T from 1 to 2"),
    ("pages.tif", "6", "--plane 6: image '{d}/pages.tif' has 5 pages (a multi-page TIFF): expected --plane N: a page "
                       "from 1 to 5"),
    ("pages.tif", "2,1", "--plane 2,1: image '{d}/pages.tif' is a multi-page TIFF of 5 pages whose description "
                         "names no z-slices or time points: expected --plane N: a page from 1 to 5"),
    ("one.tif", "2", "--plane 2: image '{d}/one.tif' is not a stack (one plane: no z-slices, time points or TIFF "
                     "pages); leave out --plane"),
    ("photo.png", "1", "--plane 1: image '{d}/photo.png' is not a stack (a PNG image of one plane); leave out "
                       "--plane"),
    ("hs.tif", "0", "argument --plane: expected 1-based numbers (the first z-slice, time point or page is 1), got "
                    "'0' (see label-image --help)"),
    ("hs.tif", "3;2", "argument --plane: expected a plane such as 3, 3,2, t2 or z3,t2 (1-based, as Fiji shows "
                      "them), got '3;2' (see label-image --help)"),
])
def test_bad_plane_one_line_exit_2_nothing_written(stacks, capsys, image, given, line, monkeypatch):
    monkeypatch.chdir(stacks)
    assert _rc([image, "--scribbles", "s.png", "-o", "out", "--plane", given]) == 2
    assert capsys.readouterr().err == "label-image: error: " + line.format(d=".").replace("'./", "'") + "\n"
    assert not (stacks / "out").exists()


def _rc(argv):
    """main's exit code, argparse's option errors (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_chosen_plane_outputs_not_overwritten(stacks, capsys):
    """A second run of the same plane is refused without --overwrite (outputs unchanged); another plane is not."""
    out = stacks / "out"
    assert _run(stacks, "hs.tif", "--plane", "2,1") == 0
    before = _digest(out)
    assert _run(stacks, "hs.tif", "--plane", "2,1", "--crf-iter", "0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hs_z02_t01_" in err[0] and "already exists" in err[0], err
    assert _digest(out) == before
    assert _run(stacks, "hs.tif", "--plane", "2,1", "--crf-iter", "0", "--overwrite") == 0


@pytest.mark.parametrize("given,want", [
    ("3", ((None, 3),)), ("3,2", ((None, 3), (None, 2))), ("z3,t2", (("z", 3), ("t", 2))),
    (" T2 , Z=3 ", (("t", 2), ("z", 3))), ("p4", (("p", 4),)), ("t2", (("t", 2),)),
])
def test_parse_plane_forms(given, want):
    assert parse_plane(given) == want


@pytest.mark.parametrize("given", ["", "a", "3,", "1,2,3", "z3,3", "z3,z4", "p2,t1", "-1", "z0"])
def test_parse_plane_refuses(given):
    with pytest.raises(ValueError, match="expected"):
        parse_plane(given)


def test_annotator_autosave_is_the_planes_own(stacks, monkeypatch):
    """The annotator keeps its strokes in <stem><plane tag>_scribbles.png: the first plane's autosave is neither
    offered to nor overwritten by a run on another plane, and the plane's own is resumed on the next run of it."""
    from label_tools import annotate as ann_mod
    from label_tools import session as sess

    seen = []

    class FakeAnnotator:
        """Draws the two strokes and saves them, as the window does after a stroke."""

        def __init__(self, src, classes, session, *, outdir, stem, **kw):
            self.session, self.outdir, self.stem = session, outdir, stem
            seen.append((stem, bool(session.scribbles.any()), src.read()[0, :, 0].copy()))

        def run(self):
            self.session.scribbles[:] = np.asarray(Image.open(stacks / "s.png"))
            sess.save(self.session, self.outdir, self.stem)
            return 1.0

    monkeypatch.setattr(ann_mod, "has_display", lambda: True)
    monkeypatch.setattr("label_tools.cli._check_display", lambda args: None)
    monkeypatch.setattr(ann_mod, "choose_backend", lambda b=None: "opencv")
    monkeypatch.setattr(ann_mod, "Annotator", FakeAnnotator)
    (stacks / "labels.txt").write_text("dark\nbright\n")
    (stacks / "colors.txt").write_text("navy\norange\n")
    out = stacks / "out"
    out.mkdir()
    first = np.zeros((H, W), np.uint8)
    first[10, 10] = 1
    Image.fromarray(first).save(out / "hs_scribbles.png")  # the first plane's strokes, drawn earlier
    kept = (out / "hs_scribbles.png").read_bytes()
    args = [str(stacks / "hs.tif"), "-o", str(out), "-q", "--labels", str(stacks / "labels.txt"), "--colors",
            str(stacks / "colors.txt"), "--plane", "3,2"]
    assert main(args + ["--resume"]) == 0  # nothing of this plane's to resume: a fresh start
    assert (out / "hs_scribbles.png").read_bytes() == kept
    assert (out / "hs_z03_t02_scribbles.png").exists()
    assert _edge_of(out / "hs_z03_t02_mres_label.png") == _edge(2, 1)
    assert main(args + ["--resume", "--overwrite"]) == 0
    (s1, had1, row1), (s2, had2, row2) = seen
    assert s1 == s2 == "hs_z03_t02" and not had1 and had2  # the plane's own strokes resumed
    assert int(np.argmax(row1 > 0.5)) == _edge(2, 1)  # the window showed that plane


def test_init_from_another_planes_labels(stacks):
    """Pre-labels carried from a neighbouring plane (same size): --init of z-slice 2's labels with --plane 3,1 and
    --headless labels z-slice 3 at time point 1, named so, the report naming both."""
    out = stacks / "out"
    assert _run(stacks, "hs.tif", "--plane", "2,1") == 0
    init = out / "hs_z02_t01_mres_label.png"
    before = _digest(out)
    assert main([str(stacks / "hs.tif"), "--plane", "3,1", "--init", str(init), "--headless", "-o", str(out),
                 "-q"]) == 0
    assert {k: v for k, v in _digest(out).items() if k in before} == before
    assert sorted(set(os.listdir(out)) - set(before)) == sorted("hs_z03_t01" + s for s in OUTPUTS)
    report = (out / "hs_z03_t01_report.txt").read_text()
    assert "  plane (--plane): 3,1 (z-slice 3 at time point 1)\n" in report
    assert f"  init (pre-labels, weak labels): {init}\n" in report
    assert np.asarray(Image.open(out / "hs_z03_t01_mres_label.png")).shape == (H, W)


def test_plane_refused_for_a_collection_walk(stacks, capsys):
    assert main([str(stacks / "hs.tif"), str(stacks / "cells.ome.tif"), "--plane", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("label-image: error: --plane 2 with several images or a folder:") and err.count("\n") == 1


def test_pages_of_other_sizes_named_in_the_size_line_and_chosen(tmp_path, capsys):
    """A multi-page TIFF whose page 2 has another size: scribbles drawn on page 2 are refused without --plane in
    one line naming --plane, and labelled on page 2 with --plane 2 (at page 2's size)."""
    rng = np.random.default_rng(0)
    p1 = rng.integers(0, 50, (30, 40), dtype=np.uint8)
    p2 = rng.integers(0, 50, (20, 50), dtype=np.uint8)
    p2[:, 25:] += 150
    Image.fromarray(p1).save(tmp_path / "mixed.tif", save_all=True, append_images=[Image.fromarray(p2)])
    s = np.zeros((20, 50), np.uint8)
    s[3:17, 2:6], s[3:17, 44:48] = 1, 2
    Image.fromarray(s).save(tmp_path / "s2.png")
    args = [str(tmp_path / "mixed.tif"), "--scribbles", str(tmp_path / "s2.png"), "-o", str(tmp_path / "o"), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(
        "the image holds 2 images (TIFF pages) and only the first, 40 x 30 px, is labelled: to label another page, "
        "choose it with --plane N: a page from 1 to 2"), err
    assert main(args + ["--plane", "2"]) == 0
    lab = np.asarray(Image.open(tmp_path / "o" / "mixed_p02_mres_label.png"))
    assert lab.shape == (20, 50) and (lab[:, :25] == 0).mean() > 0.95 and (lab[:, 25:] == 1).mean() > 0.95


def test_headless_batch_labels_that_plane_of_every_stack(stacks):
    """--model --headless over a folder with --plane: each stack's plane, named so; run again, skipped as done."""
    d = stacks / "batch"
    d.mkdir()
    for n in ("a", "b"):
        (d / f"{n}.tif").write_bytes((stacks / "hs.tif").read_bytes())
    out = stacks / "out"
    assert _run(stacks, "hs.tif", "--save-model", str(stacks / "m.skops")) == 0
    batch = ["--model", str(stacks / "m.skops"), "--headless", str(d), "-o", str(out), "--plane", "3,2"]
    assert main(batch) == 0
    for n in ("a", "b"):
        assert _edge_of(out / f"{n}_z03_t02_mres_label.png") == _edge(2, 1)
    stamps = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    assert main(batch) == 0
    assert {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)} == stamps  # skipped: nothing rewritten
