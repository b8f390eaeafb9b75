"""Class names and display colours: labels file + colours file -> :class:`Classes`."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Colours used when no colours file is given (matplotlib's "tab10" cycle, then "tab20"'s light tints).
DEFAULT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)

MAX_CLASSES = 254  # ids 0..253; 255 is reserved for no-data in label images


@dataclass(frozen=True)
class Classes:
    """The classes of one labelling job.

    Attributes
    ----------
    names : tuple of str
        Class names in labels-file order; class id ``i`` (0-based) is ``names[i]`` and is drawn
        as scribble value ``i + 1``.
    colors : ndarray of uint8, shape (K, 3)
        RGB colour of each class.
    """

    names: tuple
    colors: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @property
    def hex_colors(self) -> list:
        return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in self.colors]


#: Text of labels/colours files that can be read only once (a pipe, as ``--labels <(printf ...)`` gives),
#: by path and pipe: the run reads such a file in several places (option checks, the job), and a second
#: read of a drained pipe would find it empty.
_READ_ONCE: dict = {}


def read_text(path: str) -> str:
    """The text of a labels or colours file (UTF-8, a BOM dropped); a pipe or other file that is not a
    regular file is read once and its text kept for the next call with the same path and pipe.

    Raises ``OSError`` / ``UnicodeDecodeError`` as ``open`` and ``read`` do."""
    try:
        st = os.stat(path)
        key = None if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) else (path, st.st_dev, st.st_ino)
    except OSError:
        key = None  # open() below says what is wrong
    if key in _READ_ONCE:
        return _READ_ONCE[key]
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    if key is not None:
        _READ_ONCE[key] = text
    return text


def _read_lines(path: str, what: str) -> list:
    try:
        lines = [ln.strip() for ln in read_text(path).splitlines()]
    except FileNotFoundError:
        raise InputError(f"{what} file {path!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} file {path!r} is a directory; give the text file, one entry per line") from None
    except UnicodeDecodeError as e:  # a Windows editor's cp1252/Latin-1 names, or a binary file
        raise InputError(f"{what} file {path!r} is not UTF-8 text (it holds byte {e.object[e.start]:#04x}): save it "
                         "as UTF-8 (or check it is the right file)") from None
    except OSError as e:
        raise InputError(f"{what} file {path!r} cannot be read as text ({e})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#!")]
    if not lines:
        raise InputError(f"{what} file {path!r} is empty: expected one entry per line")
    return lines


def read_labels(path: str) -> list:
    """Class names from a labels file: one name per line, blank lines ignored.

    Raises
    ------
    InputError
        If the file is missing, unreadable, empty, names a class twice or has more than 254.
    """
    names = _read_lines(path, "labels")
    seen = set()
    for n in names:
        if n in seen:
            raise InputError(f"labels file {path!r} names class {n!r} twice: class names must be unique")
        seen.add(n)
    if len(names) > MAX_CLASSES:
        raise InputError(f"labels file {path!r} has {len(names)} classes; at most {MAX_CLASSES} are supported")
    return names


def parse_color(text: str) -> np.ndarray:
    """One colour (a matplotlib colour name such as ``"tab:blue"`` or ``"navy"``, or ``#rgb``/``#rrggbb``)
    -> uint8 RGB array of shape (3,). Raises ``ValueError`` for an unknown colour."""
    from matplotlib.colors import to_rgb  # lazy: matplotlib is slow to import

    rgb = to_rgb(text.strip())
    return np.round(np.asarray(rgb) * 255).astype(np.uint8)


def read_colors(path: str) -> np.ndarray:
    """Colours from a colours file, one matplotlib colour name or ``#hex`` per line.

    Returns
    -------
    colors : ndarray of uint8, shape (K, 3)
    """
    out, seen = [], {}
    for i, line in enumerate(_read_lines(path, "colours"), 1):
        try:
            rgb = parse_color(line)
        except ValueError:
            raise InputError(
                f"colours file {path!r}, entry {i}: {line!r} is not a colour; expected a matplotlib "
                "colour name (e.g. 'blue', 'tab:green') or #rrggbb") from None
        key = "#{:02x}{:02x}{:02x}".format(*rgb)
        if key in seen:  # two classes drawn alike, and colour scribbles in it would all go to the first
            j, first = seen[key]
            raise InputError(
                f"colours file {path!r}: entries {j} ({first!r}) and {i} ({line.strip()!r}) are the same "
                f"colour {key}; give each class a colour of its own")
        seen[key] = (i, line.strip())
        out.append(rgb)
    return np.array(out, np.uint8).reshape(-1, 3)


def default_colors(n: int) -> np.ndarray:
    """``n`` distinct default colours, uint8 array of shape (n, 3)."""
    base = [parse_hex(h) for h in DEFAULT_COLORS]
    out = [base[i % len(base)] for i in range(n)]
    if n > len(base):  # beyond the palette: spread hues so classes stay distinguishable
        import colorsys

        out = out[: len(base)] + [
            np.round(np.array(colorsys.hsv_to_rgb((i * 0.618) % 1, 0.65, 0.9)) * 255).astype(np.uint8)
            for i in range(n - len(base))]
    return np.array(out, np.uint8).reshape(-1, 3)


def parse_hex(h: str) -> np.ndarray:
    h = h.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], np.uint8)


def load_classes(labels: str | None = None, colors: str | None = None, *, n_classes: int | None = None) -> Classes:
    """Build the classes of a job from the optional labels and colours files.

    Parameters
    ----------
    labels : str, optional
        Labels file. Without it, classes are named ``class1 .. classK`` with ``K = n_classes``.
    colors : str, optional
        Colours file with exactly one colour per class. Without it, :func:`default_colors`.
    n_classes : int, optional
        Number of classes when there is no labels file (the largest scribble value).

    Raises
    ------
    InputError
        If the files disagree on the number of classes, or neither gives one.
    """
    if labels is not None:
        names = read_labels(labels)
    elif n_classes is not None:
        if not 1 <= n_classes <= MAX_CLASSES:
            raise InputError(f"expected 1..{MAX_CLASSES} classes, got {n_classes}")
        names = [f"class{i}" for i in range(1, n_classes + 1)]
    elif colors is not None:
        names = [f"class{i}" for i in range(1, len(read_colors(colors)) + 1)]
    else:
        raise InputError("no classes: give a labels file (--labels) or scribbles to count them from")
    if colors is not None:
        cols = read_colors(colors)
        if len(cols) != len(names):
            src = f"labels file {labels!r}" if labels else "the scribbles"
            raise InputError(
                f"colours file {colors!r} has {len(cols)} colour{'' if len(cols) == 1 else 's'} but {src} gives "
                f"{len(names)} class{'' if len(names) == 1 else 'es'}: "
                "give one colour per class, in the same order")
    else:
        cols = default_colors(len(names))
    return Classes(tuple(names), cols)
