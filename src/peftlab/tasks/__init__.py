"""The task registry: what kind of problem a run solves, each task one module with one entry point.

`resolve(cfg)` says which task a run is (the --task flag, settings only one task has, or the dataset itself);
`TASKS[cfg.task].run(cfg, record, memo=..., progress=...)` runs it and fills the record's sections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peftlab.errors import BadInput


def _no_check(cfg) -> None:
    return None


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable  # (cfg, record, *, memo, progress) -> None: loads data and models, trains, fills the record
    default_method: str  # the method when --method is not given
    claims: Callable | None = (
        None  # (cfg) -> True when the settings alone name this task (vqa: encoder flags)
    )
    infer: Callable | None = None  # (cfg, cache) -> the task's name, from the dataset (classification)
    check: Callable = _no_check  # (cfg) -> None: the task's own settings, as bad input with the flag
    lr: float | None = None  # default learning rate for every method of this task (else the method's own)
    # the batch size `lr` was chosen at: with another batch size the default lr scales by batch / lr_batch
    lr_batch: int | None = None
    batch_size: int = 32  # default training batch size of this task
    models_optional: bool = False  # True: --model may be empty (vqa names its encoders instead)
    # (cfg, *, memo, progress, report) -> validation accuracy after training; report(epoch, accuracy) after each epoch
    # (tuning prunes there). Scores on the validation split only: test is never seen. None: not tunable yet.
    validate: Callable | None = None

    def default_lr(self, method, batch_size: int | None = None) -> float:
        """--lr when not given: the task's (scaled linearly to the batch size where it says at which one it was
        chosen), else the method's own. VQA: 1e-3 at batch 32 -> 2e-3 at its default batch 64."""
        if self.lr is None:
            return method.default_lr
        if self.lr_batch is None or batch_size is None:
            return self.lr
        return float(f"{self.lr * batch_size / self.lr_batch:.3g}")


TASKS: dict[str, Task] = {}


def register(task: Task) -> None:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task


def resolve(cfg, cache: dict | None = None) -> Task:
    """--task if given; else the task whose own settings appear; else the one that reads it off the dataset."""
    if cfg.task is not None:
        if cfg.task not in TASKS:
            raise BadInput(f"--task {cfg.task!r}: expected one of {', '.join(TASKS)}")
        return TASKS[cfg.task]
    for task in TASKS.values():
        if task.claims is not None and task.claims(cfg):
            return task
    if not cfg.model:
        raise BadInput("--model is required: a packaged name (peftlab ls models), a local folder or a hub id")
    if not cfg.dataset:
        raise BadInput(
            "--dataset is required: a packaged name (peftlab ls datasets), a local file/folder or a hub id"
        )
    inferring = next(t for t in TASKS.values() if t.infer is not None)
    return TASKS[inferring.infer(cfg, {} if cache is None else cache)]


from peftlab.tasks import classification, vqa  # noqa: E402

register(Task("text-classification", classification.run, "lora", infer=classification.infer,
              validate=classification.validate))  # fmt: skip
register(Task("image-classification", classification.run, "lora", validate=classification.validate))
register(Task("vqa", vqa.run, "head", claims=vqa.claims, check=vqa.check, lr=vqa.LR, lr_batch=vqa.LR_BATCH,
              batch_size=vqa.BATCH, models_optional=True))  # fmt: skip
