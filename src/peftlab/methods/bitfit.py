"""`bitfit`: only the bias terms train (every `*.bias` parameter, norm layers' included) + the whole head.

`--method bitfit`, no knobs; plain requires_grad, no PEFT, so a run saves the full model folder. BatchNorm running
statistics are buffers: they still update in train mode, as in full fine-tuning.
"""

from __future__ import annotations

from peftlab.methods import Method, freeze_all, unfreeze
from peftlab.params.plan import Plan, whole_modules


def is_bias(name: str) -> bool:
    """A bias term as PyTorch names it: Linear/Conv2d `.bias` (out,), LayerNorm/BatchNorm `.bias` (n,) (BitFit's b)."""
    return name == "bias" or name.endswith(".bias")


def prepare(model, anatomy, knobs, ctx):
    freeze_all(model)
    for name, p in model.named_parameters():
        if is_bias(name):
            p.requires_grad_(True)
    unfreeze(model, list(anatomy.head))  # the head trains whole: weights and biases
    return model


def plan(arch, anat, knobs, task) -> Plan:
    """The head's layers train whole; every other layer with a bias trains its bias alone: Linear/Conv2d out, a
    norm's n (Layer.bias of a "norm" layer is its bias vector; its weight, the gain, stays frozen)."""
    plan = whole_modules(arch, list(anat.head))
    plan.train_bias |= {x.name for x in arch.layers if x.bias}
    return plan


METHOD = Method(
    name="bitfit",
    trains="every bias term (linear, conv and norm biases) + the head; all weights frozen",
    # the BitFit authors' run_glue.py default --learning-rate 1e-3 (github.com/benzakenelad/BitFit)
    default_lr=1e-3,
    prepare=prepare,
    plan=plan,
    paper="Ben Zaken et al. 2021, BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked "
    "Language-models, arXiv:2106.10199",
)
