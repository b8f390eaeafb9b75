#!/usr/bin/env python
"""How well the inspection finds a stroke drawn with the wrong class, and how often it cries wolf.

For each dataset of ../shared/data with masks (first N images, native size, synthetic scribbles from
``label_tools.synthetic``, seed 0):

  clean   the scribbles as drawn from the mask: every stroke the inspection calls suspicious is a
          false warning (counted per image);
  flips   one stroke (a connected piece of at least 60 px) relabelled to another scribbled class, a
          few times per image: is it among the suspicious strokes, first, among the five listed?

Both rules are scored on the same held-out predictions (``label_tools.inspect.suspicious_strokes``):
``agreement`` (before: held-out agreement below 0.3, worst agreement first) and ``support`` (now: also
the stroke's class much less likely on it than on its class's other strokes, worst ratio first).

  python benchmarks/stroke_warnings.py --data ../shared/data --max-images 3 --flips 4
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import DATASETS, cases, read_any  # noqa: E402

RULES = {"agreement": False, "support": True}


def strokes_of(src, scribbles, n):
    from label_tools import pipeline

    return pipeline.train(src, scribbles, n_classes=n).strokes


def matching_stroke(strokes, cls, box):
    """Index of the stroke of class ``cls`` (0-based) overlapping ``box`` (x, y, w, h) most, or -1."""
    x, y, w, h = box
    best, area = -1, 0
    for i in range(len(strokes)):
        if strokes.cls[i] != cls:
            continue
        r0, r1, c0, c1 = strokes.bbox[i]
        ov = max(0, min(r1, y + h) - max(r0, y)) * max(0, min(c1, x + w) - max(c0, x))
        if ov > area:
            best, area = i, ov
    return best


def main(argv=None):
    import cv2

    from label_tools.inspect import MAX_STROKE_WARNINGS, suspicious_strokes
    from label_tools.io import open_image
    from label_tools.synthetic import synthetic_scribbles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--max-images", type=int, default=3)
    ap.add_argument("--flips", type=int, default=4, help="strokes relabelled per image, one run each")
    ap.add_argument("--only", default="", help="comma-separated datasets")
    args = ap.parse_args(argv)
    only = [d for d in args.only.split(",") if d] or DATASETS
    rows = []
    t0 = time.time()
    for name in only:
        acc = {r: {"false": 0, "found": 0, "first": 0, "listed": 0} for r in RULES}
        n_img = n_flip = 0
        for img_path, mask_path in cases(args.data, name, args.max_images):
            mask = np.squeeze(read_any(mask_path)).astype(np.int64)
            n = int(mask[mask != 255].max()) + 1
            scr = synthetic_scribbles(mask, seed=0)
            src = open_image(img_path)
            st = strokes_of(src, scr, n)
            n_img += 1
            for r, use in RULES.items():
                acc[r]["false"] += len(suspicious_strokes(st, use_support=use)[0])
            present = [int(c) for c in np.unique(scr) if c > 0]
            pieces = []
            for c in present:
                cnt, lab, stats, _ = cv2.connectedComponentsWithStats((scr == c).astype(np.uint8), connectivity=8)
                pieces += [(c, lab == j, stats[j, :4]) for j in range(1, cnt) if stats[j, 4] >= 60]
            rng = np.random.default_rng(1)
            for _ in range(args.flips if len(present) > 1 and pieces else 0):
                c, piece, box = pieces[int(rng.integers(len(pieces)))]
                a = int(rng.choice([v for v in present if v != c]))
                s2 = scr.copy()
                s2[piece] = a
                if len(np.unique(s2[s2 > 0])) < 2:
                    continue
                st = strokes_of(src, s2, n)
                i = matching_stroke(st, a - 1, box)
                n_flip += 1
                for r, use in RULES.items():
                    order = list(suspicious_strokes(st, use_support=use)[0])
                    if i in order:
                        pos = order.index(i)
                        acc[r]["found"] += 1
                        acc[r]["first"] += pos == 0
                        acc[r]["listed"] += pos < MAX_STROKE_WARNINGS
            print(f"{name} {os.path.basename(img_path)} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        rows.append((name, n_img, n_flip, acc))
    print("| dataset | images | relabelled strokes | " + " | ".join(
        f"{r}: false warnings per image | {r}: found / first / among {MAX_STROKE_WARNINGS} listed" for r in RULES) + " |")
    print("|---" * (3 + 2 * len(RULES)) + "|")
    tot = {r: {k: 0 for k in ("false", "found", "first", "listed")} for r in RULES}
    ti = tf = 0
    for name, n_img, n_flip, acc in rows:
        cells = []
        for r in RULES:
            a = acc[r]
            cells.append(f"{a['false'] / max(n_img, 1):.1f} | {a['found']} / {a['first']} / {a['listed']}")
            for k in a:
                tot[r][k] += a[k]
        ti += n_img
        tf += n_flip
        print(f"| {name} | {n_img} | {n_flip} | " + " | ".join(cells) + " |")
    cells = [f"{tot[r]['false'] / max(ti, 1):.1f} | {tot[r]['found']} / {tot[r]['first']} / {tot[r]['listed']}"
             for r in RULES]
    print(f"| all | {ti} | {tf} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
