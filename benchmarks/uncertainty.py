#!/usr/bin/env python
"""How useful and how honest label-image's probabilities are, beside a plain random forest's.

For each dataset of ../shared/data with masks (first N images, native size, synthetic scribbles
from ``label_tools.synthetic``), two methods:

  rf      scikit-image trainable segmentation: ``multiscale_basic_features`` (sigma 1..16) +
          ``RandomForestClassifier(n_estimators=50, max_depth=10)``, full resolution; probabilities =
          the forest's ``predict_proba``, uncertainty = 1 - top probability.
  ours    label-image defaults: the full-resolution probabilities written by ``--save-probs``
          (calibrated per image on held-out strokes, stored as bytes), and the uncertainty map
          written beside them (the pixel's own uncertainty averaged with its neighbourhood's).

Scores over the pixels with ground truth (255 ignored):
  AUROC   of the uncertainty ranking wrong pixels (argmax != mask) above right ones (higher is better),
          each method on its own errors; and both maps on label-image's errors (the same pixels to find:
          which map points at them better, apart from how many there are and where);
  ECE     expected calibration error, 15 equal bins of the top probability (lower is better);
  mIoU    of the labels, for context.

  python benchmarks/uncertainty.py --data ../shared/data --max-images 4 [--seeds 0,1,2]

Images from outside the shared data: ``--collages DIR`` writes the texture and photo collages of
benchmarks/collections.py (real scikit-image photos of brick, grass and gravel; astronaut suit, cat
fur and coffee cup, in random smooth layouts; 5 each) into DIR as two datasets with masks and scores
those instead:

  python benchmarks/uncertainty.py --collages /tmp/collages --max-images 5 --seeds 0,1,2
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import DATASETS, baseline_input, cases, mask_classes, miou, read_any  # noqa: E402


def forest_probs(img, scr, n):
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    x = baseline_input(img)
    f = multiscale_basic_features(x, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                                  channel_axis=-1 if x.ndim == 3 else None)
    m = scr > 0
    clf = RandomForestClassifier(n_estimators=50, max_depth=10, n_jobs=-1, random_state=0).fit(f[m], scr[m] - 1)
    p = clf.predict_proba(f.reshape(-1, f.shape[-1]))
    out = np.zeros((n, p.shape[0]), np.float32)
    out[clf.classes_] = p.T
    return out.reshape((n,) + scr.shape)


def ours(path, scr, n):
    """-> (labels (H, W) uint8, saved probabilities as float (K, H, W), uncertainty float (H, W), raw top prob)."""
    from label_tools import uncertainty as unc
    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model

    src = open_image(path)
    classes = load_classes(None, None, n_classes=n)
    model = Model.fit(src, scr, classes=classes)
    H, W = src.shape
    raw = np.zeros((H, W), np.float32)

    def keep(window, probs, labels):  # the uncalibrated top probability
        r0, r1, c0, c1 = window
        raw[r0:r1, c0:c1] = probs.max(axis=0)

    from label_tools.writers import ProbabilityWriter

    import tempfile
    with tempfile.TemporaryDirectory() as work:
        w = ProbabilityWriter(os.path.join(work, "p.tif"), (H, W), classes, georef=src.georef)

        c = unc.predict_calibrated(model, src, scr, on_probs=w, on_uncertainty=w.put_uncertainty)
        w.close()
        from label_tools.upsample import upsample_labels

        upsample_labels(src, c.result.probs, on_tile=keep)
        import rasterio
        with rasterio.open(w.path) as ds:
            u8 = ds.read()
    assert (u8.argmax(0) == c.result.labels).all()
    return c.result.labels, u8.astype(np.float32) / 255, w.uncertainty.astype(np.float32) / 255, raw, c.calibration


def scores(labels, top, unc_map, mask):
    v = mask >= 0
    wrong = (labels != mask)[v]
    from label_tools.uncertainty import auroc, ece

    return auroc(unc_map[v], wrong), ece(top[v], ~wrong), miou(labels.astype(np.int32), mask), float(wrong.mean())


COLLAGES = ["texture_collages", "photo_collages"]


def write_collages(root):
    """Write benchmarks/collections.py's texture and photo collages under ``root`` as datasets
    (``<name>/images/*.png``, ``<name>/masks/*.png`` with class ids 0..2); returns ``root``."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("lt_bench_collections", os.path.join(HERE, "collections.py"))
    col = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(col)
    for name, make in zip(COLLAGES, (col.texture_collection, col.photo_collage_collection)):
        images, masks = os.path.join(root, name, "images"), os.path.join(root, name, "masks")
        os.makedirs(images, exist_ok=True)
        os.makedirs(masks, exist_ok=True)
        for path, m in make(images):
            stem = os.path.splitext(os.path.basename(path))[0]
            Image.fromarray(m.astype(np.uint8)).save(os.path.join(masks, stem + ".png"))
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--max-images", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default="",
                    help="comma-separated scribble seeds (e.g. 0,1,2): every image is scored once per seed and the "
                         "table gives the mean over images and seeds; default: --seed alone")
    ap.add_argument("--style", choices=("pieces", "long"), default="pieces",
                    help="synthetic scribbles: short skeleton pieces per class (label_tools.synthetic."
                         "synthetic_scribbles, default), or one long connected stroke per class (long_strokes)")
    ap.add_argument("--collages", metavar="DIR", default="",
                    help="write the texture and photo collages of benchmarks/collections.py into DIR and score "
                         "them instead of --data's datasets (images from outside the shared data)")
    args = ap.parse_args()
    if args.collages:
        args.data = write_collages(args.collages)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    from label_tools.synthetic import long_strokes, synthetic_scribbles

    draw = long_strokes if args.style == "long" else synthetic_scribbles

    rows = {}
    for name in args.only.split(",") if args.only else (COLLAGES if args.collages else DATASETS):
        acc = []
        for (ip, mp), seed in [(c, s) for c in cases(args.data, name, args.max_images) for s in seeds]:
            mask = mask_classes(mp)
            n = int(mask.max()) + 1
            scr = draw(mask, fraction=args.fraction, seed=seed)
            t0 = time.perf_counter()
            pf = forest_probs(read_any(ip), scr, n)
            lab_f = pf.argmax(0)
            top_f = pf.max(0)
            s_rf = scores(lab_f, top_f, 1 - top_f, mask)
            t1 = time.perf_counter()
            lab, p8, u, raw, cal = ours(ip, scr, n)
            s_us = scores(lab, p8.max(0), u, mask)
            raw_ece = scores(lab, raw, 1 - raw, mask)[1]
            same = scores(lab, top_f, 1 - top_f, mask)[0]  # the forest's map on label-image's errors
            t2 = time.perf_counter()
            acc.append((s_rf, s_us, raw_ece, same))
            print(f"{name} {os.path.basename(ip)} seed {seed} rf AUROC {s_rf[0]:.3f} ECE {s_rf[1]:.3f} mIoU {s_rf[2]:.3f} "
                  f"({t1 - t0:.1f} s) | ours AUROC {s_us[0]:.3f} ECE {s_us[1]:.3f} (uncalibrated {raw_ece:.3f}) "
                  f"mIoU {s_us[2]:.3f} ({t2 - t1:.1f} s) | on ours' errors: rf map AUROC {same:.3f} [{cal}]", flush=True)
        if acc:
            rows[name] = np.array([[a[0][0], a[0][1], a[1][0], a[1][1], a[2], a[0][2], a[1][2], a[3]] for a in acc])
    print("\n| dataset | AUROC rf | AUROC label-image | AUROC on label-image's errors: rf map / label-image map "
          "| ECE rf | ECE label-image (uncalibrated) | mIoU rf / label-image | runs: AUROC >= rf, ECE <= rf |")
    print("|---|---|---|---|---|---|---|---|")
    for name, a in rows.items():
        m = np.nanmean(a, axis=0)
        print(f"| {name} | {m[0]:.3f} | {m[2]:.3f} | {m[7]:.3f} / {m[2]:.3f} | {m[1]:.3f} | {m[3]:.3f} ({m[4]:.3f}) "
              f"| {m[5]:.3f} / {m[6]:.3f} | {int((a[:, 2] >= a[:, 0]).sum())} / {int((a[:, 3] <= a[:, 1]).sum())} "
              f"of {len(a)} |")


if __name__ == "__main__":
    main()
