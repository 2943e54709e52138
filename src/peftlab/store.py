"""The results store: one SQLite row per run holding the whole self-describing record as JSON.

`Store(path).add(record)`, `Store(path).records(status="ok")` -> [Record]; `finished(cfg)` answers `--resume`.
Safe for several processes writing at once (WAL + retries).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from peftlab import disk
from peftlab.errors import BadInput
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


VERSION = (
    1  # PRAGMA user_version of stores this release writes; 0 = the first release's (same table, read as is)
)


class Store:
    def __init__(self, path: str | Path, *, read_only: bool = False):
        """Open (or, unless read_only, create) a store; anything that is not a peftlab store of this or an earlier
        version is one line of bad input, and such a file is never written to."""
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise BadInput(
                f"--store {path}: no such results store; run `peftlab run` or `peftlab compare` first"
            )
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BadInput(
                    f"--store {path}: cannot create its folder ({disk.why_not(self.path.parent, e)}); choose another path"
                ) from None
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._check_existing()
        elif (
            read_only
        ):  # an empty file: a store another process is creating this instant, or not a store at all
            raise BadInput(f"--store {path}: the store holds no runs yet (an empty file)")
        if not read_only:
            try:
                with self._connect() as db:
                    db.executescript(SCHEMA)
                    if fresh:
                        db.execute(f"PRAGMA user_version={VERSION}")
            except sqlite3.OperationalError as e:
                raise BadInput(f"--store {path}: cannot write there ({e}); choose a writable path") from None

    def _check_existing(self) -> None:
        """A SQLite file holding a `runs` table, written by this version or an earlier one; read without writing."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                db.close()
        except sqlite3.DatabaseError:
            raise BadInput(
                f"--store {self.path}: not a peftlab results store (not an SQLite database)"
            ) from None
        if "runs" not in tables:
            raise BadInput(f"--store {self.path}: not a peftlab results store (an SQLite database without a runs "
                           "table); choose another path")  # fmt: skip
        if version > VERSION:
            raise BadInput(f"--store {self.path}: written by a newer peftlab (store version {version}, this one reads "
                           f"up to {VERSION}); upgrade peftlab to read it — it is left untouched")  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        # WAL lets readers work while one process writes; busy_timeout makes a second writer wait, not fail.
        # Read-only (report): no journal switch, nothing written; a reader sees the last committed state.
        if self.read_only:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
        else:
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
