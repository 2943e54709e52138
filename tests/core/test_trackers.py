"""`--report-to tensorboard,mlflow,trackio` through accelerate's trackers: per-step loss / learning rate / samples/s,
per-epoch validation metrics, settings and the final record, read back from the event files and the MLflow file store."""

import importlib.util
import json

import pytest

from peftlab.cli import main

TINY = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--method", "head", "--max-train-samples", "36",
        "--max-eval-samples", "12", "--max-validation-samples", "15", "--epochs", "2", "--max-length", "24",
        "--batch-size", "12", "--no-save-model", "--json", "--quiet"]  # fmt: skip


def _run(tmp_path, capsys, report_to: str) -> dict:
    assert main(["run", *TINY, "--out", str(tmp_path), "--report-to", report_to]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_tensorboard_and_mlflow_get_steps_epochs_settings_and_final_record(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="pip install tensorboard (the trackers extra)")
    pytest.importorskip("mlflow", reason="pip install mlflow (the trackers extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = _run(tmp_path, capsys, "tensorboard,mlflow")
    steps = record["time"]["train_steps"]  # 36 samples / 12 = 3 steps per epoch, 2 epochs
    where = tmp_path / record["run_id"] / "trackers"
    assert steps == 6 and record["artifacts"]["trackers"] == {
        "dir": str(where),
        "report_to": ["tensorboard", "mlflow"],
    }

    # TensorBoard: event files under the run's folder
    events = EventAccumulator(str(where / "tensorboard" / record["run_id"]))
    events.Reload()
    scalars = lambda tag: [(e.step, e.value) for e in events.Scalars(tag)]  # noqa: E731
    loss, lr = scalars("train/loss"), scalars("train/learning_rate")
    assert [s for s, _ in loss] == list(range(1, steps + 1)) and all(v > 0 for _, v in loss)
    # linear warm-up (10% of 6 steps = 0 steps) then linear decay from the peak lr to 0 at step 6
    peak = record["time"]["lr"]
    assert [v for _, v in lr] == pytest.approx(
        [peak * (steps - s) / steps for s in range(1, steps + 1)], rel=1e-5
    )
    assert all(v > 0 for _, v in scalars("train/samples_per_s"))
    val = scalars("validation/accuracy")
    assert [s for s, _ in val] == [3, 6] and all(0 <= v <= 1 for _, v in val)  # after each epoch's last step
    final = scalars("final/metrics.accuracy")
    assert final == [(steps, pytest.approx(record["metrics"]["accuracy"]))]
    assert scalars("final/params.trainable")[0][1] == record["params"]["trainable"]

    # MLflow: a local store under the run's folder
    import mlflow

    from peftlab.trackers import mlflow_uri

    assert (where / "mlflow.db").is_file()
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri(where))
    (run,) = client.search_runs(experiment_ids=[client.get_experiment_by_name("peftlab").experiment_id])
    assert run.info.run_name == record["run_id"]
    assert run.data.params["method"] == "head" and run.data.params["seed"] == "0"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([v for _, v in loss])
    assert run.data.metrics["final/metrics.accuracy"] == pytest.approx(record["metrics"]["accuracy"])
    assert run.data.metrics["validation/accuracy"] == pytest.approx(val[-1][1])
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(
    "value, expect",
    [("tensorbored", "unknown tracker 'tensorbored'"), ("wandb", "unknown tracker 'wandb'")]
    + ([("trackio", "pip install trackio")] if importlib.util.find_spec("trackio") is None else [])
    + ([("mlflow", "pip install mlflow")] if importlib.util.find_spec("mlflow") is None else []),
)
def test_unknown_or_missing_tracker_is_one_line(value, expect, tmp_path, capsys):
    assert main(["run", *TINY, "--out", str(tmp_path), "--report-to", value]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "--report-to" in err and len(err.splitlines()) == 1
