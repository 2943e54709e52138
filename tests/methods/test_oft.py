"""`oft` on every tiny family: predicted == measured line by line (block sizes / block counts that fit each family's
uneven widths), one optimiser step, PEFT's rules as one line naming the flag, and a saved adapter reloading onto a
fresh base with identical logits; the default block size 32 at the base sizes.
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
from peftlab.methods import oft
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


K = oft.Knobs


def knob_cases(family: str) -> list:
    """Values that fit each family's widths: transformers 48 (attention) and 100 (ffn_out's input); MobileNetV2's
    1x1 convs are multiples of 8; the tiny ResNets' 1x1 convs take 4, 6, 10, 16, 24, 40 (bottleneck) or 12 channels."""
    if family == "resnet":
        return [
            K(block_size=2),
            K(block_size=0, r=2, bias="all"),
            K(block_size=2, block_share=True, coft=True),
        ]
    if family == "resnet-basic":
        return [K(block_size=3), K(block_size=0, r=4, block_share=True), K(block_size=12, bias="oft_only")]
    if family.startswith("mobilenet"):
        return [K(block_size=8), K(block_size=0, r=2, bias="oft_only"), K(block_size=4, block_share=True)]
    every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
    return [
        K(block_size=16),
        K(block_size=0, r=3, bias="oft_only"),
        K(block_size=4, target=every, bias="all", coft=True, use_cayley_neumann=False),
        K(block_size=6, target=["attn_out", "ffn_in"], block_share=True),
    ]


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "oft", knobs, num_labels=5)
    check(result)
    added_line(result, oft.OFT)


def test_shapes_by_hand(folder):
    """bert tiny (H 48, 2 blocks), query+value, b 16: 3 blocks of 16×15/2 = 120 each -> 2 × 2 × 360 = 1,440;
    r 3 is the same split; shared: one 120 per layer; b 4 on ffn_out (input 100): 25 × 6 = 150 per block."""
    rows = count(folder("bert"), "oft", K(block_size=16), num_labels=5)["breakdown"]
    line = next(r for r in rows if r["component"].startswith(oft.OFT))
    assert line["params"] == 1_440 and line["formula"] == "2 blocks × 2 × 3 × 16×15/2 = 1,440"
    rows = count(folder("bert"), "oft", K(block_size=0, r=3), num_labels=5)["breakdown"]
    assert next(r for r in rows if r["component"].startswith(oft.OFT))["params"] == 1_440
    rows = count(folder("bert"), "oft", K(block_size=16, block_share=True), num_labels=5)["breakdown"]
    assert next(r for r in rows if r["component"].startswith(oft.OFT))["params"] == 2 * 2 * 120
    rows = count(folder("bert"), "oft", K(block_size=4, target=["ffn_out"]), num_labels=5)["breakdown"]
    assert next(r for r in rows if r["component"].startswith(oft.OFT))["params"] == 2 * 25 * 6


def step_and_check(family: str, knobs):
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    # R = Cayley(0) = I: the wrapped model starts as the base model
    prepared, batch, backbone = planned_step(oft.METHOD, tiny_model(family), knobs, starts_as_base=1e-5)
    assert any(".oft_R." in n for n, p in prepared.named_parameters() if p.requires_grad)
    return prepared, batch, backbone


STEP_CASES = [(f, knob_cases(f)[0]) for f in FAMILIES]
STEP_CASES += [("bert", K(block_size=0, r=4, block_share=True, bias="oft_only"))]
STEP_CASES += [("vit", K(block_size=4, target=["attn_out", "ffn_out"], coft=True, use_cayley_neumann=False))]


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
    # the default block size 32 divides no tiny width (48 here); PEFT would silently use 24 instead
    (
        "bert",
        K(),
        "--oft-block-size 32: must divide the input width of every adapted layer, and does not divide 48 "
        r"\(attention.self.query, attention.self.value\); block sizes that fit here: 2, 3, 4, 6, 8, 12, "
        "16, 24, 48",
    ),
    (
        "roberta",
        K(block_size=8, target=["ffn_out"]),
        "--oft-block-size 8: .* 100 .*: 2, 4, 5, 10, 20, 25, 50, 100",
    ),
    (
        "vit",
        K(block_size=0, r=5),
        "--oft-r 5: must divide .* 48 .*values that fit here: 1, 2, 3, 4, 6, 8, 12, 16, 24$",
    ),
    ("resnet", K(block_size=4), "--oft-block-size 4: .*; block sizes that fit here: 2$"),
    ("distilbert", K(r=4), "--oft-r 4 --oft-block-size 32: give only one of them and set the other to 0"),
    ("clip", K(block_size=0), "--oft-block-size 0 --oft-r 0: set one of them"),
    ("resnet", K(block_size=2, target=["spatial"]), "--oft-target: PEFT's OFT is not the identity at init"),
    (
        "vit",
        K(block_size=2, target=["projection"]),
        "--oft-target: .*embeddings.patch_embeddings.projection is 8×8",
    ),
    ("mobilenet_v2", K(block_size=8, target=["depthwise"]), "--oft-target: .* is 3×3"),
    ("bert", K(block_size=4, eps=0.0), "--oft-eps 0.0: must be a positive number"),
    ("roberta", K(block_size=4, target=["classifier.dense"]), "--oft-target"),  # the head is saved whole
]


@pytest.mark.parametrize(("family", "knobs", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_flag(family, knobs, message, folder):
    refused(message, count, folder(family), "oft", knobs, num_labels=5)
    if "must be a positive number" in message:
        return  # a knob's own check: count() runs it before prepare, `peftlab run` too
    refused(message, prepare_tiny, oft, family, knobs)


def test_peft_would_silently_change_the_block_size():
    """Why the divisibility is checked here: PEFT 0.21 replaces a block size that does not divide the width by a
    nearby divisor (48: 32 -> 24) with only a warning, so the adapter trained would not be the one asked for."""
    from peft import OFTConfig, get_peft_model

    model, _, _ = tiny_model("bert")
    with pytest.warns(UserWarning, match=r"Adjusted `oft_block_size` to \(24\)"):
        wrapped = get_peft_model(model, OFTConfig(oft_block_size=32, target_modules=["query"]))
    shapes = {tuple(p.shape) for n, p in wrapped.named_parameters() if ".oft_R." in n}
    assert shapes == {(2, 24 * 23 // 2)}


@pytest.mark.parametrize(
    ("name", "labels"), [("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101)]
)
def test_base_sizes(name, labels, tmp_path):
    """The default block size 32 divides 768: 24 blocks of 32×31/2 on query and value of each of 12 blocks."""
    result = count(config_folder(tmp_path, BASE[name]), "oft", num_labels=labels)
    check(result)
    line = next(r for r in result["breakdown"] if r["component"].startswith(oft.OFT))
    assert line["params"] == 12 * 2 * 24 * 32 * 31 // 2
