"""--model / --save-model / --headless run through label_tools.cli.main, every file reopened."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from conftest import make_scene, scene_scribbles
from label_tools.cli import main
from label_tools.modelfile import load_model

NAMES = ["water", "sand", "grass"]
OUTS = ("_mres.mat", "_mres.png", "_mres_label.png", "_report.txt")


def run(*args):
    return main([str(a) for a in args])


def outputs(stem):
    return sorted(stem + s for s in OUTS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model saved from one scene's scribbles, and a folder of three other scenes with their masks."""
    d = tmp_path_factory.mktemp("coll")
    img, mask = make_scene(80, 130, seed=0)
    Image.fromarray(img).save(d / "first.png")
    Image.fromarray(scene_scribbles(mask)).save(d / "first_scribbles.png")
    (d / "classes.txt").write_text("\n".join(NAMES) + "\n")
    (d / "colors.txt").write_text("blue\n#e0c080\ntab:green\n")
    folder = d / "frames"
    folder.mkdir()
    masks = {}
    for i, seed in enumerate((4, 5, 6)):
        im, m = make_scene(72 + 8 * i, 120, seed=seed)
        Image.fromarray(im).save(folder / f"f{i}.png")
        masks[f"f{i}"] = m
    model = d / "scene.skops"
    assert run(d / "first.png", "--scribbles", d / "first_scribbles.png", "--labels", d / "classes.txt",
               "--colors", d / "colors.txt", "-o", d / "first_out", "--save-model", model, "-q") == 0
    return d, model, folder, masks


def test_save_model_writes_exactly_that_path(trained):
    d, model, *_ = trained
    assert model.is_file()
    m = load_model(str(model))
    assert m.classes.names == tuple(NAMES) and m.n_bands == 3
    np.testing.assert_array_equal(m.classes.colors, [[0, 0, 255], [224, 192, 128], [44, 160, 44]])
    assert m.info["images"] == [str(d / "first.png")]


def test_headless_folder_flat_outputs_and_rerun_changes_nothing(trained, tmp_path, caplog):
    d, model, folder, masks = trained
    extra, emask = make_scene(64, 100, seed=9)
    Image.fromarray(extra).save(tmp_path / "single.png")
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="label_tools")
    assert run("--model", model, "--headless", folder, tmp_path / "single.png", "-o", out) == 0
    assert "4 images: 4 done, 0 skipped, 0 failed" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == sorted(sum((outputs(s) for s in ("f0", "f1", "f2", "single")), []))
    for s, m in {**masks, "single": emask}.items():
        lab = np.array(Image.open(out / f"{s}_mres_label.png"))
        assert lab.shape == m.shape and (lab == m).mean() > 0.9, s
        mat = loadmat(out / f"{s}_mres.mat")
        np.testing.assert_array_equal(mat["class"], lab)
        assert not mat["sparse"].any()  # no scribbles on an applied image
        report = (out / f"{s}_report.txt").read_text()
        assert f"model: {model}" in report and "scribbles: none (model applied)" in report
        assert "'fit'" not in report  # applying the model does not train

    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    caplog.clear()
    assert run("--model", model, "--headless", folder, tmp_path / "single.png", "-o", out) == 0
    lines = caplog.text.strip().splitlines()
    assert len(lines) == 5 and all("skipped" in line for line in lines)
    assert "4 images: 0 done, 4 skipped, 0 failed" in lines[-1]
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert after == before

    assert run("--model", model, "--headless", folder, "-o", out, "--overwrite", "-q") == 0
    assert (out / "f0_mres_label.png").stat().st_mtime_ns > before["f0_mres_label.png"][0]
    assert (out / "f0_mres_label.png").read_bytes() == before["f0_mres_label.png"][1]  # same labels again


def test_same_labels_as_single_runs(trained, tmp_path):
    d, model, folder, _ = trained
    assert run("--model", model, "--headless", folder, "-o", tmp_path / "batch", "-q") == 0
    assert run("--model", model, "--headless", folder / "f1.png", "-o", tmp_path / "one", "-q") == 0
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "batch" / "f1_mres_label.png")),
                                  np.array(Image.open(tmp_path / "one" / "f1_mres_label.png")))


def test_duplicate_stems_refused_before_anything_runs(trained, tmp_path, capsys):
    _, model, folder, _ = trained
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(make_scene(40, 60)[0]).save(other / "f1.png")
    out = tmp_path / "out"
    capsys.readouterr()
    assert run("--model", model, "--headless", folder, other / "f1.png", "-o", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(folder / "f1.png") in err and str(other / "f1.png") in err and "same name 'f1'" in err
    assert not out.exists()


def test_failing_image_does_not_stop_the_batch(trained, tmp_path, caplog):
    _, model, folder, _ = trained
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for n in ("f0.png", "f2.png"):
        (mixed / n).write_bytes((folder / n).read_bytes())
    (mixed / "f1.png").write_bytes(b"not a png")
    Image.fromarray(make_scene(40, 60)[0][..., 0]).save(mixed / "grey.png")  # 1 band, the model has 3
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="label_tools")
    assert run("--model", model, "--headless", mixed, "-o", out) == 1
    err = caplog.text
    failed = [line for line in err.splitlines() if "failed" in line and "images:" not in line]
    assert len(failed) == 2
    assert "f1.png" in failed[0]
    assert "grey.png" in failed[1] and "1 feature band" in failed[1] and "fitted on 3" in failed[1]
    assert "4 images: 2 done, 0 skipped, 2 failed" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs("f0") + outputs("f2"))


def test_single_bad_input_exit_2(trained, tmp_path, capsys):
    _, model, *_ = trained
    Image.fromarray(make_scene(40, 60)[0][..., 0]).save(tmp_path / "grey.png")
    capsys.readouterr()
    assert run("--model", model, "--headless", tmp_path / "grey.png", "-o", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--model {model}" in err and "has 1 feature band but the model was fitted on 3" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_class_list_mismatch_names_both(trained, tmp_path, capsys):
    _, model, folder, _ = trained
    (tmp_path / "labels.txt").write_text("land\nsea\n")
    capsys.readouterr()
    assert run("--model", model, "--headless", folder / "f0.png", "--labels", tmp_path / "labels.txt",
               "-o", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert "water, sand, grass (3)" in err and "land, sea (2)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args,match", [
    (["--headless", "x.png"], "--headless needs --model FILE"),
    (["--headless", "--model", "m.skops"], "--headless needs at least one INPUT"),
    (["a.png", "b.png", "--scribbles", "s.png"], "--scribbles belongs to one image"),  # a.png b.png alone: a collection
    (["--headless", "--model", "m.skops", "--sigmas", "1,2", "x.png"], "--sigmas is fixed by the model"),
])
def test_option_errors(args, match, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_as_model_never_runs(trained, tmp_path, capsys):
    _, _, folder, _ = trained
    marker = tmp_path / "command_ran"
    evil = tmp_path / "evil.skops"
    evil.write_bytes(pickle.dumps(_RunsCommand(marker)))
    capsys.readouterr()
    assert run("--model", evil, "--headless", folder, "-o", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a label_tools model file" in err
    assert not marker.exists() and not (tmp_path / "o").exists()
    # the same bytes given to pickle do run the command: the test would notice a loader that unpickles
    pickle.loads(evil.read_bytes())
    assert marker.exists()


def test_refit_with_scribbles_saves_grown_model(trained, tmp_path):
    d, model, folder, masks = trained
    img = np.array(Image.open(folder / "f2.png"))
    scr = scene_scribbles(masks["f2"], seed=2)
    Image.fromarray(scr).save(tmp_path / "f2_scribbles.png")
    grown = tmp_path / "grown.skops"
    assert run("--model", model, "--headless", folder / "f2.png", "--scribbles", tmp_path / "f2_scribbles.png",
               "-o", tmp_path / "o", "--save-model", grown, "-q") == 0
    base, g = load_model(str(model)), load_model(str(grown))
    assert len(g.y) > len(base.y) and g.info["images"] == base.info["images"] + [str(folder / "f2.png")]
    assert "(refitted with the scribbles)" in (tmp_path / "o" / "f2_report.txt").read_text()
    lab = np.array(Image.open(tmp_path / "o" / "f2_mres_label.png"))
    assert lab.shape == img.shape[:2] and (lab == masks["f2"]).mean() > 0.9


def test_explicit_crf_weight_overrides_the_model(trained, tmp_path):
    _, model, folder, _ = trained
    assert run("--model", model, "--headless", folder / "f0.png", "-o", tmp_path, "--crf-weight", "0", "-q") == 0
    report = (tmp_path / "f0_report.txt").read_text()
    assert "crf weight: 0.0" in report and "crf scale (-s): off" in report


def test_applied_model_adapts_unless_no_adapt(trained, tmp_path):
    _, model, folder, masks = trained
    assert run("--model", model, "--headless", folder / "f1.png", "-o", tmp_path / "a", "-q") == 0
    assert run("--model", model, "--headless", folder / "f1.png", "-o", tmp_path / "b", "--no-adapt", "-q") == 0
    adapted = (tmp_path / "a" / "f1_report.txt").read_text()
    plain = (tmp_path / "b" / "f1_report.txt").read_text()
    line = [ln for ln in adapted.splitlines() if ln.strip().startswith("adapted to this image")]
    counts = [int(v) for v in line[0].split("[")[1].split("]")[0].split(",")]
    assert len(counts) == 3 and min(counts) > 0  # pseudo-labels of every class
    assert "adapted to this image" not in plain
    for sub in ("a", "b"):
        lab = np.array(Image.open(tmp_path / sub / "f1_mres_label.png"))
        assert (lab == masks["f1"]).mean() > 0.9


def test_job_travels_small_and_runs_anywhere(trained, tmp_path):
    """What a Dask task would carry: a few hundred bytes of paths and settings, an Outcome back."""
    import pickle

    from label_tools.job import Job, run_job

    _, model, folder, masks = trained
    job = Job(image=str(folder / "f0.png"), outdir=str(tmp_path), model=str(model), skip_existing=True)
    blob = pickle.dumps(job)
    assert len(blob) < 1500
    o = run_job(pickle.loads(blob))
    assert o.status == "done" and "fit" not in o.timings and o.timings["predict"] > 0
    back = pickle.loads(pickle.dumps(o))
    assert back.outputs["label"] == str(tmp_path / "f0_mres_label.png")
    lab = np.array(Image.open(back.outputs["label"]))
    assert (lab == masks["f0"]).mean() > 0.9
    again = run_job(pickle.loads(blob))
    assert again.status == "skipped" and again.outputs == o.outputs


def test_outputs_of_save_probs_are_not_taken_for_inputs():
    from label_tools.job import is_image_file

    for name in ("a_probs.tif", "a_uncertainty.png", "a_uncertainty.tif", "a_mres_label.png", "a_scribbles.png"):
        assert not is_image_file(name), name
    assert is_image_file("a.tif") and is_image_file("probs.png")
    # read when named, so collected from folders too (a folder of DEM tiles, of Zeiss stacks)
    for name in ("dem.asc", "DEM.ASC", "cells.lsm", "cells.stk", "n45e006.hgt", "grid.sdat", "anim.gif"):
        assert is_image_file(name), name
    assert not is_image_file("notes.dat") and not is_image_file("dem.asc.aux.xml")


def test_batch_predicts_the_next_image_while_writing(trained, tmp_path, monkeypatch):
    """run_batch overlaps image i's writing with image i+1's prediction; files and order as one by one."""
    import threading
    import time

    from label_tools import job as job_mod

    _, model, folder, _ = trained
    images = [str(p) for p in sorted(folder.iterdir())]
    seq = job_mod.run_batch([job_mod.Job(i, str(tmp_path / "seq"), model=str(model)) for i in images],
                            overlap=False)
    spans, threads = {}, {}
    real_compute, real_write = job_mod._compute, job_mod._write

    def compute(j, **kw):  # a slow image and a slow disk: each step takes at least 0.3 s
        t = time.perf_counter()
        threads[os.path.basename(j.image)] = threading.current_thread().name
        out = real_compute(j, **kw)
        time.sleep(0.3)
        spans["compute", os.path.basename(j.image)] = (t, time.perf_counter())
        return out

    def write(c):
        t = time.perf_counter()
        time.sleep(0.3)
        out = real_write(c)
        spans["write", os.path.basename(c.job.image)] = (t, time.perf_counter())
        return out

    monkeypatch.setattr(job_mod, "_compute", compute)
    monkeypatch.setattr(job_mod, "_write", write)
    ovl = job_mod.run_batch([job_mod.Job(i, str(tmp_path / "ovl"), model=str(model)) for i in images])
    assert [o.image for o in ovl] == [o.image for o in seq] == images
    assert [o.status for o in ovl] == ["done"] * 3
    for prev, nxt in (("f0.png", "f1.png"), ("f1.png", "f2.png")):  # the intervals overlap
        w, c = spans["write", prev], spans["compute", nxt]
        assert c[0] < w[1] and w[0] < c[1], (prev, w, nxt, c)
    assert threads == {"f0.png": "MainThread", "f1.png": "label_tools-next-image", "f2.png": "label_tools-next-image"}
    for name in os.listdir(tmp_path / "seq"):
        a, b = tmp_path / "seq" / name, tmp_path / "ovl" / name
        if name.endswith(".mat"):  # its header holds the time of writing
            ma, mb = loadmat(a), loadmat(b)
            for key in ("preds", "class", "colors"):
                np.testing.assert_array_equal(ma[key], mb[key])
        elif not name.endswith("_report.txt"):  # the report holds timings
            assert a.read_bytes() == b.read_bytes(), name


@pytest.mark.parametrize("where", ["missing_dir", "existing_file", "parent_is_file", "is_dir"])
def test_save_model_path_checked_before_any_work(trained, tmp_path, capsys, where):
    d, *_ = trained
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine.skops").write_text("precious")
    target = {"missing_dir": tmp_path / "nodir" / "m.skops", "existing_file": tmp_path / "mine.skops",
              "parent_is_file": tmp_path / "afile" / "m.skops", "is_dir": tmp_path}[where]
    out = tmp_path / "out"
    code = run(d / "first.png", "--scribbles", d / "first_scribbles.png", "--labels", d / "classes.txt",
               "-o", out, "--save-model", target, "-q")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--save-model" in err[0], err
    assert not out.exists() or not os.listdir(out)  # nothing computed, nothing written
    assert (tmp_path / "mine.skops").read_text() == "precious"
    if where == "existing_file":  # asked for: replaced
        assert run(d / "first.png", "--scribbles", d / "first_scribbles.png", "--labels", d / "classes.txt",
                   "-o", out, "--save-model", target, "--overwrite", "-q") == 0
        assert load_model(str(target)).classes.names == tuple(NAMES)


def test_resume_finishes_a_set_killed_while_renaming(trained, tmp_path, caplog):
    """A batch run again after a kill in the middle of renaming an image's finished outputs into place
    skips that image with its whole set, instead of failing on the half already renamed."""
    import subprocess
    import sys

    from label_tools.files import STAGING_PREFIX

    _, model, folder, _ = trained
    out = tmp_path / "out"
    assert run("--model", model, "--headless", folder, "-o", out, "-q") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = out / f"{STAGING_PREFIX}f1-{dead.pid}"
    staging.mkdir()
    names = sorted(n for n in before if n.startswith("f1_"))
    for n in names[:2]:  # not yet renamed when the run was killed
        (out / n).rename(staging / n)
    (staging / ".complete").write_text("".join(n + "\n" for n in names))
    caplog.set_level("INFO", logger="label_tools")
    assert run("--model", model, "--headless", folder, "-o", out) == 0
    assert "3 images: 0 done, 3 skipped, 0 failed" in caplog.text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ascii_grid_without_its_label_geotiff_is_not_done(tmp_path):
    """A georeferenced ESRI ASCII grid (read through GDAL) whose label GeoTIFF is missing from an earlier set
    was taken as done by a --model batch (the GeoTIFF was looked for only beside .tif-named inputs) and
    skipped; an incomplete set is now treated as a GeoTIFF's is: not done, replaced only with --overwrite."""
    from label_tools.cli import main
    from label_tools.job import Job, run_job

    img, mask = make_scene(40, 64, seed=4)
    with open(tmp_path / "dem.asc", "w") as f:
        f.write("ncols 64\nnrows 40\nxllcorner 1000\nyllcorner 2000\ncellsize 5\nNODATA_value -9999\n")
        for row in img[..., 1].astype(np.float32):
            f.write(" ".join(f"{v:.1f}" for v in row) + "\n")
    Image.fromarray(scene_scribbles(mask, seed=4)).save(tmp_path / "s.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "dem.asc"), "--scribbles", str(tmp_path / "s.png"), "-o", str(out), "-q",
                 "--save-model", str(tmp_path / "m.skops")]) == 0
    geo = out / "dem_mres_geo.tif"
    assert geo.is_file()
    geo.unlink()
    o = run_job(Job(image=str(tmp_path / "dem.asc"), outdir=str(out), model=str(tmp_path / "m.skops"),
                    skip_existing=True))
    assert o.status == "failed" and "already exists; pass --overwrite" in o.message, o  # as a .tif's set is
