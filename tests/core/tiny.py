"""Tiny random models of every supported family, built from configs with deliberately uneven sizes.

`tiny_model(family, num_labels)` -> (model, task, example_inputs); used by the registry-driven method matrix.
"""

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    CLIPConfig,
    CLIPForImageClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    MobileNetV2Config,
    MobileNetV2ForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

TEXT = dict(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=100,
            max_position_embeddings=40)  # fmt: skip


def _labels(k):
    return {
        "num_labels": k,
        "id2label": {i: f"c{i}" for i in range(k)},
        "label2id": {f"c{i}": i for i in range(k)},
    }


def tiny_config(family: str, k: int = 5):
    if family == "bert":
        return BertConfig(**TEXT, **_labels(k))
    if family == "roberta":
        return RobertaConfig(**{**TEXT, "max_position_embeddings": 42}, pad_token_id=1, **_labels(k))
    if family == "distilbert":
        return DistilBertConfig(vocab_size=97, dim=48, n_layers=2, n_heads=3, hidden_dim=100,
                                max_position_embeddings=40, **_labels(k))  # fmt: skip
    if family == "vit":
        return ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=3, intermediate_size=100, **_labels(k))  # fmt: skip
    if family == "mobilenet_v2":
        return MobileNetV2Config(
            image_size=32, depth_multiplier=0.35, tf_padding=False, layer_norm_eps=1e-5, **_labels(k)
        )
    if family == "resnet":
        return ResNetConfig(embedding_size=16, hidden_sizes=[16, 24, 32], depths=[1, 1, 2], layer_type="bottleneck",
                            **_labels(k))  # fmt: skip
    if family == "clip":
        return CLIPConfig(
            vision_config=dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                               intermediate_size=100),
            text_config=dict(vocab_size=97, hidden_size=40, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=40),
            **_labels(k),
        )  # fmt: skip
    raise KeyError(family)


CLASSES = {
    "bert": BertForSequenceClassification,
    "roberta": RobertaForSequenceClassification,
    "distilbert": DistilBertForSequenceClassification,
    "vit": ViTForImageClassification,
    "mobilenet_v2": MobileNetV2ForImageClassification,
    "resnet": ResNetForImageClassification,
    "clip": CLIPForImageClassification,
}
FAMILIES = list(CLASSES)
TEXT_FAMILIES = {"bert", "roberta", "distilbert"}


def tiny_model(family: str, k: int = 5, seed: int = 0):
    """(model in eval mode, task, a batch of 4 inputs with labels)."""
    torch.manual_seed(seed)
    model = CLASSES[family](tiny_config(family, k)).eval()
    g = torch.Generator().manual_seed(seed)
    if family in TEXT_FAMILIES:
        ids = torch.randint(3, 97, (4, 9), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 6:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        task = "text-classification"
    else:
        batch = {"pixel_values": torch.randn(4, 3, 32, 32, generator=g)}
        task = "image-classification"
    batch["labels"] = torch.tensor([0, 1, 2, k - 1])
    return model, task, batch
