"""The annotator's key table: one table drives both the key dispatch and the help overlay.

Headless: the annotator's windows are never opened; drawing and autosave are recorded instead
(the real window is driven under Xvfb in test_annotate_window.py and test_uncertainty_window.py).
"""
import numpy as np
import pytest

pytest.importorskip("cv2")

from label_tools import annotate, session as sess  # noqa: E402
from label_tools.annotate_mpl import MplAnnotator  # noqa: E402
from label_tools.annotate_prelabels import with_prelabels  # noqa: E402
from label_tools.annotate_uncertainty import with_uncertainty  # noqa: E402
from label_tools.tiling import annotation_windows  # noqa: E402

ESC, ENTER = 27, 13


def test_help_is_the_key_table():
    rows = [f"{k.label}\t{k.text}" for k in annotate.KEYS]
    assert annotate.HELP[1:] == rows
    chars = [c for k in annotate.KEYS for c in k.chars]
    assert len(chars) == len(set(chars)), "a key in two rows of the table"


@pytest.mark.parametrize("base", [annotate.Annotator, MplAnnotator])
def test_every_key_has_its_action_in_the_composed_annotator(base):
    cls = with_uncertainty(with_prelabels(base))
    missing = [k.action for k in annotate.KEYS if not callable(getattr(cls, k.action, None))]
    assert not missing
    # without the mixins the keys they bring are not bound (and so ignored)
    assert not hasattr(annotate.Annotator, "key_uncertainty")
    assert not hasattr(annotate.Annotator, "key_prelabels")


def _headless(order="rows", most_uncertain=None, prelabels=None):
    cls = with_uncertainty(with_prelabels(annotate.Annotator))
    ann = object.__new__(cls)
    windows = annotation_windows((200, 300), 100)
    ann.s = sess.Session((200, 300), 3, windows)
    ann.log = []
    ann.order = order
    ann.preview = None
    ann.show_help = ann.show_preview = ann.show_uncertainty = False
    ann.show_prelabels = True
    ann.prelabels = prelabels
    ann._preview_labels = None
    ann.save = lambda state_only=False: ann.log.append("state" if state_only else "save")
    ann.render_annotation = lambda: ann.log.append("draw")
    ann.render_overview = lambda: ann.log.append("overview")
    ann.skip_unworthy = lambda direction=+1: None
    ann._most_uncertain = lambda *, unvisited: most_uncertain
    ann._uncertainty = lambda: None if most_uncertain is None else np.zeros((1, 1), np.float32)
    return ann


def test_keys_dispatch_through_the_table():
    ann = _headless()
    ann.on_key(ord("x"))  # in no row: nothing happens
    assert ann.log == []
    ann.on_key(ord("h"))
    assert ann.show_help and ann.log == ["state", "draw", "overview"]
    ann.on_key(ord("H"))  # upper case is the same key
    assert not ann.show_help
    brush = ann.s.brush
    ann.on_key(ord("+"))
    assert ann.s.brush == brush + 1
    ann.on_key(ord("-"))
    assert ann.s.brush == brush
    ann.on_key(ord("2"))
    assert ann.s.class_index == 1
    ann.log.clear()
    ann.on_key(ord("l"))  # no pre-labels in this run: L is ignored
    assert ann.log == [] and ann.show_prelabels
    for _ in range(2):
        ann.on_key(ENTER)
    assert ann.s.window_index == 1 and ann.s.class_index == 0 and ann.log[-3:] == ["save", "draw", "overview"]
    ann.on_key(ord("b"))
    assert ann.s.window_index == 0
    ann.on_key(ord("s"))
    assert ann.s.window_index == 1
    ann.on_key(ord("q"))
    assert ann.s.done


def test_prelabels_key_toggles_only_with_prelabels():
    ann = _headless(prelabels=np.zeros((200, 300), np.uint8))
    ann.on_key(ord("L"))
    assert not ann.show_prelabels and ann.log == ["draw"]


@pytest.mark.parametrize("key", [ESC, ord("s")])
def test_uncertainty_order_goes_to_the_least_certain_window(key):
    ann = _headless(order="uncertainty", most_uncertain=5)
    if key == ESC:
        ann.on_key(ESC)  # class 1 of 3: still window 0
        ann.on_key(ESC)
        assert ann.s.window_index == 0
        ann.on_key(ESC)  # the last class: the window is left
    else:
        ann.on_key(key)
    assert ann.s.window_index == 5 and ann.s.class_index == 0 and 0 in ann.s.visited
    # row order (or no model yet) keeps the next window
    ann = _headless(order="rows", most_uncertain=5)
    ann.on_key(ord("s"))
    assert ann.s.window_index == 1
    ann = _headless(order="uncertainty", most_uncertain=None)
    ann.on_key(ord("s"))
    assert ann.s.window_index == 1


def test_n_jumps_to_the_most_uncertain_window():
    ann = _headless(most_uncertain=4)
    ann._go = lambda j: setattr(ann.s, "window_index", j)
    ann.on_key(ord("n"))
    assert ann.s.window_index == 4 and ann.log == ["draw", "overview"]
    ann.log.clear()
    ann.on_key(ord("u"))
    assert ann.show_uncertainty and ann.log == ["draw", "overview"]


def test_readme_key_table_lists_every_key():
    """README's key table (Use, the annotator) names every key of the table the annotator runs on."""
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("| key / mouse | action |")
    rows = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    cells = [r.split("|")[1].strip() for r in rows]
    words = [set(c.replace("(", " ").split()) for c in cells]
    for k in annotate.KEYS:
        names = [k.label] if k.label == "+ / -" else k.label.split("/")
        for name in names:
            assert name in cells or any(name in w for w in words), f"README's key table lacks {name!r}"


def test_u_and_n_say_when_there_is_no_model_yet(caplog):
    """Before two classes are scribbled there is no quick model: N says so (it did nothing, silently)
    and the status line's mode says so while the overlay is on (it showed 'uncertainty' over nothing)."""
    import logging

    from label_tools.annotate_uncertainty import NO_MODEL

    ann = _headless(most_uncertain=None)
    ann._uncertainty = lambda: None
    ann._go = lambda j: setattr(ann.s, "window_index", j)
    with caplog.at_level(logging.INFO, logger="label_tools"):
        ann.on_key(ord("n"))
    assert ann.s.window_index == 0 and NO_MODEL in caplog.text
    ann.show_uncertainty, ann._has_map = True, False
    assert ann._mode() == f"uncertainty: {NO_MODEL}"
    ann._has_map = True
    assert ann._mode() == "uncertainty"
