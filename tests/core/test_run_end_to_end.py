"""`peftlab run` on the real packaged models with tiny inputs: the record, determinism, reload, failure, Ctrl-C."""

import json

import pytest

from peftlab import config
from peftlab.cli import main
from peftlab.run import run_experiment
from peftlab.store import Store

TEXT = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "48", "--max-eval-samples", "30",
        "--epochs", "1", "--batch-size", "16", "--max-length", "32"]  # fmt: skip


def _run_json(args, tmp_path, capsys):
    code = main(["run", *args, "--out", str(tmp_path), "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_json_record_has_the_design_keys(tmp_path, capsys):
    rec = _run_json([*TEXT, "--method", "head"], tmp_path, capsys)
    for key in ("run_id", "status", "task", "model", "dataset", "method", "seed", "metrics", "baseline_metrics",
                "params", "time", "memory", "artifacts"):  # fmt: skip
        assert key in rec
    assert rec["status"] == "ok" and rec["task"] == "text-classification"
    for k in ("accuracy", "macro_f1", "macro_recall"):
        assert 0 <= rec["metrics"][k] <= 1 and k in rec["baseline_metrics"]
    assert set(rec["metrics"]["per_class"]) == {"negative", "neutral", "positive"}
    p = rec["params"]
    assert p["trainable"] == 384 * 3 + 3  # the mean-pooled head: Linear(384 -> 3)
    assert p["total"] > 22_000_000 and p["trainable_pct"] < 0.01
    for k in ("predicted_trainable", "predicted_total"):
        assert k in p
    for k in ("train_s", "eval_s", "train_samples_per_s"):
        assert rec["time"][k] is not None
    assert rec["memory"]["peak_rss_mb"] > 100
    # the metrics come from the test split; validation is carved from train (10% of each class), capped like test
    assert rec["metrics_split"] == "test"
    d = rec["data"]
    assert (d["train_size"], d["validation_size"], d["test_size"], d["eval_size"]) == (48, 30, 30, 30)
    assert d["full_sizes"] == {"train": 3024, "validation": 336, "eval": 840}
    stored = Store(tmp_path / "peftlab.db").records()
    assert [r.run_id for r in stored] == [rec["run_id"]]
    assert stored[0].config["method"] == "head" and stored[0].env["torch"]
    assert stored[0].public() == rec  # the store and --json hold the same record


def test_validation_is_encoded_only_when_asked(tmp_path, monkeypatch):
    import peftlab.tasks.classification as exp
    from peftlab.models import load_model
    from peftlab.train import evaluate

    encoded = []
    real = exp._encode

    def counting(split, loaded, cfg):
        encoded.append(len(split.labels))
        return real(split, loaded, cfg)

    monkeypatch.setattr(exp, "_encode", counting)
    cfg = config.load(dict(model="minilm-l6", dataset="vader-tweets", method="head", max_train_samples=12,
                           max_eval_samples=9, max_validation_samples=6, epochs=1, max_length=16,
                           save_model=False, out=str(tmp_path)))  # fmt: skip
    memo: dict = {}
    rec = run_experiment(cfg, progress=False, memo=memo)
    assert encoded == [12, 9]  # train and test only: a plain run never encodes validation
    assert rec.data.validation_size == 6 and rec.metrics_split == "test"
    data = exp._load(cfg, memo)
    loaded = load_model(cfg.model, data.task, data.label_names)
    val = exp.validation_inputs(cfg, data, loaded, memo)
    assert len(val) == 6 and encoded == [12, 9, 6]
    assert exp.validation_inputs(cfg, data, loaded, memo) is val and encoded == [12, 9, 6]  # memo: once
    # with the run's frozen-prefix plan (head trains no block): the cached activations give the same scores
    from peftlab.methods import REGISTRY, Context
    from peftlab.train.cache import plan_prefix, skip_prefix

    model = REGISTRY["head"].prepare(loaded.model, loaded.anatomy, cfg.knobs, Context(cfg.task, 1))
    plan = plan_prefix(model, loaded.anatomy, val)
    assert plan is not None
    cached = exp.validation_inputs(cfg, data, loaded, memo, plan=plan)
    plain = evaluate(model, val, 8, data.label_names)
    with skip_prefix(plan) as fwd:
        through_cache = evaluate(model, cached, 8, data.label_names, forward=fwd.logits)
    assert sum(c["support"] for c in plain["per_class"].values()) == 6
    assert through_cache["accuracy"] == plain["accuracy"] and encoded == [12, 9, 6]


def test_same_seed_same_metrics(tmp_path, capsys):
    a = _run_json([*TEXT, "--method", "lora", "--seed", "3", "--no-save-model"], tmp_path / "a", capsys)
    b = _run_json([*TEXT, "--method", "lora", "--seed", "3", "--no-save-model"], tmp_path / "b", capsys)
    assert a["metrics"] == b["metrics"] and a["time"]["final_loss"] == b["time"]["final_loss"]


@pytest.mark.parametrize("method", ["last-layer", "lora"])
def test_image_run_on_packaged_mobilenet(method, tmp_path, capsys):
    rec = _run_json(
        ["--model", "mobilenet-v2", "--dataset", "fashion-mnist", "--method", method, "--max-train-samples", "40",
         "--max-eval-samples", "20", "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--no-save-model"],
        tmp_path, capsys,
    )  # fmt: skip
    assert rec["task"] == "image-classification" and rec["data"]["num_labels"] == 10
    assert 0 < rec["params"]["trainable"] < rec["params"]["total"]


def test_failed_run_is_stored_and_exit_1(tmp_path, capsys, monkeypatch):
    import peftlab.tasks.classification as exp

    def boom(*a, **k):
        raise RuntimeError("simulated crash in training")

    monkeypatch.setattr(exp, "_fit", boom)  # every method's training goes through _fit (head's lean loop too)
    code = main(["run", *TEXT, "--method", "head", "--out", str(tmp_path), "--quiet"])
    assert code == 1
    (rec,) = Store(tmp_path / "peftlab.db").records()
    assert rec.status == "failed" and "simulated crash" in rec.error
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_is_stored_as_cancelled(tmp_path, monkeypatch):
    import peftlab.tasks.classification as exp

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(exp, "_fit", interrupt)
    cfg = config.load(dict(model="minilm-l6", dataset="vader-tweets", method="head", max_train_samples=12,
                           max_eval_samples=9, out=str(tmp_path)))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, progress=False)
    (rec,) = Store(tmp_path / "peftlab.db").records()
    assert rec.status == "cancelled"


def test_records_from_before_validation_splits_still_load(tmp_path):
    import shutil
    from pathlib import Path

    db = tmp_path / "old.db"  # a copy: opening a store switches the file to WAL
    shutil.copy(Path(__file__).parent.parent / "fixtures" / "store-v0.1.0-e97fbb2.db", db)
    rec = next(r for r in Store(db).records() if r.task == "text-classification" and r.ok)
    assert rec.metrics_split is None and rec.data.validation_size is None and rec.data.test_size is None
    assert rec.data.eval_size and rec.metrics.accuracy is not None
    assert rec.to_dict()["metrics_split"] is None and "validation" not in rec.data.full_sizes
    # its config reads max_validation_samples as its default (so --resume still knows it; tests/core/test_identity.py)
    assert rec.config["max_validation_samples"] is None
