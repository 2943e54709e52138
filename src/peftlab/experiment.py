"""Text and image classification runs: load data and model, apply the method, evaluate, train, evaluate, save.

Called by `peftlab.run.run_experiment`, which owns the record's life (ids, store, failure and Ctrl-C handling).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from transformers import set_seed

from peftlab.config import RunConfig
from peftlab.data import load_data
from peftlab.errors import BadInput
from peftlab.methods import REGISTRY
from peftlab.models import load_model
from peftlab.train import PeakMemory, Timer, encode, evaluate, train
from peftlab.train.cache import plan_prefix, prefix_inputs, skip_prefix


def _memo(memo: dict, key: tuple, build):
    """Work shared across runs of one process (compare): data and encodings that do not depend on method or seed."""
    if key not in memo:
        memo[key] = build()
    return memo[key]


def run_classification(cfg: RunConfig, record: dict, *, memo: dict, progress: bool = True) -> None:
    from peftlab.params import compare_counts, measure, predict

    log = _log if progress else (lambda m: None)
    method = REGISTRY[cfg.method]
    data_key = ("data", cfg.dataset, cfg.task, cfg.split_seed, cfg.max_train_samples, cfg.max_eval_samples,
                cfg.text_column, cfg.label_column, cfg.image_column, cfg.eval_split)  # fmt: skip
    data = _memo(
        memo,
        data_key,
        lambda: load_data(
            cfg.dataset,
            task=cfg.task,
            split_seed=cfg.split_seed,
            max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples,
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            image_column=cfg.image_column,
            eval_split=cfg.eval_split,
        ),
    )
    if cfg.task is not None and cfg.task != data.task:
        raise BadInput(
            f"--task {cfg.task}: dataset {cfg.dataset!r} holds {data.task} data; drop --task or change it"
        )
    cfg.task = data.task
    record["task"] = data.task
    record["data"] = {
        "train_size": len(data.train.labels),
        "eval_size": len(data.eval.labels),
        "num_labels": len(data.label_names),
        "label_names": data.label_names,
        "source": data.source,
        "notes": data.notes,
        "full_sizes": data.full_sizes,
    }
    lr = cfg.lr if cfg.lr is not None else method.default_lr
    log(f"{cfg.model} / {cfg.dataset} / {cfg.method} / seed {cfg.seed}: {len(data.train.labels)} train, "
        f"{len(data.eval.labels)} eval, {len(data.label_names)} classes")  # fmt: skip

    with PeakMemory() as mem:
        set_seed(cfg.seed)  # the new head's initialisation and LoRA's A matrices depend on it
        loaded = load_model(cfg.model, data.task, data.label_names, pooling=cfg.pooling)
        enc_key = ("enc", data_key, loaded.source, cfg.max_length, cfg.image_size)
        enc_train = _memo(memo, enc_key + ("train",), lambda: _encode(data.train, loaded, data.task, cfg))
        enc_eval = _memo(memo, enc_key + ("eval",), lambda: _encode(data.eval, loaded, data.task, cfg))

        model = method.prepare(loaded.model, loaded.anatomy, cfg)
        _memory_format(model, data.task, torch.channels_last)
        measured = measure(model)
        predicted = predict(cfg.model, data.task, len(data.label_names), cfg, pooling=loaded.pooling)
        record["params"] = compare_counts(measured, predicted)
        if record["params"]["match"] is False:
            log(
                f"WARNING parameter prediction differs from the measured count: predicted "
                f"{predicted.trainable:,} trainable / {predicted.total:,} total, measured "
                f"{measured['trainable']:,} / {measured['total']:,}"
            )

        # Frozen methods (baseline, head, last-layer) run their frozen front once per (model, data, preprocessing) and
        # train/evaluate only what follows it (train/cache.py); lora and full train block 0, so they run uncached.
        plan = plan_prefix(model, loaded.anatomy, enc_eval, log=log)
        cut = {}
        if plan is not None:
            with Timer() as t_cache_eval:
                eval_in, cut["eval"] = _prefix_inputs(memo, plan, enc_eval, cfg, log)
            cut["eval"]["build_s"] = round(t_cache_eval.seconds, 3)
            if method.needs_training:
                with Timer() as t_cache_train:
                    train_in, cut["train"] = _prefix_inputs(memo, plan, enc_train, cfg, log)
                cut["train"]["build_s"] = round(t_cache_train.seconds, 3)
        else:
            eval_in, train_in = enc_eval, enc_train
        cache_s = {k: v["build_s"] for k, v in cut.items()}

        with skip_prefix(plan) if plan is not None else contextlib.nullcontext() as fwd:
            logits_fn, loss_fn = (fwd.logits, fwd.loss) if fwd is not None else (None, None)
            # Before training every method computes the same function (pretrained backbone + the seed's head; LoRA's
            # B starts at zero), so within one process the pre-training evaluation is shared per (model, data, seed).
            with Timer() as t_base:
                record["baseline_metrics"] = _memo(
                    memo,
                    ("pre-eval", enc_key, loaded.pooling, cfg.seed),
                    lambda: evaluate(
                        model, eval_in, cfg.eval_batch_size, data.label_names, forward=logits_fn
                    ),
                )
            stats = None
            if method.needs_training:
                stats = train(
                    model,
                    train_in,
                    lr=lr,
                    epochs=cfg.epochs,
                    batch_size=cfg.batch_size,
                    seed=cfg.seed,
                    weight_decay=cfg.weight_decay,
                    warmup_ratio=cfg.warmup_ratio,
                    max_grad_norm=cfg.max_grad_norm,
                    progress=progress,
                    desc=f"{cfg.method} s{cfg.seed}",
                    forward=loss_fn,
                )
                with Timer() as t_eval:
                    record["metrics"] = evaluate(
                        model, eval_in, cfg.eval_batch_size, data.label_names, forward=logits_fn
                    )
            else:
                t_eval = t_base
                record["metrics"] = record["baseline_metrics"]
    # train_s counts the pass that filled this run's training cache (0 when an earlier run of the grid filled it)
    train_s = stats.train_s + cache_s.get("train", 0.0) if stats else 0.0
    record["time"] = {
        "train_s": train_s,
        "eval_s": t_eval.seconds + cache_s.get("eval", 0.0),
        "train_samples_per_s": stats.samples / max(train_s, 1e-9) if stats else None,
        "train_steps": stats.steps if stats else 0,
        "final_loss": stats.final_loss if stats else None,
        "lr": lr,
        "prefix_cache": cut or None,  # {"train"|"eval": {block, entry, hit, mb, on_disk, build_s}}
    }
    record["memory"] = {"peak_rss_mb": round(mem.peak_mb, 1)}
    log(
        f"accuracy {record['metrics']['accuracy']:.4f} (before training {record['baseline_metrics']['accuracy']:.4f}), "
        f"{record['params']['trainable']:,} trainable params, train {record['time']['train_s']:.1f}s"
    )
    _memory_format(model, data.task, torch.contiguous_format)  # what save_pretrained and users expect
    if cfg.save_model:
        record["artifacts"]["saved"] = _save(model, loaded, cfg, record)


def _memory_format(model, task: str, fmt: torch.memory_format) -> None:
    """CNNs train and evaluate channels-last (NHWC): oneDNN's convolutions skip a layout reorder per call, ~15-20%
    less CPU per MobileNetV2 step at 64 px; the values are the same up to float rounding."""
    if task == "image-classification" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=fmt)


def _prefix_inputs(memo: dict, plan, enc, cfg: RunConfig, log):
    return prefix_inputs(
        memo, plan, enc, budget_mb=cfg.cache_budget_mb, batch_size=cfg.eval_batch_size, log=log
    )


def _encode(split, loaded, task: str, cfg: RunConfig):
    try:
        return encode(split, loaded.processor, task, max_length=cfg.max_length, image_size=cfg.image_size)
    except (OSError, ValueError) as e:
        if task == "image-classification":
            raise BadInput(f"--dataset {cfg.dataset}: an image could not be preprocessed ({e})") from None
        raise


def _save(model, loaded, cfg: RunConfig, record: dict) -> str:
    """lora: a PEFT adapter folder (LoRA weights + the trained head via modules_to_save); else a full
    save_pretrained folder with its tokenizer / image processor. Returns the folder."""
    from peft import PeftModel

    run_dir = Path(cfg.out) / record["run_id"]
    target = run_dir / ("adapter" if isinstance(model, PeftModel) else "model")
    model.save_pretrained(target)
    if loaded.processor is not None:
        loaded.processor.save_pretrained(target)
    how = {
        "base_model": cfg.model,
        "base_source": loaded.source,
        "pooling": loaded.pooling,
        "task": cfg.task,
        "label_names": record["data"]["label_names"],
        "load": (
            "PeftModel.from_pretrained(base, this_folder) on a base built like peftlab.models.load_model(base_model, task, label_names)"
            if isinstance(model, PeftModel)
            else "AutoModelFor...Classification.from_pretrained(this_folder) (import peftlab first, or trust_remote_code=True, for mean-pooled models)"
        ),
    }
    (target / "peftlab.json").write_text(json.dumps(how, indent=2))
    return str(target)


def _log(msg: str) -> None:
    import sys

    print(f"[peftlab] {msg}", file=sys.stderr, flush=True)
