"""An architecture as arithmetic: one `Layer` per module with parameters, sized from config fields, grouped in an `Arch`.

Family modules (params/families/) build Arch values with these constructors; methods plan on them (params/plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

# Breakdown lines, in the order a transformer encoder runs them.
EMB, QKV, ATT_OUT, FFN_IN, FFN_OUT = (
    "embeddings",
    "attention q,k,v",
    "attention out",
    "feed-forward in",
    "feed-forward out",
)
NORMS, FINAL, POOLER, HEAD = "block layer norms", "final layer norm", "pooler", "head"


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
    stride: int = 1  # conv stride (FLOPs follow the output size; parameters do not depend on it)

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
    # what the FLOP arithmetic needs beyond the layers (flops/): heads, attention dropout, pre-norm, image geometry
    info: dict = field(default_factory=dict)


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


def param(name: str, comp: str, shape: tuple[int, ...], what: str) -> Layer:
    """A bare nn.Parameter (ViT's class token (1, 1, H), CLIP's class embedding (H,))."""
    return Layer(name, comp, "param", shape, what=what)


# ---------------------------------------------------------------------------------------------------------------
# The transformer block, written once: every encoder family differs only in its module names and biases.


@dataclass(frozen=True)
class BlockNames:
    """Block-relative module names of one encoder family's transformer block (attention, two norms, MLP)."""

    query: str
    key: str
    value: str
    attn_out: str
    norm1: str  # BERT: after attention (post-norm); ViT/CLIP: before it (pre-norm); the count is the same
    ffn_in: str
    ffn_out: str
    norm2: str


def attention_width(heads: int, hidden: int) -> int:
    # q/k/v project H -> heads × (H // heads); equal to H whenever heads divides H (the classes insist on it)
    return heads * (hidden // heads)


def transformer_block(
    block: str, i: int, names: BlockNames, H: int, F: int, A: int, qkv_bias: bool = True
) -> list[Layer]:
    """One block `block` (index i), hidden H, feed-forward F, attention width A:
    3 × (H×A [+ A]) + (A×H + H) + 2 × 2H + (H×F + F) + (F×H + H) parameters."""
    n = names
    return [
        linear(f"{block}.{n.query}", QKV, H, A, qkv_bias, block=i, role="query"),
        linear(f"{block}.{n.key}", QKV, H, A, qkv_bias, block=i, role="key"),
        linear(f"{block}.{n.value}", QKV, H, A, qkv_bias, block=i, role="value"),
        linear(f"{block}.{n.attn_out}", ATT_OUT, A, H, block=i, role="attn_out"),
        norm(f"{block}.{n.norm1}", NORMS, H, block=i),
        linear(f"{block}.{n.ffn_in}", FFN_IN, H, F, block=i, role="ffn_in"),  # H -> F
        linear(f"{block}.{n.ffn_out}", FFN_OUT, F, H, block=i, role="ffn_out"),  # F -> H
        norm(f"{block}.{n.norm2}", NORMS, H, block=i),
    ]


def transformer_arch(
    family: str,
    model_class: str,
    layers: list[Layer],
    head: list[Layer],
    notes: list[str],
    block_list: str,
    info: dict | None = None,
) -> Arch:
    """Blocks are block_list.0 .. block_list.(L-1); last-layer trains the last one; the head is its top modules."""
    n_blocks = 1 + max(x.block for x in layers if x.block is not None)
    blocks = [f"{block_list}.{i}" for i in range(n_blocks)]
    head_modules = list(dict.fromkeys(x.name.split(".")[0] for x in head))  # classifier.dense -> classifier
    arch = Arch(family, model_class, layers + head, "transformer", blocks, [blocks[-1]], head_modules, notes)
    arch.info = dict(info or {})
    return arch


def attention_info(heads: int, dropout, pre_norm: bool, **more) -> dict:
    """Arch.info of a transformer: attention heads, the attention-probability dropout in training, norm placement."""
    return {"heads": heads, "attention_dropout": float(dropout or 0.0), "pre_norm": pre_norm, **more}


def attention_note(heads: int, hidden: int) -> str:
    return f"attention width = {heads} heads × {hidden // heads} = {heads * (hidden // heads)}"


def cnn_last_stage(layers: list[Layer], blocks: list[str]) -> list[str]:
    """anatomy's rule for CNNs: the trailing blocks whose last conv writes the last block's width."""

    def out_width(block: str) -> int:
        return [x for x in layers if x.kind == "conv" and x.name.startswith(block + ".")][-1].out_features

    last, tail = out_width(blocks[-1]), []
    for b in reversed(blocks):
        if out_width(b) != last:
            break
        tail.insert(0, b)
    return tail
