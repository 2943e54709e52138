"""The SQLite store: records round-trip, and two processes writing at once lose nothing."""

import multiprocessing as mp

from peftlab.store import Store


def _rec(i, status="ok"):
    return {"run_id": f"r{i:04d}", "created_at": f"2026-01-01T00:00:{i % 60:02d}", "status": status, "seed": i,
            "config_hash": f"h{i}", "metrics": {"accuracy": i / 100}}  # fmt: skip


def _writer(path, start, n):
    store = Store(path)
    for i in range(start, start + n):
        store.add(_rec(i))


def test_roundtrip_and_filters(tmp_path):
    s = Store(tmp_path / "a.db")
    s.add(_rec(1))
    s.add(_rec(2, "failed"))
    assert [r["run_id"] for r in s.records()] == ["r0001", "r0002"]
    assert [r["run_id"] for r in s.records(status="failed")] == ["r0002"]
    assert s.succeeded("h1") and not s.succeeded("h2")


def test_two_processes_write_at_once(tmp_path):
    path = str(tmp_path / "b.db")
    Store(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 100, 60)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Store(path).records()) == 120
