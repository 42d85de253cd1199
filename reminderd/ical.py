"""A touch as an iCalendar VEVENT with its VALARMs: owned UID, content hash, VTIMEZONE.

Pure: no I/O. The content hash is computed from the model, not from the
rendered bytes, so a sync with nothing changed never renders anything
(rendering 10,000 events costs seconds; hashing them, milliseconds).
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from .model import AlertKind, Status, Touch, TouchState
from .timeparse import (
    Transition,
    YearlyRule,
    format_offset,
    is_utc_zone,
    zone_rules,
    zone_state,
    zone_transitions,
)

# bump when the layout changes: every event is rewritten once.
# 2: VTIMEZONE with yearly rules (valid after 2037), UTC zones as `...Z`.
RENDER_VERSION = "2"
PRODID = "-//reminderd//reminderd//EN"
UID_DOMAIN = "reminderd"
OWNER_PROP = "X-REMINDERD-KEY"
HASH_PROP = "X-REMINDERD-HASH"
ZERO = timedelta(0)


def uid_for(key: str, salt: str = "") -> str:
    """`acme-close#1` -> `acme-close#1@reminderd`: the stable UID of a touch.

    `salt` (`~` and letters or digits) makes it unique where a provider asks
    for more: across an account's calendars (Fastmail), or never the UID of
    an event it keeps in a trash bin (Nextcloud); see `calendar.profiles`.
    """
    return f"{key}{salt}@{UID_DOMAIN}"


_SALT = re.compile(r"(~[a-z0-9]+)*")


def is_uid_of(uid: str, key: str) -> bool:
    """Whether `uid` is one reminderd gives the touch `key` (with any salt)."""
    suffix = f"@{UID_DOMAIN}"
    if not (uid.startswith(key) and uid.endswith(suffix)):
        return False
    return _SALT.fullmatch(uid[len(key) : -len(suffix)]) is not None


def href_name(uid: str) -> str:
    """The object's file name in the calendar: fixed per UID, URL-safe."""
    return f"reminderd-{hashlib.sha256(uid.encode()).hexdigest()[:32]}.ics"


def wants_event(touch: Touch) -> bool:
    """Every touch `model.touches` keeps has an event, except skipped ones.

    A done or cancelled commitment keeps its touches up to the one marked
    done, without alarms, so the history stays visible but nothing alerts;
    a skipped touch (deleted on the phone, or SKIP) is not written again.
    """
    return touch.state is not TouchState.SKIPPED


def content_hash(touch: Touch) -> str:
    """Hash of everything that shapes the rendered event (but not SMS offsets)."""
    c = touch.commitment
    parts = (
        RENDER_VERSION,
        touch.key,
        c.title,
        touch.start.isoformat(),
        c.zone_name,
        str(c.duration),
        c.channel,
        c.contact.name,
        c.contact.company,
        c.contact.phone,
        c.contact.email,
        touch.purpose,
        c.agenda,
        c.questions,
        c.bring,
        c.next_step,
        tuple(format_offset(a) for a in c.alarms),
        c.tags,
        c.status.value,
        touch.state.value,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def summary_line(touch: Touch) -> str:
    c = touch.commitment
    title = c.title if touch.index == 0 else f"{c.title} (follow-up {touch.index})"
    if c.status is Status.DONE or touch.state is TouchState.DONE:
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


def _local_zone(dt: datetime) -> ZoneInfo | None:
    """The zone to write `dt` in with a TZID, or None to write it in UTC (`...Z`).

    UTC itself (`UTC`, `Etc/UTC`, `GMT`...) is written as UTC: RFC 5545's own
    form, read the same by every server and client, with no VTIMEZONE to get
    wrong (a TZID `GMT` invites a mix-up with Windows' "GMT Standard Time",
    which is London with summer time; and icalendar makes no VTIMEZONE for
    UTC at all). So is a time RFC 5545 cannot write with a TZID:
    the second pass through an hour the clocks repeat (a TZID time is read as
    the first) or a time inside a DST gap the model did not resolve.
    """
    zone = dt.tzinfo
    if not isinstance(zone, ZoneInfo) or zone.key is None or is_utc_zone(zone.key):
        return None
    if dt.replace(fold=0).utcoffset() != dt.utcoffset():
        return None
    return zone


def _add_time(event: icalendar.Event, name: str, dt: datetime) -> ZoneInfo | None:
    zone = _local_zone(dt)
    if zone is None:
        event.add(name, dt.astimezone(UTC))
    else:  # naive value and explicit TZID: icalendar would write UTC+0 places (Iceland) as `Z`
        event.add(name, dt.replace(tzinfo=None), parameters={"TZID": zone.key})
    return zone


def _rrule(rule: YearlyRule) -> dict[str, Any]:
    recur: dict[str, Any] = {"FREQ": "YEARLY", "BYMONTH": rule.month}
    if rule.weekday is None:
        return recur | {"BYMONTHDAY": rule.first_day}
    day = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[rule.weekday]
    if rule.last:
        return recur | {"BYDAY": f"-1{day}"}
    if rule.first_day % 7 == 1:
        return recur | {"BYDAY": f"{rule.first_day // 7 + 1}{day}"}
    return recur | {"BYDAY": day, "BYMONTHDAY": list(range(rule.first_day, rule.first_day + 7))}


def _observance(change: Transition, rule: YearlyRule | None) -> icalendar.Component:
    before, after = change.before, change.after
    # Summer time is DAYLIGHT, also where tzdata writes winter as a negative DST (Dublin)
    daylight = after.dst > ZERO or (after.dst == ZERO and before.dst < ZERO)
    part = icalendar.TimezoneDaylight() if daylight else icalendar.TimezoneStandard()
    part.add("dtstart", change.onset)
    part.add("tzoffsetfrom", before.utcoffset)
    part.add("tzoffsetto", after.utcoffset)
    part.add("tzname", after.name)
    if rule is not None:
        part.add("rrule", _rrule(rule))
    return part


@functools.lru_cache(maxsize=256)
def _vtimezone(zone: ZoneInfo, first_year: int | None, last_year: int) -> icalendar.Timezone:
    """The VTIMEZONE of `zone`, right from Jan 1 `first_year` (None: from its rules' start).

    The zone's current rules repeat for ever (RRULE, the form calendar apps
    write), so it holds for a touch in 2090 as for one next week; icalendar's
    own VTIMEZONE lists each change from 1970 to 2037 and then keeps winter
    time. The same VTIMEZONE for every touch of a zone after its rules began:
    Radicale (vobject) keeps the first VTIMEZONE it reads for a TZID and
    reads every later event with it. Changes before the rules began, and in
    zones whose future follows no yearly rule, are listed one by one, up to
    the end of `last_year`.
    """
    tz = icalendar.Timezone()
    tz.add("tzid", zone.key)
    rules = zone_rules(zone)
    if first_year is not None:
        start = datetime(first_year, 1, 1, tzinfo=UTC)
        state = zone_state(zone, start)
        tz.add_component(_observance(Transition(start, state, state), None))
        end_year = rules.since.year if rules else last_year
        for change in zone_transitions(zone, first_year, end_year):
            if rules is None or change.at < rules.since:
                tz.add_component(_observance(change, None))
    for change, rule in rules.changes if rules else ():
        tz.add_component(_observance(change, rule))
    return tz


def _vtimezone_for(zone: ZoneInfo, instants: list[datetime]) -> icalendar.Timezone:
    """A VTIMEZONE right at all these instants (start, end and alarms of one touch)."""
    in_utc = [i.astimezone(UTC) for i in instants]  # not by wall clock: the same zone ignores fold
    first, last = min(in_utc), max(in_utc)
    rules = zone_rules(zone)
    from_year: int | None = first.year
    if rules is not None and datetime(first.year, 1, 1, tzinfo=UTC) >= rules.since:
        from_year = None  # the rules alone cover it: the same VTIMEZONE for every touch
    return _vtimezone(zone, from_year, last.year if rules is None else 0)


def render(
    touch: Touch, stamp: datetime | None = None, method: str | None = None, uid: str | None = None
) -> bytes:
    """The VCALENDAR for one touch.

    VTIMEZONE (unless in UTC), VEVENT, one VALARM per alarm offset.
    `method` (`PUBLISH`) is for a copy sent as an attachment, never for
    what is stored on a CalDAV server (RFC 4791 forbids METHOD there).
    """
    c = touch.commitment
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    if method:
        cal.add("method", method)
    event = icalendar.Event()
    event.add("uid", uid or uid_for(touch.key))
    event.add("dtstamp", (stamp or datetime.now(UTC)).replace(microsecond=0))
    zones = {_add_time(event, "dtstart", touch.start), _add_time(event, "dtend", touch.end)}
    event.add("summary", summary_line(touch))
    event.add("description", description(touch))
    if c.tags:
        event.add("categories", list(c.tags))
    event.add("status", "CANCELLED" if c.status is Status.CANCELLED else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add(OWNER_PROP, touch.key)
    event.add(HASH_PROP, content_hash(touch))
    if touch.alerting:
        when = touch.start.strftime("%H:%M")
        for offset in c.alarms:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("trigger", offset)  # RELATED=START is the default
            text = f"{c.title} at {when}" + (f": {touch.purpose}" if touch.purpose else "")
            alarm.add("description", text)
            event.add_component(alarm)
    instants = [touch.start, touch.end] + [a.at for a in touch.alerts if a.kind is AlertKind.ALARM]
    for zone in sorted((z for z in zones if z is not None), key=lambda z: str(z.key)):
        cal.add_component(_vtimezone_for(zone, instants))
    cal.add_component(event)
    data: bytes = cal.to_ical()
    return data


_UNFOLD = re.compile(rb"\r?\n[ \t]")
_LINE = re.compile(
    rb"^(UID|X-REMINDERD-KEY|X-REMINDERD-HASH)(?:;[^:\r\n]*)?:([^\r\n]*)", re.M | re.I
)


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
        if not is_uid_of(uids[0].decode("utf-8", "replace"), key):
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
        if key and is_uid_of(uid, str(key)):
            found = event.get(HASH_PROP)
            return str(key), str(found) if found else None
    return None


SERVER_REWRITES = frozenset({b"DTSTAMP", b"LAST-MODIFIED", b"CREATED", b"PRODID", b"SEQUENCE"})
"""Properties servers rewrite on their own; a person's edit is anything else."""


def served_hash(data: bytes) -> str:
    """Hash of an object as the server holds it, blind to what servers rewrite.

    Like vdirsyncer's item hash: unfold, drop the properties in
    `SERVER_REWRITES`, and sort the lines, so a server that re-serialises in
    another order or bumps DTSTAMP on its own leaves the hash as it was.
    """
    lines = [
        line.strip()
        for line in _UNFOLD.sub(b"", data).replace(b"\r\n", b"\n").split(b"\n")
        if line.strip()
    ]
    kept = sorted(
        part
        for line in lines
        if re.split(rb"[;:]", line, maxsplit=1)[0].upper() not in SERVER_REWRITES
        for part in _one_per_value(line)
    )
    return hashlib.blake2b(b"\n".join(kept), digest_size=16).hexdigest()


def _one_per_value(line: bytes) -> list[bytes]:
    """`CATEGORIES:a,b` as `CATEGORIES:a` and `CATEGORIES:b`: servers store it either way
    (Cyrus splits it), and both say the same."""
    name, sep, value = line.partition(b":")
    if sep and name.upper() == b"CATEGORIES":
        return [name + b":" + v for v in re.split(rb"(?<!\\),", value)]
    return [line]


def event_start(data: bytes, zone: ZoneInfo) -> datetime | None:
    """The DTSTART of the one VEVENT in `data` as an aware time (floating times read
    in `zone`), or None when there is none or it is a whole day."""
    try:
        cal = icalendar.Calendar.from_ical(data)
    except Exception:  # icalendar raises several types on garbage: no start to read
        return None
    for event in cal.walk("VEVENT"):
        if "DTSTART" not in event:
            return None
        value = event.decoded("DTSTART")
        if not isinstance(value, datetime):
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return None
