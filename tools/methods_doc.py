"""Writes docs/methods.md: one section per registered method, with its parameter arithmetic on the two reference models.

Run `.venv/bin/python tools/methods_doc.py` after adding or changing a method; tests/params/test_methods_doc.py checks
that the page is exactly what this writes (every number comes from `peftlab params`, predicted = measured).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
# the reference experiments' models: (hub id, labels) — roberta-base on TweetEval (3), ViT-B/16 on Food-101 (101)
MODELS = (("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101))

INTRO = """# Methods

Every method peftlab compares, what it trains, its knobs, and its parameter arithmetic on the two reference models:
`roberta-base` with a 3-class head (TweetEval sentiment) and `google/vit-base-patch16-224-in21k` with a 101-class head
(Food-101), at the method's default knobs. Each block is what `peftlab params` predicts from `config.json` alone; the
prediction equals PyTorch's count of the model built on the meta device, and only the lines that train are shown (the
frozen backbone lines are in `peftlab params`'s full table). Totals are counted PEFT's way: the frozen originals, plus
the trainable copies of `modules_to_save` (the head), plus the adapter weights.

Knobs are flags `--<method>-<knob>` (`--lora-r 4`), keys in YAML run files (`lora_r: 4`) and variants in grids
(`--methods lora:r=4`, `--sweep lora-r=4,8,16`). `peftlab ls methods` prints the same list. Default targets follow
PEFT's own per-architecture defaults where PEFT has them; otherwise query+value (the 1x1 convolutions on CNNs), as for
LoRA. Portable target aliases (`query`, `key`, `value`, `attn_out`, `ffn_in`, `ffn_out`; `pointwise`, `spatial`,
`depthwise` on CNNs) work for every targeted method on every architecture.

This page is written by `tools/methods_doc.py` and checked by `tests/params/test_methods_doc.py`.
"""


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def knobs_table(method) -> list[str]:
    from peftlab.methods.knobs import flag, knob_fields

    rows = knob_fields(method.knobs)
    if not rows:
        return ["No knobs of its own."]
    out = ["| flag | default | what it sets |", "|---|---|---|"]
    for f in rows:
        default = _default(f)
        shown = "(see text)" if default is None else f"`{default}`"
        out.append(f"| `{flag(method.prefix, f.name)}` | {shown} | {f.metadata['help']} |")
    return out


def counts_block(model: str, labels: int, method, folder: Callable[[str], str]) -> list[str]:
    """`peftlab params` on the reference model, the trained lines and the totals, as the page shows them."""
    from peftlab.errors import BadInput
    from peftlab.params import count

    command = f"$ peftlab params --model {model} --num-labels {labels} --method {method.name}"
    try:
        r = count(folder(model), method.name, num_labels=labels)
    except BadInput as e:
        return ["```text", command, f"does not apply: {e}", "```"]
    verdict = "predicted = measured" if r["match"] else f"MISMATCH: predicted {r['predicted_trainable']}"
    out = ["```text", command]
    out.append(
        f"trainable {r['trainable']:,} of {r['total']:,} ({100 * r['trainable'] / r['total']:.4f}%), {verdict}"
    )
    trained = [row for row in r["breakdown"] if row.get("trainable")]
    width = max((len(row["component"]) for row in trained), default=0)
    for row in trained:
        formula = row.get("trainable_formula") or row.get("formula") or ""
        out.append(f"  {row['component']:<{width}}  {row['trainable']:>12,}  {formula}")
    out.append("```")
    return out


def section(method, folder: Callable[[str], str]) -> str:
    from peftlab.methods import IMAGE, TEXT

    tasks = ", ".join(t.removesuffix("-classification") for t in method.tasks)
    lines = [f"## `{method.name}`", "", f"**Trains:** {method.trains}.", ""]
    lines.append(f"**Tasks:** {tasks}; default learning rate {method.default_lr:g}.")
    if method.limits:
        lines += ["", f"**Cannot apply:** {method.limits}"]
    if method.paper:
        lines += ["", f"**Paper:** {method.paper}."]
    lines += ["", *knobs_table(method), ""]
    for (model, labels), task in zip(MODELS, (TEXT, IMAGE)):
        if task in method.tasks:  # a text-only method has no ViT block
            lines += counts_block(model, labels, method, folder) + [""]
    return "\n".join(lines)


def render(folder: Callable[[str], str]) -> str:
    from peftlab.methods import REGISTRY

    parts = [INTRO] + [section(m, folder) for m in REGISTRY.values()]
    return "\n".join(parts).rstrip() + "\n"


def _folders() -> Callable[[str], str]:
    """A folder holding only config.json per reference model (the configs the params tests use)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "params"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from params_configs import BASE

    root = Path(tempfile.mkdtemp(prefix="peftlab-methods-doc-"))

    def folder(name: str) -> str:
        where = root / name.replace("/", "_")
        where.mkdir(exist_ok=True)
        (where / "config.json").write_text(json.dumps(BASE[name]))
        return str(where)

    return folder


if __name__ == "__main__":
    DOC.write_text(render(_folders()))
    print(f"wrote {DOC}")
