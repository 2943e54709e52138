"""Model families as arithmetic: config fields -> the `Arch` of the classifier `load_model` builds; one module each.

`architecture(config, task, num_labels, pooling)`; adding a family is one module here and one `register` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from peftlab.params.layers import HEAD, Arch, Layer, linear, transformer_arch

MEANPOOL = "peftlab-meanpool"  # peftlab's mean-pooling classifier (models/meanpool.py) wraps any text encoder


@dataclass
class Encoder:
    """A text family's encoder under some prefix: its layers, where its blocks are, and its output width."""

    layers: list[Layer]
    block_list: str  # relative to the prefix: "encoder.layer", "transformer.layer"
    width: int  # hidden size H of the output the head reads
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # Arch.info: heads, attention dropout, norm placement


@dataclass(frozen=True)
class Family:
    model_types: tuple[str, ...]  # config.model_type values this module describes
    # (config, num_labels, pooling) -> Arch of the family's own *For*Classification ("cls" text, "image")
    classifier: Callable[..., Arch]
    # text families: (config, prefix) -> Encoder without pooler, for mean pooling; None for image families
    encoder: Callable[..., Encoder] | None = None


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> None:
    for model_type in family.model_types:
        if model_type in FAMILIES:
            raise ValueError(f"family {model_type!r} is registered twice")
        FAMILIES[model_type] = family


def family_name(config) -> str:
    """The backbone's model_type (the encoder's, for a saved mean-pooling classifier)."""
    return config.encoder_config.model_type if config.model_type == MEANPOOL else config.model_type


def mean_pooled(config, num_labels: int) -> Arch | None:
    """MeanPoolForSequenceClassification: the encoder (no pooler) under `encoder`, then `classifier` H -> K."""
    enc_config = config.encoder_config if config.model_type == MEANPOOL else config
    family = FAMILIES.get(enc_config.model_type)
    if family is None or family.encoder is None:
        return None
    enc = family.encoder(enc_config, "encoder")
    head = [linear("classifier", HEAD, enc.width, num_labels)]
    return transformer_arch(
        enc_config.model_type,
        "MeanPoolForSequenceClassification",
        enc.layers,
        head,
        enc.notes,
        f"encoder.{enc.block_list}",
        enc.info,
    )


def architecture(config, task: str, num_labels: int, pooling: str) -> Arch | None:
    """The classifier load_model builds for (config, task, pooling), as layers; None for a family without formulas.

    `pooling` is load_model's resolved one: "mean" / "cls" for text, "image" for images."""
    if pooling == "mean":
        return mean_pooled(config, num_labels)
    family = FAMILIES.get(config.model_type)
    if family is None:
        return None
    if pooling == "cls" and family.encoder is None:
        return None  # an image family asked for a text head
    return family.classifier(config, num_labels)


from peftlab.params.families import bert, clip, distilbert, mobilenet_v2, resnet, roberta, vit  # noqa: E402

register(bert.FAMILY)
register(roberta.FAMILY)
register(distilbert.FAMILY)
register(vit.FAMILY)
register(clip.FAMILY)
register(mobilenet_v2.FAMILY)
register(resnet.FAMILY)
