"""Synthetic run records for the report tests: 2 datasets × 3 methods × 3 seeds, plus one failed run.

`make_records()` builds them with hand-picked accuracies so the expected leader, gaps and fronts are known.
"""

from __future__ import annotations

import pytest

from peftlab.report import write_report

TOTAL = 4_386_178  # a bert-tiny-sized backbone + 2-class head
# method -> (trainable params, train seconds per seed, peak RSS MB)
COST = {"head": (258, 1.2, 700.0), "lora": (12_546, 5.0, 820.0), "full": (TOTAL, 12.0, 1400.0)}
# dataset -> method -> per-seed accuracy (seeds 0, 1, 2)
ACC = {
    "sst2-mini": {"head": [0.70, 0.72, 0.71], "lora": [0.84, 0.85, 0.83], "full": [0.845, 0.83, 0.85]},
    "fashion-mini": {"head": [0.75, 0.76, 0.74], "lora": [0.80, 0.79, 0.81], "full": [0.86, 0.85, 0.87]},
}
BASELINE = {"sst2-mini": 0.50, "fashion-mini": 0.10}
FAILED_ERROR = (
    "Traceback (most recent call last):\n  ...\nRuntimeError: shape mismatch <head> & 'lora' (8 vs 16)"
)


def _breakdown(method: str, trainable: int) -> list[dict]:
    # components sum to TOTAL params; trainable sums to the method's trainable count
    head, lora = 258, 12_546 - 258
    comps = [
        {"component": "embeddings", "params": 1_000_000, "trainable": 0, "formula": "V·d + P·d"},
        {
            "component": "encoder",
            "params": TOTAL - 1_000_000 - head,
            "trainable": 0,
            "formula": "L·(4d² + 2d·ff)",
        },
        {"component": "classifier", "params": head, "trainable": head, "formula": "d·K + K"},
    ]
    if method == "full":
        for c in comps:
            c["trainable"] = c["params"]
    if method == "lora":
        comps[1] = dict(comps[1], params=comps[1]["params"] - lora)
        comps.append({"component": "lora A/B", "params": lora, "trainable": lora, "formula": "L·2·r·(d+d)"})
    assert sum(c["trainable"] for c in comps) == trainable
    return comps


def make_records() -> list[dict]:
    """18 ok records + 1 failed; lora on fashion-mini has a deliberate predicted-vs-measured mismatch (+2)."""
    records = []
    for d_i, (dataset, by_method) in enumerate(ACC.items()):
        task = "text-classification" if dataset.startswith("sst2") else "image-classification"
        for method, accs in by_method.items():
            trainable, train_s, rss = COST[method]
            for seed, acc in enumerate(accs):
                predicted = trainable + (2 if (dataset, method) == ("fashion-mini", "lora") else 0)
                records.append(
                    {
                        "run_id": f"{dataset}-{method}-{seed}",
                        "status": "ok",
                        "error": None,
                        "created_at": f"2025-01-0{d_i + 1}T10:{len(records):02d}:00+00:00",
                        "task": task,
                        "model": "bert-tiny",
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "config": {
                            "epochs": 3,
                            "lr": 1e-3,
                            "batch_size": 32,
                            "max_train_samples": 2000,
                            "seed": seed,
                        },
                        "metrics": {
                            "accuracy": acc,
                            "macro_f1": acc - 0.01,
                            "macro_recall": acc - 0.005,
                            "per_class": {
                                "pos": {"precision": acc, "recall": acc, "f1": acc, "support": 250}
                            },
                        },
                        "baseline_metrics": {
                            "accuracy": BASELINE[dataset],
                            "macro_f1": 0.3,
                            "macro_recall": 0.5,
                        },
                        "params": {
                            "trainable": trainable,
                            "total": TOTAL,
                            "trainable_pct": 100.0 * trainable / TOTAL,
                            "predicted_trainable": predicted,
                            "predicted_total": TOTAL,
                            "match": predicted == trainable,
                            "breakdown": _breakdown(method, trainable),
                        },
                        "time": {
                            "train_s": train_s * (1 + 0.05 * seed),
                            "eval_s": 0.4,
                            "train_samples_per_s": 2000 * 3 / (train_s * (1 + 0.05 * seed)),
                            "wall_s": train_s + 2,
                        },
                        "memory": {"peak_rss_mb": rss + seed},
                        "data": {
                            "train_size": 2000,
                            "eval_size": 500,
                            "num_labels": 2,
                            "label_names": ["neg", "pos"],
                            "source": f"packaged:{dataset}",
                            "notes": "first 2000 of the train split",
                        },
                        "env": {
                            "python": "3.11.2",
                            "torch": "2.5.1",
                            "transformers": "5.0.0",
                            "peft": "0.17.0",
                            "datasets": "3.1.0",
                            "accelerate": "1.2.0",
                            "peftlab": "0.1.0",
                            "git_commit": "02bf9ef",
                            "cpu": "2 cores",
                            "gpu": None,
                            "platform": "Linux",
                            "hostname": "test-host",
                        },
                        "artifacts": {"dir": f"runs/{dataset}-{method}-{seed}"},
                    }
                )
    records.append(
        {
            "run_id": "sst2-mini-lora-3",
            "status": "failed",
            "error": FAILED_ERROR,
            "created_at": "2025-01-03T09:00:00+00:00",
            "task": "text-classification",
            "model": "bert-tiny",
            "dataset": "sst2-mini",
            "method": "lora",
            "seed": 3,
            "config": {"epochs": 3, "lr": 1e-3, "seed": 3},
            "metrics": None,
            "baseline_metrics": None,
            "params": None,
            "time": None,
            "memory": None,
            "data": None,
            "env": {"python": "3.11.2", "torch": "2.5.1", "git_commit": "02bf9ef", "hostname": "test-host"},
            "artifacts": {"dir": "runs/failed"},
        }
    )
    return records


@pytest.fixture
def records() -> list[dict]:
    return make_records()


@pytest.fixture(scope="session")
def written(tmp_path_factory) -> dict:
    """write_report run once for the whole session: {"out": dir, "result": return value, "html": text, "md": text}."""
    out = tmp_path_factory.mktemp("report")
    result = write_report(make_records(), out, title="test <report>")
    return {
        "out": out,
        "result": result,
        "html": (out / "report.html").read_text(encoding="utf-8"),
        "md": (out / "report.md").read_text(encoding="utf-8"),
    }
