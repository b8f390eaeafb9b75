import numpy as np
import pytest

from label_tools import session as sess
from label_tools.errors import InputError
from label_tools.session import Session

WINDOWS = [(0, 40, 0, 50), (0, 40, 50, 90), (40, 60, 0, 50)]


def make(**kw):
    return Session((60, 90), 3, WINDOWS, **kw)


def stroke(s, pts):
    s.begin_stroke(*pts[0])
    for p in pts[1:]:
        s.extend_stroke(*p)
    return s.end_stroke()


def test_stroke_paints_class_ids_with_round_brush():
    s = make(brush=3)
    assert stroke(s, [(10, 5), (10, 30)])
    assert set(np.unique(s.scribbles)) == {0, 1}
    rows = np.nonzero(s.scribbles[:, 20])[0]
    assert rows.min() == 8 and rows.max() == 12  # radius 3 -> 5 px wide
    assert not s.scribbles[:, 40:].any()


def test_strokes_stay_inside_current_window():
    s = make(brush=5)
    stroke(s, [(20, 45), (20, 49)])
    assert not s.scribbles[:, 50:].any()


def test_undo_removes_only_last_stroke_even_where_overlapping():
    s = make(brush=2)
    stroke(s, [(10, 5), (10, 40)])
    s.set_class(2)
    stroke(s, [(5, 20), (30, 20)])  # crosses the first stroke
    after_two = s.scribbles.copy()
    assert (after_two == 2).any() and (after_two == 1).any()
    assert s.undo()
    assert not (s.scribbles == 2).any()
    assert s.scribbles[10, 20] == 1  # the crossing pixel is back to class 1, not erased
    assert s.undo() and not s.scribbles.any()
    assert not s.undo()


def test_click_without_move_paints_a_dot_and_empty_stroke_not_recorded():
    s = make(brush=1)
    assert stroke(s, [(3, 3)])
    assert s.scribbles.sum() == 1
    assert not stroke(s, [(3, 3)])  # same pixel again: nothing changed, nothing to undo
    assert len(s.strokes) == 1


def test_class_then_window_cycling_to_done():
    s = make()
    assert [s.next_class() for _ in range(2)] == ["class", "class"]
    assert s.next_class() == "window" and s.window_index == 1 and s.class_index == 0
    assert s.next_window() == "window" and s.window_index == 2
    assert s.previous_window() and s.window_index == 1
    s.next_window()
    for _ in range(2):
        s.next_class()
    assert s.next_class() == "done" and s.done


def test_brush_limits_and_class_jump():
    s = make(brush=2)
    for _ in range(5):
        s.change_brush(-1)
    assert s.brush == 1
    s.change_brush(+500)
    assert s.brush == 200
    assert s.set_class(3) and s.class_index == 2
    assert not s.set_class(4) and s.class_index == 2
    assert "class 3/3" in s.status() and "window 1/3" in s.status()


def test_save_load_resume_position(tmp_path):
    s = make()
    s.next_window()
    s.set_class(2)
    stroke(s, [(10, 60), (30, 80)])
    sess.save(s, str(tmp_path), "img", seconds=12.5)
    scr, state = sess.load(str(tmp_path), "img", (60, 90), 3)
    np.testing.assert_array_equal(scr, s.scribbles)
    t = make(scribbles=scr)
    t.restore(state)
    assert (t.window_index, t.class_index) == (1, 1) and state["annotation_seconds"] == 12.5
    assert sess.load(str(tmp_path), "other", (60, 90), 3) is None


def test_no_windows_is_an_error():
    with pytest.raises(InputError, match="no window worth labelling"):
        Session((10, 10), 2, [])


def test_window_worth_skips_uniform_and_nodata():
    from label_tools.annotate import window_worth

    flat = np.full((10, 12, 3), 7, np.uint8)
    assert not window_worth(flat, None)
    busy = flat.copy()
    busy[3, 4] = 9
    assert window_worth(busy, None)
    valid = np.zeros((10, 12), bool)
    assert not window_worth(busy, valid)  # all no-data
    valid[0, 0] = valid[0, 1] = True
    assert not window_worth(busy, valid)  # the data that is there is uniform
    valid[3, 4] = True
    assert window_worth(busy, valid)
