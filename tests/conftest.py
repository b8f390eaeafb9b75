import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LABEL_TOOLS_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
SAMPLE = os.path.join(ROOT, "sample_data")


def shared(*parts):
    """Path into the shared real-data folder; skips the test when it is not there."""
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"shared data not found: {p} (set LABEL_TOOLS_SHARED_DATA)")
    return p


def make_scene(h=96, w=140, seed=0):
    """Non-square RGB test scene: three regions of distinct colour and texture + their mask.

    Returns (image uint8 (h, w, 3), mask int (h, w) with ids 0..2).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), int)
    mask[xx > w * 0.55] = 1
    mask[((yy - h * 0.3) / 0.5) ** 2 + (xx - w * 0.25) ** 2 < (min(h, w) * 0.2) ** 2] = 2  # a flat ellipse
    base = np.array([[40, 90, 160], [190, 170, 110], [60, 150, 60]], float)
    img = base[mask] + rng.normal(0, 18, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def scene_scribbles(mask, seed=0):
    from label_tools.synthetic import synthetic_scribbles

    return synthetic_scribbles(mask, fraction=0.03, seed=seed)


@pytest.fixture
def scene():
    return make_scene()


def one_error_line(capsys) -> str:
    """The one non-blank line a failed command wrote to stderr (fails when it wrote more or none)."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def pipe_path(data) -> str:
    """A path to a pipe holding ``data`` (str or bytes, at most a pipe's buffer), as bash's ``<(cat FILE)`` gives
    (/dev/fd/N): it can be read once."""
    r, w = os.pipe()
    os.write(w, data if isinstance(data, bytes) else data.encode())
    os.close(w)
    return f"/dev/fd/{r}"


@pytest.fixture
def small_photo(tmp_path):
    """A small non-square photo (60 x 84) with its scribbles (values 1..3) and mask (ids 0..2): paths, paths, array."""
    from PIL import Image

    img, mask = make_scene(60, 84)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    return tmp_path / "photo.png", tmp_path / "scr.png", mask


def start_xvfb(*extra):
    """(process, display ``":N"``) of a private Xvfb of 1600 x 1000 (``extra``: more Xvfb arguments, e.g. ``-dpi``).

    Xvfb picks a free display number itself and writes it to a pipe once it accepts clients (-displayfd): no
    race with another test run on this machine choosing the same number. Raises AssertionError if it does not
    start within 60 s (the process is killed).
    """
    import select
    import subprocess
    import time

    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1600x1000x24", *extra, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    number = b""
    deadline = time.monotonic() + 60
    while not number.endswith(b"\n") and time.monotonic() < deadline and proc.poll() is None:
        if select.select([r], [], [], 0.5)[0]:
            chunk = os.read(r, 16)
            if not chunk:
                break
            number += chunk
    os.close(r)
    if not number.strip().isdigit():
        proc.kill()
        raise AssertionError(f"Xvfb did not start (-displayfd gave {number!r})")
    return proc, f":{int(number)}"
