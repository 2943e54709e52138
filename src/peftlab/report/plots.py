"""Report figures drawn with matplotlib's Agg canvas and returned as base64 PNG strings for <img src="data:...">.

`dataset_plots(rows)` -> [Plot] for one dataset: accuracy vs trainable params / train time / peak memory, seed spread.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from peftlab.report.fmt import config_label, is_num, several_models
from peftlab.report.pareto import front_rows

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # one per model when a dataset has several
DPI = 110  # 6.4 x 4.2 in -> ~700 x 460 px
# label positions tried around a point, in points: (dx, dy, horizontal, vertical alignment)
LABEL_SPOTS = (
    (6, 4, "left", "bottom"),
    (6, -4, "left", "top"),
    (-6, 4, "right", "bottom"),
    (-6, -4, "right", "top"),
)
LABEL_SPOTS += (
    (8, 0, "left", "center"),
    (-8, 0, "right", "center"),
    (0, 10, "center", "bottom"),
    (0, -10, "center", "top"),
)


@dataclass
class Plot:
    """One figure: a file-safe name, a title, a caption built from the data, and the PNG as base64 text."""

    name: str
    title: str
    caption: str
    png_b64: str

    @property
    def png_bytes(self) -> bytes:
        return base64.b64decode(self.png_b64)


def method_colors(rows: list[dict]) -> dict[str, str]:
    """A fixed colour per configuration label, stable across every plot of a report; labels are ordered as the method
    registry lists methods (cheap -> expensive), then by name."""
    from peftlab.methods import REGISTRY

    rank = {m: i for i, m in enumerate(REGISTRY)}
    ordered = sorted({(rank.get(r["method"], len(rank)), r["label"]) for r in rows})
    return {label: PALETTE[i % len(PALETTE)] for i, (_, label) in enumerate(ordered)}


def _markers(rows: list[dict]) -> dict[str, str]:
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted({r["model"] for r in rows}))}


def to_base64_png(fig: Figure) -> str:
    """Render a Figure to PNG bytes (Agg, no GUI, no global pyplot state) and base64-encode them."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _place_labels(fig: Figure, ax, items: list[tuple[float, float, str]]) -> None:
    """Annotate (x, y, text) points, trying LABEL_SPOTS until a label overlaps no earlier label and no other point.

    Needs final axis limits and scale; boxes are in display pixels. A label with no free spot takes the first one.
    """
    renderer = fig.canvas.get_renderer()
    ax.get_xlim(), ax.get_ylim()  # apply pending autoscale so transData is final
    centres = [ax.transData.transform((x, y)) for x, y, _ in items]
    placed = []
    area = ax.get_window_extent(renderer)
    for i, (x, y, text) in enumerate(items):
        others = [c for j, c in enumerate(centres) if j != i]
        chosen = None
        for dx, dy, ha, va in LABEL_SPOTS:
            t = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8
            )
            box = t.get_window_extent(renderer)
            hits_label = any(box.overlaps(b) for b in placed)
            # a marker is ~10 px across at this DPI: keep labels 7 px clear of other points' centres
            hits_point = any(
                box.x0 - 7 < cx < box.x1 + 7 and box.y0 - 7 < cy < box.y1 + 7 for cx, cy in others
            )
            inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
            if not hits_label and not hits_point and inside:
                chosen = box
                break
            t.remove()
        if chosen is None:
            dx, dy, ha, va = LABEL_SPOTS[0]
            t = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8
            )
            chosen = t.get_window_extent(renderer)
        placed.append(chosen)


def _tradeoff_points(rows: list[dict], x_key: str) -> list[dict]:
    """The rows a trade-off plot draws: trained, with a positive cost under x_key and a mean accuracy."""
    return [
        r
        for r in rows
        if r["trained"] and is_num(r.get(x_key)) and r[x_key] > 0 and is_num(r.get("accuracy_mean"))
    ]


def _draw_points(
    ax, pts: list[dict], x_key: str, colors: dict[str, str], markers: dict[str, str], err_key: str | None
) -> None:
    """One marker per configuration at (cost, mean accuracy), y bars the CI95 half-width, x bars err_key if given."""
    for r in pts:
        yerr = r["accuracy_ci95"] if is_num(r.get("accuracy_ci95")) else 0.0
        xerr = r.get(err_key) if err_key and is_num(r.get(err_key)) else None
        if xerr is not None:
            xerr = min(xerr, 0.95 * r[x_key])  # keep the bar's left end above zero (log axis)
        color = colors[r["label"]]
        ax.errorbar(
            r[x_key],
            r["accuracy_mean"],
            yerr=yerr,
            xerr=xerr,
            fmt=markers[r["model"]],
            ms=7,
            capsize=3,
            color=color,
            zorder=3,
        )


def _draw_front(ax, pts: list[dict], x_key: str) -> None:
    """The Pareto front (low cost, high accuracy) as a dashed line through ringed points, in cost order."""
    front = sorted((pts[i] for i in front_rows(pts, x_key, "accuracy_mean")), key=lambda r: r[x_key])
    fx, fy = [r[x_key] for r in front], [r["accuracy_mean"] for r in front]
    ax.plot(fx, fy, "--", color="0.25", lw=1.2, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=190, facecolors="none", edgecolors="0.1", lw=1.5, zorder=4)


def _set_y_range(ax, rows: list[dict], pts: list[dict], with_model: bool) -> list[str]:
    """Set the y range and draw each model's untrained accuracy as a dotted line where it fits.

    The range comes from the points and their CIs; an untrained line far below would squash them, so it is left
    out. Returns those left out as "untrained baseline 0.100" texts for the caption.
    """
    half = [r["accuracy_ci95"] if is_num(r.get("accuracy_ci95")) else 0.0 for r in pts]
    lows = [r["accuracy_mean"] - h for r, h in zip(pts, half)]
    highs = [r["accuracy_mean"] + h for r, h in zip(pts, half)]
    pad = max(0.02, 0.15 * (max(highs) - min(lows)))
    y_lo, y_hi = min(lows) - pad, max(highs) + pad
    off_axis = []
    for model in sorted({r["model"] for r in rows}):
        base = [
            r["baseline_accuracy_mean"]
            for r in rows
            if r["model"] == model and is_num(r.get("baseline_accuracy_mean"))
        ]
        if not base:
            continue
        level = sum(base) / len(base)
        label = f"untrained ({model})" if with_model else "untrained baseline"
        if level >= y_lo - 2 * pad:
            ax.axhline(level, ls=":", color="0.5", lw=1, label=label)
            y_lo = min(y_lo, level - pad / 2)
        else:
            off_axis.append(f"{label} {level:.3f}")
    ax.set_ylim(y_lo, min(y_hi, 1.0 + pad))
    return off_axis


def _set_axes(
    ax, pts: list[dict], x_key: str, cost: str, unit: str, markers: dict[str, str], with_model: bool
) -> None:
    """x scale (log over 10× or more), axis labels, grid, and the legend (plus one marker entry per model)."""
    xs = [r[x_key] for r in pts]
    log = max(xs) / min(xs) >= 10  # a log axis only pays off over an order of magnitude or more
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.set_xlabel(f"{cost}{', ' + unit if unit else ''}{' (log scale)' if log else ''}")
    ax.set_ylabel("accuracy (mean ± 95% CI)")
    ax.grid(True, which="major", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if with_model:
        handles += [
            Line2D([], [], ls="", marker=mk, color="0.35", label=model) for model, mk in markers.items()
        ]
    ax.legend(handles=handles, fontsize=8, loc="best")


def _tradeoff_caption(
    rows: list[dict], pts: list[dict], cost: str, off_axis: list[str], with_model: bool
) -> str:
    """The caption: how many points, what the rings mean, untrained lines below the range, rows not drawn."""
    skipped = [config_label(r, with_model) for r in rows if r not in pts]
    caption = (
        f"{len(pts)} configurations; ringed points are on the Pareto front (lower cost, higher accuracy)."
    )
    if off_axis:
        caption += f" Below the plotted range: {', '.join(off_axis)}."
    if skipped:
        caption += f" Not drawn (untrained, or no {cost} recorded): {', '.join(skipped)}."
    return caption


def tradeoff_plot(
    rows: list[dict], x_key: str, cost: str, unit: str, colors: dict[str, str], *, err_key: str | None = None
) -> Plot | None:
    """Accuracy (mean ± CI95) against a cost, Pareto front drawn; None if no trained row has a positive cost.

    x is logarithmic when the costs span 10× or more. The untrained baseline method is no trade-off (and has zero
    cost on a log axis): the caption names it, and each model's untrained accuracy is a dotted line instead.
    """
    pts = _tradeoff_points(rows, x_key)
    if not pts:
        return None
    with_model = several_models(rows)
    markers = _markers(rows)
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_points(ax, pts, x_key, colors, markers, err_key)
    _draw_front(ax, pts, x_key)
    off_axis = _set_y_range(ax, rows, pts, with_model)
    _set_axes(ax, pts, x_key, cost, unit, markers, with_model)
    _place_labels(fig, ax, [(r[x_key], r["accuracy_mean"], config_label(r, with_model)) for r in pts])
    caption = _tradeoff_caption(rows, pts, cost, off_axis, with_model)
    name = x_key.removesuffix("_mean")
    return Plot(name=name, title=f"accuracy vs {cost}", caption=caption, png_b64=to_base64_png(fig))


def seed_spread_plot(rows: list[dict], colors: dict[str, str]) -> Plot | None:
    """Per-seed accuracy per trained configuration (dots), mean (bar), 95% CI (whisker); None if nothing to draw."""
    drawn = [r for r in rows if r["trained"] and any(is_num(a) for a in r.get("accuracy_per_seed") or [])]
    if not drawn:
        return None
    with_model = several_models(rows)
    markers = _markers(rows)
    fig = Figure(figsize=(max(6.4, 0.9 * len(drawn) + 1.5), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, r in enumerate(drawn):
        accs = [a for a in r["accuracy_per_seed"] if is_num(a)]
        # deterministic jitter in [-0.12, +0.12] so identical accuracies stay visible
        jitter = [0.0] if len(accs) == 1 else [-0.12 + 0.24 * k / (len(accs) - 1) for k in range(len(accs))]
        ax.scatter(
            [i + j for j in jitter],
            accs,
            s=30,
            marker=markers[r["model"]],
            color=colors[r["label"]],
            alpha=0.85,
            zorder=3,
        )
        ax.hlines(r["accuracy_mean"], i - 0.25, i + 0.25, color="0.1", lw=2, zorder=4)
        if is_num(r.get("accuracy_ci95")):
            ax.errorbar(
                i + 0.3, r["accuracy_mean"], yerr=r["accuracy_ci95"], fmt="none", ecolor="0.35", capsize=3
            )
    ax.set_xticks(range(len(drawn)))
    labels = [
        f"{r['label']}\n{r['model']}\nn={r['n_seeds']}" if with_model else f"{r['label']}\nn={r['n_seeds']}"
        for r in drawn
    ]
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("accuracy per seed")
    ax.set_xlim(-0.6, len(drawn) - 0.4)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.15)
    caption = "Dots: one run each; black bar: mean; grey whisker: 95% CI."
    n1 = [config_label(r, with_model) for r in drawn if r["n_seeds"] < 2]
    if n1:
        caption += f" One seed (no interval): {', '.join(n1)}."
    left_out = [config_label(r, with_model) for r in rows if r not in drawn]
    if left_out:
        caption += f" Left out (untrained, listed in the table): {', '.join(left_out)}."
    return Plot(name="seed_spread", title="accuracy per seed", caption=caption, png_b64=to_base64_png(fig))


def sweeps(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """[(knob, rows ordered by its value)] for each set of >= 2 rows of one model and method whose settings differ in
    one numeric knob only (a --sweep, or variants in a suite)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        knobs = r.get("knobs") or {}
        if "sweep_group" in knobs:
            groups.setdefault((r["model"], r["method"], knobs["sweep_group"]), []).append(r)
    out = []
    for members in groups.values():
        keys = {k for r in members for k in r["knobs"] if k != "sweep_group"}
        varying = [k for k in sorted(keys) if len({repr(r["knobs"].get(k)) for r in members}) > 1]
        if (
            len(members) >= 2
            and len(varying) == 1
            and all(is_num(r["knobs"].get(varying[0])) for r in members)
        ):
            out.append((varying[0], sorted(members, key=lambda r: r["knobs"][varying[0]])))
    return out


def sweep_plot(knob: str, members: list[dict], with_model: bool) -> Plot:
    """Accuracy (mean ± 95% CI) and trainable parameters against one swept knob, side by side."""
    xs = [m["knobs"][knob] for m in members]
    fig = Figure(figsize=(9.0, 3.6))
    FigureCanvasAgg(fig)
    acc_ax, par_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    yerr = [m["accuracy_ci95"] if is_num(m.get("accuracy_ci95")) else 0.0 for m in members]
    acc_ax.errorbar(
        xs, [m["accuracy_mean"] for m in members], yerr=yerr, fmt="o-", capsize=3, color=PALETTE[0]
    )
    par_ax.plot(xs, [m.get("trainable_params") or 0 for m in members], "s-", color=PALETTE[1])
    log = min(xs) > 0 and max(xs) / min(xs) >= 8  # ranks 4..64 read best on a log axis
    flag = "--" + knob.replace("_", "-")
    for ax, label in ((acc_ax, "accuracy (mean ± 95% CI)"), (par_ax, "trainable parameters")):
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(flag)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    first = members[0]
    who = f"{first['method']} ({first['model']})" if with_model else first["method"]
    seeds = ", ".join(f"{m['knobs'][knob]:g}: n={m['n_seeds']}" for m in members)
    caption = f"{who} with only {flag} changing; seeds per value: {seeds}."
    return Plot(name=re.sub(r"[^a-z0-9]+", "-", f"sweep-{first['model']}-{first['method']}-{knob}".lower()), title=f"{who}: sweep of {flag}",
                caption=caption, png_b64=to_base64_png(fig))  # fmt: skip


def tuning_plot(rows: list[dict], colors: dict[str, str]) -> Plot | None:
    """Validation accuracy of every completed tuning trial against its learning rate, one colour per tuned method:
    how sensitive each method is to the learning rate. None without tuned rows."""
    tuned = [r for r in rows if r.get("tuning") and r["tuning"].get("trials")]
    if not tuned:
        return None
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for r in tuned:
        pts = [(t["params"]["lr"], t["value"]) for t in r["tuning"]["trials"]
               if t.get("value") is not None and "lr" in t["params"]]  # fmt: skip
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, "o", color=colors.get(r["label"], PALETTE[0]), label=r["label"], alpha=0.8)
            drawn += len(pts)
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    caption = (f"{drawn} completed trials of {len(tuned)} tuned configurations (pruned trials stopped early and are "
               "left out); a flat cloud means a method is forgiving about its learning rate.")  # fmt: skip
    return Plot(name="tuning-lr", title="validation accuracy vs learning rate (tuning trials)", caption=caption,
                png_b64=to_base64_png(fig))  # fmt: skip


def dataset_plots(rows: list[dict], colors: dict[str, str] | None = None) -> list[Plot]:
    """All figures for one dataset's summary rows (best first); figures with nothing to draw are left out."""
    colors = colors or method_colors(rows)
    plots = [
        tradeoff_plot(rows, "trainable_params", "trainable parameters", "", colors),
        tradeoff_plot(rows, "train_s_mean", "train time", "s", colors, err_key="train_s_ci95"),
        tradeoff_plot(
            rows, "run_peak_mb_mean", "run's own peak memory", "MB", colors, err_key="run_peak_mb_ci95"
        ),
        seed_spread_plot(rows, colors),
    ]
    plots += [sweep_plot(knob, members, several_models(rows)) for knob, members in sweeps(rows)]
    plots.append(tuning_plot(rows, colors))
    return [p for p in plots if p is not None]
