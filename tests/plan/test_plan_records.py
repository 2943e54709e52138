"""A run's own memory (above the process's level when it began) and its `predicted` section: measured, stored, read back
(older records included), and shown by the report as predicted / measured per run."""

import copy

import numpy as np

from peftlab.record import Memory, Record
from peftlab.report import write_report
from peftlab.train.measure import PeakMemory
from report.conftest import make_records


def test_own_peak_is_what_the_block_adds_not_the_process():
    keep = np.ones(64 * 2**20 // 8)  # 64 MiB the process holds before the block: not the block's
    with PeakMemory() as mem:
        work = np.ones(96 * 2**20 // 8)  # 96 MiB the block allocates and touches
        work[::512] += 1
        del work
    assert keep.sum() > 0
    assert mem.start_mb > 64
    assert 80 <= mem.own_peak_mb <= 130, mem.section()  # the block's 96 MiB, give or take the sampler's grain
    assert mem.peak_mb >= mem.start_mb + mem.own_peak_mb - 1
    s = mem.section()
    assert set(s) >= {"peak_rss_mb", "run_peak_mb", "start_rss_mb"} and "peak_gpu_mb" not in s  # no GPU here


def with_predictions(records: list[dict]) -> list[dict]:
    """The report fixtures with a run's own peak and a prediction: ratios 1.2 (time) and 0.9 (memory), except
    lora on fashion-mini, predicted 2× too slow."""
    out = copy.deepcopy(records)
    for r in out:
        if r["status"] != "ok":
            continue
        own = r["memory"]["peak_rss_mb"] - 500
        r["memory"]["run_peak_mb"] = own
        slow = 2.0 if (r["dataset"], r["method"]) == ("fashion-mini", "lora") else 1.2
        r["predicted"] = {"train_s": r["time"]["train_s"] * slow, "eval_s": 0.5, "peak_mb": 0.9 * own,
                          "flops": 10**12, "machine": "calibrated"}  # fmt: skip
    return out


def test_predicted_round_trips_and_older_records_read_without_it():
    rec = with_predictions(make_records())[0]
    r = Record.from_dict(rec)
    assert r.predicted.train_s == rec["predicted"]["train_s"] and r.predicted.extra == {
        "machine": "calibrated"
    }
    assert r.to_dict()["predicted"] == rec["predicted"]
    assert r.memory.own_mb == rec["memory"]["run_peak_mb"]
    old = make_records()[0]  # before the plan: no predicted, no run_peak_mb
    o = Record.from_dict(old)
    assert (
        o.predicted is None and "predicted" not in o.to_dict() and "run_peak_mb" not in o.to_dict()["memory"]
    )
    assert o.memory.own_mb == old["memory"]["peak_rss_mb"]  # the only figure such a record has
    assert Memory(peak_rss_mb=900.0, run_peak_mb=120.5).to_dict() == {
        "peak_rss_mb": 900.0,
        "run_peak_mb": 120.5,
    }


def test_report_shows_predicted_vs_measured_per_run(tmp_path):
    out = write_report(with_predictions(make_records()), tmp_path)
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    section = md.split("## Time and memory: predicted vs measured")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "bert-tiny" in line]
    assert len(rows) == 18  # every ok run, one row each
    assert all(
        "1.2×" in row and "0.9×" in row for row in rows if "fashion-mini | bert-tiny | lora" not in row
    )
    assert "train time: 15 of 18 runs within ±25%, the worst 2.00× (lora seed 0)" in section
    assert "peak memory: 18 of 18 runs within ±25%" in section
    assert "Time and memory: predicted vs measured" in html and "2×" in html
    lora = next(r for r in out["summary"] if (r["dataset"], r["label"]) == ("fashion-mini", "lora"))
    assert abs(lora["time_ratio_mean"] - 2.0) < 1e-9 and abs(lora["memory_ratio_mean"] - 0.9) < 1e-9
    assert lora["run_peak_mb_mean"] == 821.0 - 500  # the run's own, leaderboard and plot use it


def test_report_of_records_without_predictions_says_so(tmp_path):
    write_report(make_records(), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "No run of this store holds a prediction (records before `peftlab plan`)." in md
