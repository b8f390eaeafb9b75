"""qa12: a labelling campaign run end to end as a person would; the cases where it went wrong."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.cli import main


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photo(tmp_path):
    """A small non-square photo with its scribbles (values 1..3) and mask (ids 0..2)."""
    img, mask = make_scene(60, 84)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    return tmp_path / "photo.png", tmp_path / "scr.png", mask


def _pipe(text: str) -> str:
    """A path to a pipe holding ``text``, as bash's ``<(printf ...)`` gives (/dev/fd/N): it can be read once."""
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    return f"/dev/fd/{r}"


def test_labels_and_colours_from_a_pipe_are_read_once(photo, tmp_path, capsys):
    # --labels <(printf 'water\nsand\n') was read by the option checks, then again by the job, which found the
    # drained pipe empty: "labels file '/dev/fd/63' is empty".
    img, scr, _ = photo
    labels, colors = _pipe("water\nsand\ngrass\n"), _pipe("navy\n#e0c080\ntab:green\n")
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
