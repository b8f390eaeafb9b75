#!/usr/bin/env python
"""Does ``--order uncertainty`` put strokes where they help? A simulated person walks the annotator's windows.

The image is cut into the annotator's windows (:func:`label_tools.tiling.annotation_windows`, about
``--grid`` windows a side). The person's strokes are the synthetic scribbles of the mask
(:mod:`label_tools.synthetic`, ~1 % of the pixels, seeded): in each window visited, the person draws the
strokes that fall in it, every class present there. After each window the labels are computed from the
strokes so far (``pipeline.segment``, defaults) and scored against the mask (mean IoU over the mask's
classes). Walks compared, all starting at the first window as the annotator does:

  rows         row by row (``--order rows``, the default)
  uncertainty  after each window, the unvisited window the annotator's quick model is least sure of
               (``annotate_uncertainty.QuickUncertainty``, the model behind U, N and ``--order uncertainty``)
  random       a seeded random order (mean of ``--random-seeds`` walks)
  coverage     (measured, not shipped) the unvisited window farthest, in the quick model's feature space, from
               the pixels scribbled so far (mean over the window of the distance to the nearest one)
  mixed        (measured, not shipped) the mean of the quick model's uncertainty and that distance

A walk that has not yet met two classes has no labels: its mIoU counts as 0 at that budget (a person would
have to walk on), which is what the person sees: nothing to keep.

  python benchmarks/walk_order.py --data ../shared/data --max-images 2 --seeds 0,1,2 \
      --orders rows,uncertainty,coverage,mixed --random-seeds 1
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench import DATASETS, cases, mask_classes, miou  # noqa: E402


def coverage_map(quick, scr, *, max_ref: int = 600, seed: int = 0):
    """Distance in the quick model's feature space from each grid pixel to the nearest scribbled one, (h, w)
    float32 scaled by its 99th percentile and clipped to 1; None before anything is scribbled."""
    from label_tools.scribbles import downscale

    small = downscale(scr, quick.shape, quick.n_classes)
    m = (small > 0) & quick.valid
    if not m.any():
        return None
    h, w, f = quick.features.shape
    X = quick.features.reshape(-1, f).astype(np.float32)
    ref = quick.features[m].astype(np.float32)
    if len(ref) > max_ref:
        ref = ref[np.random.default_rng(seed).choice(len(ref), max_ref, replace=False)]
    d2 = (X * X).sum(1)[:, None] + (ref * ref).sum(1)[None] - 2 * X @ ref.T
    d = np.sqrt(np.maximum(d2.min(axis=1), 0)).reshape(h, w)
    d[~quick.valid] = 0
    top = float(np.percentile(d[quick.valid], 99)) or 1.0
    return np.clip(d / top, 0, 1).astype(np.float32)


def walk(order_name, windows, strokes, quick, rng):
    """Yield the window indices of one walk, in order."""
    n = len(windows)
    if order_name == "rows":
        yield from range(n)
        return
    if order_name == "random":
        rest = list(rng.permutation(np.arange(1, n)))
        yield 0
        yield from (int(j) for j in rest)
        return
    visited = []
    scr = np.zeros_like(strokes)
    j = 0
    while len(visited) < n:
        visited.append(j)
        yield j
        r0, r1, c0, c1 = windows[j]
        scr[r0:r1, c0:c1] = strokes[r0:r1, c0:c1]
        u = quick.map(scr)
        if order_name in ("coverage", "mixed") and u is not None:
            c = coverage_map(quick, scr)
            u = c if order_name == "coverage" else 0.5 * (u + c)
        left = [i for i in range(n) if i not in visited]
        if not left:
            return
        if u is None:  # fewer than two classes so far: row order goes on, as in the annotator
            j = left[0]
            continue
        scores = quick.window_scores(u, [windows[i] for i in left], strokes.shape)
        j = left[int(np.argmax(scores))]


def run_image(ip, mp, *, grid, budget, seed, random_seeds, orders=("rows", "uncertainty")):
    from label_tools.annotate_uncertainty import QuickUncertainty
    from label_tools.io import open_image
    from label_tools.pipeline import segment
    from label_tools.synthetic import synthetic_scribbles
    from label_tools.tiling import annotation_windows

    mask = mask_classes(mp)
    n = int(mask.max()) + 1
    strokes = synthetic_scribbles(mask, fraction=0.01, seed=seed).astype(np.uint8)
    src = open_image(ip)
    H, W = src.shape
    size = -(-max(H, W) // grid)
    windows = annotation_windows((H, W), size)
    quick = QuickUncertainty(src, n)
    out = {}
    walks = [(o, None) for o in orders] + [("random", np.random.default_rng(100 + s))
                                                     for s in range(random_seeds)]
    for name, rng in walks:
        scr = np.zeros_like(strokes)
        scores = []
        seq = []
        for b, j in enumerate(walk(name, windows, strokes, quick, rng)):
            if b >= budget:
                break
            seq.append(j)
            r0, r1, c0, c1 = windows[j]
            scr[r0:r1, c0:c1] = strokes[r0:r1, c0:c1]
            if len(np.unique(scr[scr > 0])) < 2:
                scores.append(0.0)
                continue
            r = segment(src, scr, n_classes=n)
            scores.append(float(miou(r.labels.astype(np.int64), mask)))
        out.setdefault(name, []).append((scores, seq))
    return out, len(windows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--max-images", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--grid", type=int, default=4, help="windows per side of the longer image side")
    ap.add_argument("--budget", type=int, default=4, help="windows labelled")
    ap.add_argument("--seeds", default="0", help="scribble seeds, comma-separated")
    ap.add_argument("--random-seeds", type=int, default=3)
    ap.add_argument("--json", default="", help="also write every walk's scores to this file")
    ap.add_argument("--orders", default="rows,uncertainty", help="walks besides random: rows, uncertainty, coverage, mixed")
    a = ap.parse_args()
    names = [s for s in a.only.split(",") if s] or DATASETS
    rows = []
    for name in names:
        for ip, mp in cases(a.data, name, a.max_images):
            for seed in (int(s) for s in a.seeds.split(",")):
                t = time.time()
                res, nw = run_image(ip, mp, grid=a.grid, budget=a.budget, seed=seed, random_seeds=a.random_seeds,
                                    orders=a.orders.split(","))
                mean = {k: np.mean([s for s, _ in v], axis=0) for k, v in res.items()}
                rows.append((name, os.path.basename(ip), seed, nw, mean, res))
                print(f"{name} {os.path.basename(ip)} seed {seed} ({nw} windows, {time.time() - t:.0f} s): " +
                      "; ".join(f"{k} " + " ".join(f"{x:.3f}" for x in m) +
                                (f" (windows {res[k][0][1]})" if k != "random" else "") for k, m in mean.items()),
                      flush=True)
    b = a.budget
    orders = a.orders.split(",") + (["random"] if a.random_seeds else [])
    if a.json:
        import json

        with open(a.json, "w") as fh:
            json.dump([{"dataset": r[0], "image": r[1], "seed": r[2], "windows": r[3],
                        "walks": {k: [list(map(float, s)) for s, _ in v] for k, v in r[5].items()},
                        "order": {k: [list(map(int, q)) for _, q in v] for k, v in r[5].items()}} for r in rows], fh)
    print(f"\nmIoU after 1..{b} windows, mean per dataset (random: mean of {a.random_seeds} walks); last columns: "
          f"each walk minus rows, mean over windows 2..{b}\n")
    others = [o for o in orders if o != "rows"]
    print("| dataset | runs | " + " | ".join(orders) + " | " + " | ".join(f"{o} - rows" for o in others) + " |")
    print("|---|---|" + "---|" * (len(orders) + len(others)))
    for name in names:
        rs = [r for r in rows if r[0] == name]
        if not rs:
            continue
        m = {k: np.mean([r[4][k] for r in rs], axis=0) for k in orders}
        gains = [float(np.mean(m[o][1:] - m["rows"][1:])) for o in others]
        print(f"| {name} | {len(rs)} | " + " | ".join(" / ".join(f"{x:.3f}" for x in m[k]) for k in orders) + " | " +
              " | ".join(f"{g:+.3f}" for g in gains) + " |")

if __name__ == "__main__":
    main()
