"""Options that would have no effect on the run they are given to are refused in one line (as --init-offset
without --init is), rather than silently ignored."""
import pytest

from conftest import one_error_line
from label_tools.cli import main


@pytest.mark.parametrize("given, what", [
    (["--resume"], "it continues from, or sets aside, <stem>_scribbles.png"),
    (["--no-resume"], "it continues from, or sets aside, <stem>_scribbles.png"),
    (["--order", "uncertainty"], "its window order"),
    (["--order", "rows"], "its window order"),
    (["--backend", "matplotlib"], "its window toolkit")])
@pytest.mark.parametrize("how", ["scribbles", "headless"])
def test_annotator_options_without_the_annotator_are_refused(small_photo, tmp_path, capsys, given, what, how):
    img, scr, _ = small_photo
    args = [str(img), "--scribbles", str(scr), "-o", str(tmp_path / "out")] + given
    if how == "headless":
        args.append("--headless")
    assert main(args) == 2
    why = "--scribbles FILE"  # --headless with --scribbles: the scribbles are named first
    assert one_error_line(capsys) == (
        f"label-image: error: {' '.join(given)} is for the annotator ({what}); "
        f"with {why} no annotator opens: leave out {given[0]}")
    assert not (tmp_path / "out").exists()


def test_resume_with_headless_model_run_names_headless(small_photo, tmp_path, capsys):
    img, scr, _ = small_photo
    model = tmp_path / "m.skops"
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(model),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["--model", str(model), "--headless", str(img), "-o", str(tmp_path / "out"), "--resume"]) == 2
    assert one_error_line(capsys).endswith("with --headless no annotator opens: leave out --resume")
    assert not (tmp_path / "out").exists()


def test_no_adapt_without_a_model_is_refused_and_with_one_runs(small_photo, tmp_path, capsys):
    img, scr, _ = small_photo
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "out"), "--no-adapt"]) == 2
    assert one_error_line(capsys) == (
        "label-image: error: --no-adapt applies to a model used on images it was not fitted on (--model FILE, or "
        "the model a collection walk carries from image to image); this run fits its own model on IMAGE: leave "
        "out --no-adapt")
    assert not (tmp_path / "out").exists()
    model = tmp_path / "m.skops"
    assert main([str(img), "--scribbles", str(scr), "-o", str(tmp_path / "fit"), "--save-model", str(model),
                 "-q"]) == 0
    assert main(["--model", str(model), "--headless", str(img), "-o", str(tmp_path / "applied"), "--no-adapt",
                 "-q"]) == 0
    assert (tmp_path / "applied" / "photo_mres_label.png").exists()
