"""A trained classifier as a folder that transformers and peft load without peftlab, and the lines that load it.

`save(model, loaded, cfg, run_id)` writes RUN/adapter (PEFT methods) or RUN/model (methods that train whole weights)
at the end of a classification run and returns a `Portable`; `describe(folder)` reads one back from its
peftlab.json (the model card, `peftlab predict` and `peftlab export` use it), `load_lines(p)` is its loading snippet.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peftlab.errors import BadInput

ADAPTER, MODEL = "adapter", "model"  # the two folder kinds a classification run saves
BASE = "base"  # mean-pooled adapters: RUN/adapter/base holds the base classifier's config + modelling file
MANIFEST = "peftlab.json"
AUTO = {"text-classification": "AutoModelForSequenceClassification",
        "image-classification": "AutoModelForImageClassification"}  # fmt: skip
# image adapters have no PEFT task type: AutoPeftModel reads the base class from the adapter's auto_mapping
PEFT_AUTO = {"text-classification": "AutoPeftModelForSequenceClassification",
             "image-classification": "AutoPeftModel"}  # fmt: skip
PROCESSOR = {"text-classification": ("tokenizer", "AutoTokenizer"),
             "image-classification": ("image_processor", "AutoImageProcessor")}  # fmt: skip
MAX_INLINE_LABELS = (
    300  # characters of id2label written into the snippet; beyond, num_labels=K (names in the card)
)


@dataclass(frozen=True)
class Base:
    """The pretrained model an artifact builds on, as someone without peftlab finds it."""

    ref: (
        str  # adapter_config's base_model_name_or_path: the hub id when there is one, else an absolute folder
    )
    hub_id: str | None  # the model card's `base_model` (None: not on the hub)
    kind: str  # "packaged" | "local" | "hub"
    note: str | None = None  # what to tell users about this base (the packaged MobileNetV2 is converted)


@dataclass(frozen=True)
class Portable:
    """What one saved classifier is and how it loads; written to <folder>/peftlab.json."""

    folder: str  # as the run wrote it (relative when --out was): RUN/adapter or RUN/model
    kind: str  # ADAPTER | MODEL
    task: str
    label_names: list[str]
    base_model: str  # the name the run was given (--model)
    base: Base
    # "mean" (peftlab's mean-pooling classifier, loaded with trust_remote_code) | "cls" | "image"
    pooling: str
    method: str
    peft_type: str | None = None  # LORA, IA3, PROMPT_TUNING, ... (adapters)
    prompt_learning: bool = False  # virtual tokens: cannot be merged into the weights
    mismatched_head: bool = False  # the base checkpoint's head has another size: ignore_mismatched_sizes=True
    max_length: int | None = None
    image_size: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def mean_pooled(self) -> bool:
        return self.pooling == "mean"


def base_of(name: str) -> Base:
    """--model NAME -> where its weights live for a user: packaged models by their hub id when the hub has the same
    model (minilm-l6), else by the local folder peftlab made (mobilenet-v2: converted torchvision weights)."""
    from peftlab.models import PACKAGED_MODELS, resolve_source

    kind, where = resolve_source(name)
    if kind == "hub":
        return Base(where, where, kind)
    folder = str(Path(where).resolve())
    if kind == "packaged":
        packaged = PACKAGED_MODELS[name]
        if packaged.hub_id:
            return Base(packaged.hub_id, packaged.hub_id, kind)
        note = (f"peftlab's packaged {name}: {packaged.description}. It is not on the Hugging Face hub; "
                f"the folder above is where peftlab converted it on the machine that trained ({packaged.install}, "
                "then any peftlab run converts it again)")  # fmt: skip
        return Base(folder, None, kind, note)
    return Base(folder, None, kind)


def _configured_processor(processor, cfg):
    """The run's preprocessing, saved so a pipeline reproduces it: texts truncate at --max-length (with
    truncation=True), images resize and crop to --image-size."""
    from peftlab.train.encode import size_kwargs

    processor = copy.deepcopy(processor)
    if cfg.task == "text-classification":
        processor.model_max_length = cfg.max_length
    else:
        for key, value in size_kwargs(processor, cfg.image_size).items():
            setattr(processor, key, value)
    return processor


def _write_base(folder: Path, config) -> None:
    """RUN/adapter/base: the mean-pooling classifier's config (labels, encoder_name_or_path, auto_map) and its
    modelling file, no weights: from_pretrained(base, trust_remote_code=True) reads the encoder from the hub id or
    folder the config names (models/meanpool.py)."""
    from peftlab.models import meanpool

    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config)
    # register_for_auto_class (peftlab.models) makes this copy meanpool.py and write auto_map["AutoConfig"]
    config.save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    data["auto_map"] = {"AutoConfig": "meanpool.MeanPoolConfig",
                        "AutoModelForSequenceClassification": "meanpool.MeanPoolForSequenceClassification"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if not (folder / "meanpool.py").is_file():
        shutil.copy(meanpool.__file__, folder / "meanpool.py")


def _mismatched_head(name: str, task: str, k: int) -> bool:
    """Whether the base checkpoint carries a classification head of another width than k (ImageNet's 1000 classes):
    then transformers needs ignore_mismatched_sizes=True to build the base with k outputs."""
    if task == "image-classification":
        return True  # image checkpoints nearly always keep their pretraining head; the flag is harmless otherwise
    from peftlab.models import load_config

    config = load_config(name)
    heads = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("Classification")]
    return bool(heads) and getattr(config, "num_labels", k) != k


def _base_model_type(name: str) -> str:
    from peftlab.models import load_config

    return load_config(name).model_type


def save(model, loaded, cfg, run_id: str) -> Portable:
    """Write the trained model of one classification run: PEFT methods an adapter folder (its weights + the trained
    head, base_model_name_or_path set), others a save_pretrained folder; the run's tokenizer or image processor
    beside it, and peftlab.json. Returns what was written."""
    from peft import PeftModel

    from peftlab.models import MeanPoolForSequenceClassification

    is_adapter = isinstance(model, PeftModel)
    base = base_of(cfg.model)
    target = Path(cfg.out) / run_id / (ADAPTER if is_adapter else MODEL)
    inner = model.get_base_model() if is_adapter else model
    mean = isinstance(inner, MeanPoolForSequenceClassification)
    if mean:
        inner.config.encoder_name_or_path = base.ref
    peft_type, prompt = None, False
    if is_adapter:
        peft_config = model.peft_config[model.active_adapter]
        peft_config.base_model_name_or_path = base.ref
        peft_type, prompt = str(peft_config.peft_type.value), bool(peft_config.is_prompt_learning)
    from peftlab.models.loading import quiet

    # PEFT reads the base's config.json to compare vocabularies (offline, a hub id's is not found): it says so, and
    # transformers comments on reading an encoder's config through the mean-pooling class; neither concerns the user
    with quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file")
        model.save_pretrained(target)
    if loaded.processor is not None:
        _configured_processor(loaded.processor, cfg).save_pretrained(target)
    if is_adapter and mean:
        _write_base(target / BASE, inner.config)
    labels = [inner.config.id2label[i] for i in range(inner.config.num_labels)]
    standard_adapter = is_adapter and not mean
    extra = {}
    if standard_adapter and _base_model_type(cfg.model) == "clip_vision_model":
        # a bare CLIP vision tower: peftlab builds CLIPForImageClassification (a CLIPConfig around the tower's
        # config) and reads the tower's weights under vision_model.*; base/ keeps that config for the snippet
        (target / BASE).mkdir(parents=True, exist_ok=True)
        inner.config.save_pretrained(target / BASE)
        extra["clip_tower"] = True
    text = cfg.task == "text-classification"
    portable = Portable(
        folder=str(target), kind=ADAPTER if is_adapter else MODEL, task=cfg.task, label_names=labels,
        base_model=cfg.model, base=base, pooling=loaded.pooling, method=cfg.method, peft_type=peft_type,
        prompt_learning=prompt, mismatched_head=standard_adapter and _mismatched_head(cfg.model, cfg.task, len(labels)),
        max_length=cfg.max_length if text else None, image_size=None if text else cfg.image_size, extra=extra,
    )  # fmt: skip
    manifest = {**asdict(portable), "load": load_lines(portable)}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return portable


def describe(folder: str | Path) -> Portable:
    """A saved classifier's peftlab.json -> Portable; BadInput when the folder has none (a run from before it)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
        data.pop("load", None)
        data["base"] = Base(**data["base"])
        return Portable(**data)
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(
            f"{folder} has no readable {MANIFEST} from this peftlab version (a run saved by an older one?): "
            "run it again to get a portable model"
        ) from None


def _literal(value) -> str:
    return json.dumps(str(value))  # a Python string literal, double-quoted, escapes included


def load_lines(p: Portable) -> list[str]:
    """The three lines that load this artifact with transformers (+ peft for adapters) alone."""
    auto = AUTO[p.task]
    var, proc_cls = PROCESSOR[p.task]
    folder = _literal(p.folder)
    proc = f"{var} = {proc_cls}.from_pretrained({folder})"
    if p.kind == MODEL:
        # peftlab's mean-pooling class ships as code in the folder; AutoTokenizer reads the folder's config.json too
        remote = ", trust_remote_code=True" if p.mean_pooled else ""
        return [f"from transformers import {auto}, {proc_cls}", f"model = {auto}.from_pretrained({folder}{remote})",
                f"{var} = {proc_cls}.from_pretrained({folder}{remote})"]  # fmt: skip
    if p.mean_pooled:
        base = _literal(Path(p.folder) / BASE)
        return [
            f"from peft import PeftModel; from transformers import {auto}, {proc_cls}",
            f"model = PeftModel.from_pretrained({auto}.from_pretrained({base}, trust_remote_code=True), {folder})",
            proc,
        ]
    if p.extra.get("clip_tower"):
        # the standard class from the tower's weights, its config (labels included) from base/; the tower's keys
        # (embeddings.*, encoder.*, ...) go under vision_model.*, keys already there stay
        from peftlab.models.loading import CLIP_TOWER_KEYS

        base = _literal(Path(p.folder) / BASE)
        return [f"from peft import PeftModel; from transformers import CLIPForImageClassification, {proc_cls}",
                f"model = PeftModel.from_pretrained(CLIPForImageClassification.from_pretrained({_literal(p.base.ref)}, "
                f"config={base}, key_mapping={CLIP_TOWER_KEYS!r}), {folder})", proc]  # fmt: skip
    id2label = repr(dict(enumerate(p.label_names)))
    labels = (
        f"id2label={id2label}" if len(id2label) <= MAX_INLINE_LABELS else f"num_labels={len(p.label_names)}"
    )
    mismatch = ", ignore_mismatched_sizes=True" if p.mismatched_head else ""
    peft_auto = PEFT_AUTO[p.task]
    return [f"from peft import {peft_auto}; from transformers import {proc_cls}",
            f"model = {peft_auto}.from_pretrained({folder}, {labels}{mismatch})", proc]  # fmt: skip


def vqa_load_lines(folder: str) -> list[str]:
    """The three lines that load a VQA run's vqa-head/ folder with transformers alone and answer one question:
    config.json's auto_map points AutoModel at the folder's vqamodel.py (tasks/vqa/vqamodel.py)."""
    return ["from transformers import AutoModel; from PIL import Image",
            f"model = AutoModel.from_pretrained({_literal(folder)}, trust_remote_code=True)",
            'print(model.answer(Image.open("photo.png"), "what is in the image?"))']  # fmt: skip


def load(folder: str | Path):
    """A saved classifier, in eval mode, as peftlab's predict and export use it -> (model, processor, Portable).
    Adapters go onto the base peftlab builds from --model (packaged, local or hub, as the run did), so no hub is
    needed for packaged models; full folders load through the Auto classes (peftlab registers its mean pooling)."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from peftlab.models import load_model  # importing peftlab.models registers the mean-pooling classifier
    from peftlab.models.loading import quiet

    p = describe(folder)
    text = p.task == "text-classification"
    with quiet():
        if p.kind == ADAPTER:
            from peft import PeftModel

            base = load_model(p.base_model, p.task, p.label_names, pooling=p.pooling).model
            model = PeftModel.from_pretrained(base, str(folder))
        else:
            auto = AutoModelForSequenceClassification if text else AutoModelForImageClassification
            model = auto.from_pretrained(str(folder))
        processor = (AutoTokenizer if text else AutoImageProcessor).from_pretrained(str(folder))
    return model.float().eval(), processor, p
