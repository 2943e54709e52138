"""A VQA run's answerer as a transformers model: two frozen encoders embed an image and a question, the trained head
scores the answers. torch + transformers only, so the run's `vqa-head/` folder loads without peftlab:

    model = AutoModel.from_pretrained("RUN/vqa-head", trust_remote_code=True)
    model.answer(Image.open("photo.png"), "what shape is in the image?")  # -> {"label": ..., "probs": {...}}

peftlab trains and answers with the same pieces (FusionHead, DualProjection, embed_image_batch,
embed_text_batch), so the folder
gives the embeddings, logits and answers the run gives.
"""

# The folder holds this file, config.json (auto_map, the answers, the head's widths, where each encoder is: a hub id
# or a local folder, and how it embeds), head.safetensors and, for a CLIP-style pair assembled by the run,
# projection.safetensors. from_pretrained reads the two encoders from where the config says.

import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

MODEL_TYPE = "peftlab-vqa"
HEAD_FILE, PROJECTION_FILE = "head.safetensors", "projection.safetensors"
DUAL_DIM = 512  # shared embedding width of an assembled pair, as CLIP ViT-B/32's projection_dim
INIT_TEMPERATURE = 0.07  # CLIP's initial temperature: logit scale exp(log(1 / 0.07)) = 14.3


# --- the trained parts ---------------------------------------------------------------------------------------


def fused_width(d_img: int, d_txt: int, fusion: str, hidden: int, inputs: str = "both") -> tuple[int, bool]:
    """(width of the fused vector, whether the two embeddings are first projected to `hidden` to multiply them)."""
    if inputs == "image":
        return d_img, False
    if inputs == "question":
        return d_txt, False
    project = fusion != "concat" and d_img != d_txt  # an element-wise product needs equal widths
    d_prod = hidden if project else d_img
    return {"concat": d_img + d_txt, "product": d_prod, "concat-product": d_img + d_txt + d_prod}[
        fusion
    ], project


class FusionHead(nn.Module):
    """concat:          [i; q]              (B, Di) ++ (B, Dq) -> (B, Di + Dq)
    product:            i * q               (B, D) * (B, D) -> (B, D); unequal widths: (Pi i) * (Pq q), (B, H)
    concat-product:     [i; q; i * q]       (B, Di + Dq + D)
    then Linear(D_fused, H) + ReLU (+ Dropout) + Linear(H, K)."""

    def __init__(self, d_img: int, d_txt: int, num_answers: int, fusion: str = "concat", hidden: int = 512,
                 dropout: float = 0.0, inputs: str = "both"):  # fmt: skip
        super().__init__()
        self.fusion, self.inputs = fusion, inputs
        d_fused, project = fused_width(d_img, d_txt, fusion, hidden, inputs)
        self.proj_img = nn.Linear(d_img, hidden) if project else None
        self.proj_txt = nn.Linear(d_txt, hidden) if project else None
        self.hidden = nn.Linear(d_fused, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_answers)

    def fuse(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        if self.inputs == "image":
            return img
        if self.inputs == "question":
            return txt
        if self.fusion == "concat":
            return torch.cat([img, txt], dim=-1)
        prod = self.proj_img(img) * self.proj_txt(txt) if self.proj_img is not None else img * txt
        return prod if self.fusion == "product" else torch.cat([img, txt, prod], dim=-1)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.hidden(self.fuse(img, txt))))  # (B, D_fused) -> (B, H)
        return self.out(h)  # (B, H) -> (B, K)


class DualProjection(nn.Module):
    """CLIP's top: visual_projection (Di -> P) and text_projection (Dt -> P), no bias, plus a learned logit scale."""

    def __init__(self, d_img: int, d_txt: int, dim: int = DUAL_DIM):
        super().__init__()
        self.visual_projection = nn.Linear(d_img, dim, bias=False)
        self.text_projection = nn.Linear(d_txt, dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_projection(x), dim=-1)  # (B, Di) -> (B, P), unit length

    def text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(x), dim=-1)  # (B, Dt) -> (B, P), unit length


# --- the frozen encoders' embeddings -------------------------------------------------------------------------


def contrastive_scale(z: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, D) L2-normalised, times sqrt(D): the direction a contrastive loss compares, with coordinates of
    unit mean square. Unit vectors alone multiply (product fusion) into entries ~1/D that a head barely learns from."""
    return F.normalize(z.float(), dim=-1) * z.shape[-1] ** 0.5


def _as_tensor(out) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling from get_*_features; 4.x returned the tensor
    return out if torch.is_tensor(out) else out.pooler_output


def _device(model: nn.Module) -> torch.device:
    return next(
        model.parameters()
    ).device  # where inputs go (a model moved with .to("cuda") takes them there)


def convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def embed_image_batch(
    model: nn.Module, processor, images: list, kind: str, processor_kwargs: dict
) -> torch.Tensor:
    """B PIL images -> (B, D) float32: kind "image" the model's pooled output (else its CLS token, or the mean over
    space), "clip-image" get_image_features through contrastive_scale. processor_kwargs: the run's resize and crop."""
    pixels = processor(images=images, return_tensors="pt", **processor_kwargs)["pixel_values"]  # (B, 3, S, S)
    pixels = pixels.to(_device(model))
    if convolutional(model):
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # same values, NHWC strides
    with torch.inference_mode():
        if kind == "clip-image":
            return contrastive_scale(_as_tensor(model.get_image_features(pixel_values=pixels)))
        out = model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:  # no pooler: CLS token of a sequence (B, T, D), else mean over space (B, C, H, W)
            h = out.last_hidden_state
            pooled = h[:, 0] if h.dim() == 3 else h.mean(dim=(2, 3))
        return pooled.flatten(1).float()  # ResNet (B, 2048, 1, 1) -> (B, 2048); MobileNetV2 (B, 1280)


def embed_text_batch(
    model: nn.Module, tokenizer, texts: list[str], kind: str, max_length: int
) -> torch.Tensor:
    """B strings -> (B, D) float32: kind "text" sentence-transformers' attention-masked mean + L2 norm, "clip-text"
    get_text_features through contrastive_scale. Texts are cut at max_length tokens."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    batch = batch.to(_device(model))
    with torch.inference_mode():
        if kind == "clip-text":
            feats = _as_tensor(
                model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            )
            return contrastive_scale(feats)
        hidden = model(**batch).last_hidden_state  # (B, T, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        # (B, T, D) -> (B, D): mean over the unmasked tokens, as sentence-transformers pools
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(mean.float(), dim=-1)


def load_encoder(location: str, kind: str, **hub) -> tuple[nn.Module, object]:
    """A frozen encoder in eval mode and its image processor (image kinds) or tokenizer (text kinds)."""
    model = AutoModel.from_pretrained(location, **hub).eval()
    model.requires_grad_(False)
    if convolutional(model):
        model.to(memory_format=torch.channels_last)  # oneDNN convolutions in NHWC skip a reorder per layer
    proc = (AutoImageProcessor if kind.endswith("image") else AutoTokenizer).from_pretrained(location, **hub)
    return model, proc


# --- the model -------------------------------------------------------------------------------------------------


class VQAConfig(PretrainedConfig):
    """answers (K,) in the head's output order; the head's input widths (image_dim, text_dim) and fusion; each
    encoder's location (hub id or local folder) and kind ("image" | "text" | "clip-image" | "clip-text");
    image_processor_kwargs: the resize and crop the run gave the image processor; question_max_length: where
    questions are cut (tokens); projection_dim and projection_input_dims (the towers' widths): set when the run
    assembled a CLIP-style pair (--encoder dual), whose trained projections map both embeddings into one space."""

    model_type = MODEL_TYPE

    def __init__(self, answers=None, fusion="concat", hidden=512, dropout=0.0, image_dim=0, text_dim=0,
                 image_encoder=None, text_encoder=None, image_kind="image", text_kind="text",
                 image_processor_kwargs=None, question_max_length=64, projection_dim=None, projection_input_dims=None,
                 **kwargs):  # fmt: skip
        self.answers = list(answers or [])
        self.fusion, self.hidden, self.dropout = fusion, hidden, dropout
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_kind, self.text_kind = image_kind, text_kind
        self.image_processor_kwargs = dict(image_processor_kwargs or {})
        self.question_max_length = question_max_length
        self.projection_dim = projection_dim
        self.projection_input_dims = list(projection_input_dims) if projection_input_dims else None
        super().__init__(**kwargs)


# from_pretrained arguments that say where and how to read the encoders (the hub's own)
ENCODER_LOAD_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "token", "revision")


class VQAModel(PreTrainedModel):
    """(images, questions) -> answer logits (B, K): image encoder -> (B, Di), question encoder -> (B, Dt), for an
    assembled pair both projected and scaled (contrastive_scale), then FusionHead -> (B, K) over config.answers."""

    config_class = VQAConfig
    base_model_prefix = "head"

    def __init__(self, config: VQAConfig, encoders=None):
        super().__init__(config)
        self.head = FusionHead(config.image_dim, config.text_dim, len(config.answers), config.fusion,
                               config.hidden, config.dropout)  # fmt: skip
        self.projection = (
            DualProjection(*config.projection_input_dims, config.projection_dim)
            if config.projection_dim
            else None
        )
        self.post_init()
        # ((image model, image processor), (text model, tokenizer)), frozen; None: from_pretrained has not loaded
        # them. Set after post_init, which initialises weights: the encoders' are pretrained
        self.encoders = encoders
        if encoders is not None:
            self.image_encoder, self.text_encoder = encoders[0][0], encoders[1][0]

    def _init_weights(self, module):
        pass  # every weight is read from the folder (or, in peftlab, trained)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """The folder's config, head (and projection) weights, and the two encoders read from where the config says
        (a hub id or a local folder; pass local_files_only=True etc. for them). In eval mode."""
        from safetensors.torch import load_file

        folder = str(pretrained_model_name_or_path)
        config = kwargs.get("config")
        if not isinstance(config, VQAConfig):
            config = cls.config_class.from_pretrained(folder)
        hub = {k: kwargs[k] for k in ENCODER_LOAD_KWARGS if k in kwargs}
        encoders = (load_encoder(config.image_encoder, config.image_kind, **hub),
                    load_encoder(config.text_encoder, config.text_kind, **hub))  # fmt: skip
        model = cls(config, encoders)
        model.head.load_state_dict(load_file(os.path.join(folder, HEAD_FILE)))
        if model.projection is not None:
            model.projection.load_state_dict(load_file(os.path.join(folder, PROJECTION_FILE)))
        return model.eval()

    def forward(self, image_embeds: torch.Tensor, question_embeds: torch.Tensor) -> torch.Tensor:
        """(B, Di) image and (B, Dt) question embeddings, as the encoders give them -> (B, K) answer logits."""
        if self.projection is not None:  # the shared space the head was trained in
            image_embeds = contrastive_scale(self.projection.image(image_embeds))
            question_embeds = contrastive_scale(self.projection.text(question_embeds))
        return self.head(image_embeds, question_embeds)

    def embed(self, images: list, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """B RGB PIL images, B questions -> (B, Di), (B, Dt) as the run embedded them."""
        (img_model, processor), (txt_model, tokenizer) = self.encoders
        c = self.config
        img = embed_image_batch(img_model, processor, images, c.image_kind, c.image_processor_kwargs)
        return img, embed_text_batch(txt_model, tokenizer, questions, c.text_kind, c.question_max_length)

    def logits(self, images: list, questions: list[str]) -> torch.Tensor:
        """B RGB PIL images, B questions -> (B, K) answer logits."""
        with torch.inference_mode():
            return self(*self.embed(images, questions)).float()

    def answer(self, images, questions):
        """An image (PIL) and a question -> {"label": answer, "probs": {answer: p, ...}}; lists give a list, one
        image with many questions (or the reverse) asks each."""
        single = not isinstance(images, (list, tuple)) and isinstance(questions, str)
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        questions = [questions] if isinstance(questions, str) else list(questions)
        if len(images) == 1 < len(questions):
            images = images * len(questions)
        if len(questions) == 1 < len(images):
            questions = questions * len(images)
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images and {len(questions)} questions: give them in pairs")
        probs = torch.softmax(self.logits([im.convert("RGB") for im in images], questions), dim=-1)  # (B, K)
        out = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append({"label": self.config.answers[best], "probs": dict(zip(self.config.answers, row))})
        return out[0] if single else out
