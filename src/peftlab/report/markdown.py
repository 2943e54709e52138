"""The Markdown report: the same sections as the HTML one, tables in GitHub pipe syntax, plots as linked PNG files.

`render_markdown(report, plot_paths)` -> str; plot_paths maps (dataset, plot name) to a path relative to report.md.
"""

from __future__ import annotations

from peftlab.report.aggregate import rows_by_dataset
from peftlab.report.compare import method_note
from peftlab.report.content import Breakdown
from peftlab.report.fmt import (
    TUNING_HEADERS,
    config_label,
    fmt_acc,
    fmt_count,
    fmt_int,
    fmt_mb,
    fmt_mean_ci,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    fmt_signed,
    is_num,
    plural,
    several_models,
    tuning_note,
    tuning_rows,
)
from peftlab.report.html import ReportData


def md_escape(text) -> str:
    """Make record text safe inside a table cell or a line: no pipes, no raw HTML, no line breaks."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(s.split())


def md_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A pipe table; `right` holds the indices of right-aligned (numeric) columns. Cells must be escaped already."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _leaderboard(rows: list[dict]) -> str:
    headers = [
        "#",
        "method",
        "model",
        "seeds",
        "accuracy ± 95% CI",
        "macro-F1",
        "macro-recall",
        "untrained",
        "gain",
    ]
    headers += ["trainable", "%", "train time", "samples/s", "run peak memory", "Pareto"]
    body = []
    for rank, r in enumerate(rows, 1):
        trainable = fmt_count(r.get("trainable_params"))
        if r.get("params_match") is False:
            # exact counts: a short form (12.5K) would hide a difference of a few parameters
            trainable = f"**{fmt_int(r.get('trainable_params'))} ✗ MISMATCH (predicted {fmt_int(r.get('predicted_trainable'))})**"
        pareto = ", ".join(k for k in ("params", "time") if r.get(f"pareto_{k}"))
        cells = [
            str(rank),
            md_escape(r["label"]),
            md_escape(r["model"]),
            str(r["n_seeds"]),
            fmt_mean_ci(r["accuracy_mean"], r["accuracy_ci95"], r["n_seeds"]),
            fmt_mean_ci(r["macro_f1_mean"], r["macro_f1_ci95"], r["n_seeds"]),
            fmt_mean_ci(r["macro_recall_mean"], r["macro_recall_ci95"], r["n_seeds"]),
            fmt_acc(r.get("baseline_accuracy_mean")),
            fmt_signed(r.get("gain_over_baseline")),
            trainable,
            fmt_pct(r.get("trainable_pct")),
            fmt_seconds(r.get("train_s_mean")),
            fmt_rate(r.get("train_samples_per_s_mean")),
            fmt_mb(r.get("run_peak_mb_mean")),
            pareto,
        ]
        if rank == 1:
            cells[1] = f"**{cells[1]}**"
        body.append(cells)
    return md_table(headers, body, right={0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})


def _intro(r: ReportData, n_datasets: int) -> list[str]:
    """The title, the run counts and the method note: the report's opening lines."""
    c = r.counts
    return [
        f"# {md_escape(r.title)}",
        "",
        f"{plural(c['ok'], 'successful run')} over {plural(n_datasets, 'dataset')}; {c['total'] - c['ok']} failed or cancelled. "
        f"Report written {r.generated_at}. Plots are embedded in report.html and saved next to this file.",
        "",
        f"> {method_note()}",
    ]


def _dataset_section(
    r: ReportData, dataset: str, rows: list[dict], plot_paths: dict[tuple[str, str], str]
) -> list[str]:
    """Lines of one dataset's section: heading, sizes, leaderboard, mixed-config warnings, written comparison, plots."""
    first = rows[0]
    out = [
        "",
        f"## {md_escape(dataset)}",
        "",
        f"{md_escape(first.get('task') or 'task ?')} · train {fmt_int(first.get('train_size'))} / eval "
        f"{fmt_int(first.get('eval_size'))} examples · {len(rows)} configurations · "
        f"{sum(x['n_seeds'] for x in rows)} successful runs",
        "",
        _leaderboard(rows),
        "",
    ]
    if tuning_note(rows):
        out += [md_escape(tuning_note(rows)), ""]
    if tuning_rows(rows):  # compare --tune: what each method's equal tuning budget chose
        body = [[md_escape(c) for c in row] for row in tuning_rows(rows)]
        out += ["### Tuning (equal budgets, chosen on validation, reported on test)", "",
                md_table(TUNING_HEADERS, body, right={2, 3, 4, 5, 6}), ""]  # fmt: skip
    label = several_models(rows)
    for x in rows:
        for key, values in (x.get("mixed_config") or {}).items():
            out.append(
                f"**Warning:** {md_escape(config_label(x, label))} mixes runs with different {md_escape(key)} "
                f"({md_escape(', '.join(values))}).  "
            )
    out += ["### Written comparison", ""]
    out += [f"{i}. {md_escape(s)}" for i, s in enumerate(r.comparison.get(dataset, []), 1)]
    plots = r.plots.get(dataset, [])
    if plots:
        out += ["", "### Trade-offs and seed spread", ""]
        for p in plots:
            path = plot_paths.get((dataset, p.name))
            if path:
                out += [f"![{md_escape(dataset)}: {md_escape(p.title)}]({path})", ""]
            out += [f"*{md_escape(p.title)}.* {md_escape(p.caption)}", ""]
    return out


def _breakdown_table(b: Breakdown) -> str:
    """One parameter breakdown as a pipe table: a row per component, then predicted / measured totals."""
    body = [
        [
            md_escape(x.get("component")),
            fmt_int(x.get("params")),
            fmt_int(x.get("trainable")),
            md_escape(x.get("formula") or ""),
        ]
        for x in b.components
    ]
    body.append(
        [
            "**trainable: predicted / measured**",
            f"{fmt_int(b.predicted_trainable)} / {fmt_int(b.trainable)}",
            "",
            "",
        ]
    )
    body.append(
        ["**total: predicted / measured**", f"{fmt_int(b.predicted_total)} / {fmt_int(b.total)}", "", ""]
    )
    return md_table(["component", "params", "trainable", "formula"], body, right={1, 2})


def _parameters_section(r: ReportData) -> list[str]:
    """Lines of the "Parameters: predicted vs measured" section: per (method, model) a verdict and a table."""
    out = ["", "## Parameters: predicted vs measured", ""]
    if not r.breakdowns:
        out.append("No successful run recorded a parameter breakdown.")
    for b in r.breakdowns:
        mark = {True: "✓ matches", False: "✗ **MISMATCH**", None: "no prediction"}[b.verdict]
        out += ["", f"### {md_escape(b.method)} · {md_escape(b.model)} — {mark}", ""]
        out.append(f"Datasets: {md_escape(', '.join(b.datasets))}.")
        out += [f"- **{md_escape(p)}**" for p in b.problems]
        out += ["", _breakdown_table(b)]
    return out


def _data_section(r: ReportData) -> list[str]:
    """Lines of the "Data used" section: the data table, then the run settings table if any were recorded."""
    out = ["", "## Data used", ""]
    body = [
        [
            md_escape(u.dataset),
            md_escape(u.model),
            md_escape(u.task or ""),
            fmt_int(u.train_size),
            fmt_int(u.eval_size),
            str(u.num_labels if is_num(u.num_labels) else "–"),
            md_escape(u.source),
            md_escape(u.notes),
            md_escape(", ".join(u.methods)),
        ]
        for u in r.data
    ]
    out.append(
        md_table(
            ["dataset", "model", "task", "train", "eval", "classes", "source", "notes", "methods"],
            body,
            right={3, 4, 5},
        )
    )
    if r.settings:
        out += ["", "Run settings (first run of each configuration):", ""]
        out.append(
            md_table(
                ["dataset", "model", "method", "settings"],
                [
                    [md_escape(x) for x in s[:3]] + [f"`{md_escape(s[3])}`" if s[3] else ""]
                    for s in r.settings
                ],
            )
        )
    return out


def _failures_section(r: ReportData) -> list[str]:
    """Lines of the "Failed and cancelled runs" section: a sentence, and a table of them if there are any."""
    out = ["", "## Failed and cancelled runs", ""]
    if not r.failures:
        out.append("None: every recorded run finished.")
        return out
    n = len(r.failures)
    out.append(
        f"{plural(n, 'run')} did not finish; {'it is' if n == 1 else 'they are'} left out of every number above."
    )
    out.append("")
    body = [
        [md_escape(f[k]) for k in ("status", "dataset", "model", "method", "seed", "run_id", "created_at")]
        + [md_escape(f["error"][-400:])]
        for f in r.failures
    ]
    out.append(
        md_table(
            ["status", "dataset", "model", "method", "seed", "run", "created", "error (last 400 chars)"],
            body,
        )
    )
    return out


def _predictions_section(r: ReportData) -> list[str]:
    """Lines of "Time and memory: predicted vs measured": a sentence and one row per run."""
    from peftlab.report.content import ratio_summary

    out = ["", "## Time and memory: predicted vs measured", ""]
    if not r.predictions:
        out.append("No run of this store holds a prediction (records before `peftlab plan`).")
        return out
    out.append("Predicted by `peftlab plan` from each run's config, data and this machine's calibration; measured by "
               "the run. Ratio = predicted / measured. Memory is the run's own peak above the process's level when it "
               f"began (the process's peak beside it). {ratio_summary(r.predictions)}")  # fmt: skip
    out.append("")
    body = [
        [md_escape(p["dataset"]), md_escape(p["model"]), md_escape(p["label"]), str(p["seed"]),
         fmt_seconds(p["train_s"]), fmt_seconds(p["predicted_train_s"]), fmt_ratio(p["time_ratio"]),
         fmt_seconds(p["eval_s"]), fmt_seconds(p["predicted_eval_s"]), fmt_mb(p["run_peak_mb"]),
         fmt_mb(p["predicted_peak_mb"]), fmt_ratio(p["memory_ratio"]), fmt_mb(p["peak_rss_mb"])]
        for p in r.predictions
    ]  # fmt: skip
    headers = ["dataset", "model", "method", "seed", "train (measured)", "train (predicted)", "ratio",
               "eval (measured)", "eval (predicted)", "run peak (measured)", "run peak (predicted)", "ratio",
               "process peak"]  # fmt: skip
    out.append(md_table(headers, body, right=set(range(3, 13))))
    return out


def _environment_section(r: ReportData) -> list[str]:
    """Lines of the "Environment" section: run counts, date range and the environment table."""
    c = r.counts
    dates = f"{r.dates[0]} → {r.dates[1]}" if r.dates[0] else "no dates recorded"
    return [
        "",
        "## Environment",
        "",
        f"{c['total']} runs ({c['ok']} ok, {c['failed']} failed, {c['cancelled']} cancelled); {dates}.",
        "",
        md_table(["", "value"], [[f"**{md_escape(k)}**", md_escape(v)] for k, v in r.environment]),
    ]


def render_markdown(r: ReportData, plot_paths: dict[tuple[str, str], str]) -> str:
    """The whole report as Markdown text."""
    by_ds = rows_by_dataset(r.rows)
    out = _intro(r, len(by_ds))
    for dataset, rows in by_ds.items():
        out += _dataset_section(r, dataset, rows, plot_paths)
    out += _predictions_section(r)
    out += _parameters_section(r)
    out += _data_section(r)
    out += _failures_section(r)
    out += _environment_section(r)
    return "\n".join(out) + "\n"
