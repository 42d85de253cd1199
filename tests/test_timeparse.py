"""Offsets, durations, `when` and DST rules (pure)."""

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.errors import InvalidValue
from reminderd.timeparse import (
    apply_offset,
    format_offset,
    get_zone,
    parse_clock,
    parse_duration,
    parse_offset,
    parse_when,
    wall_clock_shift,
    zone_rules,
    zone_transitions,
)

ATHENS = ZoneInfo("Europe/Athens")


@pytest.mark.parametrize(
    "text,expected",
    [
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
    ],
)
def test_offsets(text: str, expected: timedelta) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("15", "has no unit"),
        ("", "bad offset"),
        ("-", "bad offset"),
        ("1x", "bad offset"),
        ("-400d", "more than a year"),
        ("PT", "bad offset"),
        ("1m1h", "bad offset"),
    ],
)
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


@pytest.mark.parametrize(
    "text", ["2026-11-30", "tomorrow", "2026-13-01 10:00", "2026-11-30 25:00", "10:00"]
)
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


def test_when_decades_away_and_the_upper_bound() -> None:
    far = parse_when("2090-06-01 10:00", ATHENS)
    assert far.utcoffset() == timedelta(
        hours=3
    )  # summer time, from the zone's rule past its tables
    assert parse_when("2200-12-31 23:59", ATHENS).year == 2200
    for text in (
        "2201-01-01 00:00",
        "9999-06-01 10:00",
        "9999-12-31T23:59-05:00",
        "9999-12-31T23:59Z",
    ):
        with pytest.raises(
            InvalidValue, match=rf"^when '{re.escape(text)}' is outside the years 1970-2200$"
        ):
            parse_when(text, ATHENS)
    with pytest.raises(InvalidValue, match="outside the years 1970-2200"):
        parse_when("31/12/9999 10:00", ATHENS, "%d/%m/%Y %H:%M")


def test_a_when_past_the_bound_is_reported_at_its_line(write) -> None:  # type: ignore[no-untyped-def]
    from reminderd.config import load_config
    from reminderd.sources import load_sources

    write(
        "c.yaml",
        """
        commitments:
          - {title: Call Bob, when: 2090-06-01 10:00}
          - {title: Call Ann, when: 9999-06-01 10:00}
    """,
    )
    loaded = load_sources(
        load_config(write("config.yaml", "timezone: Europe/Athens\ncommitments: [c.yaml]\n"))
    )
    assert [str(p).rpartition("/")[2] for p in loaded.problems] == [
        "c.yaml:3: when '9999-06-01 10:00' is outside the years 1970-2200"
    ]
    (bob,) = loaded.commitments
    assert bob.start == datetime(2090, 6, 1, 7, 0, tzinfo=UTC)


def test_apply_offset_reads_days_by_the_calendar_and_hours_by_the_clock() -> None:
    start = datetime(2026, 3, 29, 10, 0, tzinfo=ATHENS)  # the day the clocks go forward
    assert apply_offset(start, timedelta(days=-1)) == datetime(2026, 3, 28, 10, 0, tzinfo=ATHENS)
    assert apply_offset(start, timedelta(hours=-24)).astimezone(UTC) == datetime(
        2026, 3, 28, 8, 0, tzinfo=UTC
    )
    early = datetime(2026, 3, 29, 4, 30, tzinfo=ATHENS)  # 01:30 UTC, just after the gap
    assert apply_offset(early, timedelta(hours=-1)).astimezone(UTC) == datetime(
        2026, 3, 29, 0, 30, tzinfo=UTC
    )
    assert apply_offset(early, -timedelta(days=1, hours=2)) == datetime(
        2026, 3, 28, 2, 30, tzinfo=ATHENS
    )
    assert apply_offset(early, timedelta(0)) is early


def test_zone_rules_cover_the_far_future() -> None:
    rules = zone_rules(ATHENS)
    assert rules is not None and rules.since == datetime(1996, 3, 31, 1, 0, tzinfo=UTC)
    for year in (2026, 2090, 2200):
        changes = zone_transitions(ATHENS, year, year)
        assert [(t.onset.month, t.onset.weekday(), t.onset.day > 24) for t in changes] == [
            (3, 6, True),
            (10, 6, True),
        ]
        assert all(
            rule is not None and rule.matches(t.onset)
            for t, (_, rule) in zip(changes, rules.changes, strict=True)
        )
    assert zone_rules(ZoneInfo("Africa/Cairo")) is None  # no yearly rule: callers list its changes
