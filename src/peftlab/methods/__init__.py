"""The method registry: one module per fine-tuning method, registered here with one visible line each.

`REGISTRY["lora"].prepare(model, anatomy, cfg)` returns the model ready to train (requires_grad set, PEFT-wrapped if needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Method:
    name: str
    trains: str  # one line for `peftlab ls methods` and the report: what this method trains
    default_lr: float  # peak learning rate when --lr is not given
    prepare: Callable  # (model, anatomy, cfg) -> model with requires_grad set
    needs_training: bool = True  # False: evaluate as-is (baseline)
    trainable_modules: Callable | None = (
        None  # (anatomy, cfg) -> qualified module names that train in full; None: see prepare
    )


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> None:
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    REGISTRY[method.name] = method


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze(model: torch.nn.Module, names: list[str]) -> None:
    """Make every parameter under each qualified module name trainable."""
    modules = dict(model.named_modules())
    for name in names:
        for p in modules[name].parameters():
            p.requires_grad_(True)


from peftlab.methods import baseline, full, head, last_layer, lora  # noqa: E402

register(baseline.METHOD)
register(head.METHOD)
register(last_layer.METHOD)
register(lora.METHOD)
register(full.METHOD)
