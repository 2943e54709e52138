"""`--precision auto|fp32|bf16|fp16`: resolved once from the hardware, part of a run's identity (older records read as
fp32), accelerate's autocast in the loop, and a clear line where the hardware cannot do what was asked."""

import json

import pytest
import torch

from peftlab import config, precision
from peftlab.cli import main
from peftlab.record import Record

TINY = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--method", "head", "--max-train-samples", "24",
        "--max-eval-samples", "12", "--epochs", "1", "--max-length", "24", "--batch-size", "12", "--no-save-model",
        "--json", "--quiet"]  # fmt: skip
SETTINGS = {"model": "minilm-l6", "dataset": "vader-tweets", "method": "lora"}


def test_auto_is_fp32_on_a_cpu_and_older_records_count_as_fp32():
    if torch.cuda.is_available():
        pytest.skip("auto picks bf16 on a GPU that has it")
    cfg = config.load(SETTINGS)
    assert cfg.precision == "fp32" and config.load({**SETTINGS, "precision": "fp32"}) == cfg
    new = cfg.to_dict()
    old = {k: v for k, v in new.items() if k != "precision"}  # a record from before --precision
    assert Record.from_dict({"config": old}).config["precision"] == "fp32"
    assert Record.from_dict({"config": old}).identity == Record.from_dict({"config": new}).identity


def test_bf16_without_hardware_support_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda: False)
    assert main(["run", *TINY, "--out", str(tmp_path), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--precision bf16" in err and "no bf16 support" in err and len(err.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on a GPU")
def test_fp16_on_a_cpu_is_one_line(tmp_path, capsys):
    assert main(["run", *TINY, "--out", str(tmp_path), "--precision", "fp16"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_trains_where_the_hardware_has_it(tmp_path, capsys):
    if not (precision.cpu_has_bf16() or precision.gpu_has_bf16()):
        pytest.skip("no bf16 on this machine (the one-line refusal is tested above)")
    assert main(["run", *TINY, "--out", str(tmp_path), "--precision", "bf16"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["config"]["precision"] == "bf16" and record["status"] == "ok"
    assert record["time"]["train_steps"] == 2 and record["time"]["final_loss"] > 0
    assert ("peak_gpu_mb" in record["memory"]) == torch.cuda.is_available()
