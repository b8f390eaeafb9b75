"""In-process vs a local Dask cluster (``--workers N``) for headless batches, and the per-task overhead.

Each configuration runs as a fresh ``label-image --model M --headless ... --overwrite -q`` process and
its whole wall time is measured (the local cluster's start and stop included). Run with ``nice`` on a
shared machine and repeat.

  python benchmarks/cluster.py photos --n 16 --mp 4 --workers 2 --repeat 2
        16 photos of 4 MP, mirror-tiled from the real coastal photos of ../shared/data
  python benchmarks/cluster.py large --side 20000 --workers 2 [--save-probs]
        one 400 MP GeoTIFF mirror-tiled from rasterio's RGB.byte.tif (see bench.py's make_large_raster)
  python benchmarks/cluster.py overhead --tasks 200
        round trip of an empty task on a 2-worker local cluster; bytes a window task sends back
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
EXE = os.path.join(os.path.dirname(sys.executable), "label-image")


def timed(cmd, env=None):
    """-> (wall s, CPU s) of a command; CPU = user + system of it and every process it waited for
    (the local cluster's scheduler and workers included)."""
    import resource

    def cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    sec, cpus = time.perf_counter() - t0, cpu() - c0
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return sec, cpus


def compare(model, inputs, work, workers, repeat, label, options=()):
    """Wall seconds of in-process and --workers runs, alternated so load drifts hit both alike (``options``:
    more label-image options for both, e.g. ``--save-probs``)."""
    rows = {"in-process": [], f"--workers {workers}": []}
    cpu = {k: [] for k in rows}
    for _ in range(repeat):
        for name, extra in (("in-process", []), (f"--workers {workers}", ["--workers", str(workers)])):
            out = os.path.join(work, "out_" + name.strip("-").replace(" ", ""))
            wall, cpus = timed([EXE, "--model", model, "--headless", *inputs, "-o", out, "--overwrite", "-q",
                                *options, *extra])
            rows[name].append(wall)
            cpu[name].append(cpus)
            print(f"  {label} {name}: {wall:.1f} s wall, {cpus:.1f} s CPU ({cpus / wall:.2f} cores busy)", flush=True)
    a, b = rows["in-process"], rows[f"--workers {workers}"]
    print(f"\n| {label} | in-process s (runs) | --workers {workers} s (runs) | ratio (median) |\n|---|---|---|---|")
    print(f"| {label} | {statistics.median(a):.1f} ({', '.join(f'{v:.1f}' for v in a)}) | "
          f"{statistics.median(b):.1f} ({', '.join(f'{v:.1f}' for v in b)}) | "
          f"{statistics.median(a) / statistics.median(b):.2f} |")
    print("CPU s (user + system, all processes): " + ", ".join(
        f"{k} {statistics.median(v):.1f}" for k, v in cpu.items()))
    same = identical(os.path.join(work, "out_in-process"), os.path.join(work, f"out_workers{workers}"))
    print(f"label PNGs identical in both runs: {same}")
    if "--save-probs" in options:
        same = identical(os.path.join(work, "out_in-process"), os.path.join(work, f"out_workers{workers}"),
                         ends=("_uncertainty.png", "_probs.tif"))
        print(f"probability GeoTIFFs and uncertainty PNGs identical in both runs: {same}")


def identical(a, b, ends=("_label.png",)):
    """The files of ``a`` ending in ``ends`` equal those of ``b``: PNGs byte for byte, GeoTIFFs pixel for pixel
    (their tiles land in the file in the order the windows come back)."""
    import rasterio

    def same(n):
        x, y = os.path.join(a, n), os.path.join(b, n)
        if n.endswith(".tif"):
            with rasterio.open(x) as dx, rasterio.open(y) as dy:
                return dx.profile == dy.profile and np.array_equal(dx.read(), dy.read())
        return open(x, "rb").read() == open(y, "rb").read()

    names = sorted(n for n in os.listdir(a) if n.endswith(ends))
    return bool(names) and all(same(n) for n in names)


def fit_model(image, mask_or_scr, work, *, is_scribbles=False):
    import cv2

    from label_tools.synthetic import synthetic_scribbles

    scr_path = os.path.join(work, "train_scribbles.png")
    scr = mask_or_scr if is_scribbles else synthetic_scribbles(mask_or_scr, fraction=0.01)
    cv2.imwrite(scr_path, scr)
    model = os.path.join(work, "model.skops")
    timed([EXE, image, "--scribbles", scr_path, "-o", os.path.join(work, "train"), "--save-model", model,
           "--overwrite", "-q"])
    return model


def photos(args):
    import cv2

    from bench import tile_to

    work = os.path.join(args.work, "photos")
    folder = os.path.join(work, "in")
    os.makedirs(folder, exist_ok=True)
    imgs = sorted(glob.glob(os.path.join(args.data, "obx_coastal_aerial", "images", "*.jpg")))
    first_mask = None
    for i in range(args.n):
        p = os.path.join(folder, f"photo{i:02d}.jpg")
        src = imgs[i % len(imgs)]
        a = cv2.imread(src)
        h = int(round((args.mp * 1e6 * a.shape[0] / a.shape[1]) ** 0.5))
        w = int(round(args.mp * 1e6 / h))
        if i // len(imgs) % 2:
            a = a[:, ::-1]  # the second round of frames mirrored: 16 distinct images from 8
        big = tile_to(a, (h, w))
        if not os.path.exists(p):
            cv2.imwrite(p, big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if i == 0:
            m = cv2.imread(src.replace("/images/", "/masks/")[:-4] + ".png", cv2.IMREAD_UNCHANGED)
            first_mask = tile_to(np.where(m == 255, -1, m).astype(int), (h, w))
    print(f"{args.n} photos of {args.mp:g} MP in {folder}")
    model = fit_model(os.path.join(folder, "photo00.jpg"), first_mask, work)
    compare(model, [folder], work, args.workers, args.repeat, f"{args.n} photos x {args.mp:g} MP")


def large(args):
    import cv2
    import rasterio
    from rasterio.windows import Window

    from bench import make_large_raster

    work = os.path.join(args.work, "large")
    os.makedirs(work, exist_ok=True)
    tif, scr = os.path.join(work, f"big{args.side}.tif"), os.path.join(work, f"big{args.side}_scribbles.png")
    if not os.path.exists(tif):
        t0 = time.perf_counter()
        make_large_raster(tif, scr, args.side, args.data)
        print(f"made {tif} ({os.path.getsize(tif) / 2**20:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    crop = os.path.join(work, "crop.tif")  # the model is fitted on a 2048 x 2048 piece with its scribbles
    with rasterio.open(tif) as ds:
        prof = dict(ds.profile)
        prof.update(width=2048, height=2048)
        with rasterio.open(crop, "w", **prof) as d:
            d.write(ds.read(window=Window(0, 0, 2048, 2048)))
    s = cv2.imread(scr, cv2.IMREAD_UNCHANGED)[:2048, :2048]
    model = fit_model(crop, s, work, is_scribbles=True)
    compare(model, [tif], work, args.workers, args.repeat, f"{args.side} x {args.side} x 3 GeoTIFF",
            ["--save-probs"] if args.save_probs else [])


def _noop(x):
    return x


def overhead(args):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c, \
            Client(c, set_as_default=False) as client:
        client.submit(_noop, 0, pure=False).result()  # warm
        t0 = time.perf_counter()
        for i in range(args.tasks):
            client.submit(_noop, i, pure=False).result()
        serial = (time.perf_counter() - t0) / args.tasks
        t0 = time.perf_counter()
        futs = [client.submit(_noop, i, pure=False) for i in range(args.tasks)]
        client.gather(futs)
        bulk = (time.perf_counter() - t0) / args.tasks
    print(f"\nempty task, one at a time (submit -> result): {serial * 1e3:.1f} ms; "
          f"{args.tasks} submitted together: {bulk * 1e3:.2f} ms per task")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["photos", "large", "overhead"])
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    p.add_argument("--work", default="/tmp/label_tools_cluster_bench")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--mp", type=float, default=4)
    p.add_argument("--side", type=int, default=20000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--save-probs", action="store_true", help="large: both runs also write probabilities and the "
                   "uncertainty map (their files compared byte for byte)")
    args = p.parse_args()
    {"photos": photos, "large": large, "overhead": overhead}[args.what](args)


if __name__ == "__main__":
    main()
