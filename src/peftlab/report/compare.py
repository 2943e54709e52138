"""The written comparison: per dataset, sentences built only from the summary rows' numbers.

`compare_all(rows)` -> {dataset: [sentence, ...]}; `gap_tests(rows)` gives the leader-vs-other tests behind them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from scipy import stats

from peftlab.report.aggregate import rows_by_dataset
from peftlab.report.fmt import (
    config_label,
    fmt_acc,
    fmt_count,
    fmt_mb,
    fmt_mean_ci,
    fmt_p,
    fmt_pct,
    fmt_ratio,
    fmt_seconds,
    fmt_signed,
    is_num,
    several_models,
)

ALPHA = 0.05  # Welch t-test level at which a gap is called real


@dataclass
class Gap:
    """The leader against one other configuration of the same dataset, on mean accuracy."""

    other: dict  # the other summary row
    gap: float  # leader mean - other mean, accuracy units
    half_widths: float | None  # leader CI95 half-width + other's; None if either has one seed
    overlap: bool | None  # do the two 95% intervals overlap (gap <= half_widths)? None if untestable
    p_value: float | None  # Welch two-sided t-test on per-seed accuracies; None if untestable


def method_note() -> str:
    """The one sentence that says how gaps are judged (printed once above the per-dataset prose)."""
    return (
        f"Intervals are 95% Student-t confidence intervals over seeds (mean ± t(0.975, n−1)·s/√n); a gap is "
        f"called real when Welch's two-sample t-test on the per-seed accuracies gives p < {ALPHA:g}, and we also "
        f"say whether the two 95% intervals overlap. A configuration with one seed has no interval and cannot be tested."
    )


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value, or None with fewer than 2 values a side or no spread in either."""
    a = [x for x in a if is_num(x)]
    b = [x for x in b if is_num(x)]
    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():  # zero spread on both sides: scipy warns and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return float(p) if math.isfinite(p) else None


def gap_tests(rows: list[dict]) -> list[Gap]:
    """One dataset's rows: the leader (best mean accuracy) against every other row, in accuracy order."""
    scored = _by_accuracy(rows)
    if len(scored) < 2:
        return []
    leader = scored[0]
    out = []
    for other in scored[1:]:
        gap = leader["accuracy_mean"] - other["accuracy_mean"]
        hw_a, hw_b = leader.get("accuracy_ci95"), other.get("accuracy_ci95")
        half_widths = hw_a + hw_b if is_num(hw_a) and is_num(hw_b) else None
        overlap = None if half_widths is None else gap <= half_widths
        p = welch_p(leader["accuracy_per_seed"], other["accuracy_per_seed"])
        out.append(Gap(other=other, gap=gap, half_widths=half_widths, overlap=overlap, p_value=p))
    return out


def _by_accuracy(rows: list[dict]) -> list[dict]:
    """Rows with an accuracy, best mean first (stable for ties)."""
    return sorted((r for r in rows if is_num(r.get("accuracy_mean"))), key=lambda r: -r["accuracy_mean"])


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _gap_sentence(g: Gap, name: str, leader: dict) -> str:
    """ "Over head (0.811 ± 0.012), the 0.031 gap ... Welch p = 0.004: a real difference."""
    o = g.other
    head = f"Over {name} at {fmt_mean_ci(o['accuracy_mean'], o['accuracy_ci95'], o['n_seeds'])}"
    size = f"the {fmt_acc(g.gap)} gap"
    if g.half_widths is None:
        single = name if o["n_seeds"] < 2 else "the leader"
        if leader["n_seeds"] < 2 and o["n_seeds"] < 2:
            single = "both"
        return f"{head}, {size} cannot be tested: {single} ran with one seed, so there is no interval to compare."
    widths = f"{fmt_acc(leader['accuracy_ci95'])} + {fmt_acc(o['accuracy_ci95'])} = {fmt_acc(g.half_widths)}"
    if g.overlap:
        where = f"is within the two half-widths combined ({widths}), so the 95% intervals overlap"
    else:
        where = f"is larger than the two half-widths combined ({widths}), so the 95% intervals do not overlap"
    if g.p_value is None:
        test = "Welch's test is undefined (no spread across seeds in either)"
        verdict = "the gap is the same in every seed" if not g.overlap else "treat it as noise"
    else:
        test = f"Welch {fmt_p(g.p_value)}"
        real = g.p_value < ALPHA
        if real and not g.overlap:
            verdict = "a real difference"
        elif not real and g.overlap:
            verdict = "seed noise, not a real difference"
        elif real:
            verdict = f"likely real (p < {ALPHA:g}) though the intervals touch"
        else:
            verdict = f"borderline: not significant at {ALPHA:g} despite the separated intervals"
    return f"{head}, {size} {where}; {test}: {verdict}."


def _leader_sentence(rows: list[dict], name: dict[int, str]) -> str:
    """ "3 configurations from 9 successful runs. lora leads at 0.840 ± 0.025 accuracy (3 seeds)." """
    leader = rows[0]
    n_runs = sum(r["n_seeds"] for r in rows)
    opening = (
        f"{len(rows)} configuration{'s' if len(rows) != 1 else ''} from {n_runs} successful run"
        f"{'s' if n_runs != 1 else ''}. "
    )
    score = f"{fmt_mean_ci(leader['accuracy_mean'], leader['accuracy_ci95'], leader['n_seeds'])} accuracy"
    tied = _within_ci(leader, rows[1:])
    if tied is None:
        return opening + f"{name[id(leader)]} leads at {score} ({_seeds(leader['n_seeds'])})."
    return opening + (
        f"{name[id(leader)]} has the highest mean, {score} ({_seeds(leader['n_seeds'])}), but no winner can be named "
        f"on these seeds: {tied}."
    )


def _within_ci(leader: dict, others: list[dict]) -> str | None:
    """Why the leader is not a clear winner (a runner-up whose 95% CI overlaps the leader's, or no interval at all),
    or None when its CI clears every other configuration's."""
    rivals = [r for r in others if is_num(r.get("accuracy_mean"))]
    if not rivals:
        return None
    if not is_num(leader.get("accuracy_ci95")):
        return "with one seed there is no interval to tell it from the next"
    low = leader["accuracy_mean"] - leader["accuracy_ci95"]
    overlapping = [r for r in rivals if r["accuracy_mean"] + (r.get("accuracy_ci95") or 0.0) >= low]
    if not overlapping:
        return None
    names = ", ".join(str(r["label"]) for r in overlapping[:3])
    return f"its 95% CI overlaps {names}"


def _gain_sentences(rows: list[dict], name: dict[int, str]) -> list[str]:
    """The leader's gain over the untrained baseline, then the other trained configurations' gains; 0-2 sentences.

    Gain: accuracy gained over the untrained model (same backbone, fresh head), per configuration.
    """
    leader = rows[0]
    out = []
    if is_num(leader.get("gain_over_baseline")):
        out.append(
            f"That is {fmt_signed(leader['gain_over_baseline'])} over the untrained baseline's "
            f"{fmt_acc(leader['baseline_accuracy_mean'])} (the same backbone with a fresh head, before training)."
        )
    others = [r for r in rows[1:] if is_num(r.get("gain_over_baseline")) and r["trained"]]
    if others:
        gains = ", ".join(f"{name[id(r)]} {fmt_signed(r['gain_over_baseline'])}" for r in others)
        losers = [name[id(r)] for r in others if r["gain_over_baseline"] <= 0]
        tail = f"; {', '.join(losers)} did not improve on it" if losers else ""
        out.append(f"Gains over the untrained baseline for the others: {gains}{tail}.")
    return out


def _cheapest_sentence(trained: list[dict], leader: dict, name: dict[int, str]) -> str | None:
    """The trained configuration with the fewest trainable parameters, against the leader; None if none has a count."""
    by_params = [r for r in trained if is_num(r.get("trainable_params"))]
    if not by_params:
        return None
    c = min(by_params, key=lambda r: (r["trainable_params"], -r["accuracy_mean"]))
    total = f" of {fmt_count(c['total_params'])}" if is_num(c.get("total_params")) else ""
    if c is leader:
        where = "it is also the leader"
    else:
        where = f"reaching {fmt_acc(c['accuracy_mean'])}, {fmt_acc(leader['accuracy_mean'] - c['accuracy_mean'])} below the leader"
        if is_num(leader.get("trainable_params")) and c["trainable_params"] > 0:
            ratio = leader["trainable_params"] / c["trainable_params"]
            where += f", which trains {fmt_ratio(ratio)} as many ({fmt_count(leader['trainable_params'])})"
    return (
        f"Cheapest in trainable parameters: {name[id(c)]} with {fmt_count(c['trainable_params'])}"
        f" ({fmt_pct(c['trainable_pct'])}{total}), {where}."
    )


def _fastest_sentence(trained: list[dict], leader: dict, name: dict[int, str]) -> str | None:
    """The trained configuration with the shortest mean train time (s), against the leader; None if none has one."""
    by_time = [r for r in trained if is_num(r.get("train_s_mean"))]
    if not by_time:
        return None
    c = min(by_time, key=lambda r: (r["train_s_mean"], -r["accuracy_mean"]))
    if c is leader:
        where = "the leader is also the fastest"
    else:
        where = f"against {fmt_seconds(leader.get('train_s_mean'))} for the leader"
        if is_num(leader.get("train_s_mean")) and c["train_s_mean"] > 0:
            where += f" ({fmt_ratio(leader['train_s_mean'] / c['train_s_mean'])} as long)"
    return f"Fastest to train: {name[id(c)]} at {fmt_seconds(c['train_s_mean'])} mean train time per run, {where}."


def _memory_sentence(trained: list[dict], name: dict[int, str]) -> str | None:
    """The range of mean run peak memory (MB: each run's own, above the process) over trained configurations; None with fewer than two that recorded it."""
    by_mem = [r for r in trained if is_num(r.get("run_peak_mb_mean"))]
    if len(by_mem) < 2:
        return None
    lo = min(by_mem, key=lambda r: r["run_peak_mb_mean"])
    hi = max(by_mem, key=lambda r: r["run_peak_mb_mean"])
    return (
        f"The runs' own peak memory ranges from {fmt_mb(lo['run_peak_mb_mean'])} for {name[id(lo)]} "
        f"to {fmt_mb(hi['run_peak_mb_mean'])} for {name[id(hi)]}."
    )


def _stability_sentences(trained: list[dict], name: dict[int, str]) -> list[str]:
    """Most and least stable across seeds, and which configurations ran one seed only; 0-2 sentences.

    Stability: sample std of per-seed accuracy, only where there are 2+ seeds.
    """
    out = []
    multi = [r for r in trained if r["n_seeds"] >= 2 and is_num(r.get("accuracy_std"))]
    if multi:
        s = min(multi, key=lambda r: r["accuracy_std"])
        w = max(multi, key=lambda r: r["accuracy_std"])
        # 4 decimals: seed-to-seed std is often ~0.01, where 3 decimals would make different spreads look equal
        ties = [
            name[id(r)] for r in multi if r is not s and abs(r["accuracy_std"] - s["accuracy_std"]) < 5e-5
        ]
        text = f"Most stable across seeds: {name[id(s)]}, accuracy std {fmt_acc(s['accuracy_std'], 4)} over {_seeds(s['n_seeds'])}"
        if ties:
            text += f" (tied with {', '.join(ties)})"
        if w["accuracy_std"] - s["accuracy_std"] >= 5e-5:
            text += f"; least stable: {name[id(w)]}, std {fmt_acc(w['accuracy_std'], 4)} over {_seeds(w['n_seeds'])}"
        out.append(text + ".")
    singles = [name[id(r)] for r in trained if r["n_seeds"] < 2]
    if singles and not multi:
        out.append("Every configuration ran with one seed, so stability and intervals cannot be judged.")
    elif singles:
        out.append(f"One seed only, so no interval and no stability estimate: {', '.join(singles)}.")
    return out


def compare_dataset(rows: list[dict]) -> list[str]:
    """Sentences for one dataset's rows: leader, gain over baseline, cheapest, most stable, gaps to the leader."""
    rows = _by_accuracy(rows)
    if not rows:
        return ["No successful run has an accuracy here, so there is nothing to compare."]
    with_model = several_models(rows)
    name = {id(r): config_label(r, with_model) for r in rows}
    leader = rows[0]
    out = [_leader_sentence(rows, name)]
    out += _gain_sentences(rows, name)

    # cost: among configurations that train (the baseline method trains nothing and costs nothing)
    trained = [r for r in rows if r["trained"]]
    costs = [
        _cheapest_sentence(trained, leader, name),
        _fastest_sentence(trained, leader, name),
        _memory_sentence(trained, name),
    ]
    out += [s for s in costs if s is not None]
    out += _stability_sentences(trained, name)
    out += [_gap_sentence(g, name[id(g.other)], leader) for g in gap_tests(rows)]
    return out


def compare_all(rows: list[dict]) -> dict[str, list[str]]:
    """{dataset: sentences} for every dataset in the summary rows, datasets in name order."""
    return {dataset: compare_dataset(mine) for dataset, mine in rows_by_dataset(rows).items()}
