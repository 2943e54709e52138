"""The `peftlab` command: each subcommand parses flags into a RunConfig (or a few options) and calls the library.

Exit codes: 0 success, 2 bad input (one line on stderr), 1 a run that failed (stored as failed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings

from peftlab import config, disk, distributed
from peftlab.config import FIELDS, flag_of, load_yaml
from peftlab.errors import BadInput, Stopped


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit 2, without the usage block."""

    def error(self, message: str):
        raise BadInput(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _add_flag(p: argparse.ArgumentParser, flag: str, dest: str, typ, default, help_text: str) -> None:
    if str(typ).startswith("bool"):
        p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    else:
        shown = "" if default in (None, "") else f" [default: {default}]"
        p.add_argument(flag, dest=dest, default=None, metavar=dest.upper(), help=help_text + shown)


def _add_config_flags(
    p: argparse.ArgumentParser, only: set[str] | None = None, skip: set[str] = frozenset()
) -> None:
    """One flag per RunConfig field; the help text is the field's own documentation."""
    for name, f in FIELDS.items():
        if (only is None or name in only) and name not in skip:
            _add_flag(p, flag_of(name), name, f.type, f.default, f.metadata["help"])


def _add_knob_flags(p: argparse.ArgumentParser) -> None:
    """Every registered method's knobs as --<prefix>-<knob> (once per prefix: dora shares lora's), grouped by method."""
    from peftlab.methods import REGISTRY
    from peftlab.methods.knobs import flag, key, knob_fields

    seen: set[str] = set()
    for method in REGISTRY.values():
        fields_ = knob_fields(method.knobs)
        if method.prefix in seen or not fields_:
            continue
        seen.add(method.prefix)
        group = p.add_argument_group(f"{method.prefix} knobs (--method {method.name})")
        for f in fields_:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            _add_flag(group, flag(method.prefix, f.name), key(method.prefix, f.name), f.type, default,
                      f.metadata["help"])  # fmt: skip


def _add_plan_flags(p: argparse.ArgumentParser) -> None:
    """What a plan needs when the data cannot be read here, and where to plan for."""
    p.add_argument("--train-size", help="training examples, for a hub dataset not downloaded here")
    p.add_argument("--eval-size", help="test examples, for a hub dataset not downloaded here")
    p.add_argument("--seq-length", help="text: tokens per text when the texts cannot be read here "
                   "[default: --max-length, an upper bound]")  # fmt: skip
    p.add_argument("--accelerator", help="estimate for a named GPU from its datasheet peak instead of calibrating "
                   "this machine (h200, h100-sxm, h100-pcie, a100-80gb, a100-40gb, l4, a10, t4, v100-sxm2)")  # fmt: skip
    p.add_argument("--calibration", help="a timing table made on another machine (its cache file): reproduce that "
                   "machine's times; nothing is measured")  # fmt: skip
    p.add_argument("--recalibrate", action="store_true",
                   help="measure this machine again (after a busy spell, or new hardware), replacing its cache")  # fmt: skip
    p.add_argument("--num-labels", type=int, default=None,
                   help="classes of the head when the data cannot be read here [default: the data's, else 2]")  # fmt: skip


def _settings(args: argparse.Namespace) -> dict:
    """Defaults < YAML file (--config) < flags given on the command line."""
    merged = load_yaml(args.config) if getattr(args, "config", None) else {}
    merged.update(config.settings_from_args(args))
    return merged


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def cmd_run(args) -> int:
    from peftlab.run import failure_reason, run_experiment
    from peftlab.store import Store

    cfg = config.load(_settings(args))
    if args.num_processes is not None:
        n = config.whole_number(args.num_processes, "--num-processes", "the number of processes of this run")
        if n > 1 and distributed.world() == 1:
            return _relaunch(cfg, n, args.argv)
    if distributed.world() > 1:  # under accelerate launch: bad input before anything is written
        distributed.check(cfg)
    if not distributed.is_main():  # one of several processes: it trains; the main one speaks and writes
        try:
            run_experiment(cfg, None, progress=False)
        except (BadInput, Stopped, KeyboardInterrupt):
            raise
        except Exception:
            return 1
        return 0
    store = Store(cfg.resolved_store())
    try:
        record = run_experiment(cfg, store, progress=not args.quiet)
    except (BadInput, Stopped, KeyboardInterrupt):
        raise
    except Exception as e:
        print(
            f"peftlab run: the run failed ({failure_reason(e, cfg)}); stored as failed in {store.path}",
            file=sys.stderr,
        )
        if args.json:
            failed = store.records(status="failed")
            if failed:
                _print_json(failed[-1].public())
        return 1
    if args.json:
        _print_json(record.public())
    else:
        _print_summary(record, store.path)
    return 0


def _relaunch(cfg, n: int, argv: list[str]) -> int:
    """`peftlab run --num-processes N ...`: this same command as N data-parallel processes through accelerate launch
    (torchrun underneath: gloo on CPU, NCCL on GPUs), started from this process. The settings were checked here first;
    bad input found later by the children is their main process's one line, and exit 2 here (not torchrun's report)."""
    import logging
    import socket

    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    distributed.check(cfg, n)
    rest, skip = [], False
    for a in argv:  # the same arguments without --num-processes (the children must not relaunch)
        if skip or a == "--num-processes" or a.startswith("--num-processes="):
            skip = a == "--num-processes"
            continue
        rest.append(a)
    # a free port for the process group: two runs launched at once must not collide
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # accelerate starts N processes on a CPU-only machine only as "multi_gpu" (with --cpu it starts one)
    launch = ["--multi_gpu", "--num_processes", str(n), "--num_machines", "1", "--main_process_port", str(port),
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "peftlab", *rest]  # fmt: skip
    # the children speak for themselves: no torchrun warnings and failure report on top of their one line
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        launch_command(launch_command_parser().parse_args(launch))
    except ChildFailedError as e:
        codes = {f.exitcode for f in e.failures.values()}
        return 2 if 2 in codes else 130 if 130 in codes else 1
    return 0


def _print_summary(record, store_path) -> None:
    m, b, p, t = record.metrics, record.baseline_metrics, record.params, record.time
    pred = p.predicted_trainable
    pred_txt = f"predicted {pred:,} ({'match' if p.match else 'MISMATCH'})" if pred is not None else p.note
    lines = [
        f"run {record.run_id}  [{record.status}]",
        f"  {record.model} on {record.dataset} ({record.task}), method {record.label}, seed {record.seed}",
        f"  accuracy {m.accuracy:.4f}  macro-F1 {m.macro_f1:.4f}  macro-recall {m.macro_recall:.4f}"
        f"   (before training: accuracy {b.accuracy:.4f})",
        f"  trainable {p.trainable:,} of {p.total:,} ({p.trainable_pct:.3f}%); {pred_txt}",
        f"  train {t.train_s:.1f}s ({t.train_samples_per_s or 0:.1f} samples/s), eval {t.eval_s:.1f}s, "
        f"peak RSS {record.memory.peak_rss_mb:.0f} MiB",
        f"  saved in {record.artifacts.dir}; store {store_path}",
    ]
    print("\n".join(lines))


def cmd_params(args) -> int:
    from peftlab.methods import REGISTRY
    from peftlab.params import count, format_table

    values = _settings(args)
    for name in ("pooling", "task"):
        if values.get(name) is not None:
            values[name] = config.coerce_setting(name, values[name])
    if not values.get("model"):
        raise BadInput("--model is required: a packaged name (peftlab ls models), a local folder or a hub id")
    name = values.get("method") or "lora"
    if name not in REGISTRY:
        raise BadInput(f"--method {name!r}: unknown method; choose from {', '.join(REGISTRY)}")
    knobs = config.method_knobs(REGISTRY[name], {k.replace("-", "_"): v for k, v in values.items()})
    result = count(values["model"], name, knobs, task=values.get("task"), num_labels=args.num_labels,
                   pooling=values.get("pooling") or "auto")  # fmt: skip
    if args.json:
        _print_json(result)
    else:
        print(format_table(result))
    return 0


def _plan_sizes(args) -> dict:
    """--train-size / --eval-size / --seq-length as whole numbers >= 1 (None when not given)."""
    out = {}
    for name in ("train_size", "eval_size", "seq_length"):
        value = getattr(args, name, None)
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = 0
        if out[name] < 1:
            raise BadInput(f"--{name.replace('_', '-')} {value!r}: give a whole number >= 1")
    return out


def cmd_plan(args) -> int:
    from peftlab.plan import default_context, plan_run
    from peftlab.plan.render import run_text
    from peftlab.run import set_threads

    cfg = config.load(_settings(args))
    set_threads(cfg)  # calibrate with the threads the run will use
    ctx = default_context(args.accelerator, args.calibration, args.recalibrate)
    result = plan_run(cfg, ctx=ctx, num_labels=args.num_labels, **_plan_sizes(args))
    if ctx.calibration is not None:
        ctx.calibration.save()
    if args.json:
        _print_json(result)
    else:
        print(run_text(result))
    return 0


def cmd_tune(args) -> int:
    from peftlab.tune import tune

    # trials train and validate only: no run records, models or tracker logs come out of them
    idle = [
        f"--{k.replace('_', '-')}"
        for k in ("store", "save_model", "report_to")
        if getattr(args, k, None) is not None
    ]
    if idle:
        raise BadInput(f"{', '.join(idle)}: tune stores no runs, models or tracker logs (its trials live in "
                       "--storage); leave it out and run the best settings with `peftlab run`")  # fmt: skip
    result = tune(_settings(args), trials=_trials(args.trials), storage=args.storage, study=args.study,
                  resume=args.resume, space=args.space, progress=not args.quiet)  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    counts = {st: sum(t["state"] == st for t in result["trials"]) for st in ("COMPLETE", "PRUNED", "FAIL")}
    print(f"study {result['study']} in {result['storage']}: {len(result['trials'])} trials "
          f"({counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed)")  # fmt: skip
    for t in result["trials"]:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        params = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()
        )
        print(
            f"  #{t['number']:<3} {t['state']:<8} validation accuracy {value:<7} {t['seconds'] or 0:6.1f}s  {params}"
        )
    best = result["best"]
    if best is None:
        print("no trial completed: nothing to recommend")
        return 1
    flags = " ".join(f"--{k.replace('_', '-')} {v:.3g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
                     for k, v in best["params"].items())  # fmt: skip
    print(f"best validation accuracy {best['value']:.4f} with: {flags}")
    return 0


def _trials(value) -> int:
    return config.whole_number(value, "--trials", "the number of trials")


def cmd_compare(args) -> int:
    from peftlab.grid import plan_compare, run_compare

    if args.plan:
        result = plan_compare(args, **_plan_sizes(args))
        if args.json:
            _print_json(result)
        else:
            from peftlab.plan.render import grid_text

            print(grid_text(result))
        return 0
    summary = run_compare(args)
    if args.json:
        _print_json(summary)
    return 0 if summary["runs_failed"] == 0 else 1


def _add_worker_flags(p: argparse.ArgumentParser, *, compare: bool) -> None:
    from peftlab.workers import HEARTBEAT_S

    if compare:
        p.add_argument("--workers", metavar="N", help="run N grid points at once, each worker process with its "
                       "share of the cores; the points queue in Optuna's storage (--storage)")  # fmt: skip
    p.add_argument("--storage", required=not compare, metavar="URL",
                   help="the grid's queue: sqlite:///grid.db on one machine, postgresql://user@host/db for workers "
                   "on several machines" + (" [default: sqlite:///OUT/grid-queue.db]" if compare else ""))  # fmt: skip
    p.add_argument("--grid", required=not compare, metavar="NAME",
                   help="the grid's name in the storage" + (" [default: grid-<content hash>-<time>]" if compare
                                                             else " (compare --workers prints it)"))  # fmt: skip
    p.add_argument("--heartbeat", default=HEARTBEAT_S, metavar="S",
                   help="seconds between a worker's heartbeats; a point silent for 2x that goes back to the queue "
                   "[default: %(default)s]")  # fmt: skip


def cmd_worker(args) -> int:
    from peftlab.workers import heartbeat_s, run_worker

    threads = config.coerce_setting("threads", args.threads) if args.threads is not None else None
    result = run_worker(args.storage, args.grid, out=args.out, store=args.store, threads=threads,
                        heartbeat=heartbeat_s(args.heartbeat), progress=not args.quiet)  # fmt: skip
    if args.json:
        _print_json(result)
    else:
        print(f"worker {result['worker']}: {result['points_run']} points run, {result['points_failed']} failed "
              f"(grid {result['grid']} in {result['storage']})")  # fmt: skip
    return 0 if result["points_failed"] == 0 else 1


def cmd_report(args) -> int:
    from peftlab.report import leaderboard_text, write_report
    from peftlab.store import Store

    paths = args.store or ["peftlab-runs/peftlab.db"]
    merged = {r.run_id: r for path in paths for r in Store(path, read_only=True).records()}  # one row per run
    records = sorted(merged.values(), key=lambda r: (r.created_at, r.run_id))
    if not records:
        raise BadInput(f"--store {', '.join(paths)}: the store holds no runs yet")
    disk.check_writable(_path(args.out), "--out")
    out = write_report(records, _path(args.out))
    print(leaderboard_text(out["summary"]))
    print(f"report: {out['report']}")
    return 0


def cmd_predict(args) -> int:
    from peftlab import predict
    from peftlab.artifacts.runs import open_run

    record, folder = open_run(args.run_dir, "predict")
    items = predict.gather(record.task, record.config or {}, args.text, args.image, args.question, args.input)
    predict.check_images(items)
    predictor = predict.load_predictor(record, folder, args.batch_size)
    for p in predict.run(predictor, items, progress=not args.quiet):
        if args.json:
            sys.stdout.write(json.dumps(p.to_dict()) + "\n")
        else:
            shown = p.input if isinstance(p.input, str) else f"{p.input['image']} | {p.input['question']}"
            print(f"{p.label}\t{p.probs[p.label]:.4f}\t{shown}")
        sys.stdout.flush()
    return 0


def cmd_export(args) -> int:
    from peftlab.export import export

    summary = export(args.run_dir, args.out, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        _print_json(summary)
    else:
        how = "adapter merged into the weights" if summary["merged"] else "trained weights"
        print(f"exported run {summary['run_id']} ({summary['method']}, {how}, {summary['dtype']}, "
              f"{summary['size_mb']:.1f} MiB) to {summary['out']}\nload it with: {summary['pipeline']}")  # fmt: skip
    return 0


def cmd_ls(args) -> int:
    from peftlab.zoo import listing

    print(listing(args.what))
    return 0


def cmd_demo(args) -> int:
    from peftlab.grid import run_demo

    return run_demo(args)


def _path(p: str):
    from pathlib import Path

    return Path(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peftlab", description="Run, measure and compare ways of fine-tuning pretrained models."
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    p = sub.add_parser("run", help="one experiment: one model, dataset, method and seed")
    p.add_argument("--config", help="YAML file of settings (flags given here override it)")
    p.add_argument(
        "--json", action="store_true", help="print exactly one JSON record on stdout (progress on stderr)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--num-processes", metavar="N",
                   help="train this run as N data-parallel processes on this machine (through accelerate launch; "
                   "--batch-size stays the global batch) [default: 1]")  # fmt: skip
    _add_config_flags(p)
    _add_knob_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "params", help="trainable/total parameters, predicted from the config and measured on meta"
    )
    p.add_argument("--config", help="YAML file of settings")
    p.add_argument("--num-labels", type=int, default=2, help="number of classes of the head [default: 2]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flags(p, only={"model", "method", "task", "pooling"})
    _add_knob_flags(p)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "plan", help="a run's FLOPs, time and peak memory, predicted before it starts (nothing trains)"
    )
    p.add_argument("--config", help="YAML file of settings (flags given here override it)")
    _add_plan_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object: flops, time, memory, machine")
    _add_config_flags(p)
    _add_knob_flags(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "tune", help="tune one model x dataset x method on the validation split (Optuna), then say the best"
    )
    p.add_argument("--config", help="YAML file of settings (flags given here override it)")
    p.add_argument("--trials", required=True, help="number of trials to run now (added to the study's)")
    p.add_argument("--storage", help="Optuna storage: a journal file (default OUT/optuna.journal) or a URL "
                   "(sqlite:///tune.db, postgresql://user@host/db) several processes or machines share")  # fmt: skip
    p.add_argument("--study", help="study name (default: model-dataset-label-<settings hash>)")
    p.add_argument("--resume", action="store_true", help="continue the study if it exists")
    p.add_argument("--space", action="append", metavar="SETTING=LOW:HIGH|A,B,C",
                   help="override one dimension of the method's search space (repeatable): --space lr=1e-5:1e-3, "
                   "--space lora-r=4,8")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print {study, storage, trials, best} on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_config_flags(p)
    _add_knob_flags(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("compare", help="a grid of models x datasets x methods x seeds, a store and a report")
    p.add_argument("--config", help="YAML suite: models, datasets, methods, seeds and any run setting")
    p.add_argument("--models", help="comma-separated models")
    p.add_argument("--datasets", help="comma-separated datasets")
    p.add_argument(
        "--methods",
        help="comma-separated methods, each with knobs if wanted: lora,lora:r=4,lora:r=16:alpha=32 "
        "[default: baseline,head,last-layer,lora,full]",
    )
    p.add_argument("--seeds", help="number of seeds (0..N-1) or a comma-separated list")
    p.add_argument(
        "--sweep",
        metavar="KNOB=V1,V2,...",
        help="one knob over several values, each its own row: --sweep lora-r=4,8,16,32 (applies to every method "
        "with that knob in --methods; alone, it compares that method's settings); the report plots it",
    )
    p.add_argument(
        "--tune",
        metavar="N",
        help="equal budgets: N Optuna trials per trained method on the validation split (same data and epochs), then "
        "its best settings over the seeds, reported on test next to the default settings",
    )
    p.add_argument(
        "--fusions", help="vqa: comma-separated fusion heads to grid over (concat,product,concat-product)"
    )
    p.add_argument("--plan", action="store_true",
                   help="predict every run's FLOPs, time and peak memory and the totals; train nothing")  # fmt: skip
    _add_plan_flags(p)
    p.add_argument(
        "--resume", action="store_true", help="skip runs that already succeeded with the same settings"
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_worker_flags(p, compare=True)
    _add_config_flags(p, skip={"model", "dataset", "method", "seed"})
    _add_knob_flags(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "worker",
        help="join a grid started by `compare --workers N`: run its waiting points until none is left",
    )
    _add_worker_flags(p, compare=False)
    p.add_argument("--out", help="output folder for this worker's runs [default: the grid's]")
    p.add_argument("--store", help="results store for this worker's runs [default: the grid's]")
    p.add_argument("--threads", help="torch threads [default: physical cores]")
    p.add_argument(
        "--json", action="store_true", help="print {grid, storage, worker, points_run, points_failed}"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="rebuild the report from a results store")
    p.add_argument("--store", action="append", help="SQLite results store; repeat it to merge the stores of several "
                   "machines [default: peftlab-runs/peftlab.db]")  # fmt: skip
    p.add_argument("--out", default="peftlab-report", help="output folder [default: %(default)s]")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="a finished run's model on new texts or images: label + probabilities")
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="the run folder (OUT/<run id>, as peftlab run prints it)"
    )
    p.add_argument("--text", action="append", help="a text to classify (repeatable)")
    p.add_argument("--image", action="append", help="an image file to classify, or to ask about (repeatable)")
    p.add_argument(
        "--question", action="append", help="VQA runs: a question about --image (repeatable, paired)"
    )
    p.add_argument("--input", help="a CSV / TSV / JSONL / JSON / Parquet file (text, image or image+question "
                   "columns) or a folder of images")  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, help="inputs per forward pass [default: the run's eval batch size]"
    )
    p.add_argument("--json", action="store_true",
                   help='one JSON object per input per line: {"input", "label", "probs": {label: p}}')  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="a run's model as one standalone folder (adapters merged) for pipeline()"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (OUT/<run id>)")
    p.add_argument("--out", required=True, help="the folder to write (must not exist, unless --overwrite)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="weights' dtype [default: fp32; bf16 and "
                   "fp16 halve the size]")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", action="store_true", help="print one JSON summary of what was written")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "ls", help="what models, datasets and methods mean, and which are available offline here"
    )
    p.add_argument("what", choices=["models", "datasets", "methods"])
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "demo", help="the default comparison on the packaged models and data (what `make demo` runs)"
    )
    p.add_argument("--out", default="demo-out", help="output folder [default: %(default)s]")
    p.add_argument("--quick", action="store_true", help="a much smaller grid, for tests")
    p.add_argument("--resume", action="store_true", help="keep runs already in OUT's store")
    p.add_argument("--workers", metavar="N",
                   help="grid points run at once, one thread each [default: 2 where the machine has 2 cores or more "
                        "(1.16x faster than one two-thread process on 2 cores, docs/bench.md), else 1]")  # fmt: skip
    p.set_defaults(func=cmd_demo)
    return parser


def _one_line(e: Exception) -> str:
    """The message with control characters a user typed into a path or name escaped (a "\\r" stays visible)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # library deprecation notices are for us, not for people reading their run's progress
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="LoRA adapter added to ConvNd")  # merging is not our concern
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # run --num-processes relaunches these
        if distributed.world() > 1 and args.func is not cmd_run:
            raise BadInput(f"`peftlab {args.argv[0] if args.argv else ''}` was started as {distributed.world()} "
                           "processes (accelerate launch / torchrun); only `peftlab run` trains as several processes "
                           "(spread a grid with compare --workers N instead)")  # fmt: skip
        return args.func(args)
    # (several processes of one run: each meets the same bad input; only the main process says it)
    except BadInput as e:
        _say(f"peftlab: error: {_one_line(e)}")
        return 2
    except Stopped as e:
        _say(f"peftlab: stopped: {_one_line(e)}")
        return 1
    except KeyboardInterrupt:
        _say("peftlab: interrupted; what finished is stored (a run as cancelled, a tuning trial as failed)")
        return 130


def _say(line: str) -> None:
    if distributed.is_main():
        print(line, file=sys.stderr)


def entry() -> None:
    """The console script. After `peftlab params` has printed its answer it skips the interpreter's teardown (freeing
    torch's and transformers' modules takes ~1.3 s of a ~7 s answer here); the other commands exit normally, so their
    temporary cache files and open files are cleaned up."""
    code = main()
    if sys.argv[1:2] == ["params"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
