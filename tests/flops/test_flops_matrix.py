"""Predicted FLOPs == FlopCounterMode's count, for every registered method x every family (tests/tiny.py), on tiny models.

Each case prepares the real model as `peftlab run` does and counts, with flops/counter.py (torch's FlopCounterMode plus
the CPU attention kernel and grouped-conv weight gradients), one training step (forward + backward in train mode with
the loop's dropout, train/dropout.py) and one evaluation forward; where the frozen-prefix cache applies, also the
capture pass over the prefix and the cached step and evaluation (train/cache.py). Every count must equal the
prediction from the config alone (flops.predict_flops), exactly.
"""

import dataclasses

import pytest
import torch
from transformers import CLIPConfig

from peftlab.errors import BadInput
from peftlab.flops import batch_flops, effect_of, predict_flops, step_graph
from peftlab.flops.counter import count
from peftlab.methods import REGISTRY, Context
from peftlab.models import MeanPoolConfig, MeanPoolForSequenceClassification
from peftlab.models.anatomy import anatomy
from peftlab.params import predict_from_config
from peftlab.params.plan import virtual_anatomy
from peftlab.train.cache import CachedEncoded, _capture, plan_prefix, skip_prefix
from peftlab.train.dropout import fast_dropout
from peftlab.train.encode import Encoded
from tiny import CLASSES, FAMILIES, TEXT_FAMILIES, TINY, TINY_KNOBS, labels, tiny_config, tiny_model

CNN_SIDE = 16  # CNNs take any size: 2 images of 16 px keep the convolutions (slow under the counter) cheap


VARIANTS = {  # config variants of tests/tiny.py -> the family whose class and inputs they take
    "mobilenet_v2-variant": "mobilenet_v2",  # a stem 1x1 expansion, unrounded widths
    "resnet-basic": "resnet",  # basic blocks, a downsampling first stage
    "vit-no-qkv-bias": "vit",  # 24 px, patches of 4, one channel, no q/k/v biases
    "clip_vision_model": "clip",  # CLIP's vision tower alone
}


def build(family: str, pooling: str):
    """(model, task, batch) as tiny_model gives them (CNNs: 2 images of 16 px); pooling "mean": the encoder under
    peftlab's mean-pooling head; a VARIANTS config in its family's class."""
    if family in VARIANTS:
        base = VARIANTS[family]
        _, task, batch = tiny_model(base)
        torch.manual_seed(0)
        config = tiny_config(family)
        if (
            base == "mobilenet_v2"
        ):  # as peftlab converts MobileNetV2: HF's TF padding reads conv.stride, which a
            config.tf_padding = False  # PEFT-wrapped conv does not have (a forward through LoRA would fail)
        model = CLASSES[base](
            CLIPConfig(vision_config=config.to_dict(), **labels(5)) if base == "clip" else config
        )
        side, channels = TINY[family].get("image_size", 16), TINY[family].get("num_channels", 3)
        batch = {"pixel_values": torch.randn(2, channels, side, side), "labels": batch["labels"][:2]}
        return model.eval(), task, batch
    model, task, batch = tiny_model(family)
    if family.startswith(("mobilenet", "resnet")):
        batch = {
            "pixel_values": batch["pixel_values"][:2, :, :CNN_SIDE, :CNN_SIDE],
            "labels": batch["labels"][:2],
        }
    if pooling == "mean":
        torch.manual_seed(0)
        model = MeanPoolForSequenceClassification(
            MeanPoolConfig(encoder_config=tiny_config(family), num_labels=5)
        )
        model.eval()
    return model, task, batch


def encoded(task: str, batch: dict) -> Encoded:
    """The batch as an Encoded (unpadded ids), so the cache code can take it."""
    if "input_ids" in batch:
        ids = [row[: int(m.sum())] for row, m in zip(batch["input_ids"], batch["attention_mask"])]
        return Encoded(task, batch["labels"], input_ids=ids, pad_id=0)
    return Encoded(task, batch["labels"], pixel_values=batch["pixel_values"])


def shape_of(batch: dict) -> tuple[int, int]:
    """(batch size, padded tokens; 0 for images)."""
    if "input_ids" in batch:
        return tuple(batch["input_ids"].shape)
    return batch["pixel_values"].shape[0], 0


def train_step(model, batch, forward=None):
    forward = forward or (lambda m, b: m(**b).loss)

    def step():
        model.train()
        with fast_dropout(model):
            forward(model, batch).backward()

    return step


def eval_pass(model, batch, forward=None):
    forward = forward or (lambda m, b: m(**b).logits)

    def run():
        model.eval()
        with torch.inference_mode():
            forward(model, {k: v for k, v in batch.items() if k != "labels"})

    return run


def check(method_name: str, family: str, pooling: str, knobs: dict) -> None:
    method = REGISTRY[method_name]
    model, task, batch = build(family, pooling)
    if task not in method.tasks:
        pytest.skip(f"{method_name} is not for {task}")
    knobs = dataclasses.replace(method.knobs(), **knobs)
    resolved = pooling if family in TEXT_FAMILIES else "image"
    config = model.config.vision_config if family == "clip_vision_model" else model.config
    try:
        predicted = predict_from_config(config, task, 5, method, knobs, pooling=resolved)
    except BadInput as e:
        pytest.skip(f"{method_name} does not apply to {family}: {e}")
    image = None if family in TEXT_FAMILIES else tuple(batch["pixel_values"].shape[2:])
    anat = virtual_anatomy(predicted.arch)
    fp = predict_flops(predicted.arch, predicted.plan, method, knobs, task, anat, image=image)
    assert fp.ok, fp.note
    prepared = method.prepare(model, anatomy(model), knobs, Context(task, total_steps=10))
    b, t = shape_of(batch)

    # uncached: the whole model, as every run without a frozen prefix trains
    effect = effect_of(method, predicted.arch, anat, knobs, task, predicted.plan)
    whole = {"image": image} if image else {}
    if method.needs_training:
        want = batch_flops(step_graph(predicted.arch, predicted.plan, effect, training=True, **whole), b, t)
        assert count(train_step(prepared, batch))[0] == want
    want = batch_flops(step_graph(predicted.arch, predicted.plan, effect, training=False, **whole), b, t)
    assert count(eval_pass(prepared, batch))[0] == want

    # cached: the capture pass over the prefix, then the step and the evaluation after the cut
    enc = encoded(task, batch)
    cut = plan_prefix(prepared, anatomy(model), enc)
    assert (cut.block if cut else None) == fp.cut
    if cut is None:
        return
    n = len(cut.blocks)
    points = [cut.block] if cut.block < n - 1 else [n - 1, n]
    captured = {}
    got = count(lambda: captured.update(_capture(cut, enc, points, batch_size=b)))[0]
    assert got == batch_flops(fp.capture, b, t)
    cached = CachedEncoded(enc, captured[cut.block])
    every = list(range(b))
    with skip_prefix(cut) as fwd:
        if method.needs_training:
            assert count(train_step(prepared, cached.collate(every), fwd.loss))[0] == batch_flops(
                fp.train, b, t
            )
        assert count(eval_pass(prepared, cached.collate(every), fwd.logits))[0] == batch_flops(fp.eval, b, t)


CASES = [(f, "cls") for f in FAMILIES] + [(f, "mean") for f in TEXT_FAMILIES]


@pytest.mark.parametrize(("family", "pooling"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_method_on_every_family(method, family, pooling):
    check(method, family, pooling, TINY_KNOBS.get(method, {}))


KNOB_CASES = [
    ("lora", "bert", {"target": ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"], "r": 3}),
    ("lora", "vit", {"target": ["projection", "ffn_out"], "dropout": 0.0}),  # the patch conv adapted
    ("lora", "roberta", {"target": ["value"], "bias": "all"}),  # every bias trains: gradients from block 0
    ("lora", "mobilenet_v2", {"target": ["conv_stem.conv_3x3.convolution"], "r": 16}),  # a depthwise conv
    ("lora", "resnet", {"target": ["spatial"]}),
    ("lora", "distilbert", {"target": ["ffn_out"]}),
    ("dora", "bert", {"dropout": 0.0}),  # no dropout: PEFT reuses the base output
    ("dora", "resnet", {"target": ["spatial", "pointwise"]}),
    ("adalora", "vit", {"target": ["key", "ffn_in"], "dropout": 0.1}),
    ("adalora", "resnet", {"target": ["spatial"]}),
    ("ia3", "vit", {"target": ["query", "ffn_out"], "feedforward": ["ffn_out"]}),
    ("ia3", "roberta", {"target": ["value"], "feedforward": []}),
    ("vera", "distilbert", {"target": ["ffn_in"], "r": 16, "dropout": 0.1}),
    ("fourierft", "clip", {"target": ["key", "attn_out"], "n_frequency": 30}),
    ("loha", "resnet", {"target": ["spatial"], "r": 4}),
    ("lokr", "bert", {"decompose_both": True, "r": 1}),
    ("lokr", "mobilenet_v2", {"target": ["pointwise"], "r": 2}),
    ("oft", "bert", {"block_size": 4, "block_share": True}),
    ("oft", "vit", {"block_size": 0, "r": 4, "use_cayley_neumann": False}),
    ("oft", "distilbert", {"block_size": 8, "num_cayley_neumann_terms": 7}),
    ("boft", "bert", {"block_size": 4, "n_butterfly_factor": 2}),
    ("boft", "resnet", {"block_size": 0, "block_num": 3, "target": ["spatial"]}),
    ("prompt-tuning", "distilbert", {"num_virtual_tokens": 3}),
    ("p-tuning", "roberta", {"encoder_type": "LSTM", "encoder_hidden_size": 6, "num_virtual_tokens": 4}),
    ("p-tuning", "bert", {"encoder_hidden_size": 7}),
    ("prefix-tuning", "roberta", {"projection": True, "encoder_hidden_size": 5, "num_virtual_tokens": 3}),
    ("ln-tuning", "vit", {}),
    ("last-layer", "resnet", {}),
]


@pytest.mark.parametrize("family", list(VARIANTS))
@pytest.mark.parametrize("method", ["head", "last-layer", "lora", "full", "ia3", "loha"])
def test_config_variants(method, family):
    check(method, family, "cls", {})


@pytest.mark.parametrize(("method", "family", "knobs"), KNOB_CASES,
                         ids=[f"{m}-{f}-" + ",".join(map(str, k)) for m, f, k in KNOB_CASES])  # fmt: skip
def test_knobs(method, family, knobs):
    pooling = "mean" if method == "prefix-tuning" else "cls"
    check(method, family, pooling, knobs)
