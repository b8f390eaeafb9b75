"""The outputs of an OME-TIFF are named without ``.ome``: ``cells.ome.tif`` -> ``cells_mres_label.png``.

Fiji and Bio-Formats treat ``.ome.tif`` as one extension (the image is called ``cells``); label_tools dropped only
``.tif`` and wrote ``cells.ome_mres_label.png``. Results written under that old name are still found: a re-run is
refused without ``--overwrite`` and replaces them in place with it, a batch that resumes skips them, label-export
tiles them, and no second set under the new name appears beside them.
"""
import os

import numpy as np
import pytest
from PIL import Image

tifffile = pytest.importorskip("tifffile")

from label_tools.cli import main  # noqa: E402
from label_tools.export import main as export_main  # noqa: E402
from label_tools.io import legacy_stem, stem  # noqa: E402
from label_tools.job import stem_in  # noqa: E402

H, W = 24, 36
OUTPUTS = ("_mres.png", "_mres_label.png", "_mres.mat", "_report.txt")


def _stack():
    """uint16 (T=1, Z=2, C=2, H, W): z-slice z bright from column 10 + 12 z on."""
    rng = np.random.default_rng(0)
    a = np.full((1, 2, 2, H, W), 200, np.uint16)
    for z in range(2):
        a[0, z, :, :, 10 + 12 * z:] = 1500
    return a + rng.integers(0, 40, a.shape).astype(np.uint16)


@pytest.fixture
def d(tmp_path):
    tifffile.imwrite(tmp_path / "cells.ome.tif", _stack(), ome=True, metadata={"axes": "TZCYX"})
    scr = np.zeros((H, W), np.uint8)
    scr[3:21, 1:4] = 1
    scr[3:21, 32:35] = 2
    Image.fromarray(scr).save(tmp_path / "s.png")
    return tmp_path


def _run(d, image, *more):
    return main([str(d / image), "--scribbles", str(d / "s.png"), "-o", str(d / "out"), "-q", *more])


def _files(folder):
    return {n: os.stat(folder / n).st_mtime_ns for n in sorted(os.listdir(folder))}


@pytest.mark.parametrize("path,new,old", [
    ("/d/cells.ome.tif", "cells", "cells.ome"), ("/d/cells.ome.tiff", "cells", "cells.ome"),
    ("/d/CELLS.OME.TIF", "CELLS", "CELLS.OME"), ("/d/cells.tif", "cells", None), ("/d/a.b.png", "a.b", None),
    ("/d/.ome.tif", ".ome", None),  # nothing left before ".ome.tif": named as before
])
def test_stems(path, new, old):
    assert stem(path) == new and legacy_stem(path) == old


def test_ome_tiff_outputs_named_without_ome(d):
    """cells.ome.tif's outputs are cells_..., a plane's cells_z02_..., and the report's note names them so."""
    assert _run(d, "cells.ome.tif") == 0
    assert _run(d, "cells.ome.tif", "--plane", "2") == 0
    out = d / "out"
    assert sorted(os.listdir(out)) == sorted([f"cells{s}" for s in OUTPUTS] + [f"cells_z02{s}" for s in OUTPUTS])
    assert "z-slice 2 is labelled (--plane 2; outputs named cells_z02_...)" in (out / "cells_z02_report.txt").read_text()
    lab = np.asarray(Image.open(out / "cells_z02_mres_label.png"))
    assert (lab[:, :20] == 0).mean() > 0.9 and (lab[:, 24:] == 1).mean() > 0.9  # z-slice 2's edge, at column 22


def _as_old_version(out, new, old):
    """Rename a result set <new>_* to <old>_*, as an earlier version named it."""
    for n in os.listdir(out):
        if n.startswith(new + "_"):
            os.rename(out / n, out / (old + n[len(new):]))


def test_results_under_the_old_name_are_found(d, capsys):
    """An out/ holding cells.ome_* (and cells.ome_z02_* of --plane 2) from an earlier version: a re-run is refused
    in one line naming the old file, and nothing changes; a resuming --model batch skips both; --overwrite replaces
    them under their old names (no cells_* beside them); label-export tiles them."""
    out = d / "out"
    assert _run(d, "cells.ome.tif", "--save-model", str(d / "m.skops")) == 0
    assert _run(d, "cells.ome.tif", "--plane", "2") == 0
    _as_old_version(out, "cells", "cells.ome")
    before = _files(out)
    assert sorted(before) == sorted([f"cells.ome{s}" for s in OUTPUTS] + [f"cells.ome_z02{s}" for s in OUTPUTS])
    for plane in ([], ["--plane", "2"]):
        assert _run(d, "cells.ome.tif", *plane) == 2
        err = capsys.readouterr().err
        tag = "_z02" if plane else ""
        assert err.count("\n") == 1 and f"output {str(out / f'cells.ome{tag}_mres.png')!r} already exists" in err, err
        assert _files(out) == before
    for plane in ([], ["--plane", "2"]):
        assert main(["--model", str(d / "m.skops"), "--headless", str(d / "cells.ome.tif"), "-o", str(out), "-q",
                     *plane]) == 0
    assert _files(out) == before  # both skipped as done
    assert _run(d, "cells.ome.tif", "--overwrite") == 0
    assert _run(d, "cells.ome.tif", "--plane", "2", "--overwrite") == 0
    after = _files(out)
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before)  # replaced in place
    assert export_main([str(out), "-o", str(d / "ds"), "--tile", "16", "--val-fraction", "0", "-q"]) == 0
    tiles = sorted(os.listdir(d / "ds" / "train" / "images"))
    assert tiles and {t.split("_r")[0] for t in tiles} == {"cells.ome", "cells.ome_z02"}


def test_annotator_autosave_under_the_old_name_is_resumed(tmp_path):
    """The annotator's strokes autosaved as cells.ome_scribbles.png are the ones it resumes (stem_in keeps the old
    name while no file of the new one exists); a folder without them, or with files of the new name, gets the new."""
    image = str(tmp_path / "cells.ome.tif")
    assert stem_in(str(tmp_path), image) == "cells"
    (tmp_path / "cells.ome_scribbles.png").write_bytes(b"")
    assert stem_in(str(tmp_path), image) == "cells.ome"
    assert stem_in(str(tmp_path), image, "_z02") == "cells_z02"  # another plane's: nothing of it under the old name
    (tmp_path / "cells_mres_label.png").write_bytes(b"")
    assert stem_in(str(tmp_path), image) == "cells"
    assert stem_in(str(tmp_path), str(tmp_path / "photo.png")) == "photo"


def test_cells_tif_beside_cells_ome_tif_collide(d, capsys):
    """cells.tif and cells.ome.tif in one batch would now write the same outputs: refused in one line naming both."""
    batch = d / "batch"
    batch.mkdir()
    tifffile.imwrite(batch / "cells.ome.tif", _stack(), ome=True, metadata={"axes": "TZCYX"})
    tifffile.imwrite(batch / "cells.tif", _stack()[0, 0, 0])
    assert _run(d, "cells.ome.tif", "--save-model", str(d / "m.skops")) == 0
    capsys.readouterr()
    assert main(["--model", str(d / "m.skops"), "--headless", str(batch), "-o", str(d / "o2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "same name 'cells'" in err and "cells.ome.tif" in err and "cells.tif" in err, err
    assert not (d / "o2").exists()
