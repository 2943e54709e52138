"""The model card: README.md in the run folder and in its model / adapter folder, written from the run's record.

`write(run_dir, record)` writes both (run.py calls it for every successful run); `render(record, portable)` is the text:
a Hugging Face model-card YAML header (base_model, library_name, pipeline_tag, tags, datasets, metrics, model-index),
then what was trained, on what data, how well, at what cost, how to load it and the command that reproduces it.
"""

from __future__ import annotations

from pathlib import Path

from peftlab.errors import BadInput
from peftlab.record import Record

# packaged datasets that are the same data as a hub dataset (the card's `datasets`); the others have no hub copy
HUB_TWINS = {"fashion-mnist": "zalando-datasets/fashion_mnist"}
PIPELINE_TAG = {"text-classification": "text-classification", "image-classification": "image-classification",
                "vqa": "visual-question-answering"}  # fmt: skip
LORA_FAMILY = ("lora", "dora", "adalora", "loha", "lokr")
METRICS = (("accuracy", "accuracy", "accuracy"), ("macro_f1", "f1", "macro-F1"),
           ("macro_recall", "recall", "macro-recall"))  # (record key, model-index type, shown name)  # fmt: skip


def _portable(record: Record):
    from peftlab.artifacts import portable

    saved = record.artifacts.saved
    if not saved or not (Path(saved) / portable.MANIFEST).is_file() or record.task == "vqa":
        return None
    try:
        return portable.describe(saved)
    except BadInput:  # an unreadable manifest leaves the card without a loading section, never a failed run
        return None


def hub_dataset(record: Record) -> str | None:
    """The data's hub id where it has one: a hub dataset as given (without its :config), or a packaged set's twin."""
    name, source = str(record.dataset or ""), (record.data.source if record.data else None) or ""
    if source.startswith("hub "):  # data/load.py: "hub NAME (datasets.load_dataset)"
        return name.split(":", 1)[0]
    return HUB_TWINS.get(name)


def header(record: Record, p, export: dict | None = None) -> str:
    """The YAML header, through huggingface_hub's ModelCardData (what the hub validates)."""
    from huggingface_hub import EvalResult, ModelCardData

    task = record.task or ""
    dataset = hub_dataset(record)
    tags = ["peftlab", record.method or "", task]
    if record.method in LORA_FAMILY:
        tags.append("lora")
    if (p is not None and p.mean_pooled) or task == "vqa":
        tags.append("custom_code")  # the hub's tag for folders loaded with trust_remote_code=True
    results = []
    for key, kind, shown in METRICS:
        value = getattr(record.metrics, key, None) if record.metrics else None
        if value is not None:
            results.append(EvalResult(task_type=PIPELINE_TAG.get(task, task), dataset_type=dataset or str(record.dataset),
                                      dataset_name=str(record.dataset), dataset_split=record.metrics_split or "test",
                                      metric_type=kind, metric_value=round(float(value), 4), metric_name=shown))  # fmt: skip
    data = ModelCardData(
        base_model=p.base.hub_id if p is not None else None,
        library_name=_library(p, export),
        pipeline_tag=PIPELINE_TAG.get(task),
        tags=[t for t in tags if t],
        datasets=[dataset] if dataset else None,
        metrics=[kind for _, kind, _ in METRICS],
        model_name=_title(record),
        eval_results=results or None,
    )
    return data.to_yaml()


def _library(p, export: dict | None) -> str:
    if p is None:
        return "transformers"  # a VQA head: a transformers model whose class ships in the folder
    return "peft" if p.kind == "adapter" and export is None else "transformers"


def _title(record: Record) -> str:
    return f"{record.label} on {record.model} for {record.dataset}"


def _n(x) -> str:
    return "n/a" if x is None else f"{x:,}" if isinstance(x, int) else f"{x:.4f}"


def _method_section(record: Record, p) -> list[str]:
    from peftlab.config import knob_keys
    from peftlab.methods import REGISTRY

    method = REGISTRY.get(str(record.method))
    config = record.config or {}
    prefix = f"{method.prefix}_" if method else None
    knobs = {
        k[len(prefix) :]: v for k, v in config.items() if prefix and k.startswith(prefix) and k in knob_keys()
    }
    shown = (
        ", ".join(f"{k}={'default' if v is None else v}" for k, v in knobs.items())
        or "none (the method has no settings of its own)"
    )
    pr = record.params
    rows = [
        ("base model", _base_line(record, p)),
        ("method", f"`{record.method}`: {method.trains if method else ''}"),
        ("method settings", shown),
    ]
    if pr is not None:
        pct = f"{pr.trainable_pct:.3g}%" if pr.trainable_pct is not None else "n/a"
        agree = {True: "they agree", False: "they DIFFER", None: pr.note or "no prediction for this family"}[
            pr.match
        ]
        rows.append(("trainable parameters", f"{_n(pr.trainable)} of {_n(pr.total)} ({pct}), measured"))
        rows.append(("predicted from the architecture",
                     f"{_n(pr.predicted_trainable)} of {_n(pr.predicted_total)}: {agree}"))  # fmt: skip
    if p is not None:
        what = (f"PEFT adapter ({p.peft_type}) with the trained head" if p.kind == "adapter"
                else "the whole model (save_pretrained), head included")  # fmt: skip
        rows.append(("saved", f"`{p.folder}`: {what}"))
    lines = ["## What was trained", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if pr is not None and pr.breakdown:
        lines += ["", "<details><summary>parameters by component</summary>", "",
                  "| component | parameters | trainable | formula |", "|---|---:|---:|---|"]  # fmt: skip
        lines += [f"| {b.get('component')} | {_n(b.get('params'))} | {_n(b.get('trainable'))} | {b.get('formula', '')} |"
                  for b in pr.breakdown]  # fmt: skip
        lines += ["", "</details>"]
    return lines


def _base_line(record: Record, p) -> str:
    if p is None:
        vqa = (record.extra or {}).get("vqa") or {}
        enc = vqa.get("encoders") or {}
        if enc:
            return f"frozen encoders: image `{enc.get('image')}`, text `{enc.get('text')}`"
        return f"`{record.model}`"
    where = {
        "packaged": "packaged with peftlab",
        "local": "a local folder",
        "hub": "from the Hugging Face hub",
    }
    text = f"`{p.base_model}` ({where.get(p.base.kind, p.base.kind)}"
    if p.base.hub_id and p.base.hub_id != p.base_model:
        text += f"; the hub's [{p.base.hub_id}](https://huggingface.co/{p.base.hub_id})"
    text += f"), pooling: {p.pooling}"
    return text


def _data_section(record: Record) -> list[str]:
    d = record.data
    if d is None:
        return []
    full = d.full_sizes or {}
    sizes = f"{_n(d.train_size)} / {_n(d.validation_size)} / {_n(d.test_size)}"
    if full:
        sizes += f" (of {_n(full.get('train'))} / {_n(full.get('validation'))} / {_n(full.get('eval'))})"
    labels = ", ".join(map(str, d.label_names))
    lines = ["## Data", "", "| | |", "|---|---|", f"| dataset | `{record.dataset}` |", f"| source | {d.source} |",
             f"| labels ({d.num_labels}) | {labels} |", f"| train / validation / test | {sizes} |"]  # fmt: skip
    if d.notes:
        lines += ["", f"How the splits were made: {d.notes}."]
    return lines


def _results_section(record: Record) -> list[str]:
    m, b = record.metrics, record.baseline_metrics
    if m is None:
        return []
    split = record.metrics_split or "test"
    lines = [
        f"## Results ({split} split)",
        "",
        "| metric | after training | before training |",
        "|---|---:|---:|",
    ]
    for key, _, shown in METRICS:
        lines.append(f"| {shown} | {_n(getattr(m, key))} | {_n(getattr(b, key, None) if b else None)} |")
    vqa = (record.extra or {}).get("vqa_baselines")
    if vqa:
        lines += ["", "Baselines: " + "; ".join(f"{k.replace('_', '-')} {v.get('accuracy', 0):.4f}"
                                               for k, v in vqa.items())]  # fmt: skip
    lines += ["", "Before training = the same model with its freshly initialised head, evaluated as-is."]
    return lines


def _training_section(record: Record) -> list[str]:
    c, t, env = record.config or {}, record.time, record.env or {}
    rows = [("epochs / batch size / peak learning rate",
             f"{c.get('epochs')} / {c.get('batch_size')} / {c.get('lr')}"),
            ("weight decay / warm-up / gradient clipping",
             f"{c.get('weight_decay')} / {c.get('warmup_ratio')} / {c.get('max_grad_norm')}")]  # fmt: skip
    if t is not None:
        rows += [("optimiser steps / final loss", f"{t.train_steps} / {_n(t.final_loss)}"),
                 ("train time", f"{t.train_s:.1f} s ({t.train_samples_per_s or 0:.1f} samples/s)"),
                 ("eval time", f"{t.eval_s:.1f} s")]  # fmt: skip
    if record.memory is not None and record.memory.peak_rss_mb is not None:
        rows.append(("peak memory (RSS)", f"{record.memory.peak_rss_mb:,.0f} MiB"))
    rows.append(("hardware", f"{env.get('cpu')}" + (f"; GPU {env['gpu']}" if env.get("gpu") else "; no GPU")))
    soft = ", ".join(
        f"{k} {env[k]}" for k in ("peftlab", "torch", "transformers", "peft", "python") if env.get(k)
    )
    rows.append(
        ("software", soft + (f"; peftlab commit {env['git_commit'][:12]}" if env.get("git_commit") else ""))
    )
    rows.append(("run", f"`{record.run_id}`, {record.created_at}"))
    return ["## Training", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def _load_section(record: Record, p) -> list[str]:
    from peftlab.artifacts import portable

    run = record.artifacts.dir or "RUN"
    lines = ["## Use it"]
    if p is None:
        if record.task == "vqa" and record.artifacts.saved:
            lines += _vqa_load(record, run)
        else:
            lines += ["", "No model was saved (the run had --no-save-model)."]
        return lines
    lines += ["", "With transformers" + (" and peft" if p.kind == "adapter" else "") + " alone (no peftlab):",
              "", "```python", *portable.load_lines(p), "```"]  # fmt: skip
    lines += ["", _how_to_call(p)]
    lines += _why(p)
    if p.base.note:
        lines += [
            "",
            f"Base model: `{p.base.ref}` is {p.base.note}, or use `peftlab export` for a standalone folder.",
        ]
    flag = "--text 'some text'" if p.task == "text-classification" else "--image photo.png"
    lines += ["", "With peftlab:", "", "```bash", f"peftlab predict {run} {flag}",
              f"peftlab export {run} --out {Path(run).name}-export   # a merged standalone model for pipeline()",
              "```"]  # fmt: skip
    return lines


def _how_to_call(p) -> str:
    names = ", ".join(f"{i}: {n}" for i, n in enumerate(p.label_names))
    if p.task == "text-classification":
        call = ('`logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits` '
                f"(truncation at {p.max_length} tokens, as in training)")  # fmt: skip
    else:
        call = '`logits = model(**image_processor(images=images, return_tensors="pt")).logits`'
        if p.image_size:
            call += f" (the processor resizes to {p.image_size} px, as in training)"
    return f"Then {call}; the class is `logits.argmax(-1)`, in this order: {names}."


def _vqa_load(record: Record, run: str) -> list[str]:
    import json

    from peftlab.artifacts import portable

    saved = Path(record.artifacts.saved)
    try:
        how = json.loads((saved / portable.MANIFEST).read_text())
    except (OSError, ValueError):
        how = {}
    lines = []
    if (saved / "config.json").is_file():
        lines += ["", "With transformers alone (no peftlab):", "", "```python",
                  *portable.vqa_load_lines(str(saved)), "```", "",
                  "`model.answer(images, questions)` takes a PIL image and a question (or lists of them, paired one to "
                  "one, or one image with many questions) and gives `{\"label\": answer, \"probs\": {answer: p, ...}}`; "
                  "`model.logits(images, questions)` gives the (B, K) logits. `trust_remote_code=True` runs "
                  "`vqamodel.py`, shipped in this folder (torch + transformers only): the two frozen encoders embed the "
                  "image and the question as this run did, then the trained fusion head (`head.safetensors`) scores "
                  "the answers. No transformers class fuses two separate encoders, so the class ships with the head."]  # fmt: skip
        for kind, base in (how.get("bases") or {}).items():
            where = f"`{base['ref']}`"
            lines += ["", f"The {kind.replace('clip-', '')} encoder is read from {where}"
                      + (f", {base['note']}." if base.get("note") else ".")]  # fmt: skip
    lines += ["", "With peftlab:", "", "```bash",
              f"peftlab predict {run} --image photo.png --question 'what shape is in the image?'", "```"]  # fmt: skip
    return lines


def _why(p, exported: bool = False) -> list[str]:
    if p.extra.get("clip_tower") and not exported:
        return ["", f"The base `{p.base.ref}` is a bare CLIP vision tower; the run classified with transformers' "
                "`CLIPForImageClassification` around it (the tower's mean-pooled patch tokens, then a linear layer). "
                "`base/config.json` is that class's config (labels included, no weights); `key_mapping` reads the "
                "tower's weights into its `vision_model`, and the adapter restores the trained head."]  # fmt: skip
    if not p.mean_pooled:
        return []
    adapter = p.kind == "adapter" and not exported
    where = "`base/meanpool.py`" if adapter else "`meanpool.py`"
    return ["", f"`trust_remote_code=True` runs {where}, shipped in this folder (torch + transformers only): peftlab's "
            "mean-pooling classifier, a linear layer on the attention-masked mean of the encoder's last hidden states, "
            "the way sentence-transformers models are meant to be pooled. transformers has no sequence-classification "
            "class that pools a BERT-family encoder like this (BertForSequenceClassification classifies the [CLS] token "
            "through its pooler, which would give other logits), so the class ships with the model."
            + (" Its `base/` folder holds no weights: the encoder is read from "
               f"`{p.base.ref}` and the adapter restores the trained head. `AutoPeftModelForSequenceClassification` "
               f"would build the [CLS] classifier from `{p.base.ref}` instead (and refuse the adapter), so load the "
               "base as shown."
               if adapter else "")]  # fmt: skip


def _export_section(record: Record, p, export: dict) -> list[str]:
    sample = "'some text'" if p.task == "text-classification" else "'photo.png'"
    extra = ", truncation=True" if p.task == "text-classification" else ""
    how = ("the adapter merged into the weights (merge_and_unload)" if export["merged"]
           else "the run's trained weights")  # fmt: skip
    lines = ["## Use it", "", f"A standalone model: {how}, head included, {export['dtype']}; exported from run "
             f"`{record.run_id}` (its own card is README.md in the run folder).", "", "```python",
             "from transformers import pipeline", f"classify = {export['pipeline']}",
             f"classify({sample}{extra}, top_k={len(p.label_names)})   # every label with its probability", "```"]  # fmt: skip
    if p.task == "text-classification":
        lines += ["", f"`truncation=True` cuts texts at {p.max_length} tokens, as in training."]
    lines += _why(p, exported=True)
    return lines


def render(record: Record, p=None, export: dict | None = None) -> str:
    """The card for one successful run; `p` is its Portable (None: read from the saved folder, if any); `export`
    (export.py's summary) makes it the card of an exported folder."""
    from peftlab.config import command_line

    p = p if p is not None else _portable(record)
    m, b = record.metrics, record.baseline_metrics
    summary = f"`{record.model}` fine-tuned with **{record.label}** on `{record.dataset}` ({record.task}) by peftlab"
    if m is not None and m.accuracy is not None:
        summary += f": {record.metrics_split or 'test'} accuracy **{m.accuracy:.4f}**"
        if b is not None and b.accuracy is not None:
            summary += f" (before training {b.accuracy:.4f})"
    body = [f"# {_title(record)}", "", summary + ".", ""]
    body += (_export_section(record, p, export) if export else _load_section(record, p)) + [""]
    body += _method_section(record, p) + [""]
    body += _data_section(record) + [""]
    body += _results_section(record) + [""]
    body += _training_section(record) + [""]
    body += ["## Reproduce", "", "```bash", command_line(record.config or {}), "```", "",
             "Add `--out DIR` to choose where the run folder goes; every other setting that decides the result is "
             "in the line above (the rest are defaults of this peftlab version).", ""]  # fmt: skip
    return f"---\n{header(record, p, export)}\n---\n\n" + "\n".join(body)


def write(run_dir: str | Path, record: Record) -> list[Path]:
    """README.md in the run folder and in the saved model / adapter folder (replacing PEFT's empty template)."""
    text = render(record)
    targets = [Path(run_dir) / "README.md"]
    if record.artifacts.saved and Path(record.artifacts.saved).is_dir():
        targets.append(Path(record.artifacts.saved) / "README.md")
    for path in targets:
        path.write_text(text)
    return targets
