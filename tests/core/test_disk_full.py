"""Running out of disk: on a real tiny filesystem (a tmpfs of a few MiB, mounted where the test may), else on a write
patched to fail with ENOSPC. A run that cannot save is refused before training when the space is known to be short;
when the disk fills during the run, the run is stored as failed with the reason, the store stays intact, and no cache
or artifact is left half-written."""

import errno
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from peftlab import disk
from peftlab.cli import main
from peftlab.store import Store

RUN = ["run", "--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "12",
       "--max-eval-samples", "9", "--epochs", "1", "--quiet"]  # fmt: skip


@pytest.fixture
def tiny_disk(tmp_path):
    """A 6 MiB filesystem: a tmpfs where mounting is allowed (root), else the test is skipped with the reason."""
    where = tmp_path / "tiny"
    where.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if got.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({got.stderr.strip() or 'mount failed'}); the patched tests cover it"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave_bytes: int) -> None:
    """Fill the filesystem of `folder` until only `leave_bytes` are free."""
    with open(folder / "filler", "wb") as f:
        room = disk.free_bytes(folder) - leave_bytes
        while room > 0:
            chunk = min(room, 2**20)
            f.write(b"\0" * chunk)
            room -= chunk


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith("peftlab-cache-")
    )


def test_too_little_space_for_the_model_is_refused_before_training(tiny_disk, tmp_path, capsys, monkeypatch):
    import peftlab.tasks.classification as classification

    monkeypatch.setattr(classification, "_fit", lambda *a, **k: pytest.fail("training started"))
    store = tmp_path / "s.db"
    # full fine-tuning saves all 22.7 M float32 weights (~87 MiB): 6 MiB cannot hold them
    assert main([*RUN, "--method", "full", "--out", str(tiny_disk), "--store", str(store)]) == 2
    err = _err(capsys)
    assert "--out" in err and "MiB free" in err and err.strip().count("\n") == 0
    assert not store.exists() or Store(store).records() == []


def test_disk_filling_during_the_save_is_a_failed_run_with_its_reason(
    tiny_disk, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(
        disk, "check_free", lambda *a, **k: None
    )  # the disk fills after the pre-training check
    store = tmp_path / "s.db"
    assert main([*RUN, "--method", "head", "--out", str(tmp_path / "ok"), "--store", str(store)]) == 0
    assert main([*RUN, "--method", "full", "--out", str(tiny_disk), "--store", str(store)]) == 1
    assert "the disk is full" in _err(capsys)
    ok, failed = Store(store).records()
    assert ok.status == "ok" and failed.status == "failed"
    assert "disk is full" in failed.error and "--out" in failed.error
    run_dir = tiny_disk / failed.run_id
    assert (run_dir / "record.json").is_file()  # the record fits, the model did not
    assert not (run_dir / "model").exists()  # no folder that would not load
    assert _leftovers(tiny_disk) == []
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_store_on_a_full_disk_stops_with_one_line_and_stays_intact(tiny_disk, tmp_path, capsys):
    store = tiny_disk / "s.db"
    assert main([*RUN, "--method", "head", "--out", str(tmp_path / "o"), "--store", str(store)]) == 0
    _fill(tiny_disk, 0)
    assert (
        main([*RUN, "--method", "head", "--seed", "1", "--out", str(tmp_path / "o"), "--store", str(store)])
        == 1
    )
    err = _err(capsys)
    assert "could not take this run" in err and "record.json" in err
    (tiny_disk / "filler").unlink()
    (only,) = Store(store).records()  # the first run is still there; the second is in its record.json
    assert only.seed == 0


def test_compare_stops_at_a_full_disk_and_resumes(tiny_disk, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(disk, "check_free", lambda *a, **k: None)
    store = tmp_path / "s.db"
    grid = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "lora,full",
            "--max-train-samples", "12", "--max-eval-samples", "9", "--epochs", "1", "--quiet",
            "--store", str(store)]  # fmt: skip
    assert main([*grid, "--out", str(tiny_disk)]) == 1
    err = _err(capsys)
    assert "the disk is full" in err and "--resume" in err
    statuses = sorted(r.status for r in Store(store).records())
    assert statuses == [
        "failed",
        "ok",
    ]  # lora (a small adapter) finished, full failed; the grid stopped there
    assert main([*grid, "--out", str(tmp_path / "roomy"), "--resume"]) == 0
    assert sorted(r.status for r in Store(store).records()) == ["failed", "ok", "ok"]


def _enospc(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_patched_full_disk_during_save(tmp_path, capsys, monkeypatch):
    """The same promise where no tmpfs can be mounted: the weights file is half-written, then ENOSPC."""
    import peft.peft_model
    import safetensors.torch

    def half_then_full(tensors, filename, *a, **k):
        Path(filename).write_bytes(b"\0" * 1000)
        _enospc(filename)

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full)
    monkeypatch.setattr(peft.peft_model, "safe_save_file", half_then_full)  # peft's own binding of it
    store = tmp_path / "s.db"
    assert main([*RUN, "--method", "lora", "--out", str(tmp_path / "o"), "--store", str(store)]) == 1
    (failed,) = Store(store).records()
    assert failed.status == "failed" and "disk is full" in failed.error
    assert not (tmp_path / "o" / failed.run_id / "adapter").exists()
    assert (tmp_path / "o" / failed.run_id / "record.json").is_file()


def test_embedding_cache_on_a_full_disk_leaves_no_half_entry(tmp_path, monkeypatch):
    from peftlab.tasks.vqa import cache

    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path / "c"))
    keys = [f"k{i}" for i in range(50)]
    vectors = torch.randn(50, 16)

    def compute(idx):
        return vectors[idx]

    def embed():
        return cache.cached_embed({"t": 1}, keys, compute, desc="x", unit="x", progress=False, batch=50)

    real_save = torch.save

    def half_then_full(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half")
        _enospc(f)

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OSError) as e:
        embed()
    assert disk.is_full(e.value)
    assert list((tmp_path / "c" / "embeddings").iterdir()) == []  # neither the entry nor its temporary file
    monkeypatch.setattr(torch, "save", real_save)
    got = embed()
    assert got.computed == 50 and torch.equal(got.vectors, vectors)
    assert embed().cached == 50


def test_prefix_cache_spill_on_a_full_disk_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import peftlab.tasks.classification as classification

    monkeypatch.setattr(classification, "_fit", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, off, n: _enospc("spill"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = [*RUN, "--method", "head", "--cache-budget-mb", "0", "--out", str(tmp_path / "o")]
    assert main([*args, "--store", str(tmp_path / "s.db")]) == 2
    err = _err(capsys)
    assert "--cache-budget-mb" in err and "frozen-prefix cache" in err
    assert _leftovers(tmp_path) in ([], [p.name for p in tmp_path.glob("peftlab-cache-*")])
    assert not list(tmp_path.glob("peftlab-cache-*/*.f32"))  # no half-reserved file


def test_what_killed_processes_left_is_swept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f"peftlab-cache-{dead_pid}-abc").mkdir()
    (tmp_path / f"peftlab-cache-{dead_pid}-abc" / "x.f32").write_bytes(b"\0" * 10)
    (tmp_path / f"peftlab-cache-{os.getppid()}-live").mkdir()  # a live process's folder stays
    (tmp_path / f"entry.pt.tmp{dead_pid}").write_bytes(b"half")
    (tmp_path / "peftlab-cache-notapid").mkdir()
    removed = disk.sweep_stale(tmp_path, "peftlab-cache-") + disk.sweep_stale(tmp_path, "entry.pt.tmp")
    assert sorted(p.name for p in removed) == sorted(
        [f"peftlab-cache-{dead_pid}-abc", f"entry.pt.tmp{dead_pid}"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"peftlab-cache-{os.getppid()}-live", "peftlab-cache-notapid"]
    )
