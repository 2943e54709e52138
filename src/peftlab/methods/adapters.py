"""What the PEFT adapter methods share: targets from aliases, modules_to_save checked PEFT's way, the task type,
and wrapping with PEFT's refusals turned into one-line bad input. PEFT is imported when a model is wrapped, so
listing methods or building a report does not load it.

Used by lora.py (and every method built on `peft.get_peft_model`); nothing here names a specific method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from peftlab.errors import BadInput

if TYPE_CHECKING:
    from peftlab.models.anatomy import Anatomy


def targets(
    anat: Anatomy, wanted: list[str] | None, flag: str, default: list[str] | None = None
) -> list[str]:
    """The qualified module names to adapt: the user's entries, else `default`, else query+value (1x1 convs on CNNs)."""
    from peftlab.models.anatomy import default_targets, resolve_targets

    return resolve_targets(anat, wanted or default or default_targets(anat), flag)


def modules_to_save(anat: Anatomy, wanted: list[str] | None, flag: str) -> list[str] | None:
    """The modules trained whole beside the adapters: the head by default; the user's entries must exist (PEFT
    matches them as plain name suffixes)."""
    if wanted is None:
        return list(anat.head) or None
    for want in wanted:
        if not any(n.endswith(want) for n in anat.module_names):
            raise BadInput(f"{flag} {want!r}: no such module; the head here is {', '.join(anat.head)}")
    return list(wanted) or None


def task_type(task: str):
    """SEQ_CLS gives users PeftModelForSequenceClassification on reload (the class the HF docs use); images have no
    task type in PEFT, so the plain PeftModel wraps them."""
    from peft import TaskType

    return TaskType.SEQ_CLS if task == "text-classification" else None


def wrap(model, config, flag: str):
    """get_peft_model, with PEFT's ValueError (a layer/knob combination it rejects) as one line of bad input."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except (
        ValueError,
        TypeError,
    ) as e:  # a grouped conv whose groups do not divide r; a layer type a tuner lacks
        first = str(e).strip().splitlines()[0]
        raise BadInput(f"{flag}: PEFT cannot apply this here ({first})") from None


def targeted_plan(arch, anat, entries: list[str], modules_to_save: list[str] | None, task: str, flag: str):
    """The shared start of every targeted adapter's arithmetic -> (Plan with PEFT's saved copies, adapted layers).

    PEFT copies the modules_to_save whole (original frozen + trainable copy) and never adapts a layer inside one; the
    method then adds its own `Added` lines for the returned layers (params.plan.layers_named: block order)."""
    from peftlab.params.plan import Plan, layers_named, outside_saved, peft_saved

    saved, copied, unsupported = peft_saved(arch, anat, modules_to_save, task)
    names = outside_saved(targets(anat, entries, flag), saved)
    return Plan(copied=copied, unsupported=unsupported), layers_named(arch, names)


def added_entry(plan, prefix: str):
    """The plan's added-parameters entry of this adapter (its component name starts with `prefix`), or None where the
    method adapted nothing here; the FLOP hooks read their component and layers from it."""
    return next((a for a in plan.added if a.component.startswith(prefix)), None)


def per_layer(component: str, layers, term, markers: tuple[str, ...]):
    """One `Added` breakdown line: term(layer) -> (expression, count) for each adapted layer, merged by render.py."""
    from peftlab.params.plan import Added

    return Added(
        component, [(x.block, *term(x)) for x in layers], markers, layers=tuple(x.name for x in layers)
    )


def linear_only(names: list[str], is_conv: Callable[[str], bool], knob_flag: str, method: str) -> None:
    """Methods whose PEFT tuner wraps Linear layers only (VeRA, FourierFT) (a Conv2d target is a TypeError deep inside PEFT)."""
    convs = [n for n in names if is_conv(n)]
    if convs:
        raise BadInput(
            f"{knob_flag}: {method} adapts Linear layers only and {convs[0]} is a Conv2d; choose Linear targets "
            "(e.g. query,value)"
        )


def trained_biases(arch, plan, layers, bias: str) -> set[str]:
    """PEFT's bias option: "all" trains every bias outside the saved modules' frozen originals; "<method>_only" the
    biases of the adapted layers."""
    from peftlab.params.plan import under

    if bias == "all":
        frozen_originals = {x.name for x in arch.layers if under(x.name, plan.copied)}
        return {x.name for x in arch.layers if x.bias and x.name not in frozen_originals}
    if bias.endswith("_only"):
        return {x.name for x in layers if x.bias}
    return set()
