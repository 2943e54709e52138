"""`vera` on every tiny transformer family: predicted == measured line by line (defaults and uneven knobs), the shared
projections as buffers that count nowhere, one optimiser step, bad input as one line naming the flag (CNNs refused),
and a saved adapter reloading onto a fresh base with identical logits.
"""

import pytest

from checks import (
    added_line,
    case_id,
    check,
    config_folder,
    folders,
    planned_step,
    prepare_tiny,
    refused,
    reloads_the_same,
)
from params.params_configs import BASE
from peftlab.methods import Context, vera
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model

CNNS = [f for f in TINY if f.startswith(("mobilenet", "resnet"))]
TRANSFORMERS = [f for f in TINY if f not in CNNS]


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


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


CASES = [(f, k) for f in TRANSFORMERS for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "vera", knobs, num_labels=5)
    check(result)
    added_line(result, vera.LAMBDAS)


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
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    # lambda_b starts at zero, so it has a gradient; lambda_d (0.1) gets none until lambda_b moves: AdamW's weight
    # decay moves it in this first step
    prepared, batch, backbone = planned_step(vera.METHOD, tiny_model(family), knobs, graded=".vera_lambda_b.")
    return prepared, batch, backbone


STEP_CASES = [(f, vera.Knobs()) for f in FAMILIES if f not in CNNS]
STEP_CASES += [("bert", vera.Knobs(r=6, save_projection=False, projection_prng_key=3, d_initial=0.05))]
STEP_CASES += [("vit", vera.Knobs(r=11, target=["key", "ffn_in"], bias="vera_only", dropout=0.2))]
STEP_CASES += [("roberta", vera.Knobs(r=4, bias="all"))]


@pytest.mark.filterwarnings("ignore:Specified to not")  # save_projection=False: PEFT warns on save and load
@pytest.mark.parametrize(("family", "knobs"), STEP_CASES, ids=[case_id(*c) for c in STEP_CASES])
def test_one_step_and_reload(family, knobs, tmp_path):
    trained, batch, backbone = step_and_check(family, knobs)
    fresh, _, _ = tiny_model(family, seed=1)  # another random head: only the saved copy can bring it back
    reloads_the_same(trained, batch, backbone, fresh, tmp_path / "adapter")


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
    refused(flag, count, folder(family), "vera", knobs, num_labels=5)
    refused(flag, prepare_tiny, vera, family, knobs)


@pytest.mark.parametrize("family", CNNS)
def test_cnns_are_refused_in_one_line(family, folder):
    """No CNN has a Linear layer VeRA could take: the method does not apply (count), and prepare, called directly,
    names the target flag before PEFT's TypeError."""
    refused("--method vera: does not apply to", count, folder(family), "vera", num_labels=5)
    if family in FAMILIES:
        refused("--vera-target: VeRA adapts Linear layers only", prepare_tiny, vera, family, vera.Knobs())


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
    result = count(config_folder(tmp_path, BASE[name]), "vera", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
