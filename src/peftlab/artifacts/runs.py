"""A run folder as `predict` and `export` take it: its record and its saved model folder, or one line of bad input.

`open_run("peftlab-runs/<run id>", "predict")` -> (Record, saved folder); the folder is found beside record.json, so
a run folder that was moved or copied elsewhere still opens.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftlab.errors import BadInput
from peftlab.record import Record


def open_run(run_dir: str | Path, command: str) -> tuple[Record, Path]:
    """(record, the model / adapter / VQA-head folder) of a successful run that saved its model."""
    folder = Path(run_dir).expanduser()
    if not folder.exists():
        raise BadInput(
            f"{command} {run_dir}: no such folder; give a run folder (OUT/<run id>, printed by peftlab run)"
        )
    record_file = folder / "record.json"
    if not folder.is_dir() or not record_file.is_file():
        raise BadInput(
            f"{command} {run_dir}: not a peftlab run folder (no record.json); give OUT/<run id> as printed by "
            "`peftlab run` (e.g. peftlab-runs/20260101-120000-minilm-l6-lora-s0-abc123)"
        )
    try:
        record = Record.from_dict(json.loads(record_file.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        raise BadInput(
            f"{command} {run_dir}: record.json is not a readable run record; run it again"
        ) from None
    if record.status != "ok":
        why = (record.error or "no error recorded").strip().splitlines()[0][:200]
        raise BadInput(
            f"{command} {run_dir}: run {record.run_id} ended {record.status} ({why}), so it has no trained model; "
            "fix the cause and run it again"
        )
    saved = record.artifacts.saved
    if not saved:
        raise BadInput(f"{command} {run_dir}: run {record.run_id} saved no model (it ran with --no-save-model); "
                       "run it again without that flag")  # fmt: skip
    model_dir = folder / Path(saved).name  # beside record.json, wherever the run folder lives now
    if not model_dir.is_dir():
        raise BadInput(
            f"{command} {run_dir}: the run's model folder {model_dir} is missing (moved or deleted?)"
        )
    return record, model_dir
