"""The SQLite store: records round-trip, and two processes writing at once lose nothing."""

import multiprocessing as mp

from peftlab.record import Record
from peftlab.store import Store


def _rec(i, status="ok"):
    return {"run_id": f"r{i:04d}", "created_at": f"2026-01-01T00:00:{i % 60:02d}", "status": status, "seed": i,
            "method": "head", "config": {"method": "head", "lr": i / 1000}, "metrics": {"accuracy": i / 100}}  # fmt: skip


def _writer(path, start, n):
    store = Store(path)
    for i in range(start, start + n):
        store.add(_rec(i))


def test_roundtrip_and_filters(tmp_path):
    s = Store(tmp_path / "a.db")
    s.add(_rec(1))
    s.add(_rec(2, "failed"))
    assert [r.run_id for r in s.records()] == ["r0001", "r0002"]
    assert [r.run_id for r in s.records(status="failed")] == ["r0002"]
    ok, failed = (Record.from_dict(_rec(i)) for i in (1, 2))
    assert s.finished() == {(ok.identity, 1)} and failed.identity != ok.identity  # only successes are skipped
    assert s.records()[0].to_dict() == Record.from_dict(_rec(1)).to_dict()  # the JSON round-trips


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
