"""Anatomy and LoRA target resolution on every supported family, built tiny from configs (CPU and meta device).

Run: pytest tests/models/test_models_anatomy.py
"""

import pytest
import torch
import transformers as T
from torch import nn

from peftlab.errors import BadInput
from peftlab.models import (
    MeanPoolConfig,
    MeanPoolForSequenceClassification,
    anatomy,
    default_targets,
    resolve_targets,
)
from tiny import CLASSES, tiny_config

TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)
VISION = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


def build(family: str) -> nn.Module:
    """Tiny classifier of one family (3 labels, tests/tiny.py); call under `torch.device("meta")` for a meta build."""
    if family == "meanpool":
        return MeanPoolForSequenceClassification(
            MeanPoolConfig(encoder_config=tiny_config("bert", 3), num_labels=3)
        )
    if family == "clip_tower":
        return T.CLIPVisionModel(T.CLIPVisionConfig(**VISION))
    return CLASSES[family](tiny_config(family, 3))


# family -> (model_type, block prefix, number of blocks, head, last_block)
EXPECTED = {
    "bert": ("bert", "bert.encoder.layer", 2, ["classifier"], ["bert.encoder.layer.1"]),
    "roberta": ("roberta", "roberta.encoder.layer", 3, ["classifier"], ["roberta.encoder.layer.2"]),
    "distilbert": (
        "distilbert",
        "distilbert.transformer.layer",
        2,
        ["pre_classifier", "classifier"],
        ["distilbert.transformer.layer.1"],
    ),
    "meanpool": ("bert", "encoder.encoder.layer", 2, ["classifier"], ["encoder.encoder.layer.1"]),
    "vit": ("vit", "vit.layers", 3, ["classifier"], ["vit.layers.2"]),
    "clip": (
        "clip_vision_model",
        "vision_model.encoder.layers",
        2,
        ["classifier"],
        ["vision_model.encoder.layers.1"],
    ),
    "clip_tower": ("clip_vision_model", "encoder.layers", 2, [], ["encoder.layers.1"]),
    "resnet": ("resnet", "resnet.encoder.stages", 3, ["classifier"], ["resnet.encoder.stages.2"]),
    # depth 0.35: the last inverted residual (layer 15, 112 channels) is alone in its stage, then the 1x1 conv to 1280
    "mobilenet_v2": (
        "mobilenet_v2",
        "mobilenet_v2.layer",
        16,
        ["classifier"],
        ["mobilenet_v2.layer.15", "mobilenet_v2.conv_1x1"],
    ),
}

# block-relative names of each portable alias, as transformers 5 names them
TRANSFORMER_NAMES = {
    "bert": (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ),
    "distilbert": (
        "attention.q_lin",
        "attention.k_lin",
        "attention.v_lin",
        "attention.out_lin",
        "ffn.lin1",
        "ffn.lin2",
    ),
    "vit": (
        "attention.q_proj",
        "attention.k_proj",
        "attention.v_proj",
        "attention.o_proj",
        "mlp.fc1",
        "mlp.fc2",
    ),
    "clip": (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.out_proj",
        "mlp.fc1",
        "mlp.fc2",
    ),
}
TRANSFORMER_NAMES["roberta"] = TRANSFORMER_NAMES["meanpool"] = TRANSFORMER_NAMES["bert"]
TRANSFORMER_NAMES["clip_tower"] = TRANSFORMER_NAMES["clip"]
PORTABLE = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def family(request):
    return request.param


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_anatomy_blocks_head_last_block(family, device):
    with torch.device(device):
        model = build(family)
    anat = anatomy(model)
    model_type, prefix, n_blocks, head, last_block = EXPECTED[family]
    assert anat.family == model_type
    assert anat.blocks == [f"{prefix}.{i}" for i in range(n_blocks)]
    assert anat.head == head
    assert anat.last_block == last_block
    modules = dict(model.named_modules())
    assert all(name in modules for name in anat.blocks + anat.last_block + anat.head)
    assert not any(n == h or n.startswith(h + ".") for n in anat.linear_names for h in anat.head)
    assert all(isinstance(modules[n], (nn.Linear, nn.Conv2d)) for n in anat.linear_names)


@pytest.mark.parametrize("family", sorted(TRANSFORMER_NAMES))
def test_transformer_aliases_are_the_family_names(family):
    with torch.device("meta"):
        model = build(family)
    anat = anatomy(model)
    assert anat.kind == "transformer"
    assert list(anat.aliases) == list(PORTABLE)
    modules = dict(model.named_modules())
    for alias, rel in zip(PORTABLE, TRANSFORMER_NAMES[family]):
        assert anat.aliases[alias] == [f"{block}.{rel}" for block in anat.blocks], alias
        assert all(type(modules[n]) is nn.Linear for n in anat.aliases[alias])


def test_cnn_aliases():
    with torch.device("meta"):
        mobilenet, resnet = build("mobilenet_v2"), build("resnet")
    anat = anatomy(mobilenet)
    assert anat.kind == "cnn" and set(anat.aliases) == {"pointwise", "depthwise"}
    # 16 blocks x (expand_1x1, reduce_1x1) + the final conv_1x1 (last_block)
    assert len(anat.aliases["pointwise"]) == 33 and len(anat.aliases["depthwise"]) == 16
    assert "mobilenet_v2.conv_1x1.convolution" in anat.aliases["pointwise"]
    assert resolve_targets(anatomy(mobilenet), default_targets(anat)) == sorted(anat.aliases["pointwise"])
    r = anatomy(resnet)
    modules = dict(resnet.named_modules())
    assert all(modules[n].kernel_size == (3, 3) for n in r.aliases["spatial"])
    assert all(modules[n].kernel_size == (1, 1) for n in r.aliases["pointwise"])
    assert default_targets(r) == ["pointwise"]


def test_resolve_alias_own_name_full_name():
    with torch.device("meta"):
        bert, vit, distil, mobilenet = build("bert"), build("vit"), build("distilbert"), build("mobilenet_v2")
    q = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.attention.self.query"]
    assert resolve_targets(anatomy(bert), ["query"]) == q
    assert (
        resolve_targets(anatomy(bert), ["attention.self.query", q[0]]) == q
    )  # own name + full name, de-duplicated
    assert resolve_targets(anatomy(bert), ["attention.output.dense"]) == [
        "bert.encoder.layer.0.attention.output.dense",
        "bert.encoder.layer.1.attention.output.dense",
    ]
    # "output.dense" is a suffix of both BERT's attn_out and ffn_out: the own-name rule takes both
    assert len(resolve_targets(anatomy(bert), ["output.dense"])) == 4
    assert resolve_targets(anatomy(vit), ["query", "value"]) == sorted(
        f"vit.layers.{i}.attention.{p}" for i in range(3) for p in ("q_proj", "v_proj")
    )
    assert resolve_targets(anatomy(vit), ["q_proj"]) == resolve_targets(anatomy(vit), ["query"])
    assert resolve_targets(anatomy(distil), ["q_lin", "ffn_out"]) == sorted(
        [f"distilbert.transformer.layer.{i}.attention.q_lin" for i in range(2)]
        + [f"distilbert.transformer.layer.{i}.ffn.lin2" for i in range(2)]
    )
    assert len(resolve_targets(anatomy(mobilenet), ["expand_1x1.convolution"])) == 16
    assert default_targets(anatomy(bert)) == ["query", "value"]


def test_resolve_errors_name_candidates():
    with torch.device("meta"):
        bert, mobilenet = build("bert"), build("mobilenet_v2")
    with pytest.raises(BadInput) as err:
        resolve_targets(anatomy(bert), ["qury"])
    message = str(err.value)
    assert "qury" in message and "query" in message and "attention.self.query" in message
    assert "\n" not in message
    with pytest.raises(BadInput, match="classification head"):
        resolve_targets(anatomy(bert), ["classifier"])
    with pytest.raises(BadInput, match="pointwise"):
        resolve_targets(anatomy(mobilenet), ["query"])
    with pytest.raises(BadInput):
        resolve_targets(anatomy(bert), [])


def test_peft_lora_on_resolved_targets(family):
    """The resolved names are what PEFT needs: LoRA wraps exactly them and the model still runs."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = build(family).eval()
    anat = anatomy(model)
    targets = resolve_targets(anatomy(model), default_targets(anat))
    peft_model = get_peft_model(
        model, LoraConfig(r=2, lora_alpha=4, target_modules=targets, modules_to_save=anat.head or None)
    )
    wrapped = sorted(
        n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")
    )
    assert wrapped == targets
    if family in ("bert", "roberta", "distilbert", "meanpool"):
        batch = {
            "input_ids": torch.randint(3, 97, (2, 5)),
            "attention_mask": torch.ones(2, 5, dtype=torch.long),
        }
    else:
        side = getattr(getattr(model.config, "vision_config", model.config), "image_size", 32)
        batch = {"pixel_values": torch.randn(2, 3, side, side)}
    with torch.no_grad():
        out = peft_model(**batch)
    if anat.head:
        assert out.logits.shape == (2, 3)
