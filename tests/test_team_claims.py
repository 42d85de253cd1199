"""A team's claims on one outbox, on SQLite (no server needed): what every store does
the same (the contract in `check_reserve`, run on PostgreSQL by test_team_claims_pg.py),
recovery of dead owners only, outages while recording, and per-person recipients.

Time is injected (a clock we move by hand); leases are judged on the database's clock,
which on SQLite is this host's, so lease times are built from `db.db_now()`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reminderd.config import EmailConfig, sms_config
from reminderd.email.dispatch import EmailDispatcher, MailSender
from reminderd.email.plan import planned_emails
from reminderd.errors import StateError
from reminderd.model import Commitment, Contact
from reminderd.sms import dispatch as sms_dispatch
from reminderd.sms.dispatch import Dispatcher, Tuning
from reminderd.sms.outbox import Outbox, iso
from reminderd.sms.plan import planned_sends
from reminderd.sms.scheduler import JOB, SmsScheduler
from reminderd.store import daemons
from reminderd.store.leases import LocalLeases, leases_for
from reminderd.store.protocol import StateStore
from reminderd.store.schema import LATEST, STEPS
from reminderd.store.sqlite import StateDB

ATHENS = ZoneInfo("Europe/Athens")
START = datetime(2026, 12, 2, 10, 0, tzinfo=ATHENS)
DUE = (START - timedelta(minutes=30)).astimezone(UTC)
ME, OTHER = "host-a:101:aaaaaa", "host-b:202:bbbbbb"
PHONES = {"ana": "+306910000001", "ben": "+306910000002"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now


class Recording:
    """A provider that records each send (to, body) and finds what `has` holds."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.has: dict[str, str] = {}  # body -> sid: what a look-up finds
        self.lookups: list[tuple[str, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        with self.lock:
            self.sent.append((to, body))
            return f"SM{len(self.sent)}"

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        bodies = (body,) if isinstance(body, str) else body
        self.lookups.append((to, bodies))
        return next((self.has[b] for b in bodies if b in self.has), None)


def commitment(ident: str, **kw: Any) -> Commitment:
    base: dict[str, Any] = {
        "id": ident,
        "title": f"Call {ident}",
        "start": START,
        "duration": timedelta(minutes=15),
        "contact": Contact("Alex", "ACME", "+302101234567"),
        "sms": (timedelta(minutes=-30),),
        "owner": person_of(ident),
    }
    base.update(kw)
    return Commitment(**base)


def person_of(ident: str) -> str | None:
    """Whose a commitment is, in these tests: its id starts with the person's name."""
    name = ident.split("-")[0]
    return name if name in PHONES else None


def phone_of(c: Commitment) -> str | None:
    return PHONES[c.owner] if c.owner else None


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    store = StateDB(tmp_path / "state.sqlite3")
    yield store
    store.close()


def dispatcher(
    db: StateStore, clock: Clock, sender: Recording, owner: str | None = ME, **kw: Any
) -> Dispatcher:
    return Dispatcher(
        Outbox(db, owner=owner),
        sender,
        sms_config(to="+306912345678", rate_per_minute=60_000),
        ATHENS,
        clock,
        **kw,
    )


# -- the reservation contract, for every store


@dataclass(frozen=True)
class Spec:
    """One row as a test wants it: who reserved it and how its lease stands."""

    owner: str | None  # None | ME | OTHER
    lease: str  # "none" | "past" | "future"
    due: bool
    status: str  # pending | sending | sent


SPECS = st.builds(
    Spec,
    st.sampled_from([None, ME, OTHER]),
    st.sampled_from(["none", "past", "future"]),
    st.booleans(),
    st.sampled_from(["pending", "pending", "sending", "sent"]),
)


def check_reserve(db: StateStore, specs: list[Spec], limit: int) -> None:
    """Reserve takes exactly the due pending rows that are free, ours, or whose lease
    ran out (on the database's clock), earliest first, and marks them ours."""
    outbox = Outbox(db, owner=ME)
    clock = db.db_now()
    leases = {
        "none": None,
        "past": iso(clock - timedelta(minutes=5)),
        "future": iso(clock + timedelta(minutes=5)),
    }
    with db.transaction() as tx:
        tx.execute("DELETE FROM sms_outbox")
        for i, spec in enumerate(specs):
            when = DUE + timedelta(seconds=i) if spec.due else DUE + timedelta(hours=1, seconds=i)
            tx.execute(
                "INSERT INTO sms_outbox (key, kind, due, send_at, next_try, deadline, payload, "
                "status, updated_at, claimed_by, lease_until) "
                "VALUES (?, 'digest', ?, ?, ?, ?, '{}', ?, ?, ?, ?)",
                (
                    f"k{i:03d}",
                    iso(when),
                    iso(when),
                    iso(when),
                    iso(when + timedelta(hours=2)),
                    spec.status,
                    iso(DUE),
                    spec.owner,
                    leases[spec.lease],
                ),
            )
    takeable = [
        f"k{i:03d}"
        for i, s in enumerate(specs)
        if s.status == "pending"
        and s.due
        and (s.owner in (None, ME) or s.lease in ("none", "past"))
    ]
    got = outbox.reserve(DUE + timedelta(minutes=1), limit, timedelta(seconds=60))
    assert [r.key for r in got] == takeable[:limit]
    assert all(r.claimed_by == ME and r.lease_until is not None for r in got)
    until = {r.lease_until for r in got}
    assert len(until) <= 1  # one lease for the chunk, on the database's clock
    for r in got:
        assert r.lease_until is not None and r.lease_until > clock
    stored = {
        k: (owner, lease)
        for k, owner, lease in db.query("SELECT key, claimed_by, lease_until FROM sms_outbox")
    }
    for i, spec in enumerate(specs):
        key = f"k{i:03d}"
        if key in {r.key for r in got}:
            assert stored[key][0] == ME
        else:  # untouched
            assert stored[key] == (spec.owner, leases[spec.lease])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(SPECS, max_size=12), st.integers(min_value=1, max_value=8))
def test_reserve_takes_free_own_and_lapsed_rows_only(
    db: StateDB, specs: list[Spec], limit: int
) -> None:
    check_reserve(db, specs, limit)


def test_a_claim_is_refused_to_anyone_but_the_rows_owner(db: StateDB) -> None:
    mine, theirs, nobodys = Outbox(db, owner=ME), Outbox(db, owner=OTHER), Outbox(db)
    for key in ("a", "b"):
        assert mine.add(key, "digest", DUE, DUE + timedelta(hours=1), {}, DUE)
    (row,) = theirs.reserve(DUE, 1, timedelta(minutes=1))  # "a": the earliest key of equal time
    assert not mine.claim(row.key, "body", DUE)  # their reservation holds: not ours to send
    assert not nobodys.claim(row.key, "body", DUE)
    assert theirs.claim(row.key, "body", DUE)
    assert mine.claim("b", "body", DUE)  # never reserved: anyone's
    assert {r.key: r.claimed_by for r in mine.in_flight()} == {"a": OTHER, "b": ME}


# -- recovery: only what no live process is sending


def put_sending(db: StateStore, key: str, owner: str | None, at: datetime) -> None:
    outbox = Outbox(db, owner=owner)
    assert outbox.add(key, "digest", at, at + timedelta(hours=1), {"text": key}, at)
    assert outbox.claim(key, key, at)


def test_recovery_without_leases_takes_every_send_not_in_flight_here(db: StateDB) -> None:
    clock = Clock(DUE)
    d = dispatcher(db, clock, Recording())
    try:
        put_sending(db, "older-schema", None, DUE)
        put_sending(db, "earlier-run", ME, DUE)
        put_sending(db, "flying-here", ME, DUE)
        with d._in_flight("flying-here"):
            assert d.recover() == 2
        rows = {r.key: r for r in d.outbox.recent(statuses=("pending",))}
        assert set(rows) == {"older-schema", "earlier-run"}
        assert all(r.ambiguous == 1 and r.claimed_by is None for r in rows.values())
        # looked up after lookup_delay from the interrupted start, not at once
        assert {r.next_try for r in rows.values()} == {DUE + d.tuning.lookup_delay}
        assert [r.key for r in d.outbox.in_flight()] == ["flying-here"]
    finally:
        d.close()


def test_local_leases_one_daemon_alive_and_every_lease_free(db: StateDB) -> None:
    leases = leases_for(db, ME)
    assert isinstance(leases, LocalLeases) and leases_for(db, ME) is leases
    leases.start()
    assert leases.alive(ME) and not leases.alive(OTHER) and not leases.shared
    assert leases.try_take("calendar:x") and leases.try_take("calendar:x")
    clock = Clock(DUE)
    d = dispatcher(db, clock, Recording(), leases=leases)
    try:
        put_sending(db, "other", OTHER, DUE)  # an earlier daemon on this state: gone
        assert d.recover() == 1
    finally:
        d.close()


def test_a_recovery_never_undoes_what_landed_since_it_looked(db: StateDB) -> None:
    outbox = Outbox(db, owner=ME)
    put_sending(db, "k", OTHER, DUE)
    (seen,) = outbox.in_flight()
    outbox.sent("k", "SM1", DUE)  # its daemon recorded it after all
    assert not outbox.interrupted(seen, DUE, "gone", DUE)
    put_sending(db, "j", OTHER, DUE)
    (seen,) = outbox.in_flight()
    outbox.ambiguous_retry("j", DUE, "timeout")
    assert Outbox(db, owner=OTHER).reserve(DUE, 5, timedelta(minutes=1))
    assert Outbox(db, owner=OTHER).claim("j", "again", DUE)  # claimed again: attempts 2
    assert not outbox.interrupted(seen, DUE, "gone", DUE)
    assert {r.key: r.status for r in outbox.recent(statuses=("sent",))} == {"k": "sent"}


# -- the state database away while a send is recorded


class Flaky(Outbox):
    """An outbox whose recording of `sent` fails `failures` times, as during an outage."""

    def __init__(self, db: StateStore, failures: int, owner: str | None = ME) -> None:
        super().__init__(db, owner=owner)
        self.failures = failures
        self.tries = 0
        self.failing = threading.Event()

    def sent(self, key: str, sid: str, now: datetime, note: str | None = None) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            self.failing.set()
            raise StateError("state database x: the connection to the server was lost")
        super().sent(key, sid, now, note)


def test_a_sent_recorded_during_an_outage_lands_once_it_is_back(
    db: StateDB, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sms_dispatch, "RECORD_RETRY", (0.01, 0.04))
    clock, sender = Clock(DUE), Recording()
    d = Dispatcher(Flaky(db, failures=4), sender, sms_config(to="+306912345678"), ATHENS, clock)
    try:
        d.replan([commitment("acme")])
        with caplog.at_level(logging.WARNING, logger="reminderd.sms.dispatch"):
            assert d.run_due() == ["sent"]
        assert len(sender.sent) == 1
        assert [r.status for r in d.outbox.recent(statuses=("sent",))] == ["sent"]
        assert [m for m in caplog.messages if "could not be recorded" in m] != []
        assert len([m for m in caplog.messages if "could not be recorded" in m]) == 1
        assert d.run_due() == [] and len(sender.sent) == 1
    finally:
        d.close()


def test_closing_during_an_outage_leaves_it_in_flight_and_the_next_start_looks_it_up(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_dispatch, "RECORD_RETRY", (0.01, 0.04))
    clock, sender = Clock(DUE), Recording()
    flaky = Flaky(db, failures=10**9)
    d = Dispatcher(flaky, sender, sms_config(to="+306912345678"), ATHENS, clock)
    d.replan([commitment("acme")])
    run = threading.Thread(target=d.run_due)
    run.start()
    assert flaky.failing.wait(10)
    d.close()  # stops retrying: the fact that it went out stays with the provider
    run.join(10)
    assert not run.is_alive()
    (row,) = d.outbox.in_flight()
    assert row.claimed_by == ME
    (to, body) = sender.sent[0]
    sender.has[body] = "SM1"
    again = dispatcher(db, clock, sender)  # the next start, same identity or not
    try:
        assert again.recover() == 1
        clock.now += again.tuning.lookup_delay
        assert again.run_due() == ["sent"]
        assert len(sender.sent) == 1 and sender.lookups[-1][0] == to
    finally:
        again.close()


class Unreachable(Outbox):
    """An outbox on a state database that does not answer (until `back` is set)."""

    def __init__(self, db: StateStore) -> None:
        super().__init__(db, owner=ME)
        self.back = False

    def reserve(self, now: datetime, limit: int, lease: timedelta) -> list[Any]:
        if not self.back:
            raise StateError("state database x: cannot connect")
        return super().reserve(now, limit, lease)

    def next_time(self, free: bool = False) -> datetime | None:
        if not self.back:
            raise StateError("state database x: cannot connect")
        return super().next_time(free)


def test_the_timer_outlives_an_outage_warning_once_and_retrying_soon(
    db: StateDB, caplog: pytest.LogCaptureFixture
) -> None:
    clock, sender = Clock(DUE), Recording()
    outbox = Unreachable(db)
    d = Dispatcher(outbox, sender, sms_config(to="+306912345678"), ATHENS, clock)
    outbox.back = True
    d.replan([commitment("acme")])
    outbox.back = False
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.scheduler.start(paused=True)  # jobs are kept and can be read, none runs by itself
    try:
        with caplog.at_level(logging.INFO, logger="reminderd.sms.scheduler"):
            for _ in range(3):
                scheduler._tick()  # what the timer runs
                scheduler.rearm()  # what follows each run
                retry = scheduler.scheduler.get_job(JOB).trigger.run_date
                assert clock.now < retry <= clock.now + timedelta(seconds=12)
            warned = [m for m in caplog.messages if "unreachable" in m]
            assert len(warned) == 1 and "retrying" in warned[0]
            outbox.back = True
            scheduler._tick()
            assert [m for m in caplog.messages if "reachable again" in m] != []
        assert len(sender.sent) == 1
        scheduler.rearm()
        assert scheduler.scheduler.get_job(JOB) is None  # nothing left, no timer
    finally:
        scheduler.scheduler.shutdown()
        d.close()


# -- the burst, shared a chunk at a time


def test_a_run_reserves_a_chunk_at_a_time_and_sends_each_once(db: StateDB) -> None:
    class Counting(Outbox):
        def __init__(self, db: StateStore, owner: str) -> None:
            super().__init__(db, owner=owner)
            self.chunks: list[int] = []

        def reserve(self, now: datetime, limit: int, lease: timedelta) -> list[Any]:
            rows = super().reserve(now, limit, lease)
            self.chunks.append(len(rows))
            return rows

    clock, sender = Clock(DUE), Recording()
    outbox = Counting(db, owner=ME)
    d = Dispatcher(
        outbox,
        sender,
        sms_config(to="+306912345678", rate_per_minute=60_000),
        ATHENS,
        clock,
        tuning=Tuning(workers=3),
    )
    try:
        d.replan([commitment(f"c{i}") for i in range(8)])
        assert d.run_due() == ["sent"] * 8
        assert outbox.chunks == [3, 3, 2, 0]
        assert len({body for _, body in sender.sent}) == 8
    finally:
        d.close()


# -- a team: each send to its owner, each digest to its person


def test_each_send_goes_to_its_owners_number_and_is_looked_up_there(db: StateDB) -> None:
    clock, sender = Clock(DUE - timedelta(hours=1)), Recording()
    d = dispatcher(db, clock, sender, people=dict(PHONES))
    try:
        d.replan([commitment("ana-1"), commitment("ben-1"), commitment("solo")])
        payloads = {r.key.split("#")[0]: r.payload for r in d.outbox.due(DUE)}
        assert payloads["ana-1"]["to"] == PHONES["ana"] and "to" not in payloads["solo"]
        clock.now = DUE
        assert sorted(d.run_due()) == ["sent"] * 3
        assert sorted(to for to, _ in sender.sent) == sorted(
            [PHONES["ana"], PHONES["ben"], "+306912345678"]
        )
        # an interrupted send is looked up at its own recipient's messages
        put_sending(db, "ben-x", ME, DUE)
        with db.transaction() as tx:
            tx.execute(
                "UPDATE sms_outbox SET payload = ?, claimed_by = NULL WHERE key = 'ben-x'",
                (json.dumps({"text": "ben-x", "to": PHONES["ben"]}),),
            )
        assert d.recover() == 1
        clock.now += d.tuning.lookup_delay
        d.run_due()
        assert sender.lookups[-1][0] == PHONES["ben"]
    finally:
        d.close()


def test_planned_sends_and_emails_carry_the_recipient_only_when_there_is_one() -> None:
    items = [
        commitment("ana-1", email=(timedelta(hours=-1),)),
        commitment("solo", email=(timedelta(hours=-1),)),
    ]
    sms = planned_sends(
        items, quiet=None, zone=ATHENS, late_grace=timedelta(minutes=30), recipient=phone_of
    )
    mail = planned_emails(
        items,
        late_grace=timedelta(minutes=30),
        recipient=lambda c: f"{c.id}@team.example" if c.owner else None,
    )
    assert {k.split("#")[0]: p.payload.get("to") for k, p in sms.items()} == {
        "ana-1": PHONES["ana"],
        "solo": None,
    }
    assert {k.split("#")[0]: p.payload.get("to") for k, p in mail.items()} == {
        "ana-1": "ana-1@team.example",
        "solo": None,
    }
    # without a recipient, payloads are as they always were: nothing moves
    plain = planned_sends(items, quiet=None, zone=ATHENS, late_grace=timedelta(minutes=30))
    assert all("to" not in p.payload for p in plain.values())


def test_a_teams_digest_is_one_per_person_with_their_own_touches_and_missed_backups(
    db: StateDB,
) -> None:
    clock, sender = Clock(START - timedelta(hours=5)), Recording()
    d = dispatcher(db, clock, sender, people=dict(PHONES))
    try:
        early = (timedelta(hours=-3),)
        d.replan([commitment("ben-late", title="Call Bea", sms=early)])
        clock.now = (START - timedelta(minutes=10)).astimezone(UTC)
        assert d.run_due() == ["missed"]  # Ben's backup: the daemon was down
        morning = START.replace(hour=7, minute=30).astimezone(UTC)
        clock.now = morning
        items = [commitment("ana-1", title="Call Alex"), commitment("ben-2", title="Call Dora")]
        assert d.digest(items, morning) is not None
        rows = {r.key: r for r in d.outbox.due(morning) if r.kind == "digest"}
        assert set(rows) == {"digest@2026-12-02@ana", "digest@2026-12-02@ben"}
        ana, ben = rows["digest@2026-12-02@ana"], rows["digest@2026-12-02@ben"]
        assert ana.payload["to"] == PHONES["ana"] and ben.payload["to"] == PHONES["ben"]
        assert "Call Alex" in ana.payload["text"] and "Call Dora" not in ana.payload["text"]
        assert "Missed" not in ana.payload["text"]
        assert (
            "Call Dora" in ben.payload["text"] and "Missed backups: Call Bea" in ben.payload["text"]
        )
        assert d.digest(items, morning) is None  # once per day per person
        assert sorted(d.run_due()) == ["sent", "sent"]
        assert {to for to, _ in sender.sent} == {PHONES["ana"], PHONES["ben"]}
    finally:
        d.close()


def test_email_alerts_and_digests_go_to_each_persons_address(db: StateDB) -> None:
    cfg = EmailConfig(
        host="127.0.0.1",
        port=25,
        security="none",
        username=None,
        password=None,
        sender="reminderd@team.example",
        to="shared@team.example",
        digest=None,
        late_grace=timedelta(minutes=30),
        timeout=timedelta(seconds=5),
    )

    class Mail(MailSender):
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        def send(self, to: str, body: str, validity_seconds: int | None) -> str:
            self.sent.append((to, body))
            return f"<m{len(self.sent)}>"

    clock, mail = Clock(START - timedelta(hours=2)), Mail()
    address = {"ana": "ana@team.example", "ben": "ben@team.example"}
    d = EmailDispatcher(
        Outbox(db, table="email_outbox", owner=ME),
        mail,
        cfg,
        ATHENS,
        clock,
        people=address,
    )
    try:
        hour = (timedelta(hours=-1),)
        d.replan([commitment("ana-1", email=hour, sms=()), commitment("solo", email=hour, sms=())])
        clock.now = (START - timedelta(hours=1)).astimezone(UTC)
        assert d.run_due() == ["sent", "sent"]
        assert sorted(r for r, _ in mail.sent) == ["ana@team.example", "shared@team.example"]
        assert all(f"To: {r}\r\n" in body for r, body in mail.sent)
        d.digest([commitment("ana-1"), commitment("ben-2")], clock.now)
        assert sorted(d.run_due()) == ["sent", "sent"]
        assert {r for r, _ in mail.sent[2:]} == {"ana@team.example", "ben@team.example"}
    finally:
        d.close()


# -- the schema and the daemons' table


def test_a_v3_sqlite_state_is_upgraded_in_place_to_claims_and_daemons(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    old = StateDB(path, steps=STEPS[:3])
    Outbox(old).add("k", "digest", DUE, DUE + timedelta(hours=1), {"text": "hi"}, DUE)
    Outbox(old, table="email_outbox").add("m", "digest", DUE, DUE, {"day": "x"}, DUE)
    old.close()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
    db = StateDB(path)
    try:
        with closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST == 4
            for table in ("sms_outbox", "email_outbox"):
                columns = [c[1] for c in raw.execute(f"PRAGMA table_info({table})")]
                assert columns[-2:] == ["claimed_by", "lease_until"]
        (row,) = Outbox(db).due(DUE)
        assert (row.key, row.payload, row.claimed_by, row.lease_until) == (
            "k",
            {"text": "hi"},
            None,
            None,
        )
        assert Outbox(db, owner=ME).reserve(DUE, 5, timedelta(minutes=1))[0].claimed_by == ME
        assert [r.key for r in Outbox(db, table="email_outbox").due(DUE)] == ["m"]
        assert daemons.listed(db) == []
    finally:
        db.close()


def test_daemons_register_say_what_they_do_and_are_forgotten(db: StateDB) -> None:
    daemons.register(db, ME, "host-a", 101, DUE)
    daemons.register(db, OTHER, "host-b", 202, DUE + timedelta(seconds=1))
    daemons.set_state(db, ME, "running", DUE + timedelta(minutes=1), {"sms": 3})
    daemons.set_state(db, ME, "running", DUE + timedelta(minutes=2), None)  # keeps its info
    first, second = daemons.listed(db)
    assert first == {
        "id": ME,
        "host": "host-a",
        "pid": 101,
        "state": "running",
        "started_at": DUE,
        "seen_at": DUE + timedelta(minutes=2),
        "info": {"sms": 3},
    }
    assert (second["id"], second["state"], second["info"]) == (OTHER, "starting", None)
    daemons.register(db, ME, "host-a", 101, DUE + timedelta(hours=1))  # started again
    assert [(d["id"], d["info"]) for d in daemons.listed(db)] == [(OTHER, None), (ME, None)]
    daemons.forget(db, OTHER)
    assert [d["id"] for d in daemons.listed(db)] == [ME]


def test_recovery_by_the_scheduler_is_off_for_a_single_daemon(db: StateDB) -> None:
    d = dispatcher(db, Clock(DUE), Recording(), leases=leases_for(db, ME))
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.start()
    try:
        assert scheduler.scheduler.get_job("sms-recover") is None  # SQLite: nobody else to die
    finally:
        scheduler.shutdown()


def test_tuning_defaults_fit_the_failover_bound() -> None:
    t = Tuning()
    # a daemon killed mid-send: seen dead at once, then one check and the look-up delay
    assert t.recover_every + t.lookup_delay <= timedelta(seconds=30)
    assert replace(t, workers=2).lease == t.lease == sms_dispatch.LEASE
