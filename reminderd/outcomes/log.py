"""The outcomes table: recorded once, read by the overlay and by `reminderd log`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..sms.outbox import iso, parse_iso
from ..store.protocol import StateStore, Tx
from .model import Outcome

_COLUMNS = "id, commitment, touch, kind, source, at, base, note, start, purpose, written"


def _row(r: Sequence[Any]) -> Outcome:
    return Outcome(
        id=r[0],
        commitment=r[1],
        touch=int(r[2]),
        kind=r[3],
        source=r[4],
        at=parse_iso(r[5]),
        base=r[6],
        note=r[7],
        start=datetime.fromisoformat(r[8]) if r[8] else None,
        purpose=r[9],
        written=r[10],
    )


def add(tx: Tx, o: Outcome) -> None:
    """Record `o` inside the caller's transaction (with whatever else must land with it)."""
    tx.execute(
        f"INSERT INTO outcomes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            o.id,
            o.commitment,
            o.touch,
            o.kind,
            o.source,
            iso(o.at),
            o.base,
            o.note,
            o.start.isoformat() if o.start else None,
            o.purpose,
            o.written,
        ),
    )


def by_commitment(db: StateStore, commitment: str | None = None) -> dict[str, list[Outcome]]:
    """Every outcome (or one commitment's), grouped by commitment, oldest first."""
    sql = f"SELECT {_COLUMNS} FROM outcomes"
    params: tuple[Any, ...] = ()
    if commitment is not None:
        sql += " WHERE commitment = ?"
        params = (commitment,)
    found: dict[str, list[Outcome]] = {}
    for r in db.query(sql + " ORDER BY at, id", params):
        o = _row(r)
        found.setdefault(o.commitment, []).append(o)
    return found


def not_written(db: StateStore) -> list[Outcome]:
    """Outcomes whose write-back is still to be tried, oldest first (each reload asks)."""
    return [
        _row(r)
        for r in db.query(f"SELECT {_COLUMNS} FROM outcomes WHERE written IS NULL ORDER BY at, id")
    ]


def set_written(db: StateStore, outcome_id: str, what: str) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE outcomes SET written = ? WHERE id = ?", (what, outcome_id))
