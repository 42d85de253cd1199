"""Outcomes: the overlay (pure), `decide`, and their effect on touches, alerts and SMS plans."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.errors import OutcomeRefused
from reminderd.ical import render, summary_line, wants_event
from reminderd.model import AlertKind, Commitment, Contact, FollowUp, Status, TouchState, touches
from reminderd.outcomes import log as outcome_log
from reminderd.outcomes.apply import Request, confirmation, decide, next_touch, record
from reminderd.outcomes.model import WRITTEN, Outcome, digest
from reminderd.outcomes.overlay import overlay
from reminderd.sms.plan import planned_sends
from reminderd.store.sqlite import StateDB

ATHENS = ZoneInfo("Europe/Athens")
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=ATHENS)  # a Monday; never today's date


def item(**changes: object) -> Commitment:
    base = Commitment(
        id="acme",
        title="Call Alex",
        start=datetime(2030, 3, 5, 10, 0, tzinfo=ATHENS),
        duration=timedelta(minutes=15),
        contact=Contact("Alex", "ACME", "+302101234567"),
        purpose="card details",
        alarms=(timedelta(hours=-1),),
        sms=(timedelta(minutes=-30),),
        follow_ups=(FollowUp(timedelta(days=2), "ROI"), FollowUp(timedelta(days=5), "decide")),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def outcome(kind: str, touch: int = 0, c: Commitment | None = None, **kw: object) -> Outcome:
    fields: dict[str, object] = {
        "id": f"{kind}-{touch}",
        "commitment": "acme",
        "touch": touch,
        "kind": kind,
        "source": "cli",
        "at": NOW,
        "base": digest(c or item()),
    }
    fields.update(kw)
    return Outcome(**fields)  # type: ignore[arg-type]


def laid(c: Commitment, *outcomes: Outcome) -> Commitment:
    (result,) = overlay([c], {"acme": list(outcomes)})
    return result


def test_done_keeps_the_touch_as_done_and_drops_the_later_ones() -> None:
    c = laid(item(), outcome("done", 1))
    assert c.status is Status.DONE and not c.active
    ts = touches(c)
    assert [t.index for t in ts] == [0, 1]  # the third touch is gone
    assert ts[1].state is TouchState.DONE and ts[1].alerts == ()
    assert summary_line(ts[1]) == "Done: Call Alex (follow-up 1)"
    assert b"BEGIN:VALARM" not in render(ts[1])
    assert planned_sends([c], quiet=None, zone=ATHENS, late_grace=timedelta(minutes=30)) == {}


def test_move_moves_the_touch_its_alerts_and_the_cadence_after_it() -> None:
    new = datetime(2030, 3, 6, 15, 0, tzinfo=ATHENS)
    c = laid(item(), outcome("move", 0, start=new))
    first, second, _ = touches(c)
    assert first.start == new and second.start == datetime(2030, 3, 8, 15, 0, tzinfo=ATHENS)
    assert {a.kind: a.at for a in first.alerts} == {
        AlertKind.ALARM: new - timedelta(hours=1),
        AlertKind.SMS: new - timedelta(minutes=30),
    }
    sends = planned_sends([c], quiet=None, zone=ATHENS, late_grace=timedelta(minutes=30))
    assert sorted(s.due for s in sends.values())[0] == (new - timedelta(minutes=30)).astimezone(UTC)


def test_snooze_adds_one_sms_at_its_instant_and_moves_nothing() -> None:
    at = datetime(2030, 3, 4, 9, 30, tzinfo=ATHENS)
    c = laid(item(), outcome("snooze", 0, start=at))
    first = touches(c)[0]
    assert first.start == item().start
    assert [a.at for a in first.alerts if a.kind is AlertKind.SMS] == [
        at,
        item().start - timedelta(minutes=30),
    ]
    dues = sorted(
        s.due
        for s in planned_sends([c], quiet=None, zone=ATHENS, late_grace=timedelta(0)).values()
        if s.payload["touch"] == "acme#0"
    )
    assert dues[0] == at.astimezone(UTC)


def test_skip_drops_the_event_and_alerts_of_one_touch_only() -> None:
    c = laid(item(), outcome("skip", 1))
    ts = touches(c)
    assert c.active and len(ts) == 3
    assert not wants_event(ts[1]) and ts[1].alerts == ()
    assert wants_event(ts[2]) and ts[2].alerts


def test_next_closes_the_touch_and_adds_one_with_the_same_offsets() -> None:
    at = datetime(2030, 3, 12, 11, 0, tzinfo=ATHENS)
    c = laid(item(), outcome("next", 0, start=at, purpose="Send the proposal"))
    ts = touches(c)
    assert ts[0].state is TouchState.DONE and ts[0].alerts == ()
    added = ts[-1]
    assert (added.index, added.start, added.purpose) == (3, at, "Send the proposal")
    assert [a.offset for a in added.alerts] == [timedelta(hours=-1), timedelta(minutes=-30)]


def test_a_file_that_carries_the_outcome_is_not_given_it_twice() -> None:
    at = datetime(2030, 3, 12, 11, 0, tzinfo=ATHENS)
    in_file = item(follow_ups=(*item().follow_ups, FollowUp(None, "Send the proposal", at)))
    o = outcome("next", 0, start=at, purpose="Send the proposal", written=WRITTEN)
    ts = touches(laid(in_file, o))
    assert len(ts) == 4 and ts[0].state is TouchState.DONE  # the state part still holds


def test_a_changed_row_ends_the_outcomes_file_part() -> None:
    """A CSV export is never rewritten: once the file itself changes the commitment, the
    file wins (the status and the time); what no file can say (done touches) holds."""
    o = outcome("done", 0)
    assert laid(item(), o).status is Status.DONE
    edited = item(purpose="new reason from the CRM")
    assert laid(edited, o).status is Status.OPEN
    moved = outcome("move", 0, start=datetime(2030, 3, 9, 9, 0, tzinfo=ATHENS))
    assert touches(laid(edited, moved))[0].start == edited.start


@given(st.lists(st.sampled_from(["done", "move", "snooze", "next", "skip"]), max_size=6))
def test_any_sequence_of_outcomes_gives_a_consistent_commitment(kinds: list[str]) -> None:
    at = datetime(2030, 3, 10, 12, 0, tzinfo=ATHENS)
    outs = [
        outcome(k, 0, id=f"{i}", start=at if k != "done" else None, purpose="p")
        for i, k in enumerate(kinds)
    ]
    c = laid(item(), *outs)
    ts = touches(c)
    assert ts and ts[0].index == 0
    for t in ts:
        if t.state is not TouchState.OPEN or not c.active:
            assert t.alerts == ()
    if "done" in kinds:
        assert not c.active


def test_decide_names_the_touch_and_refuses_what_does_not_exist() -> None:
    c = item()
    effective = {"acme": c}
    o, t = decide(Request("acme", "skip", "cli"), effective, effective, NOW)
    assert (o.touch, t.index) == (0, 0)  # the next one not over yet
    later = NOW + timedelta(days=3)
    assert decide(Request("acme", "skip", "cli"), effective, effective, later)[0].touch == 1
    assert decide(Request("ACME", "done", "sms"), effective, effective, NOW)[0].commitment == "acme"
    with pytest.raises(
        OutcomeRefused, match=r"no commitment with id 'acm' \(did you mean 'acme'\?\)"
    ):
        decide(Request("acm", "done", "cli"), effective, effective, NOW)
    with pytest.raises(OutcomeRefused, match=r"acme has no touch #7 \(it has #0 to #2\)"):
        decide(Request("acme", "done", "cli", 7), effective, effective, NOW)
    with pytest.raises(OutcomeRefused, match="move needs a time"):
        decide(Request("acme", "move", "cli"), effective, effective, NOW)
    with pytest.raises(OutcomeRefused, match="snooze needs a duration"):
        decide(Request("acme", "snooze", "cli"), effective, effective, NOW)
    s, _ = decide(
        Request("acme", "snooze", "sms", snooze=timedelta(minutes=30)), effective, effective, NOW
    )
    assert s.start == NOW + timedelta(minutes=30)


def test_next_touch_skips_touches_already_over_or_closed() -> None:
    ts = touches(laid(item(), outcome("skip", 0)))
    assert next_touch(ts, NOW).index == 1
    assert next_touch(ts, NOW + timedelta(days=30)).index == 2  # all over: the last open one


def test_confirmations_say_what_was_done() -> None:
    c = item()
    effective = {"acme": c}
    moved, t = decide(
        Request("acme", "move", "sms", start=datetime(2030, 3, 12, 15, 0, tzinfo=ATHENS)),
        effective,
        effective,
        NOW,
    )
    assert confirmation(moved, t) == "OK: Call Alex moved to Tue 03-12 15:00"
    done, t = decide(Request("acme", "done", "sms", note="signed"), effective, effective, NOW)
    assert confirmation(done, t) == "OK: Call Alex done (signed)"


def test_outcomes_round_trip_through_the_state(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.sqlite3")
    try:
        at = datetime(2030, 3, 12, 15, 0, tzinfo=ATHENS)
        first = outcome("move", 1, start=at, note="asked by Alex")
        record(db, first)
        record(db, outcome("done", 2, at=NOW + timedelta(minutes=1)))
        found = outcome_log.by_commitment(db)["acme"]
        assert [o.kind for o in found] == ["move", "done"]
        assert found[0] == first
        outcome_log.set_written(db, first.id, WRITTEN)
        assert outcome_log.by_commitment(db, "acme")["acme"][0].in_file
        assert outcome_log.by_commitment(db, "other") == {}
    finally:
        db.close()
