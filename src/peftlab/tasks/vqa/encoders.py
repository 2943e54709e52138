"""Frozen VQA encoders: an image tower and a sentence encoder, or one CLIP-style model; which, loaded how, embedding how.

`resolve_encoders(cfg)` -> Encoders; `image_batch` / `text_batch` turn inputs into (B, D) embeddings (cache.py keeps them).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from peftlab.errors import BadInput
from peftlab.models.loading import quiet
from peftlab.train.encode import size_kwargs

DEFAULT_IMAGE, DEFAULT_TEXT = "mobilenet-v2", "minilm-l6"  # the towers `--encoder dual` assembles by default


# --- which encoders ---------------------------------------------------------------------------------------


@dataclass
class Tower:
    """One frozen model and which of its outputs embeds: "image" (pooled output), "text" (mean + L2),
    "clip-image" / "clip-text" (get_image_features / get_text_features, see contrastive_scale)."""

    name: str  # as the user gave it
    location: str  # local folder or hub id
    kind: str
    flag: str  # the flag that named it, for messages
    _model: torch.nn.Module | None = field(default=None, repr=False)
    _processor: object = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)


@dataclass
class Encoders:
    image: Tower
    text: Tower
    # the record's "model": "mobilenet-v2+minilm-l6", "openai/clip-vit-base-patch32", "dual(mobilenet-v2+minilm-l6)"
    label: str
    # a CLIP-style pair assembled here: its projections are trained contrastively on the training split first
    dual: bool = False


def locate(name: str, flag: str) -> str:
    """A model name -> a local folder (packaged names are converted / found on first use) or a hub id."""
    from peftlab.models import resolve_source

    try:
        _, where = resolve_source(name)
    except (BadInput, FileNotFoundError) as e:  # FileNotFoundError: a packaged model whose package is gone
        raise BadInput(f"{flag} {name}: {e}") from None
    return where


def resolve_encoders(cfg) -> Encoders:
    """The encoder flags -> two towers. `--encoder M` (CLIP-style) or `--encoder dual` (+ optional tower flags),
    else `--image-encoder` + `--text-encoder`; for grids, `--model IMG+TXT` or `--model CLIP` works too."""
    encoder, image, text = cfg.encoder, cfg.image_encoder, cfg.text_encoder
    if not (encoder or image or text) and cfg.model:
        if "+" in cfg.model:
            image, _, text = cfg.model.partition("+")
        else:
            encoder = cfg.model
    if encoder == "dual":
        image, text = image or DEFAULT_IMAGE, text or DEFAULT_TEXT
        return Encoders(
            Tower(image, locate(image, "--image-encoder"), "image", "--image-encoder"),
            Tower(text, locate(text, "--text-encoder"), "text", "--text-encoder"),
            label=f"dual({image}+{text})",
            dual=True,
        )
    if encoder:
        if image or text:
            raise BadInput(
                f"--encoder {encoder} supplies both embeddings: drop --image-encoder / --text-encoder, "
                "or use --encoder dual to assemble a pair from them"
            )
        where = locate(encoder, "--encoder")
        return Encoders(
            Tower(encoder, where, "clip-image", "--encoder"),
            Tower(encoder, where, "clip-text", "--encoder"),
            encoder,
        )
    if not image or not text:
        missing = "--image-encoder" if not image else "--text-encoder"
        raise BadInput(
            f"{missing} is required for --task vqa: e.g. --image-encoder mobilenet-v2 --text-encoder minilm-l6, "
            "or one CLIP-style --encoder"
        )
    return Encoders(
        Tower(image, locate(image, "--image-encoder"), "image", "--image-encoder"),
        Tower(text, locate(text, "--text-encoder"), "text", "--text-encoder"),
        label=f"{image}+{text}",
    )


# --- checking, loading, counting --------------------------------------------------------------------------


def load_config(tower: Tower):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(tower.location)
    except (OSError, ValueError) as e:
        raise BadInput(
            f"{tower.flag} {tower.name}: cannot load its config ({str(e).splitlines()[0][:160]}); offline, use "
            "mobilenet-v2 / minilm-l6 or a local Hugging Face folder"
        ) from None


def meta_model(tower: Tower) -> torch.nn.Module:
    """The tower's architecture on the meta device: no weights read, enough to check it and count parameters."""
    from transformers import AutoModel

    config = load_config(tower)
    try:
        with quiet(), torch.device("meta"):
            return AutoModel.from_config(config)
    except ValueError as e:
        raise BadInput(
            f"{tower.flag} {tower.name}: no base model class for {type(config).__name__} ({e})"
        ) from None


def check_tower(tower: Tower, model: torch.nn.Module) -> None:
    """Fail early, naming the flag, when a model cannot give the embedding asked of it."""
    args = inspect.signature(model.forward).parameters
    what = type(model).__name__
    if tower.kind.startswith("clip"):
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise BadInput(
                f"--encoder {tower.name} is not a CLIP-style dual encoder ({what} has no get_image_features / "
                "get_text_features): use --image-encoder + --text-encoder, or --encoder dual"
            )
    elif tower.kind == "image" and ("pixel_values" not in args or "input_ids" in args):
        raise BadInput(
            f"--image-encoder {tower.name} is not an image model ({what} takes no pixel_values alone): "
            "give one such as mobilenet-v2 or microsoft/resnet-50"
        )
    elif tower.kind == "text" and ("input_ids" not in args or "pixel_values" in args):
        raise BadInput(
            f"--text-encoder {tower.name} is not a text model ({what} takes no input_ids alone): "
            "give one such as minilm-l6 or sentence-transformers/all-MiniLM-L6-v2"
        )


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_tower(tower: Tower) -> tuple[torch.nn.Module, object]:
    """The frozen model in eval mode and its processor (image processor or tokenizer); loaded once per tower."""
    if tower._model is not None:
        return tower._model, tower._processor
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    try:
        with quiet():
            model = AutoModel.from_pretrained(tower.location).eval()
            if tower.kind in ("image", "clip-image"):
                processor = AutoImageProcessor.from_pretrained(tower.location)
            else:
                processor = AutoTokenizer.from_pretrained(tower.location)
    except (OSError, ValueError) as e:
        raise BadInput(
            f"{tower.flag} {tower.name}: cannot load it ({str(e).splitlines()[0][:160]}); an image model needs its "
            "preprocessor_config.json, a text model its tokenizer files"
        ) from None
    model.requires_grad_(False)
    tower._model, tower._processor = model, processor
    return model, processor


# --- computing embeddings ---------------------------------------------------------------------------------


def contrastive_scale(z: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, D) L2-normalised, times sqrt(D): the direction a contrastive loss compares, with coordinates of
    unit mean square. Unit vectors alone multiply (product fusion) into entries ~1/D that a head barely learns from."""
    return F.normalize(z.float(), dim=-1) * z.shape[-1] ** 0.5


def _as_tensor(out) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling from get_*_features; 4.x returned the tensor
    return out if torch.is_tensor(out) else out.pooler_output


def image_batch(tower: Tower, images: list, image_size: int | None) -> torch.Tensor:
    """PIL images -> (B, D) float32 embeddings."""
    model, processor = load_tower(tower)
    size = size_kwargs(processor, image_size)
    pixels = processor(images=images, return_tensors="pt", **size)["pixel_values"]  # (B, 3, S, S)
    with torch.inference_mode():
        if tower.kind == "clip-image":
            return contrastive_scale(_as_tensor(model.get_image_features(pixel_values=pixels)))
        out = model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:  # no pooler: CLS token of a sequence (B, T, D), else mean over space (B, C, H, W)
            h = out.last_hidden_state
            pooled = h[:, 0] if h.dim() == 3 else h.mean(dim=(2, 3))
        return pooled.flatten(1).float()  # ResNet (B, 2048, 1, 1) -> (B, 2048); MobileNetV2 (B, 1280)


def text_batch(tower: Tower, texts: list[str], max_length: int) -> torch.Tensor:
    """Strings -> (B, D) float32 embeddings: sentence-transformers' mean + L2 norm; CLIP's as contrastive_scale."""
    model, tok = load_tower(tower)
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        if tower.kind == "clip-text":
            feats = _as_tensor(
                model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            )
            return contrastive_scale(feats)
        hidden = model(**batch).last_hidden_state  # (B, T, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        # (B, T, D) -> (B, D): mean over the unmasked tokens, as sentence-transformers pools
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(mean.float(), dim=-1)
