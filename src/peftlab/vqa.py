"""VQA as classification: frozen image + question embeddings (cached on disk), a small fused head over the answers.

Called by `peftlab.run.run_experiment` for `--task vqa`: `run_vqa(cfg, record, memo=..., progress=...)` fills record.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from peftlab.config import RunConfig
from peftlab.data.vqa import Columns, ImageSet, VQAData, load_vqa
from peftlab.errors import BadInput
from peftlab.train import PeakMemory, Timer, metrics_from_predictions
from peftlab.vqa_dual import contrastive_pairs, dual_params, fit_dual
from peftlab.vqa_encode import (
    Encoders,
    check_tower,
    contrastive_scale,
    count_params,
    embed_images,
    embed_texts,
    fingerprint,
    image_keys,
    meta_model,
    resolve_encoders,
)
from peftlab.vqa_head import FUSIONS, FusionHead, Pairs, head_params, predict, train_head

VQA_LR = 1e-3  # AdamW learning rate of the head when --lr is not given


def check_vqa(cfg: RunConfig) -> None:
    """The VQA settings RunConfig's own validation leaves to this task, named by their flags."""
    if cfg.fusion not in FUSIONS:
        raise BadInput(f"--fusion {cfg.fusion!r}: expected one of {', '.join(FUSIONS)}")
    if cfg.hidden is None or cfg.hidden < 1:
        raise BadInput(f"--hidden {cfg.hidden!r}: must be a positive width (the reference head uses 512)")
    if not 0 <= cfg.dropout < 1:
        raise BadInput(f"--dropout {cfg.dropout!r}: must be in [0, 1)")


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


def _embed(cfg: RunConfig, enc: Encoders, data: VQAData, memo: dict, progress: bool, log) -> dict:
    """Image and text tables for this data: img (M_train + M_eval, Di), txt (T, Dt) + how each string maps to a row."""
    for tower in (enc.image, enc.text):
        tower._fingerprint = _memo(memo, ("vqa-fp", tower.location), lambda t=tower: fingerprint(t))
    images = _join(data.train.images, data.eval.images)
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
        pair_img, pair_texts, what = pairs
        pair_txt = [row[s] for s in pair_texts]
        used = sorted(set(pair_img))
        key_parts = {
            "image_tower": enc.image._fingerprint,
            "text_tower": enc.text._fingerprint,
            "pairs": hashlib.sha256(
                json.dumps([[keys[i] for i in pair_img], pair_texts]).encode()
            ).hexdigest(),
        }
        fit = fit_dual(img.vectors, txt.vectors, pair_img, pair_txt, key_parts=key_parts, seed=cfg.split_seed,
                       what=what, progress=progress)  # fmt: skip
        with torch.no_grad():
            # the head sees the contrastive space as CLIP's embeddings are handed over: unit direction x sqrt(P)
            out["img"] = contrastive_scale(fit.projection.image(img.vectors))
            out["txt"] = contrastive_scale(fit.projection.text(txt.vectors))
        out["dual"] = {"pairs": fit.pairs, "pair_images": len(used), "what": what, "train_s": round(fit.train_s, 2),
                       "final_loss": fit.final_loss, "cached": fit.cached}  # fmt: skip
        log(
            f"dual projections: {fit.pairs} {what}, {'from the cache' if fit.cached else f'{fit.train_s:.1f}s'}"
        )
    return out


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


def run_vqa(cfg: RunConfig, record: dict, *, memo: dict, progress: bool = True) -> None:
    from transformers import set_seed

    from peftlab.params import Prediction, compare_counts, measure

    log = _log(progress)
    check_vqa(cfg)
    enc = resolve_encoders(cfg)
    metas = {"image": meta_model(enc.image), "text": meta_model(enc.text)}
    check_tower(enc.image, metas["image"])
    check_tower(enc.text, metas["text"])
    cfg.task, cfg.method = "vqa", f"vqa-{cfg.fusion}"
    record.update(task="vqa", method=cfg.method, model=enc.label)

    cols = Columns(cfg.image_column, cfg.text_column, cfg.label_column)
    data_key = ("vqa-data", cfg.dataset, cfg.split_seed, cfg.max_train_samples, cfg.max_eval_samples,
                cfg.image_column, cfg.text_column, cfg.label_column, cfg.eval_split)  # fmt: skip
    data: VQAData = _memo(memo, data_key, lambda: load_vqa(
        cfg.dataset, split_seed=cfg.split_seed, max_train_samples=cfg.max_train_samples,
        max_eval_samples=cfg.max_eval_samples, columns=cols, eval_split=cfg.eval_split))  # fmt: skip
    tr, ev = data.train, data.eval
    counts = Counter(tr.answers)
    vocab = sorted(counts)  # answer vocabulary: every answer the training split gives
    if len(vocab) < 2:
        raise BadInput(
            f"--dataset {cfg.dataset}: the training questions have {len(vocab)} distinct answer; need >= 2"
        )
    answer_id = {a: i for i, a in enumerate(vocab)}
    types = sorted(set(tr.types)) if tr.types else None
    record["data"] = {
        "train_size": len(tr),
        "eval_size": len(ev),
        "num_labels": len(vocab),
        "label_names": vocab,
        "source": data.source,
        "notes": data.notes,
        "full_sizes": data.full_sizes,
        "images": {"train": len(tr.images), "eval": len(ev.images)},
        "distinct_questions": {"train": len(set(tr.questions)), "eval": len(set(ev.questions))},
        "question_types": types,
    }
    log(f"{enc.label} / {cfg.dataset} / {cfg.method} / seed {cfg.seed}: {len(tr)} train questions ({len(tr.images)} "
        f"images), {len(ev)} eval ({len(ev.images)} images), {len(vocab)} answers")  # fmt: skip

    with PeakMemory() as mem:
        emb_key = (
            "vqa-emb",
            enc.label,
            enc.image.location,
            enc.text.location,
            data_key,
            cfg.image_size,
            cfg.max_length,
        )
        fresh = emb_key not in memo  # else an earlier run of this process (compare) made the tables
        emb = _memo(memo, emb_key, lambda: _embed(cfg, enc, data, memo, progress, log))
        img, txt, row = emb["img"], emb["txt"], emb["text_row"]
        m_train = len(tr.images)
        train_pairs = Pairs(
            torch.as_tensor(tr.image_index),
            torch.tensor([row[q] for q in tr.questions]),
            torch.tensor([answer_id[a] for a in tr.answers]),
        )
        eval_pairs = Pairs(
            torch.as_tensor(ev.image_index + m_train),  # eval images follow the train images in the table
            torch.tensor([row[q] for q in ev.questions]),
            torch.tensor([answer_id.get(a, -1) for a in ev.answers]),
        )
        y_true = eval_pairs.labels.numpy()
        d_img, d_txt, k = img.shape[1], txt.shape[1], len(vocab)
        lr = cfg.lr if cfg.lr is not None else VQA_LR
        knobs = dict(epochs=cfg.epochs, lr=lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                     warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, progress=progress)  # fmt: skip

        def new_head(inputs: str) -> FusionHead:
            set_seed(cfg.seed)  # the head's initialisation depends on the seed only
            return FusionHead(d_img, d_txt, k, cfg.fusion, cfg.hidden, cfg.dropout, inputs)

        head = new_head("both")
        record["baseline_metrics"] = vqa_metrics(
            y_true, predict(head, img, txt, eval_pairs).numpy(), vocab, ev.types
        )
        stats = train_head(head, img, txt, train_pairs, desc=f"vqa-{cfg.fusion} s{cfg.seed}", **knobs)
        with Timer() as t_eval:
            y_pred = predict(head, img, txt, eval_pairs).numpy()
        record["metrics"] = vqa_metrics(y_true, y_pred, vocab, ev.types)

        # the honest context: the most frequent training answer, and the same recipe on one embedding only
        majority = answer_id[counts.most_common(1)[0][0]]
        baselines = {"majority": _short(vqa_metrics(y_true, np.full(len(ev), majority), vocab, ev.types))}
        baselines["majority"]["answer"] = vocab[majority]
        with Timer() as t_base:
            for inputs, name in (("question", "question_only"), ("image", "image_only")):
                h = new_head(inputs)
                train_head(h, img, txt, train_pairs, desc=name, **knobs)
                baselines[name] = _short(
                    vqa_metrics(y_true, predict(h, img, txt, eval_pairs).numpy(), vocab, ev.types)
                )
                baselines[name]["trainable"] = sum(p.numel() for p in h.parameters())
        record["vqa_baselines"] = baselines

    measured = measure(head)
    parts = head_params(d_img, d_txt, k, cfg.fusion, cfg.hidden)
    frozen = _frozen_parts(enc, metas, (d_img, d_txt), emb["tower_dims"])
    frozen_total = sum(p["params"] for p in frozen)
    predicted_head = sum(p["params"] for p in parts)
    measured["total"] += frozen_total  # measured on the encoders' real classes (meta device) + the live head
    record["params"] = compare_counts(
        measured,
        Prediction(
            predicted_head,
            predicted_head + frozen_total,
            parts + frozen,
            note="head by arithmetic on the widths; frozen encoders counted on the meta device",
        ),  # fmt: skip
    )
    record["time"] = {
        "train_s": round(stats.train_s, 3),
        "eval_s": round(t_eval.seconds, 4),
        "train_samples_per_s": round(stats.samples_per_s, 1),
        "encode_s": round(emb["encode_s"], 2) if fresh else 0.0,
        "train_steps": stats.steps,
        "final_loss": stats.final_loss,
        "lr": lr,
        "baselines_s": round(t_base.seconds, 2),
    }
    record["memory"] = {"peak_rss_mb": round(mem.peak_mb, 1)}
    record["vqa"] = {
        "encoders": {"image": enc.image.name, "text": enc.text.name, "label": enc.label, "dual": enc.dual},
        "dims": {"image": d_img, "text": d_txt},
        "fusion": cfg.fusion,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        "encoded": emb["encoded"] if fresh else "reused from an earlier run in this process",
        "dual": emb["dual"],
    }
    m, b = record["metrics"], baselines
    log(f"accuracy {m['accuracy']:.4f} (untrained {record['baseline_metrics']['accuracy']:.4f}; majority "
        f"{b['majority']['accuracy']:.4f}, question-only {b['question_only']['accuracy']:.4f}, image-only "
        f"{b['image_only']['accuracy']:.4f}), {measured['trainable']:,} trainable, train {stats.train_s:.1f}s")  # fmt: skip
    if cfg.save_model:
        record["artifacts"]["saved"] = _save(head, cfg, record, vocab)


def _save(head: FusionHead, cfg: RunConfig, record: dict, vocab: list[str]) -> str:
    """The trained head (safetensors) + what it needs: answers, widths, fusion, encoders."""
    from safetensors.torch import save_file

    target = Path(cfg.out) / record["run_id"] / "vqa-head"
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(target / "head.safetensors"))
    how = {
        "answers": vocab,
        "fusion": cfg.fusion,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        **record["vqa"]["dims"],
        "encoders": record["vqa"]["encoders"],
        "load": "peftlab.vqa_head.FusionHead(image, text, len(answers), fusion, hidden, dropout).load_state_dict("
        "safetensors.torch.load_file('head.safetensors'))",
    }
    (target / "peftlab.json").write_text(json.dumps(how, indent=2))
    return str(target)
