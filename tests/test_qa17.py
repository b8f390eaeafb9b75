"""README walked as a new user (qa17): what a run said or did that surprised."""
import os

import pytest

from label_tools import annotate


class _Root:
    """A hidden Tk root stand-in: records its pending ``after`` timers."""

    def __init__(self):
        self.pending, self.destroyed, self._n = {}, False, 0

    def after(self, ms, fn):
        self._n += 1
        self.pending[f"after#{self._n}"] = fn
        return f"after#{self._n}"

    def after_cancel(self, ident):
        self.pending.pop(ident, None)

    def destroy(self):
        self.destroyed = True


def test_file_dialog_leaves_no_timer_behind(monkeypatch):
    """The dialog's 0.1-s signal poll is cancelled with its root: left pending, it fired in the next
    dialog's event loop after its command was deleted, and a clean run printed Tcl's 'invalid command
    name "...poll"' with a traceback on stderr after the labels and colours dialogs."""
    root = _Root()
    monkeypatch.setattr(annotate, "_tk_root", lambda: root)

    def show(r):
        r.pending.pop(next(iter(r.pending)))()  # the dialog stays open past one poll (a fired timer is gone)
        return "classes.txt"

    assert annotate._run_dialog(show) == "classes.txt"
    assert root.destroyed
    assert root.pending == {}


@pytest.mark.parametrize("display", [False, True])
def test_mistyped_image_said_before_display_and_dialogs(tmp_path, monkeypatch, capsys, display):
    """`label-image phot.jpg` (a typo) said 'no display ...: pass --scribbles FILE' over ssh, and with a
    display asked for the labels and colours files first; the missing image is now the one line."""
    from label_tools import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", ":99")
        monkeypatch.setattr(annotate, "ask_file", lambda *a, **k: pytest.fail("a dialog was opened"))
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    assert cli.main(["phot.jpg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["label-image: error: image 'phot.jpg' does not exist"]
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert cli.main(["empty.jpg"]) == 2
    assert "'empty.jpg' is empty (0 bytes)" in capsys.readouterr().err


def test_batch_summary_says_where_the_outputs_are(tmp_path, monkeypatch, caplog):
    """A headless batch printed 'done f0.png' per image and '2 images: 2 done, ...' but never the folder
    (a single run's line ends 'into out/'); the summary line now ends '; outputs in out/' (as -o was given),
    the one folder of the images, or 'beside each image'."""
    from PIL import Image

    from conftest import make_scene, scene_scribbles
    from label_tools import cli

    monkeypatch.chdir(tmp_path)
    img, mask = make_scene(60, 90, seed=0)
    Image.fromarray(img).save("first.png")
    Image.fromarray(scene_scribbles(mask)).save("first_scribbles.png")
    os.makedirs("frames")
    os.makedirs("more")
    for i, d in enumerate(("frames", "frames", "more")):
        Image.fromarray(make_scene(56, 84, seed=4 + i)[0]).save(f"{d}/f{i}.png")
    assert cli.main(["first.png", "--scribbles", "first_scribbles.png", "--headless", "-o", "fit",
                     "--save-model", "m.skops", "-q"]) == 0
    caplog.set_level("INFO", logger="label_tools")
    for argv, where in ((["frames", "-o", "out"], "; outputs in out/"),
                        (["frames"], "; outputs in frames/"),
                        (["frames/f0.png", "more/f2.png", "--overwrite"], "; outputs beside each image"),
                        (["frames/f1.png", "-o", "one"], "; outputs in one/")):
        caplog.clear()
        assert cli.main(["--model", "m.skops", "--headless", *argv]) == 0
        last = caplog.text.strip().splitlines()[-1]
        assert "done" in last and last.endswith(where), (argv, last)


@pytest.mark.parametrize("text, refused", [
    ("navy\ntab:cyan\n#d2b48c\n", True),     # README's own colours-file format: names and #hex mixed
    ("tab:blue\ntab:orange\n", True),
    ("#000080\n#d2b48c\n", True),            # refused before too
    ("red\ngreen\nblue\n", False),           # classes may be named after colours
    ("water\n#sand\n", False),
])
def test_colours_file_given_as_labels(tmp_path, capsys, text, refused):
    """`--labels colors.txt` with the colours file README shows (`navy`, `tab:green` or `#hex` per line)
    labelled classes named 'navy', 'tab:cyan' and '#d2b48c'; only a file of #hex lines was refused."""
    from label_tools import cli

    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    if refused:  # before anything is read: the image need not exist
        assert cli.main([str(tmp_path / "a.png"), "--scribbles", str(tmp_path / "s.png"), "--labels", str(labels),
                         "--headless", "-q"]) == 2
        err = capsys.readouterr().err
        assert f"--labels {str(labels)!r}: every line is a colour" in err and "is it the colours file?" in err
    else:
        cli._check_labels_not_colours(str(labels))


def test_show_says_what_ends_the_wait(tmp_path, monkeypatch, caplog):
    """--show left the terminal waiting on the figure's window after 'wrote ...', with nothing saying that
    a key in the window (or closing it) ends the run."""
    from PIL import Image

    from conftest import make_scene, scene_scribbles
    from label_tools import cli

    monkeypatch.chdir(tmp_path)
    img, mask = make_scene(40, 60, seed=0)
    Image.fromarray(img).save("a.png")
    Image.fromarray(scene_scribbles(mask)).save("s.png")
    shown = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(annotate, "show_image", shown.append)
    caplog.set_level("INFO", logger="label_tools")
    assert cli.main(["a.png", "--scribbles", "s.png", "-o", "o", "--show"]) == 0
    assert shown == [os.path.join("o", "a_mres.png")]
    assert caplog.messages[-1] == "showing a_mres.png: press a key in its window, or close it, to finish"


def test_file_dialog_said_on_stderr(monkeypatch, caplog):
    """The file dialogs said what they ask for (the labels file; the colours file, cancel for defaults) only
    in their title, which a session without a window manager does not show: an unlabelled dialog."""
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(annotate, "_run_dialog", lambda show: "")
    caplog.set_level("INFO", logger="label_tools")
    with pytest.raises(annotate.InputError, match="no colours file .* chosen: pass --colors"):
        annotate.ask_file("colours file (one colour per class; cancel for defaults)", option="--colors")
    assert caplog.messages == ["choose the colours file (one colour per class; cancel for defaults) in the file "
                               "dialog (or pass --colors)"]


def test_resumed_walk_asks_for_no_class_files(tmp_path, monkeypatch):
    """A collection begun without --labels/--colors (README: `label-image -w 500 frame_01.jpg ... -o out/`,
    the files chosen in dialogs) and run again to resume asked for both files again, though the walk's
    model holds its classes; a --labels that differs from them was refused only after the colours dialog."""
    from PIL import Image

    from conftest import make_scene, scene_scribbles
    from label_tools import cli, collection

    monkeypatch.chdir(tmp_path)
    os.makedirs("shore")
    for i in range(2):
        img, mask = make_scene(48, 72, seed=i)
        Image.fromarray(img).save(f"shore/f{i}.png")
    Image.fromarray(scene_scribbles(make_scene(48, 72, seed=0)[1])).save("s.png")
    (tmp_path / "names.txt").write_text("water\nsand\ngrass\n")
    os.makedirs("out")
    model = str(tmp_path / "out" / "shore_model.skops")
    assert cli.main(["shore/f0.png", "--scribbles", "s.png", "--labels", "names.txt", "--headless", "-o", "fit",
                     "--save-model", model, "-q"]) == 0
    images = collection.list_images(["shore"])
    collection.CollectionState(str(tmp_path / "out" / "shore_collection.json"), images, 1, images[:1], model,
                               None).save()
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(annotate, "ask_file", lambda *a, **k: pytest.fail("a file dialog was opened"))
    seen = []
    monkeypatch.setattr(collection, "walk", lambda images, **kw: seen.append(kw["classes"]) or
                        collection.CollectionState("x", images, 2, images, model, None))
    assert cli.main(["-w", "500", "shore", "-o", "out", "-q"]) == 0
    assert seen[-1].names == ("water", "sand", "grass")
    (tmp_path / "other.txt").write_text("sea\nbeach\nfield\n")
    assert cli.main(["-w", "500", "shore", "--labels", "other.txt", "-o", "out", "-q"]) == 0  # walk() compares
    assert seen[-1].names == ("sea", "beach", "field")


def test_resume_note_one_class():
    """'678 scribbled pixels of 1 classes' on resuming a session with strokes of one class."""
    import numpy as np

    from label_tools.session import Session
    from label_tools.tiling import annotation_windows

    scr = np.zeros((60, 90), np.uint8)
    scr[10:20, 10:40] = 2
    s = Session((60, 90), 3, annotation_windows((60, 90), 500), scribbles=scr)
    assert s.resume_note("a_scribbles.png", ("water", "sand", "land"), {}, False).endswith(
        "; 300 scribbled pixels of 1 class")


def test_stopped_walk_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C/SIGTERM in a collection of images named one by one (`label-image a.jpg b.jpg -o out`) said
    only 'no output was left half-written'; a single image's run, or a folder's, also says the strokes are
    kept and the same command resumes."""
    from PIL import Image

    from conftest import make_scene
    from label_tools import cli, collection

    monkeypatch.chdir(tmp_path)
    for i in range(2):
        Image.fromarray(make_scene(40, 60, seed=i)[0]).save(f"f{i}.png")
    (tmp_path / "names.txt").write_text("water\nsand\ngrass\n")
    (tmp_path / "cols.txt").write_text("blue\ntan\ngreen\n")
    monkeypatch.setenv("DISPLAY", ":99")

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(collection, "walk", stopped)
    assert cli.main(["f0.png", "f1.png", "--labels", "names.txt", "--colors", "cols.txt", "-o", "out"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "label-image: stopped by SIGINT; no output was left half-written; scribbles drawn so far are kept in the "
        "scribble file: run the same command again to resume")
