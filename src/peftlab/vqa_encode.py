"""Frozen VQA encoders (image tower, sentence encoder, CLIP-style pair) and the on-disk embedding cache they fill.

`run_vqa` calls `resolve_encoders(cfg)`, then `embed_images` / `embed_texts`; each item is computed at most once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from peftlab.errors import BadInput

DEFAULT_IMAGE, DEFAULT_TEXT = "mobilenet-v2", "minilm-l6"  # the towers `--encoder dual` assembles by default
CACHE_FORMAT = 1  # bump when what a cache file holds changes: it is part of every cache key
IMAGE_BATCH, TEXT_BATCH = 32, 128
SAVE_EVERY = 1024  # items between cache writes while encoding: an interrupted run keeps most of its work


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


@contextmanager
def _quiet_transformers():
    """A tower loaded from a *ForImageClassification folder warns once per unused head key, and "Loading weights"
    bars would interleave with ours: silence both while loading, then put transformers' settings back."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


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
        with _quiet_transformers(), torch.device("meta"):
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
        with _quiet_transformers():
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


# --- what an embedding is (the cache key) -----------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(tower: Tower) -> str:
    """Content hash of a local model folder (every file's name and bytes), or hub id + commit for a hub model."""
    if tower._fingerprint is not None:
        return tower._fingerprint
    path = Path(tower.location)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(str(f.relative_to(path)).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                    h.update(chunk)
        tower._fingerprint = "sha256:" + h.hexdigest()
    else:
        commit = getattr(load_config(tower), "_commit_hash", None)
        tower._fingerprint = f"hub:{tower.location}@{commit or 'unknown'}"
    return tower._fingerprint


def _size_kwargs(processor, image_size: int | None) -> dict:
    # --image-size S: resize (shortest edge or square, as the processor does it) and crop to S
    if image_size is None:
        return {}
    size = getattr(processor, "size", None) or {}
    out = {
        "size": {"shortest_edge": image_size}
        if "shortest_edge" in size
        else {"height": image_size, "width": image_size}
    }
    if getattr(processor, "crop_size", None):
        out["crop_size"] = {"height": image_size, "width": image_size}
    return out


def preprocessing(tower: Tower, cfg) -> dict:
    """Everything besides the weights that changes an embedding: the recipe, the processor, sizes."""
    if tower.kind in ("image", "clip-image"):
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(tower.location).to_dict()
        except (OSError, ValueError):
            proc = None
        recipe = (
            "pooler_output, flattened"
            if tower.kind == "image"
            else "get_image_features, L2-normalised x sqrt(D)"
        )
        return {"recipe": recipe, "processor": proc, "image_size": cfg.image_size}
    recipe = (
        "mean over unmasked tokens, L2-normalised"
        if tower.kind == "text"
        else "get_text_features, L2-normalised x sqrt(D)"
    )
    return {"recipe": recipe, "max_length": cfg.max_length}


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
    size = _size_kwargs(processor, image_size)
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


# --- the cache --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$PEFTLAB_CACHE/embeddings, else platformdirs.user_cache_dir("peftlab")/embeddings."""
    root = os.environ.get("PEFTLAB_CACHE")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("peftlab")
    return Path(root).expanduser() / "embeddings"


@dataclass
class Embedded:
    vectors: torch.Tensor  # (n, D) float32, in the order of the keys asked for
    computed: int  # items encoded by this call
    cached: int  # distinct items found in the cache file
    file: str  # the cache file


def cached_embed(
    namespace: dict,
    keys: list[str],
    compute: Callable[[list[int]], torch.Tensor],
    *,
    desc: str,
    unit: str,
    progress: bool,
    batch: int,
) -> Embedded:
    """Rows for content keys (n,) from the cache file of `namespace`; the missing ones are computed in batches
    (compute(indices into keys) -> (b, D)), appended and written back."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{_sha(json.dumps(namespace, sort_keys=True, default=str).encode())[:32]}.pt"
    stored_keys: list[str] = []
    stored = None
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            stored_keys, stored = list(blob["keys"]), blob["vectors"]
        except Exception:  # a truncated or foreign file: start it again
            stored_keys, stored = [], None
    row = {k: i for i, k in enumerate(stored_keys)}
    first: dict[str, int] = {}  # each new key -> the first index asking for it
    for i, k in enumerate(keys):
        if k not in row:
            first.setdefault(k, i)
    missing = sorted(first.values())
    new_vectors = []
    if missing:
        bar = tqdm(
            total=len(missing), desc=desc, unit=unit, file=sys.stderr, disable=not progress, leave=False
        )
        pending = 0
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            new_vectors.append(compute(chunk))
            stored_keys += [keys[i] for i in chunk]
            bar.update(len(chunk))
            pending += len(chunk)
            if pending >= SAVE_EVERY or start + batch >= len(missing):
                stored = torch.cat(([stored] if stored is not None else []) + new_vectors)
                new_vectors, pending = [], 0
                _save(path, stored_keys, stored, namespace)
        bar.close()
        row = {k: i for i, k in enumerate(stored_keys)}
    vectors = stored[torch.tensor([row[k] for k in keys], dtype=torch.long)] if keys else torch.zeros(0, 0)
    return Embedded(vectors, len(missing), len(set(keys)) - len(missing), str(path))


def _save(path: Path, keys: list[str], vectors: torch.Tensor, namespace: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    meta = json.dumps(namespace, sort_keys=True, default=str)
    torch.save({"keys": keys, "vectors": vectors.contiguous(), "meta": meta}, tmp)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one


def image_keys(images) -> list[str]:
    """(M,) content hashes of a split's distinct images (file bytes or raw pixels)."""
    return [_sha(images.read(i)) for i in range(len(images))]


def text_keys(texts: list[str]) -> list[str]:
    return [_sha(t.encode()) for t in texts]


def _namespace(tower: Tower, cfg, dataset_identity: str) -> dict:
    """What a tower's cache entries are keyed on besides the input itself: format, tower, weights, preprocessing, data."""
    return {
        "format": CACHE_FORMAT,
        "what": tower.kind,
        "model": fingerprint(tower),
        "preprocessing": preprocessing(tower, cfg),
        "dataset": dataset_identity,
    }


def embed_images(
    tower: Tower, images, keys: list[str], cfg, dataset_identity: str, progress: bool
) -> Embedded:
    namespace = _namespace(tower, cfg, dataset_identity)

    def compute(idx: list[int]) -> torch.Tensor:
        return image_batch(tower, [images.load(i) for i in idx], cfg.image_size)

    return cached_embed(
        namespace,
        keys,
        compute,
        desc=f"embed images ({tower.name})",
        unit="img",
        progress=progress,
        batch=IMAGE_BATCH,
    )


def embed_texts(tower: Tower, texts: list[str], cfg, dataset_identity: str, progress: bool) -> Embedded:
    """Texts are deduplicated by the cache: each distinct string is encoded once."""
    namespace = _namespace(tower, cfg, dataset_identity)

    def compute(idx: list[int]) -> torch.Tensor:
        return text_batch(tower, [texts[i] for i in idx], cfg.max_length)

    return cached_embed(
        namespace,
        text_keys(texts),
        compute,
        desc=f"embed text ({tower.name})",
        unit="text",
        progress=progress,
        batch=TEXT_BATCH,
    )
