"""Parameter counts: predicted by arithmetic on config fields, component by component, and measured on the real model.

`peftlab params` calls `count` + `format_table`; every run calls `measure`, `predict` and `compare_counts`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from peftlab.errors import BadInput
from peftlab.params.families import architecture, family_name
from peftlab.params.layers import Arch
from peftlab.params.plan import Plan, virtual_anatomy
from peftlab.params.render import breakdown, copies_label
from peftlab.params.table import format_table

COUNTING = (
    "PEFT's way, as print_trainable_parameters() reports: "
    "frozen originals + modules_to_save copies + adapter weights"
)


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
    arch: Arch | None = field(default=None, repr=False)  # what was predicted from (None: no formula)
    plan: Plan | None = field(default=None, repr=False)


def predict_from_config(config, task: str, num_labels: int, method, knobs, *, pooling: str) -> Prediction:
    """Arithmetic only: config fields + the method's plan -> predicted trainable / total and the breakdown."""
    arch = architecture(config, task, num_labels, pooling)
    if arch is None:
        family = family_name(config)
        return Prediction(
            None, None, note=f"no formula for {family} yet: measured counts only", family=family
        )
    from peftlab.methods import check_applies

    anat = virtual_anatomy(arch)
    check_applies(
        method, anat, task
    )  # a method that cannot serve this task or architecture says so, from the config
    plan = method.plan(arch, anat, knobs, task)
    if plan.unsupported:
        return Prediction(
            None,
            None,
            note=f"{plan.unsupported}: measured counts only",
            family=arch.family,
            model_class=arch.model_class,
        )
    rows = breakdown(arch, plan)
    return Prediction(
        trainable=sum(r["trainable"] for r in rows),
        total=sum(r["params"] for r in rows),
        breakdown=rows,
        family=arch.family,
        model_class=arch.model_class,
        notes=arch.notes,
        arch=arch,
        plan=plan,
    )


def predict(
    model_name: str, task: str, num_labels: int, method, knobs, *, pooling: str = "auto"
) -> Prediction:
    """Predicted counts for `method` on `model_name` from its config.json alone (no weights, no model built)."""
    from peftlab.models import load_config
    from peftlab.models.loading import resolve_pooling

    config = load_config(model_name)
    resolved = resolve_pooling(model_name, pooling, task, config)
    return predict_from_config(config, task, num_labels, method, knobs, pooling=resolved)


# ---------------------------------------------------------------------------------------------------------------
# Measured: PyTorch's own count on the (meta-device) model, and the same parameters sorted into components.


def measure(model) -> dict:
    """Counts as PEFT counts them: every parameter of the (possibly wrapped) model, originals + modules_to_save copies."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


def _wrapper_prefix(model) -> str:
    """What PEFT puts before the base model's parameter names: "base_model.model." for injected adapters (a tuner
    wraps the model), "base_model." for prompt learning (prompt-tuning, prefix-tuning, p-tuning: no tuner), "" bare."""
    config = getattr(model, "active_peft_config", None)
    if config is None:
        return ""
    return "base_model." if getattr(config, "is_prompt_learning", False) else "base_model.model."


def _component_of(name: str, layer_of: dict, plan: Plan) -> str:
    """A parameter name of the (PEFT-wrapped) model, its wrapper prefix removed -> the breakdown line it belongs to."""
    for added in plan.added:
        if any(marker in name for marker in added.markers):
            return added.component
    if ".modules_to_save." in name:
        return copies_label(plan)
    name = name.replace(".base_layer.", ".").replace(".original_module.", ".")
    if name in layer_of:  # a bare parameter (ViT's cls_token)
        return layer_of[name].component
    module = name.rsplit(".", 1)[0]
    return layer_of[module].component if module in layer_of else "not in the formulas"


def measure_breakdown(model, prediction: Prediction) -> list[dict]:
    """Measured params / trainable per component (the prediction's lines; top-level modules without formulas)."""
    rows: dict[str, list[int]] = {}
    arch, plan = prediction.arch, prediction.plan
    layer_of = {x.name: x for x in arch.layers} if arch else {}
    prefix = _wrapper_prefix(model)
    for name, p in model.named_parameters():
        # prompt learning's own parameters (prompt_encoder.*) keep their names
        name = name.removeprefix(prefix)
        if arch is not None and plan is not None:
            comp = _component_of(name, layer_of, plan)
        else:
            comp = name.split(".")[0]
        row = rows.setdefault(comp, [0, 0])
        row[0] += p.numel()
        row[1] += p.numel() if p.requires_grad else 0
    return [{"component": c, "params": v[0], "trainable": v[1]} for c, v in rows.items()]


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


def count(model_name: str, method_name: str, knobs=None, *, task: str | None = None, num_labels: int = 2,
          pooling: str = "auto") -> dict:  # fmt: skip
    """`peftlab params`: build the model on the meta device from its config, apply the method, count and predict."""
    from peftlab.methods import REGISTRY, Context, check_applies
    from peftlab.methods.knobs import check
    from peftlab.models import load_config, load_model
    from peftlab.models.loading import default_task

    if method_name not in REGISTRY:
        raise BadInput(f"--method {method_name!r}: unknown method; choose from {', '.join(REGISTRY)}")
    method = REGISTRY[method_name]
    knobs = knobs if knobs is not None else method.knobs()
    check(method.prefix, knobs)
    if num_labels is None or num_labels < 2:
        raise BadInput(f"--num-labels {num_labels}: a classifier needs at least 2 classes")
    config = load_config(model_name)
    task = task or default_task(config)
    if task not in ("text-classification", "image-classification"):
        raise BadInput(f"--task {task}: parameter counts cover text-classification and image-classification")
    labels = [f"class_{i}" for i in range(num_labels)]
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # transformers' deprecation notes, triggered inside PEFT
        loaded = load_model(model_name, task, labels, pooling=pooling, weights=False)  # meta device
        check_applies(method, loaded.anatomy, task)
        model = method.prepare(loaded.model, loaded.anatomy, knobs, Context(task))
    measured = measure(model)
    predicted = predict_from_config(config, task, num_labels, method, knobs, pooling=loaded.pooling)
    result = compare_counts(measured, predicted)
    by_comp = {r["component"]: r for r in measure_breakdown(model, predicted)}
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
        "method": method_name,
        "task": task,
        "num_labels": num_labels,
        "pooling": loaded.pooling,
        **result,
        "breakdown": rows,
        "notes": predicted.notes,
    }


__all__ = [
    "COUNTING",
    "Prediction",
    "compare_counts",
    "count",
    "format_table",
    "measure",
    "measure_breakdown",
    "predict",
    "predict_from_config",
]
