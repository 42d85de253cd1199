"""Offsets, durations, `when` and DST rules (pure)."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.errors import InvalidValue
from reminderd.timeparse import (
    format_offset,
    get_zone,
    parse_clock,
    parse_duration,
    parse_offset,
    parse_when,
    wall_clock_shift,
)

ATHENS = ZoneInfo("Europe/Athens")


@pytest.mark.parametrize("text,expected", [
    ("-1d", timedelta(days=-1)),
    ("-1h30m", -timedelta(hours=1, minutes=30)),
    ("-10m", timedelta(minutes=-10)),
    ("-45s", timedelta(seconds=-45)),
    ("0m", timedelta(0)),
    ("15m", timedelta(minutes=15)),
    ("+15m", timedelta(minutes=15)),
    ("-PT15M", timedelta(minutes=-15)),
    ("-P1DT2H", -timedelta(days=1, hours=2)),
    ("P1W", timedelta(weeks=1)),
    ("-1w", timedelta(weeks=-1)),
])
def test_offsets(text: str, expected: timedelta) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("15", "has no unit"), ("", "bad offset"), ("-", "bad offset"), ("1x", "bad offset"),
    ("-400d", "more than a year"), ("PT", "bad offset"), ("1m1h", "bad offset"),
])
def test_bad_offsets(text: str, fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        parse_offset(text)


@given(st.timedeltas(min_value=-timedelta(days=365), max_value=timedelta(days=365)))
def test_format_offset_round_trips(delta: timedelta) -> None:
    delta = timedelta(seconds=int(delta.total_seconds()))
    assert parse_offset(format_offset(delta)) == delta


def test_duration_must_be_positive() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    for bad in ("-15m", "0m", "+5m"):
        with pytest.raises(InvalidValue):
            parse_duration(bad)


def test_when_local_and_with_offset() -> None:
    assert parse_when("2026-11-30 10:00", ATHENS) == datetime(2026, 11, 30, 10, 0, tzinfo=ATHENS)
    assert parse_when("2026-11-30T10:00", ATHENS).hour == 10
    exact = parse_when("2026-11-30T10:00+00:00", ATHENS)
    assert exact.hour == 12 and exact.tzinfo is ATHENS
    assert parse_when("2026-11-30T08:00Z", ATHENS).hour == 10
    assert parse_when("30/11/2026 10:00", ATHENS, "%d/%m/%Y %H:%M").day == 30


def test_dst_gap_and_fold_are_errors_that_suggest_the_offset() -> None:
    with pytest.raises(InvalidValue, match=r"does not exist.*DST gap.*2026-03-29T03:30\+02:00"):
        parse_when("2026-03-29 03:30", ATHENS)
    with pytest.raises(InvalidValue, match=r"ambiguous.*DST fold.*\+03:00.*\+02:00"):
        parse_when("2026-10-25 03:30", ATHENS)
    # with an explicit offset the same wall time is exact, so it is accepted
    assert parse_when("2026-10-25T03:30+02:00", ATHENS).utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("text", ["2026-11-30", "tomorrow", "2026-13-01 10:00", "2026-11-30 25:00", "10:00"])
def test_bad_when(text: str) -> None:
    with pytest.raises(InvalidValue):
        parse_when(text, ATHENS)


def test_unknown_zone_suggests() -> None:
    with pytest.raises(InvalidValue, match="did you mean 'Europe/Athens'"):
        get_zone("Europe/Athen")
    with pytest.raises(InvalidValue):
        get_zone("../../etc/passwd")


def test_wall_clock_shift_keeps_local_time_across_dst() -> None:
    before = datetime(2026, 10, 23, 10, 0, tzinfo=ATHENS)  # EEST, +03:00
    after = wall_clock_shift(before, timedelta(days=3))  # EET, +02:00
    assert (after.hour, after.utcoffset()) == (10, timedelta(hours=2))
    gap = wall_clock_shift(datetime(2026, 3, 28, 3, 30, tzinfo=ATHENS), timedelta(days=1))
    assert gap.hour == 4  # 03:30 does not exist that night: moves forward like the clocks


def test_clock() -> None:
    assert parse_clock("07:30", what="digest") == time(7, 30)
    with pytest.raises(InvalidValue):
        parse_clock("24:00", what="digest")
