"""`loha` on every tiny family: predicted == measured line by line (defaults and uneven knobs), one optimiser step,
bad input as one line naming the flag, and a saved adapter reloading onto a fresh base with identical logits.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, loha, register
from peftlab.methods.knobs import changed
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, measure_breakdown, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "params"))
from params_configs import BASE  # noqa: E402  (the public base models' config.json)

if "loha" not in REGISTRY:
    register(loha.METHOD)


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
    """Evaluate a rendered formula ("2 blocks × 2 × 2 × 8 × (48 + 48) = 6,144") and check its own total."""
    text, _, total = formula.rpartition(" = ")
    if not text:
        return int(re.sub(r"[A-Za-z_ ,]", "", formula))
    arithmetic = re.sub(r"[A-Za-z_]+", " ", text).replace("×", "*").replace("[", "(").replace("]", ")")
    value = eval(arithmetic, {"__builtins__": {}})  # digits, + * / ( ) only: the words were removed
    assert value == int(total.replace(",", "")), formula
    return round(value)


@pytest.fixture
def folder(tmp_path):
    def make(family: str) -> str:
        path = tmp_path / family
        path.mkdir(exist_ok=True)
        (path / "config.json").write_text(json.dumps(TINY[family]))
        return str(path)

    return make


def knob_cases(family: str) -> list[loha.Knobs]:
    """Defaults, then uneven ranks and targets: every Linear of a block; on CNNs kxk and depthwise convs, with and
    without the CP cores of use_effective_conv2d; on ViT/CLIP the patch-embedding conv."""
    K = loha.Knobs
    cases = [K(), K(r=3, alpha=5.0)]
    # MobileNetV2's only kxk conv with groups 1 is the stem's first (3 -> 32·m channels, 3x3)
    if family.startswith("resnet"):
        cases += [
            K(r=5, target=["spatial"]),
            K(r=3, target=["spatial", "pointwise"], use_effective_conv2d=True),
        ]
    elif family.startswith("mobilenet"):
        stem = "conv_stem.first_conv.convolution"
        cases += [K(r=3, target=["depthwise"]), K(r=7, target=["depthwise", stem], use_effective_conv2d=True)]
        cases += [K(r=5, target=[stem, "pointwise"])]
    else:
        cases += [K(r=5, target=["query", "key", "value", "attn_out", "ffn_in", "ffn_out"])]
        if family.startswith(("vit", "clip")):
            patch = "projection" if family.startswith("vit") else "patch_embedding"
            cases += [K(r=3, target=[patch, "value"], use_effective_conv2d=True), K(r=11, target=[patch])]
    return cases


def case_id(family: str, knobs) -> str:
    return ",".join([family] + [f"{k}={v}" for k, v in changed(knobs).items()])


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "loha", knobs, num_labels=5)
    check(result)
    added = [r for r in result["breakdown"] if r["component"].startswith(loha.LOHA)]
    assert len(added) == 1 and added[0]["params"] > 0 and added[0]["trainable"] == added[0]["params"]


def test_shapes_by_hand(folder):
    """bert tiny (H 48, 2 blocks), query+value: 2 blocks × 2 × [2 × 8 × (48 + 48)] = 6,144 adapter parameters;
    mobilenet_v2 depthwise 3x3 with CP cores, r 7, the first blocks (48 channels): 2 × (7·7·9 + 7 × (48 + 1))."""
    rows = count(folder("bert"), "loha", num_labels=5)["breakdown"]
    assert next(r for r in rows if r["component"].startswith(loha.LOHA))["params"] == 6_144
    k = loha.Knobs(r=7, target=["depthwise"], use_effective_conv2d=True)
    rows = count(folder("mobilenet_v2"), "loha", k, num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(loha.LOHA))
    assert line["formula"].startswith("3 blocks × 2 × (7×7×3×3 + 7 × (48 + 1)) + ")


def step_and_check(family: str, knobs):
    """Prepare, compare with the arithmetic, take one AdamW step -> (model in eval mode, batch, the base's backbone
    weights before training: what a pretrained checkpoint gives a fresh base)."""
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    backbone = {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in anat.head}
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    predicted = predict_from_config(model.config, task, 5, loha.METHOD, knobs, pooling=pooling)
    prepared = loha.prepare(model, anat, knobs, Context(task))
    assert (measure(prepared)["trainable"], measure(prepared)["total"]) == (
        predicted.trainable,
        predicted.total,
    )
    measured = {r["component"]: (r["params"], r["trainable"]) for r in measure_breakdown(prepared, predicted)}
    assert measured == {r["component"]: (r["params"], r["trainable"]) for r in predicted.breakdown}

    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    loss = prepared(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    prepared.eval()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    still = [n for n, p in after.items() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f"trainable weights that did not move: {still[:3]}"
    assert any(".hada_w2_b." in n for n, p in after.items() if p.requires_grad)  # the zero-initialised factor
    return prepared, batch, backbone


STEP_CASES = [(f, loha.Knobs(r=3)) for f in FAMILIES]
STEP_CASES += [
    ("mobilenet_v2", loha.Knobs(r=3, target=["depthwise", "pointwise"], use_effective_conv2d=True))
]
STEP_CASES += [("resnet", loha.Knobs(r=2, target=["spatial"], use_effective_conv2d=True, rank_dropout=0.3))]


@pytest.mark.parametrize(("family", "knobs"), STEP_CASES, ids=[case_id(*c) for c in STEP_CASES])
def test_one_step_and_reload(family, knobs, tmp_path):
    from peft import PeftModel

    trained, batch, backbone = step_and_check(family, knobs)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trained.save_pretrained(tmp_path / "adapter")
    fresh, _, _ = tiny_model(family, seed=1)  # another random head: only the saved copy can bring it back
    missing = fresh.load_state_dict(
        backbone, strict=False
    ).missing_keys  # the "pretrained" backbone, as loaded
    assert missing and all(n.split(".")[0] in anatomy(fresh).head for n in missing)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    if family in ("mobilenet_v2", "resnet"):
        # BatchNorm's running statistics moved in the train-mode step; PEFT saves adapters + modules_to_save only,
        # so a reload computes other logits until they are brought over (PEFT's own vision tests save
        # "normalization" whole for this reason)
        with torch.no_grad():
            assert not torch.equal(trained(**inputs).logits, reloaded(**inputs).logits)
        stats = dict(trained.named_buffers())
        for name, buf in reloaded.named_buffers():
            buf.copy_(stats[name])
    with torch.no_grad():
        want, got = trained(**inputs).logits, reloaded(**inputs).logits
    assert want.shape == (4, 5)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


BAD = [
    ("bert", loha.Knobs(r=0), "--loha-r"),
    ("vit", loha.Knobs(rank_dropout=1.0), "--loha-rank-dropout"),
    ("resnet", loha.Knobs(target=["depthwise"]), "--loha-target"),  # no depthwise conv in a ResNet
    ("roberta", loha.Knobs(target=["classifier.dense"]), "--loha-target"),  # the head is saved whole
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    with pytest.raises(BadInput, match=flag) as e:
        count(folder(family), "loha", knobs, num_labels=5)
    assert "\n" not in str(e.value)
    model, task, _ = tiny_model(family)
    with pytest.raises(BadInput, match=flag) as e:
        loha.prepare(model, anatomy(model), knobs, Context(task))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("name", "labels"), [("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101)]
)
def test_base_sizes(name, labels, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BASE[name]))
    check(count(str(tmp_path), "loha", num_labels=labels))
