"""Frozen VQA encoders: an image tower and a sentence encoder, or one CLIP-style model; which, loaded how, embedding how.

`resolve_encoders(cfg)` -> Encoders; `choose_image_size` says what side images are encoded at; `image_batch` /
`text_batch` turn inputs into (B, D) embeddings (cache.py keeps them).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from peftlab.errors import BadInput
from peftlab.models.loading import quiet
from peftlab.tasks.vqa.vqamodel import embed_image_batch, embed_text_batch, load_encoder
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
    try:
        with quiet():
            model, processor = load_encoder(tower.location, tower.kind)
    except (OSError, ValueError) as e:
        raise BadInput(
            f"{tower.flag} {tower.name}: cannot load it ({str(e).splitlines()[0][:160]}); an image model needs its "
            "preprocessor_config.json, a text model its tokenizer files"
        ) from None
    tower._model, tower._processor = model, processor
    return model, processor


# --- the image size -----------------------------------------------------------------------------------------

NATIVE_SAMPLE = 16  # images looked at (evenly spaced over the set) to find the data's native size


@dataclass(frozen=True)
class ImageSize:
    """The side images are resized and centre-cropped to before the image encoder, and why."""

    pixels: int  # what the encoder sees: pixels x pixels
    chosen: (
        str  # "--image-size" (given), "encoder" (its processor's own resize + crop), "native" (the data's)
    )
    native: (
        int | None
    )  # the data's side: the largest shorter side over NATIVE_SAMPLE images (None: no images)
    encoder: int | None  # the side the encoder's image processor makes by default (its crop, else its resize)
    fixed: bool  # the encoder takes one input size only (learnt position embeddings: ViT, CLIP)

    @property
    def arg(self) -> int | None:
        """What the image processor is given (encode.size_kwargs): None keeps its own resize + crop, as before."""
        return None if self.chosen == "encoder" else self.pixels

    def to_dict(self) -> dict:
        return {"pixels": self.pixels, "chosen": self.chosen, "native": self.native, "encoder": self.encoder,
                "fixed_input": self.fixed}  # fmt: skip


def _side(size) -> int | None:
    # a processor's size / crop_size (dict or transformers' SizeDict) -> its square side or shortest edge
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return get("height") or get("shortest_edge")


def encoder_side(processor) -> int | None:
    """The side an image processor makes by default: its centre crop when it crops, else its resize."""
    crop = getattr(processor, "crop_size", None)
    if crop and getattr(processor, "do_center_crop", True):
        return _side(crop)
    size = getattr(processor, "size", None)
    return _side(size) if size else None


def native_side(images) -> int | None:
    """The largest shorter side over up to NATIVE_SAMPLE images spread evenly over the set (an ImageSet)."""
    m = len(images)
    if m == 0:
        return None
    picks = sorted({round(i * (m - 1) / max(1, NATIVE_SAMPLE - 1)) for i in range(min(m, NATIVE_SAMPLE))})
    return max(min(images.load(i).size) for i in picks)


def fixed_input(tower: Tower, meta: torch.nn.Module) -> bool:
    """True for encoders with learnt position embeddings over a fixed grid (ViT, DeiT, CLIP, Swin's tables): a
    smaller input does not fit them. CNNs (MobileNetV2, ResNet, ConvNeXt) pool over whatever grid they get."""
    if tower.kind == "clip-image":
        return True
    names = [n for n, _ in meta.named_parameters()] + [n for n, _ in meta.named_buffers()]
    return any("position" in n for n in names)


def choose_image_size(
    given: int | None, tower: Tower, meta: torch.nn.Module, images, policy: str
) -> ImageSize:
    """--image-size when given; else, by `policy` (tasks/vqa/__init__.py IMAGE_SIZE): "encoder" keeps the encoder's
    own preprocessing; "native" takes the data's side where it is smaller than the encoder's and the encoder takes any
    size. A given size that a fixed-input encoder cannot take is bad input."""
    from transformers import AutoImageProcessor

    try:
        encoder = encoder_side(AutoImageProcessor.from_pretrained(tower.location))
    except (OSError, ValueError):
        encoder = None  # load_tower says what is missing when it loads the model
    native, fixed = native_side(images), fixed_input(tower, meta)
    if given is not None:
        if fixed and encoder is not None and given != encoder:
            raise BadInput(
                f"--image-size {given}: {tower.flag} {tower.name} takes {encoder}-px images only (learnt position "
                f"embeddings over a fixed grid); drop --image-size or give {encoder}"
            )
        return ImageSize(given, "--image-size", native, encoder, fixed)
    if policy == "native" and native is not None and encoder is not None and native < encoder and not fixed:
        return ImageSize(native, "native", native, encoder, fixed)
    return ImageSize(encoder or native or 0, "encoder", native, encoder, fixed)


# --- computing embeddings ---------------------------------------------------------------------------------


def image_batch(tower: Tower, images: list, image_size: int | None) -> torch.Tensor:
    """PIL images -> (B, D) float32 embeddings (vqamodel.embed_image_batch: what the saved folder computes too)."""
    model, processor = load_tower(tower)
    return embed_image_batch(model, processor, images, tower.kind, size_kwargs(processor, image_size))


def text_batch(tower: Tower, texts: list[str], max_length: int) -> torch.Tensor:
    """Strings -> (B, D) float32 embeddings: sentence-transformers' mean + L2 norm; CLIP's as contrastive_scale."""
    model, tok = load_tower(tower)
    return embed_text_batch(model, tok, texts, tower.kind, max_length)
