"""What the rest of reminderd needs from the state store, independent of the database.

The SQLite store (`sqlite.StateDB`) implements `StateStore`; a PostgreSQL
store implements the same protocol, so callers are written once.

SQL passed to `Tx.execute` and `StateStore.query` is a portable subset that
SQLite (3.35+) and PostgreSQL both run unchanged:

- positional `?` placeholders only (a PostgreSQL backend translates each `?`
  to `%s`, and doubles a literal `%`), never a `?` inside a string literal;
- upserts as `INSERT ... ON CONFLICT (columns) DO UPDATE SET c = excluded.c`
  or `ON CONFLICT DO NOTHING`, never `INSERT OR REPLACE` / `INSERT OR IGNORE`;
- `CASE`, `MIN`/`MAX` as aggregates, `COUNT`, `substr`, `LIMIT ?`; no
  SQLite-only functions (two-argument `MAX`, `ifnull`, `datetime()`) and no
  PostgreSQL-only ones (`GREATEST`, `now()`);
- times are stored as fixed-width UTC ISO text and compared as text;
- row locks as `StateStore.skip_locked` appended to a SELECT (`FOR UPDATE SKIP
  LOCKED` on PostgreSQL, nothing on SQLite, whose transactions are exclusive),
  and the database's own time from `StateStore.db_now()`, never written in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event written to a calendar: where it is, its last known ETag, its content hash.

    `served` is `ical.served_hash` of what the server held when we last
    looked: a new ETag over the same `served` hash is the server's own
    rewrite (DTSTAMP, SEQUENCE...), not a person's edit.
    """

    uid: str
    href: str
    etag: str | None
    hash: str
    served: str | None = None


class Cursor(Protocol):
    """The result of one statement: rows of a SELECT, or how many rows a change touched."""

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...


class Tx(Protocol):
    """An open transaction: statements run in it land together or not at all."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...


class StateStore(Protocol):
    """The state database, shared by the daemon's threads.

    Every method is atomic; `transaction()` groups several statements into
    one unit (all land or none). Failures of the database raise
    `reminderd.errors.StateError` with a message saying what to do.
    """

    @property
    def path(self) -> Path:
        """Where the state lives (the daemon checks it was not replaced under it)."""
        ...

    def transaction(self, *, row_locks: bool = False) -> AbstractContextManager[Tx]:
        """One atomic unit; the write lock is held from its start (no lost updates).

        `row_locks=True`: without the database-wide write lock where a store has
        one (PostgreSQL), for a transaction made safe by the row locks it takes
        itself (`skip_locked`) or by being one conditional UPDATE by key. SQLite
        ignores it (its transactions are always exclusive).
        """
        ...

    @property
    def skip_locked(self) -> str:
        """What makes a SELECT lock the rows it picks and pass over rows another
        transaction holds: `" FOR UPDATE SKIP LOCKED"`, or `""` where a transaction
        is exclusive anyway (SQLite)."""
        ...

    def db_now(self) -> datetime:
        """The database's clock (aware, UTC): the one time every process sharing the
        state agrees on, for leases. SQLite's is this host's, the only one using it."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one read-only statement, outside any transaction."""
        ...

    def close(self) -> None: ...

    # -- calendar events, by calendar URL and UID

    def events(self, calendar: str) -> dict[str, EventRow]: ...

    def put_event(self, calendar: str, row: EventRow) -> None: ...

    def forget_event(self, calendar: str, uid: str) -> None: ...

    # -- small JSON values in `meta` (names in `keys`)

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete_prefix(self, prefix: str) -> None:
        """Forget every small value whose key starts with `prefix`."""
        ...
