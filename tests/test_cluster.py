"""Cluster runs on a real Dask cluster (``dask scheduler`` + ``dask worker`` processes on 127.0.0.1).

They must give exactly the in-process outputs, survive a worker killed with SIGKILL midway, and run the
work on the workers, not in the client.
"""
import os

import numpy as np
import pytest
import rasterio

import daskcluster
from conftest import shared

pytest.importorskip("distributed")


@pytest.fixture
def cluster(tmp_path):
    """A fresh scheduler and two workers (for a test that kills one)."""
    c = daskcluster.start(str(tmp_path / "dask-logs"), n_workers=2)
    try:
        yield c
    finally:
        daskcluster.stop(c, timeout=1.0)  # thrown away: a worker still in a frozen or sleeping task is killed


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """A scheduler and two workers shared by the tests that leave them alive."""
    c = daskcluster.start(str(tmp_path_factory.mktemp("dask-logs")), n_workers=2)
    try:
        yield c
    finally:
        daskcluster.stop(c)


def tiled_geotiff(path, rows=1100, cols=1040):
    """A georeferenced, tiled (256-px blocks), deflated GeoTIFF mirror-tiled from a real Landsat scene (no-data kept)."""
    with rasterio.open(shared("geotiff_rasterio", "images", "RGB.byte.tif")) as s:
        a = s.read()
        prof = dict(s.profile)
    a = np.concatenate([a, a[:, ::-1]], 1)
    a = np.concatenate([a, a[:, :, ::-1]], 2)
    a = np.concatenate([a, a], 1)[:, :rows, :cols]
    prof.update(height=a.shape[1], width=a.shape[2], tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **prof) as d:
        d.write(a)
    return str(path)


def brightness_scribbles(src):
    """Three classes by brightness terciles of the valid pixels, as synthetic strokes."""
    from label_tools.synthetic import synthetic_scribbles

    g = src.read_display(out_shape=src.shape).mean(-1)
    valid = src.read_valid()
    t1, t2 = np.percentile(g[valid], [33, 66])
    mask = np.where(valid, (g > t1).astype(int) + (g > t2), -1)
    return synthetic_scribbles(mask, fraction=0.01)


@pytest.fixture(scope="module")
def _scene_model_ref(tmp_path_factory):
    """A tiled GeoTIFF, a model fitted on it and its in-process prediction (built once: ~4 s)."""
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model

    path = tiled_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif")
    src = open_image(path)
    model = Model.fit(src, brightness_scribbles(src), classes=load_classes(None, None, n_classes=3))
    model._cache = None  # predict from scratch, as a saved model does
    ref = model.predict(src)
    return path, model, ref


@pytest.fixture
def scene_model_ref(_scene_model_ref):
    """The module's scene, a copy of its model (a test's run cannot change the next test's), its reference."""
    import copy

    path, model, ref = _scene_model_ref
    model = copy.deepcopy(model)
    model._cache = None
    return path, model, ref


def test_window_tasks_equal_in_process(shared_cluster, scene_model_ref, monkeypatch):
    """A raster cut into window tasks on the workers gives the in-process result bit for bit."""
    from distributed import Client

    from label_tools import blocks
    from label_tools.io import open_image

    path, model, ref = scene_model_ref
    src = open_image(path)
    monkeypatch.setattr(blocks, "TASK_PIXELS", 1024 * 1024)  # one 1024-px window per task: 4 tasks
    groups = blocks.task_groups(src.shape, task_pixels=blocks.TASK_PIXELS)
    assert len(groups) == 4 and all(len(g) == 1 for g in groups)
    seen = []
    with Client(shared_cluster.address, timeout=10, set_as_default=False) as client:
        r = blocks.predict_on_cluster(client, model, open_image(path),
                                      progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen[-1] == ("windows", 4, 4)
    assert np.array_equal(r.labels, ref.labels)
    assert np.array_equal(r.probs, ref.probs) and np.array_equal(r.crf_probs, ref.crf_probs)
    assert np.array_equal(r.display, ref.display)
    assert (r.labels[~src.read_valid()] == 255).all() and len(np.unique(r.labels)) == 4


def test_workers_import_what_tasks_need_before_the_first_task(cluster):
    """prepare_workers() has every worker import label_tools' task modules and sklearn's forest: a worker
    unpickling a forest on its event-loop thread while its task thread imported sklearn for a model file
    got a partially initialised sklearn.base, and its scheduler handler died with the ImportError."""
    from distributed import Client

    from label_tools.cluster import prepare_workers
    from label_tools.worker_setup import modules

    def loaded():
        import sys

        return sorted(m for m in ("sklearn.ensemble", "label_tools.job", "label_tools.blocks", "label_tools.pipeline")
                      if m in sys.modules)

    with Client(cluster.address, timeout=10, set_as_default=False) as c:
        before = c.run(loaded)
        assert len(before) == 2 and all(v == [] for v in before.values()), before  # fresh workers: nothing yet
        prepare_workers(c)  # as run_jobs and predict_on_cluster do before their first task
        after = c.run(loaded)
    assert len(after) == 2 and all(v == ["label_tools.blocks", "label_tools.job", "label_tools.pipeline",
                                         "sklearn.ensemble"] for v in after.values()), after
    assert "label_tools.annotate" not in modules() and "label_tools.cluster" in modules()


def test_prepare_workers_does_not_wait_for_a_frozen_worker(cluster, caplog):
    """The scheduler waits for every worker's answer to a plugin; a frozen worker (SIGSTOP) never gives one:
    prepare_workers goes on after its timeout with a warning (a run started just as a worker froze hung
    there for ever)."""
    import logging
    import signal
    import time

    from distributed import Client

    from label_tools.cluster import prepare_workers

    os.kill(cluster.workers[0].pid, signal.SIGSTOP)
    try:
        with Client(cluster.address, timeout=10, set_as_default=False) as c:
            t0 = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="label_tools"):
                prepare_workers(c, timeout=3)
            took = time.monotonic() - t0
    finally:
        os.kill(cluster.workers[0].pid, signal.SIGCONT)
    assert 3 <= took < 10, took
    assert "not every worker answered within 3 s" in caplog.text


def test_which_stalled_tasks_start_again():
    """Started again: a task running, on a silent worker, or in a state that moves no further on its own
    (or with no answer from the scheduler); left alone: tasks waiting their turn."""
    from label_tools.cluster import _describe, _stuck

    w = "tcp://10.0.0.5:40000"
    states = {"run": ("processing", w, "running"), "silent": ("processing", w, "silent worker"),
              "behind": ("processing", w, ""), "queued": ("queued", "", ""), "inputs": ("waiting", "", ""),
              "noworker": ("no-worker", "", ""), "unreported": ("memory", "", ""), "erred": ("erred", "", ""),
              "blocked": ("waiting", "", "inputs stalled")}
    assert {k for k in [*states, "forgotten"] if _stuck(states, k)} == {"run", "silent", "unreported", "erred",
                                                                           "blocked", "forgotten"}
    assert _stuck(None, "behind")
    assert _describe({"a": ("processing", w, "running"), "b": ("processing", w, "running"), "c": ("queued", "", "")}) \
        == f"scheduler: 2 processing on {w} (running), 1 queued"
    assert _describe(None) == "the scheduler did not answer"


def test_stalled_task_started_again(cluster, caplog):
    """A task that makes no progress (a worker frozen inside it) is started again once nothing has finished
    for the stall time; the first attempt to finish is used, a task's own error is its value, and the
    scheduler's view of the stall is logged."""
    import logging
    import time

    from distributed import Client

    from label_tools.cluster import first_results

    def task(i, attempt):  # defined here: pickled by value, the workers cannot import this module
        import time

        if i == 1 and attempt == 0:
            time.sleep(120)  # frozen
        if i == 2:
            raise ValueError("a bad image")
        return 10 * i, attempt

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        submitted = []

        def submit(i, attempt):
            submitted.append((i, attempt))
            return client.submit(task, i, attempt, key=f"stall-test-{i}-{attempt}", pure=False)

        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="label_tools"):
            got = {i: (value, fut.key) for i, value, fut in first_results(client, submit, 3, what="test", stall=3)}
        took = time.monotonic() - t0
    assert took < 60
    assert got[0] == ((0, 0), "stall-test-0-0")
    assert got[1] == ((10, 1), "stall-test-1-1")  # the second attempt's result
    assert isinstance(got[2][0], ValueError) and str(got[2][0]) == "a bad image"
    assert sorted(submitted) == [(0, 0), (1, 0), (1, 1), (2, 0)]  # only the stalled task again
    line = [r.getMessage() for r in caplog.records if "no test task finished" in r.getMessage()]
    assert len(line) == 1 and "in 3 s (scheduler: 1 processing on tcp://127.0.0.1:" in line[0], line
    assert line[0].endswith("(running)); starting 1 again under new keys"), line


class _HeldFuture:
    """A stand-in for a distributed.Future whose task finished: its result comes after ``delay`` s, or, held by a
    frozen worker (``delay`` None), never (``result`` times out)."""

    def __init__(self, key, value, delay):
        self.key, self.value, self.delay, self.status = key, value, delay, "finished"

    def add_done_callback(self, fn):
        fn(self)

    def result(self, timeout=None):
        import time

        if self.delay is None:
            time.sleep(timeout)
            raise TimeoutError(f"{self.key}: no answer")
        time.sleep(self.delay)
        return self.value

    def release(self):
        pass


def test_results_held_by_a_frozen_worker_are_started_again_after_one_stall_not_one_each():
    """Finished tasks whose results sit on a frozen worker: each fetch waits the stall time. They were fetched
    one after another, so N of them held the run up N x the stall time (5 min each by default) before the
    stall path started them again; now they are waited for side by side: one stall time in all."""
    import time

    from label_tools.cluster import first_results

    class NoScheduler:
        def run_on_scheduler(self, *a, **k):
            raise OSError("no scheduler here")

    n = 4
    held = [_HeldFuture(f"t-{i}-0", None, None) for i in range(n)]  # all four on the frozen worker
    t0 = time.monotonic()
    got = {i: (v, f.key) for i, v, f in first_results(NoScheduler(), lambda i, a: _HeldFuture(f"t-{i}-{a}", i, 0.01),
                                                     n, what="test", first=held, stall=0.5)}
    took = time.monotonic() - t0
    assert got == {i: (i, f"t-{i}-1") for i in range(n)}
    assert took < 1.5, took  # was n x 0.5 s = 2 s of fetches, then the stall


def test_window_tasks_survive_a_frozen_worker(cluster, scene_model_ref, monkeypatch, caplog):
    """The worker that computed the grid stage freezes (SIGSTOP) as the window results start to be collected:
    its windows stall, are started again on a grid computed again elsewhere, and the labels still equal the
    in-process ones."""
    import logging
    import signal
    import threading

    from distributed import Client

    from label_tools import blocks
    from label_tools import cluster as cluster_mod
    from label_tools.io import open_image

    path, model, ref = scene_model_ref
    monkeypatch.setattr(blocks, "TASK_PIXELS", 256 * 256)  # many small window tasks
    monkeypatch.setenv("LABEL_TOOLS_STALL_SECONDS", "5")
    frozen = []
    collect = cluster_mod.first_results

    def freezing(client, submit, n, *, what, **kw):
        # frozen before the first window result is fetched (freezing once results came back raced with the
        # results fetched side by side: all could be in before the freeze, and nothing stalled); the windows
        # run where the grid result is, so results are held by the frozen worker
        if what == "window" and not frozen:
            grid_key = next(k for k in client.who_has() if str(k).startswith("label_grid-"))
            holder = client.who_has()[grid_key][0]
            pid = client.run(os.getpid, workers=[holder])[holder]
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        return collect(client, submit, n, what=what, **kw)

    monkeypatch.setattr(cluster_mod, "first_results", freezing)  # predict_on_cluster imports it when called

    got = {}
    try:
        with Client(cluster.address, timeout=10, set_as_default=False) as client:
            with caplog.at_level(logging.WARNING, logger="label_tools"):
                # in a thread: a run that hangs fails the test within a bound (and the fixture stops the cluster)
                t = threading.Thread(target=lambda: got.update(r=blocks.predict_on_cluster(
                    client, model, open_image(path))), daemon=True)
                t.start()
                t.join(180)
                assert not t.is_alive(), "the window tasks did not end within 180 s of a worker freezing"
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert frozen and np.array_equal(got["r"].labels, ref.labels)
    assert any("no window task finished in 5 s" in rec.getMessage() for rec in caplog.records), caplog.text


# ------------------------------------------------------------------------------------- the command line
PHOTOS = 3


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A model saved from a real coastal photo's scribbles; a folder of real photos and a tiled GeoTIFF,
    labelled once in-process (the reference every cluster run must equal)."""
    import cv2

    from label_tools.cli import main
    from label_tools.synthetic import synthetic_scribbles

    d = tmp_path_factory.mktemp("batch")
    names = sorted(os.listdir(shared("obx_coastal_aerial", "images")))[:PHOTOS]
    mask = cv2.imread(shared("obx_coastal_aerial", "masks", names[0][:-4] + ".png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(d / "scribbles.png"), synthetic_scribbles(np.where(mask == 255, -1, mask).astype(int),
                                                              fraction=0.01))
    model = d / "coast.skops"
    first = shared("obx_coastal_aerial", "images", names[0])
    assert main([first, "--scribbles", str(d / "scribbles.png"), "-o", str(d / "train"), "--save-model", str(model),
                 "-q"]) == 0
    folder = d / "frames"
    folder.mkdir()
    for n in names:
        os.symlink(shared("obx_coastal_aerial", "images", n), folder / n)
    tiled_geotiff(folder / "scene.tif")
    ref = d / "ref"
    assert main(["--model", str(model), "--headless", str(folder), "-o", str(ref), "-q"]) == 0
    assert len(os.listdir(ref)) == 4 * PHOTOS + 5 + 1  # 4 files per photo; 5 + the .aux.xml for the GeoTIFF
    return model, folder, ref


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def cluster_run(model, folder, out, *extra, env=None):
    """label-image on the cluster in a child process (the client), with small window tasks."""
    import subprocess
    import sys

    # PYTHONFAULTHANDLER: a client that hangs prints every thread's stack to its log on SIGABRT (wait_client);
    # a stall of 30 s (not 5 min) starts stalled tasks again, and logs the scheduler's view of them
    env = dict(os.environ, LABEL_TOOLS_WINDOWED_MP="1", LABEL_TOOLS_TASK_MP="1", PYTHONFAULTHANDLER="1",
               LABEL_TOOLS_STALL_SECONDS="30", **(env or {}))
    exe = os.path.join(os.path.dirname(sys.executable), "label-image")
    log = open(str(out) + ".log", "w+")
    p = subprocess.Popen([exe, "--model", str(model), "--headless", str(folder), "-o", str(out), "-v", "-v",
                          *extra], stdout=log, stderr=subprocess.STDOUT, env=env)
    return p, log


def wait_client(p, log, timeout, cluster=None):
    """The client's exit code; if it has not ended within ``timeout`` s, abort it (its threads' stacks go
    to its log) and fail with the end of its log and of the cluster's logs, so a hang says where it was."""
    import signal
    import subprocess

    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGABRT)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=20)
        log.flush()
        text = read(log.name)
        stacks = text[text.rfind("Fatal Python error"):] if "Fatal Python error" in text else "(no stacks)"
        noise = ("env", "GDAL", "PROJ", "Nodata", "Dataset", "Sharing flag", "filesystem handler", "boto3")
        said = [ln for ln in text.splitlines() if ln.startswith("label-image:") and not any(w in ln for w in noise)]
        logs = cluster.logs() if cluster is not None else ""
        pytest.fail(f"label-image did not end within {timeout} s; what it said last:\n" + "\n".join(said[-40:])
                    + f"\nits threads:\n{stacks[:12000]}\n{logs}")


def stop_client(p, log):
    """Kill a client still running (a failed check) and reap it, then close its log."""
    if p.poll() is None:
        p.kill()
        p.wait(timeout=20)
    log.close()


def forgotten_tasks(address) -> dict:
    """Tasks the scheduler ran and forgot, by key prefix (label_grid, label_windows, ...)."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as c:
        return c.run_on_scheduler(lambda dask_scheduler: {
            k: tp.state_counts["forgotten"] for k, tp in dask_scheduler.task_prefixes.items()})


def assert_same_outputs(ref, out):
    """Every file of the in-process run, equal: images byte for byte, the MAT file's bytes after its
    timestamped header, the GeoTIFF's pixels and georeferencing, the report apart from its timings."""
    from scipy.io import loadmat

    names = sorted(os.listdir(ref))
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == names
    for n in names:
        a, b = (read(os.path.join(d, n), "rb") for d in (ref, out))
        if n.endswith(".mat"):
            assert a[128:] == b[128:], n  # the 116-byte text header holds the creation time
            ma, mb = loadmat(os.path.join(ref, n)), loadmat(os.path.join(out, n))
            assert all(np.array_equal(ma[k], mb[k]) for k in ("class", "preds", "sparse", "colors")), n
        elif n.endswith("_report.txt"):
            keep = [lambda t: [ln for ln in t.decode().splitlines() if "time" not in ln and "timings" not in ln]]
            assert keep[0](a) == keep[0](b), n
        elif n.endswith(".tif"):
            with rasterio.open(os.path.join(ref, n)) as x, rasterio.open(os.path.join(out, n)) as y:
                assert np.array_equal(x.read(), y.read()) and x.profile == y.profile, n
        else:
            assert a == b, n


def test_worker_killed_midway_run_finishes_identical(cluster, batch, tmp_path):
    """SIGKILL one of two workers once the first image has landed: Dask runs its tasks again on the
    other, the run ends with exit 0 and every output equals the in-process run's."""
    import re
    import time

    model, folder, ref = batch
    out = tmp_path / "out"
    p, log = cluster_run(model, folder, out, "--scheduler", cluster.address)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(n.endswith("_mres_label.png") for n in os.listdir(out))):
            assert p.poll() is None and time.monotonic() < deadline, read(log.name)
            time.sleep(0.05)
        landed = sum(n.endswith("_report.txt") for n in os.listdir(out))
        assert p.poll() is None and landed < PHOTOS + 1  # really midway
        cluster.kill_worker(0)
        assert wait_client(p, log, 180, cluster) == 0, read(log.name)
    finally:
        stop_client(p, log)
    text = read(log.name)
    # an image whose worker died after its outputs landed is found complete when run again: skipped
    done = re.search(r"(\d+) images: (\d+) done, (\d+) skipped, 0 failed", text)
    assert done and int(done[1]) == PHOTOS + 1 and int(done[2]) + int(done[3]) == PHOTOS + 1, text[-2000:]
    assert cluster.n_workers() == 1
    assert_same_outputs(ref, out)


def test_tasks_run_on_the_workers(shared_cluster, batch, tmp_path):
    """Every image task ran in a worker process (its pid), never in the client; the scheduler counted them."""
    import re

    from distributed import Client

    model, folder, ref = batch
    out = tmp_path / "out"

    def forgotten():
        return forgotten_tasks(shared_cluster.address)

    before = forgotten()
    p, log = cluster_run(model, folder, out, "--scheduler", shared_cluster.address)
    try:
        assert wait_client(p, log, 180, shared_cluster) == 0, read(log.name)
    finally:
        stop_client(p, log)
    text = read(log.name)
    assert "\r" not in text  # stderr is a log file here: no progress bar redrawn into it
    ran = dict(re.findall(r"label-image: (\S+) ran on worker tcp://127\.0\.0\.1:\d+ \(host \S+, pid (\d+)\)", text))
    assert sorted(ran) == sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    pids = {int(v) for v in ran.values()}
    assert pids <= shared_cluster.worker_pids and p.pid not in pids
    with Client(shared_cluster.address, timeout=10, set_as_default=False) as c:
        assert len(c.scheduler_info()["workers"]) == 2  # the client only disconnected: the cluster runs on
    counts = {k: v - before.get(k, 0) for k, v in forgotten().items()}
    assert counts["label_image"] == PHOTOS and counts["label_grid"] == 1 and counts["label_windows"] == 4, counts
    assert_same_outputs(ref, out)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a photo's _probs.tif
def test_probabilities_and_uncertainty_identical_on_workers(shared_cluster, batch, tmp_path):
    """--save-probs on the cluster writes the in-process run's probabilities and uncertainty maps, byte
    for byte, as README promises (a worker runs on 1 thread, the command line on every core; the
    thread-count dependence found there is tested in test_crf_reach): the photos as one task each, and
    the GeoTIFF cut into window tasks, whose calibration and map terms the client makes from the grid
    stage and whose windows make their probabilities and map (before, refused in one line)."""
    from label_tools.cli import main

    model, folder, _ = batch
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["--model", str(model), "--headless", str(folder), "-o", str(ref), "-q", "--save-probs"]) == 0
    assert sum(n.endswith("_uncertainty.png") for n in os.listdir(ref)) == PHOTOS + 1
    assert "scene_probs.tif" in os.listdir(ref) and "scene_uncertainty.tif" in os.listdir(ref)
    before = forgotten_tasks(shared_cluster.address)
    p, log = cluster_run(model, folder, out, "--scheduler", shared_cluster.address, "--save-probs")
    try:
        assert wait_client(p, log, 180, shared_cluster) == 0, read(log.name)
    finally:
        stop_client(p, log)
    counts = {k: v - before.get(k, 0) for k, v in forgotten_tasks(shared_cluster.address).items()}
    # the GeoTIFF went through the grid task, the maps made on the client and four window tasks
    assert counts["label_grid"] == 1 and counts["label_maps"] == 1 and counts["label_windows"] == 4, counts
    assert_same_outputs(ref, out)


def test_client_killed_midway_same_command_resumes(shared_cluster, batch, tmp_path):
    """SIGKILL the client (label-image) once an image has landed: no image has part of its outputs
    (a set is all there or absent, unless caught renaming into place, which the next run finishes);
    the same command again skips the finished images, runs the rest, and every output equals the
    in-process run's; the cluster is left running."""
    import re
    import signal
    import time

    from distributed import Client

    from label_tools.files import STAGING_PREFIX

    model, folder, ref = batch
    out = tmp_path / "out"
    p, log = cluster_run(model, folder, out, "--scheduler", shared_cluster.address)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(n.endswith("_mres_label.png") for n in os.listdir(out))):
            assert p.poll() is None and time.monotonic() < deadline, read(log.name)
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_client(p, log)
    # let the tasks the workers were running when the client died end (Dask cannot stop a running task)
    with Client(shared_cluster.address, timeout=10, set_as_default=False) as c:
        deadline = time.monotonic() + 120
        while c.run_on_scheduler(lambda dask_scheduler: sum(len(ws.processing)
                                                            for ws in dask_scheduler.workers.values())):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    stems = sorted({n.split("_mres")[0].split("_report")[0] for n in os.listdir(ref)})
    finished = []
    for st in stems:
        want = sorted(n for n in os.listdir(ref) if n.startswith(st + "_") or n.startswith(st + "."))
        have = sorted(n for n in os.listdir(out) if n in want)
        renaming = any(n.startswith(STAGING_PREFIX + st + "-") for n in os.listdir(out))
        assert have in ([], want) or renaming, (st, have)
        if have == want:
            finished.append(st)
    assert 1 <= len(finished) <= len(stems) - 1, finished  # really midway
    p2, log2 = cluster_run(model, folder, out, "--scheduler", shared_cluster.address)
    try:
        assert wait_client(p2, log2, 180, shared_cluster) == 0, read(log2.name)
    finally:
        stop_client(p2, log2)
    text = read(log2.name)
    done = re.search(r"(\d+) images: (\d+) done, (\d+) skipped, 0 failed", text)
    assert done and int(done[1]) == len(stems) and int(done[3]) >= len(finished), text[-2000:]
    assert int(done[2]) == len(stems) - int(done[3])
    assert_same_outputs(ref, out)
    assert not any(n.startswith(STAGING_PREFIX) for n in os.listdir(out))
    with Client(shared_cluster.address, timeout=10, set_as_default=False) as c:
        assert len(c.scheduler_info()["workers"]) == 2


def test_tasks_use_the_workers_thread_count(shared_cluster):
    """A task on a `dask worker --nthreads 1` runs its forest blocks and OpenCV filters on one thread
    (two single-threaded workers on two cores do not crowd each other out); this process keeps all cores."""
    import cv2
    from distributed import Client

    from label_tools import threads

    def in_task():  # defined here: sent by value (this test module is not importable on the workers)
        import cv2

        from label_tools import threads

        threads.match_dask_worker()
        return threads.budget(), cv2.getNumThreads()

    with Client(shared_cluster.address, timeout=10, set_as_default=False) as c:
        futures = [c.submit(in_task, pure=False, workers=[w]) for w in c.scheduler_info()["workers"]]
        got = {f.key: f.result(timeout=60) for f in futures}
    assert got and all(v == (1, 1) for v in got.values()), got
    threads.match_dask_worker()  # not in a worker: nothing changes
    assert threads.budget() == (os.cpu_count() or 1)
    assert cv2.getNumThreads() >= 1


def test_local_cluster_workers_keep_adaptive_malloc_and_no_profiler():
    """--workers N: the workers' environment lacks Dask's MALLOC_TRIM_THRESHOLD_ (it makes every large numpy
    temporary a fresh mapping: +18 % CPU on 4 MP photos) and their sampling profiler is off."""
    from label_tools.cluster import connect

    def inside(dask_worker):  # sent by value
        import os

        import dask

        return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.worker.profile.enabled"),
                os.environ.get("OMP_NUM_THREADS"))

    with connect(workers=2) as c:
        got = c.run(inside)
    assert len(got) == 2 and set(got.values()) == {(None, False, "1")}, got


# ------------------------------------------------------------------------------------- bad input
def test_bad_cluster_options_one_line_exit_2(tmp_path, capsys):
    """Unreachable scheduler (fast), --workers 0, --scheduler without --model/--headless, both options."""
    import time

    from label_tools.cli import main

    img = tmp_path / "a.png"
    img.write_bytes(b"")  # never read: every check below comes first
    port = daskcluster.free_port()  # nothing listens there
    cases = [
        (["--model", "m.skops", "--headless", str(img), "--scheduler", f"tcp://127.0.0.1:{port}"],
         f"--scheduler: no Dask scheduler reachable at 'tcp://127.0.0.1:{port}' (Connection refused)"),
        (["--model", "m.skops", "--headless", str(img), "--workers", "0"],
         "argument --workers: expected a whole number of worker processes >= 1, got '0'"),
        ([str(img), "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler runs saved models on a cluster: it needs "
         "--model FILE and --headless"),
        (["--model", "m.skops", str(img), "--workers", "2"], "--workers runs saved models on a cluster"),
        (["--model", "m.skops", "--headless", str(img), "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
         "--scheduler and --workers exclude each other"),
    ]
    for argv, message in cases:
        t0 = time.monotonic()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own errors
            rc = e.code
        assert rc == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert time.monotonic() - t0 < 5
    assert sorted(os.listdir(tmp_path)) == ["a.png"]



def test_dask_warnings_stay_out_of_the_users_log(caplog):
    """Dask's config gives distributed.client a level of its own (WARNING): connecting must quiet it too
    (a lost worker printed "Couldn't gather N keys, rescheduling ..." beside our own line)."""
    import logging

    from label_tools import cluster
    from label_tools.errors import OptionError

    import distributed  # noqa: F401  (applies Dask's logging config)

    port = daskcluster.free_port()  # nothing listens there: connect fails fast, after quieting the logs
    with pytest.raises(OptionError):
        with cluster.connect(scheduler=f"tcp://127.0.0.1:{port}"):
            pass
    caplog.set_level(logging.INFO, logger="label_tools")
    logging.getLogger("distributed.client").warning("Couldn't gather 3 keys, rescheduling ('a', 'b')")
    logging.getLogger("distributed.worker").warning("a worker's warning")
    logging.getLogger("label_tools").warning("our own line")
    assert [r.getMessage() for r in caplog.records] == ["our own line"]


def test_connect_to_a_port_where_nothing_listens_says_so_at_once():
    """cluster.connect (the library call, not only the CLI's check) to a refused port: Dask's connect retried it
    for its whole timeout and then said 'Timed out ... after 3 s'; now one line naming the refusal, at once."""
    import time

    from label_tools import cluster
    from label_tools.errors import OptionError

    import distributed  # noqa: F401  (its import is not what is timed)

    port = daskcluster.free_port()
    t0 = time.monotonic()
    with pytest.raises(OptionError, match=rf"^--scheduler: no Dask scheduler reachable at 'tcp://127.0.0.1:{port}' "
                                          r"\(Connection refused\); start one with `dask scheduler`"):
        with cluster.connect(scheduler=f"tcp://127.0.0.1:{port}"):
            pass
    assert time.monotonic() - t0 < 1.5
