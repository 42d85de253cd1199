"""A touch as an iCalendar VEVENT with its VALARMs: owned UID, content hash, VTIMEZONE.

Pure: no I/O. The content hash is computed from the model, not from the
rendered bytes, so a sync with nothing changed never renders anything
(rendering 10,000 events costs seconds; hashing them, milliseconds).
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime

import icalendar

from .model import Status, Touch
from .timeparse import format_offset

RENDER_VERSION = "1"  # bump when the layout changes: every event is rewritten once
PRODID = "-//reminderd//reminderd//EN"
UID_DOMAIN = "reminderd"
OWNER_PROP = "X-REMINDERD-KEY"
HASH_PROP = "X-REMINDERD-HASH"


def uid_for(key: str) -> str:
    """`acme-close#1` -> `acme-close#1@reminderd`: the stable UID of a touch."""
    return f"{key}@{UID_DOMAIN}"


def href_name(uid: str) -> str:
    """The object's file name in the calendar: fixed per UID, URL-safe."""
    return f"reminderd-{hashlib.sha256(uid.encode()).hexdigest()[:32]}.ics"


def wants_event(touch: Touch) -> bool:
    """Open commitments keep every touch; done or cancelled keep only the first,
    without alarms, so the history stays visible but nothing alerts."""
    return touch.commitment.active or touch.index == 0


def content_hash(touch: Touch) -> str:
    """Hash of everything that shapes the rendered event (but not SMS offsets)."""
    c = touch.commitment
    parts = (
        RENDER_VERSION, touch.key, c.title, touch.start.isoformat(), c.zone_name,
        str(c.duration), c.channel, c.contact.name, c.contact.company, c.contact.phone,
        c.contact.email, touch.purpose, c.agenda, c.questions, c.bring, c.next_step,
        tuple(format_offset(a) for a in c.alarms), c.tags, c.status.value,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def summary_line(touch: Touch) -> str:
    c = touch.commitment
    title = c.title if touch.index == 0 else f"{c.title} (follow-up {touch.index})"
    if c.status is Status.DONE:
        return f"Done: {title}"
    return title


def description(touch: Touch) -> str:
    """The event body, laid out for a phone screen: why first, then what to have ready."""
    c = touch.commitment
    lines: list[str] = []
    if touch.purpose:
        lines.append(f"Why: {touch.purpose}")
    for label, items in (("Bring", c.bring), ("Ask", c.questions), ("Agenda", c.agenda)):
        if items:
            lines.append(f"{label}:")
            lines += [f"- {item}" for item in items]
    if c.next_step:
        lines.append(f"Next step: {c.next_step}")
    who = c.contact.label()
    if who:
        lines.append(f"Contact: {who}")
    if c.contact.phone:
        lines.append(f"Phone: {c.contact.phone} (tel:{c.contact.phone})")
    if c.contact.email:
        lines.append(f"Email: {c.contact.email} (mailto:{c.contact.email})")
    lines.append(f"Channel: {c.channel}. From {c.source.path} ({touch.key}).")
    return "\n".join(lines)


@functools.lru_cache(maxsize=64)
def _vtimezone(zone_name: str) -> icalendar.Timezone:
    """A full VTIMEZONE (DST rules included); never left to the server to invent."""
    from zoneinfo import ZoneInfo

    probe = icalendar.Calendar()
    event = icalendar.Event()
    event.add("dtstart", datetime(2000, 1, 1, tzinfo=ZoneInfo(zone_name)))
    probe.add_component(event)
    probe.add_missing_timezones()
    return probe.timezones[0]


def render(touch: Touch, stamp: datetime | None = None) -> bytes:
    """The VCALENDAR for one touch: VTIMEZONE, VEVENT, one VALARM per alarm offset."""
    c = touch.commitment
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    event = icalendar.Event()
    event.add("uid", uid_for(touch.key))
    event.add("dtstamp", (stamp or datetime.now(UTC)).replace(microsecond=0))
    event.add("dtstart", touch.start)
    event.add("dtend", touch.end)
    event.add("summary", summary_line(touch))
    event.add("description", description(touch))
    if c.tags:
        event.add("categories", list(c.tags))
    event.add("status", "CANCELLED" if c.status is Status.CANCELLED else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add(OWNER_PROP, touch.key)
    event.add(HASH_PROP, content_hash(touch))
    if c.active:
        when = touch.start.strftime("%H:%M")
        for offset in c.alarms:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("trigger", offset)  # RELATED=START is the default
            text = f"{c.title} at {when}" + (f": {touch.purpose}" if touch.purpose else "")
            alarm.add("description", text)
            event.add_component(alarm)
    cal.add_component(_vtimezone(c.zone_name))
    cal.add_component(event)
    data: bytes = cal.to_ical()
    return data


_UNFOLD = re.compile(rb"\r?\n[ \t]")
_LINE = re.compile(rb"^(UID|X-REMINDERD-KEY|X-REMINDERD-HASH)(?:;[^:\r\n]*)?:([^\r\n]*)", re.M | re.I)


def ownership(data: bytes) -> tuple[str, str | None] | None:
    """(touch key, content hash) if this object was written by reminderd, else None.

    Objects we wrote have one VEVENT, so three lines tell; a full parse
    (about 1 ms each, 10 s for 10,000 when adopting after a lost state) is
    kept for anything else.
    """
    fields: dict[bytes, list[bytes]] = {}
    for name, value in _LINE.findall(_UNFOLD.sub(b"", data)):
        fields.setdefault(name.upper(), []).append(value.strip())
    keys, uids = fields.get(b"X-REMINDERD-KEY", []), fields.get(b"UID", [])
    if not keys:
        return None  # never ours: we always write the key
    if len(keys) == 1 and len(uids) == 1 and b"\\" not in keys[0]:
        key = keys[0].decode("utf-8", "replace")
        if uids[0].decode("utf-8", "replace") != uid_for(key):
            return None
        hashes = fields.get(b"X-REMINDERD-HASH", [])
        return key, hashes[0].decode("ascii", "replace") if len(hashes) == 1 else None
    return _ownership_parsed(data)


def _ownership_parsed(data: bytes) -> tuple[str, str | None] | None:
    try:
        cal = icalendar.Calendar.from_ical(data)
    except Exception:  # icalendar raises several types on foreign garbage; it is not ours
        return None
    for event in cal.walk("VEVENT"):
        key = event.get(OWNER_PROP)
        uid = str(event.get("UID", ""))
        if key and uid == uid_for(str(key)):
            found = event.get(HASH_PROP)
            return str(key), str(found) if found else None
    return None
