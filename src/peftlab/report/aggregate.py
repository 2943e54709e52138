"""Aggregation of run records across seeds: one summary row per (dataset, model, method), mean ± std ± 95% CI.

`summarize(records)` feeds every part of the report (tables, plots, prose, summary.csv); `ci95(values)` stands alone.
"""

from __future__ import annotations

import math
from collections import defaultdict

from scipy import stats

from peftlab.report.fmt import is_num
from peftlab.report.pareto import front_rows

# metric name -> (record section, key); each gets <m>_mean, <m>_std, <m>_ci95 in a summary row
METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("metrics", "accuracy"),
    "macro_f1": ("metrics", "macro_f1"),
    "macro_recall": ("metrics", "macro_recall"),
    "train_s": ("time", "train_s"),
    "train_samples_per_s": ("time", "train_samples_per_s"),
    "peak_rss_mb": ("memory", "peak_rss_mb"),
}

# config keys that legitimately differ between the seeds of one (dataset, model, method) group
_PER_RUN_KEYS = {
    "seed",
    "out",
    "out_dir",
    "output_dir",
    "store",
    "run_id",
    "resume",
    "json",
    "config",
    "config_hash",
    "name",
}


def ci95(values) -> tuple[float, float | None]:
    """(mean, half-width of the 95% Student-t CI) = (x̄, t_{0.975, n-1} · s / √n), s the ddof=1 std.

    With one value there is no spread to estimate: the half-width is None (never 0).
    [0.80, 0.82, 0.84] -> (0.82, 4.302653 · 0.02 / √3 = 0.049685).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("ci95 needs at least one value")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"ci95 needs finite values, got {xs}")
    mean, std = _mean_std(xs)
    n = len(xs)
    if n < 2:
        return mean, None
    return mean, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0.0 for a single value)."""
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))


def _get(record: dict, section: str, key: str):
    """record[section][key] as a float, or None when absent, null or not finite."""
    value = (record.get(section) or {}).get(key)
    return float(value) if is_num(value) else None


def ok_records(records) -> list[dict]:
    """The records that count in aggregates: status "ok" only."""
    return [r for r in records if r.get("status") == "ok"]


def failed_records(records) -> list[dict]:
    """Every record that is not "ok" (failed, cancelled, anything else), oldest first."""
    return sorted(
        (r for r in records if r.get("status") != "ok"), key=lambda r: str(r.get("created_at") or "")
    )


def _latest_per_seed(runs: list[dict]) -> tuple[list[dict], int]:
    """Keep the newest ok run of each seed (a resumed grid may have re-run one); returns (runs, how many dropped)."""
    by_seed: dict = {}
    for r in sorted(runs, key=lambda r: str(r.get("created_at") or "")):
        # a run without a seed is its own repeat: never merged with another
        by_seed[r.get("seed") if r.get("seed") is not None else ("no seed", r.get("run_id"), id(r))] = r
    kept = sorted(by_seed.values(), key=lambda r: (r.get("seed") is None, str(r.get("seed"))))
    return kept, len(runs) - len(kept)


def _mixed_config(runs: list[dict]) -> dict[str, list[str]]:
    """Config keys whose values differ between the seeds of one group: {key: sorted distinct values as text}."""
    keys = {k for r in runs for k in (r.get("config") or {})}
    mixed = {}
    for key in sorted(keys):
        if key in _PER_RUN_KEYS or key.endswith(("_dir", "_path", "_hash")):
            continue
        seen = {repr((r.get("config") or {}).get(key)) for r in runs}
        if len(seen) > 1:
            mixed[key] = sorted(seen)
    return mixed


def _params_match(runs: list[dict]) -> bool | None:
    """False if any run's predicted parameters disagree with the measured ones, True if all agree, None if unknown."""
    verdicts = [params_verdict(r.get("params") or {}) for r in runs]
    if any(v is False for v in verdicts):
        return False
    return True if verdicts and all(v is True for v in verdicts) else None


def params_verdict(params: dict) -> bool | None:
    """Does the analytic prediction match the measurement? Uses `match` and the two count pairs; None if unpredicted."""
    checks = []
    if params.get("match") is not None:
        checks.append(bool(params["match"]))
    for measured, predicted in (("trainable", "predicted_trainable"), ("total", "predicted_total")):
        if is_num(params.get(measured)) and is_num(params.get(predicted)):
            checks.append(int(params[measured]) == int(params[predicted]))
    return all(checks) if checks else None


def summarize(records) -> list[dict]:
    """One row per (dataset, model, method) over ok runs, sorted by dataset then accuracy (best first).

    Row keys: dataset, model, method, task, n_seeds (runs with an accuracy), n_runs, seeds, run_ids, accuracy_per_seed,
    <m>_mean / <m>_std / <m>_ci95 for m in METRICS (std ddof=1, 0.0 for n=1; ci95 None for n=1),
    trainable_params, total_params, trainable_pct, predicted_trainable, predicted_total, params_match,
    baseline_accuracy_mean, gain_over_baseline, train_size, eval_size, num_labels,
    pareto_params, pareto_time (on the accuracy-vs-cost front of its dataset), mixed_config, duplicates_dropped.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in ok_records(records):
        groups[(str(r.get("dataset")), str(r.get("model")), str(r.get("method")))].append(r)

    rows = []
    for (dataset, model, method), all_runs in groups.items():
        runs, dropped = _latest_per_seed(all_runs)
        first = runs[0]
        params = first.get("params") or {}
        data = first.get("data") or {}
        # an ok run without a finite accuracy (should not happen) is kept out of the accuracy statistics
        scored = [r for r in runs if _get(r, "metrics", "accuracy") is not None]
        row: dict = {
            "dataset": dataset,
            "model": model,
            "method": method,
            "task": first.get("task"),
            "n_seeds": len(scored),  # the n of every accuracy mean, std and CI
            "n_runs": len(runs),
            "seeds": [r.get("seed") for r in scored],
            "run_ids": [r.get("run_id") for r in runs],
        }
        for name, (section, key) in METRICS.items():
            xs = [x for x in (_get(r, section, key) for r in runs) if x is not None]
            if xs:
                mean, half = ci95(xs)
                row[f"{name}_mean"], row[f"{name}_std"], row[f"{name}_ci95"] = mean, _mean_std(xs)[1], half
            else:
                row[f"{name}_mean"] = row[f"{name}_std"] = row[f"{name}_ci95"] = None
        row["accuracy_per_seed"] = [_get(r, "metrics", "accuracy") for r in scored]  # aligned with "seeds"

        trainable, total = params.get("trainable"), params.get("total")
        pct = params.get("trainable_pct")
        if not is_num(pct) and is_num(trainable) and is_num(total) and total:
            pct = 100.0 * trainable / total  # percent units, like the record's field
        row["trainable_params"] = int(trainable) if is_num(trainable) else None
        row["total_params"] = int(total) if is_num(total) else None
        row["trainable_pct"] = float(pct) if is_num(pct) else None
        row["predicted_trainable"] = params.get("predicted_trainable")
        row["predicted_total"] = params.get("predicted_total")
        row["params_match"] = _params_match(runs)

        base = [x for x in (_get(r, "baseline_metrics", "accuracy") for r in runs) if x is not None]
        row["baseline_accuracy_mean"] = _mean_std(base)[0] if base else None
        row["gain_over_baseline"] = (
            row["accuracy_mean"] - row["baseline_accuracy_mean"]
            if is_num(row["accuracy_mean"]) and is_num(row["baseline_accuracy_mean"])
            else None
        )
        row["train_size"] = data.get("train_size")
        row["eval_size"] = data.get("eval_size")
        row["num_labels"] = data.get("num_labels")
        row["mixed_config"] = _mixed_config(runs)
        row["duplicates_dropped"] = dropped
        rows.append(row)

    # Pareto membership per dataset: minimise cost, maximise accuracy, among configurations that train (cost > 0)
    for dataset in {r["dataset"] for r in rows}:
        mine = [r for r in rows if r["dataset"] == dataset]
        for flag, x_key in (("pareto_params", "trainable_params"), ("pareto_time", "train_s_mean")):
            front = front_rows(mine, x_key, "accuracy_mean")
            for i, r in enumerate(mine):
                r[flag] = i in front

    def order(r):
        acc = r["accuracy_mean"]
        return (r["dataset"], -(acc if is_num(acc) else -math.inf), r["model"], r["method"])

    return sorted(rows, key=order)


def rows_by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    """Summary rows grouped by dataset, datasets in name order, rows kept in their (accuracy) order."""
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["dataset"]):
        out.setdefault(r["dataset"], []).append(r)
    return out
