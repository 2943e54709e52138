"""`ln-tuning`: HF PEFT LayerNorm tuning: a trainable copy of each normalisation layer (gain and bias), the head saved.

`--method ln-tuning`, knobs --ln-tuning-*: targets default to every LayerNorm (transformers) / BatchNorm (CNNs), since
PEFT's LN-tuning mapping covers decoder LLMs only; `blocks`, `outside` or norm module names pick fewer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list
from peftlab.params.plan import Plan, layers_named, outside_saved, peft_saved, under

PREFIX = "ln_tuning"
# target aliases: the norms inside the repeated blocks / the rest (embeddings, stem, final norm)
BLOCKS, OUTSIDE = "blocks", "outside"
MARKERS = (".ln_tuning_layers.",)  # PEFT names a copy <norm>.ln_tuning_layers.default.{weight,bias}


@dataclass(frozen=True)
class Knobs:
    target: list[str] | None = knob(
        None,
        "normalisation layers to tune, comma-separated: blocks (inside the repeated blocks), outside (embeddings, "
        "stem, final norm) or norm module names (LayerNorm, layernorm_before, normalization, ...); default: all",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside the norm copies, comma-separated (default: the classification head)",
    )


def model_norms(model) -> list[str]:
    """The qualified names of a model's normalisation layers with parameters: LayerNorm, BatchNorm, GroupNorm, RMSNorm
    (and families' own *Norm classes), outermost only. The arithmetic's counterpart: Arch layers of kind "norm"."""
    from torch import nn

    types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase) + (
        (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
    )
    found: list[str] = []
    for name, m in model.named_modules():
        is_norm = isinstance(m, types) or type(m).__name__.endswith("Norm")
        # affine only: a norm without weight has nothing to tune (BatchNorm's running stats are buffers)
        has_params = next(m.parameters(recurse=False), None) is not None
        if name and is_norm and has_params and not under(name, found):
            found.append(name)
    return found


def saved_entries(anat, modules_to_save: list[str] | None, task: str) -> list[str]:
    """modules_to_save as PEFT applies it (the head by default; SEQ_CLS adds classifier and score)."""
    entries = list(anat.head) if modules_to_save is None else list(modules_to_save)
    return entries + (["classifier", "score"] if task == "text-classification" else [])


def _candidates(norms: list[str], anat) -> list[str]:
    """Names a user can type: block-relative ("attention.output.LayerNorm"), full names of the rest."""
    out: list[str] = []
    for name in norms:
        block = next((b for b in anat.blocks if under(name, [b])), None)
        short = name[len(block) + 1 :] if block else name
        if short not in out:
            out.append(short)
    return out


def chosen(norms: list[str], anat, knobs: Knobs, task: str) -> list[str]:
    """The norm layers PEFT wraps: the entries resolved (aliases, then PEFT's own rule: the name or a dotted suffix of
    it), less those inside a saved module (PEFT never adapts inside modules_to_save)."""
    where = flag(PREFIX, "target")
    if not norms:
        raise BadInput(
            f"--method ln-tuning: {anat.family} has no normalisation layers with parameters; choose another method"
        )
    entries = [e.strip() for e in knobs.target or [] if e.strip()]
    if knobs.target is not None and not entries:
        raise BadInput(f"{where}: no norm layers given: name some, e.g. {BLOCKS}, or leave it unset for all")
    picked: set[str] = set() if entries else set(norms)  # no target given: every norm layer
    for entry in entries:
        if entry == BLOCKS:
            matches = [n for n in norms if under(n, anat.blocks)]
        elif entry == OUTSIDE:
            matches = [n for n in norms if not under(n, anat.blocks)]
        else:  # PEFT's rule for a list entry: the full name, or a suffix after a dot
            matches = [n for n in norms if n == entry or n.endswith("." + entry)]
        if not matches:
            raise BadInput(
                f"{where} {entry}: no normalisation layer of {anat.family} answers to that; use {BLOCKS}, "
                f"{OUTSIDE} or a norm name ({', '.join(_candidates(norms, anat))})"
            )
        picked.update(matches)
    names = outside_saved(sorted(picked), saved_entries(anat, knobs.modules_to_save, task))
    if not names:
        raise BadInput(
            f"{where}: every chosen norm layer sits inside {flag(PREFIX, 'modules_to_save')} (trained whole there); "
            f"target norms outside it, e.g. {BLOCKS}"
        )
    return names


def ln_config(model, anat, knobs: Knobs, task: str):
    """The peft.LNTuningConfig of this run: target_modules as full module names of this model."""
    from peft import LNTuningConfig

    return LNTuningConfig(
        target_modules=chosen(model_norms(model), anat, knobs, task),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)
    config = ln_config(model, anatomy, knobs, ctx.task)
    # PEFT warns "Unsupported layer type" for every LayerNorm / BatchNorm it wraps: its own method's targets
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unsupported layer type", category=UserWarning)
        return adapters.wrap(model, config, flag(PREFIX, "target"))


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """LN-tuning as arithmetic: the originals stay (frozen), each targeted norm adds a trainable deepcopy of itself,
    weight (n,) + bias (n,) = 2×n (BatchNorm's running statistics are buffers); the head is saved as lora saves it."""
    from peftlab.params.render import expr

    check(PREFIX, knobs)
    adapters.modules_to_save(
        anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
    )  # unknown: bad input
    _, copied, unsupported = peft_saved(arch, anat, knobs.modules_to_save, task)
    norms = [x.name for x in arch.layers if x.kind == "norm"]
    layers = layers_named(arch, chosen(norms, anat, knobs, task))
    plan = Plan(copied=copied, unsupported=unsupported)
    label = f"LN-tuning copies of {','.join(knobs.target) if knobs.target else 'every norm layer'}"
    plan.added.append(adapters.per_layer(label, layers, lambda x: (expr(x), x.params), MARKERS))
    return plan


METHOD = Method(
    name="ln-tuning",
    trains="a trainable copy of each LayerNorm / BatchNorm (gain and bias) + the head (modules_to_save)",
    # no PEFT or paper recipe for encoder classification; the norms are as few parameters as BitFit's biases, so
    # BitFit's learning rate (its authors' run_glue.py default, 1e-3)
    default_lr=1e-3,
    prepare=prepare,
    plan=plan,
    knobs=Knobs,
    paper="Zhao et al. 2023, Tuning LayerNorm in Attention: Towards Efficient Multi-Modal LLM Finetuning, "
    "arXiv:2312.11420",
    limits="models without normalisation layers that have parameters.",
)
