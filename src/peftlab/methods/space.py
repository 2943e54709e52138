"""Search spaces for tuning: what `peftlab tune` may vary for a method — its learning rate and the knobs worth tuning.

Each method declares `space={"r": choice(4, 8, 16, 32), ...}` (knob names); `space_of(method)` adds the learning rate
(log-uniform, a decade either side of the method's default) and gives flat settings keys ("lr", "lora_r").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peftlab.errors import BadInput


@dataclass(frozen=True)
class Dim:
    """One tunable setting: kind "log" (float, log-uniform), "float", "int" (inclusive) or "choice"."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def suggest(self, trial, name: str):
        if self.kind == "log":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_categorical(name, list(self.choices))

    def describe(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in self.choices) + "}"
        scale = " (log)" if self.kind == "log" else ""
        return f"[{self.low:g}, {self.high:g}]{scale}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "low": self.low, "high": self.high, "choices": list(self.choices)}


def log_range(low: float, high: float) -> Dim:
    return Dim("log", low, high)


def int_range(low: int, high: int) -> Dim:
    return Dim("int", low, high)


def choice(*values) -> Dim:
    return Dim("choice", choices=tuple(values))


def lr_dim(default_lr: float) -> Dim:
    """A decade either side of the method's default learning rate: 5e-4 -> [5e-5, 5e-3]."""
    return log_range(default_lr / 10, default_lr * 10)


def space_of(method) -> dict[str, Dim]:
    """The method's search space as flat settings keys: {"lr": ..., "lora_r": ..., "lora_alpha": ...}."""
    from peftlab.methods.knobs import key

    out = {"lr": lr_dim(method.default_lr)} if method.needs_training else {}
    for name, dim in method.space.items():
        out["lr" if name == "lr" else key(method.prefix, name)] = dim
    return out


def parse_override(method, text: str) -> tuple[str, Dim]:
    """--space lr=1e-5:1e-3 (log range) | lora_r=4,8,16 (choices) | num-virtual-tokens=5:50 (int range)."""
    from peftlab.methods.knobs import key, knob_fields

    name, sep, spec = text.partition("=")
    if not sep or not spec.strip():
        raise BadInput(
            f"--space {text!r}: write SETTING=LOW:HIGH or SETTING=A,B,C, e.g. --space lr=1e-5:1e-3"
        )
    name = name.strip().replace("-", "_")
    knobs = {f.name: f for f in knob_fields(method.knobs)}
    flat = name.removeprefix(method.prefix + "_")
    if name != "lr" and flat not in knobs:
        known = ", ".join(["lr", *(key(method.prefix, k) for k in knobs)])
        raise BadInput(f"--space {text!r}: {name!r} is not a setting of {method.name} (tunable: {known})")
    typ = "float" if name == "lr" else str(knobs[flat].type)
    out_key = "lr" if name == "lr" else key(method.prefix, flat)
    try:
        if ":" in spec:
            lo, hi = (float(v) for v in spec.split(":", 1))
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
                raise ValueError
            return out_key, int_range(int(lo), int(hi)) if "int" in typ else log_range(lo, hi)
        values = [v.strip() for v in spec.split(",") if v.strip()]
        cast = int if "int" in typ else float if "float" in typ else str
        return out_key, choice(*(cast(v) for v in values))
    except ValueError:
        raise BadInput(f"--space {text!r}: give LOW:HIGH with 0 < LOW < HIGH, or a list of values") from None
