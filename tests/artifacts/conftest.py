"""Trained runs shared by the artifact tests: every method, on every model kind, once per session, at tiny scale.

`trained` holds one finished run per (method, kind) case of artifact_runs.CASES: each method once on a text model and,
where it applies, once on an image model, the model kinds rotating over local folders (a mean-pooled
sentence-transformers BERT, a plain [CLS] BERT, a MobileNetV2), hub ids (a fake offline hub cache: tiny BERT and ViT)
and the packaged MiniLM and MobileNetV2 (the real models, tiny inputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from artifact_runs import (
    CASES,
    HUB_IMAGE,
    HUB_TEXT,
    KINDS,
    MINILM_HUB,
    Models,
    Run,
    bert_folder,
    clip_tower_folder,
    cnn_folder,
    hub_entry,
    vit_folder,
)
from PIL import Image

from peftlab.methods import REGISTRY
from tiny import TINY_KNOBS


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    from peftlab.models import PACKAGED_MODELS

    root = tmp_path_factory.mktemp("artifact-models")
    mean = bert_folder(root / "tiny-st", sentence_transformers=True)
    plain = bert_folder(root / "tiny-bert", sentence_transformers=False)
    vit = vit_folder(root / "tiny-vit")
    cnn = cnn_folder(root / "tiny-cnn")
    clip = clip_tower_folder(root / "tiny-clip-tower")
    cache = root / "hub"
    hub_entry(cache, HUB_TEXT, plain)
    hub_entry(cache, HUB_IMAGE, vit)
    # what minilm-l6's adapters name as their base
    hub_entry(cache, MINILM_HUB, PACKAGED_MODELS["minilm-l6"].path())
    local = {"local-mean": str(mean), "local-cls": str(plain), "hub-cls": HUB_TEXT, "hub-vit": HUB_IMAGE,
             "local-cnn": str(cnn), "packaged-text": "minilm-l6", "packaged-image": "mobilenet-v2",
             "local-clip": str(clip)}  # fmt: skip
    return Models(root, cache, local)


# --- the runs --------------------------------------------------------------------------------------------------


def _settings(method: str, kind: str, model: str, out: Path) -> dict:
    settings = {"model": model, "method": method, "epochs": 1, "batch_size": 16, "out": str(out), "seed": 0}
    if KINDS[kind] == "text":
        settings |= {"dataset": "vader-tweets", "max_train_samples": 6, "max_eval_samples": 6,
                     "max_validation_samples": 3, "max_length": 16}  # fmt: skip
    else:
        settings |= {"dataset": "fashion-mnist", "max_train_samples": 4, "max_eval_samples": 4,
                     "max_validation_samples": 4}  # fmt: skip
        settings["image_size"] = {"local-cnn": 16, "packaged-image": 32}.get(kind)
    if method == "adalora":  # its rank budgeting needs 2 optimiser steps or more
        settings["batch_size"] = 2
    for knob, value in TINY_KNOBS.get(method, {}).items():  # OFT's default block size divides no tiny width
        settings[f"{REGISTRY[method].prefix}_{knob}"] = value
    return settings


@pytest.fixture(scope="session")
def trained(models, tmp_path_factory) -> dict[str, Run]:
    """Every case of CASES trained in this process (one memo: data and encodings shared) -> {"lora-hub-cls": Run}."""
    from peftlab import config
    from peftlab.run import run_experiment
    from peftlab.store import Store

    out = tmp_path_factory.mktemp("artifact-runs")
    store = Store(out / "peftlab.db")
    memo: dict = {}
    runs = {}
    with models.hub():
        for method, kind in CASES:
            cfg = config.load(_settings(method, kind, models.local[kind], out))
            record = run_experiment(cfg, store, memo=memo, progress=False)
            run = Run(method, kind, record.public(), Path(record.artifacts.dir), Path(record.artifacts.saved))
            runs[run.id] = run
    return runs


@pytest.fixture(autouse=True)
def fake_hub(models):
    """Tests here read hub ids (peftlab's own loading of a run's base) from the fake hub cache."""
    with models.hub():
        yield


# --- inputs and a subprocess without peftlab ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list[str]:
    """Three images of other sizes and modes than the training data: RGB 28x28, RGB 50x40, greyscale 30x30."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (28, 28, 3)),
        rng.integers(0, 256, (40, 50, 3)),
        rng.integers(0, 256, (30, 30)),
    ]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(str(folder / f"im{i}.png"))
        Image.fromarray(a.astype(np.uint8)).save(paths[-1])
    return paths
