import numpy as np
import pytest

from label_tools.classes import load_classes, read_colors, read_labels
from label_tools.errors import InputError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_labels_blank_lines_ignored(tmp_path):
    assert read_labels(write(tmp_path, "l.txt", "water\n\n  land \n\n")) == ["water", "land"]


def test_colors_names_and_hex(tmp_path):
    c = read_colors(write(tmp_path, "c.txt", "red\n#00ff00\ntab:blue\n\n#00f\n"))
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    np.testing.assert_array_equal(c[:2], [[255, 0, 0], [0, 255, 0]])
    np.testing.assert_array_equal(c[2], [31, 119, 180])
    np.testing.assert_array_equal(c[3], [0, 0, 255])


def test_unknown_colour_names_file_and_entry(tmp_path):
    p = write(tmp_path, "c.txt", "red\nnotacolour\n")
    with pytest.raises(InputError, match=r"c\.txt.*entry 2.*'notacolour'"):
        read_colors(p)


def test_count_mismatch(tmp_path):
    lab = write(tmp_path, "l.txt", "a\nb\nc\n")
    col = write(tmp_path, "c.txt", "red\nblue\n")
    with pytest.raises(InputError, match="2 colours but labels file .* 3 classes"):
        load_classes(lab, col)


def test_default_names_and_colours():
    c = load_classes(n_classes=3)
    assert c.names == ("class1", "class2", "class3")
    assert c.colors.shape == (3, 3) and len(np.unique(c.colors, axis=0)) == 3


def test_many_default_colours_distinct():
    c = load_classes(n_classes=30)
    assert len(np.unique(c.colors, axis=0)) == 30


def test_duplicate_and_missing_labels(tmp_path):
    with pytest.raises(InputError, match="twice"):
        read_labels(write(tmp_path, "l.txt", "a\na\n"))
    with pytest.raises(InputError, match="does not exist"):
        read_labels(str(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match="empty"):
        read_labels(write(tmp_path, "e.txt", "\n\n"))
