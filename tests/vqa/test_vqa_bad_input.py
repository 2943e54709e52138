"""Bad VQA input: one clear line on stderr and exit 2, before any work is done (and nothing stored)."""

from pathlib import Path

import pytest

from peftlab.cli import main

from .test_vqa_data import _daquar


def bad(args, tmp_path, capsys) -> str:
    code = main(["run", "--task", "vqa", *args, "--out", str(tmp_path / "runs"), "--quiet", "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs" / "peftlab.db").exists() or "runs" not in err
    return err


def test_missing_image_file(tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys):
    Path(shapes_csv).parent.joinpath("images", "img5.png").unlink()
    err = bad(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder],
              tmp_path, capsys)  # fmt: skip
    assert "img5.png" in err and "not found" in err and "row 16" in err


def test_daquar_question_file_without_answers(tiny_image_encoder, tiny_text_encoder, tmp_path, capsys):
    folder = _daquar(tmp_path / "daquar", answers=False)
    err = bad(["--dataset", str(folder), "--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder],
              tmp_path, capsys)  # fmt: skip
    assert "without an answer" in err and "qa.894.raw.train.txt" in err


def test_table_without_answer_column(tiny_image_encoder, tiny_text_encoder, tmp_path, capsys):
    (tmp_path / "q.csv").write_text("image,question\na.png,what is it?\n")
    err = bad(["--dataset", str(tmp_path / "q.csv"), "--image-encoder", tiny_image_encoder,
               "--text-encoder", tiny_text_encoder], tmp_path, capsys)  # fmt: skip
    assert "no answers" in err and "--label-column" in err


def test_image_encoder_that_is_not_an_image_model(tiny_text_encoder, shapes_csv, tmp_path, capsys):
    err = bad(["--dataset", shapes_csv, "--image-encoder", tiny_text_encoder, "--text-encoder", tiny_text_encoder],
              tmp_path, capsys)  # fmt: skip
    assert err.startswith("peftlab: error: --image-encoder") and "not an image model" in err


def test_text_encoder_that_is_not_a_text_model(tiny_image_encoder, shapes_csv, tmp_path, capsys):
    err = bad(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder, "--text-encoder", tiny_image_encoder],
              tmp_path, capsys)  # fmt: skip
    assert "--text-encoder" in err and "not a text model" in err


def test_encoder_that_is_not_clip_style(tiny_image_encoder, shapes_csv, tmp_path, capsys):
    err = bad(["--dataset", shapes_csv, "--encoder", tiny_image_encoder], tmp_path, capsys)
    assert "not a CLIP-style" in err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--fusion", "sum"], "--fusion 'sum'"),
        (["--dropout", "1.5"], "--dropout"),
        (["--hidden", "0"], "--hidden"),
        (["--image-size", "0"], "--image-size 0"),
        (["--image-size", "-64"], "--image-size -64"),
        (["--image-size", "64px"], "--image-size"),
        (["--image-size", "6.5"], "--image-size"),
    ],
)
def test_bad_head_settings(
    extra, needle, tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys
):
    err = bad(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder,
               *extra], tmp_path, capsys)  # fmt: skip
    assert needle in err


def test_missing_text_encoder_and_missing_folder(tiny_image_encoder, shapes_csv, tmp_path, capsys):
    assert "--text-encoder is required" in bad(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder],
                                               tmp_path, capsys)  # fmt: skip
    err = bad(["--dataset", shapes_csv, "--image-encoder", str(tmp_path / "nope"), "--text-encoder", "x"],
              tmp_path, capsys)  # fmt: skip
    assert err.startswith("peftlab: error: --image-encoder")
    err = bad(["--dataset", str(tmp_path / "missing.csv"), "--encoder", "dual"], tmp_path, capsys)
    assert "missing.csv" in err
