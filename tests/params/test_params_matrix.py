"""Predicted == measured for every registered method x every family (tests/tiny.py), and for the LoRA knobs, on tiny configs.

Each case builds the real model class on the meta device from config.json alone (`count`), applies the method,
and checks the totals and every component line; a method or family without formulas must say so, never guess.
"""

import pytest
from params_configs import TEXT_FAMILIES, TINY

from checks import check, config_folder
from peftlab.config import method_knobs
from peftlab.errors import BadInput
from peftlab.methods import REGISTRY
from peftlab.params import count, format_table
from tiny import TINY_KNOBS


def run(family: str, method: str, folder, **knobs) -> dict:
    """`count` with the method's knobs given as flat settings (lora_r=4), parsed as `peftlab run` parses them."""
    return count(folder(family), method, method_knobs(REGISTRY[method], knobs), num_labels=5)


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_method_on_every_family(method, family, folder):
    tiny = {f"{REGISTRY[method].prefix}_{k}": v for k, v in TINY_KNOBS.get(method, {}).items()}
    try:
        result = run(family, method, folder, **tiny)
    except BadInput as e:  # a method may refuse a family (prompt methods on images): one line, naming itself
        assert "\n" not in str(e) and (
            f"--method {method}" in str(e) or f"--{REGISTRY[method].prefix}" in str(e)
        )
        pytest.skip(f"{method} does not apply to {family}: {e}")
    check(result)  # every registered method brings its arithmetic


@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_method_applies_somewhere(method, folder):
    """A refusal above is never the whole story: each method predicts exactly on at least one tiny family."""
    tiny = {f"{REGISTRY[method].prefix}_{k}": v for k, v in TINY_KNOBS.get(method, {}).items()}
    knobs = method_knobs(REGISTRY[method], tiny)
    where = [folder(f) for f in TINY] + [folder(f, sentence_transformers=True) for f in TEXT_FAMILIES]
    applied = 0
    for (
        path
    ) in where:  # the mean-pooled text encoders too (prefix tuning runs only there under transformers 5)
        try:
            check(count(path, method, knobs, num_labels=5))
            applied += 1
        except BadInput:
            continue
    assert applied > 0


@pytest.mark.parametrize("family", TEXT_FAMILIES)
@pytest.mark.parametrize("method", ["head", "last-layer", "lora"])
def test_mean_pooling_wraps_the_encoder(family, method, folder):
    """Sentence-transformers recipe: encoder without pooler + masked mean + `classifier` (MiniLM's packaged shape)."""
    result = count(folder(family, sentence_transformers=True), method, num_labels=5)
    assert result["model_class"] == "MeanPoolForSequenceClassification" and result["pooling"] == "mean"
    assert "pooler" not in [r["component"] for r in result["breakdown"]]
    check(result)


LORA_KNOBS = [
    {"lora_bias": "all"},
    {"lora_bias": "lora_only"},
    {"lora_r": 1, "lora_alpha": 2},
    {"lora_r": 13},
    {"lora_use_rslora": True, "lora_r": 4},
    {"lora_use_dora": True},
    {"lora_use_dora": True, "lora_bias": "lora_only", "lora_r": 3},
    {"lora_use_dora": True, "lora_bias": "all"},
]


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("knobs", LORA_KNOBS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_lora_knobs(family, knobs, folder):
    check(run(family, "lora", folder, **knobs))


TRANSFORMER_TARGETS = [
    ["query", "key", "value"],
    ["key"],
    ["attn_out"],
    ["ffn_in", "ffn_out"],
    ["query", "value", "attn_out", "ffn_in", "ffn_out"],
]
OWN_TARGETS = {
    "bert": [["dense"], ["attention.self.query", "intermediate.dense"]],  # "dense" reaches the pooler too
    "roberta": [["dense"], ["self.key"]],  # never the head's classifier.dense (the head is saved whole)
    "distilbert": [["lin1", "out_lin"], ["q_lin"]],
    "vit": [["projection"], ["o_proj", "fc2"]],  # the patch embedding is a Conv2d: LoRA as convs
    "clip": [["patch_embedding"], ["q_proj", "out_proj"]],
    "clip_vision_model": [["fc1"], ["k_proj", "patch_embedding"]],
    "mobilenet_v2": [
        ["expand_1x1.convolution"],
        ["conv_stem.first_conv.convolution", "conv_1x1.convolution"],
    ],
    "resnet": [
        ["spatial"],
        ["pointwise", "spatial"],
        ["shortcut.convolution", "embedder.embedder.convolution"],
    ],
    "resnet-basic": [["spatial"], ["pointwise"], ["layer.1.convolution"]],
    "mobilenet_v2-variant": [["pointwise"], ["conv_stem.expand_1x1.convolution", "reduce_1x1.convolution"]],
    "vit-no-qkv-bias": [["projection", "query"]],
}
TARGET_CASES = [
    (f, t) for f in TINY if not f.startswith(("mobilenet", "resnet")) for t in TRANSFORMER_TARGETS
]
TARGET_CASES += [(f, t) for f, ts in OWN_TARGETS.items() for t in ts]


@pytest.mark.parametrize(
    ("family", "targets"), TARGET_CASES, ids=lambda x: x if isinstance(x, str) else ",".join(x)
)
def test_lora_targets(family, targets, folder):
    result = run(family, "lora", folder, lora_target=targets, lora_r=4, lora_bias="lora_only")
    check(result)
    lora = [r for r in result["breakdown"] if r["component"].startswith("lora")]
    assert len(lora) == 1 and lora[0]["params"] > 0


@pytest.mark.filterwarnings("ignore:LoRA adapter added to ConvNd")
def test_lora_on_a_depthwise_conv(folder):
    """B of a grouped conv is grouped too: r·in·k² + out·r/g (PEFT needs g to divide r; the stem has g = 16)."""
    result = run("mobilenet_v2", "lora", folder, lora_target=["conv_stem.conv_3x3.convolution"], lora_r=16)
    check(result)
    lora = next(r for r in result["breakdown"] if r["component"].startswith("lora"))
    assert lora["params"] == 16 * 16 * 3 * 3 + 16 * 16 // 16


SAVE_CASES = [
    ("bert", ["pooler"]),  # + the classifier PEFT adds for text
    ("bert", []),  # nothing asked: text still saves the classifier
    ("distilbert", ["classifier"]),  # PEFT's suffix match also saves pre_classifier
    ("roberta", ["classifier"]),
    ("vit", ["layernorm"]),  # images: only what is asked, the head stays frozen
    ("vit", []),
    ("clip", ["post_layernorm", "classifier"]),
    ("mobilenet_v2", ["conv_1x1"]),
    ("resnet", ["classifier", "encoder.stages.2"]),
]


@pytest.mark.parametrize(("family", "to_save"), SAVE_CASES)
def test_lora_modules_to_save(family, to_save, folder):
    result = run(family, "lora", folder, lora_modules_to_save=to_save)
    check(result)
    copies = [r for r in result["breakdown"] if r["component"].startswith("modules_to_save")]
    head = next(r for r in result["breakdown"] if r["component"] == "head")
    if family in TEXT_FAMILIES or "classifier" in to_save:
        assert copies and head["trainable"] == 0
    if family in ("vit",) and to_save == []:
        assert not copies and head["trainable"] == 0


def test_nested_modules_to_save_is_measured_not_guessed(folder):
    """resnet.embedder holds resnet.embedder.embedder: PEFT wraps both, a copy inside a copy; no formula claims that."""
    result = run("resnet", "lora", folder, lora_modules_to_save=["embedder"])
    assert result["predicted_total"] is None and result["match"] is None
    assert result["note"].startswith(
        "modules_to_save wraps resnet.embedder and, inside it, resnet.embedder.embedder"
    )
    assert sum(r["measured_params"] for r in result["breakdown"]) == result["total"]


def test_a_family_without_formulas_gets_measured_counts_and_one_plain_line(tmp_path):
    convnext = {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 2], "num_stages": 2}
    result = count(config_folder(tmp_path, convnext), "lora", num_labels=5)
    assert (
        result["predicted_total"] is None
        and result["predicted_trainable"] is None
        and result["match"] is None
    )
    assert result["note"] == "no formula for convnext yet: measured counts only"
    assert result["total"] > result["trainable"] > 0
    assert sum(r["measured_params"] for r in result["breakdown"]) == result["total"]
    assert "no formula for convnext yet" in format_table(result)
