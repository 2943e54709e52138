"""The results store: one SQLite row per run holding the whole self-describing record as JSON.

`Store(path).add(record)`, `Store(path).records(status="ok")` -> [Record]; `finished(cfg)` answers `--resume`.
Safe for several processes writing at once (WAL + retries).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from peftlab.record import Record, as_record

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL,          -- ok | failed | cancelled
    task        TEXT, model TEXT, dataset TEXT, method TEXT, seed INTEGER,
    config_hash TEXT,                   -- config.identity_hash(): same hash = same experiment, any seed
    record      TEXT NOT NULL           -- the full record as JSON
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash, status);
"""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # WAL lets readers work while one process writes; busy_timeout makes a second writer wait, not fail.
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=60000")
        return db

    def add(self, record: Record | dict) -> None:
        """Insert or replace one run's record; retried for up to ~60 s if another process holds the lock."""
        record = as_record(record)
        row = (
            record.run_id,
            record.created_at,
            record.status,
            record.task,
            record.model,
            record.dataset,
            record.method,
            record.seed,
            record.config_hash,
            json.dumps(record.to_dict(), default=str),
        )
        for attempt in range(30):
            try:
                with self._connect() as db:
                    db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", row)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 29:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def records(self, status: str | None = None) -> list[Record]:
        query, args = "SELECT record FROM runs", ()
        if status:
            query, args = query + " WHERE status = ?", (status,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created_at, run_id", args).fetchall()
        return [Record.from_dict(json.loads(r[0])) for r in rows]

    def finished(self) -> set[tuple[str, int | None]]:
        """(identity, seed) of every successful run: what `--resume` skips. Identities are computed from each record's
        settings as this version reads them, so runs stored by earlier versions count too."""
        return {(r.identity, r.seed) for r in self.records(status="ok")}
