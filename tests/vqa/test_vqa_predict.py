"""`peftlab predict` on VQA runs: --image + --question (paired or broadcast) and CSV input, answers that reproduce the
run's test accuracy, dual-encoder runs (their projections are saved), the model card, and what export refuses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from peftlab.cli import main

FAST = ["--epochs", "3", "--batch-size", "8", "--hidden", "16"]


def _run(args, tmp_path, capsys) -> dict:
    code = main(["run", "--task", "vqa", *args, *FAST, "--out", str(tmp_path / "runs"), "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _predict(args, capsys) -> tuple[int, list[dict], str]:
    code = main(["predict", *map(str, args), "--json", "--quiet"])
    out = capsys.readouterr()
    return code, [json.loads(x) for x in out.out.splitlines()], out.err


def _test_rows(shapes_csv: str) -> list[dict]:
    with open(shapes_csv) as f:
        return [r for r in csv.DictReader(f) if r["split"] == "test"]


@pytest.mark.parametrize("encoders", ["towers", "dual"])
def test_answers_reproduce_the_runs_accuracy(encoders, tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path,
                                             capsys):  # fmt: skip
    towers = ["--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder]
    rec = _run(["--dataset", shapes_csv, *towers, *(["--encoder", "dual"] if encoders == "dual" else [])], tmp_path,
               capsys)  # fmt: skip
    run_dir = Path(rec["artifacts"]["dir"])
    assert (run_dir / "vqa-head" / "projection.safetensors").is_file() == (encoders == "dual")
    rows = _test_rows(shapes_csv)
    folder = Path(shapes_csv).parent
    args = [run_dir]
    for r in rows:
        args += ["--image", folder / r["image"], "--question", r["question"]]
    code, answers, err = _predict(args, capsys)
    assert code == 0, err
    assert [a["input"]["question"] for a in answers] == [r["question"] for r in rows]
    correct = sum(a["label"] == r["answer"] for a, r in zip(answers, rows))
    assert correct / len(rows) == pytest.approx(rec["metrics"]["accuracy"])  # the run's own test accuracy
    assert set(answers[0]["probs"]) == set(rec["data"]["label_names"])


def test_csv_input_broadcast_card_and_refusals(
    tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys
):
    rec = _run(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder],
               tmp_path, capsys)  # fmt: skip
    run_dir = Path(rec["artifacts"]["dir"])
    folder = Path(shapes_csv).parent
    rows = _test_rows(shapes_csv)
    code, from_csv, _ = _predict([run_dir, "--input", shapes_csv], capsys)  # every row of the file, in order
    assert code == 0 and len(from_csv) == 36 and from_csv[0]["input"]["image"] == "images/img0.png"
    # one image, several questions: the image is asked each of them
    image = folder / rows[0]["image"]
    questions = [r["question"] for r in rows[:3]]
    code, broadcast, _ = _predict([run_dir, "--image", image] + [a for q in questions for a in ("--question", q)],
                                  capsys)  # fmt: skip
    assert code == 0 and [b["input"] for b in broadcast] == [
        {"image": str(image), "question": q} for q in questions
    ]
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: visual-question-answering" in card and "peftlab predict" in card
    for args, match in [
        ([run_dir, "--text", "what?"], "--text given, but this run is a VQA model"),
        ([run_dir, "--image", image], "give --image PATH and --question TEXT"),
        ([run_dir, "--image", image, "--image", image, "--question", "a", "--question", "b", "--question", "c"],
         "give them in pairs"),
    ]:  # fmt: skip
        code = main(["predict", *map(str, args)])
        assert code == 2 and match in capsys.readouterr().err
    code = main(["export", str(run_dir), "--out", str(tmp_path / "exp")])
    assert code == 2 and "use `peftlab predict`" in capsys.readouterr().err
