"""Property-based fuzzing of the readers and the command with hypothesis.

Seeds are real files: a crop of the sample photo saved as PNG, JPEG and plain TIFF, and a crop of
rasterio's RGB.byte GeoTIFF (or a GeoTIFF made here when the shared data is absent). Hypothesis
truncates them, flips bytes anywhere, overwrites header bytes, or hands over random bytes, random
labels/colours text and random scribble arrays. Properties, always: no exception but
``LabelToolsError`` from a reader, no traceback and exit 0 or 2 from ``label_tools.cli.main``, no
input file changed. And where the damage is certain to be visible: a truncated file, or any byte
of a PNG changed (every byte after the signature is covered by a chunk length, type or CRC), is
never read as good and never exits 0. (A JPEG has no checksum: a flipped bit in its compressed
data cannot be detected and is not asked for.)

Example counts are kept small so the whole file runs in well under a minute.
"""
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import SAMPLE, SHARED
from label_tools.classes import load_classes
from label_tools.cli import main
from label_tools.errors import InputError, LabelToolsError
from label_tools.io import open_image
from label_tools.scribbles import read_scribbles

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=8)

H, W = 48, 64


def _seeds():
    """{kind: bytes} of small real files, made once."""
    import cv2

    d = tempfile.mkdtemp(prefix="lt_fuzz_seeds")
    try:
        photo = cv2.imread(os.path.join(SAMPLE, "beach.png"))[200: 200 + H, 300: 300 + W]
        out = {}
        for ext in ("png", "jpg", "tif"):
            p = os.path.join(d, f"s.{ext}")
            cv2.imwrite(p, photo)
            out[ext] = open_bytes(p)
        out["geotiff"] = _geotiff_seed(d, photo)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _geotiff_seed(d, photo):
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    p = os.path.join(d, "g.tif")
    src_path = os.path.join(SHARED, "geotiff_rasterio", "images", "RGB.byte.tif")
    if os.path.exists(src_path):  # a crop of a real GeoTIFF, its profile kept
        with rasterio.open(src_path) as src, warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's `*` inside rasterio
            win = Window(300, 300, W, H)
            data = src.read(window=win)
            prof = dict(src.profile, width=W, height=H, transform=src.window_transform(win))
    else:
        data = np.moveaxis(photo[..., ::-1], -1, 0)
        prof = dict(driver="GTiff", width=W, height=H, count=3, dtype="uint8", crs="EPSG:32633",
                    transform=Affine(10, 0, 500000, 0, -10, 6000000))
    with rasterio.open(p, "w", **prof) as dst:
        dst.write(data)
    return open_bytes(p)


def open_bytes(p):
    with open(p, "rb") as f:
        return f.read()


SEEDS = _seeds()
EXT = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "geotiff": ".tif"}


@contextlib.contextmanager
def workdir():
    d = tempfile.mkdtemp(prefix="lt_fuzz")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write(d, name, data):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def digest(p):
    return hashlib.sha256(open_bytes(p)).hexdigest()


# ---------------------------------------------------------------------------- mutations
kinds = st.sampled_from(sorted(SEEDS))


@st.composite
def truncated(draw):
    kind = draw(kinds)
    data = SEEDS[kind]
    cut = draw(st.integers(0, len(data) - 1))
    return kind, data[:cut]


@st.composite
def flipped(draw):
    kind = draw(kinds)
    data = bytearray(SEEDS[kind])
    n = draw(st.integers(1, 4))
    for _ in range(n):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    return kind, bytes(data)


@st.composite
def header_mutated(draw):
    kind = draw(kinds)
    data = bytearray(SEEDS[kind])
    span = min(len(data), 600)  # headers, IFDs, quantisation/Huffman tables live here
    i = draw(st.integers(0, span - 1))
    chunk = draw(st.binary(min_size=1, max_size=8))
    data[i: i + len(chunk)] = chunk
    return kind, bytes(data)


random_files = st.tuples(kinds, st.binary(min_size=0, max_size=2000))


def read_all(p):
    """Open and read everything the pipeline would; return the source."""
    src = open_image(p)
    src.read()
    src.read_display(out_shape=(max(1, src.height // 2), max(1, src.width // 2)))
    return src


def check_reader(kind, data, *, must_fail):
    with workdir() as d:
        p = write(d, "img" + EXT[kind], data)
        before = digest(p)
        try:
            read_all(p)
            ok = True
        except LabelToolsError as e:
            ok = False
            assert "\n" not in str(e) and "img" in str(e)  # one line naming the file
        assert digest(p) == before
        assert not (must_fail and ok), f"{kind}: damaged file read as good"


@FUZZ
@given(truncated())
def test_reader_truncated(case):
    kind, data = case
    check_reader(kind, data, must_fail=True)


@FUZZ
@given(flipped())
def test_reader_flipped_bytes(case):
    kind, data = case
    check_reader(kind, data, must_fail=kind == "png")  # PNG: every byte is under a CRC or a structure check


@FUZZ
@given(header_mutated())
def test_reader_mutated_header(case):
    kind, data = case
    assume(data != SEEDS[kind])
    check_reader(kind, data, must_fail=kind == "png")


@FUZZ
@given(random_files)
def test_reader_random_bytes(case):
    kind, data = case
    check_reader(kind, data, must_fail=False)


# ---------------------------------------------------------------------------- the command
def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def scribbles_png(d, shape=(H, W)):
    s = np.zeros(shape, np.uint8)
    s[2:6, 2: shape[1] // 2] = 1
    s[shape[0] - 6: shape[0] - 2, shape[1] // 2: shape[1] - 2] = 2
    p = os.path.join(d, "scr.png")
    Image.fromarray(s).save(p)
    return p


def check_cli(kind, data, *, must_fail):
    with workdir() as d:
        img = write(d, "img" + EXT[kind], data)
        scr = scribbles_png(d)
        before = {p: digest(p) for p in (img, scr)}
        out = os.path.join(d, "out")
        code, err = run_cli([img, "--scribbles", scr, "-o", out, "-q", "--crf-iter", "2"])
        assert "Traceback" not in err
        assert code in (0, 2), err
        if code == 2:
            assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
            assert not os.path.exists(out) or not os.listdir(out)
        assert {p: digest(p) for p in before} == before
        assert not (must_fail and code == 0), f"{kind}: exit 0 on a damaged file"


@FEW
@given(truncated())
def test_cli_truncated(case):
    kind, data = case
    check_cli(kind, data, must_fail=True)


@FEW
@given(st.one_of(flipped(), header_mutated()))
def test_cli_mutated(case):
    kind, data = case
    assume(data != SEEDS[kind])
    check_cli(kind, data, must_fail=kind == "png")


# ---------------------------------------------------------------------------- labels and colours files
line_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@FUZZ
@given(st.one_of(st.lists(line_text, max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8")),
                 st.binary(max_size=300)),
       st.one_of(st.none(), st.lists(st.sampled_from(["blue", "#e0c080", "tab:green", "red", "nope", "#12", "",
                                                       "0.5", "#zzzzzz", "xkcd:sky blue"]), max_size=5),
                 st.binary(max_size=100)))
def test_classes_files(labels, colors):
    with workdir() as d:
        lp = write(d, "labels.txt", labels)
        cp = None
        if colors is not None:
            cp = write(d, "colors.txt", colors if isinstance(colors, bytes) else "\n".join(colors).encode())
        try:
            c = load_classes(lp, cp)
        except InputError as e:
            assert "\n" not in str(e) and ("labels.txt" in str(e) or "colors.txt" in str(e))
        else:
            assert 1 <= len(c) <= 254 and c.colors.shape == (len(c), 3) and len(set(c.names)) == len(c)


@FEW
@given(st.lists(line_text, min_size=0, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8")))
def test_cli_random_labels_file(labels):
    with workdir() as d:
        img = write(d, "img.png", SEEDS["png"])
        scr = scribbles_png(d)
        lp = write(d, "labels.txt", labels)
        code, err = run_cli([img, "--scribbles", scr, "--labels", lp, "-o", os.path.join(d, "out"), "-q",
                             "--crf-iter", "2"])
        assert "Traceback" not in err and code in (0, 2), err
        if code == 2:
            line = err.strip()
            assert "\n" not in line and ("labels.txt" in line or "scr.png" in line), line
        assert open_bytes(lp) == labels


# ---------------------------------------------------------------------------- scribble arrays
scribble_arrays = st.sampled_from([(np.uint8, 255), (np.uint16, 300)]).flatmap(
    lambda dt: hnp.arrays(dtype=dt[0], shape=st.sampled_from([(H, W), (H, W), (H - 1, W), (H, W + 3)]),
                          elements=st.integers(0, dt[1])))


@FUZZ
@given(scribble_arrays, st.sampled_from([".png", ".tif"]), st.integers(1, 5))
def test_read_scribbles_random(arr, ext, n_classes):
    with workdir() as d:
        p = os.path.join(d, "scr" + ext)
        Image.fromarray(arr).save(p)
        before = digest(p)
        try:
            s = read_scribbles(p, (H, W), n_classes=n_classes)
        except InputError as e:
            assert "\n" not in str(e) and "scr" in str(e)
            assert arr.shape != (H, W) or arr.max() > n_classes
        else:
            assert arr.shape == (H, W) and arr.max() <= n_classes
            np.testing.assert_array_equal(s, arr)
        assert digest(p) == before


@FEW
@given(hnp.arrays(np.uint8, (H, W), elements=st.integers(0, 4)))
def test_cli_random_scribbles(arr):
    with workdir() as d:
        img = write(d, "img.png", SEEDS["png"])
        p = os.path.join(d, "scr.png")
        Image.fromarray(arr).save(p)
        lp = write(d, "labels.txt", b"a\nb\nc\n")
        code, err = run_cli([img, "--scribbles", p, "--labels", lp, "-o", os.path.join(d, "out"), "-q",
                             "--crf-iter", "2"])
        assert "Traceback" not in err and code in (0, 2), err
        if arr.max() > 3 or len(set(np.unique(arr)) - {0}) < 2:
            assert code == 2 and "scr.png" in err, err  # too high a class, or fewer than two classes
        if code == 2:
            assert "\n" not in err.strip() and "scr.png" in err, err


def test_seeds_are_good():
    """The unmutated seeds read and label cleanly (so failures above come from the mutations)."""
    for kind, data in SEEDS.items():
        check_reader(kind, data, must_fail=False)
        with workdir() as d:
            p = write(d, "img" + EXT[kind], data)
            read_all(p)
        check_cli(kind, data, must_fail=False)


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_every_png_byte_is_guarded(kind):
    """Deterministic sweep: flipping the byte at each of 40 offsets spread over the file."""
    data = SEEDS[kind]
    for i in np.linspace(0, len(data) - 1, 40).astype(int):
        mutated = bytearray(data)
        mutated[i] ^= 0xFF
        check_reader(kind, bytes(mutated), must_fail=kind == "png")
