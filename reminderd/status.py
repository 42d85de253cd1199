"""What `status` shows: gather from the state (read-only), then render text or JSON.

Gathering never creates the state dir or the database: a config that never
ran says so. Times are shown in the config's zone, like the log and the agenda.
In a team (`people:`) each person gets their own part: the last sync of their
calendar, their (masked) recipients, and the sends addressed to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .errors import StateError
from .statelock import daemon_pid
from .store.keys import META_DAEMON, META_LAST_SYNC, current_errors, last_sync_key
from .store.protocol import StateStore

if TYPE_CHECKING:
    from .config import Person
    from .sms.outbox import Outbox

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Status:
    state_dir: str
    has_state: bool
    daemon_pid: int | None  # from the daemon lock: the truth, whoever runs `status`
    daemon_since: str | None
    last_sync: Mapping[str, Any] | None
    errors: list[dict[str, str]]
    sms: str  # "off" or the provider
    sms_to: str | None  # masked
    next_sms: list[dict[str, Any]] = field(default_factory=list)
    sms_counts: dict[str, int] = field(default_factory=dict)
    recent_sends: list[dict[str, Any]] = field(default_factory=list)
    replies: str = "off"  # sms.replies as it applies
    last_reply: dict[str, Any] | None = None
    outcomes: dict[str, int] = field(default_factory=dict)  # recorded, not_in_file
    email: str = "off"  # "off", or the server and the (masked) recipient
    next_email: list[dict[str, Any]] = field(default_factory=list)
    email_counts: dict[str, int] = field(default_factory=dict)
    recent_emails: list[dict[str, Any]] = field(default_factory=list)
    people: list[dict[str, Any]] | None = None  # a team: each person shown; None: one user
    daemons: list[dict[str, Any]] | None = None  # the `daemons` table; None: not shown
    state_error: str | None = None  # the state could not be read (PostgreSQL down)


def gather(
    state_dir: Path,
    db: StateStore | None,
    zone: ZoneInfo,
    sms: str,
    sms_to: str | None,
    replies: str = "off",
    email: str = "off",
    *,
    people: Sequence[Person] = (),
    daemons: bool = False,
    state_error: str | None = None,
) -> Status:
    """Read what the daemon and earlier commands recorded; `db` None: no state yet (or,
    with `state_error`, none that can be read now). `people`: a team's, each with their
    own part; `daemons`: show the daemons sharing the database, if it lists them."""
    from .sms.outbox import Outbox

    pid = daemon_pid(state_dir)
    channels = (sms != "off", email != "off")
    team = [_person(p, db, zone, *channels) for p in people] if people else None
    if db is None:
        return Status(
            str(state_dir),
            False,
            pid,
            None,
            None,
            [],
            sms,
            sms_to,
            replies=replies,
            email=email,
            people=team,
            state_error=state_error,
        )
    last_reply = db.query("SELECT received, result FROM inbound ORDER BY received DESC LIMIT 1")
    (recorded, pending), *_ = db.query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN written IS NULL THEN 1 ELSE 0 END), 0) "
        "FROM outcomes"
    )
    outbox = Outbox(db)
    mail = Outbox(db, table="email_outbox")
    daemon = db.get(META_DAEMON) or {}
    last = db.get(META_LAST_SYNC)
    return Status(
        state_dir=str(state_dir),
        has_state=True,
        daemon_pid=pid,
        daemon_since=_local(daemon.get("since"), zone) if pid else None,
        last_sync=dict(last, at=_local(last.get("at"), zone)) if last else None,
        errors=[dict(e, at=_local(e.get("at"), zone) or "") for e in current_errors(db)],
        sms=sms,
        sms_to=sms_to,
        next_sms=_next(outbox, zone),
        sms_counts=outbox.counts(),
        recent_sends=_recent(outbox, zone),
        replies=replies,
        last_reply=(
            {"at": _local(last_reply[0][0], zone), "result": last_reply[0][1]}
            if last_reply
            else None
        ),
        outcomes={"recorded": int(recorded), "not_in_file_yet": int(pending)},
        email=email,
        next_email=_next(mail, zone),
        email_counts=mail.counts(),
        recent_emails=_recent(mail, zone),
        people=team,
        daemons=_daemons(db, zone) if daemons else None,
    )


def _person(
    who: Person, db: StateStore | None, zone: ZoneInfo, sms_on: bool, email_on: bool
) -> dict[str, Any]:
    """One person of a team: their calendar's last sync, their recipients (masked), and the
    sends addressed to them (an outbox row's payload `to`)."""
    from .email import mask_address
    from .phone import mask

    address = who.address
    last = db.get(last_sync_key(who.name)) if db is not None else None
    entry: dict[str, Any] = {
        "name": who.name,
        "last_sync": dict(last, at=_local(last.get("at"), zone)) if last else None,
        "sms_to": mask(who.phone) if sms_on and who.phone else None,
        "next_sms": [],
        "recent_sends": [],
        "email_to": mask_address(address) if email_on and address else None,
        "next_email": [],
        "recent_emails": [],
    }
    for on, to, table, upcoming, recent in (
        (sms_on, who.phone, "sms_outbox", "next_sms", "recent_sends"),
        (email_on, address, "email_outbox", "next_email", "recent_emails"),
    ):
        if db is None or not on or not to:
            continue
        entry[upcoming] = [
            {"key": r[0], "at": _local(r[2], zone), "kind": r[1], "title": r[7].get("title")}
            for r in _addressed(db, table, to, "status = 'pending'", "next_try, key", 1)
        ]
        entry[recent] = [
            {"key": r[0], "status": r[3], "sid": r[4], "error": r[5], "at": _local(r[6], zone)}
            for r in _addressed(db, table, to, _DONE, "updated_at DESC, key", 10)
        ]
    return entry


_DONE = "status IN ('sent', 'failed', 'missed', 'unconfirmed')"


def _addressed(
    db: StateStore, table: str, to: str, where: str, order: str, limit: int
) -> list[tuple[Any, ...]]:
    """An outbox's rows sent (or to be sent) to `to`, a phone or an address in any case.

    The database narrows by text (the payload is JSON text in both backends); the
    payload's own `to` decides. A row with no `to` (a single user's) is no one's.
    """
    rows = db.query(
        f"SELECT key, kind, next_try, status, sid, error, started_at, payload FROM {table} "
        f"WHERE {where} AND lower(payload) LIKE ? ORDER BY {order} LIMIT ?",
        (f"%{to.lower()}%", limit * 20),
    )
    found = []
    for r in rows:
        payload = json.loads(r[7])
        if _same(payload.get("to"), to):
            found.append((*r[:7], payload))
    return found[:limit]


def _same(given: Any, to: str) -> bool:
    from email.utils import parseaddr

    if not isinstance(given, str):
        return False
    return given == to or (parseaddr(given)[1] or given).casefold() == to.casefold()


def _daemons(db: StateStore, zone: ZoneInfo) -> list[dict[str, Any]] | None:
    """The daemons that share this database (`store.daemons`), latest seen first; None
    when the state has no such table (a schema from before it)."""
    from .store import daemons

    try:
        found = daemons.listed(db)
    except StateError:
        return None
    alive = getattr(db, "daemon_alive", None)  # PostgreSQL: its session lock says

    def now_state(ident: str, state: str) -> str:
        if alive is None or state == "stopped":
            return state
        try:
            return state if alive(ident) else "gone (its session ended without a stop)"
        except StateError:
            return state

    found.sort(key=lambda d: (-d["seen_at"].timestamp(), d["id"]))
    return [
        dict(
            d,
            state=now_state(d["id"], d["state"]),
            started_at=_local(d["started_at"].isoformat(), zone),
            seen_at=_local(d["seen_at"].isoformat(), zone),
        )
        for d in found
    ]


def _next(outbox: Outbox, zone: ZoneInfo) -> list[dict[str, Any]]:
    return [
        {
            "key": r.key,
            "at": _local(r.next_try.isoformat(), zone),
            "kind": r.kind,
            "title": r.payload.get("title"),
        }
        for r in outbox.due(datetime.max.replace(tzinfo=UTC), limit=1)
    ]


def _recent(outbox: Outbox, zone: ZoneInfo) -> list[dict[str, Any]]:
    return [
        {
            "key": r.key,
            "status": r.status,
            "sid": r.sid,
            "error": r.error,
            "at": _local(r.started_at.isoformat(), zone) if r.started_at else None,
        }
        for r in outbox.recent(10)
    ]


def _local(stamp: str | None, zone: ZoneInfo) -> str | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp).astimezone(zone).isoformat(timespec="seconds")


def render_json(s: Status) -> dict[str, Any]:
    """The `status --json` document; a team adds `people`, a shared database `daemons`,
    and a state that cannot be read now `state_error` (`state`: "unreachable")."""
    doc = {
        "version": JSON_VERSION,
        "state_dir": s.state_dir,
        "state": "present" if s.has_state else "unreachable" if s.state_error else "none yet",
        "daemon": {
            "running": s.daemon_pid is not None,
            "pid": s.daemon_pid,
            "since": s.daemon_since,
        },
        "last_sync": s.last_sync,
        "errors": s.errors,
        "sms": s.sms,
        "sms_to": s.sms_to,
        "next_sms": s.next_sms,
        "sms_counts": s.sms_counts,
        "recent_sends": s.recent_sends,
        "replies": s.replies,
        "last_reply": s.last_reply,
        "outcomes": s.outcomes,
        "email": s.email,
        "next_email": s.next_email,
        "email_counts": s.email_counts,
        "recent_emails": s.recent_emails,
    }
    if s.state_error is not None:
        doc["state_error"] = s.state_error
    if s.people is not None:
        doc["people"] = s.people
    if s.daemons is not None:
        doc["daemons"] = s.daemons
    return doc


def _short(stamp: str | None) -> str:
    """`2026-11-30 10:05:00+02:00` for a terminal."""
    return stamp.replace("T", " ") if stamp else "-"


def render_text(s: Status) -> str:
    if s.state_error is not None:
        lines = [f"state:      {s.state_dir} unreachable ({s.state_error})"]
    else:
        lines = [
            f"state:      {s.state_dir}"
            + ("" if s.has_state else " (none yet: reminderd has not run with this config)")
        ]
    if s.daemon_pid is None:
        lines.append("daemon:     not running")
    else:
        pid = f"PID {s.daemon_pid}" if s.daemon_pid > 0 else "PID unknown"
        lines.append(
            f"daemon:     running ({pid})"
            + (f" since {_short(s.daemon_since)}" if s.daemon_since else "")
        )
    if s.daemons is not None:
        lines += _daemon_lines(s.daemons)
    team = s.people is not None
    known = s.state_error is None  # else only what the config says
    if not team and known:  # a team's calendars each have their own, below
        last = s.last_sync or {}
        lines.append(
            f"last sync:  {_short(last.get('at')) if last else 'never'}"
            + (f" ({last['result']})" if last.get("result") else "")
        )
    if not s.errors and known:
        lines.append("last error: none")
    for e in s.errors:
        lines.append(f"error:      {_short(e.get('at'))} {e['area']}: {e['message']}")
    lines.append(f"sms:        {s.sms}" + (f" to {s.sms_to}" if s.sms_to else ""))
    if known:  # in a team, each person's sends are under them
        lines += _channel(
            "sms", [] if team else s.next_sms, s.sms_counts, [] if team else s.recent_sends
        )
    lines.append(f"email:      {s.email}")
    if known and (s.email != "off" or s.email_counts):
        lines += _channel(
            "email",
            [] if team else s.next_email,
            s.email_counts,
            [] if team else s.recent_emails,
        )
    reply = s.last_reply
    lines.append(
        f"replies:    {s.replies}"
        + (f"; last {_short(reply['at'])}: {reply['result']}" if reply else "")
    )
    if s.outcomes.get("recorded"):
        lines.append(
            f"outcomes:   {s.outcomes['recorded']} recorded"
            + (
                f", {s.outcomes['not_in_file_yet']} not yet written into their file"
                if s.outcomes.get("not_in_file_yet")
                else ""
            )
        )
    for person in s.people or []:
        lines += _person_lines(person, known)
    return "\n".join(lines) + "\n"


def _daemon_lines(daemons: list[dict[str, Any]]) -> list[str]:
    """The daemons sharing the database, one line each."""
    lines = [f"daemons:    {len(daemons) or 'none'} on this state"]
    for d in daemons:
        lines.append(
            f"  {d['host'] or '?'} PID {d['pid'] if d['pid'] is not None else '?'}: "
            f"{d['state'] or '?'}, started {_short(d['started_at'])}, seen {_short(d['seen_at'])}"
            + (f" {json.dumps(d['info'], ensure_ascii=False)}" if d["info"] else "")
        )
    return lines


def _person_lines(p: dict[str, Any], known: bool) -> list[str]:
    """One person of a team: their calendar's last sync, recipients and sends."""
    last = p["last_sync"] or {}
    lines = [
        f"{p['name']}:",
        "  last sync:  "
        + (_short(last.get("at")) if last else "never" if known else "unknown")
        + (f" ({last['result']})" if last.get("result") else ""),
    ]
    for name, to, upcoming, recent in (
        ("sms", p["sms_to"], p["next_sms"], p["recent_sends"]),
        ("email", p["email_to"], p["next_email"], p["recent_emails"]),
    ):
        if not to:
            continue
        lines.append(f"  {name + ':':11s} to {to}")
        lines += [
            f"  {'next ' + name + ':':11s} {_short(r['at'])} {r['title'] or r['kind']} ({r['key']})"
            for r in upcoming
        ]
        lines += [
            f"    {r['status']:11s} {_short(r['at']):25s} {r['key']}"
            + (f"  {r['error']}" if r["error"] else "")
            for r in recent
        ]
    return lines


def _channel(
    name: str,
    upcoming: list[dict[str, Any]],
    counts: dict[str, int],
    recent: list[dict[str, Any]],
) -> list[str]:
    """One channel's next send, counts by status, and recent sends, for a terminal."""
    lines = [
        f"{'next ' + name + ':':11s} {_short(r['at'])} {r['title'] or r['kind']} ({r['key']})"
        for r in upcoming
    ]
    shown = ", ".join(f"{n} {st}" for st, n in sorted(counts.items()))
    lines.append(f"{name} counts: {shown or 'none'}")
    lines += [
        f"  {r['status']:11s} {_short(r['at']):25s} {r['key']}"
        + (f"  {r['error']}" if r["error"] else "")
        for r in recent
    ]
    return lines
