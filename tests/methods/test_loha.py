"""`loha` on every tiny family: predicted == measured line by line (defaults and uneven knobs), one optimiser step,
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
from peftlab.methods import loha
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


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


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "loha", knobs, num_labels=5)
    check(result)
    added_line(result, loha.LOHA)


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
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    prepared, batch, backbone = planned_step(loha.METHOD, tiny_model(family), knobs)
    assert any(
        ".hada_w2_b." in n for n, p in prepared.named_parameters() if p.requires_grad
    )  # the zero-initialised factor
    return prepared, batch, backbone


STEP_CASES = [(f, loha.Knobs(r=3)) for f in FAMILIES]
STEP_CASES += [
    ("mobilenet_v2", loha.Knobs(r=3, target=["depthwise", "pointwise"], use_effective_conv2d=True))
]
STEP_CASES += [("resnet", loha.Knobs(r=2, target=["spatial"], use_effective_conv2d=True, rank_dropout=0.3))]


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
    ("bert", loha.Knobs(r=0), "--loha-r"),
    ("vit", loha.Knobs(rank_dropout=1.0), "--loha-rank-dropout"),
    ("resnet", loha.Knobs(target=["depthwise"]), "--loha-target"),  # no depthwise conv in a ResNet
    ("roberta", loha.Knobs(target=["classifier.dense"]), "--loha-target"),  # the head is saved whole
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    refused(flag, count, folder(family), "loha", knobs, num_labels=5)
    refused(flag, prepare_tiny, loha, family, knobs)


@pytest.mark.parametrize(
    ("name", "labels"), [("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101)]
)
def test_base_sizes(name, labels, tmp_path):
    check(count(config_folder(tmp_path, BASE[name]), "loha", num_labels=labels))
