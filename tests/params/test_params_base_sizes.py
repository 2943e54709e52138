"""The standard base models' sizes: predicted from their config.json, and counted on the bare backbone class.

Each backbone is built on the meta device from the same config; its well-known size is written here so a formula and
a model class cannot agree on a wrong number.
"""

import pytest
import torch
from params_configs import BASE

from peftlab.params import count

# hub id -> (backbone class, kwargs, parameters of the backbone as our classifier holds it)
BACKBONES = {
    "bert-base-uncased": (
        "BertModel",
        {},
        109_482_240,
    ),  # with its pooler, as BertForSequenceClassification keeps it
    "roberta-base": (
        "RobertaModel",
        {"add_pooling_layer": False},
        124_055_040,
    ),  # 124,645,632 with the pooler
    "distilbert-base-uncased": ("DistilBertModel", {}, 66_362_880),
    "google/vit-base-patch16-224-in21k": (
        "ViTModel",
        {"add_pooling_layer": False},
        85_798_656,
    ),  # 86,389,248 pooled
    "huawei-noah/TinyBERT_General_4L_312D": ("BertModel", {}, 14_350_248),
    "microsoft/resnet-50": ("ResNetModel", {}, 23_508_032),  # 25,557,032 with the 1000-class head
    "openai/clip-vit-base-patch32": ("CLIPVisionModel", {}, 87_456_000),  # vision tower, no projection
}


def backbone_count(name: str) -> int:
    import transformers

    cls_name, kwargs, _ = BACKBONES[name]
    cfg = dict(BASE[name])
    config_cls = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    if cls_name == "CLIPVisionModel":
        config_cls = config_cls.vision_config
    with torch.device("meta"):
        model = getattr(transformers, cls_name)(config_cls, **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_base_backbone_sizes(name, folder):
    expected = BACKBONES[name][2]
    assert backbone_count(name) == expected
    result = count(folder(name), "full", num_labels=3)
    head = next(r for r in result["breakdown"] if r["component"] == "head")
    assert result["match"] is True
    assert result["predicted_total"] - head["params"] == expected
    assert result["total"] == result["trainable"] == expected + head["params"]


def test_bert_base_pooler_and_heads(folder):
    """BERT-base classifier = 109,482,240 + 768·K + K; RoBERTa's head is dense 768->768 + out_proj 768->K."""
    bert = count(folder("bert-base-uncased"), "head", num_labels=3)
    assert (bert["total"], bert["trainable"]) == (109_482_240 + 768 * 3 + 3, 768 * 3 + 3)
    roberta = count(folder("roberta-base"), "head", num_labels=3)
    assert roberta["trainable"] == (768 * 768 + 768) + (768 * 3 + 3) == 592_899
    assert roberta["total"] == 124_055_040 + 592_899


def test_packaged_models_from_config_alone():
    """minilm-l6 (mean pooling over BERT without pooler) and mobilenet-v2 (torchvision widths) when installed."""
    from peftlab.models import PACKAGED_MODELS

    for name, backbone in (("minilm-l6", 22_565_376), ("mobilenet-v2", 2_223_872)):
        if not PACKAGED_MODELS[name].available():
            continue
        result = count(name, "lora", num_labels=1000)
        assert result["match"] is True, result
        rows = {r["component"]: r["params"] for r in result["breakdown"]}
        extra = sum(v for k, v in rows.items() if k.startswith(("lora", "modules_to_save")))
        assert result["total"] - extra - rows["head"] == backbone
