"""One experiment's life: a record started from the resolved config, the task's entry point, the record stored.

`run_experiment(cfg, store)` returns the Record (also stored, also written to OUT/<run_id>/record.json); a failed run
is stored as `failed` with its error and a Ctrl-C as `cancelled`, both re-raised for the caller to decide.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import traceback
from pathlib import Path

import torch

from peftlab import __version__
from peftlab.config import RunConfig
from peftlab.errors import BadInput
from peftlab.record import Record
from peftlab.store import Store
from peftlab.tasks import TASKS


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
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        import psutil

        torch.set_num_threads(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def check_writable(folder: Path, flag: str) -> None:
    """The folder exists or can be made, and a file can be written in it; else one line of bad input."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".peftlab-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInput(
            f"{flag} {folder}: cannot write there ({e.strerror}); choose a writable folder"
        ) from None


def run_experiment(
    cfg: RunConfig,
    store: Store | None = None,
    *,
    memo: dict | None = None,
    progress: bool = True,
    extra: dict | None = None,
) -> Record:
    """Run one experiment (cfg from `config.load`) and return its record. BadInput propagates (nothing stored); any
    other exception is stored as a `failed` record and re-raised; Ctrl-C is stored as `cancelled` and re-raised."""
    set_threads(cfg)
    check_writable(Path(cfg.out), "--out")  # before training: a run must never end unable to save its record
    store = store if store is not None else Store(cfg.resolved_store())
    record = Record.start(cfg, environment())
    record.extra.update(extra or {})  # e.g. "tuning": how compare --tune chose these settings
    try:
        TASKS[cfg.task].run(cfg, record, memo=memo if memo is not None else {}, progress=progress)
        record.status = "ok"
    except BadInput:
        raise
    except KeyboardInterrupt:
        record.status, record.error = "cancelled", "interrupted (Ctrl-C)"
        _finish(cfg, record, store)
        raise
    except (
        Exception
    ) as e:  # a failed run is a result too: store it with its error, then let the caller decide
        record.status, record.error = "failed", f"{type(e).__name__}: {e}"
        record.traceback = traceback.format_exc()
        _finish(cfg, record, store)
        raise
    _finish(cfg, record, store)
    return record


def _finish(cfg: RunConfig, record: Record, store: Store) -> None:
    run_dir = Path(cfg.out) / record.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record.artifacts.dir = str(run_dir)
    (run_dir / "record.json").write_text(json.dumps(record.to_dict(), indent=2, default=str))
    store.add(record)
