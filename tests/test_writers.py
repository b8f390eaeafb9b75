import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from label_tools import writers
from label_tools.classes import load_classes
from label_tools.files import atomic_path


def test_mat_streamed_blocks_read_back(tmp_path):
    """Image-sized matrices are written column block by column block; loadmat must read them exactly."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (301, 170)).astype(np.uint8)
    b = rng.integers(0, 256, (301, 170)).astype(np.uint8)
    p = tmp_path / "x.mat"
    cl = load_classes(n_classes=4)
    writers.write_mat(str(p), scribbles=a, labels=b, classes=cl, probs=np.full((4, 3, 2), 0.25, np.float32))
    m = loadmat(p)
    np.testing.assert_array_equal(m["sparse"], a)
    np.testing.assert_array_equal(m["class"], b)
    assert m["sparse"].dtype == np.uint8 and m["preds"].shape == (4, 3, 2)
    # force many tiny blocks, odd name length, 1-row matrix
    with open(p, "wb") as f:
        f.write(b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM")
        writers._write_mat_uint8(f, "abcde", a, block_bytes=1000)
        writers._write_mat_uint8(f, "r", b[:1], block_bytes=1)
    m = loadmat(p)
    np.testing.assert_array_equal(m["abcde"], a)
    np.testing.assert_array_equal(m["r"], b[:1])



def test_mat_matrices_compressed_fast_and_read_back(tmp_path):
    """Every matrix of the .mat is one compressed element at zlib level 1 (fast; scipy's own is 6), and the
    --save-probs matrices (float32, 3-D and 2-D) read back exactly with the names cell between them."""
    import struct

    rng = np.random.default_rng(1)
    sparse = rng.integers(0, 4, (37, 23)).astype(np.uint8)
    labels = rng.integers(0, 3, (37, 23)).astype(np.uint8)
    probs = rng.random((3, 37, 23)).astype(np.float32)
    unc = rng.random((37, 23)).astype(np.float32)
    p = tmp_path / "x.mat"
    cl = load_classes(n_classes=3)
    writers.write_mat(str(p), scribbles=sparse, labels=labels, classes=cl, probs=probs[:, ::2, ::2],
                      extra={"probs": probs, "uncertainty": unc})
    m = loadmat(p)
    np.testing.assert_array_equal(m["probs"], probs)
    np.testing.assert_array_equal(m["uncertainty"], unc)
    np.testing.assert_array_equal(m["preds"], probs[:, ::2, ::2])
    np.testing.assert_array_equal(m["class"], labels)
    assert [str(n[0]) for n in m["labels"].ravel()] == list(cl.names)
    raw = p.read_bytes()
    kinds, pos = [], 128
    while pos < len(raw):
        kind, n = struct.unpack("<II", raw[pos: pos + 8])
        if kind == 15:  # miCOMPRESSED: a zlib stream whose second byte says the level (0x01: fastest)
            assert raw[pos + 8] == 0x78 and raw[pos + 9] == 0x01
        kinds.append(kind)
        pos += 8 + n + (0 if kind == 15 else (8 - n % 8) % 8)
    assert pos == len(raw)
    assert kinds == [15, 15, 15, 15, 14, 15, 15]  # colors, preds, probs, uncertainty, names, sparse, class

def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.png"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(p)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("interrupted")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["out.png"]


def test_overlay_legend_and_thin_strokes(tmp_path):
    cl = load_classes(n_classes=3)
    img = np.full((400, 600, 3), 128, np.uint8)
    scr = np.zeros((4000, 6000), np.uint8)
    scr[2000, 100:5000] = 2  # a 1-px stroke on an image 10x larger than the figure
    lab = np.zeros((4000, 6000), np.uint8)
    lab[:, 3000:] = 1
    p = tmp_path / "o.png"
    writers.write_overlay(str(p), img, scr, lab, cl, title="t")
    o = np.array(Image.open(p))[..., :3].astype(int)
    col = cl.colors.astype(int)
    assert (np.abs(o - col[1]).sum(-1) == 0).sum() > 400  # stroke visible at figure size + legend box
    assert (np.abs(o - col[2]).sum(-1) == 0).sum() > 50  # class 3 legend box though absent from labels


def test_report_fractions(tmp_path):
    lab = np.zeros((10, 20), np.uint8)
    lab[:, 15:] = 1
    lab[0, 0] = 255
    p = tmp_path / "r.txt"
    writers.write_report(str(p), image_path="x.png", shape=(10, 20), classes=load_classes(n_classes=3), labels=lab,
                         annotation_seconds=3.21, processing_seconds=1, settings={"a": 1})
    t = p.read_text()
    assert "class1: 0.748744 (149 px)" in t and "class2: 0.251256 (50 px)" in t and "class3: 0.000000 (0 px)" in t
    assert "no-data: 1 px" in t and "annotation time: 3.2 s" in t
