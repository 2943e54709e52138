"""`vera` on every tiny transformer family: predicted == measured line by line (defaults and uneven knobs), the shared
projections as buffers that count nowhere, one optimiser step, bad input as one line naming the flag (CNNs refused),
and a saved adapter reloading onto a fresh base with identical logits.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, register, vera
from peftlab.methods.knobs import changed
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, measure_breakdown, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "params"))
from params_configs import BASE  # noqa: E402  (the public base models' config.json)

if "vera" not in REGISTRY:
    register(vera.METHOD)

CNNS = [f for f in TINY if f.startswith(("mobilenet", "resnet"))]
TRANSFORMERS = [f for f in TINY if f not in CNNS]


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
    """Evaluate a rendered formula ("2 blocks × 2 × (48 + 256) = 1,216") and check its own total."""
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


def knob_cases(family: str) -> list[vera.Knobs]:
    """Defaults, then uneven ranks over every Linear of a block, VeRA's bias options, a saved module beside the head."""
    K = vera.Knobs
    every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
    cases = [
        K(),
        K(r=7, target=every),
        K(r=13, target=["key", "ffn_out"], bias="vera_only"),
        K(r=5, bias="all"),
    ]
    if family == "bert":
        cases += [
            K(r=3, target=["dense"], modules_to_save=["pooler"], bias="all")
        ]  # "dense": pooler.dense too
    return cases


def case_id(family: str, knobs) -> str:
    return ",".join([family] + [f"{k}={v}" for k, v in changed(knobs).items()])


CASES = [(f, k) for f in TRANSFORMERS for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "vera", knobs, num_labels=5)
    check(result)
    added = [r for r in result["breakdown"] if r["component"].startswith(vera.LAMBDAS)]
    assert len(added) == 1 and added[0]["params"] > 0 and added[0]["trainable"] == added[0]["params"]


def test_shapes_by_hand(folder):
    """bert tiny (H 48, 2 blocks), query+value, r 256: lambda_b (48,) + lambda_d (256,) per layer."""
    rows = count(folder("bert"), "vera", num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(vera.LAMBDAS))
    assert line["formula"] == "2 blocks × 2 × (48 + 256) = 1,216"


def test_shared_projections_are_buffers_sized_to_the_largest_target():
    """One vera_A (r × largest in) and vera_B (largest out × r) for all targets: buffers, never parameters."""
    model, task, _ = tiny_model("bert")
    knobs = vera.Knobs(r=9, target=["query", "ffn_in", "ffn_out"])  # in 48 / 48 / 100, out 48 / 100 / 48
    prepared = vera.prepare(model, anatomy(model), knobs, Context(task))
    buffers = dict(prepared.named_buffers(remove_duplicate=False))  # every layer holds the shared pair
    a = {id(b): tuple(b.shape) for n, b in buffers.items() if ".vera_A." in n}
    b = {id(b): tuple(b.shape) for n, b in buffers.items() if ".vera_B." in n}
    assert list(a.values()) == [(9, 100)] and list(b.values()) == [(100, 9)]  # one tensor each, shared
    assert not [n for n, _ in prepared.named_parameters() if ".vera_A" in n or ".vera_B" in n]
    shapes = {n.split(".vera_lambda_")[1]: tuple(p.shape) for n, p in prepared.named_parameters()
              if "intermediate.dense.vera_lambda_" in n and "layer.0." in n}  # fmt: skip
    assert shapes == {"b.default": (100,), "d.default": (9,)}


def step_and_check(family: str, knobs):
    """Prepare, compare with the arithmetic, take one AdamW step -> (model in eval mode, batch, the base's backbone
    weights before training: what a pretrained checkpoint gives a fresh base)."""
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    backbone = {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in anat.head}
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    predicted = predict_from_config(model.config, task, 5, vera.METHOD, knobs, pooling=pooling)
    prepared = vera.prepare(model, anat, knobs, Context(task))
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
    # lambda_b starts at zero, so it has a gradient; lambda_d (0.1) gets none until lambda_b moves: AdamW's weight
    # decay moves it in this first step
    lambda_b = {n: p for n, p in prepared.named_parameters() if ".vera_lambda_b." in n}
    assert lambda_b and all(p.requires_grad and p.grad.abs().sum() > 0 for p in lambda_b.values())
    opt.step()
    prepared.eval()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    still = [n for n, p in after.items() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f"trainable weights that did not move: {still[:3]}"
    return prepared, batch, backbone


STEP_CASES = [(f, vera.Knobs()) for f in FAMILIES if f not in CNNS]
STEP_CASES += [("bert", vera.Knobs(r=6, save_projection=False, projection_prng_key=3, d_initial=0.05))]
STEP_CASES += [("vit", vera.Knobs(r=11, target=["key", "ffn_in"], bias="vera_only", dropout=0.2))]
STEP_CASES += [("roberta", vera.Knobs(r=4, bias="all"))]


@pytest.mark.filterwarnings("ignore:Specified to not")  # save_projection=False: PEFT warns on save and load
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
    with torch.no_grad():
        want, got = trained(**inputs).logits, reloaded(**inputs).logits
    assert want.shape == (4, 5)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


BAD = [
    ("bert", vera.Knobs(r=0), "--vera-r"),
    ("distilbert", vera.Knobs(dropout=1.0), "--vera-dropout"),
    ("vit", vera.Knobs(target=["projection", "value"]), "--vera-target"),  # the patch embedding is a Conv2d
    ("clip", vera.Knobs(target=["patch_embedding"]), "--vera-target"),
    ("roberta", vera.Knobs(target=["classifier.dense"]), "--vera-target"),  # the head is saved whole
    ("bert", vera.Knobs(bias="lora_only"), "--vera-bias"),
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    with pytest.raises(BadInput, match=flag) as e:
        count(folder(family), "vera", knobs, num_labels=5)
    assert "\n" not in str(e.value)
    model, task, _ = tiny_model(family)
    with pytest.raises(BadInput, match=flag) as e:
        vera.prepare(model, anatomy(model), knobs, Context(task))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("family", CNNS)
def test_cnns_are_refused_in_one_line(family, folder):
    """No CNN has a Linear layer VeRA could take: the method does not apply (count), and prepare, called directly,
    names the target flag before PEFT's TypeError."""
    with pytest.raises(BadInput, match="--method vera: does not apply to") as e:
        count(folder(family), "vera", num_labels=5)
    assert "\n" not in str(e.value)
    if family in FAMILIES:
        model, task, _ = tiny_model(family)
        with pytest.raises(BadInput, match="--vera-target: VeRA adapts Linear layers only"):
            vera.prepare(model, anatomy(model), vera.Knobs(), Context(task))


@pytest.mark.parametrize(
    ("name", "labels", "trainable"),
    [
        # 12 blocks × 2 (query, value) × (768 + 256) + the RoBERTa head copy (768×768 + 768 + 768×3 + 3)
        ("roberta-base", 3, 12 * 2 * (768 + 256) + 768 * 768 + 768 + 768 * 3 + 3),
        # 12 blocks × 2 × (768 + 256) + the head copy 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 12 * 2 * (768 + 256) + 768 * 101 + 101),
    ],
)
def test_base_sizes(name, labels, trainable, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BASE[name]))
    result = count(str(tmp_path), "vera", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
