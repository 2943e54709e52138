"""Run identity (config.identity): the store, --resume and the report agree on what one experiment is.

A rank sweep stays a rank sweep in the report, and a store written by the previous release (tests/fixtures, from
main at e97fbb2: the dict-literal record, VQA runs named "vqa-concat", no validation split) opens, reports and
resumes.
"""

import json
import shutil
from pathlib import Path

from peftlab import config
from peftlab.cli import main
from peftlab.record import Record
from peftlab.report import summarize, write_report
from peftlab.store import Store

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store-v0.1.0-e97fbb2.db"
TEXT = {"model": "minilm-l6", "dataset": "vader-tweets", "max_train_samples": 40, "max_eval_samples": 30}


def _record(seed: int, accuracy: float, **settings) -> Record:
    cfg = config.load({**TEXT, "seed": seed, **settings})
    record = Record.start(cfg, env={})
    record.run_id, record.status = f"{record.label}-s{seed}".replace(" ", "_"), "ok"
    record.metrics = record.baseline_metrics = Record.nested["metrics"](accuracy=accuracy)
    return record


def test_a_rank_sweep_is_one_row_per_rank_and_drops_nothing(tmp_path):
    store = Store(tmp_path / "sweep.db")
    seeds = {4: [0, 1, 2], 8: [0, 1], 16: [0]}
    for r, ss in seeds.items():
        for s in ss:
            store.add(_record(s, 0.5 + r / 100 + s / 1000, method="lora", lora_r=r))
    rows = {row["label"]: row for row in summarize(store.records())}
    assert set(rows) == {"lora r=4", "lora", "lora r=16"}  # r=8 is the default: plain "lora"
    for r, label in ((4, "lora r=4"), (8, "lora"), (16, "lora r=16")):
        assert rows[label]["seeds"] == seeds[r] and rows[label]["n_seeds"] == len(seeds[r])
        assert rows[label]["duplicates_dropped"] == 0
    assert sum(row["n_runs"] for row in rows.values()) == 6  # every stored run is in the report
    report = write_report(store.records(), tmp_path / "rep")
    md = Path(report["markdown"]).read_text()
    assert "lora r=4" in md and "lora r=16" in md
    # the three ranks differ in one knob only: the report lines them up against it
    assert "sweep of --lora-r" in md and "4: n=3, 8: n=2, 16: n=1" in md
    assert list((tmp_path / "rep" / "plots").glob("*sweep-minilm-l6-lora-lora-r*.png"))


def test_the_previous_release_store_opens_reports_and_resumes(tmp_path, capsys):
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)  # opening switches the file to WAL: never touch the fixture itself
    records = Store(db).records()
    assert len(records) == 11 and sum(r.ok for r in records) == 10
    vqa = next(r for r in records if r.task == "vqa")
    assert (vqa.method, vqa.config["fusion"]) == ("head", "concat")  # "vqa-concat" read as the head method
    rows = {(row["dataset"], row["label"]): row for row in summarize(records)}
    assert (
        rows[("vader-tweets", "lora")]["n_seeds"] == 2 and rows[("vader-tweets", "lora r=4")]["n_seeds"] == 2
    )
    assert rows[("easy-vqa", "head")]["n_seeds"] == 1 and len(rows) == 6

    assert main(["report", "--store", str(db), "--out", str(tmp_path / "rep")]) == 0
    assert "lora r=4" in (tmp_path / "rep" / "report.md").read_text()
    capsys.readouterr()
    # the same grid as the one stored: the stored runs predate the validation split (they trained on another subset of
    # the training pool), so --resume runs them again, and the report keeps old and new apart
    grid = ["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "lora,lora:r=4",
            "--seeds", "2", "--epochs", "1", "--max-train-samples", "40", "--max-eval-samples", "30",
            "--max-length", "32", "--no-save-model", "--out", str(tmp_path), "--store", str(db), "--resume",
            "--json", "--quiet"]  # fmt: skip
    assert main(grid) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["runs_new"], summary["runs_skipped"]) == (4, 0)
    labels = {r["label"] for r in summary["summary"] if r["dataset"] == "vader-tweets"}
    assert {"lora data_splits=train/test", "lora data_splits=train/validation/test"} <= labels
    assert main(grid) == 0  # and now the grid is complete
    assert json.loads(capsys.readouterr().out)["runs_skipped"] == 4
