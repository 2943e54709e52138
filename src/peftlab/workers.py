"""A grid spread over worker processes and machines, with Optuna's storage as the queue (no queue of our own).

`peftlab compare --workers N` -> `run_grid(...)`: each grid point becomes a WAITING trial of a study named after the
grid; N `peftlab worker` processes here (and any started elsewhere with the same --storage and --grid) each claim one
waiting trial at a time (Optuna's RDB storage hands a waiting trial to exactly one process), run it into the results
store and tell the engine. A worker beats a heartbeat while it runs; when one dies (SIGKILL, a lost machine), the next
worker that looks fails its trial as stale and Optuna's RetryFailedTrialCallback puts the point back in the queue.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from peftlab import config
from peftlab.config import RunConfig, identity_hash
from peftlab.errors import BadInput, Stopped

QUEUE_FILE = "grid-queue.db"  # the default queue for one machine: an SQLite file beside the results store
HEARTBEAT_S = (
    30  # a running point reports every 30 s; silent for 2x that, it is stale and goes back to the queue
)
RETRIES = 3  # how often a point whose worker died is put back before it stays failed
# a trial's user attrs: its grid index, the run's settings, what the record's extra gains (compare --tune)
POINT, SETTINGS, EXTRA = "point", "settings", "extra"


def workers_count(value) -> int:
    return config.whole_number(value, "--workers", "the number of worker processes")


def heartbeat_s(value) -> int:
    return config.whole_number(value, "--heartbeat", "the seconds between heartbeats")


def open_queue(url: str | None, out: Path, heartbeat: int = HEARTBEAT_S):
    """The queue's storage: None -> sqlite:///OUT/grid-queue.db (one machine); "sqlite:///x.db" or
    "postgresql://user@host/db" (several machines). -> (storage, url). Journal files are refused: Optuna 5 gives
    them no heartbeat, so a killed worker's point would never come back."""
    import optuna

    if url is None:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / QUEUE_FILE).resolve()}"
    if "://" not in url:
        raise BadInput(f"--storage {url}: give a database URL — sqlite:///grid.db on one machine, "
                       "postgresql://user@host/db for several (a journal file has no heartbeat to recover the "
                       "point of a worker that died)")  # fmt: skip
    from peftlab.tune import open_storage

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # Optuna calls the retry callback experimental; it is the recovery we want
        retry = optuna.storages.RetryFailedTrialCallback(max_retry=RETRIES)
    storage, shown = open_storage(url, out, heartbeat=heartbeat, on_stale=retry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return storage, shown


def grid_key(runs: list[RunConfig]) -> str:
    """The grid's content: every point's (identity, seed), in order."""
    import hashlib

    points = [(identity_hash(c.to_dict()), c.seed) for c in runs]
    return hashlib.sha256(json.dumps(points).encode()).hexdigest()[:10]


def _study_names(storage) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def point_states(study) -> dict[int, str]:
    """Grid index -> the state of its newest trial (a point put back after its worker died has a newer one)."""
    newest: dict[int, tuple[int, str]] = {}
    for t in study.get_trials(deepcopy=False):
        i = t.user_attrs.get(POINT)
        if i is not None and (i not in newest or t.number > newest[i][0]):
            newest[i] = (t.number, t.state.name)
    return {i: state for i, (_, state) in newest.items()}


def create_grid(storage, runs: list[RunConfig], *, name: str | None, resume: bool, done: set,
                extras: dict, title: str) -> tuple[object, int]:  # fmt: skip
    """The study holding the grid, with every point still to run enqueued (once). -> (study, points waiting).
    `done`: (identity, seed) of runs the results store already holds (--resume); `extras`: label -> record extra."""
    import optuna

    key = grid_key(runs)
    existing = _study_names(storage)
    if name is None:  # grid-<content hash>: --resume continues the newest grid of the same content
        same = sorted(n for n in existing if n.startswith(f"grid-{key}-"))
        name = same[-1] if resume and same else f"grid-{key}-{time.strftime('%Y%m%d-%H%M%S')}"
    elif name in existing and not resume:
        raise BadInput(
            f"--grid {name}: it exists in this storage; pass --resume to continue it, or another --grid"
        )
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize")
    if study.user_attrs.get("grid_key", key) != key:
        raise BadInput(f"--grid {name}: it holds another grid (other settings); use a new --grid name")
    study.set_user_attr("grid_key", key)
    study.set_user_attr("title", title)
    study.set_user_attr("points", len(runs))
    states = point_states(study)
    waiting = 0
    for i, cfg in enumerate(runs):
        if (
            states.get(i) in ("WAITING", "RUNNING", "COMPLETE")
            or (identity_hash(cfg.to_dict()), cfg.seed) in done
        ):
            continue
        attrs = {POINT: i, SETTINGS: _settings(cfg)}
        if cfg.label in extras:
            attrs[EXTRA] = {"tuning": extras[cfg.label]}
        study.enqueue_trial({}, user_attrs=attrs, skip_if_exists=False)
        waiting += 1
    return study, waiting


def _settings(cfg: RunConfig) -> dict:
    """The settings a worker rebuilds the point's RunConfig from; a default learning rate is left to be resolved
    again (a method that trains nothing has lr 0, which is no valid --lr)."""
    from peftlab.methods import REGISTRY
    from peftlab.tasks import TASKS

    values = cfg.to_dict()
    if values.get("lr") == TASKS[cfg.task].default_lr(REGISTRY[cfg.method]):
        values.pop("lr")
    return values


class _RunFailed(Exception):
    """A point whose run failed (stored as failed): the trial fails and is not retried; the grid goes on."""


def run_worker(storage_url: str, grid: str, *, out: str | None = None, store: str | None = None,
               threads: int | None = None, heartbeat: int = HEARTBEAT_S, progress: bool = True) -> dict:  # fmt: skip
    """Claim waiting points of `grid` one at a time and run them, until no point is waiting or running anywhere.
    `out` / `store` replace the grid's (a worker on another machine writes its own store). -> {grid, storage, worker,
    points_run, points_failed}."""
    import optuna
    from optuna.trial import TrialState

    from peftlab.run import run_experiment
    from peftlab.store import Store

    storage, shown = open_queue(storage_url, Path(out or "."), heartbeat)
    if grid not in _study_names(storage):
        raise BadInput(f"--grid {grid}: no such grid in {shown}; start it with `peftlab compare --workers N "
                       f"--storage {storage_url}` (it prints the grid's name)")  # fmt: skip
    study = optuna.load_study(study_name=grid, storage=storage)
    me = f"{socket.gethostname()}:{os.getpid()}"
    memo: dict = {}  # data, encodings and frozen-prefix caches shared by this worker's points
    stores: dict[str, Store] = {}
    counts = Counter()

    def objective(trial) -> float:
        attrs = trial.user_attrs
        if POINT not in attrs:  # the queue emptied between our look and Optuna's ask: nothing to do
            trial.study.stop()
            raise optuna.TrialPruned("no waiting grid point")
        values = dict(attrs[SETTINGS])
        values.update(
            {k: v for k, v in (("out", out), ("store", store), ("threads", threads)) if v is not None}
        )
        cfg = config.load(values)
        path = cfg.resolved_store()
        where = stores.setdefault(path, Store(path))
        parallel = {"processes": 1, "worker": me, "grid": grid}
        try:
            record = run_experiment(cfg, where, memo=memo, progress=progress, extra=attrs.get(EXTRA),
                                    parallel=parallel)  # fmt: skip
        except (BadInput, Stopped, KeyboardInterrupt):
            raise
        except Exception as e:  # stored as failed by run_experiment
            counts["failed"] += 1
            print(f"[peftlab] worker {me}: point {attrs[POINT]} failed and was stored: {type(e).__name__}: {e}",
                  file=sys.stderr)  # fmt: skip
            raise _RunFailed(str(e)) from None
        counts["run"] += 1
        return float(record.accuracy or 0.0)

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # Optuna calls fail_stale_trials experimental; it is the recovery we want
        while True:
            optuna.storages.fail_stale_trials(study)  # points of workers that died go back to the queue
            live = Counter(t.state for t in study.get_trials(deepcopy=False,
                                                             states=(TrialState.WAITING, TrialState.RUNNING)))  # fmt: skip
            if live[TrialState.WAITING]:
                study.optimize(objective, n_trials=1, catch=(_RunFailed,), gc_after_trial=False)
            elif live[
                TrialState.RUNNING
            ]:  # others are running: stay, in case one dies and its point comes back
                time.sleep(min(heartbeat, 5))
            else:
                break
    return {"grid": grid, "storage": shown, "worker": me, "points_run": counts["run"],
            "points_failed": counts["failed"]}  # fmt: skip


def worker_threads(workers: int, threads: int | None) -> int:
    """Each worker's share of the cores: the --threads given, else physical cores // workers (at least 1), so N
    workers do not spin against each other."""
    from peftlab.distributed import physical_cores

    return threads or max(1, physical_cores() // workers)


def run_grid(runs: list[RunConfig], out: Path, *, workers: int, storage: str | None, grid: str | None,
             resume: bool, done: set, extras: dict, title: str, heartbeat: int = HEARTBEAT_S,
             progress: bool = True) -> dict:  # fmt: skip
    """Enqueue the grid, start min(workers, points) `peftlab worker` processes here, wait for the queue to drain.
    -> {new, failed, skipped, workers, grid, storage}."""
    import optuna
    from tqdm.auto import tqdm

    where, shown = open_queue(storage, out, heartbeat)
    study, _ = create_grid(where, runs, name=grid, resume=resume, done=done, extras=extras, title=title)
    queued = {
        i for i, st in point_states(study).items() if st in ("WAITING", "RUNNING")
    }  # what this grid waits for
    started = min(workers, len(queued))
    threads = worker_threads(workers, runs[0].threads if runs else None)
    print(f"[peftlab] grid {study.study_name}: {len(queued)} points to run, queued in {shown}; {started} workers here with {threads} "
          f"thread(s) each; other machines join with `peftlab worker --storage URL --grid {study.study_name}`",
          file=sys.stderr)  # fmt: skip
    logs = out / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    # the workers run this same peftlab (a source checkout too) with their share of the cores for every thread pool
    here = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = []
    for k in range(started):
        log = open(logs / f"worker-{k}.log", "w")  # noqa: SIM115 (closed below, after the process ends)
        cmd = [sys.executable, "-m", "peftlab", "worker", "--storage", shown, "--grid", study.study_name,
               "--threads", str(threads), "--heartbeat", str(heartbeat), "--quiet"]  # fmt: skip
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    bar = tqdm(total=len(queued), desc=f"comparison ({started} workers)", unit="run", file=sys.stderr,
               disable=not progress)  # fmt: skip
    try:
        while any(p.poll() is None for p, _ in procs):
            time.sleep(1.0)
            states = point_states(study)
            bar.update(sum(states.get(i) in ("COMPLETE", "FAIL") for i in queued) - bar.n)
    except KeyboardInterrupt:
        for p, _ in procs:
            p.terminate()
        raise
    finally:
        bar.close()
        for p, log in procs:
            p.wait()
            log.close()
    for k, (p, _) in enumerate(procs):
        if p.returncode not in (
            0,
            1,
        ):  # 1: some run failed (stored); anything else: the worker itself stopped
            tail = (logs / f"worker-{k}.log").read_text(errors="replace").strip().splitlines()[-3:]
            print(f"[peftlab] worker {k} exited with {p.returncode}: {' | '.join(tail)}", file=sys.stderr)
    states = point_states(optuna.load_study(study_name=study.study_name, storage=where))
    left = sum(states.get(i) in ("WAITING", "RUNNING") for i in queued)
    if left:
        print(f"[peftlab] {left} points did not finish; `peftlab worker --storage {shown} --grid "
              f"{study.study_name}` or this command with --resume runs them", file=sys.stderr)  # fmt: skip
    return {
        "new": sum(states.get(i) == "COMPLETE" for i in queued),
        "failed": sum(states.get(i) == "FAIL" for i in queued),
        "skipped": len(runs) - len(queued),
        "parallel": {"workers": started, "threads": threads, "grid": study.study_name, "storage": shown},
    }
