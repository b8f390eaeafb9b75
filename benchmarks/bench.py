#!/usr/bin/env python
"""Quality, speed and memory of label-image beside naive baselines, in one run on this machine.

Baselines (each in its own process, like the CLI):
  rf      skimage ``multiscale_basic_features`` (sigma 1..16) + scikit-learn
          ``RandomForestClassifier(n_estimators=50, max_depth=10)`` at full resolution, no CRF
  rf_crf  the same forest's probabilities -> pydensecrf at full resolution (Gaussian sxy 3 compat 3,
          bilateral sxy 80 srgb 13 compat 10, 5 iterations)
  cli     ``label-image IMAGE --scribbles S -o DIR`` with default settings
  cli_rgb the same with ``--feature-bands 4,3,2`` on 13-band Sentinel-2 GeoTIFFs (true colour only)
  cli_s02 the same with ``-s 0.2`` (the CRF on the image shrunk 5 times)
  cli_probs the same with ``--save-probs`` (probability GeoTIFF, uncertainty map, their .mat grids)

Quality: mean IoU (classes present in the mask; 255 ignored) from synthetic scribbles
(``label_tools.synthetic``, ~1 % of pixels). Speed/memory: whole-process wall time and peak RSS
(``wait4``) on a real image mirror-tiled to 1, 4 and 12 megapixels.

  python benchmarks/bench.py quality --data ../shared/data --max-images 4
  python benchmarks/bench.py speed --data ../shared/data --sizes 1,4,12
  python benchmarks/bench.py speed --dataset he_nuclei_miccai --sizes native,100 --methods cli --tile-scribbles
  python benchmarks/bench.py large --side 20000        # GeoTIFF: annotator opening time, peak RSS
  python benchmarks/bench.py preview --window 500      # annotator preview latency
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = ["camvid_segnet", "drosophila_vnc_sstem", "grabcut", "he_nuclei_miccai", "isbi2012_em_membranes",
            "obx_coastal_aerial", "s2_slovenia_lulc"]


# ----------------------------------------------------------------------------- data
def read_any(path):
    if path.lower().endswith((".tif", ".tiff")):
        import rasterio

        with rasterio.open(path) as ds:
            return np.moveaxis(ds.read(), 0, -1)
    from PIL import Image

    return np.array(Image.open(path))


def mask_classes(path):
    """Mask -> int class ids, -1 = ignore (255); instance / {0,255} masks -> background/foreground."""
    m = read_any(path)
    m = m[..., 0] if m.ndim == 3 else m
    vals = np.unique(m)
    if len(vals) > 32 or set(vals.tolist()) <= {0, 255} and len(vals) == 2:
        return (m > 0).astype(np.int32)
    out = m.astype(np.int32)
    out[m == 255] = -1
    return out


def cases(data, name, max_images):
    imgs = sorted(glob.glob(os.path.join(data, name, "images", "*")))[:max_images]
    out = []
    for ip in imgs:
        st = os.path.splitext(os.path.basename(ip))[0]
        mp = glob.glob(os.path.join(data, name, "masks", st + ".*"))
        if mp:
            out.append((ip, mp[0]))
    return out


def miou(pred, mask):
    v = mask >= 0
    ious = []
    for c in np.unique(mask[v]):
        p, g = (pred == c) & v, mask == c
        ious.append((p & g).sum() / max((p | g).sum(), 1))
    return float(np.mean(ious))


# ----------------------------------------------------------------------------- one method in a fresh process
WORKER = r'''
import sys, time, json, numpy as np
method, img_path, scr_path, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, {here!r})
from bench import read_any, baseline_input
img = baseline_input(read_any(img_path))
scr = read_any(scr_path)
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier
t0 = time.perf_counter()
f = multiscale_basic_features(img, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                              channel_axis=-1 if img.ndim == 3 else None)
m = scr > 0
clf = RandomForestClassifier(n_estimators=50, max_depth=10, n_jobs=-1, random_state=0).fit(f[m], scr[m])
H, W = scr.shape
p = clf.predict_proba(f.reshape(-1, f.shape[-1]))
del f
sm = np.zeros((n, H * W), np.float32)
sm[clf.classes_ - 1] = p.T
del p
if method == "rf_crf":
    import pydensecrf.densecrf as dcrf
    rgb = img if img.ndim == 3 else np.dstack([img] * 3)
    rgb = np.ascontiguousarray((rgb[..., :3] * 255).clip(0, 255).astype(np.uint8)) if rgb.dtype != np.uint8 else np.ascontiguousarray(rgb[..., :3])
    d = dcrf.DenseCRF2D(W, H, n)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(sm, 1e-6, None)), dtype=np.float32))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=rgb, compat=10)
    sm = np.array(d.inference(5), np.float32)
np.save(out, sm.argmax(0).reshape(H, W).astype(np.uint8))
'''


def baseline_input(a):
    """What the baselines see: uint8 images as they are; other dtypes robustly scaled to [0, 1] float."""
    if a.dtype == np.uint8:
        return a[..., :3] if a.ndim == 3 and a.shape[2] == 4 else a
    a = a.astype(np.float32)
    lo, hi = np.percentile(a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.ravel(), (0.5, 99.5), axis=0)
    return np.clip((a - lo) / np.maximum(hi - lo, 1e-9), 0, 1).astype(np.float32)


#: CPU seconds (user + system) of the last command run_process ran (a loaded machine inflates wall time, not this)
LAST = {"cpu": float("nan")}


def run_process(cmd, timeout=3600):
    """-> (returncode, wall seconds, peak RSS MB, stderr tail) of a command run in a fresh process.

    Peak RSS is the child's own high-water mark (VmHWM), polled from /proc: ``wait4``'s ru_maxrss
    would also count this (large) benchmark process, which the child is forked from.
    """
    import threading

    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def poll():
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    err = p.stderr.read()
    p.wait(timeout)
    sec = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    th.join()
    return p.returncode, sec, peak[0] / 1024, err.decode(errors="replace")[-800:]


def run_method(method, img_path, scr_path, n, work):
    if method.startswith("cli"):
        out = os.path.join(work, "cli_out")
        cmd = [os.path.join(os.path.dirname(sys.executable), "label-image"), img_path, "--scribbles", scr_path,
               "-o", out, "--overwrite", "-q"]
        if method == "cli_rgb" and img_path.lower().endswith((".tif", ".tiff")):  # Sentinel-2: B04, B03, B02 only
            cmd += ["--feature-bands", "4,3,2", "--bands", "4,3,2"]
        elif method == "cli_s02":
            cmd += ["-s", "0.2"]
        elif method == "cli_probs":  # with the probability GeoTIFF, uncertainty map and their .mat grids
            cmd += ["--save-probs"]
        code, sec, mb, err = run_process(cmd)
        if code:
            raise RuntimeError(err)
        st = os.path.splitext(os.path.basename(img_path))[0]
        return read_any(os.path.join(out, st + "_mres_label.png")), sec, mb
    out = os.path.join(work, method + ".npy")
    script = os.path.join(work, "worker.py")
    with open(script, "w") as f:
        f.write(WORKER.format(here=HERE))
    code, sec, mb, err = run_process([sys.executable, script, method, img_path, scr_path, str(n), out])
    if code:
        raise RuntimeError(err)
    return np.load(out), sec, mb


def write_png(path, a):
    from PIL import Image

    Image.fromarray(a).save(path)


# ----------------------------------------------------------------------------- commands
def quality(args):
    from label_tools.synthetic import synthetic_scribbles

    methods = args.methods.split(",")
    rows = {}
    for name in args.only.split(",") if args.only else DATASETS:
        scores = {m: [] for m in methods}
        for ip, mp in cases(args.data, name, args.max_images):
            mask = mask_classes(mp)
            n = int(mask.max()) + 1
            scr = synthetic_scribbles(mask, fraction=args.fraction, seed=args.seed)
            with tempfile.TemporaryDirectory() as work:
                sp = os.path.join(work, "scribbles.png")
                write_png(sp, scr)
                for m in methods:
                    pred, sec, mb = run_method(m, ip, sp, n, work)
                    scores[m].append(miou(pred.astype(np.int32), mask))
            print(name, os.path.basename(ip), {m: round(v[-1], 3) for m, v in scores.items()}, flush=True)
        rows[name] = {m: float(np.mean(v)) for m, v in scores.items() if v}
    print("\n| dataset | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
    for name, r in rows.items():
        best = max([r.get(m, 0) for m in methods if not m.startswith("cli")] or [0])
        cells = [f"{r[m]:.3f}" + (" ✓" if m == "cli" and r[m] >= best else "") for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


def tile_to(a, shape):
    """Mirror-tile ``a`` to ``shape`` (H, W): same object scale, more objects."""
    h, w = shape
    out = a
    while out.shape[0] < h or out.shape[1] < w:
        out = np.concatenate([out, out[::-1]], 0) if out.shape[0] < h else out
        out = np.concatenate([out, out[:, ::-1]], 1) if out.shape[1] < w else out
    return np.ascontiguousarray(out[:h, :w])


def speed(args):
    from label_tools.synthetic import synthetic_scribbles

    ip, mp = cases(args.data, args.dataset, args.image + 1)[args.image]
    img, mask = baseline_input(read_any(ip)), mask_classes(mp)
    n = int(mask.max()) + 1
    print(f"image: {ip} ({img.shape[1]} x {img.shape[0]}) mirror-tiled"
          + (", with its native-size scribbles mirror-tiled along" if args.tile_scribbles else ""))
    print("\n| MP | method | wall s | CPU s | peak RSS MB | mIoU |\n|---|---|---|---|---|---|")
    native_scr = synthetic_scribbles(mask, fraction=args.fraction, seed=args.seed) if args.tile_scribbles else None
    for size in args.sizes.split(","):
        if size == "native":
            h, w = img.shape[:2]
            mpx = h * w / 1e6
        else:
            mpx = float(size)
            h = int(round((mpx * 1e6 * img.shape[0] / img.shape[1]) ** 0.5))
            w = int(round(mpx * 1e6 / h))
        im, mk = tile_to(img, (h, w)), tile_to(mask, (h, w))
        if native_scr is not None:
            scr = tile_to(native_scr, (h, w))
        else:
            scr = synthetic_scribbles(mk, fraction=args.fraction, seed=args.seed)
        with tempfile.TemporaryDirectory() as work:
            ipath, spath = os.path.join(work, "img.png"), os.path.join(work, "scribbles.png")
            write_png(ipath, im)
            write_png(spath, scr)
            for m in args.methods.split(","):
                pred, sec, mb = run_method(m, ipath, spath, n, work)
                print(f"| {mpx:g} | {m} | {sec:.1f} | {LAST['cpu']:.1f} | {mb:.0f} | {miou(pred.astype(np.int32), mk):.3f} |",
                      flush=True)


def make_large_raster(path, scribble_path, side, data):
    """A side x side 3-band uint8 GeoTIFF (tiled, deflate, nodata 0, EPSG:32618) mirror-tiled from
    rasterio's RGB.byte.tif, with scribbles mirror-tiled from synthetic strokes on it."""
    import cv2
    import rasterio
    from rasterio.windows import Window

    from label_tools.synthetic import synthetic_scribbles

    srcp = os.path.join(data, "geotiff_rasterio", "images", "RGB.byte.tif")
    with rasterio.open(srcp) as ds:
        a = ds.read()
        valid = ds.dataset_mask() > 0
        prof = ds.profile
    g = a.mean(0)
    mask = np.where(valid, (g > np.percentile(g[valid], 40)).astype(int), -1)
    scr = synthetic_scribbles(mask, fraction=0.01)
    h0, w0 = g.shape
    rows = np.array([(r // h0) % 2 and h0 - 1 - r % h0 or r % h0 for r in range(side)])
    cols = np.array([(c // w0) % 2 and w0 - 1 - c % w0 or c % w0 for c in range(side)])
    prof.update(width=side, height=side, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                BIGTIFF="IF_SAFER")
    with rasterio.open(path, "w", **prof) as dst:
        for r in range(0, side, 2048):
            rr = rows[r: r + 2048]
            dst.write(a[:, rr][:, :, cols], window=Window(0, r, side, len(rr)))
    big = scr[rows][:, cols]
    cv2.imwrite(scribble_path, big)


def large(args):
    """Large GeoTIFF: time to open the annotator (under the X display given, or a private Xvfb) and
    whole-process time and peak RSS of a headless run."""
    import shutil

    work = args.work
    os.makedirs(work, exist_ok=True)
    tif, scr = os.path.join(work, f"big{args.side}.tif"), os.path.join(work, f"big{args.side}_scribbles.png")
    if not os.path.exists(tif):
        t0 = time.perf_counter()
        make_large_raster(tif, scr, args.side, args.data)
        print(f"made {tif} ({os.path.getsize(tif) / 2**20:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    exe = os.path.join(os.path.dirname(sys.executable), "label-image")
    out = os.path.join(work, "out")
    code, sec, mb, err = run_process([exe, tif, "--scribbles", scr, "-o", out, "--overwrite", "-q"])
    if code:
        raise RuntimeError(err)
    print(f"| {args.side} x {args.side} x 3 GeoTIFF, headless | {sec:.1f} s | {mb:.0f} MB |")
    display, xvfb = os.environ.get("DISPLAY"), None
    if not display and shutil.which("Xvfb"):
        display = ":77"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24"], stderr=subprocess.DEVNULL)
        time.sleep(1)
    if not display or not shutil.which("xdotool"):
        print("no display/xdotool: annotator opening time not measured")
        return
    env = dict(os.environ, DISPLAY=display)
    out2 = os.path.join(work, "out_annotate")
    shutil.rmtree(out2, ignore_errors=True)
    labels = os.path.join(HERE, "..", "sample_data", "classes.txt")
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, tif, "--labels", labels, "--colors", labels.replace("classes", "colors"), "-o", out2,
                          "--no-resume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import cv2

    # mapped: the window exists on the screen; painted: it shows its picture (a mapped window can stay black
    # while its first window is read, which is what the person waits for)
    opened = painted = None
    shot = os.path.join(work, "annotate_window.ppm")
    while time.perf_counter() - t0 < 120 and p.poll() is None:
        r = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "label_tools annotate"], env=env,
                           capture_output=True, text=True)
        wid = r.stdout.split()
        if wid and opened is None:
            opened = time.perf_counter() - t0
        if wid and shutil.which("import"):
            subprocess.run(["import", "-window", wid[0], shot], env=env, capture_output=True)
            if os.path.exists(shot) and cv2.imread(shot) is not None and cv2.imread(shot).mean() > 15:
                painted = time.perf_counter() - t0
                break
        elif wid:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    if xvfb:
        xvfb.terminate()
    print(f"| {args.side} x {args.side} x 3 GeoTIFF, annotator window mapped | "
          f"{'%.1f s' % opened if opened else 'did not open'} | |")
    print(f"| {args.side} x {args.side} x 3 GeoTIFF, annotator window painted | "
          f"{'%.1f s' % painted if painted else 'not measured (no ImageMagick import) or not painted'} | |")


def preview(args):
    """Latency of the annotator's preview (P key) for a w x w window of a real photo."""
    from label_tools.io import open_image
    from label_tools.annotate_preview import Preview
    from label_tools.synthetic import synthetic_scribbles

    ip, mp = cases(args.data, "obx_coastal_aerial", 1)[0]
    src = open_image(ip)
    scr = synthetic_scribbles(mask_classes(mp), fraction=args.fraction, seed=args.seed)
    pv = Preview(src, 3)
    win = (0, min(args.window, src.height), 0, min(args.window, src.width))
    times = []
    for _ in range(args.repeat + 1):
        t0 = time.perf_counter()
        lab = pv.labels(scr, win)
        times.append(time.perf_counter() - t0)
    cold, warm = times[0], times[1:]
    print(f"preview of a {win[1]} x {win[3]} window: median {np.median(warm):.3f} s, max {max(warm):.3f} s over "
          f"{args.repeat} runs; first call {cold:.3f} s (imports scikit-learn, which the annotator loads in the "
          f"background while you draw) (labels {None if lab is None else lab.shape})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--max-images", type=int, default=4)
    q.add_argument("--only", default="")
    q.add_argument("--methods", default="rf,rf_crf,cli")
    q.add_argument("--json")
    s = sub.add_parser("speed")
    s.add_argument("--sizes", default="1,4,12")
    s.add_argument("--methods", default="rf,cli")
    s.add_argument("--dataset", default="obx_coastal_aerial")
    s.add_argument("--image", type=int, default=0, help="index of the image in the dataset (sorted)")
    s.add_argument("--tile-scribbles", action="store_true",
                   help="mirror-tile the native image's scribbles (fast at 100 MP) instead of making new ones")
    for p in (q, s):
        p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
        p.add_argument("--fraction", type=float, default=0.01)
        p.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("large")
    g.add_argument("--side", type=int, default=20000)
    g.add_argument("--work", default="/tmp/label_tools_large")
    v = sub.add_parser("preview")
    v.add_argument("--window", type=int, default=500)
    v.add_argument("--repeat", type=int, default=10)
    for p in (g, v):
        p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
        p.add_argument("--fraction", type=float, default=0.01)
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"quality": quality, "speed": speed, "large": large, "preview": preview}[args.cmd](args)


if __name__ == "__main__":
    main()
