"""Run settings: one frozen dataclass whose fields document themselves; YAML files and CLI flags fill it, once.

`load({"model": ..., "lora_r": 4})` -> a validated, resolved RunConfig (task inferred, method, learning rate and knob
defaults applied); `identity(config)` says which settings make an experiment (the store, --resume and the report use it).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from peftlab import trackers
from peftlab.errors import BadInput
from peftlab.methods.knobs import as_flat, changed, coerce, parse_knobs, positive


def _f(default: Any, help: str, *, check=None, choices: tuple | None = None, flag: str | None = None) -> Any:
    """A dataclass field with its CLI help, its check (value -> None or why it is wrong) and choices attached."""
    meta = {"help": help, "check": check, "choices": choices, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


def _optional(rule):
    return lambda v: None if v is None else rule(v)


def _epochs(v) -> str | None:
    if positive(v):
        return positive(v)
    return "more than 1000 epochs is almost certainly a typo" if v > 1000 else None


def _lr(v) -> str | None:
    if v is None:
        return None
    if positive(v):
        return positive(v)
    return "a learning rate >= 1 diverges; typical values are 1e-5 .. 1e-2" if v >= 1 else None


def _fraction(v) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _non_negative(v) -> str | None:
    return None if v >= 0 else "must be >= 0"


@dataclass(frozen=True)
class RunConfig:
    # what to run
    model: str = _f("", "model: a packaged name (peftlab ls models), a local HF folder, or a hub id")
    dataset: str = _f(
        "", "dataset: a packaged name (peftlab ls datasets), a local file/folder, or a hub id[:config]"
    )
    method: str | None = _f(
        None,
        "method: baseline | head | last-layer | lora | full | ... (peftlab ls methods; default: lora, vqa: head)",
    )
    task: str | None = _f(
        None, "task: text-classification | image-classification | vqa (inferred from the dataset)"
    )
    seed: int = _f(0, "training seed: head initialisation, shuffling, dropout")
    split_seed: int = _f(
        0,
        "data seed: the train/validation/test split and subsets (fixed, so every method and seed sees the same data)",
    )
    # training
    epochs: float = _f(3.0, "training epochs (fractions allowed: 0.5 = half an epoch)", check=_epochs)
    lr: float | None = _f(
        None,
        "peak learning rate (default depends on the method: full 5e-5, last-layer 2e-4, lora 5e-4, head 2e-3; "
        "vqa 1e-3 x batch size / 32)",
        check=_lr,
    )
    batch_size: int | None = _f(
        None,
        "training batch size (samples per optimiser step; default 32, vqa 64)",
        check=_optional(positive),
    )
    eval_batch_size: int = _f(64, "evaluation batch size", check=positive)
    weight_decay: float = _f(
        0.01, "AdamW weight decay (not applied to biases and norms)", check=_non_negative
    )
    warmup_ratio: float = _f(
        0.1, "share of optimiser steps spent in linear warm-up, then linear decay to 0", check=_fraction
    )
    max_grad_norm: float = _f(1.0, "gradient clipping by global L2 norm (0 = off)", check=_non_negative)
    precision: str = _f(
        "auto",
        "training precision: auto (bf16 on a GPU that has it, else fp32), fp32, bf16 or fp16 (accelerate's autocast)",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    max_train_samples: int | None = _f(
        None, "stratified training subset size (default: all)", check=_optional(positive)
    )
    max_eval_samples: int | None = _f(
        None,
        "stratified test subset size: what metrics are reported on (default: all)",
        check=_optional(positive),
    )
    max_validation_samples: int | None = _f(
        None,
        "stratified validation subset size (validation is for choosing, never reported; "
        "default: the --max-eval-samples cap, else all)",
        check=_optional(positive),
    )
    max_length: int = _f(
        128, "text: truncate token sequences to this length (batches pad to their longest)", check=positive
    )
    image_size: int | None = _f(
        None,
        "image: resize/crop side in pixels (default: the model's image processor)",
        check=_optional(positive),
    )
    pooling: str = _f(
        "auto",
        "text: auto | mean | cls (auto = mean for sentence-transformers models, else the model's head)",
        choices=("auto", "mean", "cls"),
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
    # where results go (none of these changes a result)
    label: str | None = _f(
        None, "name of this configuration in reports (default: method + knobs that differ)"
    )
    out: str = _f("peftlab-runs", "output folder: one sub-folder per run (record.json, model or adapter)")
    store: str | None = _f(None, "SQLite results store (default: OUT/peftlab.db)")
    save_model: bool = _f(True, "save the trained model / adapter under the run folder")
    cache_budget_mb: float = _f(
        2048.0,
        "memory for cached frozen-prefix activations before spilling to disk (MiB)",
        check=_non_negative,
    )
    threads: int | None = _f(
        None, "torch intra-op threads (default: physical cores)", check=_optional(positive)
    )
    report_to: str | None = _f(
        None,
        "experiment trackers, comma-separated: tensorboard, mlflow, trackio (under OUT/<run_id>/trackers)",
        check=trackers.check,
    )
    # the method's own settings: its knobs dataclass (methods/<name>.py), filled by `load`
    knobs: Any = dataclasses.field(default=None, metadata={"help": None})

    def resolved_store(self) -> str:
        return self.store or str(Path(self.out) / "peftlab.db")

    def to_dict(self) -> dict:
        """The record's `config`: every setting, the method's knobs flattened as `<prefix>_<knob>` (lora_r)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "knobs"}
        if self.knobs is not None and self.method:
            from peftlab.methods import REGISTRY

            out.update(as_flat(REGISTRY[self.method].prefix, self.knobs))
        out["data_splits"] = DATA_SPLITS
        return json.loads(json.dumps(out, default=str))  # plain JSON values (lists, not tuples)


FIELDS = {f.name: f for f in fields(RunConfig) if f.name != "knobs"}
# How the data is split, recorded in every config and part of a run's identity: runs of versions before the
# validation split ("train/test", record.upgrade) trained on other subsets, so --resume never counts them as done and
# the report keeps them apart.
DATA_SPLITS = "train/validation/test"
# settings that say where results go or how fast they come, not what they are: not part of an experiment's identity
NOT_IDENTITY = ("seed", "label", "out", "store", "save_model", "cache_budget_mb", "threads", "report_to")


def flag_of(name: str) -> str:
    return FIELDS[name].metadata.get("flag") or "--" + name.replace("_", "-")


def knob_keys() -> dict[str, tuple[str, str]]:
    """Flat knob key -> (method prefix, knob name), over every registered method: {"lora_r": ("lora", "r"), ...}."""
    from peftlab.methods import REGISTRY
    from peftlab.methods.knobs import key

    out = {}
    for m in REGISTRY.values():
        for f in fields(m.knobs):
            out[key(m.prefix, f.name)] = (m.prefix, f.name)
    return out


def _unknown(name: str) -> BadInput:
    close = difflib.get_close_matches(name, list(FIELDS) + list(knob_keys()), n=2, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return BadInput(f"unknown setting {name!r}{hint}: see `peftlab run --help` for the settings")


def coerce_setting(name: str, value: Any) -> Any:
    """A YAML / CLI value -> the type of the setting it names (a RunConfig field or a knob key like lora_r)."""
    name = name.replace("-", "_")
    if name in FIELDS:
        return coerce(value, FIELDS[name].type, flag_of(name))
    if name in knob_keys():
        return value  # typed by the method's knobs dataclass in `load`
    raise _unknown(name)


def whole_number(value, flag: str, what: str) -> int:
    """A count given on the command line (--workers 2, --trials 10): an integer >= 1, else one line naming the flag."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{flag} {value!r}: give {what} (a whole number >= 1)") from None
    if n < 1:
        raise BadInput(f"{flag} {value}: give {what} (a whole number >= 1)")
    return n


def settings_from_args(args) -> dict:
    """The run settings a command line gave (argparse dests are the settings' keys, knobs included); unset = absent."""
    keys = [*FIELDS, *knob_keys()]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


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


def _check_fields(cfg: RunConfig) -> None:
    for f in fields(cfg):
        rule, choices = f.metadata.get("check"), f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value not in choices:
            raise BadInput(f"{flag_of(f.name)} {value!r}: expected one of {', '.join(choices)}")
        why = rule(value) if rule else None
        if why:
            raise BadInput(f"{flag_of(f.name)} {value!r}: {why}")


def method_knobs(method, values: dict) -> Any:
    """The method's knobs dataclass from flat settings ({"lora_r": 4, "ia3_target": ...}): its own prefix's keys,
    coerced and checked; other methods' keys are ignored (a grid's common settings may hold several)."""
    keys = knob_keys()
    mine = {keys[k][1]: v for k, v in values.items() if k in keys and keys[k][0] == method.prefix}
    return parse_knobs(method.knobs, method.prefix, mine)


def load(values: dict, *, task_cache: dict | None = None) -> RunConfig:
    """Settings (dashed or underscored keys, None = default) -> a validated RunConfig, resolved: task inferred,
    method and learning rate defaulted, the method's knobs parsed. The one place settings are checked."""
    from peftlab import tasks
    from peftlab.methods import REGISTRY, check_applies

    plain, knob_values = {}, {}
    knobs_by_key = knob_keys()
    for raw_key, value in values.items():
        name = raw_key.replace("-", "_")
        if name in FIELDS:
            if value is not None:
                plain[name] = coerce(value, FIELDS[name].type, flag_of(name))
        elif name in knobs_by_key:
            knob_values[name] = value
        elif name not in (
            "knobs",
            "data_splits",
        ):  # data_splits: recorded, not set (a record's config reloads)
            raise _unknown(name)
    cfg = RunConfig(**plain)
    _check_fields(cfg)
    task = tasks.resolve(cfg, cache=task_cache)
    if not cfg.model and not task.models_optional:
        raise BadInput("--model is required: a packaged name (peftlab ls models), a local folder or a hub id")
    if not cfg.dataset:
        raise BadInput(
            "--dataset is required: a packaged name (peftlab ls datasets), a local file/folder or a hub id"
        )
    method_name = cfg.method or task.default_method
    if method_name not in REGISTRY:
        close = difflib.get_close_matches(method_name, list(REGISTRY), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BadInput(f"--method {method_name!r}: unknown method{hint}; choose from {', '.join(REGISTRY)}")
    method = REGISTRY[method_name]
    check_applies(method, None, task.name)
    knobs = method_knobs(method, knob_values)
    batch_size = cfg.batch_size if cfg.batch_size is not None else task.batch_size
    lr = cfg.lr if cfg.lr is not None else task.default_lr(method, batch_size)
    from peftlab.precision import resolve

    cfg = dataclasses.replace(cfg, task=task.name, method=method_name, batch_size=batch_size, lr=lr, knobs=knobs,
                              precision=resolve(cfg.precision))  # fmt: skip
    task.check(cfg)
    return cfg


# --- identity: one function says which settings make an experiment ------------------------------------------------


def identity(config: dict) -> dict:
    """The settings that decide a run's result: everything but the seed and where output goes. Takes a record's
    `config` (or RunConfig.to_dict()); knobs of other methods (older records held every LoRA knob) are left out."""
    from peftlab.methods import REGISTRY

    method = REGISTRY.get(str(config.get("method")))
    own = f"{method.prefix}_" if method else None
    other_knobs = {k for k in knob_keys() if own is None or not k.startswith(own)}
    return {k: v for k, v in sorted(config.items()) if k not in NOT_IDENTITY and k not in other_knobs}


def identity_hash(config: dict) -> str:
    blob = json.dumps(identity(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def knob_label(config: dict) -> str:
    """The default name of a configuration in reports: the method and the knobs that differ from their defaults,
    "lora r=4 alpha=32"; an explicit `label` setting wins."""
    if config.get("label"):
        return str(config["label"])
    from peftlab.methods import REGISTRY

    method = REGISTRY.get(str(config.get("method")))
    if method is None:
        return str(config.get("method"))
    prefix = f"{method.prefix}_"
    given = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    try:
        knobs = method.knobs(
            **{k: v for k, v in given.items() if k in {f.name for f in fields(method.knobs)}}
        )
    except TypeError:
        return method.name
    parts = [f"{k}={short_value(v)}" for k, v in changed(knobs).items()]
    return " ".join([method.name, *parts])


def command_line(config: dict) -> str:
    """The `peftlab run` command that gives a record's settings again: model, dataset, method, task, seed and the
    learning rate always, every other setting that decides the result where it differs from its default (the
    method's knobs included); where output goes (--out, --store) is left to the reader."""
    import shlex

    from peftlab.methods import REGISTRY

    method = REGISTRY.get(str(config.get("method")))
    knob_defaults = {}
    if method is not None:
        from peftlab.methods.knobs import as_flat

        knob_defaults = as_flat(method.prefix, method.knobs())
    always = ("model", "dataset", "method", "task", "seed", "lr")
    deciding = {**identity(config), "seed": config.get("seed")}
    parts = ["peftlab", "run"]
    for name in [*FIELDS, *knob_defaults]:  # declaration order: model, dataset, method, ... then the knobs
        if name not in deciding:
            continue
        value = deciding[name]
        if name in FIELDS:
            default, flag = FIELDS[name].default, flag_of(name)
        else:
            default, flag = knob_defaults[name], "--" + name.replace("_", "-")
        if value is None or (value == default and name not in always):
            continue
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, shlex.quote(short_value(value) if isinstance(value, list) else str(value))]
    return " ".join(parts)


def short_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)
