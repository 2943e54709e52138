"""The terminal answer of `peftlab plan` (one run: FLOPs by component with formulas, time, memory) and of
`peftlab compare --plan` (one line per run and the totals).

`run_text(plan_run(...))`, `grid_text(plan_grid(...))`.
"""

from __future__ import annotations

from pathlib import Path

from peftlab.params.table import _wrap
from peftlab.report.fmt import fmt_seconds as seconds_text


def flops_text(n) -> str:
    """2.31e12 -> "2.31 TFLOP"; small counts stay whole."""
    if n is None:
        return "-"
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} FLOP"


def _machine_line(m: dict) -> str:
    if m.get("accelerator"):
        return (f"machine: {m['accelerator']} — an ESTIMATE from its datasheet peak ({m['fp32_tflops']} TFLOP/s fp32, "
                f"{m['bandwidth_gbs']:,.0f} GB/s; {m['source']}), not a measurement")  # fmt: skip
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    where = "calibrated on this machine" if m.get("calibration") != "stored" else "a stored calibration of it"
    return (f"machine: {m['cpu']} ({m['threads']} torch threads{gpu}), {where}; torch {m['torch']}, "
            f"transformers {m['transformers']}, peft {m['peft']}")  # fmt: skip


def run_text(p: dict) -> str:
    d = p["data"]
    sizes = f"{d['train_size']:,} train, " + (
        f"{d['eval_size']:,} test" if d["eval_size"] is not None else "test ?"
    )
    lines = [f"{p['model']} · {p['dataset']} · {p['label']} · {p['task']}",
             f"data: {sizes}; {d['optimizer_steps']:,} optimiser steps ({d['source']})"]  # fmt: skip
    if d.get("mean_tokens") is not None:
        lines[-1] += f"; mean padded length {d['mean_tokens']} tokens"
    if d.get("image"):
        lines[-1] += f"; images {d['image'][0]}×{d['image'][1]}"
    lines.append(_machine_line(p["machine"]))
    f = p["flops"]
    if f is None:
        lines += ["", *p["notes"]]
        return "\n".join(lines)
    if f["tokens"] is not None:
        lines += ["", f"FLOPs per sample at T = {f['tokens']} tokens (the mean padded length; formulas in T, the "
                      "tokens of a sample)"]  # fmt: skip
    else:
        lines += ["", "FLOPs per sample at this image size (formulas: output positions × channels × kernel)"]
    w = max(len(r["component"]) for r in f["breakdown"] + [{"component": "component"}])
    head = f"{'component':<{w}}  {'train fwd':>10}  {'train bwd':>10}  {'eval fwd':>10}  formula"
    lines += [head, "-" * len(head)]
    for r in f["breakdown"]:
        cells = [flops_text(r[k]) if r[k] else "0" for k in ("train_fwd", "train_bwd", "eval_fwd")]
        pieces = _wrap(r["formula"], 70) if r["formula"] else [""]
        extra = f"  (+ {flops_text(r['per_step'])} per step)" if r["per_step"] else ""
        lines.append(
            f"{r['component']:<{w}}  {cells[0]:>10}  {cells[1]:>10}  {cells[2]:>10}  {pieces[0]}{extra}"
        )
        lines += [" " * (w + 38) + piece for piece in pieces[1:]]
    if f["per_sample_formula"]:
        pf = f["per_sample_formula"]
        lines.append(f"per training sample: forward {pf['forward']}, backward {pf['backward']} FLOPs"
                     + (f", + {pf['per_step']} per step" if pf["per_step"] != "0" else ""))  # fmt: skip
    if f["cut_block"] is not None:
        lines.append(
            f"frozen prefix: blocks 0..{f['cut_block'] - 1} of {f['blocks']} run once per split (cached)"
        )
    lines.append(f"run: {flops_text(f['total'])} (training {flops_text(f['train'])}, frozen-prefix capture "
                 f"{flops_text(f['prefix_capture'])}, evaluation {flops_text(f['eval'])}); "
                 f"{flops_text(f['train_per_sample'])} per training sample")  # fmt: skip
    t, m = p["time"], p["memory"]
    label = "ESTIMATE" if t["estimate"] else "predicted"
    time = f"time ({label}): train {seconds_text(t['train_s'])}"
    if t["capture_train_s"]:
        time += f" (steps {seconds_text(t['steps_s'])}, capturing the frozen prefix {seconds_text(t['capture_train_s'])})"
    time += f", eval {seconds_text(t['eval_s'])}"
    if t["capture_eval_s"]:
        time += f" (capturing the frozen prefix {seconds_text(t['capture_eval_s'])})"
    lines += ["", time]
    parts = ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in m["parts"].items() if v >= 0.5)
    lines.append(f"memory (predicted): peak {m['peak_mb']:,.0f} MiB above the process's level ({parts})")
    lines += [f"note: {n}" for n in p["notes"]]
    return "\n".join(lines)


def grid_text(g: dict) -> str:
    lines = [_machine_line(g["machine"]), ""]
    head = f"{'#':>3}  {'model':<26} {'dataset':<20} {'method':<24} {'seed':>4}  {'FLOPs':>12}  {'train':>9}  " \
           f"{'eval':>9}  {'peak MiB':>9}"  # fmt: skip
    lines += [head, "-" * len(head)]
    for i, p in enumerate(g["runs"], 1):
        model = Path(p["model"]).name[:26]
        if p["flops"] is None:
            lines.append(f"{i:>3}  {model:<26} {p['dataset'][:20]:<20} {p['label'][:24]:<24} {p['seed']:>4}  "
                         f"{p['notes'][-1]}")  # fmt: skip
            continue
        t = p["time"]
        lines.append(f"{i:>3}  {model:<26} {p['dataset'][:20]:<20} {p['label'][:24]:<24} {p['seed']:>4}  "
                     f"{flops_text(p['flops']['total']):>12}  {seconds_text(t['train_s']):>9}  "
                     f"{seconds_text(t['eval_s']):>9}  {p['memory']['peak_mb']:>9,.0f}")  # fmt: skip
    tot = g["total"]
    lines.append("-" * len(head))
    runs = f"{tot['runs']} runs ({tot['predicted']} predicted)"
    lines.append(f"{'':>3}  {'total':<26} {runs:<45}"
                 f"{flops_text(tot['flops']):>12}  {seconds_text(tot['train_s']):>9}  {seconds_text(tot['eval_s']):>9}"
                 f"  {tot['peak_mb'] or 0:>9,.0f}")  # fmt: skip
    if g["machine"].get("accelerator"):
        lines.append("times are ESTIMATES from the accelerator's datasheet peak, not measurements")
    lines.append("peak MiB: each run's own peak above the process's level (the total line: the largest)")
    return "\n".join(lines)
