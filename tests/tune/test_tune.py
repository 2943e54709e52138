"""`peftlab tune`: the --json contract, trials scored on validation, several processes on one study (a journal file;
PostgreSQL when this machine has it: the `postgres` fixture in conftest.py), and bad input as one line with exit 2."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftlab.cli import main

TINY = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "36", "--max-eval-samples", "12",
        "--max-validation-samples", "15", "--epochs", "2", "--max-length", "24", "--batch-size", "12"]  # fmt: skip


def _tune(args, capsys) -> tuple[int, dict | None, str]:
    code = main(["tune", *TINY, *args, "--json", "--quiet"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


def test_json_contract_and_resume(tmp_path, capsys):
    code, result, _ = _tune(["--method", "lora", "--trials", "3", "--out", str(tmp_path)], capsys)
    assert code == 0 and set(result) == {"study", "storage", "trials", "best"}
    assert [t["number"] for t in result["trials"]] == [0, 1, 2]
    for t in result["trials"]:
        assert set(t) == {"number", "state", "params", "value", "seconds"}
        assert t["state"] in ("COMPLETE", "PRUNED", "FAIL") and set(t["params"]) == {
            "lr",
            "lora_r",
            "lora_alpha",
        }
    done = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert result["best"]["value"] == max(t["value"] for t in done) and 0 <= result["best"]["value"] <= 1
    assert Path(result["storage"]).parent == tmp_path  # a journal file beside the results store
    # the same study again without --resume is refused; with --resume it goes on from trial 3
    code, _, err = _tune(["--method", "lora", "--trials", "1", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--resume" in err
    code, again, _ = _tune(["--method", "lora", "--trials", "2", "--out", str(tmp_path), "--resume"], capsys)
    assert code == 0 and [t["number"] for t in again["trials"]] == [0, 1, 2, 3, 4]


def _worker(storage: str, study: str, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "peftlab.cli", "tune", *TINY, "--method", "head", "--trials", "3", "--storage",
           storage, "--study", study, "--resume", "--quiet", "--json", "--out", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_workers_add_up(storage: str, tmp_path: Path) -> None:
    import optuna

    from peftlab.tune import open_storage

    procs = [_worker(storage, "shared", tmp_path / f"w{i}") for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    trials = optuna.load_study(study_name="shared", storage=open_storage(storage, tmp_path)[0]).trials
    assert sorted(t.number for t in trials) == list(
        range(6)
    )  # 2 workers x 3 trials: none lost, none duplicated
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    seen = [json.loads(o[0])["trials"] for o in outs]  # each worker's answer lists the study's trials so far
    assert max(len(s) for s in seen) == 6


@pytest.mark.slow
def test_two_processes_share_one_local_study(tmp_path):
    _two_workers_add_up(str(tmp_path / "shared.journal"), tmp_path)


@pytest.mark.slow
def test_two_processes_share_one_postgres_study(postgres, tmp_path):
    _two_workers_add_up(postgres, tmp_path)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--method", "lora", "--trials", "0"], "--trials 0"),
        (["--method", "lora", "--trials", "2", "--space", "rank=4,8"], "'rank' is not a setting of lora"),
        (["--method", "baseline", "--trials", "2"], "nothing to tune"),
        (
            ["--method", "lora", "--trials", "2", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
            "--storage",
        ),
    ],
)
def test_bad_input_is_one_line_and_quick(args, expect, tmp_path, capsys):
    started = time.perf_counter()
    code, _, err = _tune([*args, "--out", str(tmp_path)], capsys)
    assert code == 2 and expect in err and err.strip().count("\n") == 0
    assert time.perf_counter() - started < 30  # an unreachable server is refused, not waited on


def test_a_study_with_another_search_space_is_refused(tmp_path, capsys):
    base = ["--method", "lora", "--trials", "1", "--out", str(tmp_path), "--study", "s1"]
    assert _tune(base, capsys)[0] == 0
    code, _, err = _tune([*base, "--resume", "--space", "lora-r=2,4"], capsys)
    assert code == 2 and "another search space" in err


def test_compare_tune_gives_each_method_the_same_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    grid = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "baseline,head,lora",
            "--seeds", "2", "--tune", "3", *TINY[4:], "--no-save-model", "--out", str(out), "--json", "--quiet"]  # fmt: skip
    assert main(grid) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["tuning"]) == {"head tuned", "lora tuned"}  # baseline trains nothing: nothing to tune
    for t in summary["tuning"].values():
        assert t["trials_complete"] + t["trials_pruned"] == 3 and 0 <= t["best_value"] <= 1
    rows = {r["label"]: r for r in summary["summary"]}
    assert {"head", "head tuned", "lora", "lora tuned", "baseline"} <= set(rows)
    assert rows["lora tuned"]["n_seeds"] == 2 and rows["lora tuned"]["tuned"] and not rows["lora"]["tuned"]
    assert rows["lora tuned"]["tuning"]["best_params"]["lr"] == pytest.approx(
        summary["tuning"]["lora tuned"]["best_params"]["lr"]
    )
    md = (out / "report.md").read_text()
    assert "Tuning (equal budgets" in md and "untuned defaults" in md
    assert list((out / "plots").glob("*tuning-lr.png"))
    # resumed: the studies already hold their budget and every run is stored, so nothing runs again
    assert main([*grid, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["runs_new"] == 0 and again["tuning"]["lora tuned"] == summary["tuning"]["lora tuned"]


def test_ctrl_c_keeps_the_study_and_resume_goes_on(tmp_path, capsys, monkeypatch):
    import dataclasses

    import optuna

    import peftlab.tasks.classification as classification
    from peftlab.tune import open_storage

    real, calls = classification.validate, {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    from peftlab.tasks import TASKS

    text = TASKS["text-classification"]
    monkeypatch.setitem(TASKS, "text-classification", dataclasses.replace(text, validate=interrupt_second))
    args = ["--method", "head", "--trials", "3", "--out", str(tmp_path), "--study", "cc"]
    assert main(["tune", *TINY, *args, "--quiet"]) == 130
    trials = optuna.load_study(study_name="cc", storage=open_storage(None, tmp_path)[0]).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]  # the interrupted trial is kept, as failed
    capsys.readouterr()
    code, result, _ = _tune([*args, "--resume"], capsys)
    assert code == 0 and [t["state"] for t in result["trials"]][:2] == ["COMPLETE", "FAIL"]
    assert len(result["trials"]) == 5
