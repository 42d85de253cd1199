"""Touches and alerts derived from a commitment (pure)."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from reminderd.model import AlertKind, Commitment, FollowUp, Status, touches, upcoming

ATHENS = ZoneInfo("Europe/Athens")


def make(**kw: object) -> Commitment:
    base: dict[str, object] = {
        "id": "x",
        "title": "Call",
        "start": datetime(2026, 11, 27, 10, 0, tzinfo=ATHENS),
        "duration": timedelta(minutes=15),
    }
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def test_follow_ups_count_from_previous_touch_and_skip_weekends() -> None:
    c = make(
        follow_ups=(FollowUp(timedelta(days=1), "again"), FollowUp(timedelta(days=2))),
        skip_weekends=True,
        purpose="first",
    )
    got = touches(c)  # Fri 27 -> Sat 28 moves to Mon 30 -> Wed 2 Dec
    assert [t.start.strftime("%a %d %H:%M") for t in got] == [
        "Fri 27 10:00",
        "Mon 30 10:00",
        "Wed 02 10:00",
    ]
    assert [t.purpose for t in got] == ["first", "again", "first"]
    assert [t.key for t in got] == ["x#0", "x#1", "x#2"]


def test_without_skip_weekends_a_saturday_stays() -> None:
    c = make(follow_ups=(FollowUp(timedelta(days=1)),))
    assert touches(c)[1].start.strftime("%a") == "Sat"


def test_first_touch_is_never_moved() -> None:
    c = make(start=datetime(2026, 11, 28, 10, 0, tzinfo=ATHENS), skip_weekends=True)
    assert touches(c)[0].start.strftime("%a") == "Sat"


def test_alerts_are_absolute_and_sorted() -> None:
    c = make(alarms=(timedelta(hours=-1), timedelta(0)), sms=(timedelta(minutes=-30),))
    alerts = touches(c)[0].alerts
    assert [(a.kind, a.at.strftime("%H:%M")) for a in alerts] == [
        (AlertKind.ALARM, "09:00"),
        (AlertKind.SMS, "09:30"),
        (AlertKind.ALARM, "10:00"),
    ]


def test_done_and_cancelled_have_no_alerts_and_are_not_upcoming() -> None:
    for status in (Status.DONE, Status.CANCELLED):
        c = make(status=status, alarms=(timedelta(hours=-1),), sms=(timedelta(minutes=-5),))
        assert touches(c)[0].alerts == ()
        assert upcoming([c], c.start - timedelta(days=1), c.start + timedelta(days=1)) == []


def test_upcoming_window_and_order() -> None:
    a = make(id="a", start=datetime(2026, 11, 27, 12, 0, tzinfo=ATHENS))
    b = make(id="b", start=datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo("UTC")))  # 11:00 Athens
    got = upcoming(
        [a, b], datetime(2026, 11, 27, 0, 0, tzinfo=ATHENS), datetime(2026, 11, 28, tzinfo=ATHENS)
    )
    assert [t.key for t in got] == ["b#0", "a#0"]
