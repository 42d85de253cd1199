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
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import StateError

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


# Names of the small values in `meta`, shared by the daemon, the CLI and status.
META_DAEMON = "daemon"  # {"state", "pid", "since"}
META_LAST_SYNC = "last_sync"  # {"at", "result", "errors"}
META_ERROR = "error:"  # + area (config | input | sync): {"at", "message"}; removed when fixed
ERROR_AREAS = ("config", "input", "sync")
SYNC_MARKER = "sync:"  # + calendar URL: the sync token / ctag of the last listing


def forget_sync_markers(db: StateDB) -> None:
    """The next sync lists the whole calendar instead of asking what changed."""
    db.delete_prefix(SYNC_MARKER)


def record_error(db: StateDB, area: str, message: str, now: datetime) -> None:
    """Remember a current problem of one area (shown by `status` until it is fixed)."""
    db.set(META_ERROR + area, {"at": now.isoformat(timespec="seconds"), "message": message})


def clear_error(db: StateDB, area: str) -> None:
    """The area works again: its problem no longer shows."""
    db.delete_prefix(META_ERROR + area)


def current_errors(db: StateDB) -> list[dict[str, str]]:
    """Every area's current problem, newest first."""
    found = []
    for area in ERROR_AREAS:
        value = db.get(META_ERROR + area)
        if value:
            found.append({"area": area, "at": value.get("at", ""), "message": value.get("message", "")})
    return sorted(found, key=lambda e: e["at"], reverse=True)


@dataclass(frozen=True, slots=True)
class EventRow:
    uid: str
    href: str
    etag: str | None
    hash: str


_CAUSES = {  # SQLite result codes -> what the user can do about it
    sqlite3.SQLITE_CORRUPT: "the file is damaged; move it aside to start with a fresh state "
                            "(sends already made are looked up at the provider)",
    sqlite3.SQLITE_NOTADB: "the file is not a reminderd state database; move it aside or set "
                           "another state_dir",
    sqlite3.SQLITE_READONLY: "the file or its folder is read-only for this user",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened (missing folder or no permission)",
    sqlite3.SQLITE_IOERR: "the disk reported an I/O error",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_BUSY: "another process kept it locked for 30 s",
}


def state_error(path: Path, exc: BaseException) -> StateError:
    """Our error for a SQLite or OS failure on the state database, saying what to do."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        cause = _CAUSES.get(code & 0xFF if isinstance(code, int) else -1)
        if cause is None:
            cause = "the database failed (" + (getattr(exc, "sqlite_errorname", None) or type(exc).__name__) + ")"
    else:
        cause = getattr(exc, "strerror", None) or type(exc).__name__
    return StateError(f"state database {path}: {cause}")


class StateDB:
    """The state database. `readonly=True` opens an existing one for reading only
    (status, agenda): it never creates a file or a folder."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        try:
            if readonly:
                if not path.is_file():
                    raise StateError(f"no state yet at {path} (reminderd has not run with this config)")
                # With no -wal beside it nobody is writing: open it immutable, so a reader
                # (root running `status` for the service's dynamic user) leaves no files behind.
                live = Path(f"{path}-wal").exists()
                self._db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro{'' if live else '&immutable=1'}",
                                           uri=True, timeout=30, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("PRAGMA busy_timeout=30000")
                self._db.execute("SELECT count(*) FROM sqlite_master").fetchall()  # fails now if not a DB
                return
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # every commit on disk: an SMS marked sent stays sent
            self._db.execute("PRAGMA busy_timeout=30000")
            with self.transaction() as db:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise state_error(path, exc) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: all of it lands, or none of it. SQLite failures become StateError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise state_error(self.path, exc) from None
            try:
                yield self._db
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the failed statement may already have rolled it back
                if isinstance(exc, sqlite3.Error):
                    raise state_error(self.path, exc) from None
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise state_error(self.path, exc) from None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise state_error(self.path, exc) from None

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass  # closing after a disk failure: nothing left to save

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
