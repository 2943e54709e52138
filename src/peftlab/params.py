"""Parameter counts: predicted by arithmetic on config fields, component by component, and measured on the real model.

`peftlab params` calls `count` + `format_table`; every `peftlab run` calls `measure`, `predict`, `compare_counts`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from math import prod

COUNTING = (
    "PEFT's way, as print_trainable_parameters() reports: "
    "frozen originals + modules_to_save copies + adapter weights"
)

# Breakdown lines, in the order a transformer encoder runs them.
EMB, QKV, ATT_OUT, FFN_IN, FFN_OUT = (
    "embeddings",
    "attention q,k,v",
    "attention out",
    "feed-forward in",
    "feed-forward out",
)
NORMS, FINAL, POOLER, HEAD = "block layer norms", "final layer norm", "pooler", "head"
LORA, DORA, COPIES = "lora A,B", "dora magnitudes", "modules_to_save copies"


@dataclass
class Prediction:
    trainable: int | None
    total: int | None
    # [{"component", "params", "trainable", "formula", "trainable_formula" when only part of it trains}]
    breakdown: list[dict] = field(default_factory=list)
    note: str | None = None  # why there is no prediction: "no formula for deit yet: measured counts only"
    family: str | None = None
    model_class: str | None = None  # the class the arithmetic describes: "RobertaForSequenceClassification"
    notes: list[str] = field(default_factory=list)  # derived sizes: "attention width = 12 heads × 64 = 768"


@dataclass
class Layer:
    """One module with parameters (or one bare nn.Parameter), sized from config fields alone."""

    name: str  # qualified name in the model class: "bert.encoder.layer.3.attention.self.query"
    component: str  # the breakdown line it counts in
    kind: str  # "linear" | "conv" | "norm" | "embedding" | "param"
    # weight shape: linear (out, in); conv (out, in/groups, kh, kw); norm (n,); embedding (rows, dim)
    shape: tuple[int, ...]
    bias: int = 0  # bias length, 0 when there is none
    block: int | None = None  # index of the repeated block it sits in (formulas write "12 blocks × ...")
    groups: int = 1  # conv groups (depthwise: groups = channels)
    role: str = ""  # transformer alias it answers to: query, key, value, attn_out, ffn_in, ffn_out
    what: str = ""  # label in the formula: "words", "positions"

    @property
    def weight(self) -> int:
        return prod(self.shape)

    @property
    def params(self) -> int:
        return self.weight + self.bias

    @property
    def in_features(self) -> int:  # conv: input channels (the weight holds in/groups of them)
        return self.shape[1] * self.groups

    @property
    def out_features(self) -> int:
        return self.shape[0]


@dataclass
class Arch:
    """An architecture as arithmetic: its layers, and where blocks and head are (by name, as `anatomy` finds them)."""

    family: str  # config.model_type of the backbone
    model_class: str  # what load_model builds for this config and task
    layers: list[Layer]
    kind: str  # "transformer" | "cnn"
    blocks: list[str]
    last_block: list[str]
    head: list[str]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Layer constructors: one line per module, shapes written the way PyTorch stores them.


def linear(name: str, comp: str, fan_in: int, fan_out: int, bias: bool = True, **kw) -> Layer:
    # nn.Linear(in, out): weight (out, in) + bias (out,)
    return Layer(name, comp, "linear", (fan_out, fan_in), fan_out if bias else 0, **kw)


def conv(
    name: str, comp: str, c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = False, **kw
) -> Layer:
    # nn.Conv2d(in, out, k, groups=g): weight (out, in/g, k, k) + bias (out,)
    return Layer(name, comp, "conv", (c_out, c_in // groups, k, k), c_out if bias else 0, groups=groups, **kw)


def norm(name: str, comp: str, n: int, **kw) -> Layer:
    # LayerNorm / BatchNorm2d(n), affine: weight (n,) + bias (n,); BatchNorm's running stats are buffers, not parameters
    return Layer(name, comp, "norm", (n,), n, **kw)


def embedding(name: str, comp: str, rows: int, dim: int, what: str) -> Layer:
    return Layer(name, comp, "embedding", (rows, dim), what=what)


# ---------------------------------------------------------------------------------------------------------------
# One formula function per family: config fields -> layers, named as the transformers class names them.


def _attention_width(c) -> int:
    # q/k/v project H -> heads × (H // heads); equal to H whenever heads divides H (the classes insist on it)
    return c.num_attention_heads * (c.hidden_size // c.num_attention_heads)


def bert_layers(c, prefix: str, pooler: bool) -> list[Layer]:
    """BERT, and every family built of BERT's modules: RoBERTa, MiniLM, TinyBERT (BertModel / RobertaModel)."""
    # widths: hidden, feed-forward (intermediate), attention
    H, F, A = c.hidden_size, c.intermediate_size, _attention_width(c)
    e = f"{prefix}.embeddings"
    layers = [
        embedding(f"{e}.word_embeddings", EMB, c.vocab_size, H, "words"),  # (V, H)
        embedding(f"{e}.position_embeddings", EMB, c.max_position_embeddings, H, "positions"),  # (P, H)
        embedding(f"{e}.token_type_embeddings", EMB, c.type_vocab_size, H, "token types"),  # (T, H)
        norm(f"{e}.LayerNorm", EMB, H, what="norm"),
    ]
    for i in range(c.num_hidden_layers):
        b = f"{prefix}.encoder.layer.{i}"
        layers += [
            linear(f"{b}.attention.self.query", QKV, H, A, block=i, role="query"),
            linear(f"{b}.attention.self.key", QKV, H, A, block=i, role="key"),
            linear(f"{b}.attention.self.value", QKV, H, A, block=i, role="value"),
            linear(f"{b}.attention.output.dense", ATT_OUT, A, H, block=i, role="attn_out"),
            norm(f"{b}.attention.output.LayerNorm", NORMS, H, block=i),
            linear(f"{b}.intermediate.dense", FFN_IN, H, F, block=i, role="ffn_in"),  # H -> F
            linear(f"{b}.output.dense", FFN_OUT, F, H, block=i, role="ffn_out"),  # F -> H
            norm(f"{b}.output.LayerNorm", NORMS, H, block=i),
        ]
    if pooler:  # tanh(W h_cls + b): BertForSequenceClassification keeps it; RoBERTa's head has its own dense
        layers.append(linear(f"{prefix}.pooler.dense", POOLER, H, H))
    return layers


def distilbert_layers(c, prefix: str) -> list[Layer]:
    """DistilBERT: BERT without token types and pooler, its own names (dim, hidden_dim, q_lin, ffn.lin1)."""
    H, F = c.dim, c.hidden_dim
    A = c.n_heads * (H // c.n_heads)
    e = f"{prefix}.embeddings"
    layers = [
        embedding(f"{e}.word_embeddings", EMB, c.vocab_size, H, "words"),
        embedding(f"{e}.position_embeddings", EMB, c.max_position_embeddings, H, "positions"),
        norm(f"{e}.LayerNorm", EMB, H, what="norm"),
    ]
    for i in range(c.n_layers):
        b = f"{prefix}.transformer.layer.{i}"
        layers += [
            linear(f"{b}.attention.q_lin", QKV, H, A, block=i, role="query"),
            linear(f"{b}.attention.k_lin", QKV, H, A, block=i, role="key"),
            linear(f"{b}.attention.v_lin", QKV, H, A, block=i, role="value"),
            linear(f"{b}.attention.out_lin", ATT_OUT, A, H, block=i, role="attn_out"),
            norm(f"{b}.sa_layer_norm", NORMS, H, block=i),
            linear(f"{b}.ffn.lin1", FFN_IN, H, F, block=i, role="ffn_in"),
            linear(f"{b}.ffn.lin2", FFN_OUT, F, H, block=i, role="ffn_out"),
            norm(f"{b}.output_layer_norm", NORMS, H, block=i),
        ]
    return layers


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def vit_layers(c, prefix: str) -> tuple[list[Layer], str]:
    """ViT (transformers 5 names: vit.layers.N.attention.q_proj): patch conv, class token, positions, L pre-norm blocks."""
    H, F, A = c.hidden_size, c.intermediate_size, _attention_width(c)
    (ih, iw), (ph, pw) = _pair(c.image_size), _pair(c.patch_size)
    patches = (ih // ph) * (iw // pw)  # (224/16)² = 196
    e = f"{prefix}.embeddings"
    layers = [
        Layer(f"{e}.cls_token", EMB, "param", (1, 1, H), what="class token"),  # (1, 1, H)
        Layer(f"{e}.position_embeddings", EMB, "param", (1, patches + 1, H), what="positions"),  # (1, N+1, H)
        # Conv2d(C, H, kernel = stride = patch): (H, C, ph, pw) + bias H
        Layer(
            f"{e}.patch_embeddings.projection", EMB, "conv", (H, c.num_channels, ph, pw), H, what="patches"
        ),
    ]
    qkv_bias = bool(getattr(c, "qkv_bias", True))
    for i in range(c.num_hidden_layers):
        b = f"{prefix}.layers.{i}"
        layers += [
            linear(f"{b}.attention.q_proj", QKV, H, A, qkv_bias, block=i, role="query"),
            linear(f"{b}.attention.k_proj", QKV, H, A, qkv_bias, block=i, role="key"),
            linear(f"{b}.attention.v_proj", QKV, H, A, qkv_bias, block=i, role="value"),
            linear(f"{b}.attention.o_proj", ATT_OUT, A, H, block=i, role="attn_out"),
            norm(f"{b}.layernorm_before", NORMS, H, block=i),
            norm(f"{b}.layernorm_after", NORMS, H, block=i),
            linear(f"{b}.mlp.fc1", FFN_IN, H, F, block=i, role="ffn_in"),
            linear(f"{b}.mlp.fc2", FFN_OUT, F, H, block=i, role="ffn_out"),
        ]
    # no pooler: ViTForImageClassification reads the class token after this norm
    layers.append(norm(f"{prefix}.layernorm", FINAL, H))
    cut = f"({ih}/{ph})²" if (ih, ph) == (iw, pw) else f"({ih}/{ph})×({iw}/{pw})"
    return (
        layers,
        f"ViT: {cut} = {patches} patches of {ph}×{pw} pixels, + 1 class token = {patches + 1} positions",
    )


def clip_vision_layers(c, prefix: str) -> tuple[list[Layer], str]:
    """CLIP's vision tower: patch conv without bias, class embedding, positions, pre-norm, L blocks, post-norm."""
    H, F, A = c.hidden_size, c.intermediate_size, _attention_width(c)
    patches = (c.image_size // c.patch_size) ** 2
    e = f"{prefix}.embeddings"
    layers = [
        Layer(f"{e}.class_embedding", EMB, "param", (H,), what="class token"),
        conv(f"{e}.patch_embedding", EMB, c.num_channels, H, c.patch_size, what="patches"),
        embedding(f"{e}.position_embedding", EMB, patches + 1, H, "positions"),
        norm(f"{prefix}.pre_layrnorm", EMB, H, what="pre norm"),  # sic: CLIP's own spelling
    ]
    for i in range(c.num_hidden_layers):
        b = f"{prefix}.encoder.layers.{i}"
        layers += [
            linear(f"{b}.self_attn.k_proj", QKV, H, A, block=i, role="key"),
            linear(f"{b}.self_attn.v_proj", QKV, H, A, block=i, role="value"),
            linear(f"{b}.self_attn.q_proj", QKV, H, A, block=i, role="query"),
            linear(f"{b}.self_attn.out_proj", ATT_OUT, A, H, block=i, role="attn_out"),
            norm(f"{b}.layer_norm1", NORMS, H, block=i),
            linear(f"{b}.mlp.fc1", FFN_IN, H, F, block=i, role="ffn_in"),
            linear(f"{b}.mlp.fc2", FFN_OUT, F, H, block=i, role="ffn_out"),
            norm(f"{b}.layer_norm2", NORMS, H, block=i),
        ]
    layers.append(norm(f"{prefix}.post_layernorm", FINAL, H))
    n, p = c.image_size, c.patch_size
    return (
        layers,
        f"CLIP vision: ({n}/{p})² = {patches} patches of {p}×{p} pixels, + 1 class token = {patches + 1} positions",
    )


def _make_divisible(value: float, divisor: int, min_value: int) -> int:
    # transformers' MobileNetV2 rounding: nearest multiple of `divisor`, at least `min_value`, never 10% below value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


# MobileNetV2 (Sandler et al. table 2): stem to 32 then 16 channels, then 16 inverted residual blocks in 6 stages.
MBV2_CHANNELS = (16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)
MBV2_STAGES = ((0, 1), (2, 4), (5, 8), (9, 11), (12, 14), (15, 15))  # blocks per stage (first, last)


def mobilenet_v2_layers(c, prefix: str) -> tuple[list[Layer], int, str]:
    """MobileNetV2: stem, 16 inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 reduce; each conv + BatchNorm),
    a final 1x1 conv. Returns (layers, feature width, note)."""

    def width(ch: int) -> int:  # a channel count scaled by the depth multiplier
        return _make_divisible(int(round(ch * c.depth_multiplier)), c.depth_divisible_by, c.min_depth)

    ch = [width(x) for x in MBV2_CHANNELS]
    stem = width(32)
    layers: list[Layer] = []

    def conv_bn(
        name: str, comp: str, c_in: int, c_out: int, k: int, groups: int = 1, block: int | None = None
    ):
        layers.append(conv(f"{name}.convolution", comp, c_in, c_out, k, groups, block=block))
        layers.append(norm(f"{name}.normalization", comp, c_out, block=block))

    s = f"{prefix}.conv_stem"
    conv_bn(f"{s}.first_conv", "stem", c.num_channels, stem, 3)  # 3x3 stride 2
    if not c.first_layer_is_expansion:
        conv_bn(f"{s}.expand_1x1", "stem", stem, stem, 1)
    conv_bn(f"{s}.conv_3x3", "stem", stem, stem, 3, groups=stem)  # depthwise
    conv_bn(f"{s}.reduce_1x1", "stem", stem, ch[0], 1)
    for first, last in MBV2_STAGES:
        comp = f"inverted residuals {first}-{last}" if first != last else f"inverted residual {first}"
        for i in range(first, last + 1):
            expanded = _make_divisible(int(round(ch[i] * c.expand_ratio)), c.depth_divisible_by, c.min_depth)
            b = f"{prefix}.layer.{i}"
            conv_bn(f"{b}.expand_1x1", comp, ch[i], expanded, 1, block=i)  # in -> t·in
            conv_bn(f"{b}.conv_3x3", comp, expanded, expanded, 3, groups=expanded, block=i)  # depthwise 3x3
            conv_bn(f"{b}.reduce_1x1", comp, expanded, ch[i + 1], 1, block=i)  # t·in -> out
    out = 1280 if c.finegrained_output and c.depth_multiplier < 1.0 else width(1280)
    conv_bn(f"{prefix}.conv_1x1", "final 1x1 conv", ch[-1], out, 1)
    note = (
        f"MobileNetV2 widths at depth multiplier {c.depth_multiplier}: stem {stem}, blocks "
        f"{' '.join(str(x) for x in ch)}, features {out}; expansion ×{c.expand_ratio:g}"
    )
    return layers, out, note


def resnet_layers(c, prefix: str) -> list[Layer]:
    """ResNet (HF): 7x7 stem, stages of basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 at out/4) blocks, each conv
    followed by BatchNorm; a 1x1 shortcut conv where a block changes width or stride."""
    layers: list[Layer] = []

    def conv_bn(name: str, comp: str, c_in: int, c_out: int, k: int, block: int | None = None):
        layers.append(conv(f"{name}.convolution", comp, c_in, c_out, k, block=block))
        layers.append(norm(f"{name}.normalization", comp, c_out, block=block))

    conv_bn(f"{prefix}.embedder.embedder", "stem", c.num_channels, c.embedding_size, 7)
    widths = [c.embedding_size, *c.hidden_sizes]
    for s, depth in enumerate(c.depths):
        stride = 1 if s == 0 and not c.downsample_in_first_stage else 2
        comp = f"stage {s + 1}"
        for j in range(depth):
            c_in, c_out = (widths[s], widths[s + 1]) if j == 0 else (widths[s + 1], widths[s + 1])
            b = f"{prefix}.encoder.stages.{s}.layers.{j}"
            if j == 0 and (c_in != c_out or stride != 1):
                conv_bn(f"{b}.shortcut", comp, c_in, c_out, 1, block=j)
            if c.layer_type == "bottleneck":
                mid = c_out // 4  # reduction 4
                conv_bn(f"{b}.layer.0", comp, c_in, mid, 1, block=j)
                conv_bn(f"{b}.layer.1", comp, mid, mid, 3, block=j)
                conv_bn(f"{b}.layer.2", comp, mid, c_out, 1, block=j)
            else:
                conv_bn(f"{b}.layer.0", comp, c_in, c_out, 3, block=j)
                conv_bn(f"{b}.layer.1", comp, c_out, c_out, 3, block=j)
    return layers


# ---------------------------------------------------------------------------------------------------------------
# Config + task + pooling -> the class load_model builds, and its layers.

MEANPOOL = "peftlab-meanpool"


def _transformer_arch(family, model_class, layers, head, notes, block_list) -> Arch:
    """Blocks are block_list.0 .. block_list.(L-1); last-layer trains the last one; the head is its top modules."""
    n_blocks = 1 + max(x.block for x in layers if x.block is not None)
    blocks = [f"{block_list}.{i}" for i in range(n_blocks)]
    head_modules = list(dict.fromkeys(x.name.split(".")[0] for x in head))  # classifier.dense -> classifier
    return Arch(family, model_class, layers + head, "transformer", blocks, [blocks[-1]], head_modules, notes)


def _text_notes(c) -> list[str]:
    heads = c.n_heads if c.model_type == "distilbert" else c.num_attention_heads
    H = c.dim if c.model_type == "distilbert" else c.hidden_size
    return [f"attention width = {heads} heads × {H // heads} = {heads * (H // heads)}"]


def _text_classifier(config, K: int, pooling: str) -> Arch | None:
    """pooling "mean": MeanPoolForSequenceClassification (encoder without pooler, `classifier` H -> K);
    "cls": the family's own *ForSequenceClassification."""
    enc = config.encoder_config if config.model_type == MEANPOOL else config
    mt = enc.model_type
    if mt not in ("bert", "roberta", "distilbert"):
        return None
    mean = pooling == "mean"
    prefix = "encoder" if mean else mt
    if mt == "distilbert":
        layers, H, block_list = distilbert_layers(enc, prefix), enc.dim, "transformer.layer"
    else:  # only BertForSequenceClassification keeps BertModel's pooler
        H, block_list = enc.hidden_size, "encoder.layer"
        layers = bert_layers(enc, prefix, pooler=mt == "bert" and not mean)
    if mean or mt == "bert":
        head = [linear("classifier", HEAD, H, K)]
    elif mt == "roberta":  # RobertaClassificationHead: first token -> dense -> tanh -> out_proj
        head = [
            linear("classifier.dense", HEAD, H, H, what="dense"),
            linear("classifier.out_proj", HEAD, H, K, what="out_proj"),
        ]
    else:  # DistilBERT: first token -> pre_classifier -> ReLU -> classifier
        head = [
            linear("pre_classifier", HEAD, H, H, what="pre_classifier"),
            linear("classifier", HEAD, H, K, what="classifier"),
        ]
    names = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}
    model_class = "MeanPoolForSequenceClassification" if mean else f"{names[mt]}ForSequenceClassification"
    return _transformer_arch(mt, model_class, layers, head, _text_notes(enc), f"{prefix}.{block_list}")


def _image_classifier(config, K: int) -> Arch | None:
    """The family's *ForImageClassification (CLIP: the vision tower + `classifier`)."""
    mt = config.model_type
    if mt == "vit":
        layers, note = vit_layers(config, "vit")
        head = [linear("classifier", HEAD, config.hidden_size, K)]
        notes = [note, *_text_notes(config)]
        return _transformer_arch(mt, "ViTForImageClassification", layers, head, notes, "vit.layers")
    if mt in ("clip", "clip_vision_model"):
        vc = config.vision_config if mt == "clip" else config
        layers, note = clip_vision_layers(vc, "vision_model")
        head = [linear("classifier", HEAD, vc.hidden_size, K)]
        notes = [note, *_text_notes(vc)]
        block_list = "vision_model.encoder.layers"
        return _transformer_arch(vc.model_type, "CLIPForImageClassification", layers, head, notes, block_list)
    if mt == "mobilenet_v2":
        layers, width, note = mobilenet_v2_layers(config, "mobilenet_v2")
        layers.append(linear("classifier", HEAD, width, K))
        blocks = [f"mobilenet_v2.layer.{i}" for i in range(16)]
        # anatomy's last stage, + the 1x1 conv (320 -> 1280) that follows the blocks
        last = _cnn_last_stage(layers, blocks) + ["mobilenet_v2.conv_1x1"]
        cls = "MobileNetV2ForImageClassification"
        return Arch(mt, cls, layers, "cnn", blocks, last, ["classifier"], [note])
    if mt == "resnet":
        layers = resnet_layers(config, "resnet")
        # classifier = Sequential(Flatten, Linear): the Linear is classifier.1
        layers.append(linear("classifier.1", HEAD, config.hidden_sizes[-1], K))
        blocks = [f"resnet.encoder.stages.{s}" for s in range(len(config.depths))]  # anatomy's blocks: stages
        last = _cnn_last_stage(layers, blocks)
        note = f"ResNet {config.layer_type} blocks, depths {list(config.depths)}, widths {list(config.hidden_sizes)}"
        return Arch(mt, "ResNetForImageClassification", layers, "cnn", blocks, last, ["classifier"], [note])
    return None


def architecture(config, task: str, num_labels: int, pooling: str) -> Arch | None:
    """The classifier load_model builds for (config, task, pooling), as layers; None for a family without formulas.

    `pooling` is load_model's resolved one: "mean" / "cls" for text, "image" for images."""
    if pooling in ("mean", "cls"):
        return _text_classifier(config, num_labels, pooling)
    return _image_classifier(config, num_labels)


def _cnn_last_stage(layers: list[Layer], blocks: list[str]) -> list[str]:
    """anatomy's rule: the trailing blocks whose last conv writes the last block's width."""

    def out_width(block: str) -> int:
        return [x for x in layers if x.kind == "conv" and x.name.startswith(block + ".")][-1].out_features

    last, tail = out_width(blocks[-1]), []
    for b in reversed(blocks):
        if out_width(b) != last:
            break
        tail.insert(0, b)
    return tail


# ---------------------------------------------------------------------------------------------------------------
# Methods, as arithmetic on the layers: which parameters train, what PEFT adds.


def _under(name: str, prefixes) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _module_names(arch: Arch) -> list[str]:
    """Every module name on the way to a layer, parents first ("bert", "bert.encoder", ...), as named_modules lists."""
    seen: dict[str, None] = {}
    for x in arch.layers:
        parts = x.name.split(".")
        own = parts[:-1] if x.kind == "param" else parts  # a bare parameter lives on its parent module
        for i in range(1, len(own) + 1):
            seen.setdefault(".".join(own[:i]), None)
    return list(seen)


def _aliases(arch: Arch) -> dict[str, list[str]]:
    """Portable alias -> qualified names, as anatomy maps them: roles for transformers, conv shapes for CNNs."""
    out: dict[str, list[str]] = {}
    if arch.kind == "transformer":
        for x in arch.layers:
            if x.role and _under(x.name, arch.blocks):
                out.setdefault(x.role, []).append(x.name)
        order = ("query", "key", "value", "qkv", "attn_out", "ffn_in", "ffn_out")
    else:
        for x in arch.layers:
            if x.kind == "conv" and _under(x.name, arch.blocks + arch.last_block):
                k = x.shape[2] * x.shape[3]
                role = ("pointwise" if k == 1 else "spatial") if x.groups == 1 else "depthwise"
                role = role if x.groups in (1, x.in_features) else "grouped"
                out.setdefault(role, []).append(x.name)
        order = ("pointwise", "spatial", "depthwise", "grouped")
    return {a: out[a] for a in order if a in out}


def _virtual_anatomy(arch: Arch):
    """An `Anatomy` built from the arithmetic, so methods can say what they train without a model."""
    from peftlab.models.anatomy import Anatomy

    linear_names = [
        x.name for x in arch.layers if x.kind in ("linear", "conv") and not _under(x.name, arch.head)
    ]
    return Anatomy(
        family=arch.family,
        blocks=arch.blocks,
        last_block=arch.last_block,
        head=arch.head,
        aliases=_aliases(arch),
        linear_names=linear_names,
        backbone=arch.blocks[0].split(".")[0],
        kind=arch.kind,
        block_list=arch.blocks[0].rsplit(".", 1)[0],
    )


@dataclass
class Plan:
    """What a method does to the layers: trainable weights and biases, modules PEFT copies, LoRA targets."""

    train_weight: set[str] = field(default_factory=set)  # layer names whose weight trains
    train_bias: set[str] = field(default_factory=set)  # layer names whose bias trains
    copied: list[str] = field(default_factory=list)  # modules_to_save: module names wrapped (original + copy)
    targets: list[str] = field(default_factory=list)  # LoRA target layer names
    r: int = 0
    dora: bool = False
    lora_label: str = ""
    unsupported: str = ""  # a setting the formulas do not cover: the prediction is withheld, with this reason


def _resolve_targets(anat, entries: list[str]) -> list[str]:
    """resolve_lora_targets on the arithmetic: aliases, then own names matched as dotted suffixes (never the head)."""
    out: set[str] = set()
    for entry in (e.strip() for e in entries):
        if entry in anat.aliases:
            out.update(anat.aliases[entry])
        else:
            out.update(n for n in anat.linear_names if n == entry or n.endswith("." + entry))
    return sorted(out)


def plan_method(arch: Arch, method: str, cfg, task: str) -> Plan | None:
    """The method's effect by name; None for a method without formulas."""
    from peftlab.methods import REGISTRY

    anat = _virtual_anatomy(arch)
    m = REGISTRY.get(method)
    if m is None:
        return None
    plan = Plan()
    if m.trainable_modules is not None:  # baseline, head, last-layer, full: whole modules train
        names = m.trainable_modules(anat, cfg)
        plan.train_weight = {x.name for x in arch.layers if _under(x.name, names)}
        plan.train_bias = set(plan.train_weight)
        return plan
    if method != "lora":
        return None
    from peftlab.models.anatomy import default_lora_targets

    entries = list(cfg.lora_target or default_lora_targets(anat))
    to_save = list(anat.head) if cfg.lora_modules_to_save is None else list(cfg.lora_modules_to_save)
    if task == "text-classification":  # PEFT's SEQ_CLS task type always adds these two
        to_save += ["classifier", "score"]
    # PEFT never puts an adapter inside a module it saves whole (dotted match); it wraps every module whose
    # name *ends with* an entry (plain string suffix: "classifier" also wraps DistilBERT's "pre_classifier").
    targets = [
        t
        for t in _resolve_targets(anat, entries)
        if not any(re.match(rf"(^|.*\.){m}($|\..*)", t) for m in to_save)
    ]
    matched = [n for n in _module_names(arch) if any(n.endswith(m) for m in to_save)]
    nested = [(a, b) for a in matched for b in matched if b.startswith(a + ".")]
    if nested:  # PEFT then wraps a module inside a saved module's copy; no formula follows it
        a, b = nested[0]
        plan.unsupported = f"modules_to_save wraps {a} and, inside it, {b}: no formula for nested copies"
    plan.copied = [c for c in matched if any(_under(x.name, [c]) for x in arch.layers)]
    plan.targets, plan.r, plan.dora = targets, cfg.lora_r, bool(cfg.lora_use_dora)
    plan.lora_label = f"{LORA} r={cfg.lora_r} on {','.join(entries)}"
    frozen_originals = {x.name for x in arch.layers if _under(x.name, plan.copied)}
    if cfg.lora_bias == "all":  # every bias outside the saved modules trains
        plan.train_bias = {x.name for x in arch.layers if x.bias and x.name not in frozen_originals}
    elif cfg.lora_bias == "lora_only":  # the biases of the adapted layers train
        plan.train_bias = {x.name for x in arch.layers if x.bias and x.name in targets}
    return plan


# ---------------------------------------------------------------------------------------------------------------
# Formulas with the numbers filled in.


def _num(n: int) -> str:
    return f"{n:,}"


def _expr(x: Layer, part: str = "all") -> str:
    """One layer's count as arithmetic: "768×768 + 768", "2×768", "words 50265×768"; part "bias": the bias alone."""
    if part == "bias":
        return str(x.bias)
    if x.kind == "linear":
        w = f"{x.in_features}×{x.out_features}"
    elif x.kind == "conv":
        k = x.shape[2] * x.shape[3]
        factors = [x.shape[1]] if x.shape[1] > 1 else []  # in/groups (1 for depthwise)
        factors += [x.out_features] + ([x.shape[2], x.shape[3]] if k > 1 else [])
        w = "×".join(str(f) for f in factors)
    elif x.kind == "norm":
        w = f"2×{x.shape[0]}" if x.bias else str(x.shape[0])  # weight + bias
        return f"{x.what} {w}" if x.what else w
    else:  # embedding (rows, dim); a bare parameter drops its 1s: (1, 197, 768) -> 197×768
        w = "×".join(str(d) for d in x.shape if d != 1 or x.kind == "embedding") or "1"
    w = f"{x.what} {w}" if x.what else w
    return f"{w} + {x.bias}" if x.bias else w


def _paren(e: str) -> str:
    """Brackets for an expression about to be multiplied, when it is a sum at its top level."""
    depth = 0
    for i, ch in enumerate(e):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if depth == 0 and e[i : i + 3] == " + ":
            return f"({e})"
    return e


def _merge(items: list[tuple[str, int]]) -> tuple[tuple[int, str, int], ...]:
    """[(expr, value)] -> ((count, expr, value), ...): equal expressions counted once, first-appearance order."""
    merged: dict[str, list[int]] = {}
    for expr, value in items:
        merged.setdefault(expr, [0, value])[0] += 1
    return tuple((n, e, v) for e, (n, v) in merged.items())


def _times(n: int, e: str) -> str:
    return e if n == 1 else f"{n} × {_paren(e)}"


def render(items: list[tuple[int | None, str, int]]) -> str:
    """[(block, expr, value)] -> "words 97×48 + 2 blocks × 3 × (48×48 + 48) = 21,...": equal terms merge inside
    a block, then equal blocks merge into "N blocks × ..."."""
    if not items:
        return "0"
    loose = _merge([(e, v) for b, e, v in items if b is None])
    per_block: dict[int, list[tuple[str, int]]] = {}
    for b, e, v in items:
        if b is not None:
            per_block.setdefault(b, []).append((e, v))
    same: dict[tuple, int] = {}  # a block's merged terms -> how many blocks have exactly these
    for terms in map(_merge, per_block.values()):
        same[terms] = same.get(terms, 0) + 1
    parts = [_times(n, e) for n, e, _ in loose]
    for terms, n_blocks in same.items():
        inner = [_times(n, e) for n, e, _ in terms]
        body = _paren(inner[0]) if len(inner) == 1 else "[" + " + ".join(inner) + "]"  # 12 blocks × 3 × (...)
        parts.append(f"{n_blocks} block{'s' if n_blocks != 1 else ''} × {body}")
    text = " + ".join(parts)
    total = sum(v for _, _, v in items)
    return text if text == str(total) else f"{text} = {_num(total)}"


def _lora_expr(x: Layer, r: int) -> tuple[str, int]:
    """LoRA on one layer: A (r × in [× k × k]) + B (out × r / groups): "8 × (768 + 768)"."""
    if x.kind == "conv":
        kh, kw = x.shape[2], x.shape[3]
        a_in = f"{x.in_features}×{kh}×{kw}" if kh * kw > 1 else str(x.in_features)
        a, b = r * x.in_features * kh * kw, x.out_features * r // x.groups
        if x.groups == 1:
            return f"{r} × ({a_in} + {x.out_features})", a + b
        return f"{r}×{a_in} + {x.out_features}×{r}/{x.groups}", a + b
    return f"{r} × ({x.in_features} + {x.out_features})", r * (x.in_features + x.out_features)


def _line(component: str, items: list, trainable_items: list | None, what: str = "") -> dict:
    """One breakdown row; `what` labels a partial trainable count ("biases")."""
    params = sum(v for _, _, v in items)
    trainable = params if trainable_items is None else sum(v for _, _, v in trainable_items)
    row = {"component": component, "params": params, "trainable": trainable, "formula": render(items)}
    if trainable_items and 0 < trainable < params:
        row["trainable_formula"] = f"{what} {render(trainable_items)}".strip()
    return row


def breakdown(arch: Arch, plan: Plan) -> list[dict]:
    """Predicted lines: the originals by component, then what PEFT adds (LoRA, DoRA, modules_to_save copies)."""
    comps: dict[str, tuple[list, list]] = {}
    biases_only = set()  # components where only biases train (LoRA's bias option)
    for x in arch.layers:
        items, train = comps.setdefault(x.component, ([], []))
        items.append((x.block, _expr(x), x.params))
        if x.name in plan.train_weight:  # whole modules train: weight and bias
            train.append((x.block, _expr(x), x.params))
        elif x.name in plan.train_bias and x.bias:
            train.append((x.block, _expr(x, "bias"), x.bias))
            biases_only.add(x.component)
    rows = [
        _line(c, items, train, "biases" if c in biases_only else "") for c, (items, train) in comps.items()
    ]
    layers = {x.name: x for x in arch.layers}
    targets = sorted((layers[t] for t in plan.targets), key=lambda x: -1 if x.block is None else x.block)
    if targets:
        rows.append(_line(plan.lora_label, [(x.block, *_lora_expr(x, plan.r)) for x in targets], None))
    if targets and plan.dora:  # one magnitude per output feature of each adapted layer
        rows.append(_line(DORA, [(x.block, str(x.out_features), x.out_features) for x in targets], None))
    if plan.copied:
        copies = [(x.block, _expr(x), x.params) for x in arch.layers if _under(x.name, plan.copied)]
        rows.append(_line(f"{COPIES} ({', '.join(plan.copied)})", copies, None))
    return rows


def predict_from_config(config, task: str, num_labels: int, cfg, *, pooling: str) -> Prediction:
    """Arithmetic only: config fields + method settings -> predicted trainable / total and the breakdown."""
    arch = architecture(config, task, num_labels, pooling)
    family = _family_name(config)
    if arch is None:
        return Prediction(
            None, None, note=f"no formula for {family} yet: measured counts only", family=family
        )
    plan = plan_method(arch, cfg.method, cfg, task)
    if plan is None or plan.unsupported:
        why = plan.unsupported if plan else f"no formula for method {cfg.method} yet"
        return Prediction(
            None, None, note=f"{why}: measured counts only", family=arch.family, model_class=arch.model_class
        )
    rows = breakdown(arch, plan)
    return Prediction(
        trainable=sum(r["trainable"] for r in rows),
        total=sum(r["params"] for r in rows),
        breakdown=rows,
        family=arch.family,
        model_class=arch.model_class,
        notes=arch.notes,
    )


def _family_name(config) -> str:
    if config.model_type == MEANPOOL:
        return config.encoder_config.model_type
    return config.model_type


# ---------------------------------------------------------------------------------------------------------------
# Measured: PyTorch's own count on the (meta-device) model, and the same parameters sorted into components.


def measure(model) -> dict:
    """Counts as PEFT counts them: every parameter of the (possibly wrapped) model, originals + modules_to_save copies."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


def _component_of(name: str, layer_of: dict[str, Layer], lora_label: str, copies_label: str) -> str:
    """A parameter name of the (PEFT-wrapped) model -> the breakdown line it belongs to."""
    name = name.removeprefix("base_model.model.")
    if ".lora_A." in name or ".lora_B." in name:
        return lora_label
    if ".lora_magnitude_vector." in name:
        return DORA
    if ".modules_to_save." in name:
        return copies_label
    name = name.replace(".base_layer.", ".").replace(".original_module.", ".")
    if name in layer_of:  # a bare parameter (ViT's cls_token)
        return layer_of[name].component
    module = name.rsplit(".", 1)[0]
    return layer_of[module].component if module in layer_of else "not in the formulas"


def measure_breakdown(model, prediction: Prediction, arch: Arch | None) -> list[dict]:
    """Measured params / trainable per component (the prediction's lines; top-level modules without formulas)."""
    rows: dict[str, list[int]] = {}
    labels = [r["component"] for r in prediction.breakdown]
    lora_label = next((c for c in labels if c.startswith(LORA)), LORA)
    copies_label = next((c for c in labels if c.startswith(COPIES)), COPIES)
    layer_of = {x.name: x for x in arch.layers} if arch else {}
    for name, p in model.named_parameters():
        if arch:
            comp = _component_of(name, layer_of, lora_label, copies_label)
        else:
            comp = name.removeprefix("base_model.model.").split(".")[0]
        row = rows.setdefault(comp, [0, 0])
        row[0] += p.numel()
        row[1] += p.numel() if p.requires_grad else 0
    return [{"component": c, "params": v[0], "trainable": v[1]} for c, v in rows.items()]


# ---------------------------------------------------------------------------------------------------------------
# Entry points.


def _resolved_pooling(model_name: str, pooling: str, task: str, config) -> str:
    if pooling in ("mean", "cls", "image"):
        return pooling
    if task == "image-classification":
        return "image"
    from peftlab.models.loading import _locate, _resolve_pooling  # load_model's own rule for "auto"

    return _resolve_pooling(model_name, pooling, task, _locate(model_name), config)


def predict(model_name: str, task: str, num_labels: int, cfg, *, pooling: str = "auto") -> Prediction:
    """Predicted counts for `cfg.method` on `model_name` from its config.json alone (no weights, no model built)."""
    from peftlab.models import load_config

    config = load_config(model_name)
    return predict_from_config(
        config, task, num_labels, cfg, pooling=_resolved_pooling(model_name, pooling, task, config)
    )


def compare_counts(measured: dict, predicted: Prediction) -> dict:
    """The record's `params`: measured counts, predicted counts, whether they agree, and the breakdown."""
    match = None
    if predicted.trainable is not None and predicted.total is not None:
        match = predicted.trainable == measured["trainable"] and predicted.total == measured["total"]
    return {
        "trainable": measured["trainable"],
        "total": measured["total"],
        "trainable_pct": round(100.0 * measured["trainable"] / max(measured["total"], 1), 4),
        "predicted_trainable": predicted.trainable,
        "predicted_total": predicted.total,
        "match": match,
        "breakdown": predicted.breakdown,
        "note": predicted.note,
        "counting": COUNTING,
    }


def _is_image_config(config) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    mt = config.model_type
    if mt in ("clip", "clip_vision_model"):
        return True
    return (
        mt in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        and mt not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    )


def count(model_name: str, method: str, *, task: str | None = None, num_labels: int = 2, cfg=None) -> dict:
    """`peftlab params`: build the model on the meta device from its config, apply the method, count and predict."""
    import warnings

    from peftlab.config import LORA_BIAS, RunConfig
    from peftlab.errors import BadInput
    from peftlab.methods import REGISTRY
    from peftlab.models import load_config, load_model

    if method not in REGISTRY:
        raise BadInput(f"--method {method!r}: unknown method; choose from {', '.join(REGISTRY)}")
    if num_labels is None or num_labels < 2:
        raise BadInput(f"--num-labels {num_labels}: a classifier needs at least 2 classes")
    cfg = copy.deepcopy(cfg) if cfg is not None else RunConfig()
    if cfg.lora_r <= 0:
        raise BadInput(f"--lora-r {cfg.lora_r}: the LoRA rank must be a positive integer")
    if cfg.lora_bias not in LORA_BIAS:
        raise BadInput(f"--lora-bias {cfg.lora_bias!r}: expected one of {', '.join(LORA_BIAS)}")
    config = load_config(model_name)
    task = task or ("image-classification" if _is_image_config(config) else "text-classification")
    if task not in ("text-classification", "image-classification"):
        raise BadInput(f"--task {task}: parameter counts cover text-classification and image-classification")
    cfg.model, cfg.method, cfg.task = model_name, method, task
    labels = [f"class_{i}" for i in range(num_labels)]
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # transformers' deprecation notes, triggered inside PEFT
        loaded = load_model(model_name, task, labels, pooling=cfg.pooling, weights=False)  # meta device
        try:
            model = REGISTRY[method].prepare(loaded.model, loaded.anatomy, cfg)
        except ValueError as e:  # PEFT rejects a setting, e.g. a rank that grouped convolutions cannot take
            raise BadInput(
                f"--method {method}: PEFT refuses these settings ({str(e).splitlines()[0]})"
            ) from None
    measured = measure(model)
    predicted = predict_from_config(config, task, num_labels, cfg, pooling=loaded.pooling)
    arch = architecture(config, task, num_labels, loaded.pooling) if predicted.trainable is not None else None
    result = compare_counts(measured, predicted)
    by_comp = {r["component"]: r for r in measure_breakdown(model, predicted, arch)}
    rows = []
    for row in predicted.breakdown:
        got = by_comp.pop(row["component"], {"params": 0, "trainable": 0})
        rows.append({**row, "measured_params": got["params"], "measured_trainable": got["trainable"]})
    for comp, got in by_comp.items():  # measured parameters no formula line accounts for
        row = {"component": comp, "params": None, "trainable": None, "formula": None}
        rows.append({**row, "measured_params": got["params"], "measured_trainable": got["trainable"]})
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {
        "model": model_name,
        "source": loaded.source,
        "model_class": type(base).__name__,
        "family": loaded.anatomy.family,
        "method": method,
        "task": task,
        "num_labels": num_labels,
        "pooling": loaded.pooling,
        **result,
        "breakdown": rows,
        "notes": predicted.notes,
    }


def _wrap(text: str, width: int) -> list[str]:
    """Split a long formula at its top-level " + " so each piece fits `width` characters."""
    terms, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if depth == 0 and text[i : i + 3] == " + ":
            terms.append(text[last:i])
            last = i + 3
    terms.append(text[last:])
    lines = [terms[0]]
    for term in terms[1:]:
        if len(lines[-1]) + 3 + len(term) <= width:
            lines[-1] += " + " + term
        else:
            lines.append("+ " + term)
    return lines


def format_table(result: dict) -> str:
    """The human answer: one line per component with its formula, then predicted and measured totals and their
    difference. A component whose measured count differs gets a second line with the measured numbers."""
    rows = result["breakdown"]
    labels = ["component", "measured on meta", "predicted", "difference"]
    w = max(len(x) for x in [r["component"] for r in rows] + labels)
    indent = " " * (w + 2 * 13 + 12)

    def line(label: str, params, trainable, check: str = "", text: str = "") -> list[str]:
        p = "" if params is None else _num(params) if isinstance(params, int) else params
        t = "" if trainable is None else _num(trainable) if isinstance(trainable, int) else trainable
        pieces = _wrap(text, 84)
        out = [f"{label:<{w}}  {p:>13}  {t:>13}  {check:<5}  {pieces[0]}".rstrip()]
        return out + [f"{indent}{piece}" for piece in pieces[1:]]

    out = [
        f"{result['model']} · {result['model_class']} · method {result['method']} · {result['task']}, "
        f"{result['num_labels']} labels",
        f"source: {result['source']}",
        "",
    ]
    out += line("component", "params", "trainable", "check", "formula, with the numbers from the config")
    for r in rows:
        if r["params"] is None:  # parameters no formula accounts for: measured only
            out += line(
                r["component"], r["measured_params"], r["measured_trainable"], "", "(measured; no formula)"
            )
            continue
        measured = (r.get("measured_params"), r.get("measured_trainable"))
        same = measured == (r["params"], r["trainable"])
        out += line(r["component"], r["params"], r["trainable"], "ok" if same else "DIFF", r["formula"])
        if "trainable_formula" in r:
            out += line("", None, None, "", "trainable: " + r["trainable_formula"])
        if not same:
            out += line(
                "  measured", measured[0], measured[1], "", "<- PyTorch counts this; the formula is wrong"
            )
    pct = f"{result['trainable_pct']:.4f}% trainable"
    out.append("")
    if result["predicted_total"] is not None:
        pred_pct = 100.0 * result["predicted_trainable"] / max(result["predicted_total"], 1)
        out += line(
            "predicted",
            result["predicted_total"],
            result["predicted_trainable"],
            "",
            f"{pred_pct:.4f}% trainable",
        )
    out += line("measured on meta", result["total"], result["trainable"], "", pct)
    if result["match"] is None:
        out.append(result["note"])
    elif result["match"]:
        out += line("difference", "0", "0", "", "the prediction equals PyTorch's count")
    else:
        dt = result["total"] - result["predicted_total"]
        dtr = result["trainable"] - result["predicted_trainable"]
        out += line("difference", f"{dt:+,}", f"{dtr:+,}", "", "MISMATCH: the prediction is wrong")
    out += [note for note in result.get("notes") or []]
    out.append(f"counting: {result['counting']}")
    return "\n".join(out)
