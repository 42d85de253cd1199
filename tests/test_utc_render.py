"""Touches in UTC and in fixed-offset zones, rendered and read back (pure).

Rendering `timezone: UTC` used to crash (icalendar makes no VTIMEZONE for
UTC), and with it every sync. UTC itself is written as UTC (`...Z`), with
no VTIMEZONE; places and fixed offsets keep their TZID and VTIMEZONE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from test_dst_transitions import file_zone

from reminderd.ical import ownership, render
from reminderd.model import AlertKind, Commitment, FollowUp, touches
from reminderd.timeparse import UTC_ZONES, get_zone, is_utc_zone, parse_when

ALARMS = (timedelta(days=-1), timedelta(hours=-1), timedelta(minutes=-10))


def make(zone: str, when: str = "2026-11-30 10:00", **kw: object) -> Commitment:
    base: dict[str, object] = {
        "id": "sam",
        "title": "Call Sam",
        "start": parse_when(when, get_zone(zone)),
        "duration": timedelta(minutes=20),
        "alarms": ALARMS,
        "sms": (timedelta(minutes=-30),),
    }
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def read_back(data: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    cal = icalendar.Calendar.from_ical(data)
    (event,) = cal.walk("VEVENT")
    return cal, event


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC", "GMT", "Etc/GMT"])
def test_utc_is_written_in_utc_without_vtimezone(zone: str) -> None:
    touch = touches(make(zone))[0]
    data = render(touch)
    cal, event = read_back(data)
    assert cal.walk("VTIMEZONE") == []
    assert b"DTSTART:20261130T100000Z" in data and b"DTEND:20261130T102000Z" in data
    assert b"TZID" not in data
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start == datetime(2026, 11, 30, 10, 0, tzinfo=UTC) and start.utcoffset() == timedelta(0)
    assert end - start == timedelta(minutes=20)
    assert [a.decoded("TRIGGER") for a in event.walk("VALARM")] == list(ALARMS)
    assert all("Call Sam at 10:00" in a["DESCRIPTION"] for a in event.walk("VALARM"))
    alarms = [a.at for a in touch.alerts if a.kind is AlertKind.ALARM]
    assert alarms == [
        start + t for t in (-timedelta(days=1), -timedelta(hours=1), -timedelta(minutes=10))
    ]
    assert ownership(data) is not None


def test_utc_follow_ups_render_too() -> None:
    c = make("UTC", follow_ups=(FollowUp(timedelta(days=2), "again"),))
    for touch in touches(c):
        _, event = read_back(render(touch))
        assert event.decoded("DTSTART") == touch.start
    assert touches(c)[1].start == datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("zone,hours", [("Etc/GMT-2", 2), ("Etc/GMT+5", -5)])
def test_fixed_offset_zone_keeps_its_tzid_and_a_vtimezone(zone: str, hours: int) -> None:
    for when in ("2026-11-30 10:00", "2026-06-30 10:00", "2090-06-01 10:00"):
        touch = touches(make(zone, when))[0]
        cal, event = read_back(render(touch))
        (vtimezone,) = cal.walk("VTIMEZONE")
        assert vtimezone["TZID"] == zone == event["DTSTART"].params["TZID"]
        assert [str(p["TZOFFSETTO"].to_ical()) for p in vtimezone.subcomponents] == [
            f"{'+' if hours > 0 else '-'}{abs(hours):02d}00"
        ]
        local = event.decoded("DTSTART").replace(tzinfo=None)
        assert local == touch.start.replace(tzinfo=None) and local.hour == 10
        # read with the file's own VTIMEZONE, as a server does: the exact instant
        assert (
            local.replace(tzinfo=file_zone(vtimezone)).astimezone(UTC)
            == touch.start.astimezone(UTC)
            == local.replace(tzinfo=UTC) - timedelta(hours=hours)
        )
        assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=20)
        assert [a.decoded("TRIGGER") for a in event.walk("VALARM")] == list(ALARMS)
        alarm = touch.alerts[0]
        assert alarm.at == touch.start - timedelta(days=1) and alarm.at.hour == 10


def test_a_place_on_utc_plus_zero_keeps_its_name() -> None:
    """Iceland is on UTC+0 all year; icalendar took it for UTC and rendering crashed too."""
    touch = touches(make("Atlantic/Reykjavik"))[0]
    cal, event = read_back(render(touch))
    assert (
        event["DTSTART"].params["TZID"] == "Atlantic/Reykjavik" == cal.walk("VTIMEZONE")[0]["TZID"]
    )
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_utc_zone_names_are_utc() -> None:
    assert is_utc_zone("UTC") and is_utc_zone("Etc/GMT") and not is_utc_zone("Europe/London")
    assert not is_utc_zone("Etc/GMT-2") and not is_utc_zone("Atlantic/Reykjavik")
    for name in UTC_ZONES:
        zone = ZoneInfo(name)
        for instant in (
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2026, 7, 1, tzinfo=UTC),
            datetime(2200, 7, 1, tzinfo=UTC),
        ):
            assert instant.astimezone(zone).utcoffset() == timedelta(0), name
