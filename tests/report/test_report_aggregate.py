"""Aggregation across seeds: CI arithmetic on known numbers, n=1, grouping, failed runs, duplicates, Pareto fronts.

Run with `pytest tests/report`; the `records` fixture is conftest.make_records() (2 datasets × 3 methods × 3 seeds + 1 failed).
"""

from __future__ import annotations

import copy
import math

import pytest

from peftlab.report import ci95, pareto_front, summarize

T_0975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def test_ci95_known_numbers():
    mean, half = ci95([0.80, 0.82, 0.84])
    # std (ddof=1) = sqrt((0.02² + 0 + 0.02²) / 2) = 0.02; half = 4.302653 * 0.02 / sqrt(3) = 0.0496827
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(T_0975_DF2 * 0.02 / math.sqrt(3))
    assert half == pytest.approx(0.049683, abs=1e-6)


def test_ci95_two_values_uses_t_with_one_df():
    mean, half = ci95([1.0, 3.0])
    # std = sqrt(2); t(0.975, 1) = 12.7062; half = 12.7062 * sqrt(2) / sqrt(2) = 12.7062
    assert mean == 2.0
    assert half == pytest.approx(12.706204736, rel=1e-9)


def test_ci95_one_value_has_no_interval():
    assert ci95([0.9]) == (0.9, None)


def test_ci95_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        ci95([])
    with pytest.raises(ValueError):
        ci95([0.5, float("nan")])


def test_pareto_front_hand_made():
    pts = [
        {"cost": 1, "acc": 0.70},  # 0: cheapest -> front
        {"cost": 10, "acc": 0.80},  # 1: front
        {"cost": 20, "acc": 0.78},  # 2: dominated by 1 (dearer and worse)
        {"cost": 100, "acc": 0.90},  # 3: best -> front
        {"cost": 10, "acc": 0.75},  # 4: same cost as 1, worse -> dominated
        {"cost": 100, "acc": 0.90},  # 5: identical to 3 -> kept too
        {"cost": None, "acc": 0.99},  # 6: no cost -> never on the front
        {"cost": 5, "acc": float("nan")},  # 7: no accuracy -> never on the front
    ]
    assert pareto_front(pts, "cost", "acc") == {0, 1, 3, 5}
    assert pareto_front([], "cost", "acc") == set()
    assert pareto_front([{"cost": 3, "acc": 0.1}], "cost", "acc") == {0}


def test_summarize_groups_and_excludes_failed(records):
    rows = summarize(records)
    assert len(rows) == 6  # 2 datasets × 3 methods; the failed lora run adds nothing
    assert {(r["dataset"], r["method"]) for r in rows} == {
        (d, m) for d in ("sst2-mini", "fashion-mini") for m in ("head", "lora", "full")
    }
    assert all(r["n_seeds"] == 3 and r["seeds"] == [0, 1, 2] for r in rows)
    # sorted by dataset, then accuracy best first
    assert [r["method"] for r in rows if r["dataset"] == "sst2-mini"] == ["full", "lora", "head"]

    lora = next(r for r in rows if (r["dataset"], r["method"]) == ("sst2-mini", "lora"))
    # accuracies 0.84, 0.85, 0.83: mean 0.84, std 0.01, half-width 4.302653 * 0.01 / sqrt(3) = 0.024841
    assert lora["accuracy_mean"] == pytest.approx(0.84)
    assert lora["accuracy_std"] == pytest.approx(0.01)
    assert lora["accuracy_ci95"] == pytest.approx(T_0975_DF2 * 0.01 / math.sqrt(3))
    assert lora["accuracy_per_seed"] == [0.84, 0.85, 0.83]
    assert lora["macro_f1_mean"] == pytest.approx(0.83)
    # train_s = 5.0 * (1, 1.05, 1.10): mean 5.25
    assert lora["train_s_mean"] == pytest.approx(5.25)
    assert lora["peak_rss_mb_mean"] == pytest.approx(821.0)
    assert lora["trainable_params"] == 12_546 and lora["total_params"] == 4_386_178
    assert lora["trainable_pct"] == pytest.approx(100 * 12_546 / 4_386_178)
    assert lora["baseline_accuracy_mean"] == pytest.approx(0.50)
    assert lora["gain_over_baseline"] == pytest.approx(0.34)
    assert (lora["train_size"], lora["eval_size"], lora["num_labels"]) == (2000, 500, 2)
    assert lora["params_match"] is True and lora["mixed_config"] == {} and lora["duplicates_dropped"] == 0
    for m in ("accuracy", "macro_f1", "macro_recall", "train_s", "train_samples_per_s", "peak_rss_mb"):
        assert {f"{m}_mean", f"{m}_std", f"{m}_ci95"} <= lora.keys()

    bad = next(r for r in rows if (r["dataset"], r["method"]) == ("fashion-mini", "lora"))
    assert bad["params_match"] is False  # predicted 12,548 vs measured 12,546 in the fixture
    # every point is on both fronts here: more params / more time always bought more accuracy
    assert all(r["pareto_params"] and r["pareto_time"] for r in rows)


def test_summarize_single_seed_has_no_interval(records):
    one = [r for r in records if r["seed"] == 0 and r["status"] == "ok"]
    rows = summarize(one)
    assert len(rows) == 6
    for r in rows:
        assert r["n_seeds"] == 1
        assert r["accuracy_std"] == 0.0
        assert r["accuracy_ci95"] is None and r["train_s_ci95"] is None


def test_summarize_latest_run_per_seed(records):
    heads = [r for r in records if r["dataset"] == "sst2-mini" and r["method"] == "head"]
    rerun = copy.deepcopy(heads[0])  # seed 0 again, later, same settings: a resumed grid re-ran it
    rerun.update(run_id="again", created_at="2025-02-01T00:00:00+00:00")
    rerun["metrics"]["accuracy"] = 0.60
    (row,) = summarize([*heads, rerun])
    assert row["n_seeds"] == 3 and row["duplicates_dropped"] == 1
    assert row["accuracy_per_seed"] == [0.60, 0.72, 0.71]  # the newer seed-0 run counts
    assert row["mixed_config"] == {}


def test_summarize_never_merges_runs_whose_settings_differ(records):
    heads = [r for r in records if r["dataset"] == "sst2-mini" and r["method"] == "head"]
    other = copy.deepcopy(heads[0])  # seed 0 with another learning rate: another experiment
    other.update(run_id="other-lr", created_at="2025-02-01T00:00:00+00:00")
    other["metrics"]["accuracy"] = 0.60
    other["config"]["lr"] = 5e-4
    rows = summarize([*heads, other])
    assert len(rows) == 2 and sum(r["n_runs"] for r in rows) == 4  # nothing dropped
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {
        "head lr=0.001",
        "head lr=0.0005",
    }  # same method and knobs: the differing setting
    assert by_label["head lr=0.001"]["seeds"] == [0, 1, 2] and by_label["head lr=0.0005"]["seeds"] == [0]
    assert all(r["duplicates_dropped"] == 0 for r in rows)


def test_summarize_tolerates_missing_sections(records):
    r = records[0]
    r["time"] = None
    r["memory"] = {}
    (row,) = summarize([r])
    assert row["accuracy_mean"] == pytest.approx(r["metrics"]["accuracy"])
    assert row["train_s_mean"] is None and row["peak_rss_mb_ci95"] is None
    assert summarize([]) == []
