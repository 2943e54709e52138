"""A grid killed with SIGKILL (no handler runs, no cleanup) resumes: finished runs are kept and not run again, the
store passes SQLite's integrity check, the killed run is done again, and what the killed process left in the temp
folder (spilled frozen-prefix activations) is removed by the next process."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from peftlab.errors import BadInput
from peftlab.store import Store

# 3 seeds of head with the frozen-prefix cache spilled to disk (--cache-budget-mb 0), so a kill leaves a spill folder
GRID = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "head", "--seeds", "3",
        "--max-train-samples", "24", "--max-eval-samples", "18", "--epochs", "60", "--batch-size", "8",
        "--max-length", "24", "--no-save-model", "--cache-budget-mb", "0", "--quiet"]  # fmt: skip
CLI = [sys.executable, "-c", "from peftlab.cli import entry; entry()"]


def _ok_seeds(store: Path) -> list[int]:
    try:
        return sorted(r.seed for r in Store(store, read_only=True).records() if r.ok)
    except BadInput:  # not there yet, or being created (no runs table yet)
        return []


def test_sigkill_mid_grid_then_resume(tmp_path):
    out, tmp = tmp_path / "cmp", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([*CLI, *GRID, "--out", str(out)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _ok_seeds(out / "peftlab.db") and time.monotonic() < deadline:  # seed 0 is stored ...
        time.sleep(0.2)
    time.sleep(1.0)  # ... and seed 1 is training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = _ok_seeds(out / "peftlab.db")
    assert kept and len(kept) < 3, kept
    spilled = list(tmp.glob("peftlab-cache-*"))
    assert spilled  # what the killed process left
    with sqlite3.connect(out / "peftlab.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    done = subprocess.run([*CLI, *GRID, "--out", str(out), "--resume", "--json"], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["runs_skipped"] == len(kept) and summary["runs_new"] == 3 - len(kept)
    records = Store(out / "peftlab.db").records()
    assert sorted(r.seed for r in records) == [0, 1, 2]  # each seed once: nothing ran twice
    assert not any(p.exists() for p in spilled)  # the resumed process swept the dead one's spill folder
