"""Run settings as one dataclass whose fields document themselves; YAML files and CLI flags fill it, `validate` checks it.

Used by the CLI (`--help` comes from the field metadata), `peftlab.run.run_experiment` and `peftlab compare` suites.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from peftlab.errors import BadInput

TASKS = ("text-classification", "image-classification", "vqa")
LORA_BIAS = ("none", "all", "lora_only")


def _f(default: Any, help: str, flag: str | None = None, **kw) -> Any:
    """A dataclass field with its CLI help (and optional custom flag) attached."""
    meta = {"help": help}
    if flag:
        meta["flag"] = flag
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class RunConfig:
    # what to run
    model: str = _f("", "model: a packaged name (peftlab ls models), a local HF folder, or a hub id")
    dataset: str = _f(
        "", "dataset: a packaged name (peftlab ls datasets), a local file/folder, or a hub id[:config]"
    )
    method: str = _f("lora", "method: baseline | head | last-layer | lora | full | ... (peftlab ls methods)")
    task: str | None = _f(
        None, "task: text-classification | image-classification | vqa (inferred from the dataset)"
    )
    seed: int = _f(0, "training seed: head initialisation, shuffling, dropout")
    split_seed: int = _f(
        0, "data seed: train/eval split and subsets (kept fixed so every method and seed sees the same data)"
    )
    # training
    epochs: float = _f(3.0, "training epochs (fractions allowed: 0.5 = half an epoch)")
    lr: float | None = _f(
        None,
        "peak learning rate (default depends on the method: full 5e-5, last-layer 2e-4, lora 5e-4, head 2e-3)",
    )
    batch_size: int = _f(32, "training batch size (samples per optimiser step)")
    eval_batch_size: int = _f(64, "evaluation batch size")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and norms)")
    warmup_ratio: float = _f(0.1, "share of optimiser steps spent in linear warm-up, then linear decay to 0")
    max_grad_norm: float = _f(1.0, "gradient clipping by global L2 norm (0 = off)")
    max_train_samples: int | None = _f(None, "stratified training subset size (default: all)")
    max_eval_samples: int | None = _f(None, "stratified evaluation subset size (default: all)")
    max_length: int = _f(128, "text: truncate token sequences to this length (batches pad to their longest)")
    image_size: int | None = _f(
        None, "image: resize/crop side in pixels (default: the model's image processor)"
    )
    pooling: str = _f(
        "auto",
        "text: auto | mean | cls (auto = mean for sentence-transformers models, else the model's head)",
    )
    # data columns
    text_column: str | None = _f(
        None, "local/hub data: the text column (default: text, sentence, tweet, ...)"
    )
    label_column: str | None = _f(
        None, "local/hub data: the label column (default: label, labels, class, ...)"
    )
    image_column: str | None = _f(None, "local/hub data: the image column (default: image, img, ...)")
    eval_split: str | None = _f(
        None, "hub data: the split to evaluate on (default: test, else validation, else a split)"
    )
    # LoRA knobs (HF PEFT LoraConfig)
    lora_r: int = _f(8, "LoRA rank r")
    lora_alpha: float = _f(
        16.0, "LoRA alpha (scaling = alpha / r, or alpha / sqrt(r) with --lora-use-rslora)"
    )
    lora_dropout: float = _f(0.1, "dropout on the LoRA branch input, in [0, 1)")
    lora_bias: str = _f("none", "LoRA bias: none | all | lora_only")
    lora_target: list[str] | None = _f(
        None,
        "LoRA target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out or module names",
    )
    lora_modules_to_save: list[str] | None = _f(
        None,
        "modules trained and saved in full beside LoRA, comma-separated (default: the classification head)",
    )
    lora_use_rslora: bool = _f(False, "rank-stabilised LoRA scaling alpha / sqrt(r)")
    lora_use_dora: bool = _f(False, "weight-decomposed LoRA (DoRA)")
    # VQA: a small head over frozen image + question embeddings
    image_encoder: str | None = _f(
        None, "vqa: image model whose pooled output embeds the image (e.g. mobilenet-v2)"
    )
    text_encoder: str | None = _f(None, "vqa: sentence encoder for the question (e.g. minilm-l6)")
    encoder: str | None = _f(
        None, "vqa: one CLIP-style model supplying both embeddings (e.g. openai/clip-vit-base-patch32)"
    )
    fusion: str = _f("concat", "vqa: how the two embeddings meet: concat | product | concat-product")
    hidden: int = _f(512, "vqa: width of the Linear+ReLU layer between fused embedding and answers")
    dropout: float = _f(0.0, "vqa: dropout after the hidden layer")
    # where results go
    out: str = _f("peftlab-runs", "output folder: one sub-folder per run (record.json, model or adapter)")
    store: str | None = _f(None, "SQLite results store (default: OUT/peftlab.db)")
    save_model: bool = _f(True, "save the trained model / adapter under the run folder")
    cache_budget_mb: float = _f(
        2048.0, "memory for cached frozen-prefix activations before spilling to disk (MiB)"
    )
    threads: int | None = _f(None, "torch intra-op threads (default: physical cores)")

    def resolved_store(self) -> str:
        return self.store or str(Path(self.out) / "peftlab.db")

    def identity(self) -> dict:
        """The settings that decide a run's result (not where it is written): hashed for `compare --resume`."""
        d = dataclasses.asdict(self)
        for k in ("out", "store", "save_model", "threads", "cache_budget_mb"):
            d.pop(k, None)
        return d

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


FIELDS = {f.name: f for f in fields(RunConfig)}


def flag_of(name: str) -> str:
    return FIELDS[name].metadata.get("flag") or "--" + name.replace("_", "-")


def _bad(name: str, value: Any, why: str) -> BadInput:
    return BadInput(f"{flag_of(name)} {value!r}: {why}")


def coerce(name: str, value: Any) -> Any:
    """Turn a YAML/CLI value into the field's type, with a message naming the flag when it cannot be."""
    if name not in FIELDS:
        close = [k for k in FIELDS if k.startswith(name[:4])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise BadInput(f"unknown setting {name!r}{hint}: see `peftlab run --help` for the settings")
    if value is None:
        return None
    typ = str(FIELDS[name].type)
    try:
        if typ.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if typ.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if typ.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if typ.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise _bad(name, value, f"expected {typ.replace(' | None', '')}") from None


def from_dict(d: dict) -> RunConfig:
    """Build a RunConfig from a mapping with dashed or underscored keys; None values keep the default."""
    cfg = RunConfig()
    for k, v in d.items():
        key = k.replace("-", "_")
        if v is None:
            continue
        setattr(cfg, key, coerce(key, v))
    return cfg


def load_yaml(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--config {path}: file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise BadInput(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInput(f"--config {path}: expected a mapping of settings at the top level")
    return data


def is_vqa_dataset(name: str) -> bool:
    try:
        from peftlab.data.vqa import VQA_DATASETS
    except ImportError:
        return False
    return name in VQA_DATASETS


def validate(cfg: RunConfig) -> RunConfig:
    """Reject settings that cannot work, naming the flag and the value; returns cfg for chaining."""
    from peftlab.methods import REGISTRY

    if cfg.task is None and (
        cfg.image_encoder or cfg.text_encoder or cfg.encoder or is_vqa_dataset(cfg.dataset)
    ):
        cfg.task = "vqa"  # encoder flags or a VQA dataset name say what the task is
    if not cfg.model and cfg.task != "vqa":
        raise BadInput("--model is required: a packaged name (peftlab ls models), a local folder or a hub id")
    if not cfg.dataset:
        raise BadInput(
            "--dataset is required: a packaged name (peftlab ls datasets), a local file/folder or a hub id"
        )
    if cfg.task is not None and cfg.task not in TASKS:
        raise _bad("task", cfg.task, f"expected one of {', '.join(TASKS)}")
    if cfg.task != "vqa" and cfg.method not in REGISTRY:
        raise _bad("method", cfg.method, f"unknown method; choose from {', '.join(REGISTRY)}")

    def positive(name: str, allow_none: bool = False) -> None:
        v = getattr(cfg, name)
        if v is None and allow_none:
            return
        if v is None or not math.isfinite(v) or v <= 0:
            raise _bad(name, v, "must be a positive number")

    positive("epochs")
    positive("lr", allow_none=True)
    for name in ("batch_size", "eval_batch_size", "max_length", "lora_r"):
        positive(name)
    positive("max_train_samples", allow_none=True)
    positive("max_eval_samples", allow_none=True)
    positive("image_size", allow_none=True)
    positive("lora_alpha")
    positive("threads", allow_none=True)
    if cfg.epochs > 1000:
        raise _bad("epochs", cfg.epochs, "more than 1000 epochs is almost certainly a typo")
    if cfg.lr is not None and cfg.lr >= 1:
        raise _bad("lr", cfg.lr, "a learning rate >= 1 diverges; typical values are 1e-5 .. 1e-2")
    if not 0 <= cfg.lora_dropout < 1:
        raise _bad("lora_dropout", cfg.lora_dropout, "must be in [0, 1)")
    if not 0 <= cfg.warmup_ratio < 1:
        raise _bad("warmup_ratio", cfg.warmup_ratio, "must be in [0, 1)")
    if cfg.weight_decay < 0 or cfg.max_grad_norm < 0:
        raise BadInput("--weight-decay and --max-grad-norm must be >= 0")
    if cfg.lora_bias not in LORA_BIAS:
        raise _bad("lora_bias", cfg.lora_bias, f"expected one of {', '.join(LORA_BIAS)}")
    if cfg.pooling not in ("auto", "mean", "cls"):
        raise _bad("pooling", cfg.pooling, "expected auto, mean or cls")
    if cfg.lora_target is not None and not cfg.lora_target:
        raise _bad("lora_target", "", "name at least one module or alias (query,value)")
    if cfg.cache_budget_mb < 0:
        raise _bad("cache_budget_mb", cfg.cache_budget_mb, "must be >= 0")
    return cfg
