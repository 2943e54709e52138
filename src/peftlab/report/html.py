"""The self-contained HTML report: inline CSS, plots embedded as data: PNGs, no scripts, no external URLs.

`render_html(report)` -> str from a `ReportData` (built by write.py); every string from a record passes html.escape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from peftlab.report.aggregate import rows_by_dataset
from peftlab.report.compare import method_note
from peftlab.report.content import Breakdown, DataUse, slug
from peftlab.report.fmt import (
    TUNING_HEADERS,
    config_label,
    fmt_acc,
    fmt_count,
    fmt_int,
    fmt_mb,
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
from peftlab.report.plots import Plot


@dataclass
class ReportData:
    """Everything a report shows, computed once and rendered as HTML and as Markdown."""

    title: str
    generated_at: str  # ISO time the report was written, UTC
    rows: list[dict]  # summarize(records)
    comparison: dict[str, list[str]]  # dataset -> sentences
    plots: dict[str, list[Plot]]  # dataset -> figures
    counts: dict[str, int]  # run_counts(records)
    dates: tuple[str | None, str | None]  # earliest, latest created_at
    environment: list[tuple[str, str]]
    data: list[DataUse]
    settings: list[tuple[str, str, str, str]]
    breakdowns: list[Breakdown]
    failures: list[dict]
    predictions: list[dict] = field(
        default_factory=list
    )  # content.predictions(records): predicted vs measured


# nothing may load from outside the file and no script may run: images are data: URLs, styles are inline
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --fg:#1d2330; --muted:#5b6577; --line:#d9dee7; --zebra:#f6f8fb; --accent:#2856b6; --bad:#b3151b; --badbg:#fde8e8; --ok:#1f7a3a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1400px; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p, li { max-width: 980px; }
.muted, .sub { color: var(--muted); }
.sub { margin: 0 0 10px; }
nav { margin: 12px 0 4px; font-size: 14px; }
nav a { margin-right: 14px; }
a { color: var(--accent); text-decoration: none; }
.note { background: var(--zebra); border-left: 3px solid var(--accent); padding: 8px 12px; font-size: 14px; margin: 12px 0; }
.warn { background: var(--badbg); border-left: 4px solid var(--bad); color: var(--bad); padding: 8px 12px; margin: 10px 0; font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0 12px; }
table.leaderboard { font-size: 13px; }
table.leaderboard th, table.leaderboard td { padding: 5px 7px; }
td.name { white-space: nowrap; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef1f6; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) td { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.lead td { font-weight: 650; }
.ci { color: var(--muted); font-weight: 400; font-size: 12px; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; background: #e4ecfb; color: var(--accent); margin-right: 3px; }
td.bad, span.bad { color: var(--bad); background: var(--badbg); font-weight: 700; }
.okmark { color: var(--ok); font-weight: 700; }
ol.prose li { margin: 3px 0; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px 22px; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
pre { white-space: pre-wrap; word-break: break-word; background: #f3f4f7; padding: 6px 8px; margin: 4px 0; font-size: 12px; max-height: 260px; overflow: auto; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.breakdown { display: inline-block; vertical-align: top; margin: 0 22px 14px 0; }
.breakdown h3 { margin-top: 10px; }
footer { margin-top: 44px; font-size: 13px; color: var(--muted); }
footer h2 { color: var(--fg); }
.env { display: flex; flex-wrap: wrap; gap: 6px 10px; }
.env div { background: var(--zebra); border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; }
.env span { font-weight: 600; margin-right: 6px; color: var(--fg); }
"""


def _e(x) -> str:
    return escape(str(x))


def _ci(value: str, half_width, digits: int = 3) -> str:
    """A cell: the mean, then a muted "± 0.011" (or "± n/a" with one seed)."""
    ci = f"± {half_width:.{digits}f}" if is_num(half_width) else "± n/a"
    return f"{_e(value)} <span class=ci>{_e(ci)}</span>"


def _table(headers: list[tuple[str, bool]], body: list[str], cls: str = "") -> str:
    """headers: [(label, numeric?)]; body: ready <tr> strings."""
    head = "".join(f"<th class=num>{_e(h)}</th>" if num else f"<th>{_e(h)}</th>" for h, num in headers)
    return f"<div class=scroll><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _tuning_table(rows: list[dict]) -> str:
    """compare --tune: per tuned configuration, what its equal budget chose and what it scored on test."""
    body = tuning_rows(rows)
    if not body:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in TUNING_HEADERS)
    cells = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<h3>Tuning (equal budgets, chosen on validation, reported on test)</h3><table><tr>{head}</tr>{cells}</table>"


def _leaderboard(rows: list[dict]) -> str:
    """Best first; accuracy carries its CI in the cell, the other means carry theirs in a tooltip (title)."""
    headers = [
        ("#", True),
        ("method", False),
        ("model", False),
        ("seeds", True),
        ("accuracy ± 95% CI", True),
        ("macro-F1", True),
        ("macro-recall", True),
        ("untrained", True),
        ("gain", True),
        ("trainable (%)", True),
        ("train time", True),
        ("samples/s", True),
        ("run peak mem.", True),
        ("Pareto", False),
    ]
    body = []
    for rank, r in enumerate(rows, 1):
        badges = "".join(f"<span class=badge>{k}</span>" for k in ("params", "time") if r.get(f"pareto_{k}"))
        pct = f" <span class=ci>({_e(fmt_pct(r.get('trainable_pct')))})</span>"
        if r.get("params_match") is False:
            # exact counts: a short form (12.5K) would hide a difference of a few parameters
            trainable = (
                f"<td class='num bad'>{_e(fmt_int(r.get('trainable_params')))} ✗{pct}<br>"
                f"predicted {_e(fmt_int(r.get('predicted_trainable')))}</td>"
            )
        else:
            ok = (
                " <span class=okmark title='matches the analytic prediction'>✓</span>"
                if r.get("params_match")
                else ""
            )
            trainable = f"<td class=num>{_e(fmt_count(r.get('trainable_params')))}{ok}{pct}</td>"
        cells = [
            f"<td class=num>{rank}</td>",
            f"<td class=name>{_e(r['label'])}</td>",
            f"<td class=name>{_e(r['model'])}</td>",
            f"<td class=num>{_e(r['n_seeds'])}</td>",
            f"<td class=num>{_ci(fmt_acc(r['accuracy_mean']), r['accuracy_ci95'])}</td>",
            _tip(fmt_acc(r["macro_f1_mean"]), r["macro_f1_ci95"]),
            _tip(fmt_acc(r["macro_recall_mean"]), r["macro_recall_ci95"]),
            f"<td class=num>{_e(fmt_acc(r.get('baseline_accuracy_mean')))}</td>",
            f"<td class=num>{_e(fmt_signed(r.get('gain_over_baseline')))}</td>",
            trainable,
            _tip(fmt_seconds(r.get("train_s_mean")), r.get("train_s_ci95")),
            f"<td class=num>{_e(fmt_rate(r.get('train_samples_per_s_mean')))}</td>",
            f"<td class=num>{_e(fmt_mb(r.get('run_peak_mb_mean')))}</td>",
            f"<td class=name>{badges}</td>",
        ]
        body.append(f"<tr class='{'lead' if rank == 1 else ''}'>{''.join(cells)}</tr>")
    return _table(headers, body, "leaderboard")


def _tip(value: str, half_width) -> str:
    """A numeric cell showing the mean, its 95% CI half-width in the tooltip."""
    tip = f"95% CI ± {half_width:.4g}" if is_num(half_width) else "one seed: no interval"
    return f"<td class=num title='{_e(tip)}'>{_e(value)}</td>"


def _row_warnings(rows: list[dict]) -> str:
    """Loud notes for anything that makes a row less than it seems: mixed settings, re-run seeds, parameter mismatch."""
    out = []
    label = several_models(rows)
    for r in rows:
        name = _e(config_label(r, label))
        if r.get("params_match") is False:
            out.append(
                f"<div class=warn>{name}: the measured trainable parameters ({_e(fmt_int(r.get('trainable_params')))}) "
                f"disagree with the analytic prediction ({_e(fmt_int(r.get('predicted_trainable')))}); see the parameter "
                f"breakdown below.</div>"
            )
        for key, values in (r.get("mixed_config") or {}).items():
            out.append(
                f"<div class=warn>{name}: its {_e(r['n_seeds'])} runs differ in {_e(key)} ({_e(', '.join(values))}), "
                f"so they are not pure seed repeats and the interval mixes settings.</div>"
            )
        if r.get("duplicates_dropped"):
            out.append(
                f"<div class=note>{name}: {_e(r['duplicates_dropped'])} older run(s) of an already-seen seed were left "
                f"out; the newest run of each seed counts.</div>"
            )
    return "".join(out)


def _dataset_section(
    index: int, dataset: str, rows: list[dict], sentences: list[str], plots: list[Plot]
) -> str:
    first = rows[0]
    n_runs = sum(r["n_seeds"] for r in rows)
    sizes = f"train {fmt_int(first.get('train_size'))} / eval {fmt_int(first.get('eval_size'))} examples"
    if is_num(first.get("num_labels")):
        sizes += f", {first['num_labels']} classes"
    sub = f"{first.get('task') or 'task ?'} · {sizes} · {len(rows)} configurations · {n_runs} successful runs"
    parts = [
        f"<section id='ds-{index}-{_e(slug(dataset))}'>",
        f"<h2>{_e(dataset)}</h2><p class=sub>{_e(sub)}</p>",
        "<h3>Leaderboard</h3>",
        _leaderboard(rows),
        f"<p class=sub>{_e(tuning_note(rows))}</p>" if tuning_note(rows) else "",
        _tuning_table(rows),
        _row_warnings(rows),
        "<h3>Written comparison</h3>",
        "<ol class=prose>" + "".join(f"<li>{_e(s)}</li>" for s in sentences) + "</ol>",
    ]
    if plots:
        parts.append("<h3>Trade-offs and seed spread</h3><div class=figs>")
        for p in plots:
            alt = f"{dataset}: {p.title}"
            parts.append(
                f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{p.png_b64}'>"
                f"<figcaption><b>{_e(p.title)}.</b> {_e(p.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _breakdown_section(items: list[Breakdown]) -> str:
    if not items:
        return "<p class=muted>No successful run recorded a parameter breakdown.</p>"
    bad = [b for b in items if b.verdict is False]
    out = []
    if bad:
        names = ", ".join(f"{b.method} on {b.model}" for b in bad)
        out.append(
            f"<div class=warn>Prediction ≠ measurement for {len(bad)} method/model pair(s): {_e(names)}.</div>"
        )
    else:
        checked = sum(b.verdict is True for b in items)
        out.append(
            f"<p>All {checked} predicted breakdowns that could be checked match the measured counts.</p>"
        )
    for b in items:
        mark = {
            True: "<span class=okmark>✓ matches</span>",
            False: "<span class=bad>✗ MISMATCH</span>",
            None: "<span class=muted>no prediction</span>",
        }[b.verdict]
        body = [
            f"<tr><td>{_e(c.get('component'))}</td><td class=num>{_e(fmt_int(c.get('params')))}</td>"
            f"<td class=num>{_e(fmt_int(c.get('trainable')))}</td><td class=mono>{_e(c.get('formula') or '')}</td></tr>"
            for c in b.components
        ]
        for what, pred, meas in (
            ("trainable", b.predicted_trainable, b.trainable),
            ("total", b.predicted_total, b.total),
        ):
            cls = "bad" if is_num(pred) and is_num(meas) and int(pred) != int(meas) else ""
            body.append(
                f"<tr><td><b>{what}: predicted / measured</b></td><td class='num {cls}' colspan=2>"
                f"{_e(fmt_int(pred))} / {_e(fmt_int(meas))}</td><td></td></tr>"
            )
        problems = "".join(f"<div class=warn>{_e(p)}</div>" for p in b.problems)
        out.append(
            f"<div class=breakdown><h3>{_e(b.method)} · {_e(b.model)} {mark}</h3>"
            f"<p class=sub>datasets: {_e(', '.join(b.datasets))}</p>{problems}"
            + _table([("component", False), ("params", True), ("trainable", True), ("formula", False)], body)
            + "</div>"
        )
    return "".join(out)


def _data_section(data: list[DataUse], settings: list[tuple[str, str, str, str]]) -> str:
    body = [
        f"<tr><td>{_e(u.dataset)}</td><td>{_e(u.model)}</td><td>{_e(u.task or '')}</td>"
        f"<td class=num>{_e(fmt_int(u.train_size))}</td><td class=num>{_e(fmt_int(u.eval_size))}</td>"
        f"<td class=num>{_e(u.num_labels if u.num_labels is not None else '–')}</td><td>{_e(u.labels)}</td>"
        f"<td>{_e(u.source)}</td><td>{_e(u.notes)}</td><td>{_e(', '.join(u.methods))}</td></tr>"
        for u in data
    ]
    headers = [
        ("dataset", False),
        ("model", False),
        ("task", False),
        ("train", True),
        ("eval", True),
        ("classes", True),
    ]
    headers += [("labels", False), ("source", False), ("notes", False), ("methods", False)]
    out = _table(headers, body) if data else "<p class=muted>No successful runs.</p>"
    if settings:
        rows = [
            f"<tr><td>{_e(d)}</td><td>{_e(m)}</td><td>{_e(meth)}</td><td class=mono>{_e(text)}</td></tr>"
            for d, m, meth, text in settings
        ]
        out += "<h3>Run settings (first run of each configuration)</h3>"
        out += _table([("dataset", False), ("model", False), ("method", False), ("settings", False)], rows)
    return out


def _failures_section(failures: list[dict]) -> str:
    if not failures:
        return "<p>None: every recorded run finished.</p>"
    body = []
    for f in failures:
        # a traceback ends with the exception line: show that in bold, the whole text below it
        last_line = f["error"].strip().splitlines()[-1] if f["error"].strip() else ""
        error = f"<b>{_e(last_line)}</b>"
        if f["error"].strip() != last_line:
            error += f"<pre>{_e(f['error'])}</pre>"
        body.append(
            f"<tr><td class=bad>{_e(f['status'])}</td><td>{_e(f['dataset'])}</td><td>{_e(f['model'])}</td>"
            f"<td>{_e(f['method'])}</td><td class=num>{_e(f['seed'])}</td><td class=mono>{_e(f['run_id'])}</td>"
            f"<td class=mono>{_e(f['created_at'])}</td><td>{error}</td></tr>"
        )
    headers = [("status", False), ("dataset", False), ("model", False), ("method", False), ("seed", True)]
    headers += [("run", False), ("created", False), ("error", False)]
    return f"<p>{len(failures)} run(s) did not finish; they are left out of every number above.</p>" + _table(
        headers, body
    )


def _footer(r: ReportData) -> str:
    c = r.counts
    counts = f"{c['total']} runs: {c['ok']} ok, {c['failed']} failed, {c['cancelled']} cancelled"
    other = sum(v for k, v in c.items() if k not in ("total", "ok", "failed", "cancelled"))
    if other:
        counts += f", {other} with another status"
    dates = f"runs from {r.dates[0]} to {r.dates[1]}" if r.dates[0] else "no run dates recorded"
    env = "".join(f"<div><span>{_e(k)}</span><code>{_e(v)}</code></div>" for k, v in r.environment)
    return (
        f"<footer id=env><h2>Environment</h2><p>{_e(counts)}; {_e(dates)}; report written {_e(r.generated_at)}.</p>"
        f"<div class=env>{env}</div></footer>"
    )


def _predictions_section(preds: list[dict]) -> str:
    """Each run's predicted and measured train time, evaluation time and own peak memory, with the ratios."""
    from peftlab.report.content import ratio_summary

    if not preds:
        return "<p class=sub>No run of this store holds a prediction (records before `peftlab plan`).</p>"
    lead = (
        "<p class=sub>Predicted by <code>peftlab plan</code> from each run's config, data and this machine's "
        "calibration; measured by the run. Ratio = predicted / measured. Memory is the run's own peak above the "
        f"process's level when it began (the process's peak beside it). {_e(ratio_summary(preds))}</p>"
    )
    headers = [(h, h not in ("method", "model", "dataset")) for h in
               ("dataset", "model", "method", "seed", "train (measured)", "train (predicted)", "ratio",
                "eval (measured)", "eval (predicted)", "run peak (measured)", "run peak (predicted)", "ratio",
                "process peak")]  # fmt: skip
    body = []
    for p in preds:
        cells = [
            f"<td class=name>{_e(p['dataset'])}</td>", f"<td class=name>{_e(p['model'])}</td>",
            f"<td class=name>{_e(p['label'])}</td>", f"<td class=num>{_e(p['seed'])}</td>",
            f"<td class=num>{_e(fmt_seconds(p['train_s']))}</td>",
            f"<td class=num>{_e(fmt_seconds(p['predicted_train_s']))}</td>",
            f"<td class=num>{_e(fmt_ratio(p['time_ratio']))}</td>",
            f"<td class=num>{_e(fmt_seconds(p['eval_s']))}</td>",
            f"<td class=num>{_e(fmt_seconds(p['predicted_eval_s']))}</td>",
            f"<td class=num>{_e(fmt_mb(p['run_peak_mb']))}</td>",
            f"<td class=num>{_e(fmt_mb(p['predicted_peak_mb']))}</td>",
            f"<td class=num>{_e(fmt_ratio(p['memory_ratio']))}</td>",
            f"<td class=num>{_e(fmt_mb(p['peak_rss_mb']))}</td>",
        ]  # fmt: skip
        body.append(f"<tr>{''.join(cells)}</tr>")
    return lead + _table(headers, body)


def render_html(r: ReportData) -> str:
    """The whole page as one string."""
    by_ds = rows_by_dataset(r.rows)
    nav = [f"<a href='#ds-{i}-{_e(slug(d))}'>{_e(d)}</a>" for i, d in enumerate(by_ds)]
    nav += [
        "<a href='#predicted'>predicted vs measured</a>",
        "<a href='#params'>parameters</a>",
        "<a href='#data'>data</a>",
        "<a href='#failed'>failed runs</a>",
        "<a href='#env'>environment</a>",
    ]
    c = r.counts
    n_models, n_methods = len({x["model"] for x in r.rows}), len({x["method"] for x in r.rows})
    n_configs = len({x["label"] for x in r.rows})
    configs = f" ({plural(n_configs, 'configuration')})" if n_configs > n_methods else ""
    lead = (
        f"{plural(c['ok'], 'successful run')} over {plural(len(by_ds), 'dataset')}, {plural(n_models, 'model')} and "
        f"{plural(n_methods, 'method')}{configs}; {c['total'] - c['ok']} failed or cancelled."
    )
    single = [x for x in r.rows if x["n_seeds"] < 2]
    note = _e(method_note())
    if single:
        note += (
            f" {len(single)} of {len(r.rows)} configurations ran with a single seed: they show “± n/a”, "
            f"because one seed gives no estimate of seed noise."
        )
    sections = [
        _dataset_section(i, d, rows, r.comparison.get(d, []), r.plots.get(d, []))
        for i, (d, rows) in enumerate(by_ds.items())
    ]
    if not sections:
        sections = ["<p class=warn>No successful runs: nothing to compare yet.</p>"]
    body = [
        f"<header><h1>{_e(r.title)}</h1><p class=sub>{_e(lead)}</p><nav>{''.join(nav)}</nav></header>",
        f"<div class=note>{note}</div>",
        *sections,
        "<section id=predicted><h2>Time and memory: predicted vs measured</h2>",
        _predictions_section(r.predictions),
        "</section>",
        "<section id=params><h2>Parameters: predicted vs measured</h2>",
        "<p class=sub>Per component as predicted from the architecture (first run of each method), against the counts "
        "measured on the prepared model.</p>",
        _breakdown_section(r.breakdowns),
        "</section>",
        "<section id=data><h2>Data used</h2>",
        _data_section(r.data, r.settings),
        "</section>",
        "<section id=failed><h2>Failed and cancelled runs</h2>",
        _failures_section(r.failures),
        "</section>",
        _footer(r),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset='utf-8'>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<title>{_e(r.title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
