"""Formulas with the numbers filled in: one layer as arithmetic, equal terms and equal blocks merged, a breakdown.

`breakdown(arch, plan)` -> the predicted rows `peftlab params` prints and every run record stores.
"""

from __future__ import annotations

from peftlab.params.layers import Arch, Layer
from peftlab.params.plan import COPIES, Plan, under


def num(n: int) -> str:
    return f"{n:,}"


def expr(x: Layer, part: str = "all") -> str:
    """One layer's count as arithmetic: "768×768 + 768", "2×768", "words 50265×768"; part "bias": the bias alone."""
    if part == "bias":
        return str(x.bias)
    if x.kind == "linear":
        w = f"{x.in_features}×{x.out_features}"
    elif x.kind == "conv":
        k = x.shape[2] * x.shape[3]
        factors = [x.shape[1]] if x.shape[1] > 1 else []  # in/groups (1 for depthwise)
        factors += [x.out_features] + ([x.shape[2], x.shape[3]] if k > 1 else [])
        w = "×".join(str(f) for f in factors)
    elif x.kind == "norm":
        w = f"2×{x.shape[0]}" if x.bias else str(x.shape[0])  # weight + bias
        return f"{x.what} {w}" if x.what else w
    else:  # embedding (rows, dim); a bare parameter drops its 1s: (1, 197, 768) -> 197×768
        w = "×".join(str(d) for d in x.shape if d != 1 or x.kind == "embedding") or "1"
    w = f"{x.what} {w}" if x.what else w
    return f"{w} + {x.bias}" if x.bias else w


def paren(e: str) -> str:
    """Brackets for an expression about to be multiplied, when it is a sum at its top level."""
    depth = 0
    for i, ch in enumerate(e):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if depth == 0 and e[i : i + 3] == " + ":
            return f"({e})"
    return e


def _merge(items: list[tuple[str, int]]) -> tuple[tuple[int, str, int], ...]:
    """[(expr, value)] -> ((count, expr, value), ...): equal expressions counted once, first-appearance order."""
    merged: dict[str, list[int]] = {}
    for expr, value in items:
        merged.setdefault(expr, [0, value])[0] += 1
    return tuple((n, e, v) for e, (n, v) in merged.items())


def _times(n: int, e: str) -> str:
    return e if n == 1 else f"{n} × {paren(e)}"


def render(items: list[tuple[int | None, str, int]]) -> str:
    """[(block, expr, value)] -> "words 97×48 + 2 blocks × 3 × (48×48 + 48) = 21,...": equal terms merge inside
    a block, then equal blocks merge into "N blocks × ..."."""
    if not items:
        return "0"
    loose = _merge([(e, v) for b, e, v in items if b is None])
    per_block: dict[int, list[tuple[str, int]]] = {}
    for b, e, v in items:
        if b is not None:
            per_block.setdefault(b, []).append((e, v))
    same: dict[tuple, int] = {}  # a block's merged terms -> how many blocks have exactly these
    for terms in map(_merge, per_block.values()):
        same[terms] = same.get(terms, 0) + 1
    parts = [_times(n, e) for n, e, _ in loose]
    for terms, n_blocks in same.items():
        inner = [_times(n, e) for n, e, _ in terms]
        body = paren(inner[0]) if len(inner) == 1 else "[" + " + ".join(inner) + "]"  # 12 blocks × 3 × (...)
        parts.append(f"{n_blocks} block{'s' if n_blocks != 1 else ''} × {body}")
    text = " + ".join(parts)
    total = sum(v for _, _, v in items)
    return text if text == str(total) else f"{text} = {num(total)}"


def line(component: str, items: list, trainable_items: list | None, what: str = "") -> dict:
    """One breakdown row; `what` labels a partial trainable count ("biases")."""
    params = sum(v for _, _, v in items)
    trainable = params if trainable_items is None else sum(v for _, _, v in trainable_items)
    row = {"component": component, "params": params, "trainable": trainable, "formula": render(items)}
    if trainable_items and 0 < trainable < params:
        row["trainable_formula"] = f"{what} {render(trainable_items)}".strip()
    return row


def breakdown(arch: Arch, plan: Plan) -> list[dict]:
    """Predicted lines: the originals by component, then what the method adds, then modules_to_save copies."""
    comps: dict[str, tuple[list, list]] = {}
    biases_only = set()  # components where only biases train (LoRA's bias option, BitFit)
    for x in arch.layers:
        items, train = comps.setdefault(x.component, ([], []))
        items.append((x.block, expr(x), x.params))
        if x.name in plan.train_weight:  # whole modules train: weight and bias
            train.append((x.block, expr(x), x.params))
        elif x.name in plan.train_bias and x.bias:
            train.append((x.block, expr(x, "bias"), x.bias))
            biases_only.add(x.component)
    rows = [
        line(c, items, train, "biases" if c in biases_only else "") for c, (items, train) in comps.items()
    ]
    for added in plan.added:
        rows.append(line(added.component, added.items, None if added.trainable else []))
    if plan.copied:
        copies = [(x.block, expr(x), x.params) for x in arch.layers if under(x.name, plan.copied)]
        rows.append(line(copies_label(plan), copies, None))
    return rows


def copies_label(plan: Plan) -> str:
    return f"{COPIES} ({', '.join(plan.copied)})"
