"""`peftlab predict RUN_DIR`: texts, images, CSV / JSONL / folders, --json lines, batching, progress, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from artifact_runs import TEXTS

from peftlab.cli import main

TEXT_RUN, IMAGE_RUN = "lora-packaged-text", "ia3-local-cnn"


def _predict(args, capsys) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_texts_json_lines(trained, capsys):
    run = trained[TEXT_RUN]
    args = [run.run_dir, "--json", "--quiet"] + [a for t in TEXTS for a in ("--text", t)]
    code, out, err = _predict(args, capsys)
    assert code == 0 and err == ""
    rows = _lines(out)
    labels = run.record["data"]["label_names"]
    assert [r["input"] for r in rows] == TEXTS
    for r in rows:
        assert set(r) == {"input", "label", "probs"} and list(r["probs"]) == labels
        assert sum(r["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert r["label"] == max(r["probs"], key=r["probs"].get)
    # the plain form: label, its probability, the input
    code, plain, _ = _predict([run.run_dir, "--quiet", "--text", TEXTS[0]], capsys)
    label, p, text = plain.rstrip("\n").split("\t")
    assert (label, text) == (rows[0]["label"], TEXTS[0]) and float(p) == pytest.approx(
        rows[0]["probs"][label], abs=1e-4
    )


def test_files_batches_and_progress(trained, tmp_path, capsys):
    """CSV and JSONL give what --text gives; batch size changes nothing; many inputs show a progress bar."""
    run = trained["lokr-local-mean"]
    many = [f"{t} #{i}" for i in range(30) for t in TEXTS[:2]]  # 60 texts
    (tmp_path / "in.csv").write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(many)))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in many))
    code, from_csv, err = _predict(
        [run.run_dir, "--input", tmp_path / "in.csv", "--json", "--batch-size", "16"], capsys
    )
    assert code == 0 and "predict" in err and "60/60" in err  # tqdm on stderr: 4 batches
    code, from_jsonl, _ = _predict(
        [run.run_dir, "--input", tmp_path / "in.jsonl", "--json", "--quiet"], capsys
    )
    code, one_by_one, _ = _predict([run.run_dir, "--json", "--quiet", "--batch-size", "1"]
                                   + [a for t in many[:6] for a in ("--text", t)], capsys)  # fmt: skip
    a, b, c = _lines(from_csv), _lines(from_jsonl), _lines(one_by_one)
    assert [r["input"] for r in a] == many == [r["input"] for r in b]
    for x, y in zip(a[:6] + a, c + b):  # batch 1 vs 16 vs the run's 64: the same up to float rounding
        assert x["label"] == y["label"] and all(abs(x["probs"][k] - y["probs"][k]) < 1e-5 for k in x["probs"])


def test_images_paths_folder_and_table(trained, image_files, tmp_path, capsys):
    run = trained[IMAGE_RUN]
    code, direct, _ = _predict([run.run_dir, "--json", "--quiet"] + [a for f in image_files for a in ("--image", f)],
                               capsys)  # fmt: skip
    assert code == 0
    direct = _lines(direct)
    assert [r["input"] for r in direct] == image_files and len(direct[0]["probs"]) == 10
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for f in image_files:
        shutil.copy(f, folder)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    code, from_folder, _ = _predict(
        [run.run_dir, "--input", tmp_path / "photos", "--json", "--quiet"], capsys
    )
    (tmp_path / "photos" / "list.csv").write_text(
        "image\n" + "".join(f"nested/im{i}.png\n" for i in range(3))
    )
    code, from_csv, _ = _predict([run.run_dir, "--input", tmp_path / "photos" / "list.csv", "--json", "--quiet"],
                                 capsys)  # fmt: skip
    for rows in (_lines(from_folder), _lines(from_csv)):
        assert len(rows) == len(direct)
        for x, y in zip(rows, direct):
            assert x["label"] == y["label"] and all(
                abs(x["probs"][k] - y["probs"][k]) < 1e-6 for k in x["probs"]
            )


def _bad(args, capsys, match: str):
    code, out, err = _predict(args, capsys)
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


def _edited_copy(run, tmp_path, **changes):
    folder = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, folder)
    record = json.loads((folder / "record.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            record[section][field] = value
        else:
            record[section] = value
    (folder / "record.json").write_text(json.dumps(record))
    return folder


def test_bad_input_is_one_line(trained, tmp_path, capsys, image_files):
    text_run, image_run = trained[TEXT_RUN].run_dir, trained[IMAGE_RUN].run_dir
    _bad([tmp_path / "nope", "--text", "x"], capsys, "no such folder")
    _bad([tmp_path, "--text", "x"], capsys, "not a peftlab run folder")
    failed = _edited_copy(
        trained[TEXT_RUN], tmp_path / "f", status="failed", error="RuntimeError: out of memory"
    )
    _bad([failed, "--text", "x"], capsys, "ended failed (RuntimeError: out of memory)")
    unsaved = _edited_copy(trained[TEXT_RUN], tmp_path / "u", artifacts__saved=None)
    _bad([unsaved, "--text", "x"], capsys, "--no-save-model")
    _bad([image_run, "--text", "a cat"], capsys, "--text given, but this run is an image model")
    _bad([text_run, "--image", image_files[0]], capsys, "this run classifies text")
    _bad([image_run, "--image", tmp_path / "missing.png"], capsys, "not found")
    _bad([text_run], capsys, "nothing to predict")
    _bad([text_run, "--text", "x", "--question", "why?"], capsys, "--question is for VQA runs")
    (tmp_path / "cols.csv").write_text("sentence_id,words\n1,hello\n")
    _bad([text_run, "--input", tmp_path / "cols.csv"], capsys, "no text column")
    _bad([text_run, "--input", tmp_path / "none.csv"], capsys, "no such file")
    _bad([text_run, "--text", "x", "--batch-size", "0"], capsys, "--batch-size 0")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    _bad([image_run, "--image", tmp_path / "broken.png"], capsys, "does not decode")
