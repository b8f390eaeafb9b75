"""The command run as a user runs it, then every file it wrote reopened and checked."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from conftest import make_scene, scene_scribbles
from label_tools.cli import main

NAMES = ["water", "sand", "grass"]


@pytest.fixture
def job(tmp_path):
    img, mask = make_scene(80, 130)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(img).save(d / "scene.png")
    Image.fromarray(scene_scribbles(mask)).save(d / "scene_scribbles.png")
    (d / "classes.txt").write_text("\n".join(NAMES) + "\n\n")
    (d / "colors.txt").write_text("blue\n#e0c080\ntab:green\n")
    return d, mask


def run(args, capsys=None):
    code = main([str(a) for a in args])
    return code


def files(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_all_outputs_read_back(job, tmp_path, capsys):
    d, mask = job
    out = tmp_path / "out"
    code = run([d / "scene.png", "--scribbles", d / "scene_scribbles.png", "--labels", d / "classes.txt",
                "--colors", d / "colors.txt", "-o", out, "-s", "0.5"])
    assert code == 0
    assert files(out) == ["scene_mres.mat", "scene_mres.png", "scene_mres_label.png", "scene_report.txt"]

    lab = np.array(Image.open(out / "scene_mres_label.png"))
    assert lab.dtype == np.uint8 and lab.shape == (80, 130)
    assert set(np.unique(lab)) <= {0, 1, 2} and (lab == mask).mean() > 0.93

    m = loadmat(out / "scene_mres.mat")
    assert m["sparse"].dtype == np.uint8 and m["sparse"].shape == (80, 130)
    np.testing.assert_array_equal(m["sparse"], np.array(Image.open(d / "scene_scribbles.png")))
    assert m["class"].dtype == np.uint8
    np.testing.assert_array_equal(m["class"], lab)
    assert [str(np.ravel(x)[0]) for x in np.ravel(m["labels"])] == NAMES
    np.testing.assert_array_equal(m["colors"], [[0, 0, 255], [224, 192, 128], [44, 160, 44]])
    assert m["preds"].dtype == np.float32 and m["preds"].shape == (3, 80, 130)  # -s 0.5 floored at 0.1 MP
    np.testing.assert_allclose(m["preds"].sum(0), 1, atol=1e-3)

    rep = (out / "scene_report.txt").read_text()
    fr = {}
    for line in rep.splitlines():
        for n in NAMES:
            if line.startswith(n + ": "):
                f, px = line[len(n) + 2:].split(" (")
                fr[n] = (float(f), int(px.split()[0]))
    assert sum(f for f, _ in fr.values()) == pytest.approx(1, abs=1e-5)
    assert [px for _, px in fr.values()] == [int((lab == k).sum()) for k in range(3)]
    assert "annotation time: 0.0 s" in rep and "processing time:" in rep and "scikit-learn:" in rep
    assert "crf scale (-s): 1" in rep and "grid scale: 1 (auto)" in rep

    ov = np.array(Image.open(out / "scene_mres.png"))
    assert ov.ndim == 3 and ov.shape[1] > ov.shape[0]
    assert (np.abs(ov[..., :3].astype(int) - [0, 0, 255]).sum(-1) < 10).any()  # water scribble colour drawn


def test_no_labels_file_names_from_scribbles(job, tmp_path):
    d, _ = job
    out = tmp_path / "o"
    assert run([d / "scene.png", "--scribbles", d / "scene_scribbles.png", "-o", out]) == 0
    m = loadmat(out / "scene_mres.mat")
    assert [str(np.ravel(x)[0]) for x in np.ravel(m["labels"])] == ["class1", "class2", "class3"]


def test_default_output_beside_image_and_overwrite(job):
    d, _ = job
    args = [d / "scene.png", "--scribbles", d / "scene_scribbles.png", "--labels", d / "classes.txt"]
    assert run(args) == 0
    label = d / "scene_mres_label.png"
    before = label.stat().st_mtime_ns
    assert run(args) == 2  # refuses to overwrite
    assert label.stat().st_mtime_ns == before
    assert run(args + ["--overwrite"]) == 0
    assert not [f for f in files(d) if ".part" in f]


def test_rgb_scribbles_via_colours(job, tmp_path):
    d, mask = job
    from label_tools.classes import read_colors
    from label_tools.scribbles import scribbles_to_rgba

    cols = read_colors(str(d / "colors.txt"))
    scr = np.array(Image.open(d / "scene_scribbles.png"))
    rgb = scribbles_to_rgba(scr, cols)[..., :3]
    Image.fromarray(rgb).save(d / "painted.png")
    out = tmp_path / "o"
    assert run([d / "scene.png", "--scribbles", d / "painted.png", "--labels", d / "classes.txt",
                "--colors", d / "colors.txt", "-o", out]) == 0
    np.testing.assert_array_equal(loadmat(out / "scene_mres.mat")["sparse"], scr)


BAD = {
    "missing image": (lambda d: [d / "nope.png", "--scribbles", d / "scene_scribbles.png"], "nope.png"),
    "unreadable image": (lambda d: [d / "classes.txt", "--scribbles", d / "scene_scribbles.png"], "cannot be read"),
    "scribble size": (lambda d: [d / "scene.png", "--scribbles", d / "small.png"], "but the image is 130 x 80"),
    "one class": (lambda d: [d / "scene.png", "--scribbles", d / "one.png"], "at least two classes"),
    "value without class": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png",
                                       "--labels", d / "two.txt"], "only 2 classes"),
    "count mismatch": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png",
                                  "--labels", d / "classes.txt", "--colors", d / "twocol.txt"], "2 colours"),
    "unknown colour": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png",
                                  "--labels", d / "classes.txt", "--colors", d / "badcol.txt"], "not a colour"),
    "scale too big": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png", "-s", "1.5"],
                      "-s/--scale"),
    "scale zero": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png", "-s", "0"], "-s/--scale"),
    "window small": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png", "-w", "15"],
                     "-w/--window"),
    "output not writable": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png",
                                       "-o", d / "ro" if os.geteuid() else "/proc"], "not writable"),
    "output is a file": (lambda d: [d / "scene.png", "--scribbles", d / "scene_scribbles.png",
                                    "-o", d / "classes.txt"], "is a file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(job, case, capsys):
    d, mask = job
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "small.png")
    one = np.zeros(mask.shape, np.uint8)
    one[10:20, 10:20] = 1
    Image.fromarray(one).save(d / "one.png")
    (d / "two.txt").write_text("a\nb\n")
    (d / "twocol.txt").write_text("red\nblue\n")
    (d / "badcol.txt").write_text("red\nblue\nbluish-ish\n")
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    before = files(d) + files(ro)
    args, expect = BAD[case]
    with pytest.raises(SystemExit) if case in ("scale too big", "scale zero", "window small") else _noop() as e:
        code = run(args(d))
    if e is not None:
        code = e.value.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("label-image: error:")
    assert expect in err
    assert files(d) + files(ro) == before


class _noop:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_console_script_help_is_fast_and_lists_options():
    r = subprocess.run([sys.executable, "-m", "label_tools.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ("--scribbles", "--labels", "--colors", "-w", "-s", "-o", "--overwrite", "--crf-weight", "--sigmas"):
        assert opt in r.stdout



@pytest.mark.parametrize("module", ["label_tools.cli", "label_tools.export"])
def test_help_imports_no_heavy_library(module):
    """``--help`` of both commands is instant: scikit-learn, OpenCV, pydensecrf and rasterio are
    imported only once the arguments are parsed."""
    code = ("import runpy, sys\n"
            "sys.argv = ['x', '--help']\n"
            "try:\n"
            f"    runpy.run_module({module!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('HEAVY', sorted(m for m in ('sklearn', 'cv2', 'pydensecrf', 'rasterio') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower()
    assert "HEAVY []" in r.stdout, r.stdout[-300:]

def test_no_display_says_which_option(job, monkeypatch, capsys):
    d, _ = job
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    before = files(d)
    assert run([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pass IMAGE on the command line" in err
    assert run([d / "scene.png", "--labels", d / "classes.txt"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pass --scribbles FILE" in err
    assert files(d) == before


def test_real_photo_not_in_shared_data(tmp_path):
    """scikit-image's 'coffee' photo (a real JPEG it ships), rough box scribbles: all four files read back."""
    from skimage import data

    img = data.coffee()  # 400 x 600 RGB
    Image.fromarray(img).save(tmp_path / "coffee.jpg", quality=92)
    scr = np.zeros(img.shape[:2], np.uint8)
    scr[150:250, 200:240] = 1  # the coffee in the cup
    scr[20:60, 20:560] = 2  # the table above
    scr[360:390, 20:560] = 2
    Image.fromarray(scr).save(tmp_path / "coffee_scribbles.png")
    (tmp_path / "classes.txt").write_text("coffee\ntable\n")
    out = tmp_path / "out"
    assert main([str(tmp_path / "coffee.jpg"), "--scribbles", str(tmp_path / "coffee_scribbles.png"),
                 "--labels", str(tmp_path / "classes.txt"), "-o", str(out)]) == 0
    lab = np.array(Image.open(out / "coffee_mres_label.png"))
    assert lab.shape == (400, 600) and set(np.unique(lab)) == {0, 1}
    assert (lab[scr == 1] == 0).mean() > 0.95 and (lab[scr == 2] == 1).mean() > 0.95
    m = loadmat(out / "coffee_mres.mat")
    np.testing.assert_array_equal(m["class"], lab)
    np.testing.assert_array_equal(m["sparse"], scr)
    assert np.array(Image.open(out / "coffee_mres.png")).shape[1] > 600
    assert "coffee: " in (out / "coffee_report.txt").read_text()


def test_blank_image_is_one_line_and_writes_nothing(tmp_path, capsys):
    from PIL import Image

    from label_tools.cli import main

    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    scr = np.zeros((60, 80), np.uint8)
    scr[5:8, 5:70] = 1
    scr[50:53, 5:70] = 2
    Image.fromarray(scr).save(tmp_path / "scr.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "blank.png"), "--scribbles", str(tmp_path / "scr.png"), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blank.png" in err[0] and "is blank" in err[0] and "(128, 128, 128)" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_last_line_names_the_folder_written_into(job, tmp_path, caplog):
    """``-o out/labels.png`` (a file name by mistake) makes a folder of that name: the last line says where
    the outputs went, so the folder is seen."""
    d, _ = job
    out = tmp_path / "labels.png"
    with caplog.at_level("INFO", logger="label_tools"):
        assert run([d / "scene.png", "--scribbles", d / "scene_scribbles.png", "-o", out]) == 0
    wrote = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote ")]
    assert wrote == [f"wrote scene_mres.png, scene_mres_label.png, scene_mres.mat, scene_report.txt into {out}{os.sep}"]
    assert (out / "scene_mres_label.png").is_file()
