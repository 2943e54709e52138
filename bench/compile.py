"""torch.compile benchmark: peftlab's training loop with the model compiled against the same loop eager, per method.

`python bench/compile.py --out bench-out` -> bench-out/compile.md + compile.json: for LoRA and full fine-tuning of
minilm-l6 on vader-tweets (the demo's sizes), the wall time of `train()` eager and compiled — compile time included,
since a run pays it — and the steady-state seconds per step of each after warm-up. Eager is today's loop (with its
fast hashed dropout); compiled uses torch's dropout, because inductor cannot compile the hashed one. Each (method, mode, repeat) is a
fresh process (compile caches and thread pools are its own); eager and compiled alternate within each repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SRC = Path(__file__).resolve().parents[1] / "src"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out")
    p.add_argument("--methods", default="lora,full")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-samples", type=int, default=600)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--worker", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(a: argparse.Namespace) -> dict:
    """One training run in this process: peftlab's train() with model(**batch).loss, or the compiled model's."""
    import torch

    from peftlab import config
    from peftlab.data import load_data
    from peftlab.methods import REGISTRY, Context
    from peftlab.models import load_model
    from peftlab.train import encode, train

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = config.load({"model": "minilm-l6", "dataset": "vader-tweets", "method": a.method,
                       "max_train_samples": a.train_samples, "max_length": a.max_length})  # fmt: skip
    data = load_data(cfg.dataset, max_train_samples=a.train_samples, max_eval_samples=50)
    loaded = load_model(cfg.model, data.task, data.label_names, pooling=cfg.pooling)
    enc = encode(data.train, loaded.processor, cfg.task, max_length=a.max_length)
    steps = int(len(enc) / a.batch_size * a.epochs)
    model = REGISTRY[a.method].prepare(loaded.model, loaded.anatomy, cfg.knobs, Context(cfg.task, steps))
    step_times: list[float] = []
    last = [time.perf_counter()]

    def after_step(_m, _step) -> None:  # wall seconds of each optimiser step
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    forward = None
    if a.worker == "compiled":
        import contextlib

        import peftlab.train.loop as loop

        # inductor cannot generate the 64-bit hash constants of peftlab's fast dropout (train/dropout.py), so the
        # compiled model keeps torch's own dropout, which inductor fuses; eager is today's loop, fast dropout and all
        loop.fast_dropout = lambda _model: contextlib.nullcontext()
        compiled = torch.compile(model)
        forward = lambda _m, batch: compiled(**batch).loss  # noqa: E731 (same parameters, compiled graph)
    last[0] = time.perf_counter()
    stats = train(model, enc, lr=cfg.lr, epochs=a.epochs, batch_size=a.batch_size, seed=0, progress=False,
                  forward=forward, after_step=after_step)  # fmt: skip
    steady = step_times[len(step_times) // 2 :]  # the second half: compiled graphs (and recompiles) are done
    return {"method": a.method, "mode": a.worker, "train_s": round(stats.train_s, 2), "steps": stats.steps,
            "first_step_s": round(step_times[0], 2), "steady_step_s": round(statistics.median(steady), 4),
            "final_loss": round(stats.final_loss, 4)}  # fmt: skip


def main(argv=None) -> int:
    a = parse(argv)
    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
    }
    results = []
    for r in range(a.repeats):
        for method in a.methods.split(","):
            for mode in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
                cmd = [sys.executable, __file__, "--worker", mode, "--method", method, "--train-samples",
                       str(a.train_samples), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
                       "--max-length", str(a.max_length)]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise SystemExit(f"{method} {mode} failed: {done.stderr[-2000:]}")
                res = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"repeat {r}: {method} {mode}: {res}", file=sys.stderr)
                results.append(res)
    lines = ["| method | eager train s | compiled train s (compile included) | ratio | eager s/step | compiled s/step "
             "(steady) | compiled first step s |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    summary = {}
    for method in a.methods.split(","):
        mine = [x for x in results if x["method"] == method]
        pick = lambda mode, key, mine=mine: statistics.median(x[key] for x in mine if x["mode"] == mode)  # noqa: E731
        e, c = pick("eager", "train_s"), pick("compiled", "train_s")
        summary[method] = {"eager_train_s": e, "compiled_train_s": c, "speedup": round(e / c, 3)}
        lines.append(f"| {method} | {e:.1f} | {c:.1f} | {e / c:.2f}x | {pick('eager', 'steady_step_s'):.3f} | "
                     f"{pick('compiled', 'steady_step_s'):.3f} | {pick('compiled', 'first_step_s'):.1f} |")  # fmt: skip
    (out / "compile.json").write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    (out / "compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
