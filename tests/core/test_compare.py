"""`peftlab compare`: the grid, its JSON summary, shared work, --resume, and Ctrl-C in the middle."""

import json

import pytest

from peftlab.cli import main
from peftlab.errors import BadInput
from peftlab.grid import expand
from peftlab.store import Store

GRID = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "baseline,head", "--seeds", "2",
        "--max-train-samples", "24", "--max-eval-samples", "18", "--epochs", "1", "--batch-size", "8",
        "--max-length", "24", "--no-save-model", "--quiet"]  # fmt: skip


EXP = {"models": "minilm-l6", "datasets": "vader-tweets"}


def test_expand_orders_and_validates():
    runs = expand({**EXP, "methods": ["head", "lora"], "seeds": 2, "lora_r": 4})
    assert [(r.method, r.seed, r.knobs.r if r.method == "lora" else None) for r in runs] == [
        ("head", 0, None),
        ("head", 1, None),
        ("lora", 0, 4),
        ("lora", 1, 4),
    ]
    with pytest.raises(BadInput, match="lora-r"):
        expand({**EXP, "lora_r": 0})
    with pytest.raises(BadInput, match="unknown setting"):
        expand({**EXP, "lora_rank": 4})


def test_expand_method_variants_from_yaml_and_the_command_line():
    runs = expand(
        {**EXP, "methods": ["lora", {"method": "lora", "r": 4, "label": "small"}, "lora:r=16:alpha=32"]}
    )
    assert [(r.knobs.r, r.knobs.alpha, r.label) for r in runs] == [(8, 16.0, None), (4, 16.0, "small"),
                                                                     (16, 32.0, None)]  # fmt: skip
    with pytest.raises(BadInput, match="--lora-r 'x'"):
        expand({**EXP, "methods": "lora:r=x"})
    with pytest.raises(BadInput, match="name=value"):
        expand({**EXP, "methods": "lora:r"})
    with pytest.raises(BadInput, match="unknown method"):
        expand({**EXP, "methods": [{"method": "lorax"}]})


@pytest.mark.parametrize("axis", ["methods", "models", "datasets", "seeds"])
def test_an_empty_grid_axis_is_bad_input(axis, capsys):
    assert main([*GRID, "--out", "unused", f"--{axis}", ""]) == 2
    assert "empty" in capsys.readouterr().err


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
    import peftlab.tasks.classification as exp

    real_train, calls = exp._fit, {"n": 0}  # _fit: every method's training (head's lean loop too)

    def train_then_interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second training run (head, seed 1) is interrupted
            raise KeyboardInterrupt
        return real_train(*a, **k)

    monkeypatch.setattr(exp, "_fit", train_then_interrupt)
    out = tmp_path / "cmp"
    assert main([*GRID, "--out", str(out)]) == 130
    statuses = sorted(r.status for r in Store(out / "peftlab.db").records())
    assert statuses == ["cancelled", "ok", "ok", "ok"]  # baseline x2 and head s0 finished, head s1 cancelled
    monkeypatch.setattr(exp, "_fit", real_train)
    capsys.readouterr()
    assert main([*GRID, "--out", str(out), "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs_new"] == 1 and summary["runs_skipped"] == 3
    ok = [r for r in Store(out / "peftlab.db").records() if r.ok]
    assert len(ok) == 4


def test_sweep_one_knob_over_values():
    alone = expand({**EXP, "sweep": "lora-r=4,8,16"})  # a sweep alone: that method's settings
    assert [(r.method, r.knobs.r) for r in alone] == [("lora", 4), ("lora", 8), ("lora", 16)]
    mixed = expand({**EXP, "methods": "head,lora,dora:alpha=8", "sweep": {"lora_r": [2, 4]}})
    assert [(r.method, getattr(r.knobs, "r", None)) for r in mixed] == [
        ("head", None), ("lora", 2), ("lora", 4), ("dora", 2), ("dora", 4)]  # fmt: skip
    assert mixed[-1].knobs.alpha == 8.0  # the variant's own knobs stay
    with pytest.raises(BadInput, match="lora_rank.*no method's knob.*lora_r"):
        expand({**EXP, "sweep": "lora-rank=4,8"})
    with pytest.raises(BadInput, match="KNOB=V1,V2"):
        expand({**EXP, "sweep": "lora-r"})
    with pytest.raises(BadInput, match="--lora-r 0"):
        expand({**EXP, "sweep": "lora-r=0,4"})
