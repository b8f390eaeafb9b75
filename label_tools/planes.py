"""``--plane``: which plane of a microscopy stack or multi-page TIFF is labelled.

A stack keeps its z-slices and time points (and, in an ImageJ hyperstack or OME-TIFF, its channels) in TIFF
pages; one plane at a time is labelled. Without ``--plane`` that is the first (z-slice 1 at time point 1, or
page 1), with the outputs named as always; ``--plane`` chooses another, 1-based as Fiji shows them, and the
outputs' stem gains the plane (``_z03``, ``_t02``, ``_z03_t02``, ``_p03`` for a page), so planes never share
outputs or scribble files.

Nothing here reads pixels: :func:`parse_plane` checks the option's text, :func:`resolve_plane` puts it on a
stack's layout (:func:`label_tools.io._stack_layout`) or page count.
"""
from __future__ import annotations

import os
import re

from .errors import OptionError

#: what ``--plane`` takes, for messages and ``--help``
PLANE_FORMS = "N (z-slice N, or time point N of a time series, or page N), Z,T, or z3 / t2 / z3,t2 / p3"

_TOKEN = re.compile(r"(?:([ztp])=?)?(\d+)")


def parse_plane(text: str) -> tuple:
    """``--plane`` as given -> its parts.

    Parameters
    ----------
    text : str
        ``N``, ``Z,T`` (1-based numbers), or with the axis letters the output names carry: ``z3``, ``t2``,
        ``z3,t2``, ``p3`` (a page); case and spaces are ignored, ``z=3`` is ``z3``.

    Returns
    -------
    tuple of (axis, number)
        ``axis`` is ``'z'``, ``'t'``, ``'p'`` or None (by position); numbers are 1-based.

    Raises
    ------
    ValueError
        Anything else, with what was expected.
    """
    s = str(text).replace(" ", "").lower()
    expected = f"expected a plane such as 3, 3,2, t2 or z3,t2 (1-based, as Fiji shows them), got {text!r}"
    parts = s.split(",")
    if not s or len(parts) > 2:
        raise ValueError(expected)
    out = []
    for p in parts:
        m = _TOKEN.fullmatch(p)
        if m is None:
            raise ValueError(expected)
        if int(m.group(2)) < 1:
            raise ValueError(f"expected 1-based numbers (the first z-slice, time point or page is 1), got {text!r}")
        out.append((m.group(1), int(m.group(2))))
    axes = [a for a, _ in out]
    if len(out) == 2 and (None in axes) != (axes == [None, None]):
        raise ValueError(f"expected either numbers (3,2) or letters on both (z3,t2), got {text!r}")
    if len(out) == 2 and axes[0] is not None and (axes[0] == axes[1] or "p" in axes):
        raise ValueError(f"expected one z-slice and one time point (z3,t2) or a single page (p3), got {text!r}")
    return tuple(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def stack_counts(lay: dict) -> str:
    """'2 channels, 3 z-slices, 2 time points' of a layout (z-slices and time points when more than one)."""
    parts = [_plural(lay["C"], "channel")] if lay["C"] > 1 else []
    parts += [_plural(lay[k], w) for k, w in (("Z", "z-slice"), ("T", "time point")) if lay[k] > 1]
    return ", ".join(parts) or "1 plane"


def describe_planes(lay: dict | None, pages: int = 1) -> str:
    """What planes an image has: 'an ImageJ hyperstack of 2 channels, 3 z-slices, 2 time points', 'a multi-page
    TIFF of 5 pages', 'an image of one plane' (``lay``: :func:`label_tools.io._stack_layout`, None for none)."""
    if lay is not None:
        return f"an {lay['kind']} of {stack_counts(lay)}"
    return f"a multi-page TIFF of {pages} pages" if pages > 1 else "an image of one plane"


def plane_usage(lay: dict | None, pages: int = 1) -> str:
    """How ``--plane`` is given for this stack: '--plane Z,T: Z from 1 to 3, T from 1 to 2'."""
    if lay is None:
        return f"--plane N: a page from 1 to {pages}"
    z, t = lay["Z"], lay["T"]
    if z > 1 and t > 1:
        return f"--plane Z,T: Z from 1 to {z}, T from 1 to {t}"
    if z > 1:
        return f"--plane Z: a z-slice from 1 to {z}"
    if t > 1:
        return f"--plane T: a time point from 1 to {t}"
    return "no --plane (it has one plane)"


def _tag(letter: str, n: int, count: int) -> str:
    return f"_{letter}{n:0{max(2, len(str(count)))}d}"


def resolve_plane(text: str, path: str, lay: dict | None, pages: int) -> dict:
    """``--plane`` ``text`` on the image ``path`` of stack layout ``lay`` (None: not a hyperstack) and
    ``pages`` TIFF pages (planes of ``lay``).

    Returns
    -------
    dict
        ``text`` (as given, spaces dropped), ``z``, ``t`` (1-based; None for a page), ``page`` (1-based,
        a plain multi-page TIFF's; None for a stack), ``what`` ('z-slice 3 at time point 2', 'page 3'),
        ``suffix`` ('_z03_t02', '_p03'; '' when the stack has one plane).

    Raises
    ------
    OptionError
        Not a stack, malformed, or out of range: one line naming ``--plane``, the file and what it has.
    """
    given = str(text).replace(" ", "")
    try:
        spec = parse_plane(given)
    except ValueError as e:
        raise OptionError(f"--plane {given}: {e}") from None
    head = f"--plane {given}: image {path!r}"
    if lay is None and pages <= 1:
        raise OptionError(f"{head} is not a stack (one plane: no z-slices, time points or TIFF pages); leave out "
                          "--plane")
    if lay is None:  # a multi-page TIFF without a description of its axes: planes are pages
        if len(spec) > 1 or spec[0][0] not in (None, "p"):
            raise OptionError(f"{head} is a multi-page TIFF of {pages} pages whose description names no z-slices "
                              f"or time points: expected {plane_usage(None, pages)}")
        n = spec[0][1]
        if n > pages:
            raise OptionError(f"{head} has {pages} pages (a multi-page TIFF): expected {plane_usage(None, pages)}")
        return dict(text=given, z=None, t=None, page=n, what=f"page {n} of {pages}", suffix=_tag("p", n, pages))
    zs, ts = lay["Z"], lay["T"]
    what_it_is = f"{lay['kind']} of {stack_counts(lay)}"
    if spec[0][0] == "p":
        raise OptionError(f"{head} is an {what_it_is}: its planes are z-slices and time points, not pages; "
                          f"expected {plane_usage(lay)}")
    if spec[0][0] is not None:
        axes = dict(spec)
        z, t = axes.get("z", 1), axes.get("t", 1)
    elif len(spec) == 2:
        (_, z), (_, t) = spec
    elif zs > 1 or ts == 1:  # one number: the z-slice (at time point 1); a time series' time point
        z, t = spec[0][1], 1
    else:
        z, t = 1, spec[0][1]
    if z > zs or t > ts:
        has = " and ".join(_plural(n, w) for n, w in ((zs, "z-slice"), (ts, "time point")))
        raise OptionError(f"{head} has {has} (an {lay['kind']}): expected {plane_usage(lay)}")
    where = [f"{w} {n}" for n, count, w in ((z, zs, "z-slice"), (t, ts, "time point")) if count > 1]
    suffix = "".join(_tag(k, n, count) for k, n, count in (("z", z, zs), ("t", t, ts)) if count > 1)
    return dict(text=given, z=z, t=t, page=None, what=" at ".join(where) or "its only plane", suffix=suffix)


def outputs_named(plane: dict | None, out_stem: str) -> str:
    """'; outputs named cells_z03_...' for a plane named so (``out_stem``: the outputs' stem, the plane's tag
    included), '' for none (the first plane by default)."""
    if not plane or not plane["suffix"]:
        return ""
    return f"; outputs named {out_stem}_..."


def check_readable_plane(text: str | None, path: str) -> None:
    """Refuse ``--plane`` on an image read as a photo (JPEG, PNG, ...): one plane, never a stack."""
    if text is not None:
        given = str(text).replace(" ", "")
        kind = os.path.splitext(path)[1][1:].upper() or "photo"
        raise OptionError(f"--plane {given}: image {path!r} is not a stack (a {kind} image of one plane); leave out "
                          "--plane")
