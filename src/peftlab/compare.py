"""A comparison grid: experiments (model x dataset) x methods x seeds, each run stored, then the report.

`peftlab compare` -> `run_compare(args)`; `peftlab demo` / `make demo` -> `run_demo(args)` on the packaged zoo.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from peftlab.config import FIELDS, RunConfig, coerce, from_dict, is_vqa_dataset, load_yaml, validate
from peftlab.errors import BadInput
from peftlab.store import Store

DEFAULT_METHODS = ["baseline", "head", "last-layer", "lora", "full"]
GRID_KEYS = {"models", "datasets", "methods", "seeds", "experiments", "fusions", "title"}

# The default comparison on the packaged zoo (`make demo`): subsets sized so that 2 experiments x 5 methods x 3 seeds
# finish in well under 15 minutes on 2 CPU cores; the report states these sizes.
DEMO_SUITE = {
    "title": "peftlab demo: five ways to adapt a pretrained model, packaged zoo, 3 seeds",
    "methods": DEFAULT_METHODS,
    "seeds": 3,
    "save_model": False,
    "experiments": [
        {"model": "minilm-l6", "dataset": "vader-tweets", "max_train_samples": 600, "max_eval_samples": 400,
         "epochs": 3, "batch_size": 32, "max_length": 64},
        {"model": "mobilenet-v2", "dataset": "fashion-mnist", "max_train_samples": 1000, "max_eval_samples": 500,
         "epochs": 3, "batch_size": 32, "image_size": 64},
    ],
}  # fmt: skip
QUICK_SUITE = {
    "title": "peftlab demo (quick)",
    "methods": ["baseline", "head", "lora"],
    "seeds": 2,
    "save_model": False,
    "experiments": [
        {"model": "minilm-l6", "dataset": "vader-tweets", "max_train_samples": 60, "max_eval_samples": 60,
         "epochs": 1, "batch_size": 16, "max_length": 32},
    ],
}  # fmt: skip


def _seeds(value) -> list[int]:
    if value is None:
        return [0]
    if isinstance(value, int):
        if value < 1:
            raise BadInput(f"--seeds {value}: give a number of seeds >= 1 or a comma-separated list")
        return list(range(value))
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise BadInput(
                f"--seeds {value!r}: give a number of seeds or a comma-separated list of integers"
            ) from None
        return _seeds(nums[0]) if len(nums) == 1 else nums
    return [int(v) for v in value]


def _list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def expand(suite: dict) -> list[RunConfig]:
    """Suite mapping -> the list of run configs, ordered experiment, method, seed (so shared work stays warm)."""
    common = {k: v for k, v in suite.items() if k not in GRID_KEYS and k != "method_settings"}
    for k in common:
        coerce(k.replace("-", "_"), common[k])  # unknown settings fail here, naming the key
    experiments = suite.get("experiments")
    if not experiments:
        models, datasets = _list(suite.get("models")), _list(suite.get("datasets"))
        if not models and common.get("task") != "vqa":
            raise BadInput(
                "compare: no models; give --models a,b or a suite file with `models:` or `experiments:`"
            )
        if not datasets:
            raise BadInput(
                "compare: no datasets; give --datasets a,b or a suite file with `datasets:` or `experiments:`"
            )
        experiments = [{"model": m, "dataset": d} for d in datasets for m in (models or [""])]
    methods = _list(suite.get("methods")) or DEFAULT_METHODS
    seeds = _seeds(suite.get("seeds"))
    per_method = suite.get("method_settings") or {}
    runs = []
    for exp in experiments:
        if not isinstance(exp, dict):
            raise BadInput(f"compare: each entry of `experiments` must be a mapping of settings, got {exp!r}")
        base = {**common, **exp}
        is_vqa = base.get("task") == "vqa" or any(
            base.get(k) for k in ("image_encoder", "text_encoder", "encoder")
        )
        if is_vqa or is_vqa_dataset(str(base.get("dataset", ""))):
            fusions = _list(suite.get("fusions")) or [base.get("fusion") or "concat"]
            variants = [{"task": "vqa", "fusion": f, "method": f"vqa-{f}"} for f in fusions]
        else:
            variants = [{"method": m, **per_method.get(m, {})} for m in methods]
        for variant in variants:
            for seed in seeds:
                cfg = from_dict({**base, **variant, "seed": seed})
                runs.append(validate(cfg))
    return runs


def suite_from_args(args) -> dict:
    suite = load_yaml(args.config) if getattr(args, "config", None) else {}
    for key in ("models", "datasets", "methods", "seeds", "fusions"):
        value = getattr(args, key, None)
        if value is not None:
            suite[key] = value
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            suite[name] = coerce(name, value)
    return suite


def run_suite(
    suite: dict, out: Path, *, resume: bool, progress: bool = True, json_mode: bool = False
) -> dict:
    from peftlab.report import leaderboard_text, write_report
    from peftlab.run import run_experiment

    out.mkdir(parents=True, exist_ok=True)
    suite = {**suite, "out": str(out)}
    store_path = suite.get("store") or str(out / "peftlab.db")
    suite["store"] = store_path
    runs = expand(suite)
    store = Store(store_path)
    memo: dict = {}  # shared across runs: data, encodings, frozen-prefix caches (keyed so nothing leaks across models)
    done = new = failed = skipped = 0
    started = time.perf_counter()
    bar = tqdm(
        total=len(runs), desc="comparison", unit="run", file=sys.stderr, disable=not progress, position=0
    )
    interrupted = False
    try:
        for cfg in runs:
            bar.set_postfix_str(f"{Path(cfg.model or cfg.encoder or 'vqa').name} {cfg.method} s{cfg.seed}")
            if resume and store.succeeded(cfg.identity_hash()):
                skipped += 1
            else:
                try:
                    run_experiment(cfg, store, memo=memo, progress=progress)
                    new += 1
                except BadInput:
                    raise
                except KeyboardInterrupt:
                    interrupted = True
                    raise
                except Exception as e:  # already stored as failed; the grid goes on
                    failed += 1
                    print(f"[peftlab] run failed and was stored: {type(e).__name__}: {e}", file=sys.stderr)
            done += 1
            bar.update(1)
    finally:
        bar.close()
        if interrupted:
            print(
                "[peftlab] interrupted: finished runs are stored; `--resume` completes the grid",
                file=sys.stderr,
            )
    records = store.records()
    report = write_report(records, out, title=suite.get("title") or "peftlab comparison")
    board = leaderboard_text(report["summary"])
    print(board, file=sys.stderr if json_mode else sys.stdout)
    print(f"report: {report['report']}", file=sys.stderr if json_mode else sys.stdout)
    return {
        "runs_total": len(runs),
        "runs_new": new,
        "runs_failed": failed,
        "runs_skipped": skipped,
        "wall_s": round(time.perf_counter() - started, 1),
        "store": store_path,
        "report": report["report"],
        "summary": report["summary"],
    }


def run_compare(args) -> dict:
    suite = suite_from_args(args)
    out = Path(suite.pop("out", None) or "peftlab-compare")
    return run_suite(suite, out, resume=args.resume, progress=not args.quiet, json_mode=args.json)


def run_demo(args) -> int:
    suite = dict(QUICK_SUITE if args.quick else DEMO_SUITE)
    out = Path(args.out)
    store = out / "peftlab.db"
    if store.exists() and not args.resume:  # a fresh demo each time; the previous one is kept beside it
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = Path(str(store) + suffix)
            if old.exists():
                old.rename(out / f"peftlab-{stamp}.db{suffix}")
        print(f"[peftlab] previous demo store kept as {out / f'peftlab-{stamp}.db'}", file=sys.stderr)
    result = run_suite(suite, out, resume=args.resume)
    print(f"{result['runs_new']} new runs ({result['runs_failed']} failed) in {result['wall_s']:.0f}s")
    return 0 if result["runs_failed"] == 0 else 1
