"""`peftlab compare --workers N` and `peftlab worker`: a grid queued in Optuna's storage, each point run once by one
worker, a SIGKILLed worker's point picked up again, PostgreSQL as the queue for several machines, bad input in one line."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.store import Store

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--models", "minilm-l6", "--datasets", "vader-tweets", "--max-train-samples", "36", "--max-eval-samples",
        "12", "--max-validation-samples", "15", "--epochs", "1", "--max-length", "24", "--batch-size", "12",
        "--no-save-model", "--threads", "1"]  # fmt: skip


def _compare(out: Path, *extra: str) -> tuple[int, dict]:
    cmd = [sys.executable, "-m", "peftlab", "compare", *TINY, "--out", str(out), "--json", "--quiet", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env())
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": SRC}


def _points(store: Path) -> list[tuple]:
    return sorted((r.method, r.seed, r.status, r.accuracy) for r in Store(store, read_only=True).records())


@pytest.mark.slow
def test_workers_run_each_point_once_and_match_one_worker(tmp_path):
    code1, one = _compare(tmp_path / "one", "--methods", "baseline,head", "--workers", "1")
    code3, three = _compare(tmp_path / "three", "--methods", "baseline,head", "--workers", "3")
    assert code1 == code3 == 0
    # the summary keeps compare's keys and says how it ran; 3 asked, 2 points: 2 start
    keys = {"runs_total", "runs_new", "runs_failed", "runs_skipped", "wall_s", "store", "report", "summary"}
    assert keys <= set(one) and keys <= set(three)
    assert one["parallel"]["workers"] == 1 and three["parallel"]["workers"] == 2
    assert one["runs_new"] == three["runs_new"] == 2 and three["runs_failed"] == 0
    # each point once, and (one thread per worker both times) the same numbers
    a, b = _points(Path(one["store"])), _points(Path(three["store"]))
    assert [p[:3] for p in a] == [("baseline", 0, "ok"), ("head", 0, "ok")] and a == b
    records = Store(three["store"], read_only=True).records()
    workers = {r.parallel.worker for r in records}
    assert 1 <= len(workers) <= 2 and None not in workers  # a fast worker may take both points
    assert all(r.parallel.processes == 1 and r.config["threads"] == 1 for r in records)
    assert all(r.parallel.grid == three["parallel"]["grid"] for r in records)
    # --resume with nothing left to run starts no worker and runs nothing
    code, again = _compare(tmp_path / "three", "--methods", "baseline,head", "--workers", "2", "--resume")
    assert (
        code == 0
        and again["runs_new"] == 0
        and again["runs_skipped"] == 2
        and again["parallel"]["workers"] == 0
    )
    # the report reads several machines' stores as one
    assert (
        main(["report", "--store", one["store"], "--store", three["store"], "--out", str(tmp_path / "r")])
        == 0
    )
    rows = json.loads((tmp_path / "r" / "summary.json").read_text())["rows"]
    assert sorted(r["method"] for r in rows) == [
        "baseline",
        "head",
    ]  # the same points from two stores: one row each


def _queue(tmp_path: Path, storage: str, heartbeat: int = 1):
    """A 2-point grid enqueued as compare --workers would (no worker started)."""
    from peftlab.grid import expand
    from peftlab.workers import create_grid, open_queue

    suite = {"models": "minilm-l6", "datasets": "vader-tweets", "methods": "head", "seeds": 2,
             "max_train_samples": 36, "max_eval_samples": 12, "max_validation_samples": 15, "epochs": 1,
             "max_length": 24, "batch_size": 12, "save_model": False, "threads": 1, "out": str(tmp_path)}  # fmt: skip
    where, shown = open_queue(storage, tmp_path, heartbeat)
    study, waiting = create_grid(
        where, expand(suite), name="g", resume=False, done=set(), extras={}, title="t"
    )
    assert waiting == 2
    return study, shown


# A worker whose training never returns: it claims a point, beats, and sits there until it is killed, so the test
# does not race a fast point (head on cached features can finish both points inside any fixed sleep).
_HANGS = (
    "import sys, time\n"
    "import peftlab.tasks.classification as c\n"
    "c._fit = lambda *a, **k: time.sleep(3600)\n"
    "from peftlab.cli import entry\n"
    "sys.argv = ['peftlab', *sys.argv[1:]]\n"
    "entry()\n"
)


def _worker(storage: str, *extra: str, hangs: bool = False) -> subprocess.Popen:
    start = [sys.executable, "-c", _HANGS] if hangs else [sys.executable, "-m", "peftlab"]
    cmd = [
        *start,
        "worker",
        "--storage",
        storage,
        "--grid",
        "g",
        "--heartbeat",
        "1",
        "--quiet",
        "--json",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


@pytest.mark.slow
def test_a_killed_workers_point_is_run_again(tmp_path):
    import optuna

    from peftlab.workers import point_states

    study, shown = _queue(tmp_path, f"sqlite:///{tmp_path / 'q.db'}")
    first = _worker(shown, hangs=True)
    deadline = time.monotonic() + 300
    while not any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    time.sleep(2.0)  # its heartbeat thread has beaten (Optuna counts only trials that beat once as stale)
    assert first.poll() is None  # still inside its first point
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (
        not (tmp_path / "peftlab.db").exists() or not Store(tmp_path / "peftlab.db", read_only=True).records()
    )
    second = _worker(shown)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="g", storage=optuna.storages.RDBStorage(shown)).trials
    stale = [t for t in trials if t.state.name == "FAIL"]
    assert len(stale) == 1  # the killed worker's trial, failed as stale by the second worker ...
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == stale[0].number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"  # ... and put back, then run
    assert point_states(study) == {0: "COMPLETE", 1: "COMPLETE"}
    records = Store(tmp_path / "peftlab.db", read_only=True).records()
    assert sorted((r.seed, r.status) for r in records) == [(0, "ok"), (1, "ok")]  # each point stored once
    assert json.loads(out)["points_run"] == 2  # the killed one's point and the one it never reached


@pytest.mark.slow
def test_postgres_queue_two_workers_each_point_once(postgres, tmp_path):
    """Workers on several machines share a PostgreSQL queue; each writes its own store, the report merges them."""
    _queue(tmp_path, postgres, heartbeat=5)
    procs = [_worker(postgres, "--store", str(tmp_path / f"m{i}.db")) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sum(json.loads(o[0])["points_run"] for o in outs) == 2
    records = [r for i in range(2) if (tmp_path / f"m{i}.db").exists()
               for r in Store(tmp_path / f"m{i}.db", read_only=True).records()]  # fmt: skip
    assert sorted((r.seed, r.status) for r in records) == [(0, "ok"), (1, "ok")]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--workers", "0"], "--workers 0"),
        (["--workers", "two"], "--workers 'two'"),
        (["--workers", "2", "--heartbeat", "0"], "--heartbeat 0"),
        (["--workers", "2", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage"),
        (["--workers", "2", "--storage", "queue.journal"], "heartbeat"),
        (["--storage", "sqlite:///q.db"], "add --workers N"),
    ],
)
def test_bad_input_is_one_line_and_quick(args, expect, tmp_path, capsys):
    started = time.monotonic()
    assert main(["compare", *TINY, "--methods", "head", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert time.monotonic() - started < 30


def test_worker_for_an_unknown_grid_is_bad_input(tmp_path, capsys):
    assert main(["worker", "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--grid", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--grid nope" in err and len(err.splitlines()) == 1


def test_old_records_read_without_a_parallel_section():
    from peftlab.record import Record

    old = Record.from_dict({"run_id": "x", "status": "ok"})
    assert old.parallel is None and "parallel" in old.to_dict()
    new = Record.from_dict({"run_id": "y", "parallel": {"processes": 2, "worker": "h:1"}})
    assert new.parallel.processes == 2 and new.to_dict()["parallel"] == {"processes": 2, "worker": "h:1"}
