"""One experiment end to end: config -> data + model -> method -> train -> evaluate -> record -> store.

`run_experiment(cfg, store)` returns the record dict (also stored, also written to OUT/<run_id>/record.json).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
import traceback
import uuid
from pathlib import Path

import torch

from peftlab import __version__
from peftlab.config import RunConfig, validate
from peftlab.errors import BadInput
from peftlab.store import Store


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

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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


def new_run_id(cfg: RunConfig) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    model = re.sub(r"[^A-Za-z0-9]+", "-", Path(cfg.model or cfg.encoder or cfg.image_encoder or "vqa").name)[
        :24
    ]
    return f"{stamp}-{model}-{cfg.method}-s{cfg.seed}-{uuid.uuid4().hex[:6]}"


def log(msg: str) -> None:
    print(f"[peftlab] {msg}", file=sys.stderr, flush=True)


def set_threads(cfg: RunConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        import psutil

        torch.set_num_threads(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def run_experiment(
    cfg: RunConfig, store: Store | None = None, *, memo: dict | None = None, progress: bool = True
) -> dict:
    """Run one experiment and return its record. BadInput propagates (nothing stored); any other exception is stored
    as a `failed` record and re-raised; Ctrl-C is stored as `cancelled` and re-raised."""
    validate(cfg)
    set_threads(cfg)
    store = store if store is not None else Store(cfg.resolved_store())
    record = {
        "run_id": new_run_id(cfg),
        "created_at": dt.datetime.now().isoformat(timespec="seconds"),
        "status": "running",
        "error": None,
        "task": cfg.task,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": cfg.method,
        "seed": cfg.seed,
        "config": None,
        # hashed as requested (before task etc. are inferred), so `compare --resume` recognises the same request
        "config_hash": cfg.identity_hash(),
        "metrics": None,
        "baseline_metrics": None,
        "params": None,
        "time": None,
        "memory": None,
        "data": None,
        "env": environment(),
        "artifacts": {"dir": None},
    }
    try:
        if cfg.task == "vqa":
            from peftlab.vqa import run_vqa

            run_vqa(cfg, record, memo=memo if memo is not None else {}, progress=progress)
        else:
            from peftlab.experiment import run_classification

            run_classification(cfg, record, memo=memo if memo is not None else {}, progress=progress)
        record["status"] = "ok"
    except BadInput:
        raise
    except KeyboardInterrupt:
        record["status"] = "cancelled"
        record["error"] = "interrupted (Ctrl-C)"
        _finish(cfg, record, store)
        raise
    except (
        Exception
    ) as e:  # a failed run is a result too: store it with its error, then let the caller decide
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
        _finish(cfg, record, store)
        raise
    _finish(cfg, record, store)
    return record


def _finish(cfg: RunConfig, record: dict, store: Store) -> None:
    record["config"] = record["config"] or dataclasses.asdict(cfg)
    record["config_hash"] = record["config_hash"] or cfg.identity_hash()
    run_dir = Path(cfg.out) / record["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    record["artifacts"]["dir"] = str(run_dir)
    (run_dir / "record.json").write_text(json.dumps(record, indent=2, default=str))
    store.add(record)
