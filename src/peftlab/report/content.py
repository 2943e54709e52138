"""Report content that is not a summary row: run counts, environment, data sizes, settings, parameter breakdowns.

Pure functions of the records, shared by html.py and markdown.py so both reports say the same thing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from peftlab.config import identity
from peftlab.record import Data, Params, Record
from peftlab.report.aggregate import count_pairs, failed_records, ok_records, params_verdict
from peftlab.report.fmt import fmt_int, is_num

ENV_KEYS = ("peftlab", "python", "torch", "transformers", "peft", "datasets", "accelerate", "git_commit")
MACHINE_KEYS = ("cpu", "gpu", "platform", "hostname")
# config keys that name the run rather than set it up: already shown elsewhere or different per run
_NOT_SETTINGS = {
    "model",
    "dataset",
    "method",
    "task",
    "seed",
    "run_id",
    "out",
    "store",
    "json",
    "config",
    "resume",
}


def slug(text: str) -> str:
    """A file- and anchor-safe name: "SST-2 (mini)" -> "sst-2-mini"."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def run_counts(records) -> dict[str, int]:
    """{"total": n, "ok": n, "failed": n, "cancelled": n, ...} over every record."""
    counts = Counter(str(r.status) for r in records)
    return {"total": len(records), **{k: counts.get(k, 0) for k in ("ok", "failed", "cancelled")}, **counts}


def date_range(records) -> tuple[str | None, str | None]:
    """(earliest, latest) created_at as stored (ISO strings sort in time order)."""
    stamps = sorted(str(r.created_at) for r in records if r.created_at)
    return (stamps[0], stamps[-1]) if stamps else (None, None)


def _distinct(records, key: str) -> str:
    """Distinct env[key] values; several get their run counts: "2.5.1 (8 runs), 2.6.0 (1 run)"."""
    counts = Counter(str(r.env.get(key)) for r in records if r.env and r.env.get(key) is not None)
    if not counts:
        return "–"
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in counts.most_common())


def environment(records) -> list[tuple[str, str]]:
    """[(label, value)] for software versions then the machine, each value distinct across all records."""
    out = [(k, _distinct(records, k)) for k in ENV_KEYS]
    out += [(k, _distinct(records, k)) for k in MACHINE_KEYS]
    return [(k, v) for k, v in out if v != "–"]


def predictions(records) -> list[dict]:
    """Per ok run that holds a prediction: predicted vs measured train time, evaluation time and the run's own peak
    memory, with the ratios (predicted / measured; 1.00× is exact), in store order."""
    from peftlab.report.aggregate import _ratio

    out = []
    for r in ok_records(records):
        p = r.predicted
        if p is None:
            continue
        t, m = r.time, r.memory
        out.append({
            "dataset": str(r.dataset), "model": str(r.model), "label": r.label, "seed": r.seed, "run_id": r.run_id,
            "train_s": t.train_s if t else None, "predicted_train_s": p.train_s,
            "time_ratio": _ratio(p.train_s, t.train_s if t else None),
            "eval_s": t.eval_s if t else None, "predicted_eval_s": p.eval_s,
            "run_peak_mb": m.run_peak_mb if m else None, "predicted_peak_mb": p.peak_mb,
            "memory_ratio": _ratio(p.peak_mb, m.run_peak_mb if m else None),
            "peak_rss_mb": m.peak_rss_mb if m else None, "note": p.extra.get("note"),
        })  # fmt: skip
    return out


def ratio_summary(preds: list[dict]) -> str:
    """One sentence: how many runs are within ±25% for time and memory, and the worst of each."""
    parts = []
    for key, what in (("time_ratio", "train time"), ("memory_ratio", "peak memory")):
        xs = [(p[key], p) for p in preds if p[key] is not None]
        if not xs:
            continue
        within = sum(1 for x, _ in xs if 0.75 <= x <= 1.25)
        worst, run = max(xs, key=lambda item: abs(item[0] - 1))
        parts.append(f"{what}: {within} of {len(xs)} runs within ±25%, the worst {worst:.2f}× ({run['label']} "
                     f"seed {run['seed']})")  # fmt: skip
    return "; ".join(parts) + "." if parts else "No run holds both a prediction and a measurement."


@dataclass
class DataUse:
    """The data one (dataset, model) pair was run on; several rows per dataset if sizes differ between methods."""

    dataset: str
    model: str
    task: str | None
    train_size: int | None
    eval_size: int | None
    num_labels: int | None
    labels: str
    source: str
    notes: str
    methods: list[str] = field(default_factory=list)


def data_uses(records) -> list[DataUse]:
    """Distinct (dataset, model, sizes, source, notes) over ok runs, with the methods that used each."""
    uses: dict[tuple, DataUse] = {}
    for r in ok_records(records):
        d = r.data or Data()
        names = [str(x) for x in (d.label_names or [])]
        labels = ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")
        key = (r.dataset, r.model, d.train_size, d.eval_size, d.source, d.notes)
        if key not in uses:
            uses[key] = DataUse(
                dataset=str(r.dataset),
                model=str(r.model),
                task=r.task,
                train_size=d.train_size,
                eval_size=d.eval_size,
                num_labels=d.num_labels,
                labels=labels,
                source=str(d.source or ""),
                notes=str(d.notes or ""),
            )
        if r.label not in uses[key].methods:
            uses[key].methods.append(r.label)
    return sorted(uses.values(), key=lambda u: (u.dataset, u.model, str(u.train_size)))


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested config -> {"a.b": value}; lists and scalars kept as they are."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings(records) -> list[tuple[str, str, str, str]]:
    """[(dataset, model, label, "epochs=3 lr=0.001 …")] from the first ok run of each experiment (config.identity)."""
    first: dict[tuple, Record] = {}
    for r in sorted(ok_records(records), key=lambda r: str(r.created_at or "")):
        first.setdefault((str(r.dataset), str(r.model), r.identity), r)
    out = []
    for (dataset, model, _), r in sorted(first.items(), key=lambda kv: (*kv[0][:2], kv[1].label)):
        flat = _flat(identity(r.settings))
        text = " ".join(
            f"{k}={json.dumps(v, default=str)}"
            for k, v in flat.items()
            if k not in _NOT_SETTINGS and v is not None
        )
        out.append((dataset, model, r.label, text))
    return out


@dataclass
class Breakdown:
    """One method's parameter breakdown on one model (identical ones across datasets merged), checked against measurement."""

    model: str
    method: str
    datasets: list[str]
    components: list[
        dict
    ]  # [{"component", "params", "trainable", "formula"}] as predicted from the architecture
    trainable: int | None  # measured
    total: int | None  # measured
    predicted_trainable: int | None
    predicted_total: int | None
    verdict: bool | None  # True: prediction matches measurement; False: mismatch; None: nothing predicted
    problems: list[str]  # one line per disagreement, with both numbers


def _problems(p: Params, components: list[dict]) -> list[str]:
    """Every disagreement between predicted and measured counts, as "what: predicted X ≠ measured Y (±d)"."""
    out = []
    for what, (measured, predicted) in zip(("trainable", "total"), count_pairs(p)):
        if is_num(measured) and is_num(predicted) and int(measured) != int(predicted):
            d = int(predicted) - int(measured)
            out.append(f"{what}: predicted {fmt_int(predicted)} ≠ measured {fmt_int(measured)} ({d:+,})")
    for col, what, measured in (("params", "total", p.total), ("trainable", "trainable", p.trainable)):
        vals = [c.get(col) for c in components]  # breakdown lines: {"component", "params", "trainable", ...}
        if components and all(is_num(v) for v in vals) and is_num(measured):
            s = int(sum(vals))
            if s != int(measured):
                out.append(
                    f"sum of component {col}: {fmt_int(s)} ≠ measured {what} {fmt_int(measured)} ({s - int(measured):+,})"
                )
    if p.match is False and not out:
        out.append("the run recorded match = false")
    return out


def breakdowns(records) -> list[Breakdown]:
    """Per (model, configuration): the first ok run's breakdown for each dataset, identical ones merged, mismatches
    first."""
    first: dict[tuple, Record] = {}
    for r in sorted(ok_records(records), key=lambda r: str(r.created_at or "")):
        first.setdefault((str(r.model), r.label, str(r.dataset)), r)
    merged: dict[tuple, Breakdown] = {}
    for (model, method, dataset), r in sorted(first.items()):
        p = r.params or Params()
        components = [c for c in (p.breakdown or []) if isinstance(c, dict)]
        counts = [p.trainable, p.total, p.predicted_trainable, p.predicted_total, p.match]
        sig = (model, method, json.dumps([components, *counts], sort_keys=True, default=str))
        if sig in merged:
            merged[sig].datasets.append(dataset)
            continue
        problems = _problems(p, components)
        verdict = params_verdict(p)
        merged[sig] = Breakdown(
            model=model,
            method=method,
            datasets=[dataset],
            components=components,
            trainable=p.trainable,
            total=p.total,
            predicted_trainable=p.predicted_trainable,
            predicted_total=p.predicted_total,
            verdict=False if problems else verdict,
            problems=problems,
        )
    return sorted(merged.values(), key=lambda b: (b.verdict is not False, b.model, b.method))


def failures(records) -> list[dict]:
    """Failed and cancelled runs, oldest first, as flat dicts for a table (error text kept whole)."""
    return [
        {
            "run_id": str(r.run_id or ""),
            "status": str(r.status or ""),
            "created_at": str(r.created_at or ""),
            "dataset": str(r.dataset or ""),
            "model": str(r.model or ""),
            "method": r.label if r.method else "",
            "seed": "" if r.seed is None else str(r.seed),
            "error": str(r.error or "(no error recorded)"),
        }
        for r in failed_records(records)
    ]
