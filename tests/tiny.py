"""The one place tiny model configs live: every supported family, with deliberately uneven sizes.

Sizes (hidden 48, feed-forward 100, 3 heads, vocabulary 97) are uneven so no two errors in the parameter arithmetic
can cancel. `TINY[name]` is a config.json as a dict (the params tests write it to a folder); `tiny_config(family, k)`
builds the transformers config; `tiny_model(family, k)` -> (model in eval mode, task, a batch of 4 with labels);
`FAMILIES` drives every registry-driven matrix (methods x families, parameter predictions).
"""

import torch
import transformers as T

TEXT = {
    "vocab_size": 97,
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "intermediate_size": 100,
}
VISION = {"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 3, "intermediate_size": 100}

TINY = {
    "bert": {"model_type": "bert", **TEXT, "max_position_embeddings": 40, "type_vocab_size": 2},
    "roberta": {"model_type": "roberta", **TEXT, "num_hidden_layers": 3, "max_position_embeddings": 42,
                "type_vocab_size": 1, "pad_token_id": 1},
    "distilbert": {"model_type": "distilbert", "vocab_size": 97, "dim": 48, "n_layers": 2, "n_heads": 3,
                   "hidden_dim": 100, "max_position_embeddings": 40},
    "vit": {"model_type": "vit", **VISION, "image_size": 40, "patch_size": 8, "num_channels": 3, "qkv_bias": True},
    "clip": {"model_type": "clip", "projection_dim": 24,
             "vision_config": {**VISION, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
             "text_config": {"vocab_size": 97, "hidden_size": 40, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 40}},
    "clip_vision_model": {"model_type": "clip_vision_model", **VISION, "image_size": 24, "patch_size": 6,
                          "num_channels": 3},
    "mobilenet_v2": {"model_type": "mobilenet_v2", "image_size": 32, "depth_multiplier": 0.35, "tf_padding": False,
                     "layer_norm_eps": 1e-5},
    "resnet": {"model_type": "resnet", "embedding_size": 16, "hidden_sizes": [16, 24, 40], "depths": [1, 2, 2],
               "layer_type": "bottleneck"},
    "mobilenet_v2-variant": {"model_type": "mobilenet_v2", "image_size": 32, "depth_multiplier": 0.75,
                             "first_layer_is_expansion": False, "finegrained_output": False, "expand_ratio": 4.0},
    "vit-no-qkv-bias": {"model_type": "vit", **VISION, "num_hidden_layers": 2, "image_size": 24, "patch_size": 4,
                        "num_channels": 1, "qkv_bias": False},
    "resnet-basic": {"model_type": "resnet", "embedding_size": 12, "hidden_sizes": [12, 20], "depths": [2, 1],
                     "layer_type": "basic", "downsample_in_first_stage": True},
}  # fmt: skip
TEXT_FAMILIES = ("bert", "roberta", "distilbert")


# knob settings that fit every tiny width (48, 100, uneven conv widths) where a method's default does not (OFT's block
# size 32 divides no tiny width); the matrices use them instead of the defaults, which the base-size tests cover
TINY_KNOBS = {"oft": {"block_size": 2}, "boft": {"block_size": 2}}

# the classifier class each family is tested as (what peftlab's loader builds for it)
CLASSES = {
    "bert": T.BertForSequenceClassification,
    "roberta": T.RobertaForSequenceClassification,
    "distilbert": T.DistilBertForSequenceClassification,
    "vit": T.ViTForImageClassification,
    "mobilenet_v2": T.MobileNetV2ForImageClassification,
    "resnet": T.ResNetForImageClassification,
    "clip": T.CLIPForImageClassification,
}
FAMILIES = list(CLASSES)


def labels(k: int) -> dict:
    return {
        "num_labels": k,
        "id2label": {i: f"c{i}" for i in range(k)},
        "label2id": {f"c{i}": i for i in range(k)},
    }


def tiny_config(name: str, k: int = 5):
    """The transformers config of TINY[name] with a k-class head."""
    fields = dict(TINY[name])
    return T.AutoConfig.for_model(fields.pop("model_type"), **fields, **labels(k))


def image_side(family: str) -> int:
    """The side in pixels a tiny vision family takes (its config's image_size; CNNs take any, 32 here)."""
    vision = TINY[family].get("vision_config", TINY[family])
    return vision.get("image_size", 32)


def tiny_model(family: str, k: int = 5, seed: int = 0):
    """(model in eval mode, task, a batch of 4 inputs with labels); images at the config's own size."""
    torch.manual_seed(seed)
    config = tiny_config(family, k)
    model = CLASSES[family](config).eval()
    g = torch.Generator().manual_seed(seed)
    if family in TEXT_FAMILIES:
        ids = torch.randint(3, 97, (4, 9), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 6:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        task = "text-classification"
    else:
        side, channels = image_side(family), TINY[family].get("num_channels", 3)
        batch = {"pixel_values": torch.randn(4, channels, side, side, generator=g)}
        task = "image-classification"
    batch["labels"] = torch.tensor([0, 1, 2, k - 1])
    return model, task, batch
