"""A method's knobs: a frozen dataclass whose fields carry their help, choices and check; flags, YAML and `ls` read them.

`knob(8, "LoRA rank r", check=positive)` declares one; `parse_knobs(method, {"r": 4})` coerces and checks values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from peftlab.errors import BadInput


def knob(default: Any, help: str, *, choices: tuple | None = None, check: Callable | None = None) -> Any:
    """A knob field: `check(value) -> None | "why it is wrong"`; `choices` limits a string to a set."""
    meta = {"help": help, "choices": choices, "check": check}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class NoKnobs:
    """Methods without settings of their own (baseline, head, last-layer, full)."""


# --- checks: value -> None when fine, else the reason, phrased to follow "--lora-r 0: " -----------------------


def positive(v) -> str | None:
    return None if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else "must be a positive number"


def non_negative(v) -> str | None:
    return None if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 else "must be >= 0"


def probability(v) -> str | None:
    return None if isinstance(v, (int, float)) and 0 <= v < 1 else "must be in [0, 1)"


def names_list(v) -> str | None:
    """None (the method's default) or at least one name."""
    return None if v is None or len(v) > 0 else "name at least one module or alias (e.g. query,value)"


# --- types --------------------------------------------------------------------------------------------------


def type_name(typ: Any) -> str:
    """A field's annotation as text without the Optional part: "int", "float", "list[str]"."""
    return str(typ).replace(" | None", "").replace("typing.", "")


def coerce(value: Any, typ: Any, flag: str) -> Any:
    """A YAML / command-line value -> the declared type (int, float, bool, str, list[str]); None stays None."""
    if value is None:
        return None
    name = type_name(typ)
    try:
        if name.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [str(v) for v in value]
        if name == "bool":
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if not isinstance(value, (bool, int)):
                raise ValueError
            return bool(value)
        if name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if name == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise BadInput(f"{flag} {value!r}: expected {name}") from None


# --- one method's knobs -------------------------------------------------------------------------------------


def knob_fields(knobs_cls: type) -> list[dataclasses.Field]:
    return list(fields(knobs_cls))


def flag(prefix: str, name: str) -> str:
    """--lora-r, --ia3-target: the method's prefix and the knob's name, underscores as dashes."""
    return f"--{prefix}-{name}".replace("_", "-")


def key(prefix: str, name: str) -> str:
    """The flat settings key of a knob: lora_r (YAML run files, record configs)."""
    return f"{prefix}_{name}".replace("-", "_")


def check(prefix: str, knobs) -> None:
    """Each knob's own check and choices, failing with the flag and the value."""
    for f in fields(knobs):
        value = getattr(knobs, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise BadInput(
                f"{flag(prefix, f.name)} {value!r}: expected one of {', '.join(map(str, choices))}"
            )
        rule = f.metadata.get("check")
        why = rule(value) if rule else None
        if why:
            raise BadInput(f"{flag(prefix, f.name)} {value!r}: {why}")


def parse_knobs(knobs_cls: type, prefix: str, values: dict) -> Any:
    """{"r": "4", "target": "query,value"} -> the knobs dataclass with defaults for the rest, coerced and checked."""
    by_name = {f.name: f for f in fields(knobs_cls)}
    given = {}
    for name, value in values.items():
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise BadInput(f"{flag(prefix, name)}: no such knob for {prefix} (its knobs: {known})")
        if value is not None:
            given[name] = coerce(value, by_name[name].type, flag(prefix, name))
    knobs = knobs_cls(**given)
    check(prefix, knobs)
    return knobs


def as_flat(prefix: str, knobs) -> dict:
    """Knobs -> {"lora_r": 8, ...} in declaration order: how a record's config holds them."""
    return {key(prefix, f.name): getattr(knobs, f.name) for f in fields(knobs)}


def changed(knobs) -> dict:
    """The knobs whose values differ from their defaults, in declaration order: {"r": 4}."""
    defaults = type(knobs)()
    return {
        f.name: getattr(knobs, f.name)
        for f in fields(knobs)
        if getattr(knobs, f.name) != getattr(defaults, f.name)
    }
