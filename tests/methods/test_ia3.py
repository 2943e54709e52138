"""`ia3` on every tiny family: predicted == measured line by line (defaults and uneven knobs), PEFT's own defaults
reproduced exactly, one optimiser step, bad input as one line naming the flag, and a saved adapter reloading onto a
fresh base with identical logits.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, ia3, register
from peftlab.methods.knobs import changed
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, measure_breakdown, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "params"))
from params_configs import BASE  # noqa: E402  (the public base models' config.json)

if "ia3" not in REGISTRY:
    register(ia3.METHOD)


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
    """Evaluate a rendered formula ("2 blocks × [48 + 100] = 296") and check its own total."""
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


def knob_cases(family: str) -> list[ia3.Knobs]:
    """Defaults, then uneven target / feed-forward splits: every Linear of a block with PEFT's (or peftlab's)
    feed-forward default, none feed-forward, an input-scaled ffn_in; on CNNs kxk / depthwise convs scaled on their
    input channels; on ViT/CLIP the patch-embedding conv; a saved module beside the head."""
    K = ia3.Knobs
    cases = [K()]
    if family.startswith("resnet"):
        cases += [K(target=["pointwise", "spatial"], feedforward=["spatial"]), K(target=["spatial"])]
    elif family.startswith("mobilenet"):
        cases += [
            K(target=["depthwise", "pointwise"], feedforward=["depthwise"]),
            K(feedforward=["pointwise"]),
        ]
    else:
        every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
        cases += [
            K(target=every),
            K(target=every, feedforward=[]),
            K(target=["key", "ffn_in"], feedforward=["ffn_in"]),
        ]
        if family.startswith(("vit", "clip")):
            patch = "projection" if family.startswith("vit") else "patch_embedding"
            cases += [K(target=[patch, "value", "ffn_out"], feedforward=[patch])]
        if family in ("bert", "roberta"):  # PEFT's "output.dense" feed-forward entry, typed by the user
            saved = (
                ["pooler"] if family == "bert" else ["classifier"]
            )  # RoBERTa has no pooler in its classifier
            cases += [
                K(target=["query", "output.dense"], feedforward=["output.dense"], modules_to_save=saved)
            ]
    return cases


def case_id(family: str, knobs) -> str:
    return ",".join([family] + [f"{k}={v}" for k, v in changed(knobs).items()])


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "ia3", knobs, num_labels=5)
    check(result)
    added = [r for r in result["breakdown"] if r["component"].startswith("ia3")]
    assert added and all(r["params"] > 0 and r["trainable"] == r["params"] for r in added)


def test_shapes_by_hand(folder):
    """bert tiny (H 48, F 100, 2 blocks), PEFT's default: key and value scale their 48 outputs; attention.output.dense
    (48 -> 48) and output.dense (100 -> 48) both end with "output.dense", so both scale their inputs: 48 and 100."""
    rows = {r["component"]: r for r in count(folder("bert"), "ia3", num_labels=5)["breakdown"]}
    assert rows["ia3 output scales on key,value"]["formula"] == "2 blocks × 2 × 48 = 192"
    assert rows["ia3 input scales (feed-forward) on output.dense"]["formula"] == "2 blocks × [48 + 100] = 296"
    # resnet: a 1x1 conv scaled on its input channels: (1, in, 1, 1)
    k = ia3.Knobs(target=["resnet.encoder.stages.0.layers.0.layer.2.convolution"], feedforward=["pointwise"])
    rows = count(folder("resnet"), "ia3", k, num_labels=5)["breakdown"]
    assert [r["formula"] for r in rows if r["component"].startswith("ia3")] == [
        "1 block × 4 = 4"
    ]  # 16 / 4 wide


def test_peft_mapping_copies_match_peft():
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
    )

    assert {k: TARGETS[k] for k in ia3.PEFT_TARGETS} == ia3.PEFT_TARGETS
    assert {k: FF[k] for k in ia3.PEFT_FEEDFORWARD} == ia3.PEFT_FEEDFORWARD


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_defaults_are_peft_own_defaults(family):
    """IA3Config(task_type=SEQ_CLS) alone (PEFT picks targets and feed-forward modules from its mappings) and
    peftlab's explicit full names build the same vectors on the same layers."""
    from peft import IA3Config, get_peft_model

    def vectors(model) -> dict:
        return {n: tuple(p.shape) for n, p in model.named_parameters() if ".ia3_l." in n}

    model, task, _ = tiny_model(family)
    theirs = vectors(get_peft_model(model, IA3Config(task_type="SEQ_CLS")))
    model, task, _ = tiny_model(family)
    ours = vectors(ia3.prepare(model, anatomy(model), ia3.Knobs(), Context(task)))
    assert ours == theirs
    assert (1, 100) in ours.values() and (1, 48) in ours.values() and (48, 1) in ours.values()


def step_and_check(family: str, knobs):
    """Prepare, compare with the arithmetic, take one AdamW step -> (model in eval mode, batch, the base's backbone
    weights before training: what a pretrained checkpoint gives a fresh base)."""
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    backbone = {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in anat.head}
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    predicted = predict_from_config(model.config, task, 5, ia3.METHOD, knobs, pooling=pooling)
    prepared = ia3.prepare(model, anat, knobs, Context(task))
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
    vectors = {n: p for n, p in prepared.named_parameters() if ".ia3_l." in n}
    assert vectors and all(p.requires_grad and p.grad.abs().sum() > 0 for p in vectors.values())
    opt.step()
    prepared.eval()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    still = [n for n, p in after.items() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f"trainable weights that did not move: {still[:3]}"
    return prepared, batch, backbone


STEP_CASES = [(f, ia3.Knobs()) for f in FAMILIES]
STEP_CASES += [
    ("vit", ia3.Knobs(target=["projection", "key", "ffn_in"], feedforward=["projection", "ffn_in"]))
]
STEP_CASES += [("mobilenet_v2", ia3.Knobs(target=["depthwise", "pointwise"], feedforward=["depthwise"]))]


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
        # so a reload computes other logits until they are brought over (as tests/methods/test_loha.py does)
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
    (
        "bert",
        ia3.Knobs(target=["key", "value"], feedforward=["ffn_out"]),
        "--ia3-feedforward",
    ),  # not a target
    ("vit", ia3.Knobs(feedforward=["fc9"]), "--ia3-feedforward"),  # no such module
    ("resnet", ia3.Knobs(target=["depthwise"]), "--ia3-target"),  # no depthwise conv in a ResNet
    ("roberta", ia3.Knobs(target=["classifier.dense"]), "--ia3-target"),  # the head is saved whole
    ("distilbert", ia3.Knobs(modules_to_save=["nothing_here"]), "--ia3-modules-to-save"),
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    with pytest.raises(BadInput, match=flag) as e:
        count(folder(family), "ia3", knobs, num_labels=5)
    assert "\n" not in str(e.value)
    model, task, _ = tiny_model(family)
    with pytest.raises(BadInput, match=flag) as e:
        ia3.prepare(model, anatomy(model), knobs, Context(task))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("name", "labels", "trainable"),
    [
        # 12 blocks × (768 key + 768 value + 768 attention-out inputs + 3072 feed-forward inputs) + the RoBERTa head
        # copy (768×768 + 768 + 768×3 + 3)
        ("roberta-base", 3, 12 * (768 + 768 + 768 + 3072) + 768 * 768 + 768 + 768 * 3 + 3),
        # 12 blocks × (768 query + 768 value outputs) + the head copy 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 12 * (768 + 768) + 768 * 101 + 101),
    ],
)
def test_base_sizes(name, labels, trainable, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BASE[name]))
    result = count(str(tmp_path), "ia3", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
