"""`ln-tuning` on every tiny family: predicted == measured line by line at the defaults and at chosen targets and
saved modules, one step moves only the norm copies and the head copy, the adapter reloads onto a fresh base with
identical logits, bad targets are one line of bad input; the standard base sizes on the meta device.
"""

import pytest
import torch

from checks import (
    backbone_of,
    check,
    config_folder,
    formula_value,
    inputs_of,
    one_step,
    prepare_tiny,
    refused,
    reloads_the_same,
)
from params.params_configs import BASE
from peftlab.methods import Context, ln_tuning
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model

Knobs = ln_tuning.Knobs
# PEFT warns "Unsupported layer type" for every norm PeftModel.from_pretrained wraps (prepare silences its own)
pytestmark = pytest.mark.filterwarnings("ignore:Unsupported layer type:UserWarning")


def copies(result: dict) -> dict:
    return next(r for r in result["breakdown"] if r["component"].startswith("LN-tuning copies"))


def norm_params(result: dict) -> int:
    """Every norm's weight + bias in the originals (the formulas write a norm as 2×n)."""
    return sum(formula_value(r["formula"]) for r in result["breakdown"] if "norm" in r["component"])


@pytest.mark.parametrize("family", list(TINY))
def test_defaults_predicted_equals_measured(family, tmp_path):
    result = count(config_folder(tmp_path, TINY[family]), "ln-tuning", Knobs(), num_labels=5)
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
    result = count(config_folder(tmp_path, TINY[family]), "ln-tuning", knobs, num_labels=5)
    check(result)
    default = count(config_folder(tmp_path, TINY[family]), "ln-tuning", Knobs(), num_labels=5)
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
    assert refused(
        None, count, config_folder(tmp_path, TINY[family]), "ln-tuning", knobs, num_labels=5
    ).startswith(flag)
    if family in FAMILIES:
        assert refused(None, prepare_tiny, ln_tuning, family, knobs).startswith(flag)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_moves_only_the_copies(family):
    model, task, batch = tiny_model(family)
    inputs = inputs_of(batch)
    with torch.no_grad():
        base_logits = model(**inputs).logits
    prepared = ln_tuning.prepare(model, anatomy(model), Knobs(), Context(task))
    with torch.no_grad():  # the copies start as the originals: the wrapped model computes the same function
        torch.testing.assert_close(prepared(**inputs).logits, base_logits, rtol=0, atol=0)
    trainable = [n for n, p in prepared.named_parameters() if p.requires_grad]
    assert trainable and all(".ln_tuning_layers." in n or ".modules_to_save." in n for n in trainable)

    # asked of the copies: that some move (below), not each one (all_move=False)
    before, after = one_step(prepared, batch, all_move=False)
    moved = {n for n in trainable if not torch.equal(after[n], before[n])}
    assert any(".ln_tuning_layers." in n for n in moved) and any(".modules_to_save." in n for n in moved)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_reloads_onto_a_fresh_base(family, tmp_path):
    """save_pretrained -> PeftModel.from_pretrained on the same backbone with another random head: the same logits,
    exactly (BatchNorm copies bring their running statistics: buffers of the copy, saved with it)."""
    model, task, batch = tiny_model(family)
    backbone = backbone_of(model)  # the "pretrained" backbone of both bases
    prepared = ln_tuning.prepare(model, anatomy(model), Knobs(), Context(task))
    one_step(prepared, batch, all_move=False)
    fresh, _, _ = tiny_model(family, seed=1)  # another random head; the same backbone weights
    reloads_the_same(prepared, batch, backbone, fresh, tmp_path / "adapter")


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
    result = count(config_folder(tmp_path, BASE[name]), "ln-tuning", num_labels=labels)
    check(result)
    assert (result["trainable"], result["total"]) == (trainable, total)
