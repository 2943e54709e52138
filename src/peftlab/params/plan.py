"""What a method does to an architecture, as arithmetic: which layers train, what PEFT copies, what adapters it adds.

Each method's `plan(arch, anat, knobs, task)` returns a `Plan` built with the helpers here; params/render.py prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peftlab.params.layers import Arch, Layer

if TYPE_CHECKING:  # models/ loads transformers: imported where an anatomy is built, not to plan
    from peftlab.models.anatomy import Anatomy

COPIES = "modules_to_save copies"


@dataclass
class Added:
    """A breakdown line of parameters the method adds (adapter weights), with the measured names that belong to it."""

    component: str  # "lora A,B r=8 on query,value"
    items: list[
        tuple[int | None, str, int]
    ]  # (block, expression, value) per term: rendered like any component
    markers: tuple[
        str, ...
    ]  # a parameter whose name contains one of these counts here: (".lora_A.", ".lora_B.")
    trainable: bool = True  # False: stored in the model but frozen (rare)
    layers: tuple[str, ...] = ()  # the layers it adapts (flops/: where its matmuls run)


@dataclass
class Plan:
    """A method's effect on the layers: trainable weights and biases, modules PEFT copies whole, added adapters."""

    train_weight: set[str] = field(default_factory=set)  # layer names whose weight (and bias) trains
    train_bias: set[str] = field(default_factory=set)  # layer names whose bias trains
    copied: list[str] = field(default_factory=list)  # modules_to_save: module names wrapped (original + copy)
    added: list[Added] = field(default_factory=list)
    unsupported: str = ""  # a setting the formulas do not cover: the prediction is withheld, with this reason


def under(name: str, prefixes) -> bool:
    """name is one of the prefixes or inside one ("" covers everything)."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def module_names(arch: Arch) -> list[str]:
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
            if x.role and under(x.name, arch.blocks):
                out.setdefault(x.role, []).append(x.name)
        order = ("query", "key", "value", "qkv", "attn_out", "ffn_in", "ffn_out")
    else:
        for x in arch.layers:
            if x.kind == "conv" and under(x.name, arch.blocks + arch.last_block):
                k = x.shape[2] * x.shape[3]
                role = ("pointwise" if k == 1 else "spatial") if x.groups == 1 else "depthwise"
                role = role if x.groups in (1, x.in_features) else "grouped"
                out.setdefault(role, []).append(x.name)
        order = ("pointwise", "spatial", "depthwise", "grouped")
    return {a: out[a] for a in order if a in out}


def virtual_anatomy(arch: Arch) -> Anatomy:
    """The `Anatomy` of the model the arithmetic describes, so methods plan with the names they prepare with."""
    from peftlab.models.anatomy import Anatomy

    linear_names = [
        x.name for x in arch.layers if x.kind in ("linear", "conv") and not under(x.name, arch.head)
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
        module_names=module_names(arch),
    )


def layers_named(arch: Arch, names) -> list[Layer]:
    """The layers with these qualified names, in block order (then name order)."""
    by_name = {x.name: x for x in arch.layers}
    return sorted((by_name[n] for n in names), key=lambda x: -1 if x.block is None else x.block)


# --- building blocks for methods' plans --------------------------------------------------------------------------


def whole_modules(arch: Arch, names: list[str]) -> Plan:
    """Every parameter under these modules trains (baseline: none; head; last-layer; full: [""])."""
    trained = {x.name for x in arch.layers if under(x.name, names)}
    return Plan(train_weight=trained, train_bias=set(trained))


def peft_saved(
    arch: Arch, anat: Anatomy, modules_to_save: list[str] | None, task: str
) -> tuple[list[str], list[str], str]:
    """PEFT's modules_to_save as arithmetic -> (entries as PEFT sees them, modules copied, unsupported reason).

    PEFT's SEQ_CLS task type always adds "classifier" and "score"; it wraps every module whose name *ends with* an
    entry (plain string suffix: "classifier" also wraps DistilBERT's "pre_classifier"), original + trainable copy."""
    entries = list(anat.head) if modules_to_save is None else list(modules_to_save)
    if task == "text-classification":
        entries += ["classifier", "score"]
    matched = [n for n in anat.module_names if any(n.endswith(m) for m in entries)]
    nested = [(a, b) for a in matched for b in matched if b.startswith(a + ".")]
    reason = ""
    if nested:  # PEFT then wraps a module inside a saved module's copy; no formula follows it
        a, b = nested[0]
        reason = f"modules_to_save wraps {a} and, inside it, {b}: no formula for nested copies"
    copied = [c for c in matched if any(under(x.name, [c]) for x in arch.layers)]
    return entries, copied, reason


def outside_saved(targets: list[str], saved_entries: list[str]) -> list[str]:
    """PEFT never puts an adapter inside a module it saves whole (a dotted-name match of the entry)."""
    return [t for t in targets if not any(re.match(rf"(^|.*\.){m}($|\..*)", t) for m in saved_entries)]
