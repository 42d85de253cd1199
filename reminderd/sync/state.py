"""The state database: what was written to the calendar, and the SMS outbox.

SQLite in WAL mode under the state dir. Every change is one transaction, so
a `kill -9` at any moment leaves either the old or the new row, never half
of one. One connection guarded by a lock: the daemon's threads share it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS calendar_events (
    calendar TEXT NOT NULL,
    uid      TEXT NOT NULL,
    href     TEXT NOT NULL,
    etag     TEXT,
    hash     TEXT NOT NULL,
    PRIMARY KEY (calendar, uid)
);
CREATE TABLE IF NOT EXISTS sms_outbox (
    key        TEXT PRIMARY KEY,   -- commitment#touch@offset@start: one send, ever
    kind       TEXT NOT NULL,      -- backup | digest | test
    due        TEXT NOT NULL,      -- UTC ISO: when the reminder is for
    send_at    TEXT NOT NULL,      -- UTC ISO: due, moved out of quiet hours
    next_try   TEXT NOT NULL,      -- UTC ISO: send_at, or later after a temporary failure
    deadline   TEXT NOT NULL,      -- UTC ISO: after this the send is useless (missed)
    payload    TEXT NOT NULL,      -- JSON: what the text is made of, so sends survive a broken file
    status     TEXT NOT NULL,      -- pending | sending | sent | failed | missed | cancelled
    attempts   INTEGER NOT NULL DEFAULT 0,
    ambiguous  INTEGER NOT NULL DEFAULT 0,  -- sends whose outcome a crash or timeout hid
    started_at TEXT,               -- UTC ISO of the last request start
    sid        TEXT,
    error      TEXT,
    body       TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_outbox_next ON sms_outbox (status, next_try);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    uid: str
    href: str
    etag: str | None
    hash: str


class StateDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # every commit on disk: an SMS marked sent stays sent
        self._db.execute("PRAGMA busy_timeout=30000")
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: all of it lands, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- calendar events

    def events(self, calendar: str) -> dict[str, EventRow]:
        rows = self.query("SELECT uid, href, etag, hash FROM calendar_events WHERE calendar = ?",
                          (calendar,))
        return {r[0]: EventRow(*r) for r in rows}

    def put_event(self, calendar: str, row: EventRow) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO calendar_events (calendar, uid, href, etag, hash) "
                       "VALUES (?, ?, ?, ?, ?)", (calendar, row.uid, row.href, row.etag, row.hash))

    def forget_event(self, calendar: str, uid: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM calendar_events WHERE calendar = ? AND uid = ?", (calendar, uid))

    # -- small values (sync tokens, last sync, ...), stored as JSON

    def delete_prefix(self, prefix: str) -> None:
        """Forget every small value whose key starts with `prefix` (sync markers, calendar URLs)."""
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))
