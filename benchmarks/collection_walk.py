#!/usr/bin/env python
"""What carrying the model from image to image buys in a collection (label-image FOLDER/).

For each dataset folder (images + masks, first N images in name order) two walks are simulated with
synthetic strokes (``label_tools.synthetic``, ~1 % of pixels, the same strokes in both walks):

  scratch     every image labelled alone from its full strokes (what a single run does)
  collection  image 1 from its full strokes; from image 2 on, the current model's labels are the
              pre-labels, and the person strokes only where they are wrong: the image's strokes kept
              only on pixels the pre-labels get wrong; the model is refitted on top of the earlier
              images' samples (``Model.fit(..., base=model)``), as the annotator's collection walk does
  carried     as collection, but every image gets its full strokes (the earlier samples' effect alone)

Per image: mIoU of the pre-labels (the model before this image, no new stroke), the stroked pixels,
and the final mIoU of both walks (classes present in the mask, 255 ignored). Pixels are counted at
full resolution.

  python benchmarks/collection_walk.py --data ../shared/data --datasets obx_coastal_aerial,isbi2012_em_membranes
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def miou(pred, mask):
    ious = []
    for k in np.unique(mask[mask >= 0]):
        p, m = pred == k, mask == k
        ious.append((p & m).sum() / max((p | m).sum(), 1))
    return float(np.mean(ious))


def run(folder, n_images, fraction, seed):
    from bench import mask_classes

    from label_tools.classes import load_classes
    from label_tools.io import open_image
    from label_tools.model import Model
    from label_tools.pipeline import Settings
    from label_tools.synthetic import synthetic_scribbles

    names = sorted(os.listdir(os.path.join(folder, "images")))[:n_images]
    masks = {}
    for n in names:
        stem = os.path.splitext(n)[0]
        cand = [f for f in os.listdir(os.path.join(folder, "masks")) if os.path.splitext(f)[0] == stem]
        masks[n] = mask_classes(os.path.join(folder, "masks", cand[0]))
    k = int(max(m.max() for m in masks.values())) + 1
    classes = load_classes(None, None, n_classes=k)
    settings = Settings()
    rows, model, carried = [], None, None
    for j, n in enumerate(names):
        src = open_image(os.path.join(folder, "images", n))
        mask = masks[n]
        full = synthetic_scribbles(np.where(mask < 0, 255, mask), fraction=fraction, seed=seed + j)
        t0 = time.perf_counter()
        scratch = Model.fit(src, full, classes=classes, settings=settings).predict(src).labels
        t_scratch = time.perf_counter() - t0
        pre_iou = None
        strokes = full
        if model is not None:
            pre = model.predict(src).labels
            pre_iou = miou(pre, mask)
            strokes = np.where((pre != mask) & (mask >= 0), full, 0).astype(np.uint8)
        carried_iou = None
        if model is not None:
            m2 = Model.fit(src, full, classes=classes, settings=settings, base=carried)
            carried_iou = miou(m2.predict(src).labels, mask)
            m2._cache = None
            carried = m2
        t0 = time.perf_counter()
        model = Model.fit(src, strokes, classes=classes, settings=settings, base=model)
        model._cache = None
        if j == 0:
            carried = model
        final = model.predict(src).labels
        t_coll = time.perf_counter() - t0
        rows.append(dict(image=n, pre=pre_iou, full_px=int((full > 0).sum()), coll_px=int((strokes > 0).sum()),
                         scratch=miou(scratch, mask), coll=miou(final, mask), carried=carried_iou,
                         t_scratch=t_scratch, t_coll=t_coll, samples=int(len(model.y))))
        r = rows[-1]
        pre = "-" if r["pre"] is None else f"{r['pre']:.3f}"
        print(f"  {j + 1}. {n}: pre {pre} | strokes {r['coll_px']} of "
              f"{r['full_px']} px | final collection {r['coll']:.3f} scratch {r['scratch']:.3f}", file=sys.stderr)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--datasets", default="obx_coastal_aerial,isbi2012_em_membranes,drosophila_vnc_sstem")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print("| dataset | image | pre-label mIoU | strokes (px): collection / full | final mIoU: collection | carried "
          "(full strokes) | scratch |")
    print("|---|---|---|---|---|---|---|")
    for d in a.datasets.split(","):
        print(f"{d}:", file=sys.stderr)
        rows = run(os.path.join(a.data, d), a.images, a.fraction, a.seed)
        for j, r in enumerate(rows):
            pre = "-" if r["pre"] is None else f"{r['pre']:.3f}"
            car = "-" if r["carried"] is None else f"{r['carried']:.3f}"
            print(f"| {d} | {j + 1} | {pre} | {r['coll_px']} / {r['full_px']} | {r['coll']:.3f} | {car} | "
                  f"{r['scratch']:.3f} |")
        later = rows[1:]
        if later:
            print(f"| {d} | mean 2..{len(rows)} | {np.mean([r['pre'] for r in later]):.3f} | "
                  f"{sum(r['coll_px'] for r in later)} / {sum(r['full_px'] for r in later)} | "
                  f"{np.mean([r['coll'] for r in later]):.3f} | {np.mean([r['carried'] for r in later]):.3f} | "
                  f"{np.mean([r['scratch'] for r in later]):.3f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
