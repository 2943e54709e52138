"""Speed benchmark: the plain HF recipe (Trainer + PEFT + DataCollatorWithPadding) against peftlab on the same work.

`make bench` = `python bench/speed.py --out bench-out`: per method, train samples/s, accuracy and peak memory of both,
peftlab's FLOP/s as a share of this machine's fp32 matmul peak; medians over --repeats (seeds 0..R-1); bench.md + JSON.

Every run is its own process (`--worker plain|peftlab`), so peak RSS (ru_maxrss of that child) and thread pools are
its own; the two recipes alternate within each repeat so drifting load from other work falls on both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = ["lora", "full", "head", "last-layer", "dora", "ia3"]
MODEL, DATASET = "minilm-l6", "vader-tweets"
LAST_BLOCK = (
    "encoder.encoder.layer.5."  # minilm-l6 as peftlab loads it: meanpool wrapper -> BertModel -> 6 layers
)
LR = {
    "full": 5e-5,
    "last-layer": 2e-4,
    "lora": 5e-4,
    "head": 2e-3,
    "dora": 5e-4,
    "ia3": 3e-3,
}  # peftlab's defaults, used by both recipes


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out", help="folder for bench.md and results.json")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ",".join(METHODS))
    p.add_argument("--repeats", type=int, default=3, help="runs per recipe and method (seeds 0..R-1)")
    p.add_argument("--train-samples", type=int, default=600, help="stratified vader-tweets training subset")
    p.add_argument("--eval-samples", type=int, default=400, help="stratified evaluation subset")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64, help="tokens per text at most (both recipes)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in OUT/runs.jsonl made with these settings",
    )
    p.add_argument("--worker", choices=["plain", "peftlab", "flops"], help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


# --- the plain recipe, as the Hugging Face docs write it -------------------------------------------------------


def plain_worker(a: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from peft import IA3Config, LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from peftlab.data import load_data
    from peftlab.models import load_model

    torch.set_num_threads(_threads())
    data = load_data(DATASET, max_train_samples=a.train_samples, max_eval_samples=a.eval_samples)
    set_seed(a.seed)
    loaded = load_model(
        MODEL, data.task, data.label_names
    )  # the same mean-pooled MiniLM and head init as peftlab
    model, tokenizer = loaded.model, loaded.processor

    if a.method in ("lora", "dora"):
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=8,
            lora_alpha=16,
            lora_dropout=0.1,
            target_modules=["query", "value"],
            use_dora=a.method == "dora",
        )
        model = get_peft_model(model, config)  # SEQ_CLS trains and saves the classifier too
    elif a.method == "ia3":
        # PEFT's own BERT defaults, named explicitly: the mean-pooling wrapper's model_type is not in PEFT's table
        config = IA3Config(task_type=TaskType.SEQ_CLS, target_modules=["key", "value", "output.dense"],
                           feedforward_modules=["output.dense"])  # fmt: skip
        model = get_peft_model(model, config)
    elif a.method == "head":
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("classifier.")
    elif a.method == "last-layer":
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith(("classifier.", LAST_BLOCK))

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=a.max_length)

    train_ds = Dataset.from_dict({"text": list(data.train.inputs), "label": data.train.labels.tolist()})
    eval_ds = Dataset.from_dict({"text": list(data.eval.inputs), "label": data.eval.labels.tolist()})
    train_ds = train_ds.map(tokenize, batched=True)
    eval_ds = eval_ds.map(tokenize, batched=True)

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=a.batch_size,
            per_device_eval_batch_size=64,
            num_train_epochs=a.epochs,
            learning_rate=LR[a.method],
            weight_decay=0.01,  # peftlab's default, so both optimise the same objective
            warmup_steps=0.1,  # a share of the steps, as peftlab's warmup_ratio
            seed=a.seed,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        pred = trainer.predict(eval_ds)
    accuracy = float(np.mean(pred.predictions.argmax(-1) == data.eval.labels))
    samples = len(train_ds) * a.epochs
    return {"train_s": train_s, "samples": samples, "samples_per_s": samples / train_s, "accuracy": accuracy}


# --- peftlab ----------------------------------------------------------------------------------------------------


def _run_config(a: argparse.Namespace, out: str):
    from peftlab import config

    return config.load(
        dict(model=MODEL, dataset=DATASET, method=a.method, seed=a.seed, epochs=a.epochs, batch_size=a.batch_size,
             max_train_samples=a.train_samples, max_eval_samples=a.eval_samples, max_length=a.max_length, out=out,
             save_model=False)
    )  # fmt: skip


def peftlab_worker(a: argparse.Namespace) -> dict:
    from peftlab.run import run_experiment
    from peftlab.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _run_config(a, tmp)
        rec = run_experiment(cfg, Store(Path(tmp) / "bench.db"), memo={}, progress=False)
    t = rec.time
    return {
        "train_s": t.train_s,
        "samples": t.train_samples_per_s * t.train_s,
        "samples_per_s": t.train_samples_per_s,
        "accuracy": rec.accuracy,
        "prefix_cache": t.extra.get("prefix_cache"),
        "peak_rss_mb_in_run": rec.memory.peak_rss_mb,
    }


def _fit_per_sample(points: dict[int, float], batch: int) -> tuple[float, float, float]:
    """FLOPs of a batch of `batch` samples at lengths T -> per-sample c0 + c1 T + c2 T^2 (exact for a transformer:
    linear layers grow with T, attention with T^2), solved from three lengths."""
    import numpy as np

    ts = sorted(points)
    a = np.array([[1.0, t, t * t] for t in ts])
    y = np.array([points[t] / batch for t in ts])
    return tuple(np.linalg.solve(a, y))


def flops_worker(a: argparse.Namespace) -> dict:
    """FLOPs peftlab executes in one run (training cache pass + every optimiser step), per seed: torch's
    FlopCounterMode on real steps at three lengths, fitted per sample, summed over the run's own batch shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import set_seed

    from peftlab.data import load_data
    from peftlab.methods import REGISTRY, Context
    from peftlab.models import load_model
    from peftlab.train import encode
    from peftlab.train.cache import plan_prefix, prefix_inputs, skip_prefix
    from peftlab.train.encode import Encoded, eval_batches, train_batches

    torch.set_num_threads(_threads())
    cfg = _run_config(a, tempfile.gettempdir())
    data = load_data(DATASET, max_train_samples=a.train_samples, max_eval_samples=a.eval_samples)
    set_seed(0)
    loaded = load_model(MODEL, data.task, data.label_names)
    model = REGISTRY[cfg.method].prepare(loaded.model, loaded.anatomy, cfg.knobs, Context(cfg.task))
    enc_train = encode(data.train, loaded.processor, data.task, max_length=a.max_length)
    enc_eval = encode(data.eval, loaded.processor, data.task, max_length=a.max_length)
    plan = plan_prefix(model, loaded.anatomy, enc_eval)

    def synthetic(batch: int, length: int) -> Encoded:
        g = torch.Generator().manual_seed(length)
        ids = [torch.randint(1000, 20000, (length,), generator=g) for _ in range(batch)]
        return Encoded(data.task, torch.zeros(batch, dtype=torch.long), input_ids=ids)

    def step_flops(enc: Encoded) -> int:
        every = list(range(len(enc)))
        if plan is not None:  # the cache is filled outside the counter: capture_flops counts that pass
            cached, _ = prefix_inputs({}, plan, enc, budget_mb=1e6, batch_size=len(enc))
        model.train()
        with FlopCounterMode(display=False) as counter:
            if plan is None:
                model(**enc.collate(every)).loss.backward()
            else:
                with skip_prefix(plan) as fwd:
                    fwd.loss(model, cached.collate(every)).backward()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    def capture_flops(enc: Encoded) -> int:
        with FlopCounterMode(display=False) as counter:
            prefix_inputs({}, plan, enc, budget_mb=1e6, batch_size=len(enc))
        return counter.get_total_flops()

    lengths, probe_batch = (8, 16, 32), 2
    step_fit = _fit_per_sample({t: step_flops(synthetic(probe_batch, t)) for t in lengths}, probe_batch)
    if plan is not None:
        cap_fit = _fit_per_sample({t: capture_flops(synthetic(probe_batch, t)) for t in lengths}, probe_batch)
    lens = enc_train.lengths()

    def total(fit, batches) -> float:
        c0, c1, c2 = fit
        return sum(len(b) * (c0 + c1 * t + c2 * t * t) for b in batches for t in [int(lens[b].max())])

    per_seed = {}
    steps = math.ceil(math.ceil(len(enc_train) / a.batch_size) * a.epochs)
    for seed in range(a.repeats):
        g, batches = torch.Generator().manual_seed(seed), []
        while len(batches) < steps:  # the loop's own batch order: same generator, same grouping
            batches += train_batches(enc_train, a.batch_size, g, True)
        flops = total(step_fit, batches[:steps])
        if plan is not None:
            flops += total(
                cap_fit, eval_batches(enc_train, cfg.eval_batch_size)
            )  # the training cache's one pass
        per_seed[seed] = flops
    return {"flops_per_run": per_seed, "cached_from_block": plan.block if plan else None}


# --- orchestration ----------------------------------------------------------------------------------------------


def matmul_peak_flops(n: int = 3072, reps: int = 12) -> dict:
    """fp32 (n x n) @ (n x n) on all torch threads: 2 n^3 FLOPs per product; best and median of reps."""
    import torch

    torch.set_num_threads(_threads())
    x, y = torch.randn(n, n), torch.randn(n, n)
    torch.mm(x, y)  # warm-up
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(x, y)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return {
        "best": max(rates),
        "median": statistics.median(rates),
        "n": n,
        "threads": torch.get_num_threads(),
    }


def _child(a: argparse.Namespace, worker: str, method: str, seed: int) -> dict:
    """Run one worker in a fresh process; its JSON result plus that child's own peak RSS (wait4's ru_maxrss)."""
    with tempfile.TemporaryDirectory() as tmp:
        result, log = Path(tmp) / "result.json", Path(tmp) / "stderr.txt"
        cmd = [sys.executable, __file__, "--worker", worker, "--method", method, "--seed", str(seed),
               "--result", str(result), "--train-samples", str(a.train_samples), "--eval-samples",
               str(a.eval_samples), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
               "--max-length", str(a.max_length), "--repeats", str(a.repeats)]  # fmt: skip
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            out = json.loads(result.read_text())
        else:
            out = {"error": log.read_text()[-2000:]}
    out["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB -> MiB
    return out


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import transformers

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": _threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict], flops: dict, peak: float) -> list[dict]:
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method and "error" not in r]
        plain = [r for r in mine if r["way"] == "plain"]
        ours = [r for r in mine if r["way"] == "peftlab"]
        fl = flops.get(method, {}).get("flops_per_run", {})
        rates = [fl[str(r["seed"])] / r["train_s"] for r in ours if str(r["seed"]) in fl]
        row = {
            "method": method,
            "plain_sps": _median([r["samples_per_s"] for r in plain]),
            "peftlab_sps": _median([r["samples_per_s"] for r in ours]),
            "plain_acc": [r["accuracy"] for r in plain],
            "peftlab_acc": [r["accuracy"] for r in ours],
            "plain_rss_mb": _median([r["peak_rss_mb"] for r in plain]),
            "peftlab_rss_mb": _median([r["peak_rss_mb"] for r in ours]),
            "peftlab_gflops": _median(rates) / 1e9 if rates else None,
            "peak_fraction": _median(rates) / peak if rates else None,
        }
        row["ratio"] = (
            row["peftlab_sps"] / row["plain_sps"] if row["plain_sps"] and row["peftlab_sps"] else None
        )
        # best run of each: the least disturbed by other work on a shared machine (a check on the medians)
        best = [max((r["samples_per_s"] for r in rs), default=None) for rs in (plain, ours)]
        row["best_ratio"] = best[1] / best[0] if best[0] and best[1] else None
        rows.append(row)
    return rows


def _acc(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown(rows: list[dict], info: dict) -> str:
    a, m, pk = info["settings"], info["machine"], info["peak"]
    lines = [
        f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['torch_threads']} torch threads; torch "
        f"{m['torch']}, transformers {m['transformers']}, Python {m['python']}.",
        f"fp32 matmul peak ({pk['start']['n']}^3, all threads): best {pk['best'] / 1e9:.0f} GFLOP/s "
        f"(medians {pk['start']['median'] / 1e9:.0f} at start, {pk['end']['median'] / 1e9:.0f} at end).",
        f"Load average (1 min) at start {info['load'][0]:.2f}, at end {info['load'][1]:.2f}; wall "
        f"{info['wall_s'] / 60:.1f} min.",
        f"Work: {MODEL} on {DATASET}, {a['train_samples']} train / {a['eval_samples']} eval samples, "
        f"{a['epochs']:g} epochs, batch {a['batch_size']}, max length {a['max_length']}, learning rate per method "
        f"{', '.join(f'{k} {v:g}' for k, v in LR.items())}; medians of {a['repeats']} runs (seeds "
        f"0..{a['repeats'] - 1}); accuracy as median (min-max over seeds).",
        "",
        "| method | plain samples/s | peftlab samples/s | ratio | plain accuracy | peftlab accuracy "
        "| plain peak RSS MiB | peftlab peak RSS MiB | peftlab GFLOP/s | share of fp32 peak | ratio of best runs |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_num(r['plain_sps'], '.1f')} | {_num(r['peftlab_sps'], '.1f')} | "
            f"{_num(r['ratio'], '.2f')}x | {_acc(r['plain_acc'])} | {_acc(r['peftlab_acc'])} | "
            f"{_num(r['plain_rss_mb'], '.0f')} | {_num(r['peftlab_rss_mb'], '.0f')} | "
            f"{_num(r['peftlab_gflops'], '.1f')} | {_num(r['peak_fraction'], '.1%')} | {_num(r['best_ratio'], '.2f')}x |"
        )
    return "\n".join(lines) + "\n"


def _settings(a: argparse.Namespace) -> dict:
    return {
        k: v for k, v in vars(a).items() if k not in ("worker", "method", "seed", "result", "resume", "out")
    }


def main(argv=None) -> int:
    a = parse(argv)
    if a.worker:
        work = {"plain": plain_worker, "peftlab": peftlab_worker, "flops": flops_worker}[a.worker]
        Path(a.result).write_text(json.dumps(work(a)))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    peak_start = matmul_peak_flops()
    # every finished run is appended to runs.jsonl at once, so an interrupted benchmark can go on with --resume
    log = out / "runs.jsonl"
    settings = _settings(a)
    kept = [json.loads(line) for line in log.read_text().splitlines()] if a.resume and log.exists() else []
    runs = [r for r in kept if r.get("settings") == settings and "error" not in r]
    log.write_text("".join(json.dumps(r) + "\n" for r in runs))
    for seed in range(a.repeats):
        for method in methods:
            ways = ("plain", "peftlab") if (seed + methods.index(method)) % 2 == 0 else ("peftlab", "plain")
            for way in ways:
                if any((r["way"], r["method"], r["seed"]) == (way, method, seed) for r in runs):
                    continue
                r = _child(a, way, method, seed)
                r.update(way=way, method=method, seed=seed, load=os.getloadavg()[0], settings=settings)
                runs.append(r)
                with log.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"{method:10s} {way:8s} seed {seed}: " + (
                    f"{r['samples_per_s']:.1f} samples/s, accuracy {r['accuracy']:.3f}, peak {r['peak_rss_mb']:.0f} MiB"
                    if "error" not in r else "FAILED " + r["error"].strip().splitlines()[-1]
                ), flush=True)  # fmt: skip
    flops = {m: _child(a, "flops", m, 0) for m in methods}
    peak_end = matmul_peak_flops()
    peak = max(peak_start["best"], peak_end["best"])
    info = {
        "settings": settings,
        "machine": machine(),
        "peak": {"best": peak, "start": peak_start, "end": peak_end},
        "load": [load0, os.getloadavg()[0]],
        "wall_s": time.perf_counter() - started,
    }
    rows = summarise(runs, flops, peak)
    (out / "results.json").write_text(
        json.dumps({"info": info, "rows": rows, "runs": runs, "flops": flops}, indent=2)
    )
    table = markdown(rows, info)
    (out / "bench.md").write_text("# peftlab vs the plain HF recipe\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
