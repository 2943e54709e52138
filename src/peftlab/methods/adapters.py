"""What the PEFT adapter methods share: targets from aliases, modules_to_save checked PEFT's way, the task type,
and wrapping with PEFT's refusals turned into one-line bad input. PEFT is imported when a model is wrapped, so
listing methods or building a report does not load it.

Used by lora.py (and every method built on `peft.get_peft_model`); nothing here names a specific method.
"""

from __future__ import annotations

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
    except ValueError as e:  # e.g. a grouped conv whose groups do not divide r
        first = str(e).strip().splitlines()[0]
        raise BadInput(f"{flag}: PEFT cannot apply this here ({first})") from None
