"""--init pre-labels: read by one rule, bad files refused, corrective strokes fix what they do not touch."""
import numpy as np
import pytest
import rasterio
from PIL import Image

from conftest import make_scene, shared
from label_tools.cli import main
from label_tools.errors import InputError
from label_tools.prelabels import read_prelabels, weak_scribbles


def miou(pred, mask):
    return np.mean([((pred == c) & (mask == c)).sum() / ((pred == c) | (mask == c)).sum() for c in np.unique(mask)])


@pytest.mark.parametrize("name", ["image02", "image06"])
def test_corrective_strokes_fix_erased_objects_they_do_not_touch(tmp_path, name):
    """Pre-labels = a real nuclei mask with a third of the nuclei erased; strokes on half of those.

    The issue's thresholds: mIoU at least 0.03 above the pre-labels', most erased nuclei without a
    stroke recovered (image02: 0.799 -> 0.930, 86 %; image06: 0.796 -> 0.944, 74 %).
    """
    from scipy import ndimage as ndi

    ip = shared("he_nuclei_miccai", "images", f"{name}.png")
    inst = np.array(Image.open(shared("he_nuclei_miccai", "instances", f"{name}.png")))
    mask = (inst > 0).astype(np.uint8)
    ids = np.unique(inst[inst > 0])
    rng = np.random.default_rng(0)
    erased = rng.choice(ids, len(ids) // 3, replace=False)
    stroked, untouched = erased[: len(erased) // 2], erased[len(erased) // 2:]
    pre = mask.copy()
    pre[np.isin(inst, erased)] = 0
    scr = np.zeros(mask.shape, np.uint8)
    for i in stroked:  # a short corrective stroke inside each: the object's core
        core = ndi.binary_erosion(inst == i, iterations=2)
        if not core.any():
            core = inst == i
        scr[core] = 2
    pp, sp, lp = tmp_path / "pre.png", tmp_path / "scr.png", tmp_path / "classes.txt"
    Image.fromarray(pre).save(pp)
    Image.fromarray(scr).save(sp)
    lp.write_text("background\nnucleus\n")
    out = tmp_path / "out"
    assert main([ip, "--init", str(pp), "--scribbles", str(sp), "--labels", str(lp), "-o", str(out), "-q"]) == 0
    lab = np.array(Image.open(out / f"{name}_mres_label.png"))
    before, after = miou(pre, mask), miou(lab, mask)
    assert after >= before + 0.03, (before, after)
    recovered = [(lab[inst == i] == 1).mean() > 0.5 for i in untouched]
    assert np.mean(recovered) > 0.5, np.mean(recovered)
    report = (out / f"{name}_report.txt").read_text()
    assert "init (pre-labels, weak labels): " in report and "never scribbled" not in report
    assert "init kept (share of pixels keeping their pre-label; trust t): 0.9" in report


def test_prelabels_alone_and_one_class_of_strokes(tmp_path):
    img, mask = make_scene(80, 120)
    ip, pp = tmp_path / "scene.png", tmp_path / "pre.png"
    Image.fromarray(img).save(ip)
    Image.fromarray(mask.astype(np.uint8)).save(pp)
    out = tmp_path / "a"
    assert main([str(ip), "--init", str(pp), "--headless", "-o", str(out), "-q"]) == 0
    lab = np.array(Image.open(out / "scene_mres_label.png"))
    assert (lab == mask).mean() > 0.95
    scr = np.zeros(mask.shape, np.uint8)
    scr[40:44, 10:30] = 1  # strokes of one class only
    sp = tmp_path / "scr.png"
    Image.fromarray(scr).save(sp)
    assert main([str(ip), "--init", str(pp), "--scribbles", str(sp), "-o", str(tmp_path / "b"), "-q"]) == 0


def test_read_rules(tmp_path):
    ids = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
    Image.fromarray(ids).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_prelabels(str(tmp_path / "a.png"), (2, 3), 3), ids)
    Image.fromarray(np.array([[1, 2, 3], [0, 2, 1]], np.uint8)).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_prelabels(str(tmp_path / "b.png"), (2, 3), 3, offset=1), ids)
    # label_tools' own GeoTIFF (id + 1, 0 = no-data) is recognised by its metadata
    from label_tools.classes import load_classes
    from label_tools.io import Georef
    from affine import Affine

    prof = dict(driver="GTiff", width=3, height=2, count=1, dtype="uint8", crs="EPSG:32618",
                transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0))
    from label_tools.writers import write_geotiff

    write_geotiff(str(tmp_path / "x_mres_geo.tif"), ids, Georef(prof, None, prof["transform"]),
                  load_classes(None, None, n_classes=3))
    np.testing.assert_array_equal(read_prelabels(str(tmp_path / "x_mres_geo.tif"), (2, 3), 3), ids)
    # a colour label image through the class colours
    colors = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[ids != 255] = colors[ids[ids != 255]]
    rgb[1, 0] = (7, 7, 7)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_prelabels(str(tmp_path / "c.png"), (2, 3), 3, colors=colors), ids)


@pytest.mark.parametrize("case, match", [
    ("size", "size 3 x 2 does not match the image's"),
    ("value", "holds class id 5 but there are only 3 classes"),
    ("colour", "a colour label image needs the class colours: pass --colors"),
])
def test_bad_prelabel_files_one_line_exit_2(tmp_path, capsys, case, match):
    img, mask = make_scene(40, 60)
    ip = tmp_path / "scene.png"
    Image.fromarray(img).save(ip)
    lp = tmp_path / "classes.txt"
    lp.write_text("a\nb\nc\n")
    pp = tmp_path / "pre.png"
    if case == "size":
        Image.fromarray(np.zeros((2, 3), np.uint8)).save(pp)
    elif case == "value":
        a = mask.astype(np.uint8)
        a[0, 0] = 5
        Image.fromarray(a).save(pp)
    else:
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(pp)
    out = tmp_path / "out"
    assert main([str(ip), "--init", str(pp), "--labels", str(lp), "--headless", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and str(pp) in err[0]
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError, match="--init"):
        read_prelabels(str(pp), (40, 60), 3)


def test_correction_zone_keeps_edge_bands_replaces_regions():
    from label_tools.prelabels import correction_zone, keep_prelabels

    pre = np.zeros((30, 40), np.uint8)
    pre[:, 20:] = 1
    model = pre.copy()
    model[:, 19] = 1  # the model puts the edge one pixel left: a thin band, pre-labels kept
    model[5:12, 3:10] = 1  # a 7 x 7 region the pre-labels missed: the model's
    model[25, 2:8] = 1  # a thin line, untouched by strokes: pre-labels kept
    model[20, 2:8] = 1  # a thin line a stroke touches: the model's
    model[0, 0] = 255  # no-data stays the model's
    pre[29, 39] = 255  # unknown pre-label: the model's
    scr = np.zeros_like(pre)
    scr[20, 4] = 2
    zone = correction_zone(model, pre, scr, radius=2)
    expect = np.zeros(pre.shape, bool)
    expect[5:12, 3:10] = True
    expect[20, 2:8] = True
    expect[29, 39] = True
    np.testing.assert_array_equal(zone, expect)
    probs = np.stack([model == 0, model == 1]).astype(np.float32) * 0.8 + 0.1
    lab = model.copy()
    probs, lab = keep_prelabels(probs, lab, pre, zone, trust=0.9)
    want = np.where(zone | (model == 255), model, pre)
    np.testing.assert_array_equal(lab, want)
    assert (probs.argmax(0)[lab != 255] == lab[lab != 255]).all()
    np.testing.assert_allclose(probs[:, 3, 19], [0.9 + 0.1 * 0.1, 0.1 * 0.9])  # band pixel: pre's class 0
    np.testing.assert_allclose(probs.sum(0)[model != 255], 1, atol=1e-6)


def test_weak_scribbles_keep_off_edges_and_strokes():
    pre = np.zeros((20, 20), np.uint8)
    pre[:, 10:] = 1
    scr = np.zeros((20, 20), np.uint8)
    scr[5, 2] = 2
    w = weak_scribbles(pre, scr, margin=2, guard=1)
    assert (w[:, 8:12] == 0).all()  # no weak label within 2 px of the edge
    assert (w[5, 1:4] == 0).all() and (w[4:7, 2] == 0).all()  # none under or next to the stroke
    assert (w[15, :7] == 1).all() and (w[15, 13:] == 2).all()


def _georef_scene(path, h=70, w=90):
    from affine import Affine

    img, mask = make_scene(h, w)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 6000000)) as dst:
        dst.write(np.moveaxis(img, -1, 0))
    return mask


def test_own_geotiff_as_init_keeps_class_names_colours_and_absent_classes(tmp_path, capsys):
    """``--init x_mres_geo.tif`` without --labels: the classes are the ones of the run that wrote it
    (names with a comma, a class no pixel has, the colours), so label-export mixes the two results."""
    from scipy.io import loadmat

    from conftest import scene_scribbles
    from label_tools.export import main as export_main

    mask = _georef_scene(tmp_path / "a.tif")
    (tmp_path / "b.tif").write_bytes((tmp_path / "a.tif").read_bytes())  # another source, same size

    Image.fromarray(scene_scribbles(mask)).save(tmp_path / "scr.png")
    (tmp_path / "classes.txt").write_text("water\nsand, dry\ngrass\nroad\n")  # road: never drawn
    (tmp_path / "colors.txt").write_text("blue\n#e0c080\ntab:green\n#123456\n")
    assert main([str(tmp_path / "a.tif"), "--scribbles", str(tmp_path / "scr.png"), "--labels",
                 str(tmp_path / "classes.txt"), "--colors", str(tmp_path / "colors.txt"), "-o", str(tmp_path / "A"),
                 "-q"]) == 0
    geo = tmp_path / "A" / "a_mres_geo.tif"
    assert main([str(tmp_path / "b.tif"), "--init", str(geo), "--headless", "-o", str(tmp_path / "B"), "-q"]) == 0

    def class_lines(report):
        lines = report.read_text().splitlines()
        i = lines.index("classes (fraction of labelled pixels):")
        return [ln.split(":")[0] for ln in lines[i + 1: i + 5]]

    assert class_lines(tmp_path / "A" / "a_report.txt") == ["water", "sand, dry", "grass", "road"]
    assert class_lines(tmp_path / "B" / "b_report.txt") == ["water", "sand, dry", "grass", "road"]
    report = (tmp_path / "B" / "b_report.txt").read_text()
    assert "  labels: (the --init file's: water, sand, dry, grass, road)\n" in report
    assert "  colors: (the --init file's)\n" in report
    a, b = (loadmat(tmp_path / d / f"{s}_mres.mat") for d, s in (("A", "a"), ("B", "b")))
    assert [str(np.ravel(x)[0]) for x in np.ravel(b["labels"])] == ["water", "sand, dry", "grass", "road"]
    np.testing.assert_array_equal(a["colors"], b["colors"])
    la = np.array(Image.open(tmp_path / "A" / "a_mres_label.png"))
    lb = np.array(Image.open(tmp_path / "B" / "b_mres_label.png"))
    assert (la == lb).mean() > 0.95 and lb.max() <= 2
    assert export_main([str(tmp_path / "A"), str(tmp_path / "B"), "-o", str(tmp_path / "ds"), "--tile", "32",
                        "-q"]) == 0
    # strokes of a class the file does not name: one line asking for --labels
    scr = np.zeros(mask.shape, np.uint8)
    scr[5:8, 5:20] = 5
    Image.fromarray(scr).save(tmp_path / "scr5.png")
    assert main([str(tmp_path / "b.tif"), "--init", str(geo), "--scribbles", str(tmp_path / "scr5.png"),
                 "-o", str(tmp_path / "C"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds class 5 but --init" in err[0] and "names 4 classes" in err[0], err
    assert "give --labels" in err[0] and not (tmp_path / "C").exists()


def test_one_stroke_corrects_a_whole_region_in_the_wrong_class(tmp_path):
    """Pre-labels that put the whole sand (45 % of the scene) in the water class, and one short sand
    stroke in the middle of it: most of the sand comes back, far beyond the stroke's reach, and the
    water and vegetation the stroke did not contradict stay as they were (before: 0.1 % of the sand)."""
    from label_tools.synthetic import synthetic_scribbles

    img, mask = make_scene(200, 300, seed=3)
    pre = mask.astype(np.uint8)
    pre[mask == 1] = 0
    s = synthetic_scribbles(mask, fraction=0.03, seed=0)
    ys, xs = np.nonzero(s == 2)
    near = np.argsort((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)[:120]  # 120 px of sand stroke
    scr = np.zeros(mask.shape, np.uint8)
    scr[ys[near], xs[near]] = 2
    for name, a in (("scene.png", img), ("pre.png", pre), ("scr.png", scr)):
        Image.fromarray(a).save(tmp_path / name)
    assert main([str(tmp_path / "scene.png"), "--init", str(tmp_path / "pre.png"), "--scribbles",
                 str(tmp_path / "scr.png"), "-o", str(tmp_path / "out"), "-q"]) == 0
    lab = np.array(Image.open(tmp_path / "out" / "scene_mres_label.png"))
    assert (lab[mask == 1] == 1).mean() > 0.6
    assert (lab[mask == 0] == 0).mean() > 0.99 and (lab[mask == 2] == 2).mean() > 0.99


def test_prelabels_the_strokes_agree_with_are_kept(tmp_path):
    """Right pre-labels (a real mask) and strokes of every class inside their own class: the result is
    the pre-labels, not the model's own reading of the photo (before: mIoU 0.944 against the mask)."""
    from label_tools.synthetic import synthetic_scribbles

    ip = shared("obx_coastal_aerial", "images", "2018-10-06_17.36.18-DSC06749-N7251F.jpg")
    mask = np.array(Image.open(shared("obx_coastal_aerial", "masks", "2018-10-06_17.36.18-DSC06749-N7251F.png")))
    Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "pre.png")
    Image.fromarray(synthetic_scribbles(mask, fraction=0.01, seed=0)).save(tmp_path / "scr.png")
    assert main([ip, "--init", str(tmp_path / "pre.png"), "--scribbles", str(tmp_path / "scr.png"),
                 "-o", str(tmp_path / "out"), "-q"]) == 0
    lab = np.array(Image.open(tmp_path / "out" / "2018-10-06_17.36.18-DSC06749-N7251F_mres_label.png"))
    known = mask != 255
    assert (lab[known] == mask[known]).mean() > 0.999


def test_stroke_corrections_ignore_a_brush_spilling_over_an_edge():
    from label_tools.prelabels import stroke_corrections

    pre = np.zeros((40, 40), np.uint8)
    pre[:, 20:] = 1
    scr = np.zeros_like(pre)
    scr[5:35, 17:20] = 2  # class 1 strokes just left of the edge: inside class 0 by less than 3 px
    assert stroke_corrections(pre, scr) == set()
    scr[10:13, 5:10] = 2  # and some well inside class 0
    assert stroke_corrections(pre, scr) == {(0, 1)}
    scr[10:13, 30:35] = 1  # class 0 strokes inside class 1
    assert stroke_corrections(pre, scr) == {(0, 1), (1, 0)}
    assert stroke_corrections(pre, None) == set()
