"""`boft` on every tiny family: predicted == measured line by line (block sizes, block counts and butterfly factors
that fit each family's uneven widths), one optimiser step, PEFT's rules as one line naming the flag, a saved adapter
reloading onto a fresh base with identical logits, and the torch block-diagonal that replaces PEFT's CUDA extension.
"""

import warnings

import pytest
import torch

from checks import (
    added_line,
    backbone_of,
    case_id,
    check,
    config_folder,
    folders,
    inputs_of,
    matches_plan,
    one_step,
    prepare_tiny,
    refused,
    reloads_the_same,
)
from params.params_configs import BASE
from peftlab.methods import Context, boft
from peftlab.models.anatomy import anatomy
from peftlab.params import count, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


K = boft.Knobs


def knob_cases(family: str) -> list:
    """Values that fit each family's widths: transformers 48 (attention; 48 = 2^4·3) and 100 (ffn_out's input);
    MobileNetV2's 1x1 convs are multiples of 8; the tiny bottleneck ResNet's 1x1 convs take 4, 6, 10, 16, 24, 40
    channels (only b = 2, F = 1 fits them all); the basic one's 12 (and 12·9 = 108 on its 3x3 convs)."""
    if family == "resnet":
        return [K(block_size=2), K(block_size=2, target=["pointwise", "spatial"], bias="all", dropout=0.3)]
    if family == "resnet-basic":
        return [K(), K(block_size=0, block_num=6, n_butterfly_factor=2, target=["pointwise", "spatial"])]
    if family.startswith("mobilenet"):
        return [K(), K(block_size=2, n_butterfly_factor=3, bias="boft_only"), K(block_size=0, block_num=4)]
    every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
    return [
        K(),
        K(block_size=2, n_butterfly_factor=4, bias="boft_only"),
        K(block_size=0, block_num=8, n_butterfly_factor=2, target=["key", "attn_out", "ffn_in"]),
        K(block_size=2, n_butterfly_factor=2, target=every, bias="all", dropout=0.2),
    ]


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "boft", knobs, num_labels=5)
    check(result)
    for line in (boft.BOFT_R, boft.BOFT_S):
        added_line(result, line)


def test_shapes_by_hand(folder):
    """bert tiny (H 48, 2 blocks), query+value: b 4 -> boft_R (1, 12, 4, 4) = 192 and boft_s 48 per layer;
    b 2, F 4 -> (4, 24, 2, 2) = 384; 8 blocks, F 2 -> (2, 8, 6, 6) = 576; ffn_out (100 -> 48): b 2, F 2 -> 400 + 48."""

    def lines(knobs):
        rows = count(folder("bert"), "boft", knobs, num_labels=5)["breakdown"]
        return [next(r for r in rows if r["component"].startswith(x)) for x in (boft.BOFT_R, boft.BOFT_S)]

    r, s = lines(K())
    assert (r["params"], s["params"]) == (4 * 192, 4 * 48) and r["formula"] == "2 blocks × 2 × 12 × 4×4 = 768"
    assert lines(K(block_size=2, n_butterfly_factor=4))[0]["params"] == 4 * 384
    assert lines(K(block_size=0, block_num=8, n_butterfly_factor=2))[0]["params"] == 4 * 576
    r, s = lines(K(block_size=2, n_butterfly_factor=2, target=["ffn_out"]))
    assert (r["params"], s["params"]) == (2 * 400, 2 * 48)


def step_and_check(family: str, knobs):
    """Prepare (quietly: no CUDA build, no warnings), compare with the arithmetic, take one AdamW step -> (model in
    eval mode, batch, the base's backbone weights before training: what a pretrained checkpoint gives a fresh base)."""
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    backbone = backbone_of(model)
    inputs = inputs_of(batch)
    with torch.no_grad():
        base_logits = model(**inputs).logits
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    predicted = predict_from_config(model.config, task, 5, boft.METHOD, knobs, pooling=pooling)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = boft.prepare(model, anat, knobs, Context(task))
    assert not [w for w in caught if "CUDA" in str(w.message) or "butterfly" in str(w.message)]
    matches_plan(prepared, predicted)
    factors = {p.shape[0] for n, p in prepared.named_parameters() if ".boft_R." in n}
    assert factors == {knobs.n_butterfly_factor}  # PEFT kept the factor asked for
    with torch.no_grad():  # R = Cayley(0) = I and s = 1: the wrapped model starts as the base model
        torch.testing.assert_close(prepared(**inputs).logits, base_logits, atol=1e-5, rtol=1e-5)

    one_step(prepared, batch)
    return prepared, batch, backbone


STEP_CASES = [(f, knob_cases(f)[0]) for f in FAMILIES]
STEP_CASES += [("bert", K(block_size=2, n_butterfly_factor=3, bias="boft_only", dropout=0.5))]
STEP_CASES += [("vit", K(block_size=0, block_num=2, n_butterfly_factor=2, target=["value", "ffn_out"]))]
STEP_CASES += [("resnet", K(block_size=2, target=["spatial"]))]


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


def test_torch_block_diag_is_the_kernel():
    """forward: the blocks on the diagonal of (N, D·b, D·b), as torch.block_diag per batch; backward: their gradient."""
    g = torch.Generator().manual_seed(0)
    blocks = torch.randn(3, 5, 4, 4, generator=g, requires_grad=True)
    out = boft.TorchBlockDiag.forward(blocks.detach())[0]
    want = torch.stack([torch.block_diag(*blocks[z].unbind(0)) for z in range(3)])
    torch.testing.assert_close(out, want, atol=0, rtol=0)
    upstream = torch.randn(3, 20, 20, generator=g)
    (want * upstream).sum().backward()
    torch.testing.assert_close(
        boft.TorchBlockDiag.backward(upstream, blocks.detach())[0], blocks.grad, atol=0, rtol=0
    )


def test_factor_one_matches_peft_own_torch_path():
    """With F = 1 PEFT can run without the extension (torch.block_diag); after a step both paths give the same logits."""
    trained, batch, _ = step_and_check("bert", K(block_size=6))
    inputs = inputs_of(batch)
    layers = [m for m in trained.modules() if hasattr(m, "fbd_cuda_available")]
    assert layers and all(m.fbd_cuda_available for m in layers)
    with torch.no_grad():
        ours = trained(**inputs).logits
        for m in layers:
            m.fbd_cuda_available = False
        peft_own = trained(**inputs).logits
    torch.testing.assert_close(ours, peft_own, atol=1e-6, rtol=1e-6)


BAD = [
    # the tiny bottleneck ResNet has 1x1 convs over 6 and 10 channels: PEFT raises for b = 4
    (
        "resnet",
        K(),
        "--boft-block-size 4: does not divide the input width 6 of layers.0.layer.2.convolution; "
        "adapted input widths: 4, 6, 10, 16, 24, 40; --boft-block-size values that fit every adapted "
        "layer: 2$",
    ),
    (
        "bert",
        K(block_size=5),
        "--boft-block-size 5: does not divide the input width 48 .*: 2, 3, 4, 6, 8, 12, 16, 24, 48$",
    ),
    (
        "vit",
        K(block_size=0, block_num=7),
        "--boft-block-num 7: does not divide .*: 1, 2, 3, 4, 6, 8, 12, 16, 24$",
    ),
    (
        "bert",
        K(block_size=24, n_butterfly_factor=3),
        r"--boft-block-size 24 \(with --boft-n-butterfly-factor 3\): "
        r"leaves 2 blocks of 24 .*a multiple of 4 blocks.*: 2, 4, 6, 12$",
    ),
    (
        "distilbert",
        K(block_size=3, n_butterfly_factor=2),
        r"leaves 16 blocks of 3 .*\(F > 1 needs an even block size\).*: 2, 4, 6, 8, 12, 24$",
    ),
    (
        "resnet",
        K(block_size=2, n_butterfly_factor=2),
        "no --boft-block-size fits every adapted layer with --boft-n-butterfly-factor 2; "
        "with --boft-n-butterfly-factor 1: 2$",
    ),
    (
        "roberta",
        K(block_size=4, n_butterfly_factor=6),
        "--boft-n-butterfly-factor 6; with --boft-n-butterfly-factor 4: 2, 6$",
    ),
    ("clip", K(block_num=4), "--boft-block-num 4 --boft-block-size 4: give only one of them"),
    ("vit", K(block_size=0), "--boft-block-size 0 --boft-block-num 0: set one of them"),
    (
        "mobilenet_v2",
        K(target=["depthwise"]),
        "--boft-target: PEFT's BOFT does not support grouped convolutions",
    ),
    ("bert", K(n_butterfly_factor=0), "--boft-n-butterfly-factor 0: must be a positive number"),
    ("bert", K(dropout=1.0), "--boft-dropout 1.0: must be in"),
    ("roberta", K(target=["classifier.dense"]), "--boft-target"),  # the head is saved whole
]


@pytest.mark.parametrize(("family", "knobs", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_flag(family, knobs, message, folder):
    refused(message, count, folder(family), "boft", knobs, num_labels=5)
    if "must be" in message:
        return  # a knob's own check: count() runs it before prepare, `peftlab run` too
    refused(message, prepare_tiny, boft, family, knobs)


@pytest.mark.parametrize(
    ("name", "labels"), [("roberta-base", 3), ("google/vit-base-patch16-224-in21k", 101)]
)
def test_base_sizes(name, labels, tmp_path):
    """PEFT's defaults at 768: 192 blocks of 4×4 and 768 scales on query and value of each of 12 blocks."""
    result = count(config_folder(tmp_path, BASE[name]), "boft", num_labels=labels)
    check(result)
    r = next(r for r in result["breakdown"] if r["component"].startswith(boft.BOFT_R))
    assert r["params"] == 12 * 2 * 192 * 16
