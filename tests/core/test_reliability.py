"""Failures found before training, not after: unwritable output places, files that are not stores, stores from a
newer version (refused, never rewritten). Each is one line on stderr and exit 2."""

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.store import VERSION, Store

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store-v0.1.0-e97fbb2.db"
RUN = ["run", "--model", "minilm-l6", "--dataset", "vader-tweets", "--method", "head", "--max-train-samples", "12",
       "--max-eval-samples", "9", "--epochs", "1", "--quiet"]  # fmt: skip


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    return err


def test_out_under_a_file_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import peftlab.tasks.classification as classification

    monkeypatch.setattr(classification, "_fit", lambda *a, **k: pytest.fail("training started"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*RUN, "--out", str(afile / "x"), "--store", str(tmp_path / "s.db")]) == 2
    assert "--out" in _one_line(capsys)
    assert main([*RUN, "--out", str(tmp_path / "o"), "--store", str(afile / "s.db")]) == 2
    assert "--store" in _one_line(capsys)
    grid = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "head", "--quiet"]
    assert main([*grid, "--out", str(afile / "x")]) == 2
    assert "--out" in _one_line(capsys)
    shutil.copy(FIXTURE, tmp_path / "old.db")
    assert (
        main(["report", "--store", str(tmp_path / "old.db"), "--out", str(afile)]) == 2
    )  # found by the fuzz test
    assert "--out" in _one_line(capsys)


@pytest.mark.parametrize("kind", ["text", "sqlite-without-runs"])
def test_report_on_a_file_that_is_not_a_store(kind, tmp_path, capsys):
    path = tmp_path / "not.db"
    if kind == "text":
        path.write_text("hello, not a database\n" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE other (x)")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep")]) == 2
    assert "not a peftlab results store" in _one_line(capsys)
    assert main([*RUN, "--out", str(tmp_path / "o"), "--store", str(path)]) == 2  # and no run writes into it
    assert "not a peftlab results store" in _one_line(capsys)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_newer_store_is_refused_and_left_untouched(tmp_path, capsys):
    path = tmp_path / "newer.db"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={VERSION + 1}")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep")]) == 2
    assert "newer peftlab" in _one_line(capsys)
    with pytest.raises(Exception, match="newer peftlab"):
        Store(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_stores_record_their_version_and_report_reads_without_writing(tmp_path):
    new = Store(tmp_path / "new.db")
    with sqlite3.connect(new.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    old = tmp_path / "old.db"
    shutil.copy(FIXTURE, old)
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    assert len(Store(old, read_only=True).records()) == 11  # the previous release's store, version 0
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before  # reading it wrote nothing


def _writer(path: str, n: int) -> None:
    store = Store(path)
    for i in range(n):
        store.add({"run_id": f"w{i:04d}", "created_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}", "status": "ok",
                   "seed": i, "method": "head", "config": {"method": "head"}, "metrics": {"accuracy": 0.5}})  # fmt: skip


def test_report_reads_consistently_while_another_process_writes(tmp_path):
    import multiprocessing as mp

    path = str(tmp_path / "busy.db")
    Store(path)
    writer = mp.get_context("spawn").Process(target=_writer, args=(path, 300))
    writer.start()
    seen = []
    while writer.is_alive() or len(seen) < 3:
        records = Store(path, read_only=True).records()  # every read is a committed state: whole records only
        assert all(r.metrics.accuracy == 0.5 for r in records)
        seen.append(len(records))
        if not writer.is_alive() and len(seen) >= 3:
            break
    writer.join(60)
    assert writer.exitcode == 0
    assert (
        seen == sorted(seen) and len(Store(path, read_only=True).records()) == 300
    )  # never goes back, nothing lost


def test_an_unwritable_cache_folder_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("PEFTLAB_CACHE", str(afile / "cache"))
    vqa = ["run", "--task", "vqa", "--dataset", "fashion-vqa", "--image-encoder", "mobilenet-v2", "--text-encoder",
           "minilm-l6", "--max-train-samples", "20", "--max-eval-samples", "10", "--epochs", "1", "--quiet"]  # fmt: skip
    image = ["run", "--model", "mobilenet-v2", "--dataset", "sklearn-digits", "--method", "head",
             "--max-train-samples", "20", "--max-eval-samples", "10", "--epochs", "1", "--quiet"]  # fmt: skip
    for argv in (vqa, image):
        assert main([*argv, "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s.db")]) == 2
        assert "set PEFTLAB_CACHE to a writable folder" in _one_line(capsys)
    assert not (tmp_path / "s.db").exists() or Store(tmp_path / "s.db").records() == []


def test_tune_refuses_flags_it_would_ignore(tmp_path, capsys):
    """Trials store no runs, models or tracker logs: --store, --save-model and --report-to would be silently unused."""
    tune = ["tune", "--model", "minilm-l6", "--dataset", "vader-tweets", "--method", "head", "--trials", "1",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*tune, "--store", str(tmp_path / "s.db")]) == 2
    assert "--store: tune stores no runs" in _one_line(capsys)
    assert main([*tune, "--no-save-model", "--report-to", "mlflow"]) == 2
    assert "--save-model, --report-to" in _one_line(capsys)
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "o").exists()


def test_a_grid_pairing_a_model_with_a_dataset_of_another_task_stops_before_any_run(
    tmp_path, capsys, monkeypatch
):
    """Found on main: the grid ran minilm-l6's point, then stopped at mobilenet-v2 on a text dataset."""
    import peftlab.tasks.classification as classification

    monkeypatch.setattr(classification, "_fit", lambda *a, **k: pytest.fail("training started"))
    grid = ["compare", "--models", "minilm-l6,mobilenet-v2", "--datasets", "vader-tweets", "--methods", "head",
            "--max-train-samples", "12", "--max-eval-samples", "9", "--out", str(tmp_path / "o"), "--quiet"]  # fmt: skip
    assert main(grid) == 2
    assert (
        "mobilenet-v2 on vader-tweets: 'mobilenet-v2' (mobilenet_v2) is not a text classifier"
        in _one_line(capsys)
    )
    assert not (tmp_path / "o" / "peftlab.db").exists()


def test_a_missing_model_folder_is_refused_before_the_data_loads(tmp_path, capsys, monkeypatch):
    import peftlab.tasks.classification as classification

    monkeypatch.setattr(classification, "_load", lambda *a, **k: pytest.fail("the data was loaded"))
    run = [a if a != "minilm-l6" else str(tmp_path / "no-such-model") for a in RUN]
    assert main([*run, "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in _one_line(capsys)
