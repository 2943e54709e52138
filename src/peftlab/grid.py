"""A comparison grid: experiments (model x dataset) x methods x seeds, each run stored, then the report.

`peftlab compare` -> `run_compare(args)`; `peftlab demo` / `make demo` -> `run_demo(args)` on the packaged zoo.
"""

from __future__ import annotations

import difflib
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from peftlab import config, disk
from peftlab.config import FIELDS, RunConfig, coerce_setting, identity_hash, load_yaml
from peftlab.errors import BadInput, Stopped
from peftlab.store import Store

DEFAULT_METHODS = ["baseline", "head", "last-layer", "lora", "full"]
GRID_KEYS = {
    "models",
    "datasets",
    "methods",
    "seeds",
    "experiments",
    "fusions",
    "title",
    "method_settings",
    "sweep",
    "tune",
}

# The default comparison on the packaged zoo (`make demo`): subsets sized so that (7 text + 5 image methods) x 3 seeds
# finish in under 10 minutes on 2 CPU cores; the report states these sizes.
DEMO_SUITE = {
    "title": "peftlab demo: ways to adapt a pretrained model (7 on text, 5 on images), packaged zoo, 3 seeds",
    "methods": DEFAULT_METHODS,
    "seeds": 3,
    "save_model": False,
    "experiments": [
        {"model": "minilm-l6", "dataset": "vader-tweets", "max_train_samples": 600, "max_eval_samples": 400,
         "epochs": 3, "batch_size": 32, "max_length": 64,
         "methods": ["baseline", "head", "bitfit", "ia3", "lora", "last-layer", "full"]},
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
        if not parts:
            raise BadInput(
                f"--seeds {value!r}: the list is empty; give a number of seeds or a list of integers"
            )
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise BadInput(
                f"--seeds {value!r}: give a number of seeds or a comma-separated list of integers"
            ) from None
        return _seeds(nums[0]) if len(nums) == 1 else nums
    return [int(v) for v in value]


def _list(value, key: str) -> list | None:
    """A grid axis: None = not given; "a,b" or a YAML list -> its entries; an axis given empty is bad input."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v not in ("", None)]
    if not items:
        raise BadInput(f"--{key} {value!r}: the list is empty; name at least one, or leave the flag out")
    return items


def method_variant(entry, per_method: dict) -> dict:
    """One entry of `methods` -> the settings of that variant, knobs as flat keys.

    "lora" | "lora:r=4:alpha=8" (command line) | {method: lora, r: 4, label: "lora r4"} (YAML). Knob names may be
    given bare (r) or with the method's prefix (lora_r); run settings (lr, epochs, label, ...) apply to this variant.
    """
    from peftlab.methods import REGISTRY

    if isinstance(entry, str):
        name, *pairs = [p.strip() for p in entry.split(":")]
        entry = {"method": name}
        for pair in pairs:
            if "=" not in pair:
                raise BadInput(f"--methods {name}:{pair}: write knobs as name=value, e.g. lora:r=4:alpha=8")
            k, v = pair.split("=", 1)
            entry[k.strip()] = v.strip()
    if not isinstance(entry, dict) or not entry.get("method"):
        raise BadInput(
            f"compare: a `methods` entry must be a name or a mapping with `method:`, got {entry!r}"
        )
    name = str(entry["method"])
    if name not in REGISTRY:
        raise BadInput(f"--methods {name!r}: unknown method; choose from {', '.join(REGISTRY)}")
    prefix = REGISTRY[name].prefix
    out = {"method": name, **(per_method.get(name) or {})}
    for k, v in entry.items():
        key = str(k).replace("-", "_")
        if key == "method":
            continue
        out[key if key in FIELDS or key.startswith(prefix + "_") else f"{prefix}_{key}"] = v
    return out


def parse_sweep(value) -> tuple[str, list]:
    """--sweep lora-r=4,8,16 | YAML {lora_r: [4, 8, 16]} -> ("lora_r", ["4", "8", "16"]): one knob, its values."""
    from peftlab.config import knob_keys

    if isinstance(value, dict):
        if len(value) != 1:
            raise BadInput(
                f"sweep: name exactly one knob and its values, e.g. {{lora_r: [4, 8, 16]}}; got {value!r}"
            )
        (key, values), = value.items()  # fmt: skip
        values = _list(values if not isinstance(values, (int, float)) else [values], "sweep")
    else:
        key, sep, rest = str(value).partition("=")
        if not sep:
            raise BadInput(f"--sweep {value!r}: write KNOB=V1,V2,..., e.g. --sweep lora-r=4,8,16,32")
        values = _list(rest, "sweep")
    key = key.strip().removeprefix("--").replace("-", "_")
    if key not in knob_keys():
        close = difflib.get_close_matches(key, list(knob_keys()), n=2, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise BadInput(
            f"--sweep {value!r}: {key!r} is no method's knob{hint}; `peftlab ls methods` lists them"
        )
    return key, values


def _swept(variants: list[dict], sweep) -> list[dict]:
    """Each variant of the swept knob's method becomes one variant per value (its other settings kept)."""
    from peftlab.config import knob_keys
    from peftlab.methods import REGISTRY

    key, values = parse_sweep(sweep)
    prefix = knob_keys()[key][0]
    out = []
    for v in variants:
        if REGISTRY[v["method"]].prefix == prefix:
            out += [{**v, key: value} for value in values]
        else:
            out.append(v)
    return out


def _variants(base: dict, suite: dict, task: str) -> list[dict]:
    """The method variants one experiment runs: those of `methods` that support its task (the others are skipped
    with a note), each crossed with `fusions` for VQA."""
    from peftlab.methods import REGISTRY
    from peftlab.tasks import TASKS

    given = _list(suite.get("methods"), "methods")
    sweep = suite.get("sweep")
    if sweep is not None and not given:  # a sweep alone compares the swept method's settings
        from peftlab.config import knob_keys

        key = parse_sweep(sweep)[0]
        given = [next(m.name for m in REGISTRY.values() if m.prefix == knob_keys()[key][0])]
    entries = given or (DEFAULT_METHODS if task != "vqa" else [TASKS[task].default_method])
    variants = [method_variant(e, suite.get("method_settings") or {}) for e in entries]
    if sweep is not None:
        variants = _swept(variants, sweep)
    runnable = [v for v in variants if task in REGISTRY[v["method"]].tasks]
    skipped = sorted({v["method"] for v in variants} - {v["method"] for v in runnable})
    if skipped and given:
        print(f"[peftlab] {base.get('dataset')}: {', '.join(skipped)} skipped (not available for {task})",
              file=sys.stderr)  # fmt: skip
    if not runnable:
        raise BadInput(f"compare: none of the methods runs on {task} ({base.get('dataset')}); "
                       f"choose from {', '.join(m.name for m in REGISTRY.values() if task in m.tasks)}")  # fmt: skip
    fusions = _list(suite.get("fusions"), "fusions") if task == "vqa" else None
    return [{**v, "fusion": f} for v in runnable for f in fusions] if fusions else runnable


def expand(suite: dict) -> list[RunConfig]:
    """Suite mapping -> the validated run configs, ordered experiment, variant, seed (so shared work stays warm)."""
    common = {k: v for k, v in suite.items() if k not in GRID_KEYS}
    for k in common:
        coerce_setting(k, common[k])  # unknown settings fail here, naming the key
    experiments = suite.get("experiments")
    if experiments is not None and not experiments:
        raise BadInput("compare: `experiments` is empty; list at least one {model, dataset} mapping")
    if not experiments:
        models = _list(suite.get("models"), "models")
        datasets = _list(suite.get("datasets"), "datasets")
        if (
            not models
            and common.get("task") != "vqa"
            and not any(common.get(k) for k in ("image_encoder", "text_encoder", "encoder"))
        ):
            raise BadInput(
                "compare: no models; give --models a,b or a suite file with `models:` or `experiments:`"
            )
        if not datasets:
            raise BadInput(
                "compare: no datasets; give --datasets a,b or a suite file with `datasets:` or `experiments:`"
            )
        experiments = [{"model": m, "dataset": d} for d in datasets for m in (models or [""])]
    seeds = _seeds(suite.get("seeds"))
    task_cache: dict = {}
    runs = []
    for exp in experiments:
        if not isinstance(exp, dict):
            raise BadInput(f"compare: each entry of `experiments` must be a mapping of settings, got {exp!r}")
        # an experiment may list its own methods / sweep / fusions: they replace the suite's for it
        own = {k: v for k, v in exp.items() if k in ("methods", "sweep", "fusions")}
        base = {**common, **{k: v for k, v in exp.items() if k not in own}}
        task = config.load(base, task_cache=task_cache).task  # the experiment's task, its settings checked
        for variant in _variants(base, {**suite, **own}, task):
            for seed in seeds:
                runs.append(config.load({**base, **variant, "seed": seed}, task_cache=task_cache))
    return runs


def preflight(runs: list[RunConfig]) -> None:
    """Before anything trains: every (model, method, knobs) of the grid is planned from its config alone, so a method
    that cannot apply (a block size that does not divide a width, a knob PEFT rejects) stops the grid with one line,
    not after hours of other runs; so does a model that cannot do the task of a dataset it is paired with. Models
    whose config cannot be read here (a hub id offline) are left to their run to report."""
    from peftlab.methods import REGISTRY
    from peftlab.models import load_config
    from peftlab.models.loading import resolve_pooling
    from peftlab.params import predict_from_config

    seen = set()
    for cfg in runs:
        key = (cfg.model, cfg.task, cfg.method, repr(cfg.knobs), cfg.pooling)
        if key in seen or cfg.task not in ("text-classification", "image-classification"):
            continue
        seen.add(key)
        try:
            model_config = load_config(cfg.model)
        except BadInput:
            continue
        try:
            pooling = resolve_pooling(cfg.model, cfg.pooling, cfg.task, model_config)
        except BadInput as e:
            raise BadInput(f"{cfg.model} on {cfg.dataset}: {e}") from None
        try:
            predict_from_config(model_config, cfg.task, 2, REGISTRY[cfg.method], cfg.knobs, pooling=pooling)
        except BadInput as e:
            raise BadInput(f"{cfg.model}, {cfg.method}: {e}") from None


def suite_from_args(args) -> dict:
    suite = load_yaml(args.config) if getattr(args, "config", None) else {}
    for key in ("models", "datasets", "methods", "seeds", "fusions", "sweep", "tune"):
        value = getattr(args, key, None)
        if value is not None:
            suite[key] = value
    for name, value in config.settings_from_args(args).items():
        suite[name] = value
    return suite


def run_suite(
    suite: dict, out: Path, *, resume: bool, progress: bool = True, json_mode: bool = False,
    parallel: dict | None = None,
) -> dict:  # fmt: skip
    """Run the grid (one point after another here, or over workers when `parallel` = {workers, storage, grid,
    heartbeat} from compare --workers), then write the report from the store."""
    from peftlab.report import leaderboard_text, write_report
    from peftlab.run import run_experiment

    disk.check_writable(out, "--out")
    suite = {**suite, "out": str(out)}
    store_path = suite.get("store") or str(out / "peftlab.db")
    suite["store"] = store_path
    runs = expand(suite)
    preflight(runs)
    store = Store(store_path)
    finished = store.finished() if resume else set()
    memo: dict = {}  # shared across runs: data, encodings, frozen-prefix caches (keyed so nothing leaks across models)
    tuning: dict = {}
    if suite.get("tune") is not None:
        runs, tuning = with_tuned(runs, _tune_budget(suite["tune"]), out, memo=memo, progress=progress)
    done = new = failed = skipped = 0
    started = time.perf_counter()
    if parallel is not None:  # the points go through Optuna's storage to worker processes (workers.py)
        from peftlab.workers import run_grid

        parallel = run_grid(runs, out, **parallel, resume=resume, done=finished, extras=tuning, progress=progress,
                            title=suite.get("title") or "peftlab comparison")  # fmt: skip
        new, failed, skipped = parallel.pop("new"), parallel.pop("failed"), parallel.pop("skipped")
    bar = tqdm(total=len(runs), desc="comparison", unit="run", file=sys.stderr, position=0,
               disable=not progress or parallel is not None)  # fmt: skip
    interrupted = False
    try:
        for cfg in runs if parallel is None else []:
            bar.set_postfix_str(f"{Path(cfg.model or cfg.encoder or 'vqa').name} {cfg.method} s{cfg.seed}")
            if resume and (identity_hash(cfg.to_dict()), cfg.seed) in finished:
                skipped += 1
            else:
                try:
                    extra = {"tuning": tuning[cfg.label]} if cfg.label in tuning else None
                    run_experiment(cfg, store, memo=memo, progress=progress, extra=extra)
                    new += 1
                except (BadInput, Stopped):
                    raise
                except KeyboardInterrupt:
                    interrupted = True
                    raise
                except Exception as e:  # already stored as failed; the grid goes on
                    failed += 1
                    if disk.is_full(e):  # every later run would fail the same way, and so would the report
                        where = getattr(e, "filename", None) or out
                        raise Stopped(f"the disk is full ({where}); the finished runs and this failure are stored "
                                      f"in {store_path}: free some space and run the same command with --resume"
                                      ) from None  # fmt: skip
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
        **({"tuning": {k: {f: v[f] for f in TUNING_KEYS} for k, v in tuning.items()}} if tuning else {}),
        **({"parallel": parallel["parallel"]} if parallel else {}),
    }


TUNING_KEYS = ("study", "trials_complete", "trials_pruned", "best_params", "best_value")


def _tune_budget(value) -> int:
    return config.whole_number(value, "--tune", "the number of tuning trials per method")


def with_tuned(runs: list[RunConfig], trials: int, out: Path, *, memo: dict, progress: bool):
    """Equal budgets: every trained configuration of the grid gets `trials` Optuna trials (same data and epochs,
    scored on validation; one study each, resumable), then its best settings run over the same seeds, labelled
    "<label> tuned", right after its default-settings runs. -> (runs, {tuned label: tuning summary})."""
    from peftlab.config import knob_label
    from peftlab.methods import REGISTRY
    from peftlab.tasks import TASKS
    from peftlab.tune import study_name, tune

    groups: dict[str, list[RunConfig]] = {}
    for cfg in runs:
        groups.setdefault(identity_hash(cfg.to_dict()), []).append(cfg)
    out_runs, tuning = [], {}
    for group in groups.values():
        out_runs += group
        first = group[0]
        if not REGISTRY[first.method].needs_training or TASKS[first.task].validate is None:
            continue
        values = {k: v for k, v in first.to_dict().items() if k != "label"}
        started = time.perf_counter()
        result = tune(values, trials=trials, storage=str(out / "optuna.journal"), study=study_name(first),
                      resume=True, progress=progress, memo=memo, up_to=True)  # fmt: skip
        if result["best"] is None:
            print(f"[peftlab] {study_name(first)}: no trial completed; no tuned run", file=sys.stderr)
            continue
        label = f"{first.label or knob_label(first.to_dict())} tuned"
        states = [t["state"] for t in result["trials"]]
        tuning[label] = {
            "study": result["study"],
            "trials_complete": states.count("COMPLETE"),
            "trials_pruned": states.count("PRUNED"),
            "best_params": result["best"]["params"],
            "best_value": result["best"]["value"],
            "tuning_s": round(sum(t["seconds"] or 0 for t in result["trials"]), 1),
            "session_s": round(time.perf_counter() - started, 1),
            "trials": [{k: t[k] for k in ("params", "value", "state")} for t in result["trials"]],
        }
        out_runs += [config.load({**values, **result["best"]["params"], "label": label, "seed": c.seed})
                     for c in group]  # fmt: skip
    return out_runs, tuning


def plan_compare(args, *, train_size=None, eval_size=None, seq_length=None) -> dict:
    """`compare --plan`: the grid's runs expanded and checked as compare does, each planned (plan/), nothing trained."""
    from peftlab.plan import default_context, plan_grid
    from peftlab.run import set_threads

    suite = suite_from_args(args)
    suite.pop("out", None)
    if suite.get("tune") is not None:
        raise BadInput("compare --plan plans the grid as given; drop --tune (tuning trials are not planned)")
    runs = expand({**suite, "out": "peftlab-compare"})
    preflight(runs)
    if runs:
        set_threads(runs[0])
    ctx = default_context(args.accelerator, args.calibration, args.recalibrate)
    return plan_grid(runs, ctx=ctx, train_size=train_size, eval_size=eval_size, seq_length=seq_length,
                     num_labels=args.num_labels)  # fmt: skip


def run_compare(args) -> dict:
    suite = suite_from_args(args)
    out = Path(suite.pop("out", None) or "peftlab-compare")
    parallel = None
    if getattr(args, "workers", None) is not None:
        from peftlab.workers import heartbeat_s, workers_count

        parallel = {"workers": workers_count(args.workers), "storage": args.storage, "grid": args.grid,
                    "heartbeat": heartbeat_s(args.heartbeat)}  # fmt: skip
    elif getattr(args, "storage", None) or getattr(args, "grid", None):
        raise BadInput("--storage / --grid: they name the queue of --workers; add --workers N")
    return run_suite(suite, out, resume=args.resume, progress=not args.quiet, json_mode=args.json,
                     parallel=parallel)  # fmt: skip


def _demo_workers(value) -> int:
    """`peftlab demo --workers N`; by default two single-thread workers where there are two cores or more: on the
    2-core machine of docs/bench.md they ran the demo's grid 1.16x faster than one two-thread process."""
    from peftlab.distributed import physical_cores
    from peftlab.workers import workers_count

    if value is not None:
        return workers_count(value)
    return 2 if physical_cores() >= 2 else 1


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
    workers = _demo_workers(getattr(args, "workers", None))
    parallel = None
    if workers > 1:  # the grid over worker processes, one thread each (bench/workers.py measured it a win)
        from peftlab.workers import HEARTBEAT_S

        parallel = {"workers": workers, "storage": None, "grid": None, "heartbeat": HEARTBEAT_S}
    result = run_suite(suite, out, resume=args.resume, parallel=parallel)
    print(f"{result['runs_new']} new runs ({result['runs_failed']} failed) in {result['wall_s']:.0f}s")
    return 0 if result["runs_failed"] == 0 else 1
