"""The terminal answer of `peftlab params`: one line per component with its formula, predicted vs measured totals.

`format_table(count(...))`; a component whose measured count differs gets a second line with PyTorch's numbers.
"""

from __future__ import annotations

from peftlab.params.render import num


def _wrap(text: str, width: int) -> list[str]:
    """Split a long formula at its top-level " + " so each piece fits `width` characters."""
    terms, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if depth == 0 and text[i : i + 3] == " + ":
            terms.append(text[last:i])
            last = i + 3
    terms.append(text[last:])
    lines = [terms[0]]
    for term in terms[1:]:
        if len(lines[-1]) + 3 + len(term) <= width:
            lines[-1] += " + " + term
        else:
            lines.append("+ " + term)
    return lines


def format_table(result: dict) -> str:
    """The human answer: one line per component with its formula, then predicted and measured totals and their
    difference. A component whose measured count differs gets a second line with the measured numbers."""
    rows = result["breakdown"]
    labels = ["component", "measured on meta", "predicted", "difference"]
    w = max(len(x) for x in [r["component"] for r in rows] + labels)
    indent = " " * (w + 2 * 13 + 12)

    def line(label: str, params, trainable, check: str = "", text: str = "") -> list[str]:
        p = "" if params is None else num(params) if isinstance(params, int) else params
        t = "" if trainable is None else num(trainable) if isinstance(trainable, int) else trainable
        pieces = _wrap(text, 84)
        out = [f"{label:<{w}}  {p:>13}  {t:>13}  {check:<5}  {pieces[0]}".rstrip()]
        return out + [f"{indent}{piece}" for piece in pieces[1:]]

    out = [
        f"{result['model']} · {result['model_class']} · method {result['method']} · {result['task']}, "
        f"{result['num_labels']} labels",
        f"source: {result['source']}",
        "",
    ]
    out += line("component", "params", "trainable", "check", "formula, with the numbers from the config")
    for r in rows:
        if r["params"] is None:  # parameters no formula accounts for: measured only
            out += line(
                r["component"], r["measured_params"], r["measured_trainable"], "", "(measured; no formula)"
            )
            continue
        measured = (r.get("measured_params"), r.get("measured_trainable"))
        same = measured == (r["params"], r["trainable"])
        out += line(r["component"], r["params"], r["trainable"], "ok" if same else "DIFF", r["formula"])
        if "trainable_formula" in r:
            out += line("", None, None, "", "trainable: " + r["trainable_formula"])
        if not same:
            out += line(
                "  measured", measured[0], measured[1], "", "<- PyTorch counts this; the formula is wrong"
            )
    pct = f"{result['trainable_pct']:.4f}% trainable"
    out.append("")
    if result["predicted_total"] is not None:
        pred_pct = 100.0 * result["predicted_trainable"] / max(result["predicted_total"], 1)
        out += line(
            "predicted",
            result["predicted_total"],
            result["predicted_trainable"],
            "",
            f"{pred_pct:.4f}% trainable",
        )
    out += line("measured on meta", result["total"], result["trainable"], "", pct)
    if result["match"] is None:
        out.append(result["note"])
    elif result["match"]:
        out += line("difference", "0", "0", "", "the prediction equals PyTorch's count")
    else:
        dt = result["total"] - result["predicted_total"]
        dtr = result["trainable"] - result["predicted_trainable"]
        out += line("difference", f"{dt:+,}", f"{dtr:+,}", "", "MISMATCH: the prediction is wrong")
    out += [note for note in result.get("notes") or []]
    out.append(f"counting: {result['counting']}")
    return "\n".join(out)
