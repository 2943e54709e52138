"""Text and image classification: load data and model, apply the method, evaluate, train, evaluate, save.

`run(cfg, record, memo=..., progress=...)` is the entry point for both tasks (registered twice in tasks/__init__.py);
`peftlab.run.run_experiment` owns the record's life (ids, store, failure and Ctrl-C handling). Metrics come from the
test split; `validation_inputs(...)` hands the validation split, encoded on first request, to callers that choose.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import set_seed

from peftlab import disk, distributed, trackers
from peftlab.config import RunConfig
from peftlab.data import ClassificationData, infer_task, load_data
from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, check_applies
from peftlab.models import load_config, load_model
from peftlab.params import compare_counts, measure, predict
from peftlab.record import Data, Memory, Metrics, Params, Predicted, Record, Time
from peftlab.train import PeakMemory, Timer, TrainStats, encode, evaluate, train
from peftlab.train.cache import (
    DropThenHead,
    head_features,
    head_features_key,
    plan_head_cut,
    plan_prefix,
    prefix_inputs,
    skip_prefix,
)
from peftlab.train.encode import train_batches
from peftlab.train.fast import fit_heads, hf_schedule


def memo_get(memo: dict, key: tuple, build):
    """Work shared across runs of one process (compare): data and encodings that do not depend on method or seed."""
    if key not in memo:
        memo[key] = build()
    return memo[key]


def _log(progress: bool):
    return (lambda m: print(f"[peftlab] {m}", file=sys.stderr, flush=True)) if progress else (lambda m: None)


def infer(cfg: RunConfig, cache: dict) -> str:
    """text-classification or image-classification, read off the dataset (cached per dataset and columns)."""
    key = (cfg.dataset, cfg.text_column, cfg.label_column, cfg.image_column)
    if key not in cache:
        cache[key] = infer_task(
            cfg.dataset,
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            image_column=cfg.image_column,
        )
    return cache[key]


def _data_key(cfg: RunConfig) -> tuple:
    return ("data", cfg.dataset, cfg.task, cfg.split_seed, cfg.max_train_samples, cfg.max_eval_samples,
            cfg.max_validation_samples, cfg.text_column, cfg.label_column, cfg.image_column,
            cfg.eval_split)  # fmt: skip


def _load(cfg: RunConfig, memo: dict) -> ClassificationData:
    data = memo_get(memo, _data_key(cfg), lambda: load_data(
        cfg.dataset, task=cfg.task, split_seed=cfg.split_seed, max_train_samples=cfg.max_train_samples,
        max_eval_samples=cfg.max_eval_samples, max_validation_samples=cfg.max_validation_samples,
        text_column=cfg.text_column, label_column=cfg.label_column, image_column=cfg.image_column,
        eval_split=cfg.eval_split))  # fmt: skip
    if cfg.task != data.task:
        raise BadInput(
            f"--task {cfg.task}: dataset {cfg.dataset!r} holds {data.task} data; drop --task or change it"
        )
    return data


def _data_section(data: ClassificationData) -> Data:
    return Data(
        train_size=len(data.train.labels),
        validation_size=len(data.validation.labels),
        test_size=len(data.eval.labels),
        eval_size=len(data.eval.labels),
        num_labels=len(data.label_names),
        label_names=data.label_names,
        source=data.source,
        notes=data.notes,
        full_sizes=data.full_sizes,
    )


@dataclass
class Inputs:
    """What training and evaluation read: encoded splits, or cached activations past the frozen prefix."""

    train: object
    eval: object
    plan: object  # train.cache.Plan or None (uncached)
    cut: dict  # {"train"|"eval": {block, entry, hit, mb, on_disk, build_s}}; {} when uncached


def _inputs(model, anat, enc_train, enc_eval, cfg: RunConfig, memo: dict, trains: bool, log) -> Inputs:
    """Frozen methods (baseline, head, last-layer) run their frozen front once per (model, data, preprocessing) and
    train/evaluate only what follows it (train/cache.py); methods that train block 0 run uncached."""
    plan = plan_prefix(model, anat, enc_eval, log=log)
    if plan is None:
        return Inputs(enc_train, enc_eval, None, {})
    cut = {}
    with Timer() as t:
        eval_in, cut["eval"] = _prefix_inputs(memo, plan, enc_eval, cfg, log)
    cut["eval"]["build_s"] = round(t.seconds, 3)
    train_in = None
    if trains:
        with Timer() as t:
            train_in, cut["train"] = _prefix_inputs(memo, plan, enc_train, cfg, log)
        cut["train"]["build_s"] = round(t.seconds, 3)
    return Inputs(train_in, eval_in, plan, cut)


def _enc_key(cfg: RunConfig, loaded) -> tuple:
    # encodings depend on the data, the model's preprocessing and its settings; the split is appended
    return ("enc", _data_key(cfg), loaded.source, cfg.max_length, cfg.image_size)


def validation_inputs(cfg: RunConfig, data: ClassificationData, loaded, memo: dict, *, plan=None, log=None):
    """The validation split as evaluate() reads it, made on the first request and then shared through `memo` (plain
    runs never ask, so never pay). `loaded` is models.load_model's result for cfg.model; with the run's prefix plan
    (train.cache.Plan, Inputs.plan), the cached activations past the frozen prefix instead, for evaluate(...,
    forward=skip_prefix(plan).logits). -> train.encode.Encoded, or CachedEncoded with a plan."""
    enc = memo_get(
        memo, _enc_key(cfg, loaded) + ("validation",), lambda: _encode(data.validation, loaded, cfg)
    )
    if plan is None:
        return enc
    cached, _ = _prefix_inputs(memo, plan, enc, cfg, log or (lambda m: None))
    return cached


def _params(model, loaded, cfg: RunConfig, num_labels: int, log) -> Params:
    measured = measure(model)
    method = REGISTRY[cfg.method]
    predicted = predict(cfg.model, cfg.task, num_labels, method, cfg.knobs, pooling=loaded.pooling)
    params = Params.from_dict(compare_counts(measured, predicted))
    if params.match is False:
        log(
            f"WARNING parameter prediction differs from the measured count: predicted "
            f"{predicted.trainable:,} trainable / {predicted.total:,} total, measured "
            f"{measured['trainable']:,} / {measured['total']:,}"
        )
    return params


def _tracked_epochs(val, cfg: RunConfig, labels: list, logits_fn):
    """--report-to: after each epoch, validation metrics to the trackers (as Trainer's eval_strategy="epoch");
    None without trackers (`val` is None), so plain runs never evaluate validation."""
    tracked = trackers.active()
    if tracked is None or val is None:
        return None

    def on_epoch(m, epoch: int) -> None:
        tracked.log_eval(evaluate(m, val, cfg.eval_batch_size, labels, forward=logits_fn), epoch)

    return on_epoch


def run(cfg: RunConfig, record: Record, *, memo: dict, progress: bool = True) -> None:
    log = _log(progress)
    method = REGISTRY[cfg.method]
    # a missing model folder or unknown id: one line before the data loads (a hub data set can be big)
    load_config(cfg.model)
    data = _load(cfg, memo)
    record.data = _data_section(data)
    labels = data.label_names
    log(f"{cfg.model} / {cfg.dataset} / {cfg.method} / seed {cfg.seed}: {len(data.train.labels)} train, "
        f"{len(data.validation.labels)} validation, {len(data.eval.labels)} test, "
        f"{len(labels)} classes")  # fmt: skip

    import peft  # noqa: F401  (library code is not the run's memory: loaded before the run is measured)

    with PeakMemory() as mem:
        set_seed(cfg.seed)  # the new head's initialisation and LoRA's A matrices depend on it
        loaded = load_model(cfg.model, data.task, labels, pooling=cfg.pooling)
        check_applies(method, loaded.anatomy, cfg.task)
        enc_key = _enc_key(cfg, loaded)
        fresh = {
            "enc": enc_key + ("train",) not in memo,
            "pre": ("pre-eval", enc_key, loaded.pooling, cfg.seed) not in memo,
        }
        enc_train = memo_get(memo, enc_key + ("train",), lambda: _encode(data.train, loaded, cfg))
        enc_eval = memo_get(memo, enc_key + ("eval",), lambda: _encode(data.eval, loaded, cfg))
        steps = _total_steps(len(enc_train), cfg)
        model = method.prepare(loaded.model, loaded.anatomy, cfg.knobs, Context(cfg.task, steps))
        _memory_format(model, cfg.task, torch.channels_last)
        record.params = _params(model, loaded, cfg, len(labels), log)
        _check_space(model, cfg)
        inputs = _inputs(model, loaded.anatomy, enc_train, enc_eval, cfg, memo, method.needs_training, log)
        tracked_val = (  # --report-to: the validation split, past the frozen prefix when cached (before skipping it)
            validation_inputs(cfg, data, loaded, memo, plan=inputs.plan, log=log)
            if trackers.active() is not None and method.needs_training and len(data.validation.labels)
            else None
        )

        with skip_prefix(inputs.plan) if inputs.plan is not None else contextlib.nullcontext() as fwd:
            logits_fn = fwd.logits if fwd is not None else None
            # Before training every method computes the same function (pretrained backbone + the seed's head; LoRA's
            # B starts at zero), so within one process the pre-training evaluation is shared per (model, data, seed).
            with Timer() as t_base:
                before = memo_get(memo, ("pre-eval", enc_key, loaded.pooling, cfg.seed),
                                  lambda: evaluate(model, inputs.eval, cfg.eval_batch_size, labels, forward=logits_fn))  # fmt: skip
            record.metrics_split = "test"  # metrics and baseline_metrics; nothing here looks at validation
            record.baseline_metrics = Metrics.from_dict(before)
            stats, t_eval = None, t_base
            if method.needs_training:
                stats = _fit(model, loaded.anatomy, inputs, cfg, memo, log, progress=progress,
                             desc=f"{cfg.method} s{cfg.seed}", fwd=fwd,
                             on_epoch=_tracked_epochs(tracked_val, cfg, labels, logits_fn))  # fmt: skip
                if method.summary is not None:
                    record.extra["method_state"] = method.summary(model)
                with Timer() as t_eval:
                    after = evaluate(model, inputs.eval, cfg.eval_batch_size, labels, forward=logits_fn)
                record.metrics = Metrics.from_dict(after)
            else:
                record.metrics = record.baseline_metrics
    record.time = _time_section(stats, t_eval.seconds, inputs.cut, cfg.lr)
    record.memory = Memory(**mem.section())
    record.predicted = _predicted(cfg, enc_train, enc_eval, len(labels), inputs.cut, fresh, memo, log)
    log(
        f"accuracy {record.metrics.accuracy:.4f} (before training {record.baseline_metrics.accuracy:.4f}), "
        f"{record.params.trainable:,} trainable params, train {record.time.train_s:.1f}s"
    )
    _memory_format(model, cfg.task, torch.contiguous_format)  # what save_pretrained and users expect
    if cfg.save_model and distributed.is_main():  # one copy of the weights, whatever the number of processes
        record.artifacts.saved = _save(model, loaded, cfg, record)


def validate(cfg: RunConfig, *, memo: dict, progress: bool = False, report=None) -> float:
    """Tuning's objective: train as `run` does, score on the validation split after every epoch (report(epoch,
    accuracy) may raise to prune) and return the last validation accuracy. The test split is never encoded here."""
    log = _log(progress)
    method = REGISTRY[cfg.method]
    data = _load(cfg, memo)
    if len(data.validation.labels) == 0:
        raise BadInput(f"--dataset {cfg.dataset}: the validation split is empty, so there is nothing to tune on; "
                       "give the data a validation split or more training examples per class")  # fmt: skip
    set_seed(cfg.seed)
    loaded = load_model(cfg.model, data.task, data.label_names, pooling=cfg.pooling)
    check_applies(method, loaded.anatomy, cfg.task)
    enc_train = memo_get(memo, _enc_key(cfg, loaded) + ("train",), lambda: _encode(data.train, loaded, cfg))
    enc_val = validation_inputs(cfg, data, loaded, memo)
    model = method.prepare(
        loaded.model, loaded.anatomy, cfg.knobs, Context(cfg.task, _total_steps(len(enc_train), cfg))
    )
    _memory_format(model, cfg.task, torch.channels_last)
    inputs = _inputs(model, loaded.anatomy, enc_train, enc_val, cfg, memo, method.needs_training, log)
    scores: list[float] = []
    with skip_prefix(inputs.plan) if inputs.plan is not None else contextlib.nullcontext() as fwd:
        logits_fn = fwd.logits if fwd is not None else None

        def on_epoch(m, epoch: int) -> None:
            scores.append(
                evaluate(m, inputs.eval, cfg.eval_batch_size, data.label_names, forward=logits_fn)["accuracy"]
            )
            if report is not None:
                report(epoch, scores[-1])

        _fit(model, loaded.anatomy, inputs, cfg, memo, log, progress=progress, desc=f"{cfg.method} trial",
             fwd=fwd, on_epoch=on_epoch)  # fmt: skip
    return scores[-1]


def _fit(model, anat, inputs: Inputs, cfg: RunConfig, memo: dict, log, *, progress: bool, desc: str, fwd,
         on_epoch=None) -> TrainStats:  # fmt: skip
    """Train `model` in place. `head` past a frozen-prefix cache trains on the head's own input features in the lean
    loop of train/fast.py when the probe proves the cut (train.cache.plan_head_cut); everything else, and `head`
    where it does not hold, runs the accelerate loop (train/loop.py). Both draw the same batches for a seed, follow
    the same schedule and report the same moving-average loss.
    fwd: skip_prefix(inputs.plan)'s CutForward when the run is cut (called inside it), else None."""
    method = REGISTRY[cfg.method]
    cut = None
    # --report-to: the accelerate loop, which logs every step to the trackers (the lean loop does not)
    # several processes (accelerate launch): the accelerate loop, which shards the batches and all-reduces gradients
    if (fwd is not None and method.name == "head" and method.after_step is None and trackers.active() is None
            and distributed.world() == 1):  # fmt: skip
        cut = plan_head_cut(model, anat, inputs.plan, fwd, inputs.eval, log)
    if cut is None:
        return train(model, inputs.train, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                     weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm,
                     progress=progress, desc=desc, forward=fwd.loss if fwd is not None else None,
                     after_step=method.after_step, on_epoch=on_epoch, precision=cfg.precision)  # fmt: skip
    # (N, F): one eval-mode pass of the cheap tail (pooling, a pooler, a last 1x1 conv) over the cached activations,
    # shared by the runs of a grid that cache the same training set
    with Timer() as t_feats:
        key = ("head-features", id(inputs.train.acts), head_features_key(inputs.plan, cut))
        feats = memo_get(memo, key, lambda: head_features(model, fwd, cut, inputs.train, cfg.eval_batch_size))
    fit = fit_heads([DropThenHead(cut)], lambda idx: (feats[idx],), inputs.train.labels, epochs=cfg.epochs,
                    lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                    warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, threads=1,
                    progress=progress, desc=desc, lr_factor=hf_schedule,
                    batches=lambda g: train_batches(inputs.train, cfg.batch_size, g, group_by_length=True),
                    on_epoch=(lambda epoch: on_epoch(model, epoch)) if on_epoch else None)  # fmt: skip
    inputs.cut["head"] = {"module": cut.name, "dropout": cut.dropout, "features": list(feats.shape),
                          "build_s": round(t_feats.seconds, 3)}  # fmt: skip
    train_s = fit.train_s + t_feats.seconds
    return TrainStats(fit.steps, fit.samples, train_s, fit.ema_loss[0], fit.samples / max(train_s, 1e-9))


def _predicted(cfg: RunConfig, enc_train, enc_eval, num_labels: int, cut: dict, fresh: dict, memo: dict, log):
    """What `peftlab plan` predicts for this run (computed after it, from what was known before it: its config, its
    encoded data, and which caches earlier runs of this process had built). Never fails the run."""
    from peftlab.plan import Builds, predict_run

    builds = Builds(train_cache=not cut.get("train", {}).get("hit", False),
                    eval_cache=not cut.get("eval", {}).get("hit", False), encodings=fresh["enc"],
                    pre_eval=fresh["pre"])  # fmt: skip
    try:
        return Predicted.from_dict(predict_run(cfg, enc_train, enc_eval, num_labels, builds, memo))
    except Exception as e:  # a prediction is a bonus: the run's own results stand without it
        log(f"WARNING no prediction for this run ({type(e).__name__}: {e})")
        return Predicted(extra={"note": f"prediction failed: {type(e).__name__}: {e}"})


def _total_steps(n_train: int, cfg: RunConfig) -> int:
    """Optimiser steps the loop will run (train/loop.py's count): ceil(ceil(N / B) × epochs)."""
    import math

    return max(1, math.ceil(math.ceil(n_train / cfg.batch_size) * cfg.epochs))


def _time_section(stats, eval_s: float, cut: dict, lr: float) -> Time:
    # train_s counts the pass that filled this run's training cache (0 when an earlier run of the grid filled it)
    cache_s = {k: v["build_s"] for k, v in cut.items()}
    train_s = stats.train_s + cache_s.get("train", 0.0) if stats else 0.0
    return Time(
        train_s=train_s,
        eval_s=eval_s + cache_s.get("eval", 0.0),
        train_samples_per_s=stats.samples / max(train_s, 1e-9) if stats else None,
        train_steps=stats.steps if stats else 0,
        final_loss=stats.final_loss if stats else None,
        lr=lr,
        extra={"prefix_cache": cut or None},
    )


def _memory_format(model, task: str, fmt: torch.memory_format) -> None:
    """CNNs train and evaluate channels-last (NHWC): oneDNN's convolutions skip a layout reorder per call, ~15-20%
    less CPU per MobileNetV2 step at 64 px; the values are the same up to float rounding."""
    if task == "image-classification" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=fmt)


def _prefix_inputs(memo: dict, plan, enc, cfg: RunConfig, log):
    return prefix_inputs(
        memo, plan, enc, budget_mb=cfg.cache_budget_mb, batch_size=cfg.eval_batch_size, log=log
    )


def _encode(split, loaded, cfg: RunConfig):
    try:
        return encode(split, loaded.processor, cfg.task, max_length=cfg.max_length, image_size=cfg.image_size)
    except (OSError, ValueError) as e:
        if cfg.task == "image-classification":
            raise BadInput(f"--dataset {cfg.dataset}: an image could not be preprocessed ({e})") from None
        raise


def _check_space(model, cfg: RunConfig) -> None:
    """Before training: room for what _save will write. An adapter folder holds the trainable tensors, a model folder
    all of them, in float32 (4 bytes each); plus 16 MiB for the tokenizer / image processor files and record.json."""
    from peft import PeftModel

    if not cfg.save_model:
        return
    tensors = (p for p in model.parameters() if p.requires_grad or not isinstance(model, PeftModel))
    need = 4 * sum(p.numel() for p in tensors) + 16 * 2**20
    disk.check_free(Path(cfg.out), need, "--out", "saving this run's model")


def _save(model, loaded, cfg: RunConfig, record: Record) -> str:
    """The trained model as a folder transformers and peft load without peftlab (artifacts/portable.py)."""
    from peftlab.artifacts import portable

    return portable.save(model, loaded, cfg, record.run_id).folder
