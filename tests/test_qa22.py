"""qa22: the cluster options as a user meets them (real `dask scheduler`/`dask worker` processes, bad values,
a scheduler gone mid-run) and error lines naming files as the user typed them."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import one_error_line
from label_tools.cli import main


# ------------------------------------------------------------------ scribble files named as typed
def _painted(tmp_path, small_photo):
    """The photo's strokes painted in colours of no class (#c80a64 ...), and a colours file of pure red/green/blue."""
    _, scr, _ = small_photo
    s = np.array(Image.open(scr))
    pal = np.array([[0, 0, 0], [200, 10, 100], [10, 200, 100], [100, 10, 200]], np.uint8)
    Image.fromarray(pal[s]).save(tmp_path / "painted.png")
    (tmp_path / "cols.txt").write_text("#ff0000\n#00ff00\n#0000ff\n")


@pytest.mark.parametrize("case", ["colours not found", "colours not found, --labels", "value 255", "one class"])
def test_scribble_file_errors_name_the_file_as_typed(small_photo, tmp_path, monkeypatch, capsys, case):
    # A painted scribble file none of whose colours is a --colors colour, a class-number file holding 255 and
    # strokes of one class were named by their absolute path ('/home/.../painted.png'), while every other
    # error names a file as the user typed it ('painted.png'), as the 'is in colour' line just before does.
    _painted(tmp_path, small_photo)
    s = np.array(Image.open(small_photo[1]))
    Image.fromarray(np.where(s == 3, 255, s).astype(np.uint8)).save(tmp_path / "ids255.png")
    Image.fromarray(np.where(s == 1, 1, 0).astype(np.uint8)).save(tmp_path / "one.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    scr, extra = {"colours not found": ("painted.png", ["--colors", "cols.txt"]),
                  "colours not found, --labels": ("painted.png", ["--labels", "names.txt", "--colors", "cols.txt"]),
                  "value 255": ("ids255.png", []), "one class": ("one.png", [])}[case]
    assert main(["photo.png", "--scribbles", scr, *extra, "-o", "out", "-q"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"label-image: error: scribble file {scr!r}"), line
    assert str(tmp_path) not in line
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
