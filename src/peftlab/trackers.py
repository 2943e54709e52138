"""Experiment trackers through accelerate's tracker API: `--report-to tensorboard,mlflow,trackio`.

`run_experiment` opens `tracking(cfg, record)` around a run; the train loop calls `active().log_step(...)` after each
optimiser step (loss, learning rate, samples/s), a task's epoch hook logs validation metrics, and closing it logs the
run's final numbers. TensorBoard (event files) and MLflow (an SQLite store + artifacts folder) write under the run's
folder, OUT/<run_id>/trackers/, unless the user's own MLFLOW_TRACKING_URI says where MLflow goes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from contextvars import ContextVar
from pathlib import Path

from peftlab import distributed

# tracker name -> the package that provides it (what `pip install` needs)
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}
_ACTIVE: ContextVar[Tracking | None] = ContextVar("peftlab_tracking", default=None)


def names(value: str | None) -> list[str]:
    """ "tensorboard,mlflow" -> ["tensorboard", "mlflow"]; "" / None / "none" -> []."""
    if value is None:
        return []
    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    return [] if items == ["none"] else items


def check(value: str | None) -> str | None:
    """Why `--report-to value` cannot be used (None: it can): an unknown tracker, or one whose package is missing."""
    for name in names(value):
        if name not in PACKAGES:
            return f"unknown tracker {name!r}; choose from {', '.join(PACKAGES)} (comma-separated)"
        if not _installed(name):
            return (f"the {PACKAGES[name]} package is not installed; pip install {PACKAGES[name]} "
                    "(or pip install 'peftlab[trackers]')")  # fmt: skip
    return None


def _installed(name: str) -> bool:
    if name == "tensorboard":  # torch.utils.tensorboard needs the tensorboard package
        return (
            importlib.util.find_spec("tensorboard") is not None
            or importlib.util.find_spec("tensorboardX") is not None
        )
    return importlib.util.find_spec(PACKAGES[name]) is not None


def active() -> Tracking | None:
    """The trackers of the run in progress, or None (no --report-to): the loop's one question."""
    return _ACTIVE.get()


def _plain(value):
    """A setting as every tracker's hyperparameter view accepts it: bool/int/float/str (None and lists as text)."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class Tracking:
    """The open trackers of one run, and the global step the last log was at."""

    def __init__(self, trackers: list, where: Path):
        self.trackers = trackers
        self.where = where
        self.step = 0

    def log(self, values: dict, step: int | None = None) -> None:
        step = self.step if step is None else step
        self.step = step
        for t in self.trackers:
            t.log(values, step=step)

    def log_step(self, step: int, *, loss: float, lr: float, samples_per_s: float, epoch: float) -> None:
        self.log({"train/loss": loss, "train/learning_rate": lr, "train/samples_per_s": samples_per_s,
                  "train/epoch": epoch}, step=step)  # fmt: skip

    def log_eval(self, metrics: dict, epoch: int, split: str = "validation") -> None:
        values = {f"{split}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.log({**values, "train/epoch": float(epoch)})

    def log_record(self, record) -> None:
        """The run's final numbers as metrics under final/ (test metrics, baseline, params, time, memory), at the last
        step; the whole record is record.json beside the trackers' folder."""
        sections = {"metrics": record.metrics, "baseline": record.baseline_metrics, "params": record.params,
                    "time": record.time, "memory": record.memory}  # fmt: skip
        values = {}
        for name, section in sections.items():
            for k, v in (section.to_dict() if section is not None else {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    values[f"final/{name}.{k}"] = float(v)
        values["final/ok"] = float(record.status == "ok")
        self.log(values)

    def close(self) -> None:
        for t in self.trackers:
            t.finish()


def mlflow_uri(where: Path) -> str:
    """The run's local MLflow store: `mlflow ui --backend-store-uri <this>` shows it."""
    return f"sqlite:///{(where / 'mlflow.db').resolve()}"


def _open(name: str, run_name: str, where: Path):
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, TrackioTracker

    if name == "tensorboard":  # event files in where/tensorboard/<run_name>/
        return TensorBoardTracker(run_name, logging_dir=str(where / "tensorboard"))
    if (
        name == "mlflow"
    ):  # where/mlflow.db (MLflow 3's local store) + where/mlartifacts, unless MLFLOW_TRACKING_URI
        import mlflow

        if os.environ.get("MLFLOW_TRACKING_URI"):
            return MLflowTracker(experiment_name="peftlab", run_name=run_name)
        mlflow.set_tracking_uri(mlflow_uri(where))
        artifacts = (where / "mlartifacts").resolve().as_uri()
        return MLflowTracker(experiment_name="peftlab", logging_dir=artifacts, run_name=run_name)
    return TrackioTracker("peftlab", name=run_name)  # trackio keeps its projects in its own folder


@contextlib.contextmanager
def tracking(cfg, record):
    """Open the trackers `cfg.report_to` names for this run, log its settings, and on the way out its final numbers.
    Nothing opens without --report-to."""
    wanted = names(cfg.report_to)
    if not wanted:
        yield None
        return
    where = Path(cfg.out) / record.run_id / "trackers"
    trackers = []
    # several processes of one run (accelerate launch): only the main one opens trackers; the others hold an empty
    # Tracking so that every process takes the same path (the per-step loss is all-reduced, validation is gathered)
    for name in wanted if distributed.is_main() else []:
        where.mkdir(parents=True, exist_ok=True)
        t = _open(name, record.run_id, where)
        t.start()
        trackers.append(t)
    tr = Tracking(trackers, where)
    settings = {k: _plain(v) for k, v in sorted(cfg.to_dict().items())}
    for t in trackers:
        t.store_init_configuration(settings)
    token = _ACTIVE.set(tr)
    try:
        yield tr
    finally:
        _ACTIVE.reset(token)
        try:
            tr.log_record(record)
        finally:
            tr.close()
            record.artifacts.extra["trackers"] = {"dir": str(where), "report_to": wanted}
