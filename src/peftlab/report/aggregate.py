"""Aggregation of run records across seeds: one summary row per experiment (config.identity), mean ± std ± 95% CI.

`summarize(records)` feeds every part of the report (tables, plots, prose, summary.csv); `ci95(values)` stands alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from scipy import stats

from peftlab.config import NOT_IDENTITY, identity, identity_hash, knob_keys, short_value
from peftlab.methods import REGISTRY
from peftlab.record import Data, Params, Record, as_record
from peftlab.report.fmt import is_num
from peftlab.report.pareto import front_rows

# metric name -> how a record holds it; each gets <m>_mean, <m>_std, <m>_ci95 in a summary row
METRICS: dict[str, Callable[[Record], Any]] = {
    "accuracy": lambda r: r.metrics and r.metrics.accuracy,
    "macro_f1": lambda r: r.metrics and r.metrics.macro_f1,
    "macro_recall": lambda r: r.metrics and r.metrics.macro_recall,
    "train_s": lambda r: r.time and r.time.train_s,
    "train_samples_per_s": lambda r: r.time and r.time.train_samples_per_s,
    "peak_rss_mb": lambda r: r.memory and r.memory.peak_rss_mb,  # the process's peak
    "run_peak_mb": lambda r: r.memory and r.memory.own_mb,  # the run's own (older records: the process's)
    "time_ratio": lambda r: _ratio(r.predicted and r.predicted.train_s, r.time and r.time.train_s),
    "memory_ratio": lambda r: _ratio(r.predicted and r.predicted.peak_mb, r.memory and r.memory.run_peak_mb),
}


def _ratio(predicted, measured) -> float | None:
    """predicted / measured, where both exist and measured > 0 (a baseline trains for 0 s: no ratio)."""
    return predicted / measured if is_num(predicted) and is_num(measured) and measured > 0 else None


# config keys that legitimately differ between the seeds of one experiment (config.NOT_IDENTITY) + older records' keys
_PER_RUN_KEYS = set(NOT_IDENTITY) | {
    "out_dir",
    "output_dir",
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


def _get(record: Record, metric: str) -> float | None:
    """One metric of a record as a float, or None when absent, null or not finite."""
    value = METRICS[metric](record)
    return float(value) if is_num(value) else None


def _baseline_accuracy(record: Record) -> float | None:
    value = record.baseline_metrics.accuracy if record.baseline_metrics else None
    return float(value) if is_num(value) else None


def ok_records(records) -> list[Record]:
    """The records that count in aggregates: status "ok" only."""
    return [r for r in records if r.ok]


def failed_records(records) -> list[Record]:
    """Every record that is not "ok" (failed, cancelled, anything else), oldest first."""
    return sorted((r for r in records if not r.ok), key=lambda r: str(r.created_at or ""))


def _latest_per_seed(runs: list[Record]) -> tuple[list[Record], int]:
    """Keep the newest ok run of each seed (a resumed grid may have re-run one); returns (runs, how many dropped)."""
    by_seed: dict = {}
    for r in sorted(runs, key=lambda r: str(r.created_at or "")):
        # a run without a seed is its own repeat: never merged with another
        by_seed[r.seed if r.seed is not None else ("no seed", r.run_id, id(r))] = r
    kept = sorted(by_seed.values(), key=lambda r: (r.seed is None, str(r.seed)))
    return kept, len(runs) - len(kept)


def _mixed_config(runs: list[Record]) -> dict[str, list[str]]:
    """Config keys whose values differ between the seeds of one group: {key: sorted distinct values as text}."""
    keys = {k for r in runs for k in (r.config or {})}
    mixed = {}
    for key in sorted(keys):
        if key in _PER_RUN_KEYS or key.endswith(("_dir", "_path", "_hash")):
            continue
        seen = {repr((r.config or {}).get(key)) for r in runs}
        if len(seen) > 1:
            mixed[key] = sorted(seen)
    return mixed


def _params_match(runs: list[Record]) -> bool | None:
    """False if any run's predicted parameters disagree with the measured ones, True if all agree, None if unknown."""
    verdicts = [params_verdict(r.params) for r in runs]
    if any(v is False for v in verdicts):
        return False
    return True if verdicts and all(v is True for v in verdicts) else None


def params_verdict(params: Params | None) -> bool | None:
    """Does the analytic prediction match the measurement? Uses `match` and the two count pairs; None if unpredicted."""
    if params is None:
        return None
    checks = []
    if params.match is not None:
        checks.append(bool(params.match))
    for measured, predicted in count_pairs(params):
        if is_num(measured) and is_num(predicted):
            checks.append(int(measured) == int(predicted))
    return all(checks) if checks else None


def count_pairs(params: Params) -> tuple[tuple, tuple]:
    """((measured trainable, predicted trainable), (measured total, predicted total))."""
    return (params.trainable, params.predicted_trainable), (params.total, params.predicted_total)


def summarize(records) -> list[dict]:
    """One row per experiment (config.identity: dataset, model, method, knobs and every setting but the seed) over ok
    runs, sorted by dataset then accuracy (best first). Runs whose settings differ are never merged.

    Row keys: dataset, model, method, label (method + knobs that differ from defaults, "lora r=4"), identity, trained,
    task, n_seeds (runs with an accuracy), n_runs, seeds, run_ids, accuracy_per_seed,
    <m>_mean / <m>_std / <m>_ci95 for m in METRICS (std ddof=1, 0.0 for n=1; ci95 None for n=1),
    trainable_params, total_params, trainable_pct, predicted_trainable, predicted_total, params_match,
    baseline_accuracy_mean, gain_over_baseline, train_size, eval_size, num_labels,
    pareto_params, pareto_time (on the accuracy-vs-cost front of its dataset), mixed_config, duplicates_dropped.
    """
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in ok_records(as_record(x) for x in records):
        groups[(str(r.dataset), str(r.model), r.identity)].append(r)
    rows = [_row(dataset, model, ident, all_runs) for (dataset, model, ident), all_runs in groups.items()]
    _disambiguate(rows, {id(row): identity(runs[0].settings) for row, runs in zip(rows, groups.values())})

    # Pareto membership per dataset: minimise cost, maximise accuracy, among configurations that train (cost > 0)
    for dataset in {r["dataset"] for r in rows}:
        mine = [r for r in rows if r["dataset"] == dataset]
        for flag, x_key in (("pareto_params", "trainable_params"), ("pareto_time", "train_s_mean")):
            front = front_rows(mine, x_key, "accuracy_mean")
            for i, r in enumerate(mine):
                r[flag] = i in front

    def order(r):
        acc = r["accuracy_mean"]
        return (r["dataset"], -(acc if is_num(acc) else -math.inf), r["model"], r["label"])

    return sorted(rows, key=order)


def _row(dataset: str, model: str, ident: str, all_runs: list[Record]) -> dict:
    """The summary row of one experiment's runs (the newest run of each seed)."""
    runs, dropped = _latest_per_seed(all_runs)
    first = runs[0]
    params, data = first.params or Params(), first.data or Data()
    method = REGISTRY.get(str(first.method))
    # an ok run without a finite accuracy (should not happen) is kept out of the accuracy statistics
    scored = [r for r in runs if _get(r, "accuracy") is not None]
    row: dict = {
        "dataset": dataset,
        "model": model,
        "method": str(first.method),
        "label": first.label,
        "identity": ident,
        "knobs": _knobs(first),  # the method's own settings, {"lora_r": 4, ...}: what a sweep varies
        "trained": method.needs_training if method else True,  # False: evaluated as loaded (no trade-off)
        "tuned": bool(first.extra.get("tuning")),  # its settings came from a tuning study (compare --tune)
        "tuning": _tuning(first),
        "task": first.task,
        "n_seeds": len(scored),  # the n of every accuracy mean, std and CI
        "n_runs": len(runs),
        "seeds": [r.seed for r in scored],
        "run_ids": [r.run_id for r in runs],
    }
    for name in METRICS:
        xs = [x for x in (_get(r, name) for r in runs) if x is not None]
        if xs:
            mean, half = ci95(xs)
            row[f"{name}_mean"], row[f"{name}_std"], row[f"{name}_ci95"] = mean, _mean_std(xs)[1], half
        else:
            row[f"{name}_mean"] = row[f"{name}_std"] = row[f"{name}_ci95"] = None
    row["accuracy_per_seed"] = [_get(r, "accuracy") for r in scored]  # aligned with "seeds"

    trainable, total, pct = params.trainable, params.total, params.trainable_pct
    if not is_num(pct) and is_num(trainable) and is_num(total) and total:
        pct = 100.0 * trainable / total  # percent units, like the record's field
    row["trainable_params"] = int(trainable) if is_num(trainable) else None
    row["total_params"] = int(total) if is_num(total) else None
    row["trainable_pct"] = float(pct) if is_num(pct) else None
    row["predicted_trainable"] = params.predicted_trainable
    row["predicted_total"] = params.predicted_total
    row["params_match"] = _params_match(runs)

    base = [x for x in (_baseline_accuracy(r) for r in runs) if x is not None]
    row["baseline_accuracy_mean"] = _mean_std(base)[0] if base else None
    row["gain_over_baseline"] = (
        row["accuracy_mean"] - row["baseline_accuracy_mean"]
        if is_num(row["accuracy_mean"]) and is_num(row["baseline_accuracy_mean"])
        else None
    )
    row["train_size"], row["eval_size"], row["num_labels"] = data.train_size, data.eval_size, data.num_labels
    row["mixed_config"] = _mixed_config(runs)
    row["duplicates_dropped"] = dropped
    return row


def _tuning(record: Record) -> dict | None:
    """How compare --tune chose this configuration: study, trial counts, best settings and validation accuracy,
    tuning seconds, and every trial's (params, value, state) for the learning-rate plot."""
    t = record.extra.get("tuning")
    if not t:
        return None
    keep = ("study", "trials_complete", "trials_pruned", "best_params", "best_value", "tuning_s", "trials")
    return {k: t.get(k) for k in keep}


def _knobs(record: Record) -> dict:
    """The method's knob settings of a record, as flat keys; plus `sweep_group`: the hash of everything else, so rows
    that differ only in knobs can be lined up against a knob (report/plots.py sweep_plots)."""
    settings = identity(record.settings)
    keys = knob_keys()
    own = {k: v for k, v in settings.items() if k in keys}
    rest = {k: v for k, v in settings.items() if k not in keys}
    return {**own, "sweep_group": identity_hash(rest)}


def _disambiguate(rows: list[dict], identities: dict[int, dict]) -> None:
    """Rows of one (dataset, model) that would share a label (same knobs, other settings; or one explicit label)
    get the settings that tell them apart appended: "lora lr=0.001", "lora lr=0.0005"."""
    same: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        same[(r["dataset"], r["model"], r["label"])].append(r)
    for group in same.values():
        if len(group) < 2:
            continue
        ids = [identities[id(r)] for r in group]
        keys = sorted(k for k in {k for i in ids for k in i} if len({repr(i.get(k, "?")) for i in ids}) > 1)
        for r, i in zip(group, ids):
            # settings absent on one side (an older record) count as differing too; the identity is the last resort
            tail = " ".join(f"{k}={short_value(i.get(k))}" for k in keys) or f"#{r['identity'][:6]}"
            r["label"] += " " + tail


def rows_by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    """Summary rows grouped by dataset, datasets in name order, rows kept in their (accuracy) order."""
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["dataset"]):
        out.setdefault(r["dataset"], []).append(r)
    return out
