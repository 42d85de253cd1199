"""Outbox state machine and delivery rules, with a clock we move by hand.

The provider here is a scripted stand-in that only says sent / refused /
busy / no answer: the real library against Twilio's spec is in
test_sms_twilio.py. These tests pin the rules: late, missed, retry,
permanent, ambiguous, cancel and move.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminderd.errors import SmsError
from reminderd.model import Commitment, Contact, Status
from reminderd.sms.dispatch import Dispatcher, SmsSettings
from reminderd.sms.outbox import Outbox
from reminderd.sms.providers import Ambiguous
from reminderd.sync.state import StateDB

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
        self.found: str | None = None

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            if isinstance(step, Ambiguous):
                self.sent.append(body)  # it did leave: the provider has it
            raise step
        self.sent.append(body)
        return f"SM{len(self.sent)}"

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        return self.found


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = StateDB(tmp_path / "state.sqlite3")
    clock = Clock(START - timedelta(hours=2))
    sender = Scripted()
    d = Dispatcher(Outbox(db), sender, SmsSettings(to="+306912345678", zone=ATHENS, rate_per_minute=6000), clock)
    yield d, clock, sender
    d.close()
    db.close()


def commitment(**kw: object) -> Commitment:
    base: dict[str, object] = {"id": "acme", "title": "Call Alex", "start": START, "duration": timedelta(minutes=15),
                                   "contact": Contact("Alex", "ACME", "+302101234567"), "purpose": "card details",
                                   "sms": (timedelta(minutes=-30),)}
    base.update(kw)
    return Commitment(**base)  # type: ignore[arg-type]


def test_sent_once_at_its_time(rig) -> None:  # type: ignore[no-untyped-def]
    d, clock, sender = rig
    assert d.replan([commitment()])["added"] == 1
    assert d.run_due() == []  # not yet
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    assert d.run_due() == ["sent"]
    assert d.run_due() == [] and d.replan([commitment()]) == {"added": 0, "moved": 0, "cancelled": 0, "reopened": 0}
    assert sender.sent == ["10:00 Call Alex - Alex (ACME) +302101234567. Why: card details."]


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
    sender.script = [SmsError("busy", permanent=False, status=429), SmsError("bad number", permanent=True, code=21211)]
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    assert sorted(d.run_due()) == ["failed", "retry"]
    assert d.run_due() == []  # the retry waits for its backoff
    retry_at = d.outbox.next_time()
    assert retry_at is not None and timedelta(seconds=1) <= retry_at - clock.now <= timedelta(seconds=6)
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
    d.s = replace(d.s, lookup_delay=timedelta(seconds=20))
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
    d.s = replace(d.s, lookup_delay=timedelta(seconds=20))
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
    assert text is not None and "10:00 Call Alex (Alex (ACME))" in text and "Missed backups: Call Alex" in text
    assert d.digest([commitment()], morning) is None  # once per day
    assert d.run_due() == ["sent"] and sender.sent[-1] == text


def test_stopping_leaves_queued_sends_pending_never_half_sent(tmp_path: Path) -> None:
    import threading
    import time

    db = StateDB(tmp_path / "slow.sqlite3")
    clock = Clock(START - timedelta(hours=2))
    sender = Scripted()
    d = Dispatcher(Outbox(db), sender, SmsSettings(to="+306912345678", zone=ATHENS, rate_per_minute=60,
                                                    workers=2), clock)
    d.replan([commitment(id=f"c{i}") for i in range(20)])
    clock.now = (START - timedelta(minutes=30)).astimezone(UTC)
    worker = threading.Thread(target=d.run_due)
    worker.start()
    time.sleep(1.5)  # a couple of sends go out at one per second
    began = time.monotonic()
    d.close()
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - began < 10  # bounded, not 20 s of queue
    counts = d.outbox.counts()
    assert counts.get("sending", 0) == 0 and counts["sent"] == len(sender.sent)
    assert counts["pending"] + counts["sent"] == 20
    db.close()
