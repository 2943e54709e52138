"""`dora`: weight-decomposed LoRA (DoRA) through PEFT: LoRA's A and B on the direction, a trained magnitude per output.

Shares every `lora` knob and default (flags --lora-*); the same as `--method lora --lora-use-dora`, named as a method
so that grids and reports compare it with LoRA side by side.
"""

from __future__ import annotations

from peftlab.methods import Method, adapters, lora
from peftlab.methods.knobs import flag
from peftlab.methods.space import choice


def prepare(model, anatomy, knobs: lora.Knobs, ctx):
    return adapters.wrap(
        model, lora.lora_config(anatomy, knobs, ctx.task, use_dora=True), flag(lora.PREFIX, "target")
    )


def plan(arch, anat, knobs: lora.Knobs, task: str):
    return lora.lora_plan(arch, anat, knobs, task, dora=True)


def flops(arch, anat, knobs: lora.Knobs, task: str, plan):
    return lora.lora_flops(arch, anat, knobs, task, plan, dora=True)


METHOD = Method(
    name="dora",
    trains="LoRA A and B on the target modules + one magnitude per output feature of each + the head",
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=lora.Knobs,
    knob_prefix=lora.PREFIX,
    paper="Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation, arXiv:2402.09353",
    space={"r": choice(4, 8, 16, 32), "alpha": choice(8.0, 16.0, 32.0, 64.0)},
)
