"""Writes a comparison report from run records: report.html, report.md, summary.csv, summary.json (+ plots/*.png).

`write_report(store.records(), Path("out"))` is what `peftlab compare` and `peftlab report` call.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from peftlab.record import Record, as_record
from peftlab.report import content
from peftlab.report.aggregate import METRICS, rows_by_dataset, summarize
from peftlab.report.compare import compare_all, method_note
from peftlab.report.content import slug
from peftlab.report.html import ReportData, render_html
from peftlab.report.markdown import render_markdown
from peftlab.report.plots import dataset_plots, method_colors

# summary.csv column order: identity first, then accuracy, the other metrics, cost, data; lists joined with ";"
CSV_COLUMNS = [
    "dataset",
    "model",
    "method",
    "label",
    "task",
    "n_seeds",
    "n_runs",
    "accuracy_mean",
    "accuracy_ci95",
    "accuracy_std",
]
CSV_COLUMNS += [f"{m}_{s}" for m in METRICS if m != "accuracy" for s in ("mean", "std", "ci95")]
CSV_COLUMNS += [
    "baseline_accuracy_mean",
    "gain_over_baseline",
    "trainable_params",
    "total_params",
    "trainable_pct",
]
CSV_COLUMNS += ["predicted_trainable", "predicted_total", "params_match", "pareto_params", "pareto_time"]
CSV_COLUMNS += ["train_size", "eval_size", "num_labels", "seeds", "accuracy_per_seed", "run_ids", "identity"]


def _clean(x):
    """JSON-safe: NaN/inf -> None (json.dumps would write the invalid token NaN), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _csv_cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (list, tuple)):
        return ";".join(_csv_cell(v) for v in x)
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ""
    return str(x)


def write_csv(rows: list[dict], path: Path) -> None:
    """summary.csv: CSV_COLUMNS first, any other row keys after them (dicts as JSON)."""
    extra = sorted({k for r in rows for k in r} - set(CSV_COLUMNS))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS + extra)
        for r in rows:
            cells = [_csv_cell(r.get(k)) for k in CSV_COLUMNS]
            cells += [
                json.dumps(r[k], default=str) if isinstance(r.get(k), dict) else _csv_cell(r.get(k))
                for k in extra
            ]
            w.writerow(cells)


def write_report(records, out_dir: Path, *, title: str = "peftlab comparison") -> dict:
    """Build every part of the report from the records and write the four files; failed runs are listed, not averaged.

    Returns {"report": html path, "markdown": md path, "csv": ..., "json": ..., "summary": summary rows}.
    """
    records = [as_record(r) for r in records if isinstance(r, (dict, Record))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    colors = method_colors(rows)
    plots = {d: dataset_plots(mine, colors) for d, mine in rows_by_dataset(rows).items()}
    data = ReportData(
        title=title,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rows=rows,
        comparison=compare_all(rows),
        plots=plots,
        counts=content.run_counts(records),
        dates=content.date_range(records),
        environment=content.environment(records),
        data=content.data_uses(records),
        settings=content.settings(records),
        breakdowns=content.breakdowns(records),
        failures=content.failures(records),
        predictions=content.predictions(records),
    )

    # plots also as files, so report.md can show them: plots/<dataset>-<plot>.png
    plot_paths = {}
    if any(plots.values()):
        (out_dir / "plots").mkdir(exist_ok=True)
    for i, (dataset, figs) in enumerate(plots.items()):
        for p in figs:
            rel = f"plots/{i}-{slug(dataset)}-{p.name}.png"
            (out_dir / rel).write_bytes(p.png_bytes)
            plot_paths[(dataset, p.name)] = rel

    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    csv_path, json_path = out_dir / "summary.csv", out_dir / "summary.json"
    html_path.write_text(render_html(data), encoding="utf-8")
    md_path.write_text(render_markdown(data, plot_paths), encoding="utf-8")
    write_csv(rows, csv_path)
    summary = {
        "title": title,
        "generated_at": data.generated_at,
        "runs": data.counts,
        "method_note": method_note(),
        "rows": rows,
        "comparison": data.comparison,
        "failed": data.failures,
        "predictions": data.predictions,
    }
    json_path.write_text(json.dumps(_clean(summary), indent=2, default=str) + "\n", encoding="utf-8")
    return {
        "report": str(html_path),
        "markdown": str(md_path),
        "csv": str(csv_path),
        "json": str(json_path),
        "summary": rows,
    }
