"""Outbox state machine and delivery rules, with a clock we move by hand.

The provider here is a scripted stand-in that only says sent / refused /
busy / no answer: the real library against Twilio's spec is in
test_sms_twilio.py. These tests pin the rules: late, missed, retry,
permanent, ambiguous, cancel and move.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminderd.clock import system_clock
from reminderd.config import sms_config
from reminderd.errors import SmsError
from reminderd.model import Commitment, Contact, Status
from reminderd.sms.dispatch import (
    LOOKUP_MARGIN,
    LOST_STATE_NOTE,
    Dispatcher,
    RateLimiter,
    Tuning,
)
from reminderd.sms.outbox import Outbox
from reminderd.sms.providers import Ambiguous
from reminderd.sms.refs import candidates
from reminderd.sms.scheduler import JOB, SmsScheduler
from reminderd.store.sqlite import StateDB

ATHENS = ZoneInfo("Europe/Athens")
START = datetime(2026, 12, 2, 10, 0, tzinfo=ATHENS)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now


class Scripted:
    name = "scripted"

    def __init__(self) -> None:
        self.script: list[object] = []  # per call: "ok" | SmsError | Ambiguous
        self.sent: list[str] = []
        self.found: str | None = None  # every look-up finds this, or:
        self.has: dict[str, str] = {}  # body -> id: what the provider has from an earlier state
        self.lookups: list[tuple[tuple[str, ...], datetime]] = []

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            if isinstance(step, Ambiguous):
                self.sent.append(body)  # it did leave: the provider has it
            raise step
        self.sent.append(body)
        return f"SM{len(self.sent)}"

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        bodies = (body,) if isinstance(body, str) else body
        self.lookups.append((bodies, since))
        return self.found or next((self.has[b] for b in bodies if b in self.has), None)


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = StateDB(tmp_path / "state.sqlite3")
    clock = Clock(START - timedelta(hours=2))
    sender = Scripted()
    d = Dispatcher(
        Outbox(db), sender, sms_config(to="+306912345678", rate_per_minute=6000), ATHENS, clock
    )
    yield d, clock, sender
    d.close()
    db.close()


def ref_of(d: Dispatcher, touch_key: str) -> str:
    """The ` #k3` reference the state gave this touch (a reply may start with it)."""
    (ref,) = d.outbox.db.query("SELECT ref FROM sms_refs WHERE touch = ?", (touch_key,))[0]
    assert re.fullmatch(r"[a-z0-9]{2,4}", ref)
    return str(ref)


def commitment(**kw: object) -> Commitment:
    base: dict[str, object] = {
        "id": "acme",
        "title": "Call Alex",
        "start": START,
        "duration": timedelta(minutes=15),
        "contact": Contact("Alex", "ACME", "+302101234567"),
        "purpose": "card details",
        "sms": (timedelta(minutes=-30),),
    }
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def test_sent_once_at_its_time(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    assert d.replan([commitment()])["added"] == 1
    assert d.run_due() == []  # not yet
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    assert d.run_due() == ["sent"]
    assert d.run_due() == [] and d.replan([commitment()]) == {
        "added": 0,
        "moved": 0,
        "cancelled": 0,
        "reopened": 0,
    }
    assert sender.sent == [
        f"10:00 Call Alex - Alex (ACME) +302101234567. Why: card details. #{ref_of(d, 'acme#0')}"
    ]


def test_edit_moves_and_done_cancels(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.replan([commitment()])
    moved = commitment(start=START + timedelta(hours=1))
    counts = d.replan([moved])
    assert counts["added"] == 1 and counts["cancelled"] == 1  # a new time is a new reminder
    assert d.replan([replace(moved, status=Status.DONE)])["cancelled"] == 1
    clock.now = START.astimezone(UTC) + timedelta(hours=2)
    assert d.run_due() == [] and sender.sent == []


def test_late_within_grace_says_late_and_beyond_is_missed(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.replan([commitment(), commitment(id="b", sms=(timedelta(hours=-1),))])
    clock.now = (START - timedelta(minutes=10)).astimezone(UTC)  # 20 and 50 minutes late
    assert sorted(d.run_due()) == ["missed", "sent"]
    assert sender.sent[0].startswith("LATE reminder: 10:00 Call Alex")
    (missed,) = d.outbox.recent(statuses=("missed",))
    assert missed.key.startswith("b#0") and "over late_grace" in (missed.error or "")


def test_temporary_failures_retry_with_backoff_permanent_do_not(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.replan([commitment(), commitment(id="b")])
    sender.script = [
        SmsError("busy", permanent=False, status=429),
        SmsError("bad number", permanent=True, code=21211),
    ]
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    assert sorted(d.run_due()) == ["failed", "retry"]
    assert d.run_due() == []  # the retry waits for its backoff
    retry_at = d.outbox.next_time()
    assert retry_at is not None and timedelta(seconds=1) <= retry_at - clock.now <= timedelta(
        seconds=6
    )
    clock.now = retry_at
    assert d.run_due() == ["sent"]
    assert len(sender.sent) == 1
    assert [r.error for r in d.outbox.recent(statuses=("failed",))] == ["bad number"]


def test_provider_down_until_useless_gives_up(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.replan([commitment()])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    results = []
    for _ in range(20):
        sender.script = [SmsError("down", permanent=False, status=503)]
        results += d.run_due()
        nxt = d.outbox.next_time()
        if nxt is None:
            break
        clock.now = nxt
    assert results[-1] == "failed" and set(results[:-1]) == {"retry"}
    assert "gave up" in (d.outbox.recent(statuses=("failed",))[0].error or "")


def test_ambiguous_send_is_looked_up_then_repeated_at_most_once(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.tuning = replace(d.tuning, lookup_delay=timedelta(seconds=20))
    d.replan([commitment(), commitment(id="b")])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    sender.script = [Ambiguous("read timeout"), Ambiguous("read timeout")]
    assert d.run_due() == ["ambiguous", "ambiguous"]
    assert d.run_due() == []  # the provider is asked only after lookup_delay
    clock.now += timedelta(seconds=20)
    sender.script = [Ambiguous("again")]  # not found at the provider: each is sent once more
    assert sorted(d.run_due()) == ["ambiguous", "sent"]
    clock.now += timedelta(seconds=20)
    assert d.run_due() == ["unconfirmed"]  # twice unknown: never a third copy
    assert len(sender.sent) == 4  # 2 sends x at most 2 copies
    assert [r.status for r in d.outbox.recent(statuses=("unconfirmed",))] == ["unconfirmed"]


def test_a_found_message_is_not_sent_again_and_a_failed_look_up_waits(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.tuning = replace(d.tuning, lookup_delay=timedelta(seconds=20))
    d.replan([commitment()])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    sender.script = [Ambiguous("read timeout")]
    assert d.run_due() == ["ambiguous"]
    clock.now += timedelta(seconds=20)

    def no_answer(*_: object) -> str | None:
        raise Ambiguous("look-up timed out")

    sender.find_sent = no_answer  # type: ignore[method-assign]
    assert d.run_due() == ["lookup-later"]  # no answer is not "not sent"
    sender.find_sent = lambda *_: "SMfound"  # type: ignore[method-assign]
    clock.now += timedelta(seconds=20)
    assert d.run_due() == ["sent"] and len(sender.sent) == 1


def test_recovery_after_a_crash_asks_the_provider(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    d.replan([commitment(), commitment(id="b")])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    for row in d.outbox.due(clock.now):  # "killed" right after marking them as sending
        d.outbox.claim(row.key, d.body(row, late=False), clock.now)
    sender.found = "SMfound"
    assert d.recover() == 2
    assert (
        d.run_due() == []
    )  # the interrupted requests get lookup_delay to show in the provider's list
    clock.now += d.tuning.lookup_delay
    assert d.run_due() == ["sent", "sent"]
    assert {r.sid for r in d.outbox.recent()} == {"SMfound"} and sender.sent == []


def test_sends_already_useless_when_planned_are_not_queued(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, _sender = rig
    clock.now = (START + timedelta(days=3)).astimezone(UTC)  # an old item appears in the file
    assert d.replan([commitment()])["added"] == 0
    assert d.run_due() == [] and d.outbox.recent(statuses=("missed",)) == []


def test_digest_lists_today_and_missed_once_a_day(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    clock.now = (START - timedelta(hours=4)).astimezone(UTC)
    d.replan([commitment(sms=(timedelta(hours=-3),))])
    clock.now = (START - timedelta(minutes=10)).astimezone(UTC)
    assert d.run_due() == ["missed"]  # the daemon was down for its time and its grace
    morning = START.replace(hour=7, minute=30).astimezone(UTC)
    clock.now = morning
    text = d.digest([commitment()], morning)
    assert (
        text is not None
        and "10:00 Call Alex (Alex (ACME))" in text
        and "Missed backups: Call Alex" in text
    )
    assert d.digest([commitment()], morning) is None  # once per day
    assert d.run_due() == ["sent"] and sender.sent[-1] == text


def _stop_mid_run(
    tmp_path: Path, rate_per_minute: int, workers: int, n: int, settle: float
) -> tuple[float, dict[str, int], int]:
    """Start a run of `n` due sends, close() after `settle` s: (seconds close took, counts, sent)."""
    import threading
    import time

    db = StateDB(tmp_path / "stop.sqlite3")
    clock = Clock(START - timedelta(hours=2))
    sender = Scripted()
    d = Dispatcher(
        Outbox(db),
        sender,
        sms_config(to="+306912345678", rate_per_minute=rate_per_minute),
        ATHENS,
        clock,
        tuning=Tuning(workers=workers),
    )
    d.replan([commitment(id=f"c{i}") for i in range(n)])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    worker = threading.Thread(target=d.run_due)
    worker.start()
    time.sleep(settle)
    began = time.monotonic()
    d.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    took = time.monotonic() - began
    counts = d.outbox.counts()
    db.close()
    return took, counts, len(sender.sent)


def test_stopping_leaves_queued_sends_pending_never_half_sent(tmp_path: Path) -> None:
    # a couple of sends go out at one per second before the stop
    took, counts, sent = _stop_mid_run(tmp_path, rate_per_minute=60, workers=2, n=20, settle=1.5)
    assert took < 10  # bounded, not 20 s of queue
    assert counts.get("sending", 0) == 0 and counts["sent"] == sent
    assert counts["pending"] + counts["sent"] == 20


def lost_state_rig(tmp_path: Path, began: datetime) -> tuple[Dispatcher, Clock, Scripted]:
    """A dispatcher on a state that began at `began` (the one before it was lost)."""
    db = StateDB(tmp_path / "new-state.sqlite3")
    clock = Clock(began)
    sender = Scripted()
    return (
        Dispatcher(
            Outbox(db), sender, sms_config(to="+306912345678", rate_per_minute=6000), ATHENS, clock
        ),
        clock,
        sender,
    )


def test_a_lost_state_asks_the_provider_before_sending_late(tmp_path: Path) -> None:
    """Backups a day ahead; the state is lost and begins again 20 minutes after their time.
    The earlier state had sent one of them, late (so it said LATE and, the day before, the date)."""
    # a new state gives a touch the same reference as the lost one did (its first candidate)
    earlier = (
        "LATE reminder: Wed 02 Dec 10:00 Call Alex - Alex (ACME) +302101234567. Why: card details."
        f" #{candidates('acme#0')[0]}"
    )
    d, _clock, sender = lost_state_rig(tmp_path, START - timedelta(days=1) + timedelta(minutes=20))
    sender.has[earlier] = "SMearlier"
    day_before = (timedelta(days=-1),)
    d.replan([commitment(sms=day_before), commitment(id="b", title="Call Bea", sms=day_before)])
    assert d.run_due() == ["sent", "sent"]
    assert sender.sent == [
        "LATE reminder: Wed 02 Dec 10:00 Call Bea - Alex (ACME) +302101234567. Why: card details."
        f" #{ref_of(d, 'b#0')}"
    ]
    rows = {r.key.split("#")[0]: r for r in d.outbox.recent(statuses=("sent",))}
    assert rows["acme"].sid == "SMearlier" and rows["acme"].error == LOST_STATE_NOTE
    assert rows["b"].error is None  # not found at the provider: really sent now
    send_at = (START - timedelta(days=1)).astimezone(UTC)
    assert {since for _, since in sender.lookups} == {send_at - LOOKUP_MARGIN}
    assert all(len(bodies) == 4 for bodies, _ in sender.lookups)  # on time or LATE, dated or not
    assert d.run_due() == [] and d.replan([commitment(sms=day_before)])["added"] == 0
    d.close()


def test_an_intact_state_does_not_look_up_its_own_late_sends(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig  # this state began two hours before the item
    d.replan([commitment()])
    clock.now = (START - timedelta(minutes=10)).astimezone(UTC)  # the daemon was down at 09:30
    assert d.run_due() == ["sent"] and sender.sent[0].startswith("LATE reminder: 10:00 Call Alex")
    assert sender.lookups == []  # this state would have recorded a send: nothing to ask


def test_a_send_due_as_the_state_begins_is_not_looked_up(tmp_path: Path) -> None:
    """An item added with its SMS due right now is the common case, not a lost state."""
    d, _clock, sender = lost_state_rig(
        tmp_path, START - timedelta(minutes=30) + timedelta(seconds=5)
    )
    d.replan([commitment()])
    assert d.run_due() == ["sent"] and sender.lookups == []
    d.close()


def test_a_failed_look_up_asks_again_then_sends_before_it_is_too_late(tmp_path: Path) -> None:
    d, clock, sender = lost_state_rig(tmp_path, START - timedelta(minutes=10))
    d.tuning = replace(d.tuning, lookup_delay=timedelta(seconds=20))

    def no_answer(*_: object) -> str | None:
        raise Ambiguous("look-up timed out")

    sender.find_sent = no_answer  # type: ignore[method-assign]
    d.replan([commitment()])  # at 09:30, 30 minutes of grace: useless after 10:00
    assert d.run_due() == ["lookup-later"] and sender.sent == []  # no answer is not "not sent"
    assert d.outbox.next_time() == clock.now + timedelta(seconds=20)
    clock.now = (START - timedelta(seconds=10)).astimezone(UTC)  # no time left to ask again
    assert d.run_due() == ["sent"] and len(sender.sent) == 1  # at most a second copy, never none
    d.close()


def test_a_long_rate_limit_wait_makes_a_send_late_or_missed_not_silently_stale(
    tmp_path: Path,
) -> None:
    """Five sends due together, one a minute allowed: late and missed are judged when each can
    go, not when it joined the queue (a queued send could otherwise go out past its grace)."""
    db = StateDB(tmp_path / "state.sqlite3")
    clock = Clock(START - timedelta(hours=1))
    sender = Scripted()
    d = Dispatcher(
        Outbox(db),
        sender,
        sms_config(to="+306912345678", rate_per_minute=1, late_grace=timedelta(seconds=200)),
        ATHENS,
        clock,
        tuning=Tuning(workers=1),
    )

    def wait(seconds: float) -> None:  # the limiter's sleep moves our clock instead
        clock.now += timedelta(seconds=seconds)

    d.limiter = RateLimiter(1, sleep=wait, monotonic=lambda: clock.now.timestamp())
    d.replan([commitment(id=f"c{i}", title=f"Call {i}") for i in range(5)])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    assert sorted(d.run_due()) == [
        "missed",
        "sent",
        "sent",
        "sent",
        "sent",
    ]  # 0, 1, 2, 3 min; 4 min > 200 s
    assert [b.startswith("LATE reminder: ") for b in sender.sent] == [False, False, False, True]
    d.close()
    db.close()


def test_scheduler_times_from_the_dispatchers_clock(rig) -> None:  # type: ignore[no-untyped-def]
    """The timer is pointed from the dispatcher's clock (here days away from the wall clock)."""
    d, clock, sender = rig
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.scheduler.start(paused=True)  # jobs are kept and can be read, none runs by itself
    d.replan([commitment()])
    scheduler.rearm()
    due = (START - timedelta(minutes=30)).astimezone(UTC)
    assert scheduler.scheduler.get_job(JOB).trigger.run_date == due
    clock.now = due + timedelta(minutes=7)  # overdue on this clock: run now, by this clock
    scheduler.rearm()
    assert scheduler.scheduler.get_job(JOB).trigger.run_date == clock.now
    scheduler._tick()  # what the timer runs
    assert len(sender.sent) == 1
    scheduler.rearm()  # what follows each run
    assert scheduler.scheduler.get_job(JOB) is None  # nothing left, no timer
    scheduler.scheduler.shutdown()


def busy_machine(scheduler: SmsScheduler) -> None:
    """Each run still counts as running for a moment after it returned, as on a busy machine."""
    import time

    executor = scheduler.scheduler._executors["default"]
    release = executor._run_job_success

    def slow_release(*args: object) -> None:
        time.sleep(0.2)
        release(*args)

    executor._run_job_success = slow_release


def test_the_timer_keeps_going_when_more_than_one_batch_is_due(tmp_path: Path) -> None:
    """25 sends due at once, 10 per run: the real timer runs until all are out.
    (It used to re-arm from inside the run, be skipped as "still running", and stop after 10.)"""
    import time

    db = StateDB(tmp_path / "state.sqlite3")
    sender = Scripted()
    d = Dispatcher(
        Outbox(db),
        sender,
        sms_config(to="+306912345678", rate_per_minute=60_000),
        ATHENS,
        system_clock,
        tuning=Tuning(batch=10),
    )
    start = system_clock() + timedelta(
        minutes=30
    )  # relative to now: the timer runs on the wall clock
    d.replan([commitment(id=f"c{i}", title=f"Call {i}", start=start) for i in range(25)])
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.start()
    busy_machine(scheduler)
    try:
        deadline = time.monotonic() + 20
        while len(sender.sent) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
        db.close()
    assert len(sender.sent) == 25 and len(set(sender.sent)) == 25


def test_stopping_while_a_run_finishes_does_not_hang(tmp_path: Path) -> None:
    """SIGTERM during a send: the send finishes and is recorded, the rest waits, and the stop
    returns (a re-arm from the finishing run used to wait for a lock the stop was holding)."""
    import threading
    import time

    entered, gate = threading.Event(), threading.Event()

    class Slow(Scripted):
        def send(self, to: str, body: str, validity_seconds: int | None) -> str:
            entered.set()
            gate.wait(10)
            return super().send(to, body, validity_seconds)

    db = StateDB(tmp_path / "state.sqlite3")
    sender = Slow()
    d = Dispatcher(
        Outbox(db),
        sender,
        sms_config(to="+306912345678", rate_per_minute=60_000),
        ATHENS,
        system_clock,
        tuning=Tuning(workers=1),
    )
    start = system_clock() + timedelta(minutes=30)
    d.replan([commitment(id=f"c{i}", title=f"Call {i}", start=start) for i in range(3)])
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.start()
    busy_machine(scheduler)
    assert entered.wait(10)
    stopper = threading.Thread(target=scheduler.shutdown, daemon=True)
    stopper.start()
    time.sleep(0.2)  # the stop is waiting for the send
    gate.set()
    stopper.join(timeout=15)
    assert not stopper.is_alive()
    counts = d.outbox.counts()
    db.close()
    assert counts == {"sent": 1, "pending": 2} and len(sender.sent) == 1


def test_a_slow_rate_limit_never_holds_up_a_stop(tmp_path: Path) -> None:
    """rate_per_minute 1: each worker waits up to minutes for its turn; close() ends the waits."""
    # one send went out; the other workers wait for minutes
    took, counts, sent = _stop_mid_run(tmp_path, rate_per_minute=1, workers=4, n=8, settle=1.0)
    assert took < 3
    assert counts.get("sending", 0) == 0 and counts["sent"] == sent == 1
