"""Number and label formatting shared by the HTML, Markdown and terminal reports and the written comparison.

Every function takes a value that may be None (missing) and returns a short display string; "–" marks missing.
"""

from __future__ import annotations

import math

MISSING = "–"


def is_num(x) -> bool:
    """True for a finite int/float (bools excluded); None, NaN and inf are not numbers for display."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_count(n) -> str:
    """Parameter counts with 3 significant digits: 950 -> "950", 1538 -> "1.54K", 4386178 -> "4.39M"."""
    if not is_num(n):
        return MISSING
    n = float(n)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_int(n) -> str:
    """Exact counts with thousands separators: 4386178 -> "4,386,178"."""
    return f"{int(n):,}" if is_num(n) else MISSING


def fmt_acc(x, digits: int = 3) -> str:
    """A score in [0, 1] with fixed decimals: 0.84213 -> "0.842"."""
    return f"{x:.{digits}f}" if is_num(x) else MISSING


def fmt_signed(x, digits: int = 3) -> str:
    """A difference with its sign: 0.031 -> "+0.031", -0.004 -> "−0.004" (typographic minus)."""
    if not is_num(x):
        return MISSING
    return f"+{x:.{digits}f}" if x >= 0 else f"−{-x:.{digits}f}"


def fmt_mean_ci(mean, half_width, n: int | None = None, digits: int = 3) -> str:
    """Mean ± 95% CI half-width: "0.842 ± 0.011"; with one seed there is no interval: "0.842 (n=1, no CI)"."""
    if not is_num(mean):
        return MISSING
    if is_num(half_width):
        return f"{mean:.{digits}f} ± {half_width:.{digits}f}"
    return f"{mean:.{digits}f} (n=1, no CI)" if n == 1 else f"{mean:.{digits}f} (no CI)"


def fmt_seconds(s) -> str:
    """Durations with ~3 significant digits: 0.0123 -> "0.012 s", 12.34 -> "12.3 s", 4000 -> "66.7 min"."""
    if not is_num(s):
        return MISSING
    if s >= 2 * 86400:
        return f"{s / 86400:.3g} d"
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 600:
        return f"{s / 60:.3g} min"
    if s >= 100:
        return f"{s:.0f} s"
    return f"{s:.3g} s"


def fmt_rate(x) -> str:
    """Throughput in samples/s: 1234.5 -> "1,234", 12.34 -> "12.3"."""
    if not is_num(x):
        return MISSING
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_pct(p) -> str:
    """A percentage already in percent units, 3 significant digits: 0.03512 -> "0.0351%", 100 -> "100%"."""
    return f"{p:.3g}%" if is_num(p) else MISSING


def fmt_mb(x) -> str:
    """Memory in MB, no decimals: 812.4 -> "812 MB"."""
    return f"{x:,.0f} MB" if is_num(x) else MISSING


def fmt_ratio(x) -> str:
    """A multiple: 2.345 -> "2.35×", 17004.6 -> "17,005×"."""
    if not is_num(x):
        return MISSING
    return f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"


def fmt_p(p) -> str:
    """A p-value: 0.0004 -> "p < 0.001", 0.0312 -> "p = 0.031"."""
    if not is_num(p):
        return MISSING
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def config_label(row: dict, with_model: bool) -> str:
    """How a summary row is named in prose and plots: "lora r=4", or "lora r=4 (bert-tiny)" when a dataset has several models."""
    return f"{row['label']} ({row['model']})" if with_model else str(row["label"])


def several_models(rows: list[dict]) -> bool:
    """True when the rows (one dataset's) span more than one model, so labels must name the model."""
    return len({r["model"] for r in rows}) > 1


def plural(n: int, noun: str) -> str:
    """1 -> "1 run", 3 -> "3 runs" (regular English plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def tuning_note(rows: list[dict]) -> str | None:
    """Says plainly when trained configurations ran with untuned default settings (one setting per method is not a
    fair comparison); None when every trained row was tuned with the same budget."""
    untuned = list(dict.fromkeys(r["label"] for r in rows if r.get("trained", True) and not r.get("tuned")))
    if not untuned:
        return None
    return (
        "Settings: untuned defaults (one setting per method, not tuned on this data) for "
        f"{', '.join(untuned)}; `peftlab compare --tune N` gives every method the same tuning budget on the "
        "validation split."
    )


def tuning_rows(rows: list[dict]) -> list[list[str]]:
    """One table row per tuned configuration: label, tuned settings, best validation accuracy, trials (complete /
    pruned), tuning time, test accuracy tuned, test accuracy with the default settings (the untuned row beside it)."""
    out = []
    for r in rows:
        t = r.get("tuning")
        if not t:
            continue
        default = next((d for d in rows if d["model"] == r["model"] and d["label"] == r["label"].removesuffix(" tuned")
                        and not d.get("tuned")), None)  # fmt: skip
        settings = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["best_params"].items()
        )
        out.append([
            str(r["label"]), settings, fmt_acc(t.get("best_value")),
            f"{t.get('trials_complete')} / {t.get('trials_pruned')}", fmt_seconds(t.get("tuning_s")),
            fmt_mean_ci(r["accuracy_mean"], r["accuracy_ci95"], r["n_seeds"]),
            fmt_mean_ci(default["accuracy_mean"], default["accuracy_ci95"], default["n_seeds"]) if default else "–",
        ])  # fmt: skip
    return out


TUNING_HEADERS = ["tuned configuration", "tuned settings", "best validation accuracy", "trials complete / pruned",
                  "tuning time", "test accuracy (tuned)", "test accuracy (defaults)"]  # fmt: skip
