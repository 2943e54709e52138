"""VQA as classification: frozen image + question embeddings (cached on disk), a small fused head over the answers.

`run(cfg, record, memo=..., progress=...)` is the task's entry point (tasks/__init__.py); the method is `head`: only the
fusion head trains, the encoders stay frozen. The record also gets majority / question-only / image-only baselines.
Metrics come from the test split (`data.eval`); the validation split is loaded and sized but not embedded here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from peftlab.config import RunConfig
from peftlab.data.vqa import Columns, ImageSet, VQAData, load_vqa
from peftlab.errors import BadInput
from peftlab.models.loading import quiet
from peftlab.params import Prediction, compare_counts, measure
from peftlab.record import Data, Memory, Metrics, Params, Record, Time
from peftlab.tasks.vqa import IMAGE_SIZE
from peftlab.tasks.vqa.cache import embed_images, embed_texts, fingerprint, image_keys
from peftlab.tasks.vqa.dual import contrastive_pairs, dual_params, fit_dual
from peftlab.tasks.vqa.encoders import (
    Encoders,
    check_tower,
    choose_image_size,
    count_params,
    meta_model,
    resolve_encoders,
)
from peftlab.tasks.vqa.heads import FusionHead, Pairs, head_params, predict, train_heads
from peftlab.tasks.vqa.vqamodel import contrastive_scale
from peftlab.train import PeakMemory, Timer, metrics_from_predictions
from peftlab.train.encode import size_kwargs


def _log(progress: bool):
    return (lambda m: print(f"[peftlab] {m}", file=sys.stderr, flush=True)) if progress else (lambda m: None)


def _memo(memo: dict, key: tuple, build):
    if key not in memo:
        memo[key] = build()
    return memo[key]


def _join(a: ImageSet, b: ImageSet) -> ImageSet:
    # train images (Ma,) then eval images (Mb,): one table of Ma + Mb rows, one cache file
    n = len(a)
    return ImageSet(
        a.names + b.names,
        lambda i: a.read(i) if i < n else b.read(i - n),
        lambda i: a.load(i) if i < n else b.load(i - n),
    )


def vqa_metrics(y_true: np.ndarray, y_pred: np.ndarray, vocab: list[str], types: list[str] | None) -> dict:
    """Accuracy, macro-F1 / macro-recall over the training answers, per class, per question type, unseen share.
    y_true (N,) holds -1 for answers the training split never gave: always wrong, and counted in no class."""
    m = metrics_from_predictions(y_true, y_pred, vocab)
    m["unseen_answer_share"] = float(np.mean(y_true < 0)) if len(y_true) else 0.0
    m["per_type"] = None
    if types is not None:
        t = np.asarray(types)
        m["per_type"] = {
            k: {"accuracy": float(np.mean(y_pred[t == k] == y_true[t == k])), "count": int(np.sum(t == k))}
            for k in sorted(set(types))
        }
    return m


def _short(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "macro_recall", "per_type")}


def _embed(
    cfg: RunConfig, enc: Encoders, data: VQAData, images: ImageSet, memo: dict, progress: bool, log
) -> dict:
    """Image and text tables for this data: img (M_train + M_eval, Di) for `images` (train then eval), txt (T, Dt) +
    how each string maps to a row. cfg.image_size is the resolved size (choose_image_size)."""
    for tower in (enc.image, enc.text):
        tower._fingerprint = _memo(memo, ("vqa-fp", tower.location), lambda t=tower: fingerprint(t))
    keys = image_keys(images)  # (M,) content hashes: reading each image's bytes
    questions = sorted(set(data.train.questions) | set(data.eval.questions))  # deduplicated before encoding
    pairs = (
        contrastive_pairs(data.train.questions, data.train.answers, data.train.image_index)
        if enc.dual
        else None
    )
    texts = sorted(set(questions) | (set(pairs[1]) if pairs else set()))
    with Timer() as t_enc:
        img = embed_images(enc.image, images, keys, cfg, data.identity, progress)
        txt = embed_texts(enc.text, texts, cfg, data.identity, progress)
    row = {s: i for i, s in enumerate(texts)}
    out = {
        "img": img.vectors,
        "txt": txt.vectors,
        "text_row": row,
        "encode_s": t_enc.seconds,
        "encoded": {
            "images": {
                "distinct": len(set(keys)),
                "computed": img.computed,
                "cached": img.cached,
                "file": img.file,
            },
            "texts": {
                "distinct": len(texts),
                "computed": txt.computed,
                "cached": txt.cached,
                "file": txt.file,
            },
        },
        "dual": None,
        "tower_dims": (img.vectors.shape[1], txt.vectors.shape[1]),
    }
    log(
        f"embeddings: {img.computed} images and {txt.computed} texts computed, {img.cached} + {txt.cached} from the "
        f"cache, {t_enc.seconds:.1f}s; image {tuple(img.vectors.shape)}, text {tuple(txt.vectors.shape)}"
    )
    if enc.dual:
        _project_dual(out, enc, pairs, keys, cfg, progress, log)
    return out


def _project_dual(
    out: dict, enc: Encoders, pairs, keys: list[str], cfg: RunConfig, progress: bool, log
) -> None:
    """`--encoder dual`: fit the two projections contrastively on the training pairs, then map both tables into
    the shared space (in `out`)."""
    pair_img, pair_texts, what = pairs
    pair_txt = [out["text_row"][s] for s in pair_texts]
    key_parts = {
        "image_tower": enc.image._fingerprint,
        "text_tower": enc.text._fingerprint,
        "pairs": hashlib.sha256(json.dumps([[keys[i] for i in pair_img], pair_texts]).encode()).hexdigest(),
        "preprocessing": {
            "image_size": cfg.image_size,
            "max_length": cfg.max_length,
        },  # the embeddings it maps
    }
    fit = fit_dual(out["img"], out["txt"], pair_img, pair_txt, key_parts=key_parts, seed=cfg.split_seed,
                   what=what, progress=progress)  # fmt: skip
    with torch.no_grad():
        # the head sees the contrastive space as CLIP's embeddings are handed over: unit direction x sqrt(P)
        out["img"] = contrastive_scale(fit.projection.image(out["img"]))
        out["txt"] = contrastive_scale(fit.projection.text(out["txt"]))
    out["projection"] = fit.projection  # saved with the head: predicting needs the same shared space
    out["dual"] = {"pairs": fit.pairs, "pair_images": len(set(pair_img)), "what": what,
                   "train_s": round(fit.train_s, 2), "final_loss": fit.final_loss, "cached": fit.cached}  # fmt: skip
    log(f"dual projections: {fit.pairs} {what}, {'from the cache' if fit.cached else f'{fit.train_s:.1f}s'}")


def _frozen(component: str, params: int, formula: str = "counted from the config on the meta device") -> dict:
    return {"component": component, "params": params, "trainable": 0, "formula": formula}


def _frozen_parts(
    enc: Encoders, metas: dict, emb_dims: tuple[int, int], tower_dims: tuple[int, int]
) -> list[dict]:
    """The frozen encoders' parameters, counted on the meta device (a CLIP model once for both embeddings)."""
    if enc.image.location == enc.text.location and not enc.dual:
        return [_frozen(f"encoder {enc.image.name}", count_params(metas["image"]))]
    parts = [
        _frozen(f"image encoder {enc.image.name}", count_params(metas["image"])),
        _frozen(f"text encoder {enc.text.name}", count_params(metas["text"])),
    ]
    if enc.dual:
        (di, dt), p = tower_dims, emb_dims[0]
        parts.append(_frozen("dual projections (trained contrastively first)", dual_params(di, dt, p),
                             f"{di}*{p} + {dt}*{p} + 1"))  # fmt: skip
    return parts


@dataclass
class Answers:
    """The answer vocabulary (every answer the training split gives) and the examples as embedding-table rows."""

    vocab: list[str]
    counts: Counter
    train: Pairs
    eval: Pairs


def _answers(cfg: RunConfig, data: VQAData, row: dict) -> Answers:
    counts = Counter(data.train.answers)
    vocab = sorted(counts)
    if len(vocab) < 2:
        raise BadInput(
            f"--dataset {cfg.dataset}: the training questions have {len(vocab)} distinct answer; need >= 2"
        )
    answer_id = {a: i for i, a in enumerate(vocab)}
    tr, ev = data.train, data.eval
    train = Pairs(
        torch.as_tensor(tr.image_index),
        torch.tensor([row[q] for q in tr.questions]),
        torch.tensor([answer_id[a] for a in tr.answers]),
    )
    evaluation = Pairs(
        torch.as_tensor(ev.image_index + len(tr.images)),  # eval images follow the train images in the table
        torch.tensor([row[q] for q in ev.questions]),
        torch.tensor([answer_id.get(a, -1) for a in ev.answers]),
    )
    return Answers(vocab, counts, train, evaluation)


def _data_section(data: VQAData) -> Data:
    tr, val, ev = data.train, data.validation, data.eval
    vocab = sorted(set(tr.answers))
    return Data(
        train_size=len(tr),
        validation_size=len(val),
        test_size=len(ev),
        eval_size=len(ev),
        num_labels=len(vocab),
        label_names=vocab,
        source=data.source,
        notes=data.notes,
        full_sizes=data.full_sizes,
        extra={
            "images": {"train": len(tr.images), "validation": len(val.images), "eval": len(ev.images)},
            "distinct_questions": {
                "train": len(set(tr.questions)),
                "validation": len(set(val.questions)),
                "eval": len(set(ev.questions)),
            },
            "question_types": sorted(set(tr.types)) if tr.types else None,
        },
    )


def _load(cfg: RunConfig, memo: dict) -> tuple[tuple, VQAData]:
    cols = Columns(cfg.image_column, cfg.text_column, cfg.label_column)
    key = ("vqa-data", cfg.dataset, cfg.split_seed, cfg.max_train_samples, cfg.max_eval_samples,
           cfg.max_validation_samples, cfg.image_column, cfg.text_column, cfg.label_column, cfg.eval_split)  # fmt: skip
    data = _memo(memo, key, lambda: load_vqa(
        cfg.dataset, split_seed=cfg.split_seed, max_train_samples=cfg.max_train_samples,
        max_eval_samples=cfg.max_eval_samples, max_validation_samples=cfg.max_validation_samples, columns=cols,
        eval_split=cfg.eval_split))  # fmt: skip
    return key, data


def run(cfg: RunConfig, record: Record, *, memo: dict, progress: bool = True) -> None:
    from transformers import set_seed

    log = _log(progress)
    enc = resolve_encoders(cfg)
    metas = {"image": meta_model(enc.image), "text": meta_model(enc.text)}
    check_tower(enc.image, metas["image"])
    check_tower(enc.text, metas["text"])
    record.model = enc.label
    data_key, data = _load(cfg, memo)
    record.data = _data_section(data)
    tr, ev = data.train, data.eval
    log(f"{enc.label} / {cfg.dataset} / {cfg.method} ({cfg.fusion}) / seed {cfg.seed}: {len(tr)} train questions "
        f"({len(tr.images)} images), {len(data.validation)} validation, {len(ev)} test ({len(ev.images)} images), "
        f"{record.data.num_labels} answers")  # fmt: skip

    images = _join(tr.images, ev.images)  # the images this run encodes
    size = choose_image_size(cfg.image_size, enc.image, metas["image"], images, IMAGE_SIZE)
    enc_cfg = dataclasses.replace(cfg, image_size=size.arg)  # what the encoders and the cache key see
    hint = ""
    if (
        size.chosen == "encoder"
        and size.native
        and size.encoder
        and size.native < size.encoder
        and not size.fixed
    ):
        hint = f"; --image-size {size.native} encodes ~{(size.encoder / size.native) ** 2:.0f}x faster (see docs/vqa.md)"
    log(f"images at {size.pixels} px ({size.chosen}; the data's are {size.native} px{hint})")

    with PeakMemory() as mem:
        emb_key = ("vqa-emb", enc.label, enc.image.location, enc.text.location, data_key, size.arg,
                   cfg.max_length)  # fmt: skip
        fresh = emb_key not in memo  # else an earlier run of this process (compare) made the tables
        emb = _memo(memo, emb_key, lambda: _embed(enc_cfg, enc, data, images, memo, progress, log))
        img, txt = emb["img"], emb["txt"]
        ans = _answers(cfg, data, emb["text_row"])
        vocab, y_true = ans.vocab, ans.eval.labels.numpy()
        d_img, d_txt, k = img.shape[1], txt.shape[1], len(vocab)

        def new_head(inputs: str) -> FusionHead:
            set_seed(cfg.seed)  # the head's initialisation depends on the seed only
            return FusionHead(d_img, d_txt, k, cfg.fusion, cfg.hidden, cfg.dropout, inputs)

        def score(h: FusionHead) -> dict:
            return vqa_metrics(y_true, predict(h, img, txt, ans.eval).numpy(), vocab, ev.types)

        head = new_head("both")
        record.metrics_split = (
            "test"  # metrics, baseline_metrics and vqa_baselines; validation is not looked at
        )
        record.baseline_metrics = Metrics.from_dict(score(head))
        # the fusion head and the two one-embedding baselines train together, on the same batches (train/fast.py)
        singles = {name: new_head(inputs) for inputs, name in SINGLE_INPUT}
        stats = train_heads([head, *singles.values()], img, txt, ans.train, epochs=cfg.epochs, lr=cfg.lr,
                            batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                            max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, threads=cfg.threads or HEAD_THREADS,
                            progress=progress, desc=f"{cfg.method} {cfg.fusion} + 2 baselines s{cfg.seed}")  # fmt: skip
        with Timer() as t_eval:
            record.metrics = Metrics.from_dict(score(head))

        with Timer() as t_base:
            baselines = _baselines(ans, y_true, ev.types, singles, score)
        record.extra["vqa_baselines"] = baselines

    record.params = _params(head, enc, metas, (d_img, d_txt), k, emb["tower_dims"], cfg)
    record.time = Time(
        train_s=round(stats.train_s, 3),  # the fusion head and both baselines, trained together
        eval_s=round(t_eval.seconds, 4),
        train_samples_per_s=round(stats.samples_per_s, 1),
        train_steps=stats.steps,
        final_loss=stats.final_loss[0],
        lr=cfg.lr,
        extra={
            "encode_s": round(emb["encode_s"], 2) if fresh else 0.0,
            "baselines_s": round(t_base.seconds, 2),  # scoring them; their training is in train_s
            "trained_together": ["fusion", *singles],
        },
    )
    record.memory = Memory(**mem.section())
    record.extra["vqa"] = {
        "encoders": {"image": enc.image.name, "text": enc.text.name, "label": enc.label, "dual": enc.dual},
        "dims": {"image": d_img, "text": d_txt},
        "fusion": cfg.fusion,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        "image_size": size.to_dict(),
        "encoded": emb["encoded"] if fresh else "reused from an earlier run in this process",
        "dual": emb["dual"],
    }
    m, b = record.metrics, baselines
    log(f"accuracy {m.accuracy:.4f} (untrained {record.baseline_metrics.accuracy:.4f}; majority "
        f"{b['majority']['accuracy']:.4f}, question-only {b['question_only']['accuracy']:.4f}, image-only "
        f"{b['image_only']['accuracy']:.4f}), {record.params.trainable:,} trainable, train {stats.train_s:.1f}s")  # fmt: skip
    if cfg.save_model:
        record.artifacts.saved = _save(head, cfg, record, vocab, emb.get("projection"), enc, size.arg)


SINGLE_INPUT = (("question", "question_only"), ("image", "image_only"))  # FusionHead inputs -> baseline name
HEAD_THREADS = 1  # the heads' intra-op threads unless --threads says otherwise (train/fast.py torch_threads)


def _baselines(ans: Answers, y_true, types, singles: dict, score) -> dict:
    """The honest context: the most frequent training answer, and the same recipe on one embedding only.
    singles: {"question_only": head, "image_only": head}, trained; score(head) -> metrics on the eval questions."""
    vocab = ans.vocab
    majority = vocab.index(ans.counts.most_common(1)[0][0])
    out = {"majority": _short(vqa_metrics(y_true, np.full(len(y_true), majority), vocab, types))}
    out["majority"]["answer"] = vocab[majority]
    for name, h in singles.items():
        out[name] = _short(score(h))
        out[name]["trainable"] = sum(p.numel() for p in h.parameters())
    return out


def _params(
    head: FusionHead, enc: Encoders, metas: dict, dims: tuple[int, int], k: int, tower_dims, cfg
) -> Params:
    """The head's parameters by arithmetic on the widths, the frozen encoders counted on the meta device."""
    measured = measure(head)
    parts = head_params(dims[0], dims[1], k, cfg.fusion, cfg.hidden)
    frozen = _frozen_parts(enc, metas, dims, tower_dims)
    frozen_total = sum(p["params"] for p in frozen)
    predicted_head = sum(p["params"] for p in parts)
    measured["total"] += frozen_total  # measured on the encoders' real classes (meta device) + the live head
    note = "head by arithmetic on the widths; frozen encoders counted on the meta device"
    prediction = Prediction(predicted_head, predicted_head + frozen_total, parts + frozen, note=note)
    return Params.from_dict(compare_counts(measured, prediction))


def _save(head: FusionHead, cfg: RunConfig, record: Record, vocab: list[str], projection, enc: Encoders,
          image_size: int | None) -> str:  # fmt: skip
    """The trained head (safetensors) + what it needs: answers, widths, fusion, encoders; `--encoder dual` runs also
    their contrastive projections (projection.safetensors), without which new inputs cannot be embedded alike.
    config.json + vqamodel.py make the folder a transformers model (AutoModel, trust_remote_code=True) that reads the
    encoders from where a user finds them and embeds as this run did (image_size: what the image processor got)."""
    from safetensors.torch import save_file

    from peftlab.artifacts.portable import base_of, vqa_load_lines
    from peftlab.tasks.vqa import vqamodel

    target = Path(cfg.out) / record.run_id / "vqa-head"
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(target / vqamodel.HEAD_FILE))
    if projection is not None:
        state = {k: v.detach().contiguous() for k, v in projection.state_dict().items()}
        save_file(state, str(target / vqamodel.PROJECTION_FILE))
    vqa = record.extra["vqa"]
    bases = {tower.kind: base_of(tower.name) for tower in (enc.image, enc.text)}
    image_kind, text_kind = enc.image.kind, enc.text.kind
    processor_kwargs = {}
    if (
        image_size is not None
    ):  # the resize + crop the encoder's processor was given (its config alone is read)
        from transformers import AutoImageProcessor

        with quiet():
            processor_kwargs = size_kwargs(AutoImageProcessor.from_pretrained(enc.image.location), image_size)
    config = vqamodel.VQAConfig(
        answers=vocab, fusion=cfg.fusion, hidden=cfg.hidden, dropout=cfg.dropout, image_dim=vqa["dims"]["image"],
        text_dim=vqa["dims"]["text"], image_encoder=bases[image_kind].ref, text_encoder=bases[text_kind].ref,
        image_kind=image_kind, text_kind=text_kind, image_processor_kwargs=processor_kwargs,
        question_max_length=cfg.max_length,
        projection_dim=projection.visual_projection.out_features if projection is not None else None,
        projection_input_dims=[projection.visual_projection.in_features, projection.text_projection.in_features]
        if projection is not None
        else None,
        auto_map={"AutoConfig": "vqamodel.VQAConfig", "AutoModel": "vqamodel.VQAModel"},
        architectures=["VQAModel"],
    )  # fmt: skip
    config.save_pretrained(target)
    shutil.copy(vqamodel.__file__, target / "vqamodel.py")
    how = {
        "answers": vocab,
        "fusion": cfg.fusion,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        **vqa["dims"],
        "encoders": vqa["encoders"],
        "image_size": vqa["image_size"]["pixels"],  # the side images were resized and centre-cropped to
        # where each encoder is read from without peftlab (hub id or folder) and what to know about it
        "bases": {kind: {"ref": b.ref, "hub_id": b.hub_id, "note": b.note} for kind, b in bases.items()},
        "load": vqa_load_lines(str(target)),
    }
    (target / "peftlab.json").write_text(json.dumps(how, indent=2))
    return str(target)
