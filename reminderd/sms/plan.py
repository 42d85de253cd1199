"""Which SMS backups should exist, and when each goes out: pure.

Every (commitment, touch, offset) is one planned send with a deterministic
key. The touch's start is part of the key, so a rescheduled item gets a
fresh reminder, while an unchanged one is never sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..model import Commitment, touches
from ..timeparse import apply_offset, format_offset


@dataclass(frozen=True, slots=True)
class PlannedSend:
    key: str
    due: datetime  # UTC
    send_at: datetime  # UTC, out of quiet hours
    deadline: datetime  # UTC: later than this, the backup is missed, not sent
    payload: dict[str, str | None]


def send_key(touch_key: str, offset: timedelta, start: datetime) -> str:
    start_utc = start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{touch_key}@{format_offset(offset)}@{start_utc}"


def in_window(moment: time, window: tuple[time, time]) -> bool:
    """Is a wall-clock time inside [start, end) of a window that may cross midnight?"""
    start, end = window
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end


def quiet_adjust(
    due: datetime, start: datetime, window: tuple[time, time] | None, zone: ZoneInfo
) -> datetime:
    """When a send due at `due` for an item at `start` goes out.

    Inside quiet hours it waits for the window's end, but only if that is
    still before the item; an item due inside the window itself is never
    held back (that reminder is the point), nor is one the wait would make
    useless.
    """
    if window is None:
        return due
    local_due = due.astimezone(zone)
    if not in_window(local_due.time(), window) or (
        in_window(start.astimezone(zone).time(), window)
        and start.astimezone(zone) - local_due < timedelta(hours=24)
    ):
        return due
    end = local_due.replace(hour=window[1].hour, minute=window[1].minute, second=0, microsecond=0)
    if end <= local_due:
        end += timedelta(days=1)
    end = end.replace(tzinfo=None).replace(tzinfo=zone)  # wall clock, then back to an instant
    # compared in UTC: two times of one zone compare by wall clock, wrong inside a DST fold
    return end.astimezone(UTC) if end.astimezone(UTC) < start.astimezone(UTC) else due


def planned_sends(
    commitments: Iterable[Commitment],
    *,
    quiet: tuple[time, time] | None,
    zone: ZoneInfo,
    late_grace: timedelta,
    recipient: Callable[[Commitment], str | None] | None = None,
) -> dict[str, PlannedSend]:
    """Every SMS backup of every open commitment's touches.

    `recipient` (a team): the number a commitment's backups go to, put in each
    payload as `to`; None (or no number) leaves `to` out: the configured one.
    """
    found: dict[str, PlannedSend] = {}
    for c in commitments:
        if not c.active:
            continue
        to = recipient(c) if recipient is not None else None
        for t in touches(c):
            if not t.alerting or not (c.sms or t.snoozes):
                continue
            payload = {
                "touch": t.key,
                "title": c.title,
                "start": t.start.isoformat(),
                "zone": c.zone_name,
                "who": c.contact.label(),
                "phone": c.contact.phone,
                "why": t.purpose,
                "bring": ", ".join(c.bring) or None,
            }
            if to:
                payload["to"] = to
            # a snooze is an instant, not an offset: no local-day arithmetic across DST
            dues = [(o, apply_offset(t.start, o)) for o in c.sms]
            dues += [(at - t.start, at) for at in t.snoozes]
            for offset, at in dues:
                due = at.astimezone(UTC)
                send_at = quiet_adjust(due, t.start, quiet, zone)
                key = send_key(t.key, offset, t.start)
                found[key] = PlannedSend(
                    key,
                    due,
                    send_at,
                    send_at + late_grace,
                    dict(payload, offset=format_offset(offset)),
                )
    return found
