"""Report content that is not a summary row: run counts, environment, data sizes, settings, parameter breakdowns.

Pure functions of the records, shared by html.py and markdown.py so both reports say the same thing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from peftlab.report.aggregate import failed_records, ok_records, params_verdict
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
    counts = Counter(str(r.get("status")) for r in records)
    return {"total": len(records), **{k: counts.get(k, 0) for k in ("ok", "failed", "cancelled")}, **counts}


def date_range(records) -> tuple[str | None, str | None]:
    """(earliest, latest) created_at as stored (ISO strings sort in time order)."""
    stamps = sorted(str(r["created_at"]) for r in records if r.get("created_at"))
    return (stamps[0], stamps[-1]) if stamps else (None, None)


def _distinct(records, key: str) -> str:
    """Distinct env[key] values; several get their run counts: "2.5.1 (8 runs), 2.6.0 (1 run)"."""
    counts = Counter(
        str((r.get("env") or {}).get(key)) for r in records if (r.get("env") or {}).get(key) is not None
    )
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
        d = r.get("data") or {}
        names = [str(x) for x in (d.get("label_names") or [])]
        labels = ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")
        key = (
            r.get("dataset"),
            r.get("model"),
            d.get("train_size"),
            d.get("eval_size"),
            d.get("source"),
            d.get("notes"),
        )
        if key not in uses:
            uses[key] = DataUse(
                dataset=str(r.get("dataset")),
                model=str(r.get("model")),
                task=r.get("task"),
                train_size=d.get("train_size"),
                eval_size=d.get("eval_size"),
                num_labels=d.get("num_labels"),
                labels=labels,
                source=str(d.get("source") or ""),
                notes=str(d.get("notes") or ""),
            )
        if str(r.get("method")) not in uses[key].methods:
            uses[key].methods.append(str(r.get("method")))
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
    """[(dataset, model, method, "epochs=3 lr=0.001 …")] from the first ok run of each configuration."""
    first: dict[tuple, dict] = {}
    for r in sorted(ok_records(records), key=lambda r: str(r.get("created_at") or "")):
        first.setdefault((str(r.get("dataset")), str(r.get("model")), str(r.get("method"))), r)
    out = []
    for (dataset, model, method), r in sorted(first.items()):
        flat = _flat(r.get("config") or {})
        text = " ".join(
            f"{k}={json.dumps(v, default=str)}"
            for k, v in flat.items()
            if k not in _NOT_SETTINGS and v is not None
        )
        out.append((dataset, model, method, text))
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


def _problems(p: dict, components: list[dict]) -> list[str]:
    """Every disagreement between predicted and measured counts, as "what: predicted X ≠ measured Y (±d)"."""
    out = []
    pairs = (("trainable", "predicted_trainable"), ("total", "predicted_total"))
    for measured, predicted in pairs:
        if is_num(p.get(measured)) and is_num(p.get(predicted)) and int(p[measured]) != int(p[predicted]):
            d = int(p[predicted]) - int(p[measured])
            out.append(
                f"{measured}: predicted {fmt_int(p[predicted])} ≠ measured {fmt_int(p[measured])} ({d:+,})"
            )
    for col, measured in (("params", "total"), ("trainable", "trainable")):
        vals = [c.get(col) for c in components]
        if components and all(is_num(v) for v in vals) and is_num(p.get(measured)):
            s = int(sum(vals))
            if s != int(p[measured]):
                out.append(
                    f"sum of component {col}: {fmt_int(s)} ≠ measured {measured} {fmt_int(p[measured])} ({s - int(p[measured]):+,})"
                )
    if p.get("match") is False and not out:
        out.append("the run recorded match = false")
    return out


def breakdowns(records) -> list[Breakdown]:
    """Per (model, method): the first ok run's breakdown for each dataset, identical ones merged, mismatches first."""
    first: dict[tuple, dict] = {}
    for r in sorted(ok_records(records), key=lambda r: str(r.get("created_at") or "")):
        first.setdefault((str(r.get("model")), str(r.get("method")), str(r.get("dataset"))), r)
    merged: dict[tuple, Breakdown] = {}
    for (model, method, dataset), r in sorted(first.items()):
        p = r.get("params") or {}
        components = [c for c in (p.get("breakdown") or []) if isinstance(c, dict)]
        sig = (
            model,
            method,
            json.dumps(
                [
                    components,
                    *[
                        p.get(k)
                        for k in ("trainable", "total", "predicted_trainable", "predicted_total", "match")
                    ],
                ],
                sort_keys=True,
                default=str,
            ),
        )
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
            trainable=p.get("trainable"),
            total=p.get("total"),
            predicted_trainable=p.get("predicted_trainable"),
            predicted_total=p.get("predicted_total"),
            verdict=False if problems else verdict,
            problems=problems,
        )
    return sorted(merged.values(), key=lambda b: (b.verdict is not False, b.model, b.method))


def failures(records) -> list[dict]:
    """Failed and cancelled runs, oldest first, as flat dicts for a table (error text kept whole)."""
    return [
        {
            "run_id": str(r.get("run_id") or ""),
            "status": str(r.get("status") or ""),
            "created_at": str(r.get("created_at") or ""),
            "dataset": str(r.get("dataset") or ""),
            "model": str(r.get("model") or ""),
            "method": str(r.get("method") or ""),
            "seed": "" if r.get("seed") is None else str(r.get("seed")),
            "error": str(r.get("error") or "(no error recorded)"),
        }
        for r in failed_records(records)
    ]
