"""`peftlab demo`: the grid `make demo` runs, over two single-thread workers by default on a machine with two cores
(docs/bench.md measured that a win), one process with --workers 1, bad --workers in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.grid import _demo_workers
from peftlab.store import Store

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_default_workers_follow_the_cores(monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2)
    assert _demo_workers(None) == 2
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 1)
    assert _demo_workers(None) == 1
    assert _demo_workers("3") == 3


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_workers_is_one_line(value, tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--workers", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers" in err and not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["2", "1"])
def test_quick_demo_runs_its_grid(workers, tmp_path):
    import os

    cmd = [sys.executable, "-m", "peftlab", "demo", "--quick", "--out", str(tmp_path), "--workers", workers]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": SRC}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 new runs (0 failed)" in done.stdout and (tmp_path / "report.html").exists()
    records = Store(tmp_path / "peftlab.db", read_only=True).records()
    assert sorted((r.method, r.seed) for r in records) == [
        (m, s) for m in ("baseline", "head", "lora") for s in (0, 1)
    ]
    workers_seen = {r.parallel.worker for r in records}
    if workers == "1":
        assert workers_seen == {None}  # the one-process grid
    else:
        assert None not in workers_seen and all(r.config["threads"] == 1 for r in records)
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"baseline", "head", "lora"}
