"""The method registry: one module per fine-tuning method, registered at the bottom with one visible line each.

`REGISTRY["lora"].prepare(model, anatomy, knobs, ctx)` returns the model ready to train; `.plan(arch, knobs, task)` says
the same as arithmetic (what `peftlab params` prints); `.knobs` is the dataclass behind `--lora-*` flags and YAML keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peftlab.methods.knobs import NoKnobs

if TYPE_CHECKING:  # torch loads only where a model is prepared: listing methods and reports stay light
    import torch

TEXT, IMAGE, VQA = "text-classification", "image-classification", "vqa"


@dataclass(frozen=True)
class Context:
    """What a method may need to know about the run besides the model: the task, and the optimiser steps planned."""

    task: str
    total_steps: int = 0


@dataclass(frozen=True)
class Method:
    name: str
    trains: str  # one line for `peftlab ls methods` and the report: what this method trains
    default_lr: float  # peak learning rate when --lr is not given
    prepare: (
        Callable  # (model, anatomy, knobs, ctx) -> the model with requires_grad set (PEFT-wrapped if needed)
    )
    plan: Callable  # (params.layers.Arch, knobs, task) -> params.plan.Plan: the same effect as arithmetic
    knobs: type = NoKnobs  # frozen dataclass of the method's settings (methods/knobs.py)
    knob_prefix: str = ""  # flags are --<prefix>-<knob>; "" = the method's name (dora shares lora's: "lora")
    tasks: tuple[str, ...] = (TEXT, IMAGE)  # the tasks it can run
    kinds: tuple[str, ...] = ("transformer", "cnn")  # architecture kinds it applies to (anatomy.kind)
    needs_training: bool = True  # False: evaluate as-is (baseline)
    paper: str = ""  # where the method comes from
    space: dict = field(default_factory=dict)  # knob name -> methods.space.Dim: what tuning varies besides lr
    limits: str = ""  # where it cannot apply, in one or two sentences (docs/methods.md, `peftlab ls methods`)
    after_step: Callable | None = (
        None  # (model, step) after each optimiser step, gradients still set (AdaLoRA)
    )
    summary: Callable | None = (
        None  # (model) -> dict: what training decided (AdaLoRA's ranks) -> record "method_state"
    )
    # (arch, anat, knobs, task, plan) -> flops.sites.Effect: the products its adapters add (LoRA's A and B, a prompt
    # encoder, virtual tokens); None for methods that only choose what trains (flops/ counts those from the plan)
    flops: Callable | None = None

    @property
    def prefix(self) -> str:
        return self.knob_prefix or self.name.replace("-", "_")


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> None:
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    REGISTRY[method.name] = method


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze(model: torch.nn.Module, names: list[str]) -> None:
    """Make every parameter under each qualified module name trainable ("" is the whole model)."""
    modules = dict(model.named_modules())
    for name in names:
        for p in modules[name].parameters():
            p.requires_grad_(True)


def check_applies(method: Method, anat, task: str) -> None:
    """One line of bad input, before anything trains, when the method cannot run on this task or architecture."""
    from peftlab.errors import BadInput

    if task not in method.tasks:
        raise BadInput(
            f"--method {method.name}: not available for {task} (it runs on {', '.join(method.tasks)}); "
            f"choose one of {', '.join(m.name for m in REGISTRY.values() if task in m.tasks)}"
        )
    if anat is not None and anat.kind not in method.kinds:
        raise BadInput(
            f"--method {method.name}: does not apply to {anat.family} ({anat.kind} models); it needs "
            f"{' or '.join(method.kinds)} models"
        )


def train_only(model: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Freeze everything, then unfreeze these modules: how baseline, head, last-layer and full prepare."""
    freeze_all(model)
    unfreeze(model, names)
    return model


from peftlab.methods import (  # noqa: E402
    adalora,
    baseline,
    bitfit,
    boft,
    dora,
    fourierft,
    full,
    head,
    ia3,
    last_layer,
    ln_tuning,
    loha,
    lokr,
    lora,
    oft,
    p_tuning,
    prefix_tuning,
    prompt_tuning,
    vera,
)

# one line per method, in the order reports present them (roughly cheapest first)
register(baseline.METHOD)
register(head.METHOD)
register(ln_tuning.METHOD)
register(bitfit.METHOD)
register(prompt_tuning.METHOD)
register(prefix_tuning.METHOD)
register(p_tuning.METHOD)
register(ia3.METHOD)
register(vera.METHOD)
register(fourierft.METHOD)
register(lora.METHOD)
register(dora.METHOD)
register(adalora.METHOD)
register(loha.METHOD)
register(lokr.METHOD)
register(oft.METHOD)
register(boft.METHOD)
register(last_layer.METHOD)
register(full.METHOD)
