"""qa12: a labelling campaign run end to end as a person would; the cases where it went wrong."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, one_error_line, pipe_path, scene_scribbles
from label_tools.cli import main


@pytest.fixture
def photo(small_photo):
    return small_photo


def test_labels_and_colours_from_a_pipe_are_read_once(photo, tmp_path, capsys):
    # --labels <(printf 'water\nsand\n') was read by the option checks, then again by the job, which found the
    # drained pipe empty: "labels file '/dev/fd/63' is empty".
    img, scr, _ = photo
    labels, colors = pipe_path("water\nsand\ngrass\n"), pipe_path("navy\n#e0c080\ntab:green\n")
    try:
        assert main([str(img), "--scribbles", str(scr), "--labels", labels, "--colors", colors,
                     "-o", str(tmp_path / "o"), "-q"]) == 0, capsys.readouterr().err
    finally:
        for p in (labels, colors):
            os.close(int(p.rsplit("/", 1)[1]))
    from scipy.io import loadmat

    m = loadmat(tmp_path / "o" / "photo_mres.mat")
    assert [str(np.ravel(x)[0]) for x in np.ravel(m["labels"])] == ["water", "sand", "grass"]
    np.testing.assert_array_equal(m["colors"], [[0, 0, 128], [224, 192, 128], [44, 160, 44]])


def test_labels_from_a_pipe_with_a_model_on_a_cluster(photo, tmp_path, capsys):
    # --model M --headless --workers N --labels <(...): each worker opened '/dev/fd/63' itself, a pipe of the
    # client's process it does not have: every image failed with "labels file '/dev/fd/63' does not exist".
    # The names are checked against the model once, in this process; the workers use the model's classes.
    img, scr, _ = photo
    (tmp_path / "classes.txt").write_text("water\nsand\ngrass\n")
    assert main([str(img), "--scribbles", str(scr), "--labels", str(tmp_path / "classes.txt"), "-o",
                 str(tmp_path / "fit"), "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    (tmp_path / "batch").mkdir()
    for name in ("b.png", "c.png"):
        (tmp_path / "batch" / name).write_bytes(img.read_bytes())
    labels = pipe_path("water\nsand\ngrass\n")
    try:
        assert main(["--model", str(tmp_path / "m.skops"), "--headless", str(tmp_path / "batch"), "--labels", labels,
                     "-o", str(tmp_path / "o"), "--workers", "1", "-q"]) == 0, capsys.readouterr().err
    finally:
        os.close(int(labels.rsplit("/", 1)[1]))
    assert main(["--model", str(tmp_path / "m.skops"), "--headless", str(tmp_path / "batch" / "b.png"),
                 "-o", str(tmp_path / "here"), "-q"]) == 0  # the same model, in this process
    here = np.array(Image.open(tmp_path / "here" / "b_mres_label.png"))
    for stem in ("b", "c"):
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "o" / f"{stem}_mres_label.png")), here)
        assert f"  labels: {labels}\n" in (tmp_path / "o" / f"{stem}_report.txt").read_text()


def test_batch_labels_other_than_the_models_refused_before_any_image(photo, tmp_path, capsys):
    # a --labels naming the model's classes in another order failed every image of the batch, one by one, each
    # after its image was read (exit 1); it is the same for all of them: one line, exit 2, nothing written
    img, scr, _ = photo
    (tmp_path / "classes.txt").write_text("water\nsand\ngrass\n")
    (tmp_path / "swapped.txt").write_text("sand\nwater\ngrass\n")
    assert main([str(img), "--scribbles", str(scr), "--labels", str(tmp_path / "classes.txt"), "-o",
                 str(tmp_path / "fit"), "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    (tmp_path / "batch").mkdir()
    for name in ("b.png", "c.png"):
        (tmp_path / "batch" / name).write_bytes(img.read_bytes())
    assert main(["--model", str(tmp_path / "m.skops"), "--headless", str(tmp_path / "batch"), "--labels",
                 str(tmp_path / "swapped.txt"), "-o", str(tmp_path / "o"), "-q"]) == 2
    assert one_error_line(capsys) == (
        "label-image: error: the model's classes are water, sand, grass (3) but the labels given are sand, water, "
        "grass (3); give the model's labels file, in the same order, or leave out --labels")
    assert not (tmp_path / "o").exists()


def _own_geotiff(path, shape, names):
    """label_tools' own ``_mres_geo.tif`` of a ``shape`` image with classes ``names`` (every id present)."""
    from affine import Affine

    from label_tools.classes import Classes, default_colors
    from label_tools.io import Georef
    from label_tools.writers import write_geotiff

    h, w = shape
    prof = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32618",
                transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0))
    ids = (np.arange(h * w).reshape(h, w) % len(names)).astype(np.uint8)
    write_geotiff(str(path), ids, Georef(prof, None, prof["transform"]), Classes(tuple(names),
                                                                                  default_colors(len(names))))
    return prof


def _own_scene(tmp_path):
    """A 40 x 52 georeferenced scene ``a.tif`` and label_tools' own ``a_mres_geo.tif`` for it (classes water,
    surf, land); returns the scene's (image, mask)."""
    import rasterio

    img, mask = make_scene(40, 52)
    prof = _own_geotiff(tmp_path / "a_mres_geo.tif", (40, 52), ["water", "surf", "land"])
    with rasterio.open(tmp_path / "a.tif", "w", **{**prof, "count": 3}) as d:
        d.write(np.moveaxis(img, -1, 0))
    return img, mask


@pytest.mark.parametrize("given", [["sea", "ground"], ["land", "surf", "water"], ["a", "b", "c", "d"]])
def test_own_geotiff_init_with_other_labels_names_its_classes(tmp_path, capsys, given):
    # --init of label_tools' own _mres_geo.tif (classes water, surf, land) with another --labels: two names said
    # "holds class id 2 but there are only 2 classes" without the file's classes; the same names in another
    # order, or other names, were taken silently (every water pixel pre-labelled 'land').
    img, _ = _own_scene(tmp_path)
    (tmp_path / "given.txt").write_text("\n".join(given) + "\n")
    out = tmp_path / "o"
    assert main([str(tmp_path / "a.tif"), "--init", str(tmp_path / "a_mres_geo.tif"), "--labels",
                 str(tmp_path / "given.txt"), "--headless", "-o", str(out), "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-image: error: --init {str(tmp_path / 'a_mres_geo.tif')!r} was written with the classes water, surf, "
        f"land (ids 0..2) but --labels {str(tmp_path / 'given.txt')!r} names {', '.join(given)}: pass --labels "
        "with the file's classes in that order (new classes after them), or leave out --labels to use them")
    assert not out.exists()


def test_own_geotiff_init_with_its_classes_and_a_new_one(tmp_path, capsys):
    # the file's classes followed by a new one (a class added while correcting) are its classes: accepted
    import rasterio

    img, _ = _own_scene(tmp_path)
    (tmp_path / "plus.txt").write_text("water\nsurf\nland\nroad\n")
    assert main([str(tmp_path / "a.tif"), "--init", str(tmp_path / "a_mres_geo.tif"), "--labels",
                 str(tmp_path / "plus.txt"), "--headless", "-o", str(tmp_path / "o"), "-q"]) == 0, \
        capsys.readouterr().err
    with rasterio.open(tmp_path / "o" / "a_mres_geo.tif") as d:
        assert [d.tags(1)[f"CLASS_{i}"] for i in range(1, 5)] == ["water", "surf", "land", "road"]


def test_own_geotiff_init_with_a_model_of_other_classes(tmp_path, capsys):
    # a --model of other classes read the file's ids as its own classes, silently
    img, mask = _own_scene(tmp_path)
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    (tmp_path / "other.txt").write_text("land\nsurf\nwater\n")
    assert main([str(tmp_path / "a.tif"), "--scribbles", str(tmp_path / "scr.png"), "--labels",
                 str(tmp_path / "other.txt"), "-o", str(tmp_path / "fit"), "--save-model", str(tmp_path / "m.skops"),
                 "-q"]) == 0
    assert main([str(tmp_path / "a.tif"), "--init", str(tmp_path / "a_mres_geo.tif"), "--model",
                 str(tmp_path / "m.skops"), "--headless", "-o", str(tmp_path / "o"), "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-image: error: --init {str(tmp_path / 'a_mres_geo.tif')!r} was written with the classes water, surf, "
        f"land (ids 0..2) but the model (--model {str(tmp_path / 'm.skops')!r}) names land, surf, water: give "
        "pre-labels written with the model's classes, or leave out --model")
    assert not (tmp_path / "o").exists()


def test_stopped_while_saving_the_model_says_the_outputs_are_new(photo, tmp_path, capsys, monkeypatch):
    # SIGTERM after the outputs were in place, while --save-model was being written: "no output was left
    # half-written", though the outputs were the new ones and the model was not saved (a rerun is then refused
    # for the outputs unless --overwrite). The line now says both.
    import signal

    from label_tools.files import Interrupted
    from label_tools.model import Model

    img, scr, _ = photo
    (tmp_path / "m.skops").write_bytes(b"the earlier model")

    def stopped(self, path):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(Model, "save", stopped)
    out = tmp_path / "o"
    rc = main([str(img), "--scribbles", str(scr), "-o", str(out), "--save-model", str(tmp_path / "m.skops"),
               "--overwrite", "-q"])
    assert rc == 128 + signal.SIGTERM
    assert one_error_line(capsys) == (
        "label-image: stopped by SIGTERM; the new outputs were complete and are in place, the model was not saved "
        f"to {str(tmp_path / 'm.skops')!r}: run again with --overwrite to save it (the labels come out the same)")
    assert sorted(p.name for p in out.iterdir()) == ["photo_mres.mat", "photo_mres.png", "photo_mres_label.png",
                                                     "photo_report.txt"]
    assert (tmp_path / "m.skops").read_bytes() == b"the earlier model"


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_kill_9_during_save_probs_leaves_nothing_behind_after_a_rerun(tmp_path):
    # --save-probs streams the probabilities into a hidden temporary file in -o; a kill -9 left it there for good
    # (as large as _probs.tif: GBs for a large raster), though the next run cleans up a killed run's staging.
    import signal
    import subprocess
    import sys
    import time

    img, mask = make_scene(300, 420)
    Image.fromarray(img).save(tmp_path / "big.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    out = tmp_path / "o"
    out.mkdir()
    args = [str(tmp_path / "big.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out), "--save-probs", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from label_tools.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args])
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not any(".part" in n for n in os.listdir(out)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [n for n in os.listdir(out) if ".part" in n], "the run ended before its temporary file was made"
    assert main(args) == 0
    assert sorted(os.listdir(out)) == ["big_mres.mat", "big_mres.png", "big_mres_label.png", "big_probs.tif",
                                       "big_report.txt", "big_uncertainty.png"]


def test_a_staging_folder_of_another_machine_is_left_alone(photo, tmp_path):
    # Workers of a cluster on several machines write into one shared -o. Each run, before writing, removed every
    # staging folder whose process id did not run on its own machine: another machine's run, busy writing image
    # b, lost its staged files and its image failed. A folder made on another machine is now left alone.
    import socket

    img, scr, _ = photo
    out = tmp_path / "o"
    out.mkdir()
    pid = _dead_pid()  # on this machine no such process; on the other one it is writing
    staging = out / f".label_tools-staging-b-{pid}"
    staging.mkdir()
    (staging / ".owner").write_text(f"{pid} not-{socket.gethostname()}\n")
    (staging / "b_mres_label.png").write_bytes(b"being written")
    assert main([str(img), "--scribbles", str(scr), "-o", str(out), "-q"]) == 0
    assert (staging / "b_mres_label.png").read_bytes() == b"being written"
    # one of this machine's, its process gone (a kill -9): removed, as before
    mine = out / f".label_tools-staging-c-{pid}"
    mine.mkdir()
    (mine / ".owner").write_text(f"{pid} {socket.gethostname()}\n")
    assert main([str(img), "--scribbles", str(scr), "-o", str(out), "-q", "--overwrite"]) == 0
    assert not mine.exists() and staging.exists()
    assert not [n for n in os.listdir(out) if n.startswith(".label_tools-tmp-")]


def test_kill_9_midway_through_label_export_leaves_nothing_after_a_rerun(tmp_path):
    # label-export builds the dataset in a hidden folder beside DATASET; a kill -9 (or the out-of-memory killer)
    # left it there for good, a dataset's worth of tiles, and the next export did not remove it.
    import signal
    import subprocess
    import sys
    import time

    from label_tools.export import main as export_main

    img, mask = make_scene(300, 420)
    Image.fromarray(img).save(tmp_path / "big.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    assert main([str(tmp_path / "big.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "res"),
                 "-q"]) == 0
    where = tmp_path / "datasets"
    where.mkdir()
    args = [str(tmp_path / "res"), "-o", str(where / "ds"), "--tile", "16", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from label_tools.export import main; "
                             "sys.exit(main(sys.argv[1:]))", *args])
    def tiles_written():
        return sum(len(files) for _, _, files in os.walk(where))

    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and tiles_written() < 20:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the export ended before it was killed: {os.listdir(where)}"
    left = os.listdir(where)
    assert len(left) == 1 and left[0].startswith(".") and left[0].endswith(".part"), left
    assert export_main(args) == 0
    assert os.listdir(where) == ["ds"]


def test_export_of_a_corrected_result_says_how_to_leave_the_original_out(photo, tmp_path, capsys):
    # A result corrected with --init goes into another -o (its own label file is one of its inputs); exporting the
    # day's folder and the corrected one said "labelled twice ...; give only one of them", which folders given
    # whole cannot do. The line now names the file to move, and following it exports the corrected labels.
    import json

    from label_tools.export import main as export_main

    img, scr, mask = photo
    other = tmp_path / "other.png"  # a second photo of the day
    Image.fromarray(np.array(Image.open(img))[:, ::-1]).save(other)
    Image.fromarray(np.array(Image.open(scr))[:, ::-1]).save(tmp_path / "other_scr.png")
    out, fixed = tmp_path / "out", tmp_path / "fixed"
    for im, s in ((img, scr), (other, tmp_path / "other_scr.png")):
        assert main([str(im), "--scribbles", str(s), "-o", str(out), "-q"]) == 0
    stroke = np.zeros(mask.shape, np.uint8)
    stroke[10:14, 30:50] = 1
    Image.fromarray(stroke).save(tmp_path / "fix.png")
    assert main([str(img), "--init", str(out / "photo_mres_label.png"), "--scribbles", str(tmp_path / "fix.png"),
                 "-o", str(fixed), "-q"]) == 0
    assert export_main([str(out), str(fixed), "-o", str(tmp_path / "ds"), "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-export: error: source image {str(img)!r} is labelled twice, in {str(out / 'photo_mres_label.png')!r} "
        f"and {str(fixed / 'photo_mres_label.png')!r}; label-export takes whole folders: keep one result by moving "
        "the other's photo_mres_label.png out of its folder (the original, after correcting it with --init into "
        "another -o)")
    (tmp_path / "originals").mkdir()
    (out / "photo_mres_label.png").rename(tmp_path / "originals" / "photo_mres_label.png")
    assert export_main([str(out), str(fixed), "-o", str(tmp_path / "ds"), "--tile", "128", "-q"]) == 0
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    tile = next(t for t in info["tiles"] if t["source"] == str(img))
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "ds" / tile["label"]))[:60, :84],
                                  np.array(Image.open(fixed / "photo_mres_label.png")))


def test_own_geotiff_init_with_colours_only_keeps_its_class_names(tmp_path, capsys):
    # --init of label_tools' own _mres_geo.tif with --colors (other colours, no --labels) named the classes
    # class1..class3: the names the file was written with were dropped silently (and label-export then refused to
    # mix the result with the first one's). Its names are kept, with the colours given; a colour count other
    # than its class count is one line naming its classes.
    import rasterio

    img, _ = _own_scene(tmp_path)
    (tmp_path / "colors.txt").write_text("navy\nyellow\ngreen\n")
    out = tmp_path / "o"
    assert main([str(tmp_path / "a.tif"), "--init", str(tmp_path / "a_mres_geo.tif"), "--colors",
                 str(tmp_path / "colors.txt"), "--headless", "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    with rasterio.open(out / "a_mres_geo.tif") as d:
        assert [d.tags(1)[f"CLASS_{i}"] for i in (1, 2, 3)] == ["water", "surf", "land"]
        assert [d.colormap(1)[i][:3] for i in (1, 2, 3)] == [(0, 0, 128), (255, 255, 0), (0, 128, 0)]
    (tmp_path / "two.txt").write_text("navy\nyellow\n")
    assert main([str(tmp_path / "a.tif"), "--init", str(tmp_path / "a_mres_geo.tif"), "--colors",
                 str(tmp_path / "two.txt"), "--headless", "-o", str(tmp_path / "o2"), "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-image: error: colours file {str(tmp_path / 'two.txt')!r} has 2 colours but --init "
        f"{str(tmp_path / 'a_mres_geo.tif')!r} was written with 3 classes (water, surf, land): give one colour per "
        "class, in that order")


def test_model_with_other_colours_is_refused_not_ignored(photo, tmp_path, capsys):
    # --model M --colors C with colours other than the model's: the model's colours were used (overlay, .mat,
    # GeoTIFF colour table, and to read scribbles painted in colour) while the report said 'colors: C'.
    img, scr, _ = photo
    (tmp_path / "colors.txt").write_text("navy\n#e0c080\ntab:green\n")
    (tmp_path / "other.txt").write_text("red\nyellow\nblack\n")
    assert main([str(img), "--scribbles", str(scr), "--colors", str(tmp_path / "colors.txt"), "-o",
                 str(tmp_path / "fit"), "--save-model", str(tmp_path / "m.skops"), "-q"]) == 0
    assert main(["--model", str(tmp_path / "m.skops"), "--headless", str(img), "--colors", str(tmp_path / "other.txt"),
                 "-o", str(tmp_path / "o"), "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-image: error: --colors {str(tmp_path / 'other.txt')!r} gives #ff0000, #ffff00, #000000 but the "
        "model's classes (class1, class2, class3) have the colours #000080, #e0c080, #2ca02c; give the model's "
        "colours file, in the same order, or leave out --colors (the model's colours are used)")
    assert not (tmp_path / "o").exists()
    assert main(["--model", str(tmp_path / "m.skops"), "--headless", str(img), "--colors", str(tmp_path / "colors.txt"),
                 "-o", str(tmp_path / "o"), "-q"]) == 0


@pytest.mark.parametrize("how", ["scribbles", "init"])
def test_headless_fit_over_existing_outputs_is_refused_not_skipped(photo, tmp_path, capsys, how):
    # --headless --scribbles (new strokes) over an earlier result was 'skipped ...: outputs exist', exit 0, and no
    # --save-model written; with -q not a word. It is now refused as without --headless.
    img, scr, _ = photo
    out = tmp_path / "o"
    assert main([str(img), "--scribbles", str(scr), "-o", str(out), "-q"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    given = ["--scribbles", str(scr)] if how == "scribbles" else ["--init", str(tmp_path / "pre.png")]
    if how == "init":
        (tmp_path / "pre.png").write_bytes(before["photo_mres_label.png"])
    assert main([str(img), *given, "--headless", "-o", str(out), "--save-model", str(tmp_path / "m.skops"),
                 "-q"]) == 2
    assert one_error_line(capsys) == (
        f"label-image: error: output {str(out / 'photo_mres.png')!r} already exists; pass --overwrite to replace it "
        "or -o to write elsewhere")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and not (tmp_path / "m.skops").exists()


def test_image_scribbles_init_and_model_from_a_pipe_say_so(photo, tmp_path, capsys):
    # label-image <(curl ...) / --scribbles <(...) / --init <(...) / --model <(...): each file is checked, then read
    # again, and a pipe's second read finds nothing: 'damaged: the JPEG start-of-image marker is missing', 'the
    # PNG signature is missing', 'no such file', 'is empty (0 bytes): an interrupted copy?'. One line says it is a
    # pipe now.
    img, scr, _ = photo
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model",
                 str(tmp_path / "m.skops"), "-q"]) == 0
    init, model = tmp_path / "fit" / "photo_mres_label.png", tmp_path / "m.skops"
    cases = [("image", img, lambda p: [p, "--scribbles", str(scr)]),
             ("scribble file", scr, lambda p: [str(img), "--scribbles", p]),
             ("--init", init, lambda p: [str(img), "--init", p, "--headless"]),
             ("--model", model, lambda p: ["--model", p, "--headless", str(img)])]
    for what, path, args in cases:
        pipe = pipe_path(path.read_bytes()[:32768])  # as <(cat FILE) gives (up to a pipe's buffer)
        try:
            assert main(args(pipe) + ["-o", str(tmp_path / "o"), "-q"]) == 2
        finally:
            os.close(int(pipe.rsplit("/", 1)[1]))
        assert one_error_line(capsys) == (f"label-image: error: {what} {pipe!r} is a pipe or a device, not a file: "
                                          "it has to be read more than once; save it to a file and give that"), what
    assert not (tmp_path / "o").exists()
