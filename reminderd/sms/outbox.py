"""The persistent SMS schedule: one row per send, a small state machine in the state store.

    pending --claim--> sending --> sent | failed | pending (retry later, or look up first)
    pending --> missed (past its deadline) | cancelled (edited away) | unconfirmed

A row is marked `sending` in its own committed transaction before the
request leaves, and `sent` after the answer: a `kill -9` in between leaves
a `sending` row, which recovery resolves by asking the provider first, so a
send never goes out more than twice, and one whose outcome stays unknown is
marked `unconfirmed` (shown in `status`) instead of being silently dropped.

The outbox also remembers when it began (`since`): a send whose time had
already passed then may have gone out from an earlier state that was lost
(a deleted or damaged database), so the dispatcher asks the provider first.

Several daemons may share one outbox (a team on one PostgreSQL). Each has an
`owner` (its identity) and `reserve`s a few due rows at a time: the rows are
picked under row locks that other daemons pass over (`FOR UPDATE SKIP
LOCKED`) and marked `claimed_by` the owner until `lease_until`, a time of the
database's clock (hosts' clocks may differ). Another daemon may take a row only
once that lease has run out, and a claim is refused to anyone but the row's
owner, so a reservation lost while its daemon was slow is never sent by it.
A dead daemon's rows are freed by the others (`reserved_by`, `release`,
`interrupted`), which know from its lease that it is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..store.common import iso, parse_iso
from ..store.keys import META_SINCE
from ..store.protocol import StateStore, Tx
from .plan import PlannedSend

__all__ = ["Outbox", "Row", "iso", "parse_iso"]


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    kind: str
    due: datetime
    send_at: datetime
    next_try: datetime
    deadline: datetime
    payload: dict[str, Any]
    status: str
    attempts: int
    ambiguous: int
    started_at: datetime | None
    sid: str | None
    error: str | None
    body: str | None
    claimed_by: str | None = None  # the daemon that reserved or claimed it (None: any)
    lease_until: datetime | None = None  # its reservation holds until then (database clock)


_COLUMNS = (
    "key, kind, due, send_at, next_try, deadline, payload, status, attempts, ambiguous, "
    "started_at, sid, error, body"
)
_SELECT = _COLUMNS + ", claimed_by, lease_until"


def _row(r: tuple[Any, ...]) -> Row:
    return Row(
        r[0],
        r[1],
        parse_iso(r[2]),
        parse_iso(r[3]),
        parse_iso(r[4]),
        parse_iso(r[5]),
        json.loads(r[6]),
        r[7],
        r[8],
        r[9],
        parse_iso(r[10]) if r[10] else None,
        r[11],
        r[12],
        r[13],
        r[14],
        parse_iso(r[15]) if r[15] else None,
    )


class Outbox:
    """One channel's sends: `sms_outbox`, or `email_outbox` (same columns, same rules).

    `owner`: the identity of the daemon using it, carried by its reservations and
    claims (None: a single user's, or a command's own sends).
    """

    def __init__(self, db: StateStore, table: str = "sms_outbox", owner: str | None = None) -> None:
        if table not in ("sms_outbox", "email_outbox"):
            raise ValueError(f"no outbox table {table!r}")
        self.db = db
        self.table = table
        self.owner = owner
        self._since_key = META_SINCE if table == "sms_outbox" else f"{META_SINCE}:{table}"

    # -- planning

    def reconcile(
        self, planned: Mapping[str, PlannedSend], now: datetime, kind: str = "backup"
    ) -> dict[str, int]:
        """Make pending rows match the plan; rows already sent or failed are history and stay."""
        counts = {"added": 0, "moved": 0, "cancelled": 0, "reopened": 0}
        stamp = iso(now)
        with self.db.transaction() as db:
            existing = {
                r[0]: (r[1], r[2], r[3])
                for r in db.execute(
                    f"SELECT key, status, send_at, payload FROM {self.table} WHERE kind = ?",
                    (kind,),
                ).fetchall()
            }
            for key, send in planned.items():
                payload = json.dumps(send.payload, sort_keys=True)
                row = existing.get(key)
                if row is None and send.deadline < now:
                    # already useless when it first appears (an old item, an import): not "missed"
                    continue
                if row is None:
                    db.execute(
                        f"INSERT INTO {self.table} ({_COLUMNS}, updated_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, NULL, NULL, NULL, NULL, ?)",
                        (
                            key,
                            kind,
                            iso(send.due),
                            iso(send.send_at),
                            iso(send.send_at),
                            iso(send.deadline),
                            payload,
                            stamp,
                        ),
                    )
                    counts["added"] += 1
                elif row[0] == "cancelled":
                    db.execute(
                        f"UPDATE {self.table} SET status = 'pending', send_at = ?, next_try = ?, "
                        "deadline = ?, payload = ?, updated_at = ? WHERE key = ?",
                        (
                            iso(send.send_at),
                            iso(send.send_at),
                            iso(send.deadline),
                            payload,
                            stamp,
                            key,
                        ),
                    )
                    counts["reopened"] += 1
                elif row[0] == "pending" and (row[1] != iso(send.send_at) or row[2] != payload):
                    # A retry already set later stays later
                    # (CASE: SQLite's two-argument MAX is not portable).
                    db.execute(
                        f"UPDATE {self.table} SET send_at = ?, "
                        "next_try = CASE WHEN next_try > ? THEN next_try ELSE ? END, deadline = ?, "
                        "payload = ?, updated_at = ? WHERE key = ?",
                        (
                            iso(send.send_at),
                            iso(send.send_at),
                            iso(send.send_at),
                            iso(send.deadline),
                            payload,
                            stamp,
                            key,
                        ),
                    )
                    counts["moved"] += 1
            gone = [k for k, row in existing.items() if row[0] == "pending" and k not in planned]
            for key in gone:
                db.execute(
                    f"UPDATE {self.table} SET status = 'cancelled', updated_at = ? WHERE key = ?",
                    (stamp, key),
                )
            counts["cancelled"] = len(gone)
        return counts

    def add(
        self,
        key: str,
        kind: str,
        due: datetime,
        deadline: datetime,
        payload: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Insert one send (digest, test) unless the key exists; True if added."""
        with self.db.transaction() as tx:
            return self.add_in(tx, key, kind, due, deadline, payload, now)

    def add_in(
        self,
        tx: Tx,
        key: str,
        kind: str,
        due: datetime,
        deadline: datetime,
        payload: dict[str, Any],
        now: datetime,
    ) -> bool:
        """`add` inside the caller's transaction (a reply's confirmation lands with its outcome)."""
        cur = tx.execute(
            f"INSERT INTO {self.table} ({_COLUMNS}, updated_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, NULL, NULL, NULL, NULL, ?) "
            "ON CONFLICT DO NOTHING",
            (
                key,
                kind,
                iso(due),
                iso(due),
                iso(due),
                iso(deadline),
                json.dumps(payload, sort_keys=True),
                iso(now),
            ),
        )
        return cur.rowcount == 1

    def since(self, now: datetime) -> datetime:
        """When this outbox began keeping sends: `now` on the first call, then what was recorded."""
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (self._since_key, json.dumps(iso(now))),
            )
            (value,) = db.execute(
                "SELECT value FROM meta WHERE key = ?", (self._since_key,)
            ).fetchone()
        return parse_iso(json.loads(value))

    # -- reading

    def due(self, now: datetime, limit: int = 1000) -> list[Row]:
        """What is due at `now`, reserved or not (for reading: `reserve` to send)."""
        rows = self.db.query(
            f"SELECT {_SELECT} FROM {self.table} WHERE status = 'pending' AND next_try <= ? "
            "ORDER BY next_try LIMIT ?",
            (iso(now), limit),
        )
        return [_row(r) for r in rows]

    def reserve(self, now: datetime, limit: int, lease: timedelta) -> list[Row]:
        """Up to `limit` rows due at `now`, earliest first, reserved for `owner` for
        `lease` (on the database's clock): rows free, ours already, or whose lease ran
        out. Rows another daemon is reserving at this moment are passed over, not
        waited for (row locks, no database-wide lock), so daemons share a burst."""
        with self.db.transaction(row_locks=True) as tx:
            clock = self.db.db_now()
            rows = tx.execute(
                f"SELECT {_SELECT} FROM {self.table} WHERE status = 'pending' "
                "AND next_try <= ? AND (claimed_by IS NULL OR claimed_by = ? "
                "OR lease_until IS NULL OR lease_until < ?) "
                f"ORDER BY next_try, key LIMIT ?{self.db.skip_locked}",
                (iso(now), self.owner, iso(clock), limit),
            ).fetchall()
            if not rows:
                return []
            until = iso(clock + lease)
            keys = [r[0] for r in rows]
            tx.execute(
                f"UPDATE {self.table} SET claimed_by = ?, lease_until = ? "
                f"WHERE status = 'pending' AND key IN ({','.join('?' for _ in keys)})",
                (self.owner, until, *keys),
            )
        return [replace(_row(r), claimed_by=self.owner, lease_until=parse_iso(until)) for r in rows]

    def next_time(self, free: bool = False) -> datetime | None:
        """When the earliest pending send is due; `free`: of those `reserve` could take
        now (not reserved by another daemon whose lease holds: that one sends them)."""
        if not free:
            rows = self.db.query(f"SELECT MIN(next_try) FROM {self.table} WHERE status = 'pending'")
        else:
            rows = self.db.query(
                f"SELECT MIN(next_try) FROM {self.table} WHERE status = 'pending' "
                "AND (claimed_by IS NULL OR claimed_by = ? OR lease_until IS NULL "
                "OR lease_until < ?)",
                (self.owner, iso(self.db.db_now())),
            )
        return parse_iso(rows[0][0]) if rows and rows[0][0] else None

    def in_flight(self) -> list[Row]:
        return [
            _row(r)
            for r in self.db.query(f"SELECT {_SELECT} FROM {self.table} WHERE status = 'sending'")
        ]

    def reserved_by(self) -> set[str]:
        """The daemons holding a reservation that has not run out (database clock)."""
        rows = self.db.query(
            f"SELECT DISTINCT claimed_by FROM {self.table} WHERE status = 'pending' "
            "AND claimed_by IS NOT NULL AND lease_until >= ?",
            (iso(self.db.db_now()),),
        )
        return {str(r[0]) for r in rows}

    def recent(
        self,
        limit: int = 10,
        statuses: tuple[str, ...] = ("sent", "failed", "missed", "unconfirmed"),
    ) -> list[Row]:
        marks = ",".join("?" for _ in statuses)
        rows = self.db.query(
            f"SELECT {_SELECT} FROM {self.table} WHERE status IN ({marks}) "
            "ORDER BY updated_at DESC, key LIMIT ?",
            (*statuses, limit),
        )
        return [_row(r) for r in rows]

    def missed_since(self, since: datetime) -> list[Row]:
        rows = self.db.query(
            f"SELECT {_SELECT} FROM {self.table} WHERE status = 'missed' AND kind = 'backup' "
            "AND updated_at >= ? ORDER BY due",
            (iso(since),),
        )
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        return dict(self.db.query(f"SELECT status, COUNT(*) FROM {self.table} GROUP BY status"))

    # -- the state machine, one committed transaction per step

    def claim(self, key: str, body: str, now: datetime) -> bool:
        """pending -> sending, recording the exact body and the owner; False if someone
        else took it, or reserved it since our reservation ran out."""
        with self.db.transaction() as db:
            cur = db.execute(
                f"UPDATE {self.table} SET status = 'sending', attempts = attempts + 1, "
                "started_at = ?, body = ?, updated_at = ?, claimed_by = ? WHERE key = ? "
                "AND status = 'pending' AND (claimed_by IS NULL OR claimed_by = ?)",
                (iso(now), body, iso(now), self.owner, key, self.owner),
            )
            return cur.rowcount == 1

    def release(self, owners: Iterable[str], now: datetime) -> int:
        """Free the pending rows reserved by these daemons (gone: their leases say so)."""
        freed = 0
        for owner in owners:
            with self.db.transaction(row_locks=True) as db:
                freed += db.execute(
                    f"UPDATE {self.table} SET claimed_by = NULL, lease_until = NULL, "
                    "updated_at = ? WHERE status = 'pending' AND claimed_by = ?",
                    (iso(now), owner),
                ).rowcount
        return freed

    def interrupted(self, row: Row, now: datetime, error: str, when: datetime) -> bool:
        """A send whose process is gone, as `row` saw it: back to pending and free for
        anyone, to be looked up at `when` before any repeat (as `ambiguous_retry`).
        False if it moved on since (recorded, or claimed again): then nothing changes."""
        whose = "claimed_by IS NULL" if row.claimed_by is None else "claimed_by = ?"
        with self.db.transaction(row_locks=True) as db:
            cur = db.execute(
                f"UPDATE {self.table} SET status = 'pending', ambiguous = ambiguous + 1, "
                "next_try = ?, error = ?, claimed_by = NULL, lease_until = NULL, "
                f"updated_at = ? WHERE key = ? AND status = 'sending' AND attempts = ? "
                f"AND {whose}",
                (
                    iso(when),
                    error,
                    iso(now),
                    row.key,
                    row.attempts,
                    *(() if row.claimed_by is None else (row.claimed_by,)),
                ),
            )
            return cur.rowcount == 1

    def _set(self, key: str, now: datetime, sql: str, *params: Any) -> None:
        with self.db.transaction() as db:
            db.execute(
                f"UPDATE {self.table} SET {sql}, updated_at = ? WHERE key = ?",
                (*params, iso(now), key),
            )

    def sent(self, key: str, sid: str, now: datetime, note: str | None = None) -> None:
        self._set(key, now, "status = 'sent', sid = ?, error = ?", sid, note)

    def failed(self, key: str, error: str, now: datetime) -> None:
        self._set(key, now, "status = 'failed', error = ?", error)

    def retry_at(self, key: str, when: datetime, error: str, now: datetime) -> None:
        self._set(key, now, "status = 'pending', next_try = ?, error = ?", iso(when), error)

    def missed(self, key: str, reason: str, now: datetime) -> None:
        self._set(key, now, "status = 'missed', error = ?", reason)

    def ambiguous_retry(
        self, key: str, now: datetime, error: str, when: datetime | None = None
    ) -> None:
        """A send whose outcome is unknown: back to pending, counted.

        The provider is asked first. Only from `sending`, so recording it again
        (after a commit whose answer was lost) counts it once.
        """
        with self.db.transaction() as db:
            db.execute(
                f"UPDATE {self.table} SET status = 'pending', ambiguous = ambiguous + 1, "
                "next_try = ?, error = ?, updated_at = ? WHERE key = ? AND status = 'sending'",
                (iso(when or now), error, iso(now), key),
            )

    def unconfirmed(self, key: str, error: str, now: datetime) -> None:
        """Sent once or twice, or not at all.

        Nobody can tell, and a repeat could be a third copy.
        """
        self._set(key, now, "status = 'unconfirmed', error = ?", error)
