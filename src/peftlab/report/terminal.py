"""A plain-text leaderboard per dataset, aligned in columns, for printing at the end of `peftlab compare`.

`print(leaderboard_text(summarize(records)))`; rows are sorted by mean accuracy, best first.
"""

from __future__ import annotations

from peftlab.report.aggregate import rows_by_dataset
from peftlab.report.fmt import fmt_count, fmt_mean_ci, fmt_pct, fmt_seconds, fmt_signed, is_num, tuning_note

HEADERS = (
    "#",
    "method",
    "model",
    "seeds",
    "accuracy ± 95% CI",
    "vs untrained",
    "trainable",
    "%",
    "train time",
    "note",
)
RIGHT = {0, 3, 4, 5, 6, 7, 8}  # numeric columns, right-aligned


def _table(cells: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; trailing spaces stripped."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in RIGHT else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return lines


def leaderboard_text(rows: list[dict]) -> str:
    """One block per dataset: a title line, a header, a rule, one line per (model, method), best accuracy first."""
    if not rows:
        return "No successful runs to rank."
    blocks = []
    for dataset, mine in rows_by_dataset(rows).items():
        mine = sorted(
            mine, key=lambda r: -r["accuracy_mean"] if is_num(r.get("accuracy_mean")) else float("inf")
        )
        cells = [HEADERS]
        for rank, r in enumerate(mine, 1):
            notes = []
            if r.get("pareto_params") or r.get("pareto_time"):
                notes.append("pareto:" + ",".join(k for k in ("params", "time") if r.get(f"pareto_{k}")))
            if r.get("params_match") is False:
                notes.append("PARAMS MISMATCH")
            cells.append(
                (
                    str(rank),
                    str(r["label"]),
                    str(r["model"]),
                    str(r["n_seeds"]),
                    fmt_mean_ci(r["accuracy_mean"], r["accuracy_ci95"], r["n_seeds"]),
                    fmt_signed(r.get("gain_over_baseline")),
                    fmt_count(r.get("trainable_params")),
                    fmt_pct(r.get("trainable_pct")),
                    fmt_seconds(r.get("train_s_mean")),
                    "; ".join(notes),
                )
            )
        lines = _table(cells)
        rule = "-" * len(lines[0])
        task = mine[0].get("task")
        title = f"{dataset}" + (f" ({task})" if task else "")
        blocks.append("\n".join([title, lines[0], rule, *lines[1:]]))
    legend = "± = 95% CI half-width over seeds (n/a with one seed); vs untrained = accuracy gained over the model before training"
    note = tuning_note(rows)
    return "\n\n".join(blocks) + "\n" + legend + (f"\n{note}" if note else "")
