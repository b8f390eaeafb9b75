#!/usr/bin/env python
"""Collections: a model trained on one image and applied to the others (accuracy and speed).

accuracy   per collection, scribbles (label_tools.synthetic, ~1 % of pixels) on the FIRST image only;
           the model is saved and loaded again (the file path a user takes) and applied to every other
           image with no new scribbles. Beside it, scikit-image's trainable segmentation
           (multiscale_basic_features sigma 1..16 + RandomForestClassifier(50, max_depth=10)) trained
           on the same scribbles and applied the same way, and, for reference, label_tools with each
           image's own scribbles. Mean IoU over the classes in each mask (255 ignored), averaged over
           the images the model was applied to, then over the scribble seeds (--seeds, default 0,1,2:
           one seed's scribbles can favour either method by 0.02-0.07 on ISBI); beside it the carried
           model not adapted to each image (Settings.adapt=0, label_tools.adapt) and with neither the
           adaptation nor its class-share shift (Model.predict(carried=False)).
           Collections: shared-data ISBI membranes, coastal aerial photos, Drosophila EM, H&E nuclei,
           Sentinel-2 (two dates; both stretch policies), and two not in shared data, made from
           scikit-image's real photos in random layouts (ground truth = the layout): its texture
           photos (brick, grass, gravel) and regions of its colour photos (astronaut's suit,
           chelsea's fur, coffee's cup).
speed      (a) a folder of 4 MP photos (mirror-tiled real coastal frames): per-image time of
               ``--model --headless`` vs a full scribble run of the same image, both as the CLI
               (each scribble run is its own process, start-up included, as a user runs it; the batch
               pays start-up once), and in-process (run_job, start-up excluded);
           (b) 100 small photos (0.2 MP crops of real coastal frames): one ``--headless`` batch, all
               outputs, wall time per image.

  python benchmarks/collections.py accuracy --data ../shared/data [--seeds 0,1,2] [--no-own]
  python benchmarks/collections.py speed --data ../shared/data --big 4 --small 100
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


# ----------------------------------------------------------------------------- data
def read_any(path):
    if path.lower().endswith((".tif", ".tiff")):
        import rasterio

        with rasterio.open(path) as ds:
            return np.moveaxis(ds.read(), 0, -1)
    from PIL import Image

    a = np.array(Image.open(path))
    return a[..., :3] if a.ndim == 3 and a.shape[2] == 4 else a


def mask_ids(path):
    m = read_any(path)
    m = m[..., 0] if m.ndim == 3 else m
    vals = np.unique(m)
    if len(vals) > 32 or (set(vals.tolist()) <= {0, 255} and len(vals) == 2):
        return (m > 0).astype(np.int32)
    out = m.astype(np.int32)
    out[m == 255] = -1
    return out


def shared_collection(data, name):
    out = []
    for ip in sorted(glob.glob(os.path.join(data, name, "images", "*"))):
        st = os.path.splitext(os.path.basename(ip))[0]
        mp = glob.glob(os.path.join(data, name, "masks", st + ".*"))
        if mp:
            out.append((ip, mask_ids(mp[0])))
    return out


def _smooth_field(shape, k, seed, sigma):
    """Random layout of k regions: argmax of k smoothed noise fields (every class present)."""
    import cv2

    rng = np.random.default_rng(seed)
    f = np.stack([cv2.GaussianBlur(rng.normal(size=shape).astype(np.float32), (0, 0), sigma) for _ in range(k)])
    return f.argmax(0).astype(np.int32)


def _cover(tex, shape, rng):
    """A mirror-tiled, randomly offset/flipped copy of ``tex`` covering ``shape``."""
    t = tex[:, ::-1] if rng.random() < 0.5 else tex
    t = t[::-1] if rng.random() < 0.5 else t
    big = np.concatenate([t, t[::-1]], 0)
    big = np.concatenate([big, big[:, ::-1]], 1)
    reps = (shape[0] // big.shape[0] + 2, shape[1] // big.shape[1] + 2) + (1,) * (big.ndim - 2)
    big = np.tile(big, reps)
    r0, c0 = rng.integers(0, t.shape[0]), rng.integers(0, t.shape[1])
    return big[r0: r0 + shape[0], c0: c0 + shape[1]]


def texture_collection(tmp, n=5, shape=(384, 448)):
    """Collages of scikit-image's real texture photos (brick, grass, gravel; 512x512 grey) in random layouts."""
    from skimage import data

    texs = [data.brick(), data.grass(), data.gravel()]
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        m = _smooth_field(shape, 3, 100 + i, 40)
        img = np.zeros(shape, np.uint8)
        for k, t in enumerate(texs):
            img[m == k] = _cover(t, shape, rng)[m == k]
        p = os.path.join(tmp, f"texture_{i}.png")
        _save(p, img)
        out.append((p, m))
    return out


def photo_collage_collection(tmp, n=5, shape=(360, 480)):
    """Collages of real colour photo regions from scikit-image: coffee cup area, cat fur, astronaut suit
    (regions cropped from astronaut.png, chelsea.png, coffee.png) in random layouts."""
    from skimage import data

    crops = [data.astronaut()[250:510, 100:360], data.chelsea()[20:280, 40:300], data.coffee()[120:380, 300:560]]
    out = []
    for i in range(n):
        rng = np.random.default_rng(200 + i)
        m = _smooth_field(shape, 3, 200 + i, 45)
        img = np.zeros(shape + (3,), np.uint8)
        for k, t in enumerate(crops):
            img[m == k] = _cover(t, shape, rng)[m == k]
        p = os.path.join(tmp, f"collage_{i}.png")
        _save(p, img)
        out.append((p, m))
    return out


def _save(path, a):
    from PIL import Image

    Image.fromarray(a).save(path)


def miou(pred, mask):
    v = mask >= 0
    ious = []
    for c in np.unique(mask[v]):
        p, g = (pred == c) & v, mask == c
        ious.append((p & g).sum() / max((p | g).sum(), 1))
    return float(np.mean(ious))


# ----------------------------------------------------------------------------- methods
def skimage_features(img):
    from skimage.feature import multiscale_basic_features

    if img.dtype != np.uint8:
        a = img.astype(np.float32)
        lo, hi = np.percentile(a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.ravel(), (0.5, 99.5), axis=0)
        img = np.clip((a - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
    return multiscale_basic_features(img, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                                     channel_axis=-1 if img.ndim == 3 else None)


def skimage_fit(img, scr):
    from sklearn.ensemble import RandomForestClassifier

    f = skimage_features(img)
    m = scr > 0
    return RandomForestClassifier(n_estimators=50, max_depth=10, n_jobs=-1, random_state=0).fit(f[m], scr[m] - 1)


def skimage_predict(clf, img):
    f = skimage_features(img)
    return clf.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])


def lt_fit(path, scr, n_classes, tmp):
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model

    m = Model.fit(open_image(path), scr, classes=load_classes(None, None, n_classes=n_classes))
    p = os.path.join(tmp, "model.skops")
    m.save(p)
    return p


def lt_apply(model_path, path, *, stretch="image", carried=None, adapt=True):
    from dataclasses import replace

    from label_tools.io import open_image
    from label_tools.model import Model

    model = Model.load(model_path)
    settings = None if adapt else replace(model.effective_settings(stretch), adapt=0.0)
    return model.predict(open_image(path), stretch=stretch, carried=carried, settings=settings).labels


def accuracy(args):
    from label_tools.synthetic import synthetic_scribbles

    tmp = tempfile.mkdtemp(prefix="lt_coll_")
    colls = [
        ("isbi2012_em_membranes (EM, 6 slices)", shared_collection(args.data, "isbi2012_em_membranes")),
        ("obx_coastal_aerial (coast, 8 photos)", shared_collection(args.data, "obx_coastal_aerial")),
        ("drosophila_vnc_sstem (EM, 5 slices, 5 classes)", shared_collection(args.data, "drosophila_vnc_sstem")),
        ("he_nuclei_miccai (H&E, 5 tiles)", shared_collection(args.data, "he_nuclei_miccai")),
        ("s2_slovenia_lulc (13-band S2, 2 dates)", shared_collection(args.data, "s2_slovenia_lulc")),
        ("not shared: skimage texture collages (brick/grass/gravel, 5)", texture_collection(tmp)),
        ("not shared: skimage photo collages (astronaut/chelsea/coffee, 5)", photo_collage_collection(tmp)),
    ]
    rows = []
    seeds = [int(v) for v in str(args.seeds).split(",")]
    for name, items in colls:
        if len(items) < 2:
            print(f"skip {name}: fewer than 2 images", file=sys.stderr)
            continue
        (p0, m0), rest = items[0], items[1:]
        k = int(max(m.max() for _, m in items)) + 1
        r = {"name": name, "n": len(rest), "lt": [], "lt_model": [], "lt_noadapt": [], "lt_plain": [], "sk": [],
             "own": []}
        t0 = time.perf_counter()
        for seed in seeds:  # per seed: the mean over the applied images
            scr = synthetic_scribbles(m0, fraction=0.01, seed=seed)
            model = lt_fit(p0, scr, k, tmp)
            sk = skimage_fit(read_any(p0), scr)
            lt, lt_model, lt_noadapt, lt_plain, sks = [], [], [], [], []
            for p, m in rest:
                lt.append(miou(lt_apply(model, p), m))  # the default: own stretch, class-share shift, adapted
                lt_noadapt.append(miou(lt_apply(model, p, adapt=False), m))  # not adapted (label_tools.adapt)
                lt_model.append(miou(lt_apply(model, p, stretch="model"), m))
                lt_plain.append(miou(lt_apply(model, p, carried=False), m))  # neither shifted nor adapted
                sks.append(miou(skimage_predict(sk, read_any(p)), m))
            for key, v in (("lt", lt), ("lt_model", lt_model), ("lt_noadapt", lt_noadapt), ("lt_plain", lt_plain),
                           ("sk", sks)):
                r[key].append(float(np.mean(v)))
            if seed == seeds[0]:
                r["per_image"] = (lt, lt_model)
        if args.own:  # reference: each image with its own scribbles (first seed)
            from label_tools.classes import load_classes
            from label_tools.io import open_image
            from label_tools.model import Model

            for p, m in rest:
                own = synthetic_scribbles(m, fraction=0.01, seed=seeds[0])
                src = open_image(p)  # one source: the model labels the image it was fitted on (no carry shift)
                mo = Model.fit(src, own, classes=load_classes(None, None, n_classes=k))
                r["own"].append(miou(mo.predict(src).labels, m))
        r["seconds"] = time.perf_counter() - t0
        rows.append(r)
        print(f"{name}: label_tools {np.mean(r['lt']):.3f} {np.round(r['lt'], 3).tolist()} (not adapted "
              f"{np.mean(r['lt_noadapt']):.3f} {np.round(r['lt_noadapt'], 3).tolist()}; neither shifted nor adapted "
              f"{np.mean(r['lt_plain']):.3f} {np.round(r['lt_plain'], 3).tolist()}; training stretch "
              f"{np.mean(r['lt_model']):.3f}) skimage {np.mean(r['sk']):.3f} {np.round(r['sk'], 3).tolist()}"
              + (f" own scribbles {np.mean(r['own']):.3f}" if r["own"] else "") + f" [{r['seconds']:.0f} s]",
              file=sys.stderr)
    per = len(seeds) > 1
    print(f"\nscribble seeds {seeds}" + ("; each cell: mean over the seeds [per seed]" if per else ""))
    print("\n| collection (model from image 1, applied to the others) | applied to | skimage RF | label_tools model |"
          " not adapted | neither shifted nor adapted |" + (" own scribbles (reference) |" if args.own else ""))
    print("|---|---|---|---|---|---|" + ("---|" if args.own else ""))
    cell = (lambda v: f"{np.mean(v):.3f} {np.round(v, 3).tolist()}") if per else (lambda v: f"{np.mean(v):.3f}")
    for r in rows:
        lt, sk = np.mean(r["lt"]), np.mean(r["sk"])
        b = "**" if lt >= sk else ""
        print(f"| {r['name']} | {r['n']} | {cell(r['sk'])} | {b}{cell(r['lt'])}{b} | {cell(r['lt_noadapt'])} | "
              f"{cell(r['lt_plain'])} |"
              + (f" {np.mean(r['own']):.3f} |" if r["own"] else ""))
    print("\nstretch policy on rasters (only non-8-bit-photo inputs differ; first seed, per image):")
    for r in rows:
        own_s, model_s = r["per_image"]
        if not np.allclose(own_s, model_s):
            print(f"  {r['name']}: each image's own stretch (default) {np.mean(own_s):.3f}, the training "
                  f"image's {np.mean(model_s):.3f} (per image: {np.round(own_s, 3).tolist()} vs "
                  f"{np.round(model_s, 3).tolist()})")
    shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- speed
def _mirror_tile(img, shape):
    big = np.concatenate([img, img[::-1]], 0)
    big = np.concatenate([big, big[:, ::-1]], 1)
    reps = (shape[0] // big.shape[0] + 1, shape[1] // big.shape[1] + 1, 1)
    return np.ascontiguousarray(np.tile(big, reps)[: shape[0], : shape[1]])


def _cli(*args):
    return [os.path.join(os.path.dirname(sys.executable), "label-image"), *map(str, args)]


_CPU = {"last": 0.0}


def _children_cpu():
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd):
    """Wall seconds and stderr of a command; its CPU seconds (user + system) go to _CPU["last"].

    CPU time does not grow when other work shares the machine, so it is reported beside wall time
    (wall time on a loaded machine says more about the load than about label_tools)."""
    t0, c0 = time.perf_counter(), _children_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    _CPU["last"] = _children_cpu() - c0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    return dt, p.stderr


def _speed_big(args, tmp, frames, model):
    """(a): per-image time of applying the model vs a full scribble run, on large photos."""
    from label_tools.synthetic import synthetic_scribbles

    side = (int(round(np.sqrt(args.mp * 1e6 / 1.5))), int(round(np.sqrt(args.mp * 1e6 * 1.5))))
    big = os.path.join(tmp, "big")
    os.makedirs(big)
    for i, (p, m) in enumerate(frames[1: 1 + args.big]):
        _save(os.path.join(big, f"big{i}.png"), _mirror_tile(read_any(p), side))
        _save(os.path.join(big, f"big{i}_scr.png"), _mirror_tile(synthetic_scribbles(m, fraction=0.01, seed=0)[..., None],
                                                                 side)[..., 0])
    names = sorted(n for n in os.listdir(big) if not n.endswith("_scr.png"))
    full, full_cpu = [], []
    for n in names:
        st = n[:-4]
        dt, _ = _timed(_cli(os.path.join(big, n), "--scribbles", os.path.join(big, st + "_scr.png"),
                            "-o", os.path.join(tmp, "full"), "-q"))
        full.append(dt)
        full_cpu.append(_CPU["last"])
    inputs = [os.path.join(big, n) for n in names]
    dt_batch, _ = _timed(_cli("--model", model, "--headless", *inputs, "-o", os.path.join(tmp, "applied"), "-q"))
    cpu_batch = _CPU["last"]

    # in-process, start-up excluded: run_job with scribbles vs with the model
    from label_tools.job import Job, run_job

    run_job(Job(image=inputs[0], outdir=os.path.join(tmp, "warm"), model=model))  # imports, model load
    own_t, app_t = [], []
    for n in names:
        st = n[:-4]
        o = run_job(Job(image=os.path.join(big, n), outdir=os.path.join(tmp, "ip_full"),
                        scribbles=os.path.join(big, st + "_scr.png")))
        own_t.append(o.seconds)
        o = run_job(Job(image=os.path.join(big, n), outdir=os.path.join(tmp, "ip_app"), model=model))
        app_t.append(o.seconds)
    n = len(names)
    print(f"\n(a) {n} photos of {side[0]}x{side[1]} ({side[0] * side[1] / 1e6:.1f} MP), mirror-tiled coastal frames")
    print("| | full scribble run | model applied | ratio |")
    print("|---|---|---|---|")
    print(f"| CLI, per image (scribble runs: one process each; applied: one --headless batch) | "
          f"{np.mean(full):.2f} s | {dt_batch / n:.2f} s | {dt_batch / n / np.mean(full):.0%} |")
    print(f"| CLI, CPU seconds (user + system) per image | {np.mean(full_cpu):.2f} s | {cpu_batch / n:.2f} s | "
          f"{cpu_batch / n / np.mean(full_cpu):.0%} |")
    print(f"| in-process run_job, per image (start-up excluded) | {np.mean(own_t):.2f} s | {np.mean(app_t):.2f} s | "
          f"{np.mean(app_t) / np.mean(own_t):.0%} |")


def speed(args):
    from label_tools.synthetic import synthetic_scribbles

    tmp = tempfile.mkdtemp(prefix="lt_speed_")
    frames = shared_collection(args.data, "obx_coastal_aerial")
    # model from the first frame at native size, as a user would start
    p0, m0 = frames[0]
    scr0 = os.path.join(tmp, "first_scribbles.png")
    _save(scr0, synthetic_scribbles(m0, fraction=0.01, seed=0))
    model = os.path.join(tmp, "model.skops")
    _timed(_cli(p0, "--scribbles", scr0, "-o", os.path.join(tmp, "first"), "--save-model", model, "-q"))

    if args.big:
        _speed_big(args, tmp, frames, model)

    # (b) 100 small photos
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    rng = np.random.default_rng(0)
    h, w = int(round(np.sqrt(args.small_mp * 1e6 / 1.5))), int(round(np.sqrt(args.small_mp * 1e6 * 1.5)))
    for i in range(args.small):
        a = read_any(frames[i % len(frames)][0])
        r0, c0 = rng.integers(0, a.shape[0] - h), rng.integers(0, a.shape[1] - w)
        c = a[r0: r0 + h, c0: c0 + w]
        c = c[:, ::-1] if i // len(frames) % 2 else c
        _save(os.path.join(small, f"s{i:03d}.jpg"), np.ascontiguousarray(c))
    out = os.path.join(tmp, "small_out")
    dt, err = _timed(_cli("--model", model, "--headless", small, "-o", out))
    cpu = _CPU["last"]
    n_out = len(os.listdir(out))
    dt2, err2 = _timed(_cli("--model", model, "--headless", small, "-o", out))
    one, _ = _timed(_cli("--model", model, "--headless", os.path.join(small, "s000.jpg"), "-o",
                         os.path.join(tmp, "one_small"), "-q"))
    cpu_one = _CPU["last"]
    print(f"\n(b) {args.small} photos of {w}x{h} ({w * h / 1e6:.2f} MP): one --headless batch, {n_out} files written")
    print("| | wall time | per image | CPU (user + system) per image |")
    print("|---|---|---|---|")
    print(f"| batch of {args.small}, all outputs | {dt:.1f} s | {dt / args.small:.2f} s | {cpu / args.small:.2f} s |")
    print(f"| same command again (all skipped) | {dt2:.1f} s | {dt2 / args.small:.3f} s | |")
    print(f"| one image alone (start-up included) | {one:.2f} s | {one:.2f} s | {cpu_one:.2f} s |")
    print("summary line:", [ln for ln in err.splitlines() if "images:" in ln][-1])
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    import warnings

    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    a.add_argument("--no-own", dest="own", action="store_false", help="skip the own-scribbles reference column")
    a.add_argument("--seeds", default="0,1,2", help="seeds of the synthetic scribbles on the first image (comma list); "
                   "every figure is the mean over them")
    s = sub.add_parser("speed")
    s.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    s.add_argument("--big", type=int, default=4, help="number of large photos")
    s.add_argument("--mp", type=float, default=4.0, help="megapixels of the large photos")
    s.add_argument("--small", type=int, default=100)
    s.add_argument("--small-mp", type=float, default=0.2)
    args = ap.parse_args()
    {"accuracy": accuracy, "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
