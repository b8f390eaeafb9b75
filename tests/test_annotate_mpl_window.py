"""The matplotlib annotator (``--backend matplotlib``, the fallback where OpenCV has no windows), driven
under Xvfb with xdotool exactly as the OpenCV one: strokes for two classes in two windows, a Z that
removes one stroke, a kill midway, a resumed run that starts where the user stopped, Esc to the end.
"""
import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from label_tools import annotate as ann_mod
from label_tools import annotate_mpl
from label_tools.errors import InputError
from test_annotate_window import Driver, display  # noqa: F401  (the Xvfb fixture)

import signal


@pytest.mark.window
def test_matplotlib_annotator_kill_resume_finish(display, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    drv = Driver(display, tmp_path)
    drv.outdir = out
    try:
        _drive(drv, out)
    finally:
        if drv.proc is not None and drv.proc.poll() is None:
            drv.proc.kill()
            drv.proc.wait(10)


def _drive(drv, out):
    drv.start("--no-resume", "--backend", "matplotlib")
    assert drv.width > 100

    drv.stroke((0, 0), [(270, 50), (270, 150), (280, 250)])  # water
    drv.wait_for(lambda: (drv.scribbles() == 1).sum() > 200, "water stroke saved")
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2")
    drv.stroke((0, 0), [(20, 50), (20, 250)])  # land
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > 200, "land stroke 1 saved")
    first_land = drv.scribbles()
    drv.stroke((0, 0), [(40, 300), (60, 420)])
    drv.wait_for(lambda: (drv.scribbles() == 2).sum() > (first_land == 2).sum() + 100, "land stroke 2 saved")
    drv.key("z")
    drv.wait_for(lambda: np.array_equal(drv.scribbles(), first_land), "undo of land stroke 2 only")
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["window_index"] == 1, "window 2")
    drv.stroke((0, 460), [(280, 500), (280, 700)])
    drv.wait_for(lambda: (drv.scribbles()[:, 460:] == 1).sum() > 100, "water stroke in window 2")
    before_kill = drv.scribbles()

    drv.proc.send_signal(signal.SIGKILL)
    drv.proc.wait(10)
    np.testing.assert_array_equal(drv.scribbles(), before_kill)

    drv.start("--resume", "--backend", "matplotlib")
    assert drv.state()["window_index"] == 1  # back where the user stopped
    drv.key("Escape")
    drv.wait_for(lambda: drv.state()["class_index"] == 1, "class 2 after resume")
    drv.stroke((0, 460), [(30, 600), (30, 880)])
    drv.wait_for(lambda: (drv.scribbles()[:, 460:] == 2).sum() > 100, "land stroke in window 2")
    final = drv.scribbles()
    drv.key("Escape", 5)
    assert drv.proc.wait(180) == 0, drv.log.read_text()[-2000:]

    np.testing.assert_array_equal(drv.scribbles(), final)
    assert (final[:, :460] == 1).any() and (final[:, :460] == 2).any()
    assert (final[:, 460:] == 1).any() and (final[:, 460:] == 2).any()
    assert not final[40:70, 300:430].any()  # the undone stroke
    m = loadmat(out / "beach_mres.mat")
    np.testing.assert_array_equal(m["sparse"], final)
    lab = np.array(Image.open(out / "beach_mres_label.png"))
    assert lab.shape == (614, 920)
    assert (lab[final == 1] == 0).mean() > 0.9 and (lab[final == 2] == 1).mean() > 0.9


# ---------------------------------------------------------------------------- choosing the toolkit (headless)
def test_headless_opencv_falls_back_to_matplotlib(monkeypatch):
    monkeypatch.setattr(ann_mod, "opencv_has_windows", lambda: False)
    monkeypatch.setattr(annotate_mpl, "matplotlib_window_problem", lambda: None)
    assert ann_mod.choose_backend(None) == "matplotlib"
    assert ann_mod.choose_backend("matplotlib") == "matplotlib"
    with pytest.raises(InputError, match="--backend matplotlib") as e:
        ann_mod.choose_backend("opencv")
    assert "opencv-python-headless" in str(e.value) and "\n" not in str(e.value)


def test_opencv_preferred_when_it_has_windows(monkeypatch):
    monkeypatch.setattr(ann_mod, "opencv_has_windows", lambda: True)
    monkeypatch.setattr(annotate_mpl, "matplotlib_window_problem", lambda: None)
    assert ann_mod.choose_backend(None) == "opencv"
    assert ann_mod.choose_backend("matplotlib") == "matplotlib"


def test_neither_toolkit_one_line(monkeypatch):
    monkeypatch.setattr(ann_mod, "opencv_has_windows", lambda: False)
    monkeypatch.setattr(annotate_mpl, "matplotlib_window_problem",
                        lambda: "no GUI toolkit for it: apt install python3-tk, or pip install PyQt5")
    with pytest.raises(InputError) as e:
        ann_mod.choose_backend(None)
    msg = str(e.value)
    assert "\n" not in msg and "python3-tk" in msg and "opencv-python" in msg and "--scribbles" in msg
    with pytest.raises(InputError, match="--backend matplotlib: matplotlib cannot open a window"):
        ann_mod.choose_backend("matplotlib")


def test_matplotlib_problem_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert "DISPLAY" in annotate_mpl.matplotlib_window_problem()


def test_this_opencv_reports_its_gui():
    import cv2

    gui = [ln for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GUI:")]
    assert ann_mod.opencv_has_windows() == (bool(gui) and gui[0].split(":", 1)[1].strip() not in ("NONE", "NO"))
