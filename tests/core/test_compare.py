"""`peftlab compare`: the grid, its JSON summary, shared work, --resume, and Ctrl-C in the middle."""

import json

import pytest

from peftlab.cli import main
from peftlab.compare import expand
from peftlab.errors import BadInput
from peftlab.store import Store

GRID = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "baseline,head", "--seeds", "2",
        "--max-train-samples", "24", "--max-eval-samples", "18", "--epochs", "1", "--batch-size", "8",
        "--max-length", "24", "--no-save-model", "--quiet"]  # fmt: skip


def test_expand_orders_and_validates():
    runs = expand({"models": "a", "datasets": "d", "methods": ["head", "lora"], "seeds": 2, "lora_r": 4})
    assert [(r.method, r.seed, r.lora_r) for r in runs] == [
        ("head", 0, 4),
        ("head", 1, 4),
        ("lora", 0, 4),
        ("lora", 1, 4),
    ]
    with pytest.raises(BadInput, match="lora-r"):
        expand({"models": "a", "datasets": "d", "lora_r": 0})
    with pytest.raises(BadInput, match="unknown setting"):
        expand({"models": "a", "datasets": "d", "lora_rank": 4})


def test_grid_json_resume_and_report(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([*GRID, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs_total"] == 4 and summary["runs_new"] == 4 and summary["runs_failed"] == 0
    for f in ("report.html", "report.md", "summary.csv", "summary.json"):
        assert (out / f).exists()
    rows = {r["method"]: r for r in summary["summary"]}
    assert rows["head"]["n_seeds"] == 2 and "accuracy_ci95" in rows["head"]
    # resume: nothing new to do
    assert main([*GRID, "--out", str(out), "--json", "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["runs_new"] == 0 and again["runs_skipped"] == 4
    # the report rebuilds from the store alone
    assert main(["report", "--store", str(out / "peftlab.db"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").exists()


def test_ctrl_c_mid_grid_then_resume(tmp_path, monkeypatch, capsys):
    import peftlab.experiment as exp

    real_train, calls = exp.train, {"n": 0}

    def train_then_interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second training run (head, seed 1) is interrupted
            raise KeyboardInterrupt
        return real_train(*a, **k)

    monkeypatch.setattr(exp, "train", train_then_interrupt)
    out = tmp_path / "cmp"
    assert main([*GRID, "--out", str(out)]) == 130
    statuses = sorted(r["status"] for r in Store(out / "peftlab.db").records())
    assert statuses == ["cancelled", "ok", "ok", "ok"]  # baseline x2 and head s0 finished, head s1 cancelled
    monkeypatch.setattr(exp, "train", real_train)
    capsys.readouterr()
    assert main([*GRID, "--out", str(out), "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs_new"] == 1 and summary["runs_skipped"] == 3
    ok = [r for r in Store(out / "peftlab.db").records() if r["status"] == "ok"]
    assert len(ok) == 4
