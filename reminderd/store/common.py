"""What every state store does the same way, written once in the portable SQL of `protocol`.

`StateDB` (SQLite) and `PostgresStore` differ in connecting, locking, errors
and migrations; calendar event rows and small JSON values are the same SQL
on both, so both take them from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from .protocol import EventRow, Tx


def iso(moment: datetime) -> str:
    """UTC, always to the millisecond: one fixed width, so SQL compares them as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SqlRows:
    """Event rows and meta values over `query` and `transaction` (a mixin)."""

    def transaction(self, *, row_locks: bool = False) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    # -- calendar events

    def events(self, calendar: str) -> dict[str, EventRow]:
        rows = self.query(
            "SELECT uid, href, etag, hash, served FROM calendar_events WHERE calendar = ?",
            (calendar,),
        )
        return {r[0]: EventRow(*r) for r in rows}

    def put_event(self, calendar: str, row: EventRow) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO calendar_events (calendar, uid, href, etag, hash, served) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (calendar, uid) DO UPDATE SET href = excluded.href, "
                "etag = excluded.etag, hash = excluded.hash, served = excluded.served",
                (calendar, row.uid, row.href, row.etag, row.hash, row.served),
            )

    def forget_event(self, calendar: str, uid: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM calendar_events WHERE calendar = ? AND uid = ?", (calendar, uid)
            )

    # -- small values (sync tokens, last sync, ...), stored as JSON

    def delete_prefix(self, prefix: str) -> None:
        """Forget every small value whose key starts with `prefix` (sync markers, calendar URLs)."""
        with self.transaction() as tx:
            tx.execute("DELETE FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set(self, key: str, value: Any) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
