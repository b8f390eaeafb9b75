"""The ``.mat`` a run writes, read back by GNU Octave (the free MATLAB) as a MATLAB user would."""
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from conftest import make_scene, scene_scribbles
from label_tools.cli import main


def test_mat_reads_back_in_octave_as_in_scipy(tmp_path):
    octave = shutil.which("octave-cli") or shutil.which("octave")
    if octave is None:
        if os.environ.get("CI"):
            pytest.fail("GNU Octave is not installed (CI installs it with apt-get)")
        pytest.skip("GNU Octave not installed")
    img, mask = make_scene(90, 140)
    ip, sp, lp = tmp_path / "scene.png", tmp_path / "scr.png", tmp_path / "classes.txt"
    Image.fromarray(img).save(ip)
    Image.fromarray(scene_scribbles(mask)).save(sp)
    lp.write_text("water\nsand\ngrass\n")
    assert main([str(ip), "--scribbles", str(sp), "--labels", str(lp), "-o", str(tmp_path / "o"), "--save-probs",
                 "-q"]) == 0
    mat = tmp_path / "o" / "scene_mres.mat"
    py = loadmat(mat)
    script = (f"s = load('{mat}'); "
              "printf('%s\\n', strjoin(sort(fieldnames(s))', ',')); "
              "printf('%d ', size(s.class)); printf('%s\\n', class(s.class)); "
              "printf('%d ', size(s.preds)); printf('%s\\n', class(s.preds)); "
              "printf('%.6f\\n', sum(double(s.class(:)))); printf('%.4f\\n', sum(double(s.preds(:)))); "
              "printf('%s\\n', strjoin(cellfun(@(c) strtrim(c), cellstr(s.labels), 'UniformOutput', false), ','));"
              "[~, k] = max(s.probs, [], 1); printf('%d\\n', sum(squeeze(k)(:) - 1 ~= double(s.class(:))));")
    out = subprocess.run([octave, "--no-gui", "--quiet", "--eval", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    keys = sorted(k for k in py if not k.startswith("__"))
    assert lines[0] == ",".join(keys)
    assert lines[1].split() == [str(v) for v in py["class"].shape] + ["uint8"]
    assert lines[2].split() == [str(v) for v in py["preds"].shape] + ["single"]
    assert float(lines[3]) == pytest.approx(float(py["class"].astype(np.float64).sum()))
    assert float(lines[4]) == pytest.approx(float(py["preds"].astype(np.float64).sum()), rel=1e-6)
    assert lines[5] == "water,sand,grass"
    assert lines[6] == "0"  # in Octave too, the labels are the argmax of the saved probabilities
