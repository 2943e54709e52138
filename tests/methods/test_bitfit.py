"""`bitfit` on every tiny family: predicted == measured line by line, one step moves only biases and the head, the
saved full model reloads with identical logits; the standard base sizes from config.json on the meta device.
"""

import json
import re

import pytest
import torch

from peftlab.methods import REGISTRY, Context, bitfit, register
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import CLASSES, FAMILIES, TINY, tiny_model

if "bitfit" not in REGISTRY:
    register(bitfit.METHOD)


def check(result: dict) -> None:
    """The prediction exists and equals the measured count, in total and line by line; formulas add up."""
    assert result["predicted_total"] is not None, result["note"]
    rows = result["breakdown"]
    outside = [r["component"] for r in rows if r["params"] is None]
    assert outside == [], f"measured parameters outside every formula: {outside}"
    for r in rows:
        assert (r["measured_params"], r["measured_trainable"]) == (r["params"], r["trainable"]), r
        assert formula_value(r["formula"]) == r["params"], r
        if "trainable_formula" in r:
            assert formula_value(r["trainable_formula"]) == r["trainable"], r
    assert result["predicted_total"] == result["total"] == sum(r["params"] for r in rows)
    assert result["predicted_trainable"] == result["trainable"] == sum(r["trainable"] for r in rows)
    assert result["match"] is True


def formula_value(formula: str) -> int:
    """Evaluate a rendered formula ("words 97×48 + 2 blocks × 3 × (48×48 + 48) = 14,448") and check its own total."""
    text, _, total = formula.rpartition(" = ")
    if not text:  # a bare count, maybe labelled: "biases 48"
        return int(re.sub(r"[A-Za-z_ ,]", "", formula))
    arithmetic = re.sub(r"[A-Za-z_]+", " ", text).replace("×", "*").replace("[", "(").replace("]", ")")
    value = eval(arithmetic, {"__builtins__": {}})  # digits, + * / ( ) only: the words were removed
    assert value == int(total.replace(",", "")), formula
    return round(value)


def folder_of(config: dict, tmp_path) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


@pytest.mark.parametrize("family", list(TINY))
def test_predicted_equals_measured(family, tmp_path):
    result = count(folder_of(TINY[family], tmp_path), "bitfit", bitfit.METHOD.knobs(), num_labels=5)
    check(result)
    rows = {r["component"]: r for r in result["breakdown"]}
    assert rows["head"]["trainable"] == rows["head"]["params"]  # the head trains whole
    for r in rows.values():  # elsewhere only biases: a partial count labelled as such, or nothing
        if r["component"] != "head" and 0 < r["trainable"] < r["params"]:
            assert r["trainable_formula"].startswith("biases ")


def test_norm_biases_train_and_gains_do_not(tmp_path):
    """BitFit's b of LayerNorm / BatchNorm trains; the gain (norm weight) stays frozen."""
    for family in ("bert", "resnet"):
        result = count(folder_of(TINY[family], tmp_path), "bitfit", num_labels=5)
        norms = next(r for r in result["breakdown"] if r["component"] in ("block layer norms", "stage 1"))
        assert 0 < norms["trainable"] < norms["params"], norms


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_moves_biases_and_head_only(family):
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    prepared = bitfit.prepare(model, anat, bitfit.METHOD.knobs(), Context(task))
    trainable = [n for n, p in prepared.named_parameters() if p.requires_grad]
    in_head = [n for n in trainable if any(n == h or n.startswith(h + ".") for h in anat.head)]
    assert in_head and all(n.endswith(".bias") for n in trainable if n not in in_head)
    norms = [
        n for n, m in prepared.named_modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))
    ]
    assert norms and all(f"{n}.bias" in trainable and f"{n}.weight" not in trainable for n in norms)

    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    loss = prepared(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    assert all(not torch.equal(after[n], before[n]) for n in in_head)
    assert any(not torch.equal(after[n], before[n]) for n in trainable if n not in in_head)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_reloads_with_identical_logits(family, tmp_path):
    """Not an adapter: the full model folder, reloaded by its class, gives the trained model's logits exactly."""
    model, task, batch = tiny_model(family)
    prepared = bitfit.prepare(model, anatomy(model), bitfit.METHOD.knobs(), Context(task))
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    prepared(**batch).loss.backward()
    opt.step()
    prepared.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        trained = prepared(**inputs).logits
    prepared.save_pretrained(tmp_path / "model")
    torch.manual_seed(123)
    reloaded = CLASSES[family].from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "labels", "trainable", "total"),
    [
        # biases 768 (embeddings norm) + 12 × (3×768 + 768 + 2×768 + 3072 + 768) = 102,144; + head 592,899
        ("roberta-base", 3, 695_043, 124_647_939),
        # biases 768 (patch projection) + 12 × 8,448 + 768 (final norm) = 102,912; + head 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 180_581, 85_876_325),
    ],
)
def test_base_sizes(name, labels, trainable, total, tmp_path):
    from params.params_configs import BASE

    result = count(folder_of(BASE[name], tmp_path), "bitfit", num_labels=labels)
    check(result)
    assert (result["trainable"], result["total"]) == (trainable, total)
