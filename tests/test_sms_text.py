"""SMS text and planning (pure): segments, trimming, quiet hours, send keys."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.errors import InvalidValue
from reminderd.model import Commitment, Contact, FollowUp, Status
from reminderd.sms.plan import in_window, planned_sends, quiet_adjust, send_key
from reminderd.sms.text import Parts, check_template, compose, segments

ATHENS = ZoneInfo("Europe/Athens")
QUIET = (time(21, 30), time(7, 30))


def parts(**kw: str) -> Parts:
    base = {
        "late": "",
        "when": "10:00",
        "title": "Call Alex at ACME",
        "who": " - Alex Valassidis (ACME)",
        "phone": " +302101234567",
        "why": " Why: card details.",
        "bring": " Bring: Contract PDF.",
    }
    base.update(kw)
    return Parts(**base)


def test_segments_gsm7_and_ucs2() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2 and segments("a" * 306) == 2
    assert segments("€" * 80) == 1 and segments("€" * 81) == 2  # extension chars cost two
    assert segments("α" * 70) == 1 and segments("α" * 71) == 2 and segments("α" * 134) == 2


def test_compose_keeps_everything_when_it_fits() -> None:
    text = compose(parts())
    assert text == (
        "10:00 Call Alex at ACME - Alex Valassidis (ACME) +302101234567. Why: card details. "
        "Bring: Contract PDF."
    )


@given(
    st.text(min_size=0, max_size=600),
    st.text(min_size=0, max_size=600),
    st.integers(1, 3),
    st.sampled_from(["Alex", "Αλέξης Βαλασσίδης", "Zoë"]),
)
def test_trimming_never_drops_time_or_name(
    why: str, bring: str, max_segments: int, name: str
) -> None:
    text = compose(
        parts(
            why=f" Why: {why}." if why else "",
            bring=f" Bring: {bring}." if bring else "",
            who=f" - {name}",
        ),
        max_segments=max_segments,
    )
    assert text.startswith("10:00 ") and name in text
    assert segments(text) <= max(max_segments, segments(f"10:00 - {name}."))


def test_trimming_order_bring_then_why() -> None:
    text = compose(
        parts(why=" Why: " + "w" * 100 + ".", bring=" Bring: " + "b" * 200 + "."), max_segments=1
    )
    assert (
        segments(text) == 1
        and "Bring" not in text
        and "10:00" in text
        and "Alex Valassidis" in text
    )


def test_template_is_checked() -> None:
    assert check_template("{when} {who}")
    for bad in ("{when} {nope}", "{title}", "{when"):
        with pytest.raises(InvalidValue):
            check_template(bad)


def test_quiet_hours() -> None:
    def at(h: int, m: int, day: int = 2) -> datetime:
        return datetime(2026, 12, day, h, m, tzinfo=ATHENS)

    utc = UTC
    # due in the window, item after it: wait for 07:30
    assert quiet_adjust(at(6, 0).astimezone(utc), at(9, 0), QUIET, ATHENS) == at(7, 30).astimezone(
        utc
    )
    # the item itself is inside the window: send at its due time
    assert quiet_adjust(at(5, 30).astimezone(utc), at(6, 0), QUIET, ATHENS) == at(5, 30).astimezone(
        utc
    )
    # waiting would land after the item: send now rather than never
    assert quiet_adjust(at(7, 0).astimezone(utc), at(7, 30), QUIET, ATHENS) == at(7, 0).astimezone(
        utc
    )
    # late evening, item next morning after the window
    assert quiet_adjust(at(22, 0, 1).astimezone(utc), at(9, 0), QUIET, ATHENS) == at(
        7, 30
    ).astimezone(utc)
    assert quiet_adjust(at(12, 0).astimezone(utc), at(13, 0), QUIET, ATHENS) == at(
        12, 0
    ).astimezone(utc)
    assert (
        in_window(time(23, 0), QUIET)
        and in_window(time(3, 0), QUIET)
        and not in_window(time(7, 30), QUIET)
    )


def test_planned_sends_keys_and_status() -> None:
    c = Commitment(
        id="acme",
        title="Call",
        start=datetime(2026, 12, 2, 10, tzinfo=ATHENS),
        duration=timedelta(minutes=15),
        contact=Contact(name="Alex"),
        sms=(timedelta(minutes=-30), timedelta(hours=-1)),
        follow_ups=(FollowUp(timedelta(days=2)),),
    )
    planned = planned_sends([c], quiet=None, zone=ATHENS, late_grace=timedelta(minutes=30))
    assert sorted(planned) == [
        "acme#0@-1h@20261202T080000Z",
        "acme#0@-30m@20261202T080000Z",
        "acme#1@-1h@20261204T080000Z",
        "acme#1@-30m@20261204T080000Z",
    ]
    first = planned["acme#0@-30m@20261202T080000Z"]
    assert (
        first.deadline - first.send_at == timedelta(minutes=30) and first.payload["who"] == "Alex"
    )
    from dataclasses import replace

    assert (
        planned_sends(
            [replace(c, status=Status.DONE)], quiet=None, zone=ATHENS, late_grace=timedelta(0)
        )
        == {}
    )
    assert send_key("a#0", timedelta(minutes=-5), c.start) == "a#0@-5m@20261202T080000Z"
