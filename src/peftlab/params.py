"""Parameter counts: measured on the real model class, and predicted by arithmetic on config fields, per component.

`measure(model)`, `predict(model_name, task, num_labels, cfg, pooling=...)`, `compare_counts(measured, predicted)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Prediction:
    trainable: int | None
    total: int | None
    breakdown: list[dict] = field(default_factory=list)  # [{"component", "params", "trainable", "formula"}]
    note: str | None = None  # e.g. "no formula for family X yet: measured counts only"


def measure(model: torch.nn.Module) -> dict:
    """Counts as PEFT counts them: every parameter of the (possibly wrapped) model, originals + modules_to_save copies."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


def predict(model_name: str, task: str, num_labels: int, cfg, *, pooling: str) -> Prediction:
    return Prediction(None, None, note="no formula yet: measured counts only")


def compare_counts(measured: dict, predicted: Prediction) -> dict:
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
        "counting": "PEFT's way: originals + modules_to_save copies + adapter weights",
    }
