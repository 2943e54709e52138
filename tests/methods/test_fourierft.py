"""`fourierft` on every tiny transformer family: predicted == measured line by line (defaults and uneven knobs), one
optimiser step, bad input as one line naming the flag (CNNs refused; n_frequency above a target's in × out names the
largest value that fits), and a saved adapter reloading onto a fresh base with identical logits.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, fourierft, register
from peftlab.methods.knobs import changed
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, measure_breakdown, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "params"))
from params_configs import BASE  # noqa: E402  (the public base models' config.json)

if "fourierft" not in REGISTRY:
    register(fourierft.METHOD)

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
    """Evaluate a rendered formula ("2 blocks × 2 × 1000 = 4,000") and check its own total."""
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


def knob_cases(family: str) -> list[fourierft.Knobs]:
    """Defaults, then uneven n over every Linear of a block, the largest n the tiny query (48 × 48) takes, the bias
    options, a zero-initialised spectrum, a saved module beside the head."""
    K = fourierft.Knobs
    every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
    cases = [K(), K(n_frequency=37, target=every, bias="fourier_only"), K(n_frequency=2304), K(bias="all")]
    cases += [K(n_frequency=411, target=["ffn_in"], init_weights=True, scaling=300.0, random_loc_seed=5)]
    if family == "bert":
        cases += [
            K(n_frequency=99, target=["dense"], modules_to_save=["pooler"])
        ]  # "dense": pooler.dense too
    return cases


def case_id(family: str, knobs) -> str:
    return ",".join([family] + [f"{k}={v}" for k, v in changed(knobs).items()])


CASES = [(f, k) for f in TRANSFORMERS for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "fourierft", knobs, num_labels=5)
    check(result)
    added = [r for r in result["breakdown"] if r["component"].startswith(fourierft.SPECTRUM)]
    assert len(added) == 1 and added[0]["params"] > 0 and added[0]["trainable"] == added[0]["params"]


def test_shapes_by_hand(folder):
    """bert tiny (2 blocks), query+value, n 1000: one (1000,) spectrum per layer, whatever the layer's shape."""
    rows = count(folder("bert"), "fourierft", num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(fourierft.SPECTRUM))
    assert line["formula"] == "2 blocks × 2 × 1000 = 4,000"


@pytest.mark.parametrize(("init_weights", "unchanged"), [(False, False), (True, True)])
def test_initial_spectrum(init_weights, unchanged):
    """PEFT's default spectrum is standard normal (the model changes before any step); init_weights starts at zero."""
    model, task, batch = tiny_model("bert")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        base = model(**inputs).logits
    prepared = fourierft.prepare(
        model, anatomy(model), fourierft.Knobs(init_weights=init_weights), Context(task)
    )
    with torch.no_grad():
        assert torch.equal(prepared(**inputs).logits, base) == unchanged


def step_and_check(family: str, knobs):
    """Prepare, compare with the arithmetic, take one AdamW step -> (model in eval mode, batch, the base's backbone
    weights before training: what a pretrained checkpoint gives a fresh base)."""
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    backbone = {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in anat.head}
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    predicted = predict_from_config(model.config, task, 5, fourierft.METHOD, knobs, pooling=pooling)
    prepared = fourierft.prepare(model, anat, knobs, Context(task))
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
    vectors = {n: p for n, p in prepared.named_parameters() if ".fourierft_spectrum." in n}
    assert vectors and all(p.requires_grad and p.grad.abs().sum() > 0 for p in vectors.values())
    opt.step()
    prepared.eval()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    still = [n for n, p in after.items() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f"trainable weights that did not move: {still[:3]}"
    return prepared, batch, backbone


STEP_CASES = [(f, fourierft.Knobs()) for f in FAMILIES if f not in CNNS]
STEP_CASES += [("bert", fourierft.Knobs(n_frequency=123, random_loc_seed=5, scaling=90.0, init_weights=True))]
STEP_CASES += [("vit", fourierft.Knobs(n_frequency=300, target=["key", "ffn_out"], bias="fourier_only"))]
STEP_CASES += [("distilbert", fourierft.Knobs(n_frequency=50, bias="all"))]


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
    ("bert", fourierft.Knobs(n_frequency=0), "--fourierft-n-frequency"),
    ("bert", fourierft.Knobs(scaling=-1.0), "--fourierft-scaling"),
    (
        "vit",
        fourierft.Knobs(target=["projection", "value"]),
        "--fourierft-target",
    ),  # the patch embedding: Conv2d
    ("clip", fourierft.Knobs(target=["patch_embedding"]), "--fourierft-target"),
    (
        "roberta",
        fourierft.Knobs(target=["classifier.dense"]),
        "--fourierft-target",
    ),  # the head is saved whole
    ("bert", fourierft.Knobs(bias="lora_only"), "--fourierft-bias"),
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    with pytest.raises(BadInput, match=flag) as e:
        count(folder(family), "fourierft", knobs, num_labels=5)
    assert "\n" not in str(e.value)
    model, task, _ = tiny_model(family)
    with pytest.raises(BadInput, match=flag) as e:
        fourierft.prepare(model, anatomy(model), knobs, Context(task))
    assert "\n" not in str(e.value)


TOO_MANY = [
    ("bert", fourierft.Knobs(n_frequency=2305), "bert.encoder.layer.0.attention.self.query", 2304),
    ("distilbert", fourierft.Knobs(n_frequency=5000, target=["ffn_in"]), "distilbert.transformer.layer.0.ffn.lin1",
     4800),  # 48 -> 100
    ("vit", fourierft.Knobs(n_frequency=3000, target=["ffn_out", "query"]), "vit.layers.0.attention.q_proj", 2304),
]  # fmt: skip


@pytest.mark.parametrize(("family", "knobs", "layer", "most"), TOO_MANY, ids=[t[0] for t in TOO_MANY])
def test_n_frequency_above_a_target_size_names_the_largest_that_fits(family, knobs, layer, most, folder):
    """PEFT refuses n > in × out deep inside get_peft_model; the line names the knob, the smallest target and its size."""
    want = f"--fourierft-n-frequency {knobs.n_frequency}: more than the .* = {most} weight entries of {layer}; use "
    want += f"--fourierft-n-frequency {most} or less"
    with pytest.raises(BadInput, match=want):
        count(folder(family), "fourierft", knobs, num_labels=5)
    model, task, _ = tiny_model(family)
    with pytest.raises(BadInput, match=want):
        fourierft.prepare(model, anatomy(model), knobs, Context(task))


@pytest.mark.parametrize("family", CNNS)
def test_cnns_are_refused_in_one_line(family, folder):
    """No CNN has a Linear layer FourierFT could take: the method does not apply (count), and prepare, called
    directly, names the target flag before PEFT's TypeError."""
    with pytest.raises(BadInput, match="--method fourierft: does not apply to") as e:
        count(folder(family), "fourierft", num_labels=5)
    assert "\n" not in str(e.value)
    if family in FAMILIES:
        model, task, _ = tiny_model(family)
        with pytest.raises(BadInput, match="--fourierft-target: FourierFT adapts Linear layers only"):
            fourierft.prepare(model, anatomy(model), fourierft.Knobs(), Context(task))


@pytest.mark.parametrize(
    ("name", "labels", "trainable"),
    [
        # 12 blocks × 2 (query, value) × 1000 + the RoBERTa head copy (768×768 + 768 + 768×3 + 3)
        ("roberta-base", 3, 12 * 2 * 1000 + 768 * 768 + 768 + 768 * 3 + 3),
        # 12 blocks × 2 × 1000 + the head copy 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 12 * 2 * 1000 + 768 * 101 + 101),
    ],
)
def test_base_sizes(name, labels, trainable, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BASE[name]))
    result = count(str(tmp_path), "fourierft", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
