"""Backbone introspection: where a model's blocks, head and Linear/Conv2d layers are, found from the model itself.

`anatomy(model)` before any PEFT wrapping (works on the meta device); `resolve_targets(anat, ["query", "value"])`.
"""

import difflib
from dataclasses import dataclass, field

from torch import nn

from peftlab.errors import BadInput

TRANSFORMER_ALIASES = ("query", "key", "value", "qkv", "attn_out", "ffn_in", "ffn_out")
CNN_ALIASES = ("pointwise", "spatial", "depthwise", "grouped")

# Leaf names seen across families for each role. BERT/RoBERTa: query/key/value, attention.output.dense,
# intermediate.dense, output.dense; DistilBERT: q_lin/k_lin/v_lin/out_lin, ffn.lin1/lin2; ViT (transformers 5):
# q_proj/k_proj/v_proj/o_proj, mlp.fc1/fc2; CLIP: self_attn.q_proj/k_proj/v_proj/out_proj, mlp.fc1/fc2.
_LEAVES = {
    "query": {"query", "q_proj", "q_lin", "q", "wq"},
    "key": {"key", "k_proj", "k_lin", "k", "wk"},
    "value": {"value", "v_proj", "v_lin", "v", "wv"},
    "qkv": {"qkv", "query_key_value", "wqkv", "in_proj", "c_attn"},
    "attn_out": {"o_proj", "out_proj", "out_lin", "o"},
    "ffn_in": {"fc1", "lin1", "up_proj", "gate_proj", "w1", "wi", "c_fc", "intermediate_dense"},
    "ffn_out": {"fc2", "lin2", "down_proj", "w2", "wo", "output_dense"},
}
_GENERIC_LEAVES = {"dense", "proj", "c_proj", "out", "output"}


@dataclass
class Anatomy:
    """Where things are in one model; every name is a qualified module name of the model given to `anatomy`."""

    family: str  # config.model_type of the backbone: "bert", "vit", "clip_vision_model", "mobilenet_v2", ...
    # the backbone's repeated blocks in forward order (transformer layers; CNN stages or blocks)
    blocks: list[str]
    last_block: list[str]  # what `last-layer` trains besides the head
    head: list[str]  # the classification head's top-level modules ([] for a bare backbone)
    # portable alias -> qualified Linear/Conv2d names, in forward order (only the aliases this model has)
    aliases: dict[str, list[str]]
    # every Linear/Conv2d outside the head, in registration order: the LoRA candidates
    linear_names: list[str]
    backbone: str = ""  # qualified name of the backbone ("bert", "vit", "encoder"); "" when the model is one
    kind: str = "transformer"  # "transformer" | "cnn"
    block_list: str = ""  # the nn.ModuleList holding the blocks ("bert.encoder.layer", "vit.layers")
    module_names: list[str] = field(
        default_factory=list
    )  # every named module but the root, in named_modules order


def _lora_types() -> tuple[type, ...]:
    types: tuple[type, ...] = (nn.Linear, nn.Conv2d)
    try:  # GPT-2 style transposed Linear
        from transformers.pytorch_utils import Conv1D

        types += (Conv1D,)
    except ImportError:
        pass
    return types


def _in_out(module: nn.Module) -> tuple[int, int]:
    """(in, out) features of a Linear / Conv2d (channels) / Conv1D (weight is (in, out))."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    return int(module.weight.shape[0]), int(module.weight.shape[1])


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # numel works on meta tensors too


def _find_block_list(model: nn.Module) -> str:
    """The nn.ModuleList of same-typed children holding the most parameters: the backbone's trunk."""
    best, best_params = None, -1
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        params = _param_count(module)
        if params > best_params:
            best, best_params = name, params
    if best is None or best_params == 0:
        raise BadInput(
            f"{type(model).__name__} has no list of repeated blocks: peftlab supports transformer encoders "
            "(BERT, RoBERTa, DistilBERT, ViT, CLIP) and CNNs (ResNet, MobileNetV2)"
        )
    return best


def _ancestors(name: str) -> list[str]:
    """'a.b.c' -> ['a.b', 'a', ''] (deepest first, the root last)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def _family(model: nn.Module, block_list: str) -> str:
    for prefix in _ancestors(block_list):
        config = getattr(model.get_submodule(prefix), "config", None)
        model_type = getattr(config, "model_type", "")
        if isinstance(model_type, str) and model_type:
            return model_type
    return type(model).__name__.lower()


def _backbone(model: nn.Module, block_list: str) -> str:
    """The outermost proper descendant on the path to the blocks that is a PreTrainedModel; "" if none."""
    from transformers import PreTrainedModel

    for prefix in reversed(_ancestors(block_list)[:-1]):  # outermost first, root excluded
        if isinstance(model.get_submodule(prefix), PreTrainedModel):
            return prefix
    return ""


def _head(model: nn.Module, backbone: str) -> list[str]:
    if not backbone:
        return []
    top = backbone.split(".")[0]
    return [name for name, child in model.named_children() if name != top and _param_count(child) > 0]


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _transformer_role(rel: str, module: nn.Module) -> str | None:
    """Role of one Linear inside a transformer block from its block-relative name, then from its shape."""
    parts = rel.lower().split(".")
    leaf, context = parts[-1], parts[:-1]
    in_attention = any("attn" in p or "attention" in p for p in context)
    for role in ("query", "key", "value", "qkv", "attn_out", "ffn_in", "ffn_out"):
        if leaf in _LEAVES[role]:
            return role
    if leaf in _GENERIC_LEAVES:
        if in_attention:
            return "attn_out"  # BERT attention.output.dense, timm attn.proj, GPT-2 attn.c_proj
        if any("intermediate" in p for p in context):
            return "ffn_in"  # BERT intermediate.dense
        if any(p in ("output", "mlp", "ffn") for p in context):
            in_f, out_f = _in_out(module)
            return "ffn_out" if in_f >= out_f else "ffn_in"  # BERT output.dense: (4H -> H)
    if in_attention:
        return None
    in_f, out_f = _in_out(module)  # unknown name outside attention: the MLP widens (H -> 4H) then narrows
    if out_f > in_f:
        return "ffn_in"
    if in_f > out_f:
        return "ffn_out"
    return None


def _cnn_role(module: nn.Module) -> str | None:
    if not isinstance(module, nn.Conv2d):
        return None
    if module.groups == 1:
        return "pointwise" if tuple(module.kernel_size) == (1, 1) else "spatial"
    return "depthwise" if module.groups == module.in_channels else "grouped"


def _out_channels(block: nn.Module) -> int | None:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None  # the last conv registered writes the block's output


def anatomy(model: nn.Module) -> Anatomy:
    """Find blocks, head, aliases and LoRA candidates of `model` (a *For*Classification, a meanpool wrapper, a backbone)."""
    lora_types = _lora_types()
    block_list = _find_block_list(model)
    blocks = [f"{block_list}.{i}" for i in range(len(model.get_submodule(block_list)))]
    backbone = _backbone(model, block_list)
    head = _head(model, backbone)
    linear_names = [
        name for name, m in model.named_modules() if isinstance(m, lora_types) and not _inside(name, head)
    ]
    in_blocks = [n for n in linear_names if _inside(n, blocks)]
    has_linear = any(isinstance(model.get_submodule(n), (nn.Linear,) + lora_types[2:]) for n in in_blocks)
    kind = "transformer" if has_linear else "cnn"

    if kind == "transformer":
        last_block = [blocks[-1]]
    else:
        # CNN: the last stage = trailing blocks with the last block's output channels (MobileNetV2: the 320-wide
        # inverted residual; ResNet: blocks are stages already), plus the parameterised modules that follow the
        # blocks in the same parent (MobileNetV2's 1x1 conv 320 -> 1280).
        last_width = _out_channels(model.get_submodule(blocks[-1]))
        tail = []
        for name in reversed(blocks):
            if _out_channels(model.get_submodule(name)) != last_width:
                break
            tail.insert(0, name)
        parent_name, _, list_attr = block_list.rpartition(".")
        parent = model.get_submodule(parent_name)
        children = list(parent.named_children())
        after = [n for n, _ in children[[n for n, _ in children].index(list_attr) + 1 :]]
        followers = [
            f"{parent_name}.{n}" if parent_name else n
            for n in after
            if _param_count(parent.get_submodule(n)) > 0
        ]
        last_block = tail + followers

    aliases: dict[str, list[str]] = {}
    if kind == "transformer":
        for block in blocks:
            for name in in_blocks:
                if not _inside(name, [block]):
                    continue
                role = _transformer_role(name[len(block) + 1 :], model.get_submodule(name))
                if role:
                    aliases.setdefault(role, []).append(name)
        aliases = {a: aliases[a] for a in TRANSFORMER_ALIASES if a in aliases}
    else:
        for name in linear_names:
            if _inside(name, blocks + last_block):
                role = _cnn_role(model.get_submodule(name))
                if role:
                    aliases.setdefault(role, []).append(name)
        aliases = {a: aliases[a] for a in CNN_ALIASES if a in aliases}

    return Anatomy(
        family=_family(model, block_list),
        blocks=blocks,
        last_block=last_block,
        head=head,
        aliases=aliases,
        linear_names=linear_names,
        backbone=backbone,
        kind=kind,
        block_list=block_list,
        module_names=[name for name, _ in model.named_modules() if name],
    )


def default_targets(anat: Anatomy) -> list[str]:
    """Entries for `resolve_lora_targets`: query+value for transformers (the LoRA paper's choice); 1x1 convs for CNNs."""
    if anat.kind == "transformer":
        if "query" in anat.aliases and "value" in anat.aliases:
            return ["query", "value"]
        if "qkv" in anat.aliases:
            return ["qkv"]
        return [a for a in ("attn_out", "ffn_in", "ffn_out") if a in anat.aliases]
    # CNN: pointwise convs carry most weights in MobileNet/ResNet bottlenecks; a basic-block ResNet (3x3 only, a
    # 1x1 shortcut in some stages) has fewer pointwise convs than blocks, so its 3x3 convs are added.
    if len(anat.aliases.get("pointwise", [])) >= len(anat.blocks):
        return ["pointwise"]
    return [a for a in ("pointwise", "spatial") if a in anat.aliases]


def _candidate_names(anat: Anatomy) -> list[str]:
    """Names a user can type: block-relative names ("attention.self.query"), full names of the rest."""
    names: list[str] = []
    for name in anat.linear_names:
        block = next((b for b in anat.blocks if _inside(name, [b])), None)
        short = name[len(block) + 1 :] if block else name
        if short not in names:
            names.append(short)
    return names


def resolve_targets(anat: Anatomy, targets: list[str] | str, flag: str = "--lora-target") -> list[str]:
    """Aliases / own (suffix) names / full names -> sorted, de-duplicated qualified Linear/Conv2d names (never the head).

    Works on an anatomy alone (a real model's or one built from the parameter arithmetic)."""
    if isinstance(targets, str):
        targets = targets.split(",")  # "query,value" from a command line
    if not [t for t in targets if t.strip()]:
        raise BadInput(
            f"{flag}: no target modules given: name some, e.g. {','.join(default_targets(anat))} "
            f"(aliases: {', '.join(anat.aliases) or 'none'})"
        )
    resolved: set[str] = set()
    for raw in targets:
        entry = raw.strip()
        if not entry:
            continue
        if entry in anat.aliases:
            resolved.update(anat.aliases[entry])
            continue
        matches = [n for n in anat.linear_names if n == entry or n.endswith("." + entry)]
        if matches:
            resolved.update(matches)
            continue
        in_head = [
            n for n in anat.module_names if _inside(n, anat.head) and (n == entry or n.endswith("." + entry))
        ]
        if in_head:
            raise BadInput(
                f"{flag} {entry}: that module is part of the classification head ({', '.join(anat.head)}), which "
                "is trained whole (modules_to_save); pick backbone modules, e.g. "
                + ", ".join(default_targets(anat))
            )
        aliases = list(anat.aliases)
        names = _candidate_names(anat)
        tokens = aliases + names + sorted({n.rsplit(".", 1)[-1] for n in anat.linear_names})
        close = difflib.get_close_matches(entry, tokens, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise BadInput(
            f"{flag} {entry}: unknown target for {anat.family}: {hint}use an alias ({', '.join(aliases) or 'none'}) "
            f"or a Linear/Conv2d name of this model ({', '.join(names)})"
        )
    return sorted(resolved)
