"""Touches, alarms and SMS around DST changes land at the right instants (pure).

Fixed dates: Europe/Athens changes on the last Sundays of March and October
at 01:00 UTC, America/New_York on the second Sunday of March and the first
of November at 02:00 local. An offset is read as RFC 5545 reads an alarm
TRIGGER: whole days keep the local time (`-1d` is 10:00 the day before a
10:00 touch, 23 or 25 hours), hours and minutes are exact elapsed time.
Every expected instant below is written out in UTC.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import dateutil.tz
import icalendar
import pytest

from reminderd.ical import render
from reminderd.model import AlertKind, Commitment, FollowUp, Touch, touches, upcoming
from reminderd.timeparse import parse_when

ATHENS = ZoneInfo("Europe/Athens")
NEW_YORK = ZoneInfo("America/New_York")


def make(zone: ZoneInfo, when: str, **kw: object) -> Commitment:
    base: dict[str, object] = {
        "id": "dst",
        "title": "Call",
        "start": parse_when(when, zone),
        "duration": timedelta(minutes=20),
    }
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def read_back(touch: Touch) -> tuple[icalendar.Calendar, icalendar.Event]:
    cal = icalendar.Calendar.from_ical(render(touch))
    (event,) = cal.walk("VEVENT")
    return cal, event


def instant(cal: icalendar.Calendar, prop: icalendar.vDDDTypes, days: int = 0) -> datetime:
    """The instant a property names, moved by whole `days` of local time, read with
    the file's own VTIMEZONE (as a server does), not with a tz database."""
    value = prop.dt + timedelta(days=days)
    if "TZID" not in prop.params:
        return value.astimezone(UTC)  # type: ignore[no-any-return]
    (vtimezone,) = (tz for tz in cal.walk("VTIMEZONE") if tz["TZID"] == prop.params["TZID"])
    return value.replace(tzinfo=file_zone(vtimezone)).astimezone(UTC)  # type: ignore[no-any-return]


def file_zone(vtimezone: icalendar.Timezone) -> tzinfo:
    """The zone a VTIMEZONE defines, built by dateutil as Radicale (vobject) builds it;
    icalendar's `to_tz()` would look the TZID up in our own tz database instead."""
    zone = dateutil.tz.tzical(io.StringIO(vtimezone.to_ical().decode())).get()
    assert zone is not None
    return zone


def alarm_instants(cal: icalendar.Calendar, event: icalendar.Event) -> list[datetime]:
    """Where a calendar app following RFC 5545 fires each VALARM of the event."""
    found = []
    for alarm in event.walk("VALARM"):
        trigger = alarm.decoded("TRIGGER")
        days = abs(trigger).days * (-1 if trigger < timedelta(0) else 1)
        rest = trigger - timedelta(days=days)
        found.append(instant(cal, event["DTSTART"], days) + rest)
    return found


@pytest.mark.parametrize(
    "zone,when,offset,expected",
    [
        # -1d across the change: the same local time the day before (23 h / 25 h earlier)
        (ATHENS, "2026-03-29 10:00", "-1d", utc(2026, 3, 28, 8, 0)),
        (ATHENS, "2026-10-25 10:00", "-1d", utc(2026, 10, 24, 7, 0)),
        (NEW_YORK, "2026-03-08 10:00", "-1d", utc(2026, 3, 7, 15, 0)),
        (NEW_YORK, "2026-11-01 10:00", "-1d", utc(2026, 10, 31, 14, 0)),
        (ATHENS, "2021-03-28 10:00", "-1d", utc(2021, 3, 27, 8, 0)),
        (NEW_YORK, "2021-11-07 10:00", "-1d", utc(2021, 11, 6, 14, 0)),
        (ATHENS, "2090-03-26 10:00", "-1d", utc(2090, 3, 25, 8, 0)),
        (NEW_YORK, "2090-11-05 10:00", "-1d", utc(2090, 11, 4, 14, 0)),
        # hours and minutes across the change: exact elapsed time
        (ATHENS, "2026-03-29 04:30", "-1h", utc(2026, 3, 29, 0, 30)),
        (ATHENS, "2026-10-25 04:30", "-1h", utc(2026, 10, 25, 1, 30)),
        (NEW_YORK, "2026-03-08 03:15", "-30m", utc(2026, 3, 8, 6, 45)),
        (NEW_YORK, "2026-11-01 02:15", "-1h", utc(2026, 11, 1, 6, 15)),
        (NEW_YORK, "2090-03-12 03:15", "-30m", utc(2090, 3, 12, 6, 45)),
        # both: one local day back, then two real hours
        (ATHENS, "2026-03-30 01:00", "-1d2h", utc(2026, 3, 28, 21, 0)),
    ],
)
def test_alarm_and_sms_across_a_change(
    zone: ZoneInfo, when: str, offset: str, expected: datetime
) -> None:
    from reminderd.timeparse import parse_offset

    delta = parse_offset(offset)
    touch = touches(make(zone, when, alarms=(delta,), sms=(delta,)))[0]
    by_kind = {a.kind: a.at for a in touch.alerts}
    assert by_kind[AlertKind.ALARM].astimezone(UTC) == expected
    assert by_kind[AlertKind.SMS].astimezone(UTC) == expected
    assert by_kind[AlertKind.SMS].tzinfo is zone  # shown in the commitment's local time
    cal, event = read_back(touch)
    assert instant(cal, event["DTSTART"]) == touch.start.astimezone(UTC)
    assert alarm_instants(cal, event) == [expected]


def test_an_offset_never_lands_after_the_start() -> None:
    """Before: `-30m` from 03:15 EDT on the spring-forward night was 02:45 local,
    a time that does not exist, read as 07:45 UTC: half an hour after the start."""
    start = parse_when("2026-03-08 03:15", NEW_YORK).astimezone(UTC)
    c = make(
        NEW_YORK, "2026-03-08 03:15", sms=tuple(timedelta(minutes=-m) for m in range(5, 300, 5))
    )
    ats = [a.at.astimezone(UTC) for a in touches(c)[0].alerts]
    assert ats == sorted(ats) and all(at < start for at in ats)
    assert ats[0] == start - timedelta(minutes=295) and ats[-1] == start - timedelta(minutes=5)


def test_sms_in_the_repeated_hour_is_shown_in_the_second_pass() -> None:
    (sms,) = touches(make(ATHENS, "2026-10-25 04:30", sms=(timedelta(hours=-1),)))[0].alerts
    assert (sms.at.strftime("%H:%M"), sms.at.utcoffset()) == ("03:30", timedelta(hours=2))


@pytest.mark.parametrize(
    "zone,when,follow_ups,skip,expected",
    [
        (
            ATHENS,
            "2026-03-27 10:00",
            ("2d", "1d"),
            False,
            [utc(2026, 3, 27, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)],
        ),
        (ATHENS, "2026-10-23 10:00", ("3d",), False, [utc(2026, 10, 23, 7), utc(2026, 10, 26, 8)]),
        (NEW_YORK, "2026-03-06 09:00", ("2d",), False, [utc(2026, 3, 6, 14), utc(2026, 3, 8, 13)]),
        (
            NEW_YORK,
            "2026-10-30 09:00",
            ("1d",),
            True,
            [utc(2026, 10, 30, 13), utc(2026, 11, 2, 14)],
        ),
        (
            NEW_YORK,
            "2021-10-29 09:00",
            ("1w",),
            False,
            [utc(2021, 10, 29, 13), utc(2021, 11, 5, 13)],
        ),
        (ATHENS, "2090-03-24 10:00", ("2d",), False, [utc(2090, 3, 24, 8), utc(2090, 3, 26, 7)]),
    ],
)
def test_follow_up_cadence_keeps_local_time(
    zone: ZoneInfo, when: str, follow_ups: tuple[str, ...], skip: bool, expected: list[datetime]
) -> None:
    from reminderd.timeparse import parse_duration

    steps = tuple(FollowUp(parse_duration(f)) for f in follow_ups)
    got = touches(
        make(zone, when, follow_ups=steps, skip_weekends=skip, alarms=(timedelta(minutes=-10),))
    )
    assert [t.start.astimezone(UTC) for t in got] == expected
    assert len({t.start.strftime("%H:%M") for t in got}) == 1  # the same local time every touch
    for touch in got:
        cal, event = read_back(touch)
        assert event["DTSTART"].params["TZID"] == zone.key
        assert instant(cal, event["DTSTART"]) == touch.start.astimezone(UTC)
        assert instant(cal, event["DTEND"]) == touch.start.astimezone(UTC) + timedelta(minutes=20)
        assert alarm_instants(cal, event) == [touch.start.astimezone(UTC) - timedelta(minutes=10)]


def test_a_sub_day_cadence_is_exact() -> None:
    got = touches(make(ATHENS, "2026-03-28 20:00", follow_ups=(FollowUp(timedelta(hours=12)),)))
    assert got[1].start.astimezone(UTC) == utc(2026, 3, 29, 6, 0)  # 09:00 EEST: 12 real hours


def test_an_event_that_spans_the_repeated_hour_keeps_its_length() -> None:
    """01:30 EDT + 1h is 01:30 EST; written with a TZID it would read as 01:30 EDT."""
    touch = touches(make(NEW_YORK, "2026-11-01T01:30-04:00", duration=timedelta(hours=1)))[0]
    assert touch.end.astimezone(UTC) == utc(2026, 11, 1, 6, 30)
    cal, event = read_back(touch)
    assert instant(cal, event["DTSTART"]) == utc(2026, 11, 1, 5, 30)
    assert instant(cal, event["DTEND"]) == utc(2026, 11, 1, 6, 30)


def test_a_when_in_the_second_pass_of_the_repeated_hour() -> None:
    """Written with its UTC offset on purpose (the local time alone is ambiguous)."""
    touch = touches(make(ATHENS, "2026-10-25T03:30+02:00", alarms=(timedelta(minutes=-10),)))[0]
    cal, event = read_back(touch)
    assert instant(cal, event["DTSTART"]) == utc(2026, 10, 25, 1, 30)
    assert instant(cal, event["DTEND"]) == utc(2026, 10, 25, 1, 50)
    assert alarm_instants(cal, event) == [utc(2026, 10, 25, 1, 20)]
    cal, event = read_back(touches(make(ATHENS, "2026-10-25T03:30+03:00"))[0])  # the first pass
    assert event["DTSTART"].params["TZID"] == "Europe/Athens"
    assert instant(cal, event["DTSTART"]) == utc(2026, 10, 25, 0, 30)


def test_upcoming_compares_instants_inside_the_repeated_hour() -> None:
    early = make(ATHENS, "2026-10-25T03:40+03:00", id="early")  # 00:40 UTC
    late = make(ATHENS, "2026-10-25T03:20+02:00", id="late")  # 01:20 UTC
    since = parse_when("2026-10-25T03:30+02:00", ATHENS)  # 01:30 UTC, same zone object
    assert [t.key for t in upcoming([early, late], since - timedelta(hours=2), since)] == [
        "early#0",
        "late#0",
    ]
    assert upcoming([early, late], since, since + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    "zone,rules",
    [
        (
            ATHENS,
            [
                (
                    "DAYLIGHT",
                    "19960331T030000",
                    "+0200",
                    "+0300",
                    "FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
                ),
                (
                    "STANDARD",
                    "19961027T040000",
                    "+0300",
                    "+0200",
                    "FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
                ),
            ],
        ),
        (
            NEW_YORK,
            [
                (
                    "DAYLIGHT",
                    "20070311T020000",
                    "-0500",
                    "-0400",
                    "FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
                ),
                (
                    "STANDARD",
                    "20071104T020000",
                    "-0400",
                    "-0500",
                    "FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
                ),
            ],
        ),
    ],
)
def test_vtimezone_states_the_rules_once(zone: ZoneInfo, rules: list[tuple[str, ...]]) -> None:
    """Two yearly rules, each starting on the local time before the change (RFC 5545)."""
    for when in ("2026-06-01 10:00", "2090-06-01 10:00"):
        cal, _ = read_back(touches(make(zone, when))[0])
        (vtimezone,) = cal.walk("VTIMEZONE")
        assert [
            (
                p.name,
                p["DTSTART"].to_ical().decode(),
                p["TZOFFSETFROM"].to_ical(),
                p["TZOFFSETTO"].to_ical(),
                p["RRULE"].to_ical().decode(),
            )
            for p in vtimezone.subcomponents
        ] == rules


def test_planned_sms_go_out_at_the_model_alert_times_across_dst() -> None:
    """The outbox's send times are the model's SMS alert times (one rule), DST nights included."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from reminderd.model import AlertKind, Commitment, touches
    from reminderd.sms.plan import planned_sends

    for zone_name, start in (
        ("America/New_York", datetime(2026, 3, 8, 3, 15)),
        ("Europe/Athens", datetime(2026, 3, 29, 4, 30)),
        ("Europe/Athens", datetime(2026, 10, 26, 10, 0)),
    ):
        zone = ZoneInfo(zone_name)
        c = Commitment(
            id="x",
            title="Call",
            start=start.replace(tzinfo=zone),
            duration=timedelta(minutes=15),
            sms=(timedelta(minutes=-30), timedelta(hours=-1), timedelta(days=-1)),
        )
        planned = planned_sends([c], quiet=None, zone=zone, late_grace=timedelta(minutes=30))
        expected = sorted(
            a.at.astimezone(UTC) for t in touches(c) for a in t.alerts if a.kind is AlertKind.SMS
        )
        assert sorted(p.due for p in planned.values()) == expected
        assert all(p.due < c.start for p in planned.values())  # never after the call
