"""Inspection after a run: ``warning:`` lines about labels that look wrong, each saying what to do.

Checks (thresholds are shares of the image or of a class, so they hold at any image size):

* a class of the labels file never scribbled (nor, with ``--init``, in the pre-labels);
* a class whose strokes all lie on no-data pixels, or all vanish on the model grid (a coarse
  ``--grid-scale``);
* a class scribbled but almost absent from the result (fewer labelled pixels than
  ``ABSENT_SHARE`` of the image and than its own scribbled pixels);
* a stroke that a prediction made *without* it mostly contradicts (held-out agreement below
  ``CONTRADICTED``; :mod:`label_tools.holdout`) and whose class that prediction finds much less
  likely on it than on the class's other strokes (mean held-out probability below ``SUPPORT_RATIO``
  of their median): likely drawn with the wrong class. A stroke of a class that is hard everywhere
  (thin poles, rare organelles) is contradicted as often, but its class keeps the probability its
  other strokes get; worst first by that ratio. Not when the model fitted without it saw less than
  ``KNOWN_SHARE`` of its class's scribbled pixels (one huge stroke holding most of a class: that
  model hardly knew the class, its verdict says nothing);
* many tiny fragments of a class (speckle: more than ``FRAGMENTS`` pieces smaller than
  ``FRAGMENT_SHARE`` of the image, making most of the class's pieces);
* a large share of uncertain pixels (above ``UNCERTAIN_SHARE``; :mod:`label_tools.uncertainty`).

Compute only: returns the lines; the caller writes them to the report and stderr.
"""
from __future__ import annotations

import os

import numpy as np

from .scribbles import value_counts

NODATA = 255
ABSENT_SHARE = 0.001
CONTRADICTED = 0.3  # held-out agreement below this: the stroke is mostly contradicted
MIN_STROKE_PIXELS = 12  # model-grid pixels; smaller strokes are too small to judge
KNOWN_SHARE = 0.25  # a held-out verdict counts when its model saw at least this share of the stroke's class
# a contradicted stroke is called likely mis-drawn when its class gets less than this share of the held-out
# probability its class's strokes get (median; only a class with SUPPORT_PEERS judged strokes or more is
# compared, others are judged by agreement alone, as before). Synthetic strokes of the 7 shared datasets,
# 3 images each, 65 strokes relabelled to another class one at a time: strokes wrongly warned about on
# clean scribbles 8.6 -> 4.2 per image, the relabelled stroke listed first 22 -> 36 times, among the 5
# listed 40 -> 53 (benchmarks/stroke_warnings.py; README "Inspection warnings")
SUPPORT_RATIO = 0.5
SUPPORT_PEERS = 3
MAX_STROKE_WARNINGS = 5
MAX_ABSENT_WARNINGS = 5  # classes almost absent from the result listed one by one; the others in one line
FRAGMENTS = 150
FRAGMENT_SHARE = 2e-5
UNCERTAIN_SHARE = 0.3
VIEW_PIXELS = 1e6  # fragments are counted on the labels viewed at most this large


def bbox_text(bbox) -> str:
    """(row0, row1, col0, col1) half-open -> ``x0,y0,x1,y1`` (columns, rows; inclusive)."""
    r0, r1, c0, c1 = (int(v) for v in bbox)
    return f"{c0},{r0},{c1 - 1},{r1 - 1}"


def _view(labels, max_pixels=VIEW_PIXELS):
    h, w = labels.shape
    step = int(np.ceil(np.sqrt(h * w / max_pixels))) if h * w > max_pixels else 1
    return labels[::step, ::step], step


def inspect_source(src) -> list:
    """Warnings about the input image itself (before any labels).

    Parameters
    ----------
    src : label_tools.io.ImageSource

    Returns
    -------
    list of str, each starting with ``warning:``
    """
    from .io import planes_warning

    # a microscopy stack or multi-page TIFF: which plane was labelled (the first, or --plane's) and how to choose
    said = planes_warning(src)
    return [f"warning: {os.path.basename(getattr(src, 'path', '') or '')} {said}"] if said else []


def _judged(strokes) -> np.ndarray:
    """bool (n,): the model fitted without stroke ``i`` (on the other folds) saw at least
    :data:`KNOWN_SHARE` of the scribbled pixels of ``i``'s class."""
    cls, fold = np.asarray(strokes.cls, np.int64), np.asarray(strokes.fold, np.int64)
    px = np.asarray(strokes.pixels, np.int64)
    if not len(cls):
        return np.ones(0, bool)
    # per (class, fold) sums, not a loop over strokes: a 100 MP image tiled from scribbled ones has
    # 20,000 strokes, and comparing each with all took 1.7 s
    folds = fold - fold.min()
    key = cls * (int(folds.max()) + 1) + folds
    in_fold = np.bincount(key, weights=px)[key]
    total = np.bincount(cls, weights=px)[cls]
    return total - in_fold >= KNOWN_SHARE * total


def _support_ratio(strokes, judged):
    """Each stroke's held-out probability of its own class over the median of its class's judged strokes.

    Returns
    -------
    ratio : ndarray of float64, shape (n,)
        NaN where there is nothing to compare: the stroke has no support (not held out, or strokes
        without ``support``), or its class has fewer than :data:`SUPPORT_PEERS` judged strokes.
    ref : ndarray of float64, shape (n,)
        The median it is divided by.
    """
    n = len(strokes.cls)
    sup = getattr(strokes, "support", None)
    sup = np.full(n, np.nan) if sup is None else np.asarray(sup, np.float64)
    ok = judged & np.isfinite(sup)
    cls = np.asarray(strokes.cls, np.int64)
    ref = np.full(n, np.nan)
    for c in np.unique(cls[ok]):
        same = ok & (cls == c)
        if same.sum() >= SUPPORT_PEERS:
            ref[cls == c] = np.median(sup[same])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sup / np.maximum(ref, 1e-3), ref


def suspicious_strokes(strokes, *, use_support: bool = True):
    """Strokes likely drawn with the wrong class, worst first.

    Parameters
    ----------
    strokes : label_tools.holdout.Strokes
        With held-out ``agreement``, ``predicted`` and ``support``.
    use_support : bool
        False: agreement alone, worst agreement first (the rule before ``support``; for comparison).

    Returns
    -------
    order : ndarray of int64, shape (m,)
        Indices of the suspicious strokes, worst first: by ``ratio`` (none = 0), then agreement,
        then ``support``.
    ratio, ref : ndarray of float64, shape (n,)
        See :func:`_support_ratio` (all NaN with ``use_support=False``).
    """
    n = len(strokes.cls)
    agree = np.asarray(strokes.agreement, np.float64)
    big = np.asarray(strokes.pixels) >= MIN_STROKE_PIXELS
    judged = big & _judged(strokes) & np.isfinite(agree)
    if use_support:
        ratio, ref = _support_ratio(strokes, judged)
    else:
        ratio, ref = np.full(n, np.nan), np.full(n, np.nan)
    bad = np.nonzero(judged & (agree < CONTRADICTED) & ~(ratio >= SUPPORT_RATIO))[0]  # NaN ratio: no comparison
    # worst ratio first, then worst agreement, then the least own-class probability (of two strokes of a
    # class that contradict each other, the one unlike what the model makes of its class comes first)
    sup = getattr(strokes, "support", None)
    sup = np.zeros(n) if sup is None or not use_support else np.nan_to_num(np.asarray(sup, np.float64), nan=1.0)
    return bad[np.lexsort((sup[bad], agree[bad], np.nan_to_num(ratio[bad], nan=0.0)))], ratio, ref


def inspect_run(labels, classes, *, scribbled=None, strokes=None, uncertain=None, known=None, prelabelled=None,
                class_list="labels file", grid_samples=None, grid_text="", on_nodata=None) -> list:
    """Warnings about a finished run.

    Parameters
    ----------
    labels : ndarray of uint8, shape (H, W)
        0-based class ids, 255 = no-data.
    classes : label_tools.classes.Classes
    scribbled : ndarray of int64, shape (K,), optional
        Scribbled pixels per class (None: no scribbles, e.g. a model applied; those checks are skipped
        unless ``prelabelled`` is given).
    strokes : label_tools.holdout.Strokes, optional
        Strokes with their held-out ``agreement`` and ``predicted`` class.
    uncertain : label_tools.uncertainty.UncertainCounts, optional
    known : ndarray of bool, shape (K,), optional
        Classes the model knows from elsewhere (the samples of a model refitted or carried over):
        never reported as never scribbled.
    prelabelled : ndarray of int64, shape (K,), optional
        Pixels per class of the ``--init`` pre-labels (which supply classes as scribbles do): a class
        they hold is not reported as never scribbled, and the warning about a class given but absent
        from the result says which of the two gave it.
    class_list : {"labels file", "colours file", "scribble values"} or None
        Where the class list came from, for the advice on a class nobody gave: drop it from that
        file; with "scribble values" (no labels file: class k = value k) stroke it with its value if
        it is in the image; None: no advice to drop it (the ids are fixed by the ``--init``
        pre-labels or a model, and dropping a class would shift the others).
    grid_samples : ndarray of int64, shape (K,), optional
        Scribbled pixels per class on the model grid: a class scribbled whose strokes all vanish
        there (a coarse ``--grid-scale``) is named with ``grid_text`` (e.g. `` (3 x 2 px, grid scale
        0.01)``) instead of being called almost absent with advice about its strokes.
    on_nodata : sequence of int, optional
        Classes (0-based) whose strokes all lie on no-data pixels (ignored when fitting): named as such,
        not as lost on the grid or almost absent.

    Returns
    -------
    list of str, each starting with ``warning:``
    """
    names = list(classes.names)
    k = len(names)
    out = []
    counts = value_counts(labels)[:k]  # in row blocks: a whole-image bincount makes an int64 copy (800 MB at 100 MP)
    total = max(int(counts.sum()), 1)
    if scribbled is not None or prelabelled is not None:
        scribbled = np.zeros(k, np.int64) if scribbled is None else np.asarray(scribbled, np.int64)
        pre = None if prelabelled is None else np.asarray(prelabelled, np.int64)
        given = scribbled + (0 if pre is None else pre)
        never = [i for i in range(k) if given[i] == 0 and not (known is not None and known[i])]
        if never:
            out.append(_never_text([names[i] for i in never], pre is not None, class_list, [i + 1 for i in never]))
        nodata = [i for i in (on_nodata or ()) if scribbled[i] > 0]
        if nodata:
            one = len(nodata) == 1
            out.append(f"warning: the strokes of {'class' if one else 'classes'} {', '.join(names[i] for i in nodata)} "
                       "lie on no-data pixels only, which are never labelled (255 in the labels, without a class): "
                       f"draw {'it' if one else 'them'} where the image has data, or leave "
                       f"{'it' if one else 'them'} out")
        lost = [] if grid_samples is None else \
            [i for i in range(k) if scribbled[i] > 0 and np.asarray(grid_samples)[i] == 0 and i not in nodata]
        if lost:
            one = len(lost) == 1
            out.append(f"warning: the strokes of {'class' if one else 'classes'} {', '.join(names[i] for i in lost)} "
                       f"vanish on the model grid{grid_text}: the forest never saw {'it' if one else 'them'}; "
                       "raise --grid-scale (or leave it out: auto keeps at least 0.4 MP or the whole image)")
        absent = []
        for i in range(k):
            if i in lost or i in nodata:
                continue
            if given[i] > 0 and counts[i] < ABSENT_SHARE * total and counts[i] < given[i]:
                absent.append(i)
                if len(absent) > MAX_ABSENT_WARNINGS:
                    continue
                how = [f"{w} ({int(n)} px)" for w, n in (("scribbled", scribbled[i]),
                                                        ("pre-labelled by --init", 0 if pre is None else pre[i])) if n]
                on_grid = None if grid_samples is None else int(np.asarray(grid_samples)[i])
                few = on_grid is not None and on_grid < min(MIN_STROKE_PIXELS, scribbled[i])  # shrunk away
                advice = (f"its strokes keep only {on_grid} px on the model grid{grid_text}: "
                          "raise --grid-scale") if few else \
                    ("draw longer strokes of it across its typical look, or check that its strokes are not drawn "
                     "with another class") if scribbled[i] else \
                    "if it is in the image, draw a few strokes of it across its typical look"
                out.append(f"warning: class {names[i]} was {' and '.join(how)} but is almost absent from the result "
                           f"({int(counts[i])} px, {counts[i] / total:.4%}); {advice}")
        if len(absent) > MAX_ABSENT_WARNINGS:
            more = [names[i] for i in absent[MAX_ABSENT_WARNINGS:]]
            out.append(f"warning: {len(more)} more class{'es are' if len(more) > 1 else ' is'} almost absent from the "
                       f"result in the same way: {', '.join(more)}")
    if strokes is not None and len(strokes):
        agree = np.asarray(strokes.agreement, np.float64)
        bad, ratio, ref = suspicious_strokes(strokes)
        for s in bad[:MAX_STROKE_WARNINGS]:
            c, p = int(strokes.cls[s]), int(strokes.predicted[s])
            other = names[p] if 0 <= p < k else "another class"
            why = "" if not np.isfinite(ratio[s]) else \
                (f" and gives {names[c]} a mean probability of {strokes.support[s]:.2f} on it "
                 f"(median over the strokes of {names[c]}: {ref[s]:.2f})")
            what = "stroke" if getattr(strokes, "part", None) is None or strokes.part[s] < 0 else \
                "stretch of the only stroke"  # a part of a class's single stroke (holdout.find_strokes)
            out.append(f"warning: {what} of class {names[c]} at x0,y0,x1,y1 = {bbox_text(strokes.bbox[s])} is mostly "
                       f"contradicted: a model fitted without it calls {1 - agree[s]:.0%} of it {other}{why}; "
                       f"if it was drawn with the wrong class, erase it or redraw it as {other}")
        if len(bad) > MAX_STROKE_WARNINGS:
            more = len(bad) - MAX_STROKE_WARNINGS
            out.append(f"warning: {more} more stroke{' is' if more == 1 else 's are'} mostly contradicted "
                       "(the worst are listed above); check "
                       f"{'it' if more == 1 else 'them'} the same way")
    out += _fragments(labels, names)
    if uncertain is not None and uncertain.total.sum() and uncertain.fraction > UNCERTAIN_SHARE:
        out.append(f"warning: {uncertain.fraction:.0%} of the pixels are uncertain (uncertainty > {uncertain.level:g}); "
                   "add strokes where the model is unsure (run with --save-probs and look at the bright parts of "
                   "<stem>_uncertainty.png, or use --order uncertainty / N in the annotator)")
    return out


def _never_text(never, init, class_list, values=()) -> str:
    """The warning about classes nobody gave: never scribbled (and, with ``init``, not in the pre-labels).
    ``values``: their scribble values (1-based), named when the class list came from the scribble values."""
    one = len(never) == 1
    if_there = "if it is in the image, draw a few strokes of it" if one else \
        "if any of them is in the image, draw a few strokes of it"
    if init:  # pre-labels cover the image: the class is likely not in it
        head, advice = "in neither the --init pre-labels nor the scribbles", if_there
    elif class_list == "scribble values":  # classes numbered by the values drawn: a gap, or a class not here
        head = "never scribbled"
        advice = f"{if_there} (scribble value{'' if one else 's'} {', '.join(str(v) for v in values)})"
    else:
        head = "never scribbled"
        advice = "draw a few strokes of it" if one else "draw a few strokes of each"
    them = "it" if one else "them"
    drop = {"labels file": f"drop {them} from the labels file",
            "colours file": f"drop {them} from the colours file"}.get(class_list) if not init else None
    return (f"warning: {'class' if one else 'classes'} {head}: {', '.join(never)}; {'it' if one else 'they'} cannot "
            f"appear in the labels: {advice}" + (f", or {drop}" if drop else ""))


def _fragments(labels, names) -> list:
    import cv2

    view, step = _view(labels)
    n_px = view.size
    small = max(2, int(FRAGMENT_SHARE * n_px))
    out = []
    for i, name in enumerate(names):
        m = (view == i).astype(np.uint8)
        if not m.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        tiny = int((areas < small).sum())
        if tiny > FRAGMENTS and tiny > 0.5 * len(areas):
            out.append(f"warning: class {name} is broken into many tiny fragments ({tiny} pieces smaller than "
                       f"{small * step * step} px); add strokes of the classes around them, or raise the CRF "
                       "weight (--crf-weight) to smooth them away")
    return out
