"""Tuning on an existing engine: Optuna studies over a method's search space, scored on the validation split.

`peftlab tune` -> `tune(values, trials=N, ...)`: a seeded TPE sampler, a median pruner that sees the validation
accuracy after every epoch, studies in Optuna storage (a journal file beside the results store, or any URL Optuna
accepts) so several processes or machines can tune one study. Test data is never seen here.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from peftlab import config
from peftlab.errors import BadInput

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def open_storage(url: str | None, default_dir: Path, *, heartbeat: int = 60, on_stale=None):
    """A storage Optuna accepts: None -> a journal file in `default_dir` (safe for several processes on one machine,
    by file locks); "sqlite:///x.db", "postgresql://..." -> RDBStorage with a heartbeat every `heartbeat` s (a trial
    silent for 2x that is stale; `on_stale(study, trial)` then runs). Unreachable: one line of bad input, in seconds."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url is None or "://" not in url:
        path = Path(url) if url else default_dir / "optuna.journal"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path))), str(path)
        except OSError as e:
            raise BadInput(
                f"--storage {path}: cannot write there ({e.strerror}); choose a writable file"
            ) from None
    engine = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}
    if url.startswith(
        "sqlite"
    ):  # several processes on one file: wait for the lock instead of failing at once
        engine = {"connect_args": {"timeout": 60}}
    target = _driver(url)
    for attempt in range(
        3
    ):  # workers starting together race to create Optuna's tables: the loser tries again
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # Optuna calls heartbeat_interval experimental; it is what we want
                storage = optuna.storages.RDBStorage(target, engine_kwargs=engine, heartbeat_interval=heartbeat,
                                                     heartbeat_stale_trial_callback=on_stale)  # fmt: skip
                if url.startswith("sqlite"):
                    _immediate_transactions(storage.engine)
                return storage, url
        except Exception as e:  # sqlalchemy's OperationalError, a missing driver, a malformed URL
            if "UniqueViolation" in str(e) and attempt < 2:
                time.sleep(1.0)
                continue
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BadInput(f"--storage {url}: cannot open this storage ({first[:200]})") from None


def _immediate_transactions(engine) -> None:
    """SQLite: every transaction takes the write lock when it begins (BEGIN IMMEDIATE), so two processes claiming the
    same waiting trial queue up behind the lock and the second sees it RUNNING, instead of both reading WAITING and one
    failing on the lock upgrade (SQLAlchemy's pysqlite recipe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners reconnect with them


def _driver(url: str) -> str:
    """postgresql:// means psycopg (v3) to SQLAlchemy 2; use psycopg2 when only it is installed (psycopg2-binary)."""
    import importlib.util

    plain = url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None
    if plain and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def search_space(method, overrides: list[str]) -> dict:
    from peftlab.methods.space import parse_override, space_of

    space = space_of(method)
    for text in overrides or []:
        key, dim = parse_override(method, text)
        space[key] = dim
    if not space:
        raise BadInput(
            f"--method {method.name}: nothing to tune (it trains nothing); choose a method that trains"
        )
    return space


def _space_json(space: dict) -> str:
    return json.dumps({k: v.to_dict() for k, v in sorted(space.items())}, sort_keys=True)


def study_name(cfg) -> str:
    """model / dataset / label / identity of everything else: one study per experiment being tuned."""
    from peftlab.config import identity_hash, knob_label

    d = cfg.to_dict()
    return f"{Path(cfg.model or cfg.encoder or 'vqa').name}-{cfg.dataset}-{knob_label(d).replace(' ', '_')}-{identity_hash(d)[:8]}"


def trial_rows(study) -> list[dict]:
    """Every trial: {number, state, params, value, seconds} (the `peftlab tune --json` shape)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"number": t.number, "state": t.state.name, "params": dict(t.params), "value": t.value,
                     "seconds": round(seconds, 2) if seconds is not None else None})  # fmt: skip
    return rows


def tune(values: dict, *, trials: int, storage: str | None = None, study: str | None = None, resume: bool = False,
         space: list[str] | None = None, progress: bool = True, memo: dict | None = None,
         up_to: bool = False) -> dict:  # fmt: skip
    """Run `trials` more trials of one (model, dataset, method) and return {study, storage, trials, best};
    up_to=True: only as many as bring the study to `trials` finished trials (compare --tune's equal budget)."""
    import optuna

    from peftlab.methods import REGISTRY
    from peftlab.tasks import TASKS

    if not isinstance(trials, int) or trials < 1:
        raise BadInput(f"--trials {trials!r}: give a number of trials >= 1")
    base = config.load({**values, "save_model": False})
    task = TASKS[base.task]
    if task.validate is None:
        raise BadInput(f"--task {base.task}: tuning is not available for this task yet")
    dims = search_space(REGISTRY[base.method], space)
    where, shown = open_storage(storage, Path(base.out))
    name = study or study_name(base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    existing = [s.study_name for s in optuna.get_all_study_summaries(where)] if not resume else []
    if name in existing:
        raise BadInput(
            f"--study {name}: it exists in {shown}; pass --resume to continue it, or another --study name"
        )
    s = optuna.create_study(study_name=name, storage=where, direction="maximize", load_if_exists=True,
                            sampler=optuna.samplers.TPESampler(seed=base.seed),
                            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))  # fmt: skip
    wanted = _space_json(dims)
    if s.user_attrs.get("space", wanted) != wanted:
        raise BadInput(f"--study {name}: it was created with another search space ({s.user_attrs['space']}); "
                       "use a new --study name for this one")  # fmt: skip
    s.set_user_attr("space", wanted)
    s.set_user_attr("settings", config.identity(base.to_dict()))
    memo = {} if memo is None else memo

    def objective(trial) -> float:
        chosen = {k: dim.suggest(trial, k) for k, dim in dims.items()}
        cfg = config.load({**values, **chosen, "save_model": False})

        def report(epoch: int, accuracy: float) -> None:
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after epoch {epoch}")

        return task.validate(cfg, memo=memo, progress=False, report=report)

    if up_to:
        finished = [t for t in s.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
        trials = max(0, trials - len(finished))
    bar = _bar(trials, progress)
    try:
        if trials > 0:  # (Optuna reads n_trials=0 as "no limit")
            s.optimize(
                objective, n_trials=trials, callbacks=[bar.update], catch=(Exception,), gc_after_trial=True
            )
    finally:
        bar.close()
    rows = trial_rows(s)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = {"params": s.best_trial.params, "value": s.best_value} if done else None
    return {"study": name, "storage": shown, "trials": rows, "best": best}


class _bar:
    """One bar over trials with the best validation accuracy so far (stderr)."""

    def __init__(self, total: int, progress: bool):
        from tqdm.auto import tqdm

        self.tqdm = tqdm(total=total, desc="tuning", unit="trial", file=sys.stderr, disable=not progress)
        self.t0 = time.perf_counter()

    def update(self, study, trial) -> None:
        done = [
            t for t in study.get_trials(deepcopy=False) if t.value is not None and t.state.name == "COMPLETE"
        ]
        best = max((t.value for t in done), default=None)
        self.tqdm.set_postfix_str(f"best {best:.4f}" if best is not None else "no complete trial yet")
        self.tqdm.update(1)

    def close(self) -> None:
        self.tqdm.close()
