"""`fourierft` on every tiny transformer family: predicted == measured line by line (defaults and uneven knobs), one
optimiser step, bad input as one line naming the flag (CNNs refused; n_frequency above a target's in × out names the
largest value that fits), and a saved adapter reloading onto a fresh base with identical logits.
"""

import pytest
import torch

from checks import (
    added_line,
    case_id,
    check,
    config_folder,
    folders,
    inputs_of,
    planned_step,
    prepare_tiny,
    refused,
    reloads_the_same,
)
from params.params_configs import BASE
from peftlab.methods import Context, fourierft
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model

CNNS = [f for f in TINY if f.startswith(("mobilenet", "resnet"))]
TRANSFORMERS = [f for f in TINY if f not in CNNS]


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


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


CASES = [(f, k) for f in TRANSFORMERS for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "fourierft", knobs, num_labels=5)
    check(result)
    added_line(result, fourierft.SPECTRUM)


def test_shapes_by_hand(folder):
    """bert tiny (2 blocks), query+value, n 1000: one (1000,) spectrum per layer, whatever the layer's shape."""
    rows = count(folder("bert"), "fourierft", num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(fourierft.SPECTRUM))
    assert line["formula"] == "2 blocks × 2 × 1000 = 4,000"


@pytest.mark.parametrize(("init_weights", "unchanged"), [(False, False), (True, True)])
def test_initial_spectrum(init_weights, unchanged):
    """PEFT's default spectrum is standard normal (the model changes before any step); init_weights starts at zero."""
    model, task, batch = tiny_model("bert")
    inputs = inputs_of(batch)
    with torch.no_grad():
        base = model(**inputs).logits
    prepared = fourierft.prepare(
        model, anatomy(model), fourierft.Knobs(init_weights=init_weights), Context(task)
    )
    with torch.no_grad():
        assert torch.equal(prepared(**inputs).logits, base) == unchanged


def step_and_check(family: str, knobs):
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    prepared, batch, backbone = planned_step(
        fourierft.METHOD, tiny_model(family), knobs, graded=".fourierft_spectrum."
    )
    return prepared, batch, backbone


STEP_CASES = [(f, fourierft.Knobs()) for f in FAMILIES if f not in CNNS]
STEP_CASES += [("bert", fourierft.Knobs(n_frequency=123, random_loc_seed=5, scaling=90.0, init_weights=True))]
STEP_CASES += [("vit", fourierft.Knobs(n_frequency=300, target=["key", "ffn_out"], bias="fourier_only"))]
STEP_CASES += [("distilbert", fourierft.Knobs(n_frequency=50, bias="all"))]


@pytest.mark.parametrize(("family", "knobs"), STEP_CASES, ids=[case_id(*c) for c in STEP_CASES])
def test_one_step_and_reload(family, knobs, tmp_path):
    trained, batch, backbone = step_and_check(family, knobs)
    fresh, _, _ = tiny_model(family, seed=1)  # another random head: only the saved copy can bring it back
    reloads_the_same(trained, batch, backbone, fresh, tmp_path / "adapter")


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
    refused(flag, count, folder(family), "fourierft", knobs, num_labels=5)
    refused(flag, prepare_tiny, fourierft, family, knobs)


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
    refused(want, count, folder(family), "fourierft", knobs, num_labels=5)
    refused(want, prepare_tiny, fourierft, family, knobs)


@pytest.mark.parametrize("family", CNNS)
def test_cnns_are_refused_in_one_line(family, folder):
    """No CNN has a Linear layer FourierFT could take: the method does not apply (count), and prepare, called
    directly, names the target flag before PEFT's TypeError."""
    refused("--method fourierft: does not apply to", count, folder(family), "fourierft", num_labels=5)
    if family in FAMILIES:
        refused(
            "--fourierft-target: FourierFT adapts Linear layers only",
            prepare_tiny,
            fourierft,
            family,
            fourierft.Knobs(),
        )


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
    result = count(config_folder(tmp_path, BASE[name]), "fourierft", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
