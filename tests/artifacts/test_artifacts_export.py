"""`peftlab export RUN_DIR --out DIR`: what it refuses (one line, exit 2), --overwrite, --dtype, its summary and card.
That exports load with pipeline() and predict as `peftlab predict` does: test_artifacts_portable.py."""

from __future__ import annotations

import json

import torch

from peftlab.cli import main


def _export(args, capsys) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _refused(args, capsys, match: str) -> None:
    code, out, err = _export(args, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and match in err and "Traceback" not in err, err


def test_refusals(trained, tmp_path, capsys):
    run = trained["loha-local-cls"]
    _refused([tmp_path, "--out", tmp_path / "x"], capsys, "not a peftlab run folder")
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    _refused([run.run_dir, "--out", existing], capsys, "already exists")
    assert (existing / "keep.txt").read_text() == "mine"
    _refused([run.run_dir, "--out", run.run_dir, "--overwrite"], capsys, "holds the run itself")
    _refused([run.run_dir, "--out", run.run_dir.parent, "--overwrite"], capsys, "holds the run itself")
    for prompt in ("prompt-tuning", "prefix-tuning", "p-tuning"):
        prompt_run = next(r for r in trained.values() if r.method == prompt)
        _refused(
            [prompt_run.run_dir, "--out", tmp_path / prompt], capsys, "cannot be merged into the weights"
        )
        assert not (tmp_path / prompt).exists()
    _refused([run.run_dir, "--out", tmp_path / "y", "--dtype", "int8"], capsys, "invalid choice")


def test_overwrite_dtype_and_summary(trained, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    run = trained["dora-hub-cls"]
    out = tmp_path / "exported"
    out.mkdir()
    (out / "stale.txt").write_text("old export")
    code, printed, _ = _export([run.run_dir, "--out", out, "--overwrite", "--json"], capsys)
    assert code == 0 and not (out / "stale.txt").exists()
    summary = json.loads(printed)
    assert summary["merged"] is True and summary["dtype"] == "float32" and summary["method"] == "dora"
    assert summary["labels"] == run.record["data"]["label_names"] and summary["trust_remote_code"] is False
    assert sorted(f.name for f in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                    "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and 'pipeline("text-classification"' in card
    fp32 = (out / "model.safetensors").stat().st_size

    half = tmp_path / "half"
    code, printed, _ = _export([run.run_dir, "--out", half, "--dtype", "bf16"], capsys)
    assert code == 0 and "bfloat16" in printed
    assert abs((half / "model.safetensors").stat().st_size / fp32 - 0.5) < 0.01  # half the bytes per weight
    model = AutoModelForSequenceClassification.from_pretrained(half)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.id2label == dict(enumerate(run.record["data"]["label_names"]))


def test_unwritable_or_full_places_are_refused_before_loading_and_never_left_half_written(
    trained, tmp_path, capsys, monkeypatch
):
    import errno
    import os

    import transformers.modeling_utils

    from peftlab import disk

    run = trained["loha-local-cls"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    _refused([run.run_dir, "--out", afile / "sub"], capsys, "afile is a file, not a folder")
    # too little free space for the merged model: refused before anything is written
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 1024)
    _refused([run.run_dir, "--out", tmp_path / "small"], capsys, "the exported model needs about")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    monkeypatch.undo()

    def half_then_full(tensors, filename, *a, **k):  # the disk fills while the weights are written
        with open(filename, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", half_then_full)  # its own binding
    code, out, err = _export([run.run_dir, "--out", tmp_path / "full"], capsys)
    assert (
        code == 1
        and out == ""
        and err.count("\n") == 1
        and "the disk is full" in err
        and "Traceback" not in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no export, no temporary folder left
