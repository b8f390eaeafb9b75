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


# ------------------------------------------------------------------ --scheduler addresses
@pytest.mark.parametrize("address, says", [
    ("http://127.0.0.1:{port}/status", ": an http:// address is a dashboard's, not the scheduler's"),
    ("inproc://x", ": inproc:// addresses exist inside one process only"),
    ("tcp://:{port}", ""),
    ("", ""),
    ("tcp://127.0.0.1:99999", ": the port must be a number 1-65535, got '99999'"),
    ("tcp://127.0.0.1:{port}/", ": the port must be a number 1-65535, got '{port}/'"),
    ("tcp://::1:{port}", ": an IPv6 address goes in brackets, as tcp://[::1]:8786"),
    (" tcp://127.0.0.1:{port}", ": unknown scheme ' tcp://' (Dask knows tcp://, tls://, ws://, wss://, ucx://)"),
])
def test_a_malformed_scheduler_address_is_said_as_such(tmp_path, capsys, address, says):
    # Dask's own words were off the mark: 'no Dask scheduler answers at 'http://...' within 3 s (unknown address
    # scheme 'http' (known schemes: [...]))' for a dashboard's address, 'not enough values to unpack (expected 3,
    # got 1)' for inproc://, 'Name or service not known' for an empty host, 'Connection refused' for port 99999
    import time

    import daskcluster

    port = daskcluster.free_port()  # nothing listens there
    address, says = address.format(port=port), says.format(port=port)
    img = tmp_path / "a.png"
    img.write_bytes(b"")  # never read: the address is checked first
    t0 = time.monotonic()
    assert main(["--model", "m.skops", "--headless", str(img), "-o", str(tmp_path / "out"),
                 "--scheduler", address, "-q"]) == 2
    assert one_error_line(capsys) == (
        "label-image: error: --scheduler: expected the scheduler's address such as tcp://10.0.0.5:8786 (the one "
        f"`dask scheduler` prints), got {address!r}{says}")
    assert time.monotonic() - t0 < 2
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_ucx_address_without_its_package_says_what_is_missing(tmp_path, capsys):
    # was: "no Dask scheduler answers at 'ucx://...' within 3 s (Can't instantiate abstract class UCXConnector with
    # abstract method connect)"
    import importlib.util

    if importlib.util.find_spec("distributed_ucxx") is not None:
        pytest.skip("distributed-ucxx is installed here")
    assert main(["--model", "m.skops", "--headless", str(tmp_path), "--scheduler", "ucx://127.0.0.1:8786",
                 "-q"]) == 2
    assert one_error_line(capsys) == (
        "label-image: error: --scheduler: 'ucx://127.0.0.1:8786': ucx:// needs Dask's UCX support (distributed-ucxx), "
        "which is not installed here; install it or give the scheduler's tcp:// address")


def test_a_server_that_is_no_scheduler_makes_no_output_folder(small_photo, tmp_path, capsys, monkeypatch):
    # README: a scheduler that does not answer is one line, exit 2, "nothing written". Only the TCP connect was
    # checked before the batch made its output folders; the Dask handshake came after, so a port where something
    # else listens (a dashboard, a silent host) left an empty -o folder behind.
    import socket

    from label_tools import cluster

    img, scr, _ = small_photo
    model = tmp_path / "m.skops"
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(model),
                 "-q"]) == 0
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # connections complete in the backlog; nothing ever answers
    address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
    try:
        assert main(["--model", str(model), "--headless", str(img), "-o", str(tmp_path / "out"),
                     "--scheduler", address, "-q"]) == 2
    finally:
        silent.close()
    line = one_error_line(capsys)
    assert line.startswith(f"label-image: error: --scheduler: no Dask scheduler answers at {address!r} within 0.5 s"), line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ real `dask scheduler` / `dask worker` processes
@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` process (tests/daskcluster.py)."""
    pytest.importorskip("distributed")
    import daskcluster

    c = daskcluster.start(str(tmp_path_factory.mktemp("dask-logs")), n_workers=1)
    try:
        yield c
    finally:
        daskcluster.stop(c)


@pytest.fixture
def tenth():
    """The shared Landsat scene's tenth-size copy (skips without the shared data, before any cluster starts)."""
    from conftest import shared

    return shared("geotiff_rasterio", "images", "rgb-byte-tenth.tif")


def test_window_progress_bar_moves_and_dask_advice_stays_out_with_save_probs(tenth, real_cluster, tmp_path, monkeypatch, capsys):
    # README: on a terminal, a bar over the windows of a large raster. It stood at '0window' to the end: run_job
    # handed the cluster's predict its own progress (None), which replaced the bar's. With --save-probs, each
    # window's pixel counts were unpacked into `total`, the number of windows the bar was then given.
    import warnings

    import dask
    import tqdm as tqdm_mod

    from label_tools import blocks, cluster, upsample
    from label_tools.io import open_image
    from test_cluster import brightness_scribbles, tiled_geotiff

    Image.fromarray(brightness_scribbles(open_image(tenth))).save(tmp_path / "scr.png")
    model = tmp_path / "m.skops"
    assert main([tenth, "--scribbles", str(tmp_path / "scr.png"), "-o", str(tmp_path / "fit"), "--save-model",
                 str(model), "-q"]) == 0
    scene = tiled_geotiff(tmp_path / "scene.tif", rows=520, cols=500)
    monkeypatch.setattr(blocks, "WINDOWED_PIXELS", 1e5)
    monkeypatch.setattr(upsample, "LABEL_TILE", 256)  # four 256-px windows (1024 px in a real run)
    monkeypatch.setattr(cluster, "_tty", lambda: True)
    seen = []

    class Bar(tqdm_mod.tqdm):
        def refresh(self, *a, **k):
            if self.unit == "window":
                seen.append((self.n, self.total))
            return super().refresh(*a, **k)

    monkeypatch.setattr(tqdm_mod, "tqdm", Bar)
    capsys.readouterr()
    # Dask warns of task graphs above 10 MB: the maps of a 36 MP raster (11.4 MB) printed its seven-line advice
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1kB"}), \
            warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(["--model", str(model), "--headless", scene, "-o", str(tmp_path / "out"), "--save-probs",
                     "--scheduler", real_cluster.address]) == 0, capsys.readouterr().err
    assert not [w for w in warned if "large graph" in str(w.message)]
    assert seen and seen[-1] == (6, 6), seen
    assert all(t is None or type(t) is int for _, t in seen), seen
    assert {"scene_probs.tif", "scene_uncertainty.tif"} <= set(os.listdir(tmp_path / "out"))


def test_scheduler_gone_mid_run_is_one_line_and_keeps_what_landed(small_photo, tmp_path, monkeypatch, capsys):
    # The scheduler killed mid-run: every image left was reported 'failed .../photo3.png: FutureCancelledError:
    # label_image-...-3 cancelled for reason: scheduler-connection-lost.' (one line each), then 30 lines of Dask's
    # traceback of its cancelled reconnection, 'N images: 1 done, 0 skipped, 7 failed', exit 1. Now one line naming
    # --scheduler, what became of the images and how to go on; exit 2.
    import re
    import shutil
    import signal

    import daskcluster
    from label_tools import cli

    pytest.importorskip("distributed")
    img, scr, _ = small_photo
    model = tmp_path / "m.skops"
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(model),
                 "-q"]) == 0
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        shutil.copy(img, folder / f"p{i}.png")
    c = daskcluster.start(str(tmp_path / "dask-logs"), n_workers=1)
    report = cli._report_outcome

    def first_then_kill(o, quiet=False):
        report(o, quiet)
        if c.scheduler.poll() is None:
            os.kill(c.scheduler.pid, signal.SIGKILL)  # the scheduler's machine gone
            c.scheduler.wait(timeout=10)

    monkeypatch.setattr(cli, "_report_outcome", first_then_kill)
    out = tmp_path / "out"
    try:
        capsys.readouterr()
        rc = main(["--model", str(model), "--headless", str(folder), "-o", str(out), "--scheduler", c.address, "-q"])
    finally:
        daskcluster.stop(c)
    line = one_error_line(capsys)
    assert rc == 2, line
    m = re.fullmatch(
        rf"label-image: error: --scheduler: lost the connection to the Dask scheduler at {re.escape(repr(c.address))} "
        r"mid-run \(it stopped, or the network failed\); (\d) of 8 images labelled so far, their outputs kept \(a "
        r"worker still on an image may yet write its outputs\); run the same command again once it is back: "
        r"labelled images are skipped", line)
    assert m and 1 <= int(m[1]) < 8, line
    names = os.listdir(out)
    done = {n[:-len("_mres_label.png")] for n in names if n.endswith("_mres_label.png")}
    assert int(m[1]) <= len(done) < 8
    for stem in done:  # each image's outputs: the whole set or nothing
        assert {f"{stem}{s}" for s in ("_mres.png", "_mres_label.png", "_mres.mat", "_report.txt")} <= set(names)



@pytest.mark.parametrize("value, expected", [
    ("1.5", "argument --workers: expected a whole number of worker processes >= 1, got '1.5'"),
    ("99999", "argument --workers: 99999 worker processes on this machine's"),
])
def test_workers_whole_number_and_at_most_four_per_core(tmp_path, capsys, value, expected):
    """--workers 1.5 said 'expected a number >= 1' (1.5 is one); --workers 99999 tried to start that many."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(photo)
    with pytest.raises(SystemExit) as e:
        main([str(photo), "--headless", "--model", str(tmp_path / "m.skops"), "--workers", value,
              "-o", str(tmp_path / "out")])
    assert e.value.code == 2
    line = one_error_line(capsys)
    assert expected in line
    if value == "99999":
        assert "--scheduler" in line and f"expected at most {max(4, 4 * (os.cpu_count() or 1))}" in line
    assert not (tmp_path / "out").exists()
