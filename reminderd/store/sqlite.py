"""The SQLite state store: one file under the state dir, WAL mode.

Every change is one transaction, so a `kill -9` at any moment leaves either
the old or the new row, never half of one. One connection guarded by a
lock: the daemon's threads share it. Opening for writing upgrades the
schema in place (`schema.STEPS`, the version in `PRAGMA user_version`);
opening read-only never changes the file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import StateError
from .common import SqlRows
from .protocol import Tx
from .schema import STEPS, Step, check_version

if TYPE_CHECKING:
    from .protocol import StateStore

log = logging.getLogger(__name__)

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


def _cause(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        cause = _CAUSES.get(code & 0xFF if isinstance(code, int) else -1)
        if cause is None:
            cause = (
                "the database failed ("
                + (getattr(exc, "sqlite_errorname", None) or type(exc).__name__)
                + ")"
            )
        return cause
    return getattr(exc, "strerror", None) or type(exc).__name__


def state_error(path: Path, exc: BaseException) -> StateError:
    """Our error for a SQLite or OS failure on the state database, saying what to do."""
    return StateError(f"state database {path}: {_cause(exc)}")


class StateDB(SqlRows):
    """The SQLite state store (a `protocol.StateStore`).

    `readonly=True` opens an existing one for reading only (status, agenda):
    it never creates a file or a folder and never migrates. `steps` is the
    migration ladder (tests pass one of their own).
    """

    skip_locked = ""  # BEGIN IMMEDIATE: a writing transaction has the whole file to itself

    def __init__(
        self, path: Path, *, readonly: bool = False, steps: Sequence[Step] = STEPS
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        latest = steps[-1].version if steps else 0
        try:
            if readonly:
                if not path.is_file():
                    raise StateError(
                        f"no state yet at {path} (reminderd has not run with this config)"
                    )
                # With no -wal beside it nobody is writing: open it immutable, so a reader
                # (root running `status` for the service's dynamic user) leaves no files behind.
                live = Path(f"{path}-wal").exists()
                self._db = sqlite3.connect(
                    f"file:{quote(str(path))}?mode=ro{'' if live else '&immutable=1'}",
                    uri=True,
                    timeout=30,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._db = sqlite3.connect(
                    str(path), timeout=30, isolation_level=None, check_same_thread=False
                )
            try:
                self._db.execute("PRAGMA busy_timeout=30000")
                check_version(path, self._version(), latest, readonly)  # fails now if not a DB
                if not readonly:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute(
                        "PRAGMA synchronous=FULL"
                    )  # every commit on disk: an SMS marked sent stays sent
                    self._migrate(steps)
            except BaseException:
                self._db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise state_error(path, exc) from None

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def _migrate(self, steps: Sequence[Step]) -> None:
        """Run the steps above the database's version, each with its number in one transaction."""
        if self._version() >= (steps[-1].version if steps else 0):
            return  # the usual open: nothing to write
        # a new, empty file is simply created; only an existing database's upgrade is news
        existing = bool(self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        for step in steps:
            with self.transaction() as tx:
                found = (
                    self._version()
                )  # again under the write lock: another process may have run it
                if found >= step.version:
                    continue
                try:
                    for statement in step.statements:
                        tx.execute(statement)
                    tx.execute(f"PRAGMA user_version = {int(step.version)}")
                except sqlite3.Error as exc:
                    raise StateError(
                        f"state database {self.path}: upgrading it to schema version "
                        f"{step.version} failed, it stays at {found}: {_cause(exc)}"
                    ) from None
            if existing:
                log.info(
                    "state database %s: upgraded to schema version %d (%s)",
                    self.path,
                    step.version,
                    step.purpose,
                )

    @contextmanager
    def transaction(self, *, row_locks: bool = False) -> Iterator[Tx]:
        """One atomic unit: all of it lands, or none of it. SQLite failures become StateError.

        `row_locks` changes nothing here: every writing transaction is exclusive."""
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

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise state_error(self.path, exc) from None

    def db_now(self) -> datetime:
        """This host's clock: one daemon per SQLite state, so no other to agree with."""
        return datetime.now(UTC)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass  # closing after a disk failure: nothing left to save


if TYPE_CHECKING:
    _conforms: type[StateStore] = StateDB  # mypy checks the SQLite store against the protocol
