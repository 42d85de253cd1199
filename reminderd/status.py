"""What `status` shows: gather from the state (read-only), then render text or JSON.

Gathering never creates the state dir or the database: a config that never
ran says so. Times are shown in the config's zone, like the log and the agenda.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .statelock import daemon_pid
from .store.keys import META_DAEMON, META_LAST_SYNC, current_errors
from .store.protocol import StateStore

if TYPE_CHECKING:
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


def gather(
    state_dir: Path,
    db: StateStore | None,
    zone: ZoneInfo,
    sms: str,
    sms_to: str | None,
    replies: str = "off",
    email: str = "off",
) -> Status:
    """Read what the daemon and earlier commands recorded; `db` None: no state yet."""
    from .sms.outbox import Outbox

    pid = daemon_pid(state_dir)
    if db is None:
        return Status(
            str(state_dir), False, pid, None, None, [], sms, sms_to, replies=replies, email=email
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
    )


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
    return {
        "version": JSON_VERSION,
        "state_dir": s.state_dir,
        "state": "present" if s.has_state else "none yet",
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


def _short(stamp: str | None) -> str:
    """`2026-11-30 10:05:00+02:00` for a terminal."""
    return stamp.replace("T", " ") if stamp else "-"


def render_text(s: Status) -> str:
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
    last = s.last_sync or {}
    lines.append(
        f"last sync:  {_short(last.get('at')) if last else 'never'}"
        + (f" ({last['result']})" if last.get("result") else "")
    )
    if not s.errors:
        lines.append("last error: none")
    for e in s.errors:
        lines.append(f"error:      {_short(e.get('at'))} {e['area']}: {e['message']}")
    lines.append(f"sms:        {s.sms}" + (f" to {s.sms_to}" if s.sms_to else ""))
    lines += _channel("sms", s.next_sms, s.sms_counts, s.recent_sends)
    lines.append(f"email:      {s.email}")
    if s.email != "off" or s.email_counts:
        lines += _channel("email", s.next_email, s.email_counts, s.recent_emails)
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
    return "\n".join(lines) + "\n"


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
