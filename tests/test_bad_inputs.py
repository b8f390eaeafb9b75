"""The bad-input matrix: every case is run through the real command and must end cleanly.

Each case builds its inputs (and, where it matters, an earlier output set) in a fresh folder, runs
``label-image``, and asserts: the exit code; exactly one line on stderr naming the file or option
concerned; no new file anywhere in the folder (no output, temporary, lock or staging directory);
every input and earlier output byte for byte unchanged.

Categories: images (damaged, lying, empty, no-data), scribble files, labels and colours files,
options, output directories, signals.
"""
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene, scene_scribbles
from label_tools.cli import main
from label_tools.files import LOCK_SUFFIX

H, W = 90, 130


def tree(root):
    """{relative path: sha256 or 'dir'} of everything under root."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for d in dns:
            out[os.path.relpath(os.path.join(dp, d), root) + "/"] = "dir"
        for f in fns:
            p = os.path.join(dp, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------- input makers
class Job:
    """A folder with a good image, scribbles, labels and colours; cases spoil one thing."""

    def __init__(self, root):
        self.root = root
        self.d = root / "in"
        self.d.mkdir()
        img, mask = make_scene(H, W)
        self.img_arr, self.mask = img, mask
        Image.fromarray(img).save(self.d / "scene.png")
        Image.fromarray(scene_scribbles(mask)).save(self.d / "scribbles.png")
        (self.d / "classes.txt").write_text("water\nsand\ngrass\n")
        (self.d / "colors.txt").write_text("blue\n#e0c080\ntab:green\n")
        self.image = self.d / "scene.png"
        self.scribbles = self.d / "scribbles.png"
        self.labels = self.d / "classes.txt"
        self.colors = self.d / "colors.txt"
        self.out = root / "out"

    def argv(self, *extra, image=None, scribbles="default", labels="default", colors="default", out="default"):
        a = [str(image or self.image)]
        if scribbles is not None:
            a += ["--scribbles", str(self.scribbles if scribbles == "default" else scribbles)]
        if labels is not None:
            a += ["--labels", str(self.labels if labels == "default" else labels)]
        if colors is not None:
            a += ["--colors", str(self.colors if colors == "default" else colors)]
        if out is not None:
            a += ["-o", str(self.out if out == "default" else out)]
        return a + ["-q", *extra]

    def write(self, name, data: bytes):
        p = self.d / name
        p.write_bytes(data)
        return p


def png_bytes(arr):
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    return buf.tobytes()


def jpeg_bytes(arr):
    import cv2

    ok, buf = cv2.imencode(".jpg", arr[..., ::-1] if arr.ndim == 3 else arr)
    return buf.tobytes()


def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def lying_png(w, h):
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))


def flip_in_idat(data):
    i = data.index(b"IDAT") + 40
    return data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:]


def jpeg_sof_size(data, w, h):
    for m in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(m)
        if i > 0:
            return data[: i + 5] + struct.pack(">HH", h, w) + data[i + 9:]
    raise AssertionError("no SOF")


def geotiff(path, arr, **kw):
    import rasterio
    from affine import Affine

    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    prof = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=str(arr.dtype),
                crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000), **kw)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)
    return path


# ---------------------------------------------------------------------------- the cases
# each: name -> function(job) returning (argv, expected exit code, [strings the one line must contain])
CASES = {}


def case(name):
    def deco(f):
        CASES[name] = f
        return f
    return deco


# -- images
@case("image-missing")
def _(j):
    return j.argv(image=j.d / "nope.png"), 2, ["nope.png", "does not exist"]


@case("image-is-directory")
def _(j):
    (j.d / "adir.png").mkdir()
    return j.argv(image=j.d / "adir.png"), 2, ["folder"]  # a folder of images is a batch


@case("image-empty-file")
def _(j):
    return j.argv(image=j.write("empty.png", b"")), 2, ["empty.png"]


@case("image-text-as-png")
def _(j):
    return j.argv(image=j.write("text.png", b"hello, I am not a picture\n" * 20)), 2, ["text.png"]


@case("image-png-truncated-half")
def _(j):
    b = png_bytes(j.img_arr)
    return j.argv(image=j.write("half.png", b[: len(b) // 2])), 2, ["half.png", "truncated"]


@case("image-png-truncated-header-only")
def _(j):
    return j.argv(image=j.write("hdr.png", png_bytes(j.img_arr)[:33])), 2, ["hdr.png", "truncated"]


@case("image-png-no-iend")
def _(j):
    return j.argv(image=j.write("noend.png", png_bytes(j.img_arr)[:-12])), 2, ["noend.png", "truncated"]


@case("image-png-crc-error")
def _(j):
    return j.argv(image=j.write("crc.png", flip_in_idat(png_bytes(j.img_arr)))), 2, ["crc.png", "CRC"]


@case("image-png-huge-declared")
def _(j):
    return j.argv(image=j.write("huge.png", lying_png(200000, 200000))), 2, ["huge.png", "200000 x 200000",
                                                                            "tiled GeoTIFF"]


@case("image-png-zero-width")
def _(j):
    return j.argv(image=j.write("zero.png", lying_png(0, 10))), 2, ["zero.png", "0 x 10"]


@case("image-png-named-jpg-truncated")
def _(j):
    b = png_bytes(j.img_arr)
    return j.argv(image=j.write("liar.jpg", b[: len(b) // 3])), 2, ["liar.jpg", "truncated"]


@case("image-jpeg-truncated-half")
def _(j):
    b = jpeg_bytes(j.img_arr)
    return j.argv(image=j.write("half.jpg", b[: len(b) // 2])), 2, ["half.jpg", "truncated"]


@case("image-jpeg-truncated-90pct")
def _(j):
    b = jpeg_bytes(j.img_arr)
    return j.argv(image=j.write("most.jpg", b[: int(len(b) * 0.9)])), 2, ["most.jpg", "truncated"]


@case("image-jpeg-headers-only")
def _(j):
    b = jpeg_bytes(j.img_arr)
    return j.argv(image=j.write("hdrs.jpg", b[: b.index(b"\xff\xda") + 4])), 2, ["hdrs.jpg"]


@case("image-jpeg-bad-marker")
def _(j):
    b = jpeg_bytes(j.img_arr)
    i = b.index(b"\xff\xdb")  # first quantisation table marker -> an invalid marker
    return j.argv(image=j.write("marker.jpg", b[:i] + b"\xff\x12" + b[i + 2:])), 2, ["marker.jpg", "marker"]


@case("image-jpeg-eoi-missing")
def _(j):
    return j.argv(image=j.write("noeoi.jpg", jpeg_bytes(j.img_arr)[:-2])), 2, ["noeoi.jpg", "truncated"]


@case("image-jpeg-huge-declared")
def _(j):
    return j.argv(image=j.write("hugej.jpg", jpeg_sof_size(jpeg_bytes(j.img_arr), 65000, 65000))), 2, [
        "hugej.jpg", "65000 x 65000"]


@case("image-tiff-truncated")
def _(j):
    p = geotiff(j.d / "full.tif", np.moveaxis(j.img_arr, -1, 0), tiled=True, blockxsize=32, blockysize=32)
    b = p.read_bytes()
    p.unlink()
    return j.argv(image=j.write("cut.tif", b[: int(len(b) * 0.6)])), 2, ["cut.tif"]


@case("image-tiff-garbage")
def _(j):
    rng = np.random.default_rng(3)
    return j.argv(image=j.write("noise.tif", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())), 2, ["noise.tif"]


@case("image-tiff-header-only")
def _(j):
    return j.argv(image=j.write("hdr.tif", b"II*\x00\x08\x00\x00\x00")), 2, ["hdr.tif"]


@case("image-geotiff-all-nan")
def _(j):
    p = geotiff(j.d / "nan.tif", np.full((3, H, W), np.nan, np.float32))
    return j.argv(image=p), 2, ["nan.tif", "no-data"]


@case("image-geotiff-all-inf")
def _(j):
    a = np.full((2, H, W), np.inf, np.float32)
    a[1] = -np.inf
    return j.argv(image=geotiff(j.d / "inf.tif", a), colors=None, labels=None), 2, ["inf.tif", "no-data"]


@case("image-geotiff-all-nodata-value")
def _(j):
    return j.argv(image=geotiff(j.d / "nod.tif", np.zeros((3, H, W), np.uint8), nodata=0)), 2, ["nod.tif", "no-data"]


@case("image-geotiff-nan-13-band")
def _(j):
    return j.argv(image=geotiff(j.d / "s2.tif", np.full((13, H, W), np.nan, np.float32))), 2, ["s2.tif", "no-data"]


@case("image-bmp-truncated")
def _(j):
    import cv2

    ok, buf = cv2.imencode(".bmp", j.img_arr)
    b = buf.tobytes()
    return j.argv(image=j.write("cut.bmp", b[: len(b) // 2])), 2, ["cut.bmp"]


@case("image-webp-garbage")
def _(j):
    return j.argv(image=j.write("bad.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 30)), 2, ["bad.webp"]


# -- scribble files
@case("scribbles-missing")
def _(j):
    return j.argv(scribbles=j.d / "none.png"), 2, ["none.png", "does not exist"]


@case("scribbles-directory")
def _(j):
    (j.d / "sdir").mkdir()
    return j.argv(scribbles=j.d / "sdir"), 2, ["sdir", "directory"]


@case("scribbles-wrong-size")
def _(j):
    p = j.d / "small_scr.png"
    Image.fromarray(np.ones((H - 1, W), np.uint8)).save(p)
    return j.argv(scribbles=p), 2, ["small_scr.png", f"{W} x {H - 1}"]


@case("scribbles-truncated")
def _(j):
    b = j.scribbles.read_bytes()
    return j.argv(scribbles=j.write("cut_scr.png", b[: len(b) // 2])), 2, ["cut_scr.png", "truncated"]


@case("scribbles-crc-error")
def _(j):
    b = png_bytes(np.asarray(Image.open(j.scribbles)))
    i = b.index(b"IDAT") + 6
    return j.argv(scribbles=j.write("crc_scr.png", b[:i] + bytes([b[i] ^ 1]) + b[i + 1:])), 2, ["crc_scr.png", "CRC"]


@case("scribbles-empty-file")
def _(j):
    return j.argv(scribbles=j.write("empty_scr.png", b"")), 2, ["empty_scr.png"]


@case("scribbles-text")
def _(j):
    return j.argv(scribbles=j.write("text_scr.png", b"not an image\n" * 10)), 2, ["text_scr.png"]


@case("scribbles-value-above-classes")
def _(j):
    a = np.asarray(Image.open(j.scribbles)).copy()
    a[5, 5] = 7
    p = j.d / "seven.png"
    Image.fromarray(a).save(p)
    return j.argv(scribbles=p), 2, ["seven.png", "7"]


@case("scribbles-one-class")
def _(j):
    a = np.zeros((H, W), np.uint8)
    a[10:20, 10:40] = 1
    p = j.d / "one.png"
    Image.fromarray(a).save(p)
    return j.argv(scribbles=p), 2, ["one.png", "at least two classes"]


@case("scribbles-empty-array")
def _(j):
    p = j.d / "blank.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(p)
    return j.argv(scribbles=p), 2, ["blank.png"]


@case("scribbles-one-class-no-labels")
def _(j):
    a = np.zeros((H, W), np.uint8)
    a[10:20, 10:40] = 2
    p = j.d / "only2.png"
    Image.fromarray(a).save(p)
    return j.argv(scribbles=p, labels=None, colors=None), 2, ["only2.png"]


@case("scribbles-255-unscribbled-no-labels")
def _(j):  # Doodler's convention (0-based ids, 255 = not scribbled), given without --labels
    a = np.full((H, W), 255, np.uint8)
    a[10:20, 10:40], a[50:60, 70:100] = 0, 1
    p = j.d / "doodler.png"
    Image.fromarray(a).save(p)
    return j.argv(scribbles=p, labels=None, colors=None), 2, ["doodler.png", "value 255", "0 = unlabelled"]


@case("scribbles-colour-without-colors")
def _(j):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[10:20, 10:40] = (0, 0, 255)
    p = j.d / "rgb_scr.png"
    Image.fromarray(rgb).save(p)
    return j.argv(scribbles=p, colors=None), 2, ["rgb_scr.png", "--colors"]


@case("scribbles-float-tiff")
def _(j):
    p = geotiff(j.d / "float_scr.tif", np.full((1, H, W), 0.5, np.float32))  # whole-valued floats are class numbers
    return j.argv(scribbles=p), 2, ["float_scr.tif", "not whole numbers (such as 0.5)"]


@case("scribbles-16bit-above-255")
def _(j):
    p = geotiff(j.d / "u16_scr.tif", np.full((1, H, W), 300, np.uint16))
    return j.argv(scribbles=p), 2, ["u16_scr.tif", "0..255"]


@case("scribbles-only-on-nodata")
def _(j):
    a = np.moveaxis(j.img_arr, -1, 0).astype(np.float32)
    a[:, :, : W // 2] = np.nan  # left half no-data
    img = geotiff(j.d / "halfnan.tif", a)
    s = np.zeros((H, W), np.uint8)
    s[10:20, 5:30] = 1
    s[50:60, 5:30] = 2  # both classes scribbled only where there is no data: ignored
    p = j.d / "on_nodata.png"
    Image.fromarray(s).save(p)
    return j.argv(image=img, scribbles=p), 2, ["on_nodata.png", "at least two classes"]


# -- labels and colours files
@case("labels-missing")
def _(j):
    return j.argv(labels=j.d / "nolabels.txt"), 2, ["nolabels.txt", "does not exist"]


@case("labels-empty")
def _(j):
    return j.argv(labels=j.write("empty.txt", b"\n\n")), 2, ["empty.txt", "empty"]


@case("labels-duplicate")
def _(j):
    return j.argv(labels=j.write("dup.txt", b"water\nsand\nwater\n")), 2, ["dup.txt", "twice"]


@case("labels-binary")
def _(j):
    return j.argv(labels=j.write("bin.txt", bytes(range(128, 256)) * 4)), 2, ["bin.txt"]


@case("labels-too-many")
def _(j):
    return j.argv(labels=j.write("many.txt", "\n".join(f"c{i}" for i in range(300)).encode()), colors=None), 2, [
        "many.txt", "300"]


@case("labels-directory")
def _(j):
    (j.d / "ldir").mkdir()
    return j.argv(labels=j.d / "ldir"), 2, ["ldir"]


@case("labels-fewer-than-scribbles")
def _(j):
    return j.argv(labels=j.write("two.txt", b"water\nsand\n"), colors=None), 2, ["scribbles.png", "2 classes"]


@case("colors-missing")
def _(j):
    return j.argv(colors=j.d / "nocolors.txt"), 2, ["nocolors.txt", "does not exist"]


@case("colors-bad-name")
def _(j):
    return j.argv(colors=j.write("badc.txt", b"blue\nnotacolour\ngreen\n")), 2, ["badc.txt", "notacolour"]


@case("colors-count-mismatch")
def _(j):
    return j.argv(colors=j.write("twoc.txt", b"blue\ngreen\n")), 2, ["twoc.txt", "2 colours"]


@case("colors-empty")
def _(j):
    return j.argv(colors=j.write("emptyc.txt", b"")), 2, ["emptyc.txt", "empty"]


@case("colors-binary")
def _(j):
    return j.argv(colors=j.write("binc.txt", b"\xff\xfe\x00\x01" * 50)), 2, ["binc.txt"]


@case("colors-bad-hex")
def _(j):
    return j.argv(colors=j.write("hexc.txt", b"#12345\n#zzzzzz\n#000000\n")), 2, ["hexc.txt", "#12345"]


# -- options
for _name, _opt, _val, _needle in [
    ("scale-zero", "-s", "0", "-s/--scale"), ("scale-above-one", "-s", "2", "-s/--scale"),
    ("scale-text", "-s", "abc", "-s/--scale"), ("window-small", "-w", "5", "-w/--window"),
    ("window-text", "-w", "big", "-w/--window"), ("crf-weight-high", "--crf-weight", "1.5", "--crf-weight"),
    ("crf-iter-negative", "--crf-iter", "-1", "--crf-iter"), ("sigmas-zero", "--sigmas", "0", "--sigmas"),
    ("sigmas-huge", "--sigmas", "100", "--sigmas"), ("bands-text", "--bands", "a,b", "--bands"),
    ("backend-unknown", "--backend", "qt", "--backend"), ("grid-scale-zero", "--grid-scale", "0", "--grid-scale"),
]:
    def _make(j, _opt=_opt, _val=_val, _needle=_needle):
        return j.argv(_opt, _val), 2, [_needle]
    CASES[f"option-{_name}"] = _make


@case("option-unknown")
def _(j):
    return j.argv("--frobnicate"), 2, ["--frobnicate"]


@pytest.mark.parametrize("argv", [["--save-prob"], ["--over"], ["--crf-w", "0.5"], ["--scrib", "s.png"]])
def test_option_prefix_is_an_error(argv, tmp_path, capsys):
    """A shortened option is not taken for the option it begins (``--save-prob`` is not ``--save-probs``)."""
    j = Job(tmp_path)
    before = tree(tmp_path)
    assert run_cli(j.argv(*argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments" in lines[0] and argv[0] in lines[0], lines
    assert tree(tmp_path) == before


@pytest.mark.parametrize("argv", [["--val", "0.3"], ["--til", "64"], ["--over"]])
def test_export_option_prefix_is_an_error(argv, tmp_path, capsys):
    from label_tools.export import main as export_main

    (tmp_path / "res").mkdir()
    with pytest.raises(SystemExit) as e:
        export_main([str(tmp_path / "res"), "-o", str(tmp_path / "ds"), *argv])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments" in lines[0] and argv[0] in lines[0], lines
    assert not (tmp_path / "ds").exists()


@case("option-bands-out-of-range")
def _(j):
    return j.argv("--bands", "5,6,7"), 2, ["--bands", "5"]


@case("option-bands-two")
def _(j):
    return j.argv("--bands", "1,2"), 2, ["--bands", "1 or 3"]


@case("option-feature-bands-out-of-range")
def _(j):
    return j.argv("--feature-bands", "4"), 2, ["--feature-bands", "4"]


# -- output directories
@case("output-is-file")
def _(j):
    f = j.root / "afile"
    f.write_text("x")
    return j.argv(out=f), 2, ["afile", "is a file"]


@case("output-parent-missing")
def _(j):
    return j.argv(out=j.root / "no" / "such" / "dir"), 2, ["no/such/dir", "cannot be created"]


@case("output-parent-is-file")
def _(j):
    f = j.root / "plain"
    f.write_text("x")
    return j.argv(out=f / "sub"), 2, ["plain/sub"]


def _earlier_set(j, names=("scene_mres.png", "scene_mres_label.png", "scene_mres.mat", "scene_report.txt")):
    j.out.mkdir(exist_ok=True)
    for n in names:
        (j.out / n).write_bytes(b"earlier " + n.encode())


@case("output-existing-set")
def _(j):
    _earlier_set(j)
    return j.argv(), 2, ["scene_mres.png", "--overwrite"]


@case("output-existing-report-only")
def _(j):
    _earlier_set(j, ["scene_report.txt"])
    return j.argv(), 2, ["scene_report.txt", "--overwrite"]


@case("output-existing-in-image-dir")
def _(j):
    (j.d / "scene_mres_label.png").write_bytes(b"earlier")
    return j.argv(out=None), 2, ["scene_mres_label.png", "--overwrite"]


@case("output-locked-by-live-process")
def _(j):
    j.out.mkdir()
    (j.out / f".scene{LOCK_SUFFIX}").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    os.environ["LABEL_TOOLS_LOCK_WAIT"] = "0.2"
    return j.argv(), 2, [f".scene{LOCK_SUFFIX}", "locked"]


@case("output-locked-existing-set-overwrite")
def _(j):
    _earlier_set(j)
    (j.out / f".scene{LOCK_SUFFIX}").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    os.environ["LABEL_TOOLS_LOCK_WAIT"] = "0.2"
    return j.argv("--overwrite"), 2, [f".scene{LOCK_SUFFIX}"]


@pytest.fixture
def readonly_dir(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------------- the runner
def run_cli(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LABEL_TOOLS_LOCK_WAIT", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    j = Job(tmp_path)
    argv, code, needles = CASES[name](j)
    before = tree(tmp_path)
    capsys.readouterr()
    try:
        got = run_cli(argv)
    finally:
        os.environ.pop("LABEL_TOOLS_LOCK_WAIT", None)
    err = capsys.readouterr().err
    assert got == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert tree(tmp_path) == before  # nothing new, nothing changed


def test_readonly_output_dir(tmp_path, readonly_dir, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    j = Job(tmp_path)
    before = tree(tmp_path)
    assert run_cli(j.argv(out=readonly_dir)) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and str(readonly_dir) in line and "not writable" in line
    assert tree(tmp_path) == before


def test_no_display_no_scribbles(tmp_path, capsys, monkeypatch):
    """Annotator run without a display: one line saying which option to pass."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    j = Job(tmp_path)
    before = tree(tmp_path)
    assert run_cli(j.argv(scribbles=None)) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "--scribbles" in line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("sig,delay", [(signal.SIGTERM, 0.8), (signal.SIGINT, 0.8), (signal.SIGHUP, 1.5)])
def test_signal_during_run(tmp_path, sig, delay):
    """A signal while the run reads and computes: its own exit code, one line, nothing new, inputs intact."""
    j = Job(tmp_path)
    _earlier_set(j)
    before = tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "label_tools.cli", *j.argv("--overwrite")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    after = tree(tmp_path)
    if proc.returncode == 0 or "were complete" in err:  # the machine was fast: the whole new set
        assert sorted(after) == sorted(before) and all(
            after[k] != before[k] for k in before if k.startswith("out/scene"))
        return
    if proc.returncode == -sig:
        # the signal came before the handlers were installed (start-up) or after they were restored (the set
        # was already committed): the default action killed it; the outputs are still all old or all new
        changed = {k for k in before if k.startswith("out/scene") and after.get(k) != before[k]}
        assert sorted(after) == sorted(before)
        assert not changed or changed == {k for k in before if k.startswith("out/scene")}, changed
        return
    assert proc.returncode == 128 + sig, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0] and "scribbles" not in lines[0], err
    assert after == before


def test_scribble_file_gdal_cannot_read_is_one_line(tmp_path):
    # GDAL logs its own complaint as well; the user sees only label-image's line
    bad = tmp_path / "text.png"
    bad.write_text("not an image\n")
    sample = os.path.join(os.path.dirname(__file__), "..", "sample_data", "beach.png")
    p = subprocess.run([sys.executable, "-m", "label_tools.cli", sample, "--scribbles", str(bad), "-o",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "text.png" in lines[0] and "GDAL" not in lines[0], lines
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
