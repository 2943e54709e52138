"""`lokr` on every tiny family: predicted == measured line by line (defaults and uneven knobs), one optimiser step,
bad input as one line naming the flag, and a saved adapter reloading onto a fresh base with identical logits.
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
from peftlab.methods import lokr
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


def knob_cases(family: str) -> list[lokr.Knobs]:
    """Defaults (on tiny widths r 8 makes W2 full), then uneven ranks where W2 goes low-rank, W1 decomposed, a fixed
    decompose_factor, kxk and depthwise convs with and without the CP core, the ViT/CLIP patch-embedding conv."""
    K = lokr.Knobs
    cases = [K(), K(r=3, alpha=5.0), K(r=2, decompose_both=True), K(r=3, decompose_factor=4)]
    # MobileNetV2's only kxk conv with groups 1 is the stem's first (3 -> 32·m channels, 3x3)
    if family.startswith("resnet"):
        cases += [K(r=1, target=["spatial"], use_effective_conv2d=True, decompose_both=True)]
        cases += [K(r=5, target=["spatial", "pointwise"], decompose_factor=2)]
    elif family.startswith("mobilenet"):
        stem = "conv_stem.first_conv.convolution"
        cases += [K(r=3, target=["depthwise"]), K(r=2, target=["depthwise", stem], use_effective_conv2d=True)]
        cases += [K(r=1, target=[stem, "pointwise"], decompose_both=True, decompose_factor=3)]
    else:
        cases += [
            K(r=5, target=["query", "key", "value", "attn_out", "ffn_in", "ffn_out"], decompose_both=True)
        ]
        if family.startswith(("vit", "clip")):
            patch = "projection" if family.startswith("vit") else "patch_embedding"
            cases += [K(r=3, target=[patch, "value"], use_effective_conv2d=True), K(r=11, target=[patch])]
    return cases


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "lokr", knobs, num_labels=5)
    check(result)
    added_line(result, lokr.LOKR)


def test_factorization_is_peft_s():
    from peft.tuners.lokr.layer import factorization

    for dim in range(1, 600):
        for factor in (-1, 1, 2, 3, 4, 5, 7, 8, 16, 24, 64, 100):
            assert lokr.factorization(dim, factor) == factorization(dim, factor), (dim, factor)
    assert lokr.factorization(768) == (24, 32) and lokr.factorization(768, 64) == (64, 12)


def test_shapes_by_hand(folder):
    """bert tiny (H 48 = 6·8), query+value, r 8 >= 8/2 so W2 is full: 2 blocks × 2 × (6×6 + 8×8) = 400;
    r 3 < 8/2: W2 = 3 × (8 + 8); decompose_both, r 2 < 6/2: W1 = 2 × (6 + 6);
    mobilenet_v2 depthwise 3x3 (48 = 6·8 out, 1 = 1·1 in), r 2 with CP core: 6×1 + 2×2×3×3 + 2 × (8 + 1)."""
    cases = [
        (lokr.Knobs(), "2 blocks × 2 × (6×6 + 8×8) = 400"),
        (lokr.Knobs(r=3), "2 blocks × 2 × (6×6 + 3 × (8 + 8)) = 336"),
        (lokr.Knobs(r=2, decompose_both=True), "2 blocks × 2 × (2 × (6 + 6) + 2 × (8 + 8)) = 224"),
    ]
    for knobs, formula in cases:
        rows = count(folder("bert"), "lokr", knobs, num_labels=5)["breakdown"]
        assert next(r for r in rows if r["component"].startswith(lokr.LOKR))["formula"] == formula
    k = lokr.Knobs(r=2, target=["depthwise"], use_effective_conv2d=True)
    rows = count(folder("mobilenet_v2"), "lokr", k, num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(lokr.LOKR))
    assert line["formula"].startswith("3 blocks × (6×1 + 2×2×3×3 + 2 × (8 + 1)) + ")


def step_and_check(family: str, knobs):
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    prepared, batch, backbone = planned_step(lokr.METHOD, tiny_model(family), knobs)
    assert any(
        ".lokr_w1" in n for n, p in prepared.named_parameters() if p.requires_grad
    )  # W1 (or W1's A) starts at zero
    return prepared, batch, backbone


STEP_CASES = [(f, lokr.Knobs(r=3)) for f in FAMILIES]
STEP_CASES += [("bert", lokr.Knobs(r=2, decompose_both=True, rank_dropout=0.3, rank_dropout_scale=True))]
STEP_CASES += [
    ("mobilenet_v2", lokr.Knobs(r=2, target=["depthwise", "pointwise"], use_effective_conv2d=True))
]
STEP_CASES += [
    ("resnet", lokr.Knobs(r=1, target=["spatial"], use_effective_conv2d=True, decompose_both=True))
]


@pytest.mark.parametrize(("family", "knobs"), STEP_CASES, ids=[case_id(*c) for c in STEP_CASES])
def test_one_step_and_reload(family, knobs, tmp_path):
    trained, batch, backbone = step_and_check(family, knobs)
    fresh, _, _ = tiny_model(family, seed=1)  # another random head: only the saved copy can bring it back
    reloads_the_same(
        trained,
        batch,
        backbone,
        fresh,
        tmp_path / "adapter",
        stats_apart=family in ("mobilenet_v2", "resnet"),
    )


BAD = [
    ("bert", lokr.Knobs(r=0), "--lokr-r"),
    ("vit", lokr.Knobs(rank_dropout=1.0), "--lokr-rank-dropout"),
    ("distilbert", lokr.Knobs(decompose_factor=0), "--lokr-decompose-factor"),
    ("clip", lokr.Knobs(decompose_factor=-2), "--lokr-decompose-factor"),
    ("resnet", lokr.Knobs(target=["depthwise"]), "--lokr-target"),  # no depthwise conv in a ResNet
    ("roberta", lokr.Knobs(target=["classifier.dense"]), "--lokr-target"),  # the head is saved whole
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    refused(flag, count, folder(family), "lokr", knobs, num_labels=5)
    refused(flag, prepare_tiny, lokr, family, knobs)


@pytest.mark.parametrize(
    ("name", "labels"), [("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101)]
)
def test_base_sizes(name, labels, tmp_path):
    check(count(config_folder(tmp_path, BASE[name]), "lokr", num_labels=labels))
