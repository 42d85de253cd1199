"""A team's daemons on one real PostgreSQL (tests/pgserver.py): a burst shared with no
double send, reservations under row locks, daemon liveness and leases, recovery of the
sends of dead daemons only, and the database stopping while an outcome is recorded.

Each "daemon" here is a store, an outbox with its owner and a `PgLeases` of its own,
as separate processes would have; killing one is closing its leases or terminating its
session on the server. Time is injected; leases use the database's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgserver import PgServer, postgres  # noqa: F401  (postgres: the session fixture)
from test_team_claims import SPECS, Spec, check_reserve

from reminderd.config import sms_config
from reminderd.errors import AlreadyRunning, StateError
from reminderd.sms import dispatch as sms_dispatch
from reminderd.sms.dispatch import Dispatcher, Tuning
from reminderd.sms.outbox import Outbox, iso
from reminderd.sms.scheduler import JOB, WATCH, SmsScheduler
from reminderd.store import daemons
from reminderd.store import postgres as pgstore
from reminderd.store.leases import leases_for
from reminderd.store.postgres import PgLeases, PostgresStore
from reminderd.store.schema import LATEST, STEPS

pytestmark = pytest.mark.server
ATHENS = ZoneInfo("Europe/Athens")
DUE = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
A, B, C = "host-a:1:aaaaaa", "host-b:2:bbbbbb", "host-c:3:cccccc"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recording:
    """A provider shared by every daemon of a test: who sent what, and what it has."""

    name = "recording"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, str]] = []  # (owner, body)
        self.has: dict[str, str] = {}
        self.lookups: list[str] = []

    def sender(self, owner: str, before: Callable[[], None] = lambda: None) -> Any:
        shared = self

        class One:
            name = "recording"

            def send(self, to: str, body: str, validity_seconds: int | None) -> str:
                before()
                with shared.lock:
                    shared.sent.append((owner, body))
                    return f"SM{len(shared.sent)}"

            def find_sent(
                self, to: str, body: str | tuple[str, ...], since: datetime
            ) -> str | None:
                bodies = (body,) if isinstance(body, str) else body
                with shared.lock:
                    shared.lookups.extend(bodies)
                    return next((shared.has[b] for b in bodies if b in shared.has), None)

        return One()


@pytest.fixture
def url(postgres: PgServer) -> str:  # noqa: F811
    return postgres.new_database("team")


@pytest.fixture
def made(postgres: PgServer) -> Iterator[list[Any]]:  # noqa: F811
    """Whatever a test opens (stores, leases, dispatchers), closed after it, newest first."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        try:
            thing.close()
        except StateError:
            pass


def open_store(postgres: PgServer, url: str, made: list[Any]) -> PostgresStore:  # noqa: F811
    store = PostgresStore(url, password=postgres.password, connect_timeout=3)
    made.append(store)
    return store


def daemon(
    store: PostgresStore,
    owner: str,
    clock: Clock,
    sender: Any,
    made: list[Any],
    leases: PgLeases | None = None,
    **tuning: Any,
) -> Dispatcher:
    d = Dispatcher(
        Outbox(store, owner=owner),
        sender,
        sms_config(to="+306912345678", rate_per_minute=600_000),
        ATHENS,
        clock,
        Tuning(**tuning),
        leases=leases,
    )
    made.append(d)
    return d


def queue(store: PostgresStore, keys: list[str], at: datetime = DUE) -> None:
    outbox = Outbox(store)
    for key in keys:
        assert outbox.add(key, "digest", at, at + timedelta(hours=1), {"text": key}, at)


def started(store: PostgresStore, ident: str, made: list[Any]) -> PgLeases:
    leases = PgLeases(store, ident)
    made.append(leases)
    leases.start()
    return leases


def wait_until(what: str, check: Callable[[], bool], seconds: float = 15) -> None:
    """Poll for something the server does a moment later (a terminated session ends)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- a burst shared by two daemons


def test_two_daemons_racing_over_a_burst_send_each_row_once_and_both_send(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    one, two = open_store(postgres, url, made), open_store(postgres, url, made)
    keys = [f"d{i:03d}" for i in range(200)]
    queue(one, keys)
    shared = Recording()
    second_sent = threading.Event()

    def first_waits() -> None:  # the first daemon's first sends wait until the second sent
        second_sent.wait(30)

    clock = Clock(DUE + timedelta(minutes=1))
    first = daemon(one, A, clock, shared.sender(A, first_waits), made, workers=4)
    second = daemon(two, B, clock, shared.sender(B, second_sent.set), made, workers=4)
    go = threading.Barrier(2)
    outcomes: dict[str, list[str]] = {}

    def run(name: str, d: Dispatcher) -> None:
        go.wait()
        outcomes[name] = d.run_due()

    threads = [threading.Thread(target=run, args=x) for x in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bodies = [body for _, body in shared.sent]
    assert sorted(bodies) == keys  # each exactly once
    by = {owner: [b for o, b in shared.sent if o == owner] for owner in (A, B)}
    assert by[A] and by[B]  # both did their share
    assert (outcomes["a"] + outcomes["b"]).count("sent") == 200
    sent_by = dict(one.query("SELECT key, claimed_by FROM sms_outbox WHERE status = 'sent'"))
    assert len(sent_by) == 200
    assert {k for k, o in sent_by.items() if o == A} == set(by[A])


# -- reservations: row locks, leases on the database's clock


def test_reserve_respects_a_live_lease_takes_a_lapsed_one_and_skips_locked_rows(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_store(postgres, url, made)
    queue(store, ["held", "lapsed", "free", "locked"])
    theirs, mine = Outbox(store, owner=B), Outbox(store, owner=A)
    assert [r.key for r in theirs.reserve(DUE, 2, timedelta(minutes=1))] == ["free", "held"]
    with store.transaction() as tx:  # "lapsed": reserved by B, whose lease ran out
        tx.execute(
            "UPDATE sms_outbox SET claimed_by = ?, lease_until = ? WHERE key = 'lapsed'",
            (B, iso(store.db_now() - timedelta(seconds=1))),
        )
    monkeypatch.setattr(pgstore, "LOCK_TIMEOUT_S", 1)
    db_name = url.rsplit("/", 1)[1]
    with postgres.admin(db_name) as other:
        other.execute("BEGIN")  # another daemon mid-reservation: "locked" is under its row lock
        other.execute("SELECT key FROM sms_outbox WHERE key = 'locked' FOR UPDATE")
        other.execute("SELECT pg_advisory_lock(%s)", (pgstore.WRITE_LOCK,))  # and a writer
        got = mine.reserve(DUE, 10, timedelta(minutes=1))  # neither is waited for
        other.execute("ROLLBACK")
        other.execute("SELECT pg_advisory_unlock_all()")
    assert [r.key for r in got] == ["lapsed"]
    (lapsed,) = got
    assert lapsed.lease_until is not None and lapsed.lease_until > store.db_now()
    assert not mine.claim("held", "body", DUE)  # B's lease holds: never sent by A
    assert mine.claim("lapsed", "body", DUE)
    assert [r.key for r in mine.reserve(DUE, 10, timedelta(minutes=1))] == ["locked"]
    assert mine.next_time(free=True) == DUE and theirs.next_time(free=True) == DUE


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(SPECS, max_size=10), st.integers(min_value=1, max_value=6))
def test_reserve_keeps_the_same_contract_as_on_sqlite(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
    specs: list[Spec],
    limit: int,
) -> None:
    store = made[0] if made else open_store(postgres, url, made)
    check_reserve(store, specs, limit)


def test_db_now_is_the_servers_clock_in_utc(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    store = open_store(postgres, url, made)
    first, second = store.db_now(), store.db_now()
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert second >= first  # clock_timestamp(), not a transaction's frozen now()


# -- who is alive, and short leases


def test_leases_alive_exclusive_and_gone_with_their_session(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    store = open_store(postgres, url, made)
    a, b = started(store, A, made), started(open_store(postgres, url, made), B, made)
    assert a.alive(A) and a.alive(B) and b.alive(A) and not a.alive(C)
    with pytest.raises(AlreadyRunning):
        PgLeases(store, A).start()  # one identity, one daemon
    assert a.try_take("calendar:https://cal.example/ana/") and a.try_take(
        "calendar:https://cal.example/ana/"
    )
    assert not b.try_take("calendar:https://cal.example/ana/")
    assert b.try_take("calendar:https://cal.example/ben/")
    a.release("calendar:https://cal.example/ana/")
    assert b.try_take("calendar:https://cal.example/ana/") and not a.holds(
        "calendar:https://cal.example/ana/"
    )
    b.close()
    assert not a.alive(B)
    assert a.try_take("calendar:https://cal.example/ben/")  # gone with b's session
    # a session the server ends (a dead host found out by keepalives) takes its locks along
    c = started(open_store(postgres, url, made), C, made)
    assert a.alive(C)
    assert c._conn is not None
    pid = c._conn.info.backend_pid
    with postgres.admin() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until("a terminated session kept its daemon lock", lambda: not a.alive(C))
    assert leases_for(store, A) is leases_for(store, A)  # one per store and identity


@pytest.mark.slow
def test_leases_are_taken_again_after_a_server_restart(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    store = open_store(postgres, url, made)
    a = started(store, A, made)
    assert a.try_take("calendar:x")
    before = a.healthy_since
    postgres.stop()
    try:
        with pytest.raises(StateError):
            a.ping()
    finally:
        postgres.start()
    a.ping()  # connected again: the daemon lock and the lease taken again
    assert a.healthy_since > before
    b = started(open_store(postgres, url, made), B, made)
    assert b.alive(A) and a.holds("calendar:x") and not b.try_take("calendar:x")


# -- recovery: the sends of dead daemons only


def sending(store: PostgresStore, key: str, owner: str | None) -> None:
    queue(store, [key])
    outbox = Outbox(store, owner=owner)
    if owner is not None:
        assert [r.key for r in outbox.reserve(DUE, 1, timedelta(minutes=1))] == [key]
    assert outbox.claim(key, key, DUE)  # the request left, then its daemon...


def test_recovery_takes_the_sends_of_dead_and_unknown_owners_only(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    store = open_store(postgres, url, made)
    mine = started(store, A, made)
    live = started(open_store(postgres, url, made), B, made)
    dead = started(open_store(postgres, url, made), C, made)
    for key, owner in (("of-b", B), ("of-c", C), ("of-nobody", None)):
        sending(store, key, owner)
    later, latest = DUE + timedelta(minutes=5), DUE + timedelta(minutes=6)
    queue(store, ["reserved-by-b"], later)
    queue(store, ["reserved-by-c"], latest)
    assert Outbox(store, owner=B).reserve(later, 5, timedelta(minutes=5))
    assert Outbox(store, owner=C).reserve(latest, 5, timedelta(minutes=5))
    dead.close()  # its process died
    shared = Recording()
    shared.has["of-c"] = "SMc"  # C's send did arrive; nobody's did not
    clock = Clock(DUE + timedelta(seconds=5))
    d = daemon(store, A, clock, shared.sender(A), made, leases=mine)
    # within the grace after our own (re)connection, others are not judged
    mine.healthy_since = time.monotonic()  # as if it had just connected again
    assert d.recover() == 1  # only the row of no owner (an older schema)
    d.tuning = replace(d.tuning, reconnect_grace=timedelta(0))
    assert d.recover() == 1  # C's now; B is alive
    assert d.free_reservations() == 1
    reserved = dict(store.query("SELECT key, claimed_by FROM sms_outbox WHERE key LIKE 'res%'"))
    assert reserved == {"reserved-by-b": B, "reserved-by-c": None}
    assert {r.key: r.claimed_by for r in d.outbox.in_flight()} == {"of-b": B}
    assert d.run_due() == []  # looked up only once lookup_delay after the interrupted start
    clock.now = DUE + d.tuning.lookup_delay
    assert sorted(d.run_due()) == ["sent", "sent"]
    assert shared.sent == [(A, "of-nobody")]  # not found: sent once more; C's was found
    assert set(shared.lookups) >= {"of-c", "of-nobody"}
    # B's session ends on the server (its host vanished): its send is taken over too
    assert live._conn is not None
    with postgres.admin() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (live._conn.info.backend_pid,))
    wait_until("B still looks alive", lambda: not mine.alive(B))
    assert d.recover() == 1 and d.outbox.in_flight() == []


def test_the_scheduler_watches_for_dead_daemons_when_daemons_share_the_outbox(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    store = open_store(postgres, url, made)
    mine = started(store, A, made)
    gone = started(open_store(postgres, url, made), C, made)
    sending(store, "of-c", C)
    gone.close()
    d = daemon(store, A, Clock(DUE), Recording().sender(A), made, leases=mine)
    d.tuning = replace(d.tuning, reconnect_grace=timedelta(0))
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.start()  # the start's own recovery already takes it
    try:
        assert scheduler.scheduler.get_job(WATCH) is not None
        assert d.outbox.in_flight() == []
        assert scheduler.scheduler.get_job(JOB) is not None  # armed for its look-up
    finally:
        scheduler.shutdown()


# -- the database stopping while sends are due


@pytest.mark.slow
def test_a_sent_recorded_while_the_server_is_down_lands_once_it_is_back(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sms_dispatch, "RECORD_RETRY", (0.05, 0.2))
    store = open_store(postgres, url, made)
    queue(store, ["k"])

    class Watched(Outbox):
        """Counts tries to record `sent`, so the test restarts the server mid-retry."""

        def __init__(self) -> None:
            super().__init__(store, owner=A)
            self.tries = 0
            self.retrying = threading.Event()

        def sent(self, key: str, sid: str, now: datetime, note: str | None = None) -> None:
            self.tries += 1
            if self.tries >= 2:
                self.retrying.set()
            super().sent(key, sid, now, note)

    shared = Recording()
    outbox = Watched()
    d = Dispatcher(
        outbox,
        shared.sender(A, before=postgres.stop),  # the answer comes; the database is gone
        sms_config(to="+306912345678"),
        ATHENS,
        Clock(DUE),
    )
    made.append(d)
    outcomes: list[str] = []
    run = threading.Thread(target=lambda: outcomes.extend(d.run_due()))
    run.start()
    try:
        assert outbox.retrying.wait(60)  # it failed and is trying again
    finally:
        postgres.start()
    run.join(60)
    assert not run.is_alive() and outcomes == ["sent"]
    assert shared.sent == [(A, "k")]
    assert store.query("SELECT status, sid FROM sms_outbox") == [("sent", "SM1")]


@pytest.mark.slow
def test_the_timer_survives_the_server_stopping_and_sends_once_it_is_back(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(postgres, url, made)
    queue(store, ["k"])
    shared = Recording()
    clock = Clock(DUE)
    d = daemon(store, A, clock, shared.sender(A), made)
    scheduler = SmsScheduler(d, ATHENS, None, lambda: ())
    scheduler.scheduler.start(paused=True)  # jobs are kept and can be read, none runs by itself
    try:
        with caplog.at_level(logging.INFO, logger="reminderd.sms.scheduler"):
            postgres.stop()
            try:
                for _ in range(2):
                    scheduler._tick()
                    scheduler.rearm()
                    run_at = scheduler.scheduler.get_job(JOB).trigger.run_date
                    assert clock.now < run_at <= clock.now + timedelta(seconds=12)
            finally:
                postgres.start()
            scheduler._tick()
        assert len([m for m in caplog.messages if "unreachable; retrying" in m]) == 1
        assert any("reachable again" in m for m in caplog.messages)
        assert shared.sent == [(A, "k")]
    finally:
        scheduler.scheduler.shutdown()


# -- the schema and the daemons' table


def test_a_v3_database_is_upgraded_in_place_to_claims_and_daemons(
    postgres: PgServer,  # noqa: F811
    url: str,
    made: list[Any],
) -> None:
    old = PostgresStore(url, password=postgres.password, steps=STEPS[:3])
    queue(old, ["k"])
    old.close()
    store = open_store(postgres, url, made)
    (version,) = store.query("SELECT version FROM reminderd_schema")[0]
    assert version == LATEST == 4
    for table in ("sms_outbox", "email_outbox"):
        columns = store.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            (table,),
        )
        assert [c[0] for c in columns][-2:] == ["claimed_by", "lease_until"]
    (row,) = Outbox(store).due(DUE)
    assert (row.key, row.payload, row.claimed_by) == ("k", {"text": "k"}, None)
    daemons.register(store, A, "host-a", 1, DUE)
    daemons.set_state(store, A, "running", DUE + timedelta(seconds=1), {"calendars": 2})
    assert daemons.listed(store) == [
        {
            "id": A,
            "host": "host-a",
            "pid": 1,
            "state": "running",
            "started_at": DUE,
            "seen_at": DUE + timedelta(seconds=1),
            "info": {"calendars": 2},
        }
    ]
    daemons.forget(store, A)
    assert daemons.listed(store) == []
