"""`peftlab plan`: a run's FLOPs, time and peak memory, predicted before it starts from its config, its data's sizes and
lengths, and a short calibration of this machine (or a named accelerator's specs).

`plan_run(cfg)` -> the public JSON shape {flops: {train_per_sample, eval_per_sample, total}, time: {train_s, eval_s},
memory: {peak_mb}, machine, ...}; `plan_grid(runs)` -> a list of those and their totals, knowing which runs of a grid
share a frozen-prefix cache; every run record stores `predicted_for_record(...)` beside what it measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from peftlab.errors import BadInput
from peftlab.flops import FlopPlan, batch_flops, predict_flops, totals
from peftlab.plan.data import Shapes, eval_steps, shapes_from_config, shapes_from_encodings, train_steps

__all__ = ["Builds", "Shapes", "plan_grid", "plan_run", "shapes_from_encodings"]


@dataclass
class Builds:
    """What this run builds itself rather than finding it built by an earlier run of its grid (compare shares them)."""

    train_cache: bool = True  # the capture pass over the training split's frozen prefix
    eval_cache: bool = True
    encodings: bool = True  # tokenizing / preprocessing the splits
    pre_eval: bool = True  # the evaluation before training (shared per model, data and seed)


@dataclass
class Context:
    """What a plan is made against: the machine's calibration, or an accelerator's specs."""

    calibration: object | None = None  # plan.timing.Calibration
    accelerator: object | None = None  # plan.accelerators.Accelerator
    notes: list[str] = field(default_factory=list)


def _mean_tokens(steps) -> float:
    samples = sum(b for b, _ in steps)
    return sum(b * t for b, t in steps) / samples if samples else 0.0


def _seconds(ctx: Context, g, steps, *, params: int = 0, text: bool, image=None, cached: int = 0,
             kind: str | None = None) -> float:  # fmt: skip
    """Seconds of g over these (batch, tokens) steps: each distinct shape costed once, times its count."""
    if not steps or g is None:
        return 0.0
    shapes = Counter(steps)
    if ctx.accelerator is not None:
        from peftlab.plan.accelerators import estimate_seconds

        return sum(n * estimate_seconds(ctx.accelerator, g, b, t, params) for (b, t), n in shapes.items())
    from peftlab.plan.timing import step_seconds

    cal = ctx.calibration
    return sum(n * step_seconds(cal, g, b, t, optimizer_params=params, text=text, image=image, cached=cached,
                                kind=kind)["total"] for (b, t), n in shapes.items())  # fmt: skip


def _flops(g, steps) -> int:
    return sum(n * batch_flops(g, b, t) for (b, t), n in Counter(steps).items()) if g is not None else 0


def breakdown(fp: FlopPlan, tokens: int) -> list[dict]:
    """Per component: forward and backward FLOPs per training sample at `tokens` tokens, the evaluation forward, the
    per-step products (an adapter building its weight), and the forward as a formula (T: tokens per sample)."""
    from peftlab.flops.graph import Poly
    from peftlab.params.render import render

    rows: dict[str, dict] = {}

    def row(component: str) -> dict:
        return rows.setdefault(component, {"component": component, "train_fwd": 0, "train_bwd": 0, "eval_fwd": 0,
                                           "per_step": 0, "items": []})  # fmt: skip

    for op in fp.train.ops:
        r = row(op.component)
        if op.per_step:
            r["per_step"] += int((op.fwd + op.bwd).at(tokens))
        else:
            r["train_fwd"] += int(op.fwd.at(tokens))
            r["train_bwd"] += int(op.bwd.at(tokens))
    for op in fp.eval.ops:
        if not op.per_step:
            row(op.component)["eval_fwd"] += int(op.fwd.at(tokens))
    shown = fp.train if fp.train.ops else fp.eval
    for op in shown.ops:
        if not op.per_step and op.fwd != Poly():
            row(op.component)["items"].append((op.block, op.expr, int(op.fwd.at(tokens))))
    for r in rows.values():
        r["formula"] = render(r.pop("items"))
    return list(rows.values())


def _resident(pred, fp: FlopPlan) -> int:
    """Parameters a run reads into memory: every one but a word-embedding table that does not train (the checkpoint is
    memory-mapped, and a lookup touches only the rows of the tokens the data holds)."""
    from peftlab.flops.step import trained_sets

    weights, _ = trained_sets(fp.arch, pred.plan)
    words = sum(x.params for x in fp.arch.layers if x.kind == "embedding" and x.what == "words"
                and x.name not in weights)  # fmt: skip
    return max((pred.total or 0) - words, 0)


def _prefix_bytes(fp: FlopPlan) -> float:
    """float32 bytes of the weights train/cache.py's prefix_keys hashes: what runs before the blocks, and the blocks
    the capture pass runs (fp.capture_stop: to the last block when the cut is at the last block or the head)."""
    head = set(fp.arch.head)
    before = [x for x in fp.arch.layers if x.block is None and not any(x.name.startswith(h) for h in head)]
    blocks = [x for x in fp.arch.layers if x.block is not None and x.block < fp.capture_stop]
    return 4.0 * sum(x.params for x in before + blocks)


def _lean_head(ctx: Context, cfg, method, fp: FlopPlan) -> tuple[int, int] | None:
    """(features, labels) of the classifier when the run trains `head` in the lean loop (tasks/classification.py
    `_fit`: a cached prefix, no trackers, one process, a calibrated machine), else None."""
    if ctx.calibration is None or fp.cut is None or method.name != "head" or method.after_step is not None:
        return None
    # trackers train through the accelerate loop; a table stored before the lean loop was timed has no timing for it
    stored_without = ctx.calibration.stored and not any(
        k.startswith("fast_head|") for k in ctx.calibration.table
    )
    if cfg.report_to or stored_without:
        return None
    linear = [op for op in fp.train.ops if op.kind == "linear" and op.grads[1] and not op.per_step]
    if not linear:
        return None
    _, features, k = linear[-1].shape  # the classifier: (rows, in, out)
    return int(features), int(k)


def _cached_width(fp: FlopPlan) -> int:
    """Values the cut model reads from the cache per token (text) or per image; 0 when uncached."""
    g = fp.capture
    if g is None or not g.elementwise:
        return 0
    per = g.elementwise[-1][1]  # the last captured block's output, per sample
    return int(per.c[1]) if len(per.c) > 1 else int(per.at(0))


def _capture_bytes(fp: FlopPlan, shapes: Shapes, n: int, lengths) -> float:
    """Bytes of the cached block inputs one capture pass keeps for n samples (1 point, or 2 for head / last-layer)."""
    g = fp.capture
    if g is None or not g.elementwise or not n:
        return 0.0
    per = g.elementwise[-1][1]  # the last block's output, per sample (text: per token × T)
    points = 2 if fp.capture_stop == len(fp.arch.blocks) and len(fp.arch.blocks) > 1 else 1
    if shapes.text:
        tokens = float(sum(lengths)) if lengths is not None else float(n * (shapes.tokens or 0))
        width = per.c[1] if len(per.c) > 1 else per.at(1)
        return 4.0 * tokens * width * points
    return 4.0 * n * per.at(0) * points


def _data_bytes(shapes: Shapes) -> float:
    """The encoded splits a run builds: token ids (and token types) as int64 plus one tensor per text; pixels float32."""
    n = shapes.n_train + (shapes.n_eval or 0)
    if shapes.text:
        tokens = sum(int(x.sum()) for x in (shapes.train_lengths, shapes.eval_lengths) if x is not None)
        tokens = tokens or n * (shapes.tokens or 0)
        return 16.0 * tokens + 2 * 200.0 * n
    h, w = shapes.image
    return 4.0 * 3 * h * w * n


def plan_run(cfg, *, shapes: Shapes | None = None, train_size: int | None = None, eval_size: int | None = None,
             seq_length: int | None = None, num_labels: int | None = None, ctx: Context | None = None,
             builds: Builds | None = None) -> dict:  # fmt: skip
    """The plan of one run (cfg: config.load's RunConfig): the public JSON shape with breakdowns and notes."""
    from peftlab.methods import REGISTRY
    from peftlab.models import load_config
    from peftlab.models.loading import resolve_pooling
    from peftlab.params import predict_from_config
    from peftlab.params.families import family_name
    from peftlab.params.plan import virtual_anatomy
    from peftlab.plan import memory

    if cfg.task not in ("text-classification", "image-classification"):
        raise BadInput(f"--task {cfg.task}: plan covers text-classification and image-classification runs")
    method = REGISTRY[cfg.method]
    ctx = ctx or default_context()
    builds = builds or Builds()
    model_config = load_config(cfg.model)
    pooling = resolve_pooling(cfg.model, cfg.pooling, cfg.task, model_config)
    shapes = shapes or shapes_from_config(cfg, model_config, train_size=train_size, eval_size=eval_size,
                                          seq_length=seq_length)  # fmt: skip
    labels = num_labels or shapes.labels or 2
    pred = predict_from_config(model_config, cfg.task, labels, method, cfg.knobs, pooling=pooling)
    anat = virtual_anatomy(pred.arch) if pred.arch is not None else None
    device = "cuda" if ctx.accelerator is not None else _device()
    fp = predict_flops(pred.arch, pred.plan, method, cfg.knobs, cfg.task, anat, image=shapes.image, device=device,
                       family=family_name(model_config))  # fmt: skip
    steps = train_steps(shapes, cfg) if method.needs_training else []
    evals = eval_steps(shapes.eval_lengths, shapes.n_eval, cfg.eval_batch_size, shapes.tokens)
    out = {
        "model": cfg.model, "dataset": cfg.dataset, "method": cfg.method, "label": cfg.label or _label(cfg),
        "task": cfg.task, "seed": cfg.seed,
        "data": {"train_size": shapes.n_train, "eval_size": shapes.n_eval, "image": shapes.image,
                 "mean_tokens": round(_mean_tokens(steps or evals), 1) if shapes.text else None,
                 "optimizer_steps": len(steps), "source": shapes.source},
        "params": {"trainable": pred.trainable, "total": pred.total},
        "machine": _machine(ctx),
        "notes": list(shapes.notes),
    }  # fmt: skip
    if not fp.ok:
        out.update(flops=None, time=None, memory=None)
        out["notes"].append(f"{fp.note}: no FLOP, time or memory prediction; the run itself still works")
        return out
    cached = fp.cut is not None
    cap_train = eval_steps(shapes.train_lengths, shapes.n_train, cfg.eval_batch_size, shapes.tokens) \
        if cached and steps and builds.train_cache else []  # fmt: skip
    cap_eval = eval_steps(shapes.eval_lengths, shapes.n_eval, cfg.eval_batch_size, shapes.tokens) \
        if cached and builds.eval_cache else []  # fmt: skip
    f_train, f_eval = _flops(fp.train, steps), _flops(fp.eval, evals)
    f_cap = _flops(fp.capture, cap_train) + _flops(fp.capture, cap_eval)
    samples = sum(b for b, _ in steps)
    t_bar = round(_mean_tokens(steps or evals)) if shapes.text else 0
    fs, bs, fp_, bp = totals(fp.train)
    out["flops"] = {
        "train_per_sample": int(round(f_train / samples)) if samples else 0,
        "eval_per_sample": int(round(f_eval / shapes.n_eval)) if shapes.n_eval else None,
        "total": int(f_train + f_eval + f_cap),
        "train": int(f_train), "eval": int(f_eval), "prefix_capture": int(f_cap),
        "per_sample_formula": {"forward": str(fs), "backward": str(bs), "per_step": str(fp_ + bp)} if shapes.text
        else None,
        "tokens": t_bar if shapes.text else None,
        "cut_block": fp.cut, "blocks": len(fp.arch.blocks),
        "breakdown": breakdown(fp, t_bar),
    }  # fmt: skip
    trainable = pred.trainable or 0
    if shapes.n_eval is None:
        evals = []
    kw = {"text": shapes.text, "image": shapes.image, "kind": fp.arch.kind}
    width = _cached_width(fp)  # values per token (text) or per image the cut model reads from the cache
    fixed_train, _, fixed_eval, _ = ctx.calibration.fixed() if ctx.calibration is not None else (0.0,) * 4
    lean = _lean_head(ctx, cfg, method, fp) if steps else None
    if lean is not None:  # head past the cache trains in train/fast.py's lean loop, not the accelerate loop
        from peftlab.plan.timing import bucket

        set_up, per_step = ctx.calibration.fast_head(bucket(cfg.batch_size), *lean)
        # + its input features: one evaluation-mode pass of the cut model over the cached training set, made by the
        # run that builds the cache (later runs of the grid reuse them)
        t_train = set_up + len(steps) * per_step + _seconds(ctx, fp.eval, cap_train, cached=width, **kw)
    else:
        t_train = _seconds(ctx, fp.train, steps, params=trainable, cached=width, **kw)
        t_train += fixed_train if steps else 0.0
    t_cap_train = _seconds(ctx, fp.capture, cap_train, **kw)
    t_eval = _seconds(ctx, fp.eval, evals, cached=width, **kw)
    t_cap_eval = _seconds(ctx, fp.capture, cap_eval, **kw)
    t_eval += fixed_eval if evals else 0.0
    # the cache's key: the frozen prefix's weights hashed, once per run
    if cached and ctx.calibration is not None:
        t_key = ctx.calibration.hashing(_prefix_bytes(fp))
        t_eval, t_train = (t_eval + t_key, t_train) if evals else (t_eval, t_train + t_key)
    out["time"] = {
        "train_s": round(t_train + t_cap_train, 3) if method.needs_training else 0.0,
        "eval_s": round(t_eval + t_cap_eval, 3) if shapes.n_eval is not None else None,
        "steps_s": round(t_train, 3), "capture_train_s": round(t_cap_train, 3), "capture_eval_s": round(t_cap_eval, 3),
        "estimate": ctx.accelerator is not None,
    }  # fmt: skip
    data_bytes = _data_bytes(shapes) if builds.encodings else 0.0
    cache_bytes = (_capture_bytes(fp, shapes, shapes.n_train, shapes.train_lengths) if cap_train else 0.0) + (
        _capture_bytes(fp, shapes, shapes.n_eval or 0, shapes.eval_lengths) if cap_eval else 0.0
    )
    budget = cfg.cache_budget_mb * 2**20  # beyond it the cache is memory-mapped files (train/cache.py)
    if cache_bytes > budget:
        out["notes"].append(f"frozen-prefix cache {cache_bytes / 2**20:,.0f} MiB: beyond --cache-budget-mb "
                            f"{cfg.cache_budget_mb:,.0f} it goes to memory-mapped files")  # fmt: skip
        cache_bytes = budget
    parts = memory.parts(kind=fp.arch.kind, resident_params=_resident(pred, fp), trainable=trainable,
                         train_graph=fp.train,
                         eval_graph=fp.eval, train_steps=steps, eval_steps=evals, data_bytes=data_bytes,
                         cache_bytes=cache_bytes, training=method.needs_training, capture_graph=fp.capture,
                         capture_steps=cap_train + cap_eval)  # fmt: skip
    out["memory"] = {
        "peak_mb": round(memory.peak(parts), 1),
        "parts": {k: round(v, 1) for k, v in parts.items()},
    }
    out["notes"] += fp.notes
    if cached:
        out["notes"].append(
            f"frozen prefix cached: blocks 0..{fp.cut - 1} run once per split, the step runs the rest"
        )
    return out


def _label(cfg) -> str:
    from peftlab.config import knob_label

    return knob_label(cfg.to_dict())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _machine(ctx: Context) -> dict:
    if ctx.accelerator is not None:
        a = ctx.accelerator
        return {"accelerator": a.name, "estimate": True, "fp32_tflops": a.fp32_tflops,
                "bandwidth_gbs": a.bandwidth_gbs, "source": a.source}  # fmt: skip
    cal = ctx.calibration
    where = "stored" if cal.stored else "this machine"
    return {**cal.machine, "calibration": where, "estimate": False}


def default_context(accelerator: str | None = None, calibration: str | None = None,
                    recalibrate: bool = False) -> Context:  # fmt: skip
    """This machine's calibration (measured now where the cache lacks a shape), a stored one (`--calibration FILE`:
    made on another machine, nothing measured), or an accelerator's specs."""
    if accelerator:
        from peftlab.plan.accelerators import accelerator as find

        return Context(accelerator=find(accelerator))
    from peftlab.plan.timing import Calibration

    if calibration:
        return Context(calibration=Calibration(path=calibration, stored=True))
    return Context(calibration=Calibration(fresh=recalibrate))


def plan_grid(runs, *, ctx: Context | None = None, train_size=None, eval_size=None, seq_length=None,
              num_labels=None) -> dict:  # fmt: skip
    """Every run of a grid in order, knowing what earlier runs leave behind (encodings per model and data, frozen
    prefix caches, the evaluation before training per seed), and the totals."""
    ctx = ctx or default_context()
    seen: set = set()
    shapes_memo: dict = {}
    plans = []
    for cfg in runs:
        if cfg.task not in ("text-classification", "image-classification"):
            plans.append({"model": cfg.model or cfg.encoder or cfg.image_encoder or "vqa", "dataset": cfg.dataset,
                          "method": cfg.method, "label": cfg.label or _label(cfg), "task": cfg.task, "seed": cfg.seed,
                          "flops": None, "time": None, "memory": None,
                          "notes": [f"no plan for {cfg.task} runs yet: the run itself still works"]})  # fmt: skip
            continue
        data_key = (cfg.model, cfg.dataset, cfg.split_seed, cfg.max_train_samples, cfg.max_eval_samples,
                    cfg.max_length, cfg.image_size, cfg.text_column, cfg.label_column, cfg.image_column)  # fmt: skip
        if data_key not in shapes_memo:
            from peftlab.models import load_config

            shapes_memo[data_key] = shapes_from_config(cfg, load_config(cfg.model), train_size=train_size,
                                                       eval_size=eval_size, seq_length=seq_length)  # fmt: skip
        builds = Builds(
            train_cache=(data_key, "train") not in seen,
            eval_cache=(data_key, "eval") not in seen,
            encodings=(data_key, "enc") not in seen,
            pre_eval=(data_key, "pre", cfg.seed) not in seen,
        )
        p = plan_run(cfg, shapes=shapes_memo[data_key], ctx=ctx, builds=builds, num_labels=num_labels)
        seen.add((data_key, "enc"))
        seen.add((data_key, "pre", cfg.seed))
        if p["flops"] and p["flops"]["cut_block"] is not None:
            seen.add((data_key, "eval"))
            if p["time"]["train_s"]:
                seen.add((data_key, "train"))
        plans.append(p)
    if ctx.calibration is not None:
        ctx.calibration.save()
    ok = [p for p in plans if p["flops"]]
    total = {
        "runs": len(plans),
        "predicted": len(ok),
        "flops": sum(p["flops"]["total"] for p in ok),
        "train_s": round(sum(p["time"]["train_s"] for p in ok), 1),
        "eval_s": round(sum(p["time"]["eval_s"] or 0 for p in ok), 1),
        "peak_mb": max((p["memory"]["peak_mb"] for p in ok), default=None),
    }
    return {"runs": plans, "total": total, "machine": _machine(ctx)}


def predict_run(cfg, enc_train, enc_eval, num_labels: int, builds: Builds, memo: dict) -> dict:
    """Inside a run: its plan from its own encodings, with what it found built, as the record's `predicted` fields.
    The calibration is shared by the runs of one process (memo) and saved for later ones."""
    ctx = memo.setdefault(("plan-context",), None) or default_context()
    memo[("plan-context",)] = ctx
    shapes = shapes_from_encodings(cfg, enc_train, enc_eval)
    plan = plan_run(cfg, shapes=shapes, num_labels=num_labels, ctx=ctx, builds=builds)
    if ctx.calibration is not None:
        ctx.calibration.save()
    return predicted_for_record(plan)


def predicted_for_record(plan: dict) -> dict:
    """The record's `predicted` section: {train_s, eval_s, peak_mb, flops} (None where there is no formula)."""
    if not plan.get("flops"):
        return {"note": plan["notes"][-1]}
    return {
        "train_s": plan["time"]["train_s"],
        "eval_s": plan["time"]["eval_s"],
        "peak_mb": plan["memory"]["peak_mb"],
        "flops": plan["flops"]["total"],
        "flops_train_per_sample": plan["flops"]["train_per_sample"],
        "machine": "estimate" if plan["time"]["estimate"] else "calibrated",
    }
