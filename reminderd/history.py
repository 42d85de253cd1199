"""`reminderd log`: a commitment's history, from the files and the state. Read-only.

Its touches as they stand (moved, done, skipped), the alerts sent for it
(SMS and email, with what became of each), and its outcomes with their
source (`sms`, `calendar`, `cli`) and whether the file carries them. In a
team each entry names its `person`; ids known only to the state belong to no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .model import Commitment, touches
from .outcomes import log as outcome_log
from .outcomes.model import Outcome
from .outcomes.overlay import overlay
from .store.protocol import StateStore

_SEND_COLUMNS = "key, kind, status, due, sid, error, updated_at"


def gather_history(
    db: StateStore | None,
    commitments: Iterable[Commitment],
    ident: str | None,
    *,
    team: bool = False,
    person: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per commitment (or the one named), in file order; then ids known
    only to the state (removed from the files since). `team`: each entry names its
    `person` (None for those only in the state); `person`: only theirs."""
    every = list(commitments)
    parsed = [
        c
        for c in every
        if (ident is None or c.id == ident) and (person is None or c.owner == person)
    ]
    outcomes = outcome_log.by_commitment(db, ident) if db is not None else {}
    items: list[dict[str, Any]] = []
    for c in overlay(parsed, outcomes):
        items.append(
            {
                **({"person": c.owner} if team else {}),
                "id": c.id,
                "title": c.title,
                "source": str(c.source),
                "status": c.status.value,
                "touches": [
                    {
                        "touch": t.index,
                        "start": t.start.isoformat(),
                        "state": t.state.value if c.active else c.status.value,
                    }
                    for t in touches(c)
                ],
                "sent": _sends(db, c.id),
                "outcomes": [_outcome(o) for o in outcomes.get(c.id, [])],
            }
        )
    known = {c.id for c in every}  # another person's is not "no longer in the files"
    for cid, group in outcomes.items():
        if cid not in known and person is None:
            items.append(
                {
                    **({"person": None} if team else {}),
                    "id": cid,
                    "title": None,
                    "source": "(no longer in the files)",
                    "status": None,
                    "touches": [],
                    "sent": _sends(db, cid),
                    "outcomes": [_outcome(o) for o in group],
                }
            )
    return items


def _sends(db: StateStore | None, cid: str) -> list[dict[str, Any]]:
    if db is None:
        return []
    prefix = f"{cid}#"
    found = []
    for table, channel in (("sms_outbox", "sms"), ("email_outbox", "email")):
        rows = db.query(
            f"SELECT {_SEND_COLUMNS} FROM {table} WHERE substr(key, 1, ?) = ? "
            "AND status <> 'pending' ORDER BY due",
            (len(prefix), prefix),
        )
        for key, kind, status, due, sid, error, updated in rows:
            found.append(
                {
                    "channel": channel,
                    "key": key,
                    "kind": kind,
                    "status": status,
                    "due": due,
                    "id": sid,
                    "note": error,
                    "at": updated,
                }
            )
    found.sort(key=lambda s: (s["due"], s["key"]))
    return found


def _outcome(o: Outcome) -> dict[str, Any]:
    return {
        "at": o.at.isoformat(timespec="seconds"),
        "kind": o.kind,
        "touch": o.touch,
        "source": o.source,
        "note": o.note,
        "start": o.start.isoformat() if o.start else None,
        "purpose": o.purpose,
        "in_file": o.written,
    }


def render_history_json(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"commitments": items}


def render_history_text(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no commitments\n"
    return "\n".join(_item_lines(items)) + "\n"


def render_team_history_text(items: list[dict[str, Any]], people: Sequence[str]) -> str:
    """A team's history: one heading per person, in the config's order, then the ids
    that only the state still knows."""
    out: list[str] = []
    for name in people:
        mine = [item for item in items if item["person"] == name]
        out += [f"== {name}: {_count(mine)} ==", "", *_item_lines(mine)]
    orphans = [item for item in items if item["person"] is None]
    if orphans:
        out += [f"== no longer in the files: {_count(orphans)} ==", "", *_item_lines(orphans)]
    return "\n".join(out) + "\n"


def _count(items: list[dict[str, Any]]) -> str:
    return f"{len(items)} commitment{'s' if len(items) != 1 else ''}"


def _item_lines(items: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.append(f"{item['id']}: {item['title'] or ''} ({item['source']})")
        for t in item["touches"]:
            out.append(f"  touch #{t['touch']} {t['start']} {t['state']}")
        for s in item["sent"]:
            note = f" ({s['note']})" if s["note"] else ""
            out.append(f"  {s['channel']} {s['key']}: {s['status']} {s['at']}{note}")
        for o in item["outcomes"]:
            what = o["kind"] + (f" to {o['start']}" if o["start"] else "")
            what += f": {o['purpose']}" if o["purpose"] else ""
            what += f" ({o['note']})" if o["note"] else ""
            out.append(
                f"  {o['at']} {what} on #{o['touch']} from {o['source']}"
                + (f"; file: {o['in_file']}" if o["in_file"] else "")
            )
        out.append("")
    return out


__all__ = [
    "gather_history",
    "render_history_json",
    "render_history_text",
    "render_team_history_text",
]
