"""What the names mean: packaged (offline) models and datasets, the hub names of the reference experiments, methods.

`peftlab ls models|datasets|methods` prints `listing(what)`; the loaders live in models/ and data/.
"""

from __future__ import annotations

import dataclasses

# Hub names users with internet run the reference experiments on; here they are documentation, not downloads.
HUB_MODELS = {
    "google/vit-base-patch16-224-in21k": "ViT-B/16 pretrained on ImageNet-21k (Food-101 reference)",
    "roberta-base": "RoBERTa base, 125M (TweetEval reference)",
    "huawei-noah/TinyBERT_General_4L_312D": "TinyBERT 4 layers, hidden 312 (TweetEval, model-size comparison)",
    "sentence-transformers/all-MiniLM-L6-v2": "MiniLM-L6 sentence encoder (VQA question embeddings)",
    "microsoft/resnet-50": "ResNet-50 (VQA image embeddings, 2048-d)",
    "openai/clip-vit-base-patch32": "CLIP ViT-B/32 (VQA, both embeddings)",
}
HUB_DATASETS = {
    "food101": "Food-101, 101 classes, image/label (75,750 train / 25,250 validation)",
    "tweet_eval:sentiment": "TweetEval sentiment, 3 classes, text/label; official metric macro-recall",
    "daquar": "DAQUAR VQA (image, question, answer) — any hub repo in that shape, or the original files locally",
}


def _row(name: str, ok: bool | None, what: str) -> str:
    mark = {True: "offline", False: "missing", None: "hub"}[ok]
    return f"  {name:<40} {mark:<8} {what}"


def listing(what: str) -> str:
    lines: list[str] = []
    if what == "methods":
        from peftlab.methods import REGISTRY
        from peftlab.methods.knobs import flag, knob_fields

        lines.append(
            "methods (peftlab run --method NAME; knobs as flags, or as keys in YAML run and suite files):"
        )
        for m in REGISTRY.values():
            lines.append(f"  {m.name:<12} {m.trains}")
            tasks = ", ".join(t.removesuffix("-classification") for t in m.tasks)
            lines.append(
                f"  {'':<12} tasks: {tasks}; default lr {m.default_lr:g}"
                + (f"; {m.paper}" if m.paper else "")
            )
            if m.limits:
                lines.append(f"  {'':<12} cannot apply: {m.limits}")
            for f in knob_fields(m.knobs):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                shown = "" if default is None else f" [default: {default}]"
                lines.append(f"  {'':<14}{flag(m.prefix, f.name):<26} {f.metadata['help']}{shown}")
        return "\n".join(lines)
    if what == "models":
        from peftlab.models import PACKAGED_MODELS

        lines.append("packaged models (ship inside pip packages; no hub needed):")
        for m in PACKAGED_MODELS.values():
            lines.append(_row(m.name, m.available(), f"{m.description}  [{m.task}]"))
        lines.append(
            "hub models of the reference experiments (need internet; any hub id or local HF folder works):"
        )
        lines += [_row(k, None, v) for k, v in HUB_MODELS.items()]
        return "\n".join(lines)
    if what == "datasets":
        from peftlab.data import PACKAGED_DATASETS

        lines.append("packaged datasets (ship inside pip/Debian packages; no hub needed):")
        for d in PACKAGED_DATASETS.values():
            lines.append(_row(d.name, d.available(), f"{d.description}  [{d.task}]"))
        from peftlab.data.vqa import VQA_DATASETS

        for d in VQA_DATASETS.values():
            lines.append(_row(d.name, d.available(), f"{d.description}  [vqa]"))
        lines.append(
            "hub datasets (need internet; also: local CSV/JSON/JSONL/Parquet files and image folders):"
        )
        lines += [_row(k, None, v) for k, v in HUB_DATASETS.items()]
        return "\n".join(lines)
    raise ValueError(what)
