"""Rendering a touch as VEVENT + VALARMs (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from reminderd.ical import content_hash, href_name, ownership, render, uid_for, wants_event
from reminderd.model import Commitment, Contact, FollowUp, Status, touches

ATHENS = ZoneInfo("Europe/Athens")


def make(**kw: object) -> Commitment:
    base: dict[str, object] = {
        "id": "acme",
        "title": "Call Alex",
        "start": datetime(2026, 11, 30, 10, tzinfo=ATHENS),
        "duration": timedelta(minutes=20),
        "contact": Contact("Alex", "ACME", "+302101234567", "a@acme.example"),
        "purpose": "Card details",
        "bring": ("Contract PDF",),
        "questions": ("Pricing?",),
        "agenda": ("Recap",),
        "next_step": "Send contract",
        "alarms": (timedelta(days=-1), timedelta(minutes=-10)),
        "tags": ("hot",),
    }
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def test_event_has_everything_a_phone_needs() -> None:
    cal = icalendar.Calendar.from_ical(render(touches(make())[0]))
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == "acme#0@reminderd" == uid_for("acme#0")
    assert event["DTSTART"].params["TZID"] == "Europe/Athens"
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=20)
    assert [a.decoded("TRIGGER") for a in event.walk("VALARM")] == [
        timedelta(days=-1),
        timedelta(minutes=-10),
    ]
    assert all(
        a["ACTION"] == "DISPLAY" and "Call Alex at 10:00" in a["DESCRIPTION"]
        for a in event.walk("VALARM")
    )
    text = str(event["DESCRIPTION"])
    assert (
        text.index("Why: Card details")
        < text.index("Bring:\n- Contract PDF")
        < text.index("Next step")
    )
    assert "tel:+302101234567" in text and "Contact: Alex (ACME)" in text
    assert cal.walk("VTIMEZONE")[0]["TZID"] == "Europe/Athens"
    assert ownership(render(touches(make())[0])) == ("acme#0", content_hash(touches(make())[0]))


def test_text_cannot_inject_properties() -> None:
    evil = "x\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil"
    data = render(touches(make(title=evil, purpose=evil))[0])
    cal = icalendar.Calendar.from_ical(data)
    assert len(cal.walk("VEVENT")) == 1 and str(cal.walk("VEVENT")[0]["UID"]) == "acme#0@reminderd"
    assert b"\r\nUID:evil" not in data


def test_hash_tracks_content_but_not_sms() -> None:
    base = touches(make())[0]
    assert content_hash(base) == content_hash(touches(make(sms=(timedelta(minutes=-5),)))[0])
    assert content_hash(base) != content_hash(touches(make(purpose="other"))[0])
    assert content_hash(base) != content_hash(touches(make(alarms=()))[0])


def test_done_and_cancelled_keep_first_touch_without_alarms() -> None:
    for status, prefix, ical_status in (
        (Status.DONE, "Done: ", "CONFIRMED"),
        (Status.CANCELLED, "", "CANCELLED"),
    ):
        c = make(status=status, follow_ups=(FollowUp(timedelta(days=2)),))
        (first,) = touches(c)  # the follow-up is gone: no event, nothing alerts
        assert wants_event(first)
        (event,) = icalendar.Calendar.from_ical(render(first)).walk("VEVENT")
        assert event.walk("VALARM") == [] and str(event["STATUS"]) == ical_status
        assert str(event["SUMMARY"]).startswith(prefix)


def test_foreign_data_is_not_ours_and_names_are_safe() -> None:
    assert ownership(b"not ical at all") is None
    assert (
        ownership(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
        is None
    )
    name = href_name("weird/uid#1@reminderd")
    assert name.startswith("reminderd-") and name.endswith(".ics") and "/" not in name


def test_far_future_touch_renders_right_with_one_vtimezone_per_zone() -> None:
    """icalendar's VTIMEZONE stopped at 2037: a June 2090 call read by a server
    from the file (Radicale does) was one hour late. Ours repeats the rules."""
    from test_dst_transitions import file_zone

    vtimezones = set()
    for start, utc_hour in (
        (datetime(2090, 6, 1, 10, tzinfo=ATHENS), 7),
        (datetime(2200, 12, 31, 10, tzinfo=ATHENS), 8),
        (datetime(2026, 11, 30, 10, tzinfo=ATHENS), 8),
    ):
        data = render(touches(make(start=start))[0])
        cal = icalendar.Calendar.from_ical(data)
        (vtimezone,) = cal.walk("VTIMEZONE")
        (event,) = cal.walk("VEVENT")
        local = event.decoded("DTSTART").replace(tzinfo=None)
        assert local.replace(tzinfo=file_zone(vtimezone)).astimezone(UTC).hour == utc_hour
        vtimezones.add(vtimezone.to_ical())
    assert (
        len(vtimezones) == 1 and len(vtimezones.pop()) < 600
    )  # two yearly rules, not every change since 1970


def test_a_zone_without_yearly_rules_lists_the_changes_it_needs() -> None:
    """tzdata tabulates Egypt's changes (the autumn one can fall in November):
    the VTIMEZONE lists those around the touch, here on the days the clocks change."""
    from test_dst_transitions import file_zone

    cairo = ZoneInfo("Africa/Cairo")
    for start, offsets in (
        (datetime(2090, 4, 28, 10, tzinfo=cairo), (3, 2)),
        (datetime(2090, 10, 27, 10, tzinfo=cairo), (2, 3)),
    ):
        touch = touches(make(start=start))[0]
        cal = icalendar.Calendar.from_ical(render(touch))
        (vtimezone,) = cal.walk("VTIMEZONE")
        (event,) = cal.walk("VEVENT")
        local = event.decoded("DTSTART").replace(tzinfo=None)
        day_before = (local - timedelta(days=1)).replace(
            tzinfo=file_zone(vtimezone)
        )  # the -1d alarm
        assert (
            local.replace(tzinfo=file_zone(vtimezone)).utcoffset(),
            day_before.utcoffset(),
        ) == tuple(timedelta(hours=h) for h in offsets)
        assert day_before.astimezone(UTC) == touch.alerts[0].at.astimezone(UTC)
