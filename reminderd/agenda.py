"""What `validate` and `agenda` print: pure functions from commitments to text or JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .model import Alert, AlertKind, Commitment, Touch, touches, upcoming
from .sms.plan import quiet_adjust
from .sms.text import clock_label
from .timeparse import format_offset

JSON_VERSION = 1


def summary(commitments: Sequence[Commitment], files: int, sms_on: bool) -> str:
    """`3 files, 12 commitments (10 open), 20 touches, 60 alarms, 25 SMS`."""
    open_ = [c for c in commitments if c.active]
    all_touches = [t for c in open_ for t in touches(c)]
    alarms = sum(len(t.commitment.alarms) for t in all_touches)
    sms = sum(len(t.commitment.sms) for t in all_touches)
    emails = sum(len(t.commitment.email) for t in all_touches)
    return (
        f"{files} file{'s' if files != 1 else ''}, {len(commitments)} "
        f"commitment{'s' if len(commitments) != 1 else ''} "
        f"({len(open_)} open), {len(all_touches)} touches, {alarms} alarms, "
        f"{sms} SMS{'' if sms_on else ' (SMS off: no sms section in the config)'}"
        + (f", {emails} email alert{'s' if emails != 1 else ''}" if emails else "")
    )


AlertsFn = Callable[[Touch], Sequence[Alert]]


def alerts_as_planned(
    quiet: tuple[time, time] | None, zone: ZoneInfo, sms_on: bool, email_on: bool = False
) -> AlertsFn:
    """A touch's alerts as they will really fire.

    SMS move out of quiet hours, and there are none if SMS is off; no email
    alerts without an `email:` section.
    """

    def alerts(t: Touch) -> tuple[Alert, ...]:
        found = []
        for a in t.alerts:
            if a.kind is AlertKind.EMAIL and not email_on:
                continue
            if a.kind is AlertKind.SMS:
                if not sms_on:
                    continue
                at = quiet_adjust(a.at.astimezone(UTC), t.start, quiet, zone).astimezone(
                    a.at.tzinfo
                )
                a = Alert(a.kind, a.offset, at)
            found.append(a)
        return tuple(sorted(found, key=lambda a: (a.at, a.kind.value)))

    return alerts


def render_text(
    items: Sequence[Touch],
    days: int,
    zone: str,
    after: Touch | None = None,
    alerts: AlertsFn = lambda t: t.alerts,
) -> str:
    """Human agenda: one block per touch, every alert time in the touch's zone."""
    if not items:
        text = f"Nothing in the next {days} days."
        if after is not None:
            text += (
                f" Next: {after.start.strftime('%a %d %b %Y %H:%M %Z')} "
                f"{after.commitment.title} ({after.key})."
            )
        return text + "\n"
    lines = [
        f"{len(items)} follow-up{'s' if len(items) != 1 else ''} in the next {days} days "
        f"(times local to each item; config zone {zone}):",
        "",
    ]
    for t in items:
        lines += _block(t, alerts)
    return "\n".join(lines)


def _block(t: Touch, alerts: AlertsFn) -> list[str]:
    """One touch for a terminal: its time and title, what to know, its alerts, a blank line."""
    c = t.commitment
    lines = [
        f"{t.start.strftime('%a %d %b %Y %H:%M')}-{t.end.strftime('%H:%M')} "
        f"{t.start.strftime('%Z')}  {c.title}  [{c.channel}]  {t.key}"
    ]
    who = c.contact.label()
    if who or c.contact.phone or c.contact.email:
        parts = [p for p in (who, c.contact.phone, c.contact.email) if p]
        lines.append(f"    with     {'  '.join(parts)}")
    if t.purpose:
        lines.append(f"    why      {t.purpose}")
    if c.bring:
        lines.append(f"    bring    {'; '.join(c.bring)}")
    if c.questions:
        lines.append(f"    ask      {'; '.join(c.questions)}")
    if c.agenda:
        lines.append(f"    agenda   {'; '.join(c.agenda)}")
    if c.next_step:
        lines.append(f"    next     {c.next_step}")
    shown = [
        f"{a.kind.value} {clock_label(a.at, t.start)} ({format_offset(a.offset)})"
        for a in alerts(t)
    ]
    lines.append(f"    alerts   {', '.join(shown) if shown else 'none'}")
    lines.append("")
    return lines


@dataclass(frozen=True, slots=True)
class PersonAgenda:
    """One person's part of a team's agenda: their touches in the window, the first one
    after it (for "nothing soon"), and their alerts as they will fire for them."""

    person: str
    items: Sequence[Touch]
    after: Touch | None
    alerts: AlertsFn


def render_team_text(groups: Sequence[PersonAgenda], days: int, zone: str) -> str:
    """A team's agenda: one heading per person, in the config's order; a person with
    nothing upcoming gets one line."""
    total = sum(len(g.items) for g in groups)
    lines = [
        f"{total} follow-up{'s' if total != 1 else ''} in the next {days} days for "
        f"{len(groups)} {'person' if len(groups) == 1 else 'people'} "
        f"(times local to each item; config zone {zone}):",
        "",
    ]
    for g in groups:
        n = len(g.items)
        if not n:
            lines.append(f"== {g.person}: nothing in the next {days} days ==")
            if g.after is not None:
                lines.append(
                    f"next: {g.after.start.strftime('%a %d %b %Y %H:%M %Z')} "
                    f"{g.after.commitment.title} ({g.after.key})"
                )
            lines.append("")
            continue
        lines += [f"== {g.person}: {n} follow-up{'s' if n != 1 else ''} ==", ""]
        for t in g.items:
            lines += _block(t, g.alerts)
    return "\n".join(lines)


def render_json(
    items: Sequence[Touch],
    now: datetime,
    days: int,
    zone: str,
    alerts: AlertsFn = lambda t: t.alerts,
) -> dict[str, Any]:
    """The stable `agenda --json` document (schema in README, `version` bumps on change)."""
    return {
        "version": JSON_VERSION,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "days": days,
        "timezone": zone,
        "touches": [touch_json(t, alerts) for t in items],
    }


def render_team_json(
    groups: Sequence[PersonAgenda], now: datetime, days: int, zone: str
) -> dict[str, Any]:
    """`render_json` for a team: the same document, every touch with its `person`, all of
    them in time order."""
    found = [(t, g) for g in groups for t in g.items]
    found.sort(key=lambda tg: (tg[0].start.astimezone(UTC), tg[0].key))
    doc = render_json([], now, days, zone)
    doc["touches"] = [dict(touch_json(t, g.alerts), person=g.person) for t, g in found]
    return doc


def touch_json(t: Touch, alerts: AlertsFn = lambda t: t.alerts) -> dict[str, Any]:
    c = t.commitment
    return {
        "key": t.key,
        "id": c.id,
        "touch": t.index,
        "title": c.title,
        "start": t.start.isoformat(timespec="seconds"),
        "end": t.end.isoformat(timespec="seconds"),
        "timezone": c.zone_name,
        "channel": c.channel,
        "status": c.status.value,
        "contact": {
            "name": c.contact.name,
            "company": c.contact.company,
            "phone": c.contact.phone,
            "email": c.contact.email,
        },
        "purpose": t.purpose,
        "bring": list(c.bring),
        "questions": list(c.questions),
        "agenda": list(c.agenda),
        "next_step": c.next_step,
        "tags": list(c.tags),
        "source": str(c.source),
        "alerts": [
            {
                "kind": a.kind.value,
                "offset": format_offset(a.offset),
                "at": a.at.isoformat(timespec="seconds"),
            }
            for a in alerts(t)
        ],
    }


def window(
    commitments: Sequence[Commitment], now: datetime, days: int
) -> tuple[list[Touch], Touch | None]:
    """Touches in the next `days` days, and the first one after, for "nothing soon"."""
    until = now + timedelta(days=days)
    items = upcoming(commitments, now, until)
    later = upcoming(commitments, until, datetime.max.replace(tzinfo=UTC)) if not items else []
    return items, (later[0] if later else None)


__all__ = [
    "AlertKind",
    "PersonAgenda",
    "render_json",
    "render_team_json",
    "render_team_text",
    "render_text",
    "summary",
    "touch_json",
    "window",
]
