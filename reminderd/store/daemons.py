"""The daemons sharing one state, as `status` shows them: the `daemons` table.

Each daemon registers itself at start and says what it is doing; a row stays
after its daemon is gone (`seen_at` tells how long ago), until `forget`. Whether
a daemon is alive is not read here but from its lease (`leases.Leases.alive`):
a row cannot tell a crashed daemon from a quiet one.

Every write is one statement by key, so it takes no database-wide write lock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .common import iso, parse_iso
from .protocol import StateStore


def register(db: StateStore, ident: str, host: str, pid: int, now: datetime) -> None:
    """This daemon, `starting`; registering an identity again starts its row afresh."""
    with db.transaction(row_locks=True) as tx:
        tx.execute(
            "INSERT INTO daemons (id, host, pid, state, started_at, seen_at, info) "
            "VALUES (?, ?, ?, 'starting', ?, ?, NULL) "
            "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "state = excluded.state, started_at = excluded.started_at, "
            "seen_at = excluded.seen_at, info = NULL",
            (ident, host, pid, iso(now), iso(now)),
        )


def set_state(
    db: StateStore, ident: str, state: str, now: datetime, info: dict[str, Any] | None
) -> None:
    """What the daemon is doing now (`running`, `stopped`, ...); `info` replaces what
    it said before, None keeps it."""
    with db.transaction(row_locks=True) as tx:
        if info is None:
            tx.execute(
                "UPDATE daemons SET state = ?, seen_at = ? WHERE id = ?",
                (state, iso(now), ident),
            )
        else:
            tx.execute(
                "UPDATE daemons SET state = ?, seen_at = ?, info = ? WHERE id = ?",
                (state, iso(now), json.dumps(info, sort_keys=True), ident),
            )


def listed(db: StateStore) -> list[dict[str, Any]]:
    """Every registered daemon, oldest first: id, host, pid, state, started_at and
    seen_at (aware datetimes), info (a dict, or None)."""
    rows = db.query(
        "SELECT id, host, pid, state, started_at, seen_at, info FROM daemons "
        "ORDER BY started_at, id"
    )
    return [
        {
            "id": ident,
            "host": host,
            "pid": int(pid),
            "state": state,
            "started_at": parse_iso(started),
            "seen_at": parse_iso(seen),
            "info": json.loads(info) if info else None,
        }
        for ident, host, pid, state, started, seen, info in rows
    ]


def forget(db: StateStore, ident: str) -> None:
    """Drop a daemon's row (one that is gone for good)."""
    with db.transaction(row_locks=True) as tx:
        tx.execute("DELETE FROM daemons WHERE id = ?", (ident,))
