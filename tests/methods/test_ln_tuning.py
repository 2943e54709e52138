"""`ln-tuning` on every tiny family: predicted == measured line by line at the defaults and at chosen targets and
saved modules, one step moves only the norm copies and the head copy, the adapter reloads onto a fresh base with
identical logits, bad targets are one line of bad input; the standard base sizes on the meta device.
"""

import json
import re

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, ln_tuning, register
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model

if "ln-tuning" not in REGISTRY:
    register(ln_tuning.METHOD)

Knobs = ln_tuning.Knobs
# PEFT warns "Unsupported layer type" for every norm PeftModel.from_pretrained wraps (prepare silences its own)
pytestmark = pytest.mark.filterwarnings("ignore:Unsupported layer type:UserWarning")


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


def copies(result: dict) -> dict:
    return next(r for r in result["breakdown"] if r["component"].startswith("LN-tuning copies"))


def norm_params(result: dict) -> int:
    """Every norm's weight + bias in the originals (the formulas write a norm as 2×n)."""
    return sum(formula_value(r["formula"]) for r in result["breakdown"] if "norm" in r["component"])


@pytest.mark.parametrize("family", list(TINY))
def test_defaults_predicted_equals_measured(family, tmp_path):
    result = count(folder_of(TINY[family], tmp_path), "ln-tuning", Knobs(), num_labels=5)
    check(result)
    line = copies(result)
    assert line["params"] == line["trainable"] > 0
    saved = [r for r in result["breakdown"] if r["component"].startswith("modules_to_save")]
    assert saved and saved[0]["trainable"] == saved[0]["params"]  # the head copy trains
    assert result["trainable"] == line["params"] + saved[0]["params"]  # nothing else does


KNOB_CASES = [
    ("bert", Knobs(target=["blocks"])),
    ("roberta", Knobs(target=["outside"])),
    ("distilbert", Knobs(target=["sa_layer_norm"])),
    ("vit", Knobs(target=["layernorm_before", "layernorm"])),  # "layernorm" is vit.layernorm only
    ("clip", Knobs(target=["layer_norm2", "pre_layrnorm"])),
    ("clip_vision_model", Knobs(target=["encoder.layers.1.layer_norm1"])),
    ("resnet", Knobs(target=["shortcut.normalization"])),
    ("mobilenet_v2", Knobs(target=["conv_3x3.normalization", "outside"])),
    ("mobilenet_v2-variant", Knobs(target=["blocks"])),
    ("bert", Knobs(modules_to_save=["pooler"])),  # + the classifier PEFT adds for text
    ("vit", Knobs(modules_to_save=["layernorm"])),  # the final norm saved whole, so not also copied
    ("clip", Knobs(modules_to_save=["post_layernorm", "classifier"])),
    ("resnet", Knobs(modules_to_save=[])),  # images: nothing saved, the head stays frozen
    ("resnet-basic", Knobs(target=["embedder.embedder.normalization"], modules_to_save=["classifier"])),
]


@pytest.mark.parametrize(("family", "knobs"), KNOB_CASES, ids=lambda x: x if isinstance(x, str) else repr(x))
def test_knobs_predicted_equals_measured(family, knobs, tmp_path):
    result = count(folder_of(TINY[family], tmp_path), "ln-tuning", knobs, num_labels=5)
    check(result)
    default = count(folder_of(TINY[family], tmp_path), "ln-tuning", Knobs(), num_labels=5)
    assert 0 < copies(result)["params"] <= copies(default)["params"]
    if knobs.target is None and knobs.modules_to_save is not None:
        assert copies(result)["params"] <= norm_params(result)
    if knobs.modules_to_save == []:
        assert result["trainable"] == copies(result)["params"]


@pytest.mark.parametrize(
    ("family", "knobs", "flag"),
    [
        ("bert", Knobs(target=["layer_norm"]), "--ln-tuning-target layer_norm"),
        ("resnet", Knobs(target=["query"]), "--ln-tuning-target query"),
        ("vit", Knobs(target=["layernorm"], modules_to_save=["layernorm"]), "--ln-tuning-target"),
        ("distilbert", Knobs(target=[" "]), "--ln-tuning-target"),
        ("vit", Knobs(modules_to_save=["no_such"]), "--ln-tuning-modules-to-save 'no_such'"),
        ("bert", Knobs(target=[]), "--ln-tuning-target []"),
    ],
)
def test_bad_targets_are_one_line_of_bad_input(family, knobs, flag, tmp_path):
    with pytest.raises(BadInput) as plan_error:
        count(folder_of(TINY[family], tmp_path), "ln-tuning", knobs, num_labels=5)
    assert str(plan_error.value).startswith(flag) and "\n" not in str(plan_error.value)
    if family in FAMILIES:
        model, task, _ = tiny_model(family)
        with pytest.raises(BadInput) as prepare_error:
            ln_tuning.prepare(model, anatomy(model), knobs, Context(task))
        assert str(prepare_error.value).startswith(flag) and "\n" not in str(prepare_error.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_moves_only_the_copies(family):
    model, task, batch = tiny_model(family)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        base_logits = model(**inputs).logits
    prepared = ln_tuning.prepare(model, anatomy(model), Knobs(), Context(task))
    with torch.no_grad():  # the copies start as the originals: the wrapped model computes the same function
        torch.testing.assert_close(prepared(**inputs).logits, base_logits, rtol=0, atol=0)
    trainable = [n for n, p in prepared.named_parameters() if p.requires_grad]
    assert trainable and all(".ln_tuning_layers." in n or ".modules_to_save." in n for n in trainable)

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
    moved = {n for n in trainable if not torch.equal(after[n], before[n])}
    assert any(".ln_tuning_layers." in n for n in moved) and any(".modules_to_save." in n for n in moved)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_reloads_onto_a_fresh_base(family, tmp_path):
    """save_pretrained -> PeftModel.from_pretrained on the same backbone with another random head: the same logits,
    exactly (BatchNorm copies bring their running statistics: buffers of the copy, saved with it)."""
    from peft import PeftModel

    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    pretrained = {
        k: v.clone() for k, v in model.state_dict().items()
    }  # the "pretrained" backbone of both bases
    prepared = ln_tuning.prepare(model, anat, Knobs(), Context(task))
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    prepared(**batch).loss.backward()
    opt.step()
    prepared.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        trained = prepared(**inputs).logits
    prepared.save_pretrained(tmp_path / "adapter")

    base, _, _ = tiny_model(family, seed=1)  # another random head; the same backbone weights
    backbone = {k: v for k, v in pretrained.items() if k.split(".")[0] not in anat.head}
    assert base.load_state_dict(backbone, strict=False).unexpected_keys == []
    with torch.no_grad():
        assert not torch.equal(base(**inputs).logits, trained)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "labels", "trainable", "total"),
    [
        # norm copies 2×768 + 12 × 2 × 2×768 = 38,400 + classifier copy (768×768 + 768 + 768×3 + 3) = 592,899
        ("roberta-base", 3, 631_299, 125_279_238),
        # norm copies 12 × 2 × 2×768 + final 2×768 = 38,400 + classifier copy 768×101 + 101 = 77,669
        ("google/vit-base-patch16-224-in21k", 101, 116_069, 85_992_394),
    ],
)
def test_base_sizes(name, labels, trainable, total, tmp_path):
    from params.params_configs import BASE

    result = count(folder_of(BASE[name], tmp_path), "ln-tuning", num_labels=labels)
    check(result)
    assert (result["trainable"], result["total"]) == (trainable, total)
