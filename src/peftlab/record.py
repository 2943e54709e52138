"""The run record: typed sections, written and read through this module only; its JSON shape is public (DESIGN.md).

`Record.start(cfg)` begins one, tasks fill its sections, `record.to_dict()` is what `--json`, record.json and the store
hold; `Record.from_dict(d)` reads any stored record (an older one is brought up to date as it is read, never rewritten).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar


def _omit(default=None) -> Any:
    """A field left out of the JSON while it is None (present only when it has something to say)."""
    return field(default=default, metadata={"omit_none": True})


class Section:
    """A typed part of the record. Keys it does not declare are kept in `extra` and written back after its fields,
    so a task's own keys (VQA's per-type accuracy) and keys of other versions survive a round trip."""

    nested: ClassVar[dict[str, type]] = {}

    @classmethod
    def from_dict(cls, d: dict | None):
        if d is None:
            return None
        names = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {"extra": {k: v for k, v in d.items() if k not in names}}
        for name in names & set(d):
            sub = cls.nested.get(name)
            kw[name] = sub.from_dict(d[name]) if sub is not None else d[name]
        return cls(**kw)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = value.to_dict() if isinstance(value, Section) else value
        out.update(self.extra)
        return out


@dataclass
class Metrics(Section):
    """Scores on the evaluation split; macro averages run over every label of the task."""

    accuracy: float | None = None
    macro_f1: float | None = None
    macro_recall: float | None = None
    per_class: dict = field(default_factory=dict)  # label -> {precision, recall, f1, support}
    extra: dict = field(default_factory=dict)  # vqa: unseen_answer_share, per_type


@dataclass
class Params(Section):
    """Parameters measured on the model and predicted from its config (params/), and whether they agree."""

    trainable: int | None = None
    total: int | None = None
    trainable_pct: float | None = None  # percent units: 0.33 means 0.33%
    predicted_trainable: int | None = None
    predicted_total: int | None = None
    match: bool | None = None  # None: no prediction for this family or setting
    breakdown: list = field(default_factory=list)  # [{"component", "params", "trainable", "formula", ...}]
    note: str | None = None
    counting: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Time(Section):
    train_s: float = 0.0  # wall seconds training (with the frozen-prefix cache pass this run built)
    eval_s: float = 0.0
    train_samples_per_s: float | None = None
    train_steps: int = 0
    final_loss: float | None = None
    lr: float | None = None  # the peak learning rate used
    extra: dict = field(default_factory=dict)  # classification: prefix_cache; vqa: encode_s, baselines_s


@dataclass
class Memory(Section):
    peak_rss_mb: float | None = None  # the process's peak resident memory while the run ran (MiB)
    # the run's own peak: the process's peak above its level when the run began (after freed memory was released),
    # so Python, torch and what earlier runs of a grid keep (data, encodings, caches) are not counted (MiB)
    run_peak_mb: float | None = _omit()
    start_rss_mb: float | None = _omit()  # the process's level when the run began (MiB)
    # CUDA: torch's allocator peak during the run above its level when the run began (MiB); absent on a CPU
    peak_gpu_mb: float | None = _omit()
    extra: dict = field(default_factory=dict)

    @property
    def own_mb(self) -> float | None:
        """What the run itself cost: run_peak_mb, or the process peak for records from before it existed."""
        return self.run_peak_mb if self.run_peak_mb is not None else self.peak_rss_mb


@dataclass
class Parallel(Section):
    """How the run ran: data-parallel processes of this one run, and the grid worker that ran it (if any)."""

    processes: int = 1  # accelerate's num_processes: the global batch is split over these
    worker: str | None = (
        None  # "host:pid" of the `peftlab worker` that claimed this grid point; None: not a worker
    )
    grid: str | None = _omit()  # the grid (Optuna study) the point came from
    extra: dict = field(default_factory=dict)


@dataclass
class Predicted(Section):
    """What `peftlab plan` predicts for the run from its config, data shapes and this machine's calibration (plan/),
    kept beside the measured time and memory; None where the family or method has no FLOP formula yet."""

    train_s: float | None = None  # compare with time.train_s
    eval_s: float | None = None  # compare with time.eval_s
    peak_mb: float | None = None  # the run's own peak: compare with memory.run_peak_mb
    flops: int | None = None  # every FLOP of the run: training steps, frozen-prefix capture, evaluation
    extra: dict = field(
        default_factory=dict
    )  # flops_train_per_sample, machine ("calibrated" | "estimate"), note


@dataclass
class Data(Section):
    """The splits a run saw: train trains, validation is for choosing (never reported), test gives the metrics."""

    train_size: int | None = None
    validation_size: int | None = None  # None: a record from before validation splits
    test_size: int | None = None
    eval_size: int | None = None  # = test_size, kept for readers of earlier records
    num_labels: int | None = None
    label_names: list = field(default_factory=list)
    source: str | None = None
    notes: str | None = None
    # sizes before subsetting {"train": n, "validation": n, "eval": n}; eval = test
    full_sizes: dict | None = None
    extra: dict = field(default_factory=dict)  # vqa: images, distinct_questions, question_types


@dataclass
class Artifacts(Section):
    dir: str | None = None  # the run folder: record.json, and the model or adapter when saved
    saved: str | None = _omit()  # the saved model / adapter folder
    extra: dict = field(default_factory=dict)


@dataclass
class Record(Section):
    run_id: str = ""
    created_at: str = ""
    status: str = "running"  # running | ok | failed | cancelled
    error: str | None = None
    task: str | None = None
    model: str | None = None
    dataset: str | None = None
    method: str | None = None
    seed: int | None = None
    config: dict | None = None  # the resolved settings (RunConfig.to_dict())
    config_hash: str | None = None  # identity_hash(config): same hash = same experiment, whatever the seed
    metrics: Metrics | None = None
    metrics_split: str | None = (
        None  # where metrics + baseline_metrics come from: "test" (None: older record)
    )
    baseline_metrics: Metrics | None = None  # the same model before training
    params: Params | None = None
    time: Time | None = None
    memory: Memory | None = None
    data: Data | None = None
    predicted: Predicted | None = _omit()  # plan/: predicted time, memory and FLOPs (records since the plan)
    env: dict = field(default_factory=dict)  # versions, git commit, machine (run.environment())
    artifacts: Artifacts = field(default_factory=Artifacts)
    parallel: Parallel | None = None  # None: a record from before this section
    traceback: str | None = _omit()  # failed runs: kept in the store, left out of --json
    extra: dict = field(default_factory=dict)  # a task's own sections: vqa, vqa_baselines

    nested: ClassVar[dict[str, type]] = {
        "metrics": Metrics,
        "baseline_metrics": Metrics,
        "params": Params,
        "time": Time,
        "memory": Memory,
        "data": Data,
        "predicted": Predicted,
        "artifacts": Artifacts,
        "parallel": Parallel,
    }

    @classmethod
    def start(cls, cfg, env: dict) -> Record:
        from peftlab.config import identity_hash

        config = cfg.to_dict()
        return cls(
            run_id=new_run_id(cfg),
            created_at=dt.datetime.now().isoformat(timespec="seconds"),
            task=cfg.task,
            model=cfg.model,
            dataset=cfg.dataset,
            method=cfg.method,
            seed=cfg.seed,
            config=config,
            config_hash=identity_hash(config),
            env=env,
            parallel=Parallel(processes=int(os.environ.get("WORLD_SIZE", "1"))),
        )

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        return super().from_dict(upgrade(d))

    def public(self) -> dict:
        """What `--json` prints: the record without the traceback."""
        out = self.to_dict()
        out.pop("traceback", None)
        return out

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        return self.metrics.accuracy if self.metrics else None

    @property
    def settings(self) -> dict:
        """The run's config, with the record's own model / dataset / method / task where the config lacks them."""
        top = {"model": self.model, "dataset": self.dataset, "method": self.method, "task": self.task}
        return {**top, **(self.config or {})}

    @property
    def identity(self) -> str:
        """The experiment this run is one seed of (config.identity_hash of its settings)."""
        from peftlab.config import identity_hash

        return identity_hash(self.settings)

    @property
    def label(self) -> str:
        """How reports name its configuration: the method and the knobs that differ from their defaults."""
        from peftlab.config import knob_label

        return knob_label(self.settings)


def new_run_id(cfg) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = Path(cfg.model or cfg.encoder or cfg.image_encoder or "vqa").name
    model = re.sub(r"[^A-Za-z0-9]+", "-", name)[:24]
    return f"{stamp}-{model}-{cfg.method}-s{cfg.seed}-{uuid.uuid4().hex[:6]}"


def upgrade(d: dict) -> dict:
    """A stored record as this version reads it. Records before the method registry named VQA runs "vqa-<fusion>"
    and left the default learning rate out of their config; both are filled in here (the stored JSON is untouched).
    Records before validation splits lack data.validation_size / test_size and metrics_split (they stay None); their
    config gains max_validation_samples None and data_splits "train/test": they trained on another subset of the
    training pool, so they are other experiments than today's (config.DATA_SPLITS)."""
    d = dict(d)
    config = dict(d.get("config") or {})
    if config:
        config.setdefault("max_validation_samples", None)
        config.setdefault("data_splits", "train/test")
        config.setdefault("precision", "fp32")  # every run before --precision trained in fp32
    method = str(d.get("method") or "")
    if method.startswith("vqa-"):  # VQA trains a fusion head over frozen encoders: the `head` method
        config.setdefault("fusion", method.removeprefix("vqa-"))
        d["method"] = config["method"] = "head"
    if config and config.get("lr") is None and (d.get("time") or {}).get("lr") is not None:
        config["lr"] = d["time"]["lr"]
    if config:
        d["config"] = config
    return d


def as_record(r) -> Record:
    """A Record from either a Record or a stored dict."""
    return r if isinstance(r, Record) else Record.from_dict(r)


__all__ = [
    "Artifacts",
    "Data",
    "Memory",
    "Metrics",
    "Parallel",
    "Params",
    "Predicted",
    "Record",
    "Time",
    "as_record",
]
