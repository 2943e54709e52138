"""One experiment's life: a record started from the resolved config, the task's entry point, the record stored.

`run_experiment(cfg, store)` returns the Record (also stored, also written to OUT/<run_id>/record.json); a failed run
is stored as `failed` with its error and a Ctrl-C as `cancelled`, both re-raised for the caller to decide. Under
`accelerate launch` every process runs this and returns the record; only the main process stores and writes it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path

import torch

from peftlab import __version__, disk, distributed
from peftlab.config import RunConfig
from peftlab.errors import BadInput, Stopped
from peftlab.record import Parallel, Record
from peftlab.store import Store
from peftlab.tasks import TASKS
from peftlab.trackers import tracking


def environment() -> dict:
    """Versions, git commit and machine: enough to say where a number came from."""
    import accelerate
    import datasets
    import peft
    import transformers

    def git_commit() -> str | None:
        try:
            here = Path(__file__).resolve().parent
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            )
            return out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = cpu_name()
    return {
        "peftlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "git_commit": git_commit(),
        "cpu": f"{cpu} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(cfg: RunConfig) -> None:
    """--threads, else the physical cores, shared by the processes of this run on this machine."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        torch.set_num_threads(max(1, distributed.physical_cores() // distributed.local_world()))


def run_experiment(
    cfg: RunConfig,
    store: Store | None = None,
    *,
    memo: dict | None = None,
    progress: bool = True,
    extra: dict | None = None,
    parallel: dict | None = None,
) -> Record:
    """Run one experiment (cfg from `config.load`) and return its record. BadInput propagates (nothing stored); any
    other exception is stored as a `failed` record and re-raised; Ctrl-C is stored as `cancelled` and re-raised."""
    # accelerate launch / torchrun: this is one of several data-parallel processes of the run (distributed.py); they
    # all train and evaluate, only the main one writes the record, artifacts and store row
    processes, main = distributed.world(), distributed.is_main()
    if processes > 1:
        distributed.check(cfg)
    set_threads(cfg)
    # before training: a run must never end unable to save its record
    if main:
        disk.check_writable(Path(cfg.out), "--out")
        store = store if store is not None else Store(cfg.resolved_store())
    if processes > 1:
        distributed.start(cfg.precision)
        progress = progress and main
    record = Record.start(cfg, environment())
    record.extra.update(extra or {})  # e.g. "tuning": how compare --tune chose these settings
    if parallel:  # a grid worker says which one it is (workers.py)
        record.parallel = Parallel.from_dict({**record.parallel.to_dict(), **parallel})
    try:
        # --report-to: TensorBoard / MLflow / trackio through accelerate's trackers (trackers.py)
        with tracking(cfg, record):
            TASKS[cfg.task].run(cfg, record, memo=memo if memo is not None else {}, progress=progress)
            record.status = "ok"
    except BadInput:
        raise
    except KeyboardInterrupt:
        record.status, record.error = "cancelled", "interrupted (Ctrl-C)"
        if main:
            _finish(cfg, record, store)
        raise
    except Exception as e:
        # a failed run is a result too: store it with its error, then let the caller decide
        record.status, record.error = "failed", failure_reason(e, cfg)
        record.traceback = traceback.format_exc()
        if main:
            _drop_partial_artifacts(cfg, record)
            _finish(cfg, record, store)
        raise
    if main:
        _finish(cfg, record, store)
    return record


def failure_reason(e: Exception, cfg: RunConfig) -> str:
    if disk.is_full(e):
        where = getattr(e, "filename", None) or cfg.out
        return (f"{type(e).__name__}: the disk is full ({os.strerror(errno.ENOSPC)}) while writing {where}; "
                "free some space or choose another --out, then run again")  # fmt: skip
    return f"{type(e).__name__}: {e}"


def _drop_partial_artifacts(cfg: RunConfig, record: Record) -> None:
    """A save that failed halfway (a full disk) leaves a model folder that would not load: remove it."""
    if record.artifacts.saved is None:
        for name in ("adapter", "model"):
            shutil.rmtree(Path(cfg.out) / record.run_id / name, ignore_errors=True)


def _finish(cfg: RunConfig, record: Record, store: Store) -> None:
    """record.json in the run folder, then the store row. The store is the record of truth: a record.json that
    cannot be written (a full disk) is reported on stderr and the row is still added."""
    run_dir = Path(cfg.out) / record.run_id
    record.artifacts.dir = str(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        disk.atomic_write_text(run_dir / "record.json", json.dumps(record.to_dict(), indent=2, default=str))
    except OSError as e:
        record.artifacts.dir = None
        print(f"[peftlab] could not write {run_dir / 'record.json'} ({e.strerror}); the record goes to the store "
              f"{store.path}", file=sys.stderr)  # fmt: skip
    try:
        store.add(record)
    except sqlite3.OperationalError as e:
        # "database or disk is full" (or locked past the timeout): SQLite rolled the insert back, the store is intact
        kept = f"the record is in {run_dir / 'record.json'}" if record.artifacts.dir else "the record is lost"
        raise Stopped(f"the store {store.path} could not take this run ({e}); {kept}; free some space and "
                      "run again (--resume skips what is stored)") from None  # fmt: skip
    if record.ok and record.artifacts.dir:
        from peftlab.artifacts import card

        try:
            card.write(run_dir, record)  # README.md: the model card, in the run folder and the saved model's
        except OSError as e:  # the run and its record are safe; only the card is missing
            print(f"[peftlab] could not write the model card in {run_dir} ({e.strerror})", file=sys.stderr)
