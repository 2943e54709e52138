"""Model loading: a name (packaged, local folder, hub id) + task + labels -> a classifier with a fresh head, fp32, eval().

`load_model("minilm-l6", "text-classification", ["neg", "pos"])`; `weights=False` builds on the meta device (no reads).
"""

import contextlib
import functools
import json
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from peftlab.errors import BadInput
from peftlab.models.anatomy import Anatomy, anatomy
from peftlab.models.meanpool import MODEL_TYPE as MEANPOOL_TYPE
from peftlab.models.meanpool import MeanPoolConfig, MeanPoolForSequenceClassification, _encoder_kwargs
from peftlab.models.packaged import PACKAGED_MODELS, PackagedModel

TASKS = ("text-classification", "image-classification")
POOLINGS = ("auto", "mean", "cls", "image")
# a bare CLIP vision tower's checkpoint keys -> CLIPForImageClassification's (from_pretrained's key_mapping, a regex
# per key): every key not already under vision_model. goes there (transformers 5 saves embeddings.*, encoder.*, ...)
CLIP_TOWER_KEYS = {r"^(?!vision_model\.)": "vision_model."}


@dataclass
class LoadedModel:
    """A classifier ready for a method to prepare, with what is needed to feed it and describe it."""

    # *ForSequenceClassification / *ForImageClassification / MeanPoolForSequenceClassification, fp32, eval()
    model: nn.Module
    processor: Any  # tokenizer (text) or image processor (image); None when weights=False
    anatomy: Anatomy
    name: str  # the name the user gave
    source: str  # "packaged minilm-l6 (/path)", "local /path", "hub roberta-base"
    pooling: str  # "mean" (sentence-transformers recipe) | "cls" (the model's own head) | "image"


@dataclass(frozen=True)
class _Where:
    kind: str  # "packaged" | "local" | "hub"
    ref: str  # folder or hub id to load from ("" for a packaged model that must be converted first)
    packaged: PackagedModel | None = None
    sentence_transformers: bool = False


def _offline_names() -> str:
    return ", ".join(PACKAGED_MODELS)


def _sentence_transformers_folder(folder: Path) -> tuple[bool, Path]:
    """(is a sentence-transformers folder, the folder holding its transformer's config.json)."""
    modules = folder / "modules.json"
    is_st = modules.is_file() or (folder / "sentence_bert_config.json").is_file()
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text())
        except (OSError, ValueError):
            entries = []
        for entry in entries:
            if str(entry.get("type", "")).endswith("models.Transformer") and entry.get("path"):
                return is_st, folder / entry["path"]  # older exports keep the transformer in 0_Transformer/
    return is_st, folder


def _locate(name: str) -> _Where:
    if not isinstance(name, str) or not name.strip():
        raise BadInput(
            f"model name is empty: give a packaged name ({_offline_names()}), a local folder or a hub id"
        )
    if name in PACKAGED_MODELS:
        packaged = PACKAGED_MODELS[name]
        packaged.require()
        ref = "" if packaged.convert else str(packaged.path())
        return _Where("packaged", ref, packaged, packaged.sentence_transformers)
    path = Path(name).expanduser()
    if path.is_dir():
        is_st, folder = _sentence_transformers_folder(path)
        if not (folder / "config.json").is_file():
            raise BadInput(
                f"folder {path} has no config.json: point --model at a Hugging Face model folder (config.json and "
                f"weights), a packaged name ({_offline_names()}) or a hub id"
            )
        return _Where("local", str(folder), None, is_st)
    if path.exists():
        raise BadInput(
            f"{name} is a file, not a model folder: point --model at the folder that holds config.json"
        )
    if name.startswith(("/", "./", "../", "~", ".\\")):
        raise BadInput(
            f"no such folder {name}: give an existing model folder, a packaged name ({_offline_names()})"
        )
    return _Where("hub", name, None, name.startswith("sentence-transformers/"))


def resolve_source(name: str) -> tuple[str, str]:
    """name -> (kind, path_or_id): ("packaged", HF folder), ("local", folder), ("hub", id). Converts packaged files."""
    where = _locate(name)
    if where.kind == "packaged":
        return "packaged", str(where.packaged.path())
    return where.kind, where.ref


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def _hub_unreachable_probe() -> bool:
    """One 3 s TCP connect to the hub: without it an offline from_pretrained retries for ~25 s before failing."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # behind a proxy a direct connect proves nothing; let huggingface_hub try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=3):
            return False
    except OSError:
        return True


def _hub_offline() -> bool:
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or _hub_unreachable_probe()


def _hub_kwargs(where: _Where) -> dict:
    # Offline, a hub id can still load from the local Hugging Face cache.
    return {"local_files_only": True} if where.kind == "hub" and _hub_offline() else {}


def _load_error(name: str, where: _Where, err: Exception, what: str) -> BadInput:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if where.kind == "hub":
        reason = "the hub is unreachable and it is not in the local cache" if _hub_offline() else first
        same = [m.name for m in PACKAGED_MODELS.values() if m.hub_id and m.hub_id == name]
        offer = (
            f"the packaged '{same[0]}' is this model"
            if same
            else f"use a packaged model ({_offline_names()})"
        )
        return BadInput(
            f"cannot load {what} of '{name}' from the Hugging Face hub ({reason}): {offer}, "
            "or give a local folder with config.json"
        )
    return BadInput(
        f"cannot load {what} of '{name}' from {where.ref or where.kind} ({first}): check the folder's files"
    )


def _load_config_at(name: str, where: _Where):
    from transformers import AutoConfig

    if where.kind == "packaged":
        return where.packaged.config()
    try:
        with quiet():
            return AutoConfig.from_pretrained(where.ref, **_hub_kwargs(where))
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(name, where, err, "the config") from None


def load_config(name: str):
    """The model's config (a PretrainedConfig) from config.json alone: no weights are read, nothing is converted."""
    return _load_config_at(name, _locate(name))


@contextlib.contextmanager
def quiet():
    """transformers' load reports and progress bars off while loading; peftlab warns about what matters itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _check_inputs(task: str, label_names: list[str], pooling: str) -> list[str]:
    if task not in TASKS:
        raise BadInput(f"unknown task '{task}': choose one of {', '.join(TASKS)}")
    if pooling not in POOLINGS:
        raise BadInput(f"unknown pooling '{pooling}': choose one of {', '.join(POOLINGS)}")
    labels = [str(label) for label in (label_names or [])]
    if len(labels) < 2:
        raise BadInput(f"got {len(labels)} label name(s): a classifier needs at least 2 classes")
    if len(set(labels)) != len(labels):
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        raise BadInput(f"label names repeat ({', '.join(dupes)}): give each class one distinct name")
    return labels


def _is_text(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    return config.model_type == MEANPOOL_TYPE or type(config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING


def _is_image(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    return config.model_type == "clip_vision_model" or type(config) in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING


def _resolve_pooling(name: str, pooling: str, task: str, where: _Where, config) -> str:
    if task == "image-classification":
        if not _is_image(config):
            hint = (
                " use --task text-classification"
                if _is_text(config)
                else " no image-classification head exists"
            )
            raise BadInput(f"'{name}' ({config.model_type}) is not an image classifier:{hint}")
        if pooling not in ("auto", "image"):
            raise BadInput(f"pooling '{pooling}' is for text models: leave it 'auto' for '{name}'")
        return "image"
    if not _is_text(config):
        hint = (
            " use --task image-classification"
            if _is_image(config)
            else " no sequence-classification head exists"
        )
        raise BadInput(f"'{name}' ({config.model_type}) is not a text classifier:{hint}")
    if pooling == "image":
        raise BadInput(f"pooling 'image' is for image models: use 'auto', 'mean' or 'cls' for '{name}'")
    if config.model_type == MEANPOOL_TYPE:
        if pooling == "cls":
            raise BadInput(f"'{name}' is a saved mean-pooling classifier: use pooling 'auto' or 'mean'")
        return "mean"
    if pooling == "auto":
        return "mean" if where.sentence_transformers else "cls"
    return pooling


def resolve_pooling(name: str, pooling: str, task: str, config) -> str:
    """load_model's rule for a pooling setting, from the config alone: "mean" | "cls" | "image"."""
    if pooling in ("mean", "cls", "image"):
        return pooling
    if task == "image-classification":
        return "image"
    return _resolve_pooling(name, pooling, task, _locate(name), config)


def default_task(config) -> str:
    """The task a bare config implies: image classification for vision models (CLIP included), else text."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    mt = config.model_type
    if mt in ("clip", "clip_vision_model"):
        return "image-classification"
    image = (
        mt in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        and mt not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    )
    return "image-classification" if image else "text-classification"


def _set_labels(config, labels: list[str]) -> None:
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}


def _init_std(config) -> float:
    for cfg in (config, getattr(config, "encoder_config", None), getattr(config, "vision_config", None)):
        std = getattr(cfg, "initializer_range", None)
        if isinstance(std, float) and std > 0:
            return std
    return 0.02


@torch.no_grad()
def _fresh_head(model: nn.Module, head: list[str], std: float) -> None:
    """Re-initialise the head the same way for every family: Linear/Conv weights ~ N(0, std), biases 0, norms 1/0."""
    for name in head:
        for module in model.get_submodule(name).modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif (
                isinstance(module, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm))
                and module.weight is not None
            ):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_running_stats()


def _torch_batchnorm_momentum(model: nn.Module) -> None:
    """HF's TF ports (MobileNetV2) hard-code BatchNorm momentum=0.997, TF's *decay*. In PyTorch's convention
    (running = (1 - m) * running + m * batch) that keeps only the last batch's statistics, so fine-tuning would
    evaluate with one batch's stats. Use PyTorch's/torchvision's 0.1 instead."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.momentum or 0) > 0.5:
            module.momentum = 0.1


def _warn_missing(name: str, missing: list[str], head: list[str]) -> None:
    backbone_missing = [k for k in missing if not any(k == h or k.startswith(h + ".") for h in head)]
    if backbone_missing:
        shown = ", ".join(backbone_missing[:5]) + (" ..." if len(backbone_missing) > 5 else "")
        warnings.warn(
            f"{name}: {len(backbone_missing)} backbone weights were not in the checkpoint and start random ({shown})",
            stacklevel=3,
        )


def _build_on_meta(cls, config) -> nn.Module:
    with torch.device("meta"):
        if cls is MeanPoolForSequenceClassification:
            return cls(config)
        return cls.from_config(config) if hasattr(cls, "from_config") else cls._from_config(config)


def _load_processor(name: str, where: _Where, ref: str, task: str):
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        with quiet():
            if task == "text-classification":
                return AutoTokenizer.from_pretrained(ref, **_hub_kwargs(where))
            return AutoImageProcessor.from_pretrained(ref, **_hub_kwargs(where))
    except (OSError, ValueError, KeyError, TypeError) as err:
        what = "the tokenizer" if task == "text-classification" else "the image processor"
        raise _load_error(name, where, err, what) from None


def load_processor(name: str, task: str):
    """The tokenizer (text) or image processor of `name` alone, no weights; None where it cannot be read here (a hub
    id offline and not in the local cache). `peftlab plan` reads text lengths and image sizes with it."""
    try:
        where = _locate(name)
        ref = str(where.packaged.path()) if where.kind == "packaged" else where.ref
        return _load_processor(name, where, ref, task)
    except BadInput:
        return None


def load_model(
    name: str,
    task: str,
    label_names: list[str],
    *,
    pooling: str = "auto",
    weights: bool = True,
    fresh_head: bool = True,
) -> LoadedModel:
    """A classifier over `label_names` from a packaged name, a local folder or a hub id; fp32, eval() mode.

    pooling "auto": mean pooling (MeanPoolForSequenceClassification) for sentence-transformers models, else the model's
    own head ("cls"); image models always use their own head ("image"). The head is freshly initialised (num_labels,
    id2label, label2id set from `label_names`); `fresh_head=False` keeps a checkpoint's head when its shape fits.
    weights=False: the architecture from its config on the meta device, no weights and no processor read.
    """
    labels = _check_inputs(task, label_names, pooling)
    where = _locate(name)
    base_config = _load_config_at(name, where)
    pooling = _resolve_pooling(name, pooling, task, where, base_config)
    config, cls = _classifier(base_config, pooling)
    _set_labels(config, labels)

    if not weights:
        model = _build_on_meta(cls, config)
        anat = anatomy(model)
        ref = str(where.packaged.source()) if where.kind == "packaged" else where.ref
        return LoadedModel(model.eval(), None, anat, name, _describe(name, where, ref), pooling)

    ref = str(where.packaged.path()) if where.kind == "packaged" else where.ref
    try:
        with quiet():
            model, missing = _from_pretrained(ref, cls, config, base_config, _hub_kwargs(where))
    except (OSError, ValueError) as err:
        raise _load_error(name, where, err, "the weights") from None
    anat = anatomy(model)
    _warn_missing(name, missing, anat.head)
    if fresh_head:
        _fresh_head(model, anat.head, _init_std(config))
    _torch_batchnorm_momentum(model)
    model = model.float().eval()
    processor = _load_processor(name, where, ref, task)
    return LoadedModel(model, processor, anat, name, _describe(name, where, ref), pooling)


def _classifier(base_config, pooling: str) -> tuple:
    """(config, class) of the classifier to build: the mean-pooling wrapper around a bare encoder, the model's own
    sequence / image classification head, or CLIPForImageClassification around a bare CLIP vision tower."""
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        CLIPConfig,
        CLIPForImageClassification,
    )

    if pooling == "mean" and base_config.model_type != MEANPOOL_TYPE:
        return MeanPoolConfig(encoder_config=base_config), MeanPoolForSequenceClassification
    if pooling in ("mean", "cls"):
        return base_config, AutoModelForSequenceClassification
    if base_config.model_type == "clip_vision_model":
        # CLIPForImageClassification runs only its vision_model (the text config is unused)
        return CLIPConfig(vision_config=base_config.to_dict()), CLIPForImageClassification
    return base_config, AutoModelForImageClassification


def _from_pretrained(ref: str, cls, config, base_config, hub: dict) -> tuple[nn.Module, list[str]]:
    """(model with the checkpoint's weights in fp32, the parameter names the checkpoint did not have)."""
    from transformers import AutoModel

    if cls is MeanPoolForSequenceClassification and base_config.model_type != MEANPOOL_TYPE:
        encoder, info = AutoModel.from_pretrained(ref, config=base_config, dtype=torch.float32,
                                                  output_loading_info=True, **_encoder_kwargs(base_config), **hub)  # fmt: skip
        return MeanPoolForSequenceClassification(config, encoder=encoder), list(info.get("missing_keys", []))
    extra = {}
    if base_config.model_type == "clip_vision_model":
        # CLIPForImageClassification holds the tower at vision_model.
        extra["key_mapping"] = CLIP_TOWER_KEYS
    model, info = cls.from_pretrained(ref, config=config, dtype=torch.float32, ignore_mismatched_sizes=True,
                                      output_loading_info=True, **extra, **hub)  # fmt: skip
    if extra:
        # transformers keeps a key_mapping to undo it on save_pretrained (vision_model.* -> the tower's names), which
        # would write an export that CLIPForImageClassification reads back without its tower: save the names it has
        model._weight_conversions = []
    return model, list(info.get("missing_keys", []))


def _describe(name: str, where: _Where, ref: str) -> str:
    if where.kind == "packaged":
        return f"packaged {name} ({ref})"
    return f"{where.kind} {ref}"
