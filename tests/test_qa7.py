"""QA round 7: defects found using label_tools as its users do (each test failed before its fix)."""
import os
import re
import time

import numpy as np
import pytest

from conftest import make_scene
from test_annotate_window import display  # noqa: F401  (the Xvfb fixture)


def _frames_annotator(monkeypatch, tmp_path, image, names=("water", "sand", "grass")):
    """The annotator class the CLI builds (status line included), its frames captured instead of shown."""
    from label_tools import annotate
    from label_tools.annotate_uncertainty import with_uncertainty
    from label_tools.classes import load_classes
    from label_tools.io import ArraySource
    from label_tools.session import Session
    from label_tools.tiling import annotation_windows

    monkeypatch.setattr(annotate, "screen_size", lambda: (1600, 1000))

    class Captured(annotate.Annotator):
        def _show(self, name, rgb, title=None):
            self.frames[name] = rgb.copy()

    cls = with_uncertainty(Captured)
    classes = load_classes(n_classes=len(names))
    src = ArraySource(image, "scene.png")
    s = Session(src.shape, len(names), annotation_windows(src.shape, 140))  # one window: one status line
    ann = cls(src, classes, s, outdir=str(tmp_path), stem="scene")
    ann.frames, ann.t_open = {}, time.perf_counter()
    return ann


def test_status_line_leaves_the_picture_whole(monkeypatch, tmp_path):
    """The status line was drawn over the picture's bottom 26 window rows, darkened to a fifth: the part of
    the image being labelled there could not be seen (and strokes drawn there landed on hidden pixels).
    Now the band is added below the picture, which is shown whole, and a press on the band draws nothing."""
    from label_tools.annotate import WIN_ANNOTATE
    from label_tools.annotate_uncertainty import STATUS_BAND

    img, _ = make_scene(96, 140)
    img[:] = 200  # a bright picture: any darkening of it shows
    img[90:] = (250, 240, 30)  # its bottom rows, the ones the band covered
    ann = _frames_annotator(monkeypatch, tmp_path, img)
    ann.render_annotation()
    frame = ann.frames[WIN_ANNOTATE]
    picture = ann._base_image()
    h, w = picture.shape[:2]
    assert frame.shape == (h + STATUS_BAND, w, 3)
    np.testing.assert_array_equal(frame[:h], picture)  # every picture pixel as it is, the bottom rows too
    band = frame[h:]
    assert band.mean() < 60 and (band.max(axis=2) > 200).sum() > 150  # dark band with the light status text

    # a press on the status line is not a stroke; one on the picture's last row is
    ann.mouse_down(w // 2, h + STATUS_BAND // 2)
    ann.mouse_drag(w // 2 + 20, h + STATUS_BAND // 2)
    ann.mouse_up()
    assert not ann.s.scribbles.any()
    ann.mouse_down(w // 2, h - 1)
    ann.mouse_up()
    assert ann.s.scribbles[95].any()



@pytest.fixture(scope="module")
def one_result(tmp_path_factory):
    """A label-image result folder of two small photos (the -o folder label-export reads)."""
    from PIL import Image

    from conftest import scene_scribbles
    from label_tools.cli import main as label_image

    root = tmp_path_factory.mktemp("qa7_export")
    for i in range(2):
        img, mask = make_scene(70, 110, seed=i)
        Image.fromarray(img).save(root / f"photo{i}.png")
        Image.fromarray(scene_scribbles(mask, seed=i)).save(root / f"photo{i}_s.png")
        assert label_image([str(root / f"photo{i}.png"), "--scribbles", str(root / f"photo{i}_s.png"),
                            "-o", str(root / "res"), "-s", "1", "-q"]) == 0
    return root


# label-export in a child process that gets `sig` from itself at a chosen moment: after the first source's
# tiles (AT = "tiles") or between the two renames that swap an old dataset for the new one (AT = "swap")
_EXPORT_KILLED = """
import os, signal, sys
from label_tools import export
SIG, AT = getattr(signal, sys.argv[1]), sys.argv[2]
if AT == "tiles":
    one = export._export_one
    def _export_one(*a, **k):
        r = one(*a, **k)
        os.kill(os.getpid(), SIG)
        return r
    export._export_one = _export_one
else:
    rename, n = os.rename, []
    def _rename(a, b):
        rename(a, b)
        n.append(1)
        if len(n) == 1:  # the old dataset moved aside, the new one not yet in its place
            os.kill(os.getpid(), SIG)
    os.rename = _rename
sys.exit(export.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_export_stopped_midway_leaves_nothing(one_result, tmp_path, sig):
    """label-export stopped by Ctrl-C printed a KeyboardInterrupt traceback; stopped by SIGTERM (kill, a
    closed terminal) it died at once and left its hidden '.<DATASET>.*.part' folder of half the tiles beside
    DATASET. Now either is one line, exit 128 + the signal, and nothing is left."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "dataset"
    p = subprocess.run([sys.executable, "-c", _EXPORT_KILLED, sig, "tiles", str(one_result / "res"), "-o", str(out),
                        "--tile", "16", "-q"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + getattr(signal, sig), p.stderr
    assert p.stderr.splitlines() == [f"label-export: stopped by {sig}; nothing was written ('{out}' is as it was)"]
    assert sorted(os.listdir(tmp_path)) == []  # no dataset, no .part folder


def test_export_overwrite_stopped_in_the_swap_keeps_a_dataset(one_result, tmp_path):
    """--overwrite: a signal between moving the old dataset aside and moving the new one in left DATASET
    missing (the old one in a hidden '.<DATASET>.*.old' folder, the new one deleted). The swap now finishes
    first: the new dataset is in place, whole, the old one gone, and the line says so."""
    import json
    import subprocess
    import sys

    from label_tools import export

    out = tmp_path / "dataset"
    assert export.main([str(one_result / "res"), "-o", str(out), "--tile", "64", "-q"]) == 0
    p = subprocess.run([sys.executable, "-c", _EXPORT_KILLED, "SIGTERM", "swap", str(one_result / "res"), "-o",
                        str(out), "--tile", "32", "--overwrite", "-q"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 143, p.stderr
    assert p.stderr.splitlines() == [f"label-export: stopped by SIGTERM; the new dataset was complete and is in "
                                     f"'{out}'"]
    assert sorted(os.listdir(tmp_path)) == ["dataset"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["tile"] == 32
    for t in info["tiles"]:
        assert (out / t["image"]).is_file() and (out / t["label"]).is_file()


def test_init_directory_is_named_a_directory(tmp_path, capsys):
    """--init given a folder (the -o folder of an earlier run instead of its label file) said 'no such file',
    though the folder is there; now it says it is a directory and what to give."""
    from PIL import Image

    from conftest import scene_scribbles
    from label_tools.cli import main as label_image

    img, mask = make_scene(40, 60)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "s.png")
    (tmp_path / "earlier").mkdir()
    code = label_image([str(tmp_path / "photo.png"), "--scribbles", str(tmp_path / "s.png"), "--init",
                        str(tmp_path / "earlier"), "-o", str(tmp_path / "out"), "-q"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"label-image: error: --init {str(tmp_path / 'earlier')!r} is a directory; give the pre-label "
                   "image (a label PNG, TIFF or GeoTIFF)"]
    assert not (tmp_path / "out").exists()


def test_resumed_walk_refuses_labels_its_model_lacks(tmp_path, monkeypatch, capsys):
    """A collection walk run again with a --labels file that adds a class ('road') to the walk's model
    (water, sand, grass): the model's classes were used without a word, the key for class 4 did nothing and
    the new class never reached the labels. Now, as with --model, one line naming the walk's model file and
    both class lists, exit 2, before any window opens."""
    from PIL import Image

    from conftest import scene_scribbles
    from label_tools import annotate, collection
    from label_tools.classes import load_classes
    from label_tools.cli import main as label_image
    from label_tools.io import open_image, stem
    from label_tools.model import Model
    from label_tools.pipeline import Settings
    from label_tools.writers import output_paths

    d, out = tmp_path / "fields", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    masks = {}
    for i, name in enumerate(["a", "b"]):
        img, masks[name] = make_scene(60, 90, seed=i)
        Image.fromarray(img).save(d / f"{name}.png")
    (tmp_path / "three.txt").write_text("water\nsand\ngrass\n")
    (tmp_path / "four.txt").write_text("water\nsand\ngrass\nroad\n")
    classes = load_classes(str(tmp_path / "three.txt"))
    settings = Settings(scale=1.0, crf_weight=0.0)

    def step(src, index, *, base, prelabels, resume, title_note, model_path):  # the first image, then killed
        st = stem(src.path)
        if index == 1:
            raise KeyboardInterrupt
        scr = scene_scribbles(masks[st], seed=index)
        Image.fromarray(scr).save(out / f"{st}_scribbles.png")
        model = Model.fit(src, scr, classes=classes, settings=settings, base=base)
        for p in output_paths(str(out), st).values():
            open(p, "w").close()
        model.save(model_path)
        return model

    with pytest.raises(KeyboardInterrupt):
        collection.walk(collection.list_images([str(d)]), outdir=str(out), name="fields", step=step,
                        open_image=open_image, classes=classes, settings=settings,
                        outputs_of=lambda p: list(output_paths(str(out), stem(p)).values()))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_window(*a, **k):
        raise AssertionError("the annotator opened")

    monkeypatch.setattr(annotate, "has_display", lambda: True)
    monkeypatch.setattr(annotate, "annotate", no_window)
    code = label_image([str(d), "--labels", str(tmp_path / "four.txt"), "-o", str(out), "-q"])
    assert code == 2
    model = str(out / "fields_model.skops")
    assert capsys.readouterr().err.splitlines() == [
        f"label-image: error: the collection's model {model!r} has the classes water, sand, grass (3) but --labels "
        f"gives water, sand, grass, road (4); give the labels file the walk began with, in the same order (a walk "
        f"with other classes needs another -o folder)"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # the labels the walk began with: it goes on to image b (here: the window would open)
    with pytest.raises(AssertionError, match="the annotator opened"):
        label_image([str(d), "--labels", str(tmp_path / "three.txt"), "-o", str(out), "-q"])


def _georeferenced_pair(tmp_path):
    """A 2-class scene as a GeoTIFF (EPSG:32633, 10 m) and its synthetic strokes (uint8 (h, w), 0 = none)."""
    import rasterio
    from affine import Affine

    from conftest import scene_scribbles

    img, mask = make_scene(60, 90)
    mask = (mask > 0).astype(int)
    img[mask == 0] = img[mask == 0] // 3
    tf = Affine(10, 0, 500000, 0, -10, 5000000)
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=90, height=60, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=tf) as ds:
        ds.write(np.moveaxis(img, -1, 0))
    return tf, scene_scribbles(mask)


@pytest.mark.parametrize("dtype, nodata, background", [
    ("float64", None, 0.0),       # gdal_rasterize -a class strokes.gpkg (its default type is Float64)
    ("float32", 0.0, 0.0),        # QGIS Rasterize (Float32, no-data 0)
    ("float32", np.nan, np.nan),  # unstroked pixels NaN
    ("int16", -9999, -9999),      # gdal_rasterize -ot Int16 -a_nodata -9999 -init -9999
])
def test_scribbles_rasterised_in_a_gis(tmp_path, capsys, dtype, nodata, background):
    """Strokes digitised in QGIS and rasterised onto the image's grid (gdal_rasterize writes Float64 by
    default, QGIS Float32; or Int16 with no-data -9999) were refused: 'holds float64 values: expected whole
    class numbers' (they are whole numbers) or 'holds values outside 0..255' (the -9999 is the declared
    no-data). Now whole-valued floats are class numbers, and the declared no-data value and NaN are
    unlabelled; the labels are those of the same strokes as a uint8 PNG."""
    import rasterio
    from PIL import Image

    from label_tools.cli import main as label_image

    tf, scr = _georeferenced_pair(tmp_path)
    Image.fromarray(scr).save(tmp_path / "strokes.png")
    a = np.where(scr > 0, scr.astype(dtype), np.array(background, dtype))
    with rasterio.open(tmp_path / "strokes.tif", "w", driver="GTiff", width=90, height=60, count=1, dtype=dtype,
                       crs="EPSG:32633", transform=tf, nodata=nodata) as ds:
        ds.write(a, 1)
    for name in ("strokes.png", "strokes.tif"):
        assert label_image([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / name), "-o",
                            str(tmp_path / name.replace(".", "_")), "-s", "1", "-q"]) == 0, capsys.readouterr().err
    want = np.array(Image.open(tmp_path / "strokes_png" / "scene_mres_label.png"))
    got = np.array(Image.open(tmp_path / "strokes_tif" / "scene_mres_label.png"))
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {0, 1}


def test_scribbles_with_fractional_values_named(tmp_path, capsys):
    """A float raster that is not class numbers (a resampled rasterisation: 1.5 at stroke edges) is still
    refused, in one line that gives such a value."""
    import rasterio

    from label_tools.cli import main as label_image

    tf, scr = _georeferenced_pair(tmp_path)
    a = scr.astype("float32")
    a[scr == 1] = 1.5
    with rasterio.open(tmp_path / "strokes.tif", "w", driver="GTiff", width=90, height=60, count=1, dtype="float32",
                       crs="EPSG:32633", transform=tf) as ds:
        ds.write(a, 1)
    assert label_image([str(tmp_path / "scene.tif"), "--scribbles", str(tmp_path / "strokes.tif"), "-o",
                        str(tmp_path / "out"), "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"label-image: error: scribble file {str(tmp_path / 'strokes.tif')!r} holds values that are not whole "
        "numbers (such as 1.5): expected class numbers (0 or no-data = unlabelled, k = k-th class)"]


@pytest.mark.parametrize("width", [320, 640, 850])
def test_status_line_whole_in_a_narrow_window(width):
    """The status line was one line at a fixed size: in the narrow window of an image's last column (CamVid's
    480 px at -w 200: an 80 px column, 320 px on screen) it was cut at 'class 1/11 sky | window 3/6 | brush 3
    | order:' and the mode never showed (window titles are not shown by every window manager). Now it wraps
    after its separators onto more lines of the band below the picture, every word inside the window."""
    import cv2

    from label_tools.annotate_uncertainty import STATUS_BAND, STATUS_LINE, draw_status, status_layout

    text = ("image 2/6 | class 3/5 mitochondria | window 12/36 | brush 3 | pre-labels on (L), uncertainty, preview, "
            "order: uncertainty")
    lines, scale = status_layout(text, width)
    words = re.compile(r"[^ |,]+")
    assert words.findall(" ".join(lines)) == words.findall(text)  # every word, in order
    assert all(cv2.getTextSize(ln, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width - 16 for ln in lines)
    picture = np.full((300, width, 3), 180, np.uint8)
    frame = draw_status(picture, text)
    assert frame.shape == (300 + STATUS_BAND + STATUS_LINE * (len(lines) - 1), width, 3)
    np.testing.assert_array_equal(frame[:300], picture)
    band = frame[300:]
    assert not (band[:, -6:].max(axis=2) > 100).any()  # no text runs off the right edge
    for i in range(len(lines)):  # light text in every line's strip
        strip = band[STATUS_LINE * i: STATUS_LINE * i + STATUS_BAND - 4]
        assert (strip.max(axis=2) > 200).sum() > 30
    if width >= 850:
        assert len(lines) <= 2


@pytest.mark.window
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_signal_while_a_dialog_is_open(display, tmp_path, sig):  # noqa: F811
    """With a dialog open (no --colors: the colours file is asked for; a resume question), Ctrl-C in the
    terminal did nothing and SIGTERM or a closed terminal left the program running for ever with its dialog:
    Tk's dialog loop never let Python see the signal. Now the dialog closes and the program stops with its one
    line, exit 128 + the signal."""
    import shutil
    import signal
    import subprocess
    import sys

    from conftest import SAMPLE

    if not shutil.which("xdotool"):
        pytest.skip("xdotool not installed")
    env = dict(os.environ, DISPLAY=display)
    env.pop("CI", None)
    p = subprocess.Popen([sys.executable, "-m", "label_tools.cli", os.path.join(SAMPLE, "beach.png"), "--labels",
                          os.path.join(SAMPLE, "classes.txt"), "-o", str(tmp_path / "out")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            found = subprocess.run(["xdotool", "search", "--name", "choose the colours file"], env=env,
                                   capture_output=True, text=True).stdout.strip()
            if found:
                break
            time.sleep(0.2)
        assert found, "the colours dialog did not open"
        time.sleep(0.5)
        p.send_signal(getattr(signal, sig))
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 128 + getattr(signal, sig), err
    assert err.strip().splitlines()[-1].startswith(f"label-image: stopped by {sig}; no output was left half-written")
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_colours_file_with_a_colour_twice(tmp_path, capsys):
    """A colours file naming one colour for two classes ('blue' twice, a copied line) was taken: both classes
    drawn alike in the annotator, the figure and the legend, and colour scribbles painted in it all went to
    the first class (the second 'never scribbled'). Now one line naming the file and both entries, exit 2."""
    from PIL import Image

    from conftest import scene_scribbles
    from label_tools.cli import main as label_image

    img, mask = make_scene(40, 60)
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "s.png")
    (tmp_path / "colors.txt").write_text("blue\n#d9b36c\n#0000ff\n")
    code = label_image([str(tmp_path / "photo.png"), "--scribbles", str(tmp_path / "s.png"), "--colors",
                        str(tmp_path / "colors.txt"), "-o", str(tmp_path / "out"), "-q"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"label-image: error: colours file {str(tmp_path / 'colors.txt')!r}: entries 1 ('blue') and 3 ('#0000ff') "
        "are the same colour #0000ff; give each class a colour of its own"]
    assert not (tmp_path / "out").exists()
