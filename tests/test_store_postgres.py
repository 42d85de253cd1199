"""The PostgreSQL state store against a real PostgreSQL (tests/pgserver.py): the store's
behaviour the rest of reminderd relies on, as with SQLite, and what sharing one database
between processes adds (claims, the write lock, outages, the daemon lock, the password)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver import PgServer, postgres  # noqa: F401  (postgres: the session fixture)

from reminderd.errors import AlreadyRunning, StateError
from reminderd.sms.outbox import Outbox
from reminderd.sms.plan import PlannedSend
from reminderd.store import postgres as pgstore
from reminderd.store.postgres import PgLeases, PostgresStore, translate
from reminderd.store.protocol import EventRow, StateStore
from reminderd.store.schema import LATEST, STEPS, Step
from reminderd.store.sqlite import StateDB

server = pytest.mark.server
CAL = "https://cal.example/alex/follow-ups/"
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
TABLES = {
    "calendar_events",
    "sms_outbox",
    "meta",
    "outcomes",
    "inbound",
    "sms_refs",
    "email_outbox",
    "daemons",
    "reminderd_schema",
}


@pytest.fixture
def url(postgres: PgServer) -> str:  # noqa: F811
    """An empty database of this test's own."""
    return postgres.new_database()


@pytest.fixture
def open_store(postgres: PgServer) -> Iterator[Callable[..., PostgresStore]]:  # noqa: F811
    """open_store(url, **kw): a store with the test role's password, closed after the test."""
    made: list[PostgresStore] = []

    def _open(where: str, **kw: Any) -> PostgresStore:
        kw.setdefault("password", postgres.password)
        store = PostgresStore(where, **kw)
        made.append(store)
        return store

    yield _open
    for store in made:
        store.close()


def version_of(postgres: PgServer, url: str) -> int | None:  # noqa: F811
    with postgres.admin(url.rsplit("/", 1)[1]) as conn:
        if not conn.execute("SELECT to_regclass('reminderd_schema')").fetchone()[0]:  # type: ignore[index]
            return None
        row = conn.execute("SELECT version FROM reminderd_schema").fetchone()
        return int(row[0]) if row else None


def tables_of(postgres: PgServer, url: str) -> set[str]:  # noqa: F811
    with postgres.admin(url.rsplit("/", 1)[1]) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


# -- the portable SQL, translated (no server needed)


def test_placeholders_become_psycopg_ones_outside_literals_identifiers_and_comments() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c = ?") == (
        "SELECT a FROM t WHERE b = %s AND c = %s"
    )
    assert translate("SELECT '?', 'it''s ?', \"odd?\" FROM t WHERE x = ?") == (
        "SELECT '?', 'it''s ?', \"odd?\" FROM t WHERE x = %s"
    )
    assert translate("SELECT 1 -- why?\nWHERE x = ? /* or? */") == (
        "SELECT 1 -- why?\nWHERE x = %s /* or? */"
    )
    # psycopg reads % everywhere when there are parameters: doubled inside literals too
    assert translate("SELECT '5%' WHERE k LIKE 'a%' AND v = ? % 2") == (
        "SELECT '5%%' WHERE k LIKE 'a%%' AND v = %s %% 2"
    )
    assert translate("SELECT ? || '%s'") == "SELECT %s || '%%s'"


# -- the schema ladder


@server
def test_an_empty_database_gets_the_whole_ladder_once_and_quietly(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="reminderd.store.postgres"):
        open_store(url).close()
        assert caplog.messages == []  # a new database is simply made
        assert version_of(postgres, url) == LATEST
        assert tables_of(postgres, url) == TABLES
        open_store(url).close()  # the usual open: nothing to do, nothing said
        assert caplog.messages == []
    with postgres.admin(url.rsplit("/", 1)[1]) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'calendar_events' ORDER BY ordinal_position"
        ).fetchall()
    assert [c[0] for c in columns] == ["calendar", "uid", "href", "etag", "hash", "served"]


@server
def test_an_older_database_is_upgraded_in_place_keeping_its_rows(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = open_store(url, steps=STEPS[:2])
    with old.transaction() as tx:  # version 2 had no `served` column
        tx.execute(
            "INSERT INTO calendar_events (calendar, uid, href, etag, hash) VALUES (?, ?, ?, ?, ?)",
            (CAL, "reminderd-1", "/a.ics", '"e1"', "h1"),
        )
    old.set("sync:" + CAL, "token-7")
    old.close()
    assert version_of(postgres, url) == 2
    with caplog.at_level(logging.INFO, logger="reminderd.store.postgres"):
        db = open_store(url)
    # one line per step it ran, ending at the latest
    assert caplog.messages == [
        f"state database {url}: upgraded to schema version {step.version} ({step.purpose})"
        for step in STEPS[2:]
    ]
    assert STEPS[-1].version == LATEST
    assert version_of(postgres, url) == LATEST
    assert db.events(CAL) == {"reminderd-1": EventRow("reminderd-1", "/a.ics", '"e1"', "h1")}
    assert db.get("sync:" + CAL) == "token-7"


@server
@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_database_newer_than_this_code_is_refused(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
    readonly: bool,
) -> None:
    open_store(url).close()
    with postgres.admin(url.rsplit("/", 1)[1]) as conn:
        conn.execute("UPDATE reminderd_schema SET version = %s", (LATEST + 1,))
    with pytest.raises(StateError) as refused:
        open_store(url, readonly=readonly)
    assert str(refused.value) == (
        f"state database {url} has schema version {LATEST + 1}, newer than this reminderd knows "
        f"({LATEST}): upgrade reminderd (an older version must not change it)"
    )
    assert version_of(postgres, url) == LATEST + 1
    assert refused.value.exit_code == 74


@server
def test_reading_an_older_database_is_refused_and_changes_nothing(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    open_store(url, steps=STEPS[:2]).close()
    with pytest.raises(StateError) as refused:
        open_store(url, readonly=True)
    assert str(refused.value) == (
        f"state database {url} has schema version 2, older than this reminderd needs ({LATEST}): "
        "run the daemon or `reminderd sync` once to upgrade it"
    )
    assert version_of(postgres, url) == 2
    assert "outcomes" not in tables_of(postgres, url)


@server
def test_reading_a_database_without_state_says_so_and_makes_nothing(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    with pytest.raises(StateError) as refused:
        open_store(url, readonly=True)
    assert str(refused.value) == (f"no state yet in {url} (reminderd has not run with this config)")
    assert tables_of(postgres, url) == set()


@server
def test_a_reader_reads_and_cannot_write(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    open_store(url).set("k", {"n": 1})
    reader = open_store(url, readonly=True)
    assert reader.get("k") == {"n": 1}
    with pytest.raises(StateError) as refused:
        reader.set("k", {"n": 2})
    assert "read-only" in str(refused.value)
    assert reader.get("k") == {"n": 1}


@server
def test_a_failing_step_leaves_the_version_where_it_was(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    open_store(url).set("sync:" + CAL, "token-7")
    broken = Step(
        LATEST + 1,
        "test: fails after its first statement",
        ("CREATE TABLE half_done (x TEXT)", "INSERT INTO no_such_table VALUES (1)"),
    )
    with pytest.raises(StateError) as failed:
        open_store(url, steps=(*STEPS, broken))
    assert str(failed.value).startswith(
        f"state database {url}: upgrading it to schema version {LATEST + 1} failed, "
        f"it stays at {LATEST}: the database failed (42P01: "
    )
    assert version_of(postgres, url) == LATEST
    assert "half_done" not in tables_of(postgres, url)
    assert open_store(url).get("sync:" + CAL) == "token-7"  # and this code still opens it


@server
def test_processes_starting_at_once_migrate_once(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    start = threading.Barrier(6)
    problems: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            open_store(url)
        except BaseException as exc:  # reported below
            problems.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert problems == []
    assert version_of(postgres, url) == LATEST
    assert tables_of(postgres, url) == TABLES


# -- the store's methods


@server
def test_events_upsert_and_forget_per_calendar(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    db = open_store(url)
    db.put_event(CAL, EventRow("u1", "/a.ics", None, "h1"))
    db.put_event(CAL, EventRow("u1", "/b.ics", '"e2"', "h2", "served-2"))
    db.put_event(CAL + "other/", EventRow("u1", "/c.ics", None, "h3"))
    assert db.events(CAL) == {"u1": EventRow("u1", "/b.ics", '"e2"', "h2", "served-2")}
    db.forget_event(CAL, "u1")
    db.forget_event(CAL, "never-there")
    assert db.events(CAL) == {}
    assert db.events(CAL + "other/") == {"u1": EventRow("u1", "/c.ics", None, "h3")}


@server
def test_small_values_are_json_and_a_prefix_is_text_not_a_pattern(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    db = open_store(url)
    assert db.get("absent") is None
    assert db.get("absent", {"d": 1}) == {"d": 1}
    value = {"at": "2025-03-14T09:00:00+00:00", "text": "100% sure? ünïcode ✓", "n": [1, None]}
    db.set("k", value)
    assert db.get("k") == value
    db.set("k", 2)
    assert db.get("k") == 2
    for key in ("sync:a%b", "sync:ab", "sync:a_b", "sync_x", "error:sync"):
        db.set(key, key)
    db.delete_prefix("sync:a%")  # not a LIKE pattern
    assert [k for k in ("sync:a%b", "sync:ab", "sync:a_b") if db.get(k)] == ["sync:ab", "sync:a_b"]
    db.delete_prefix("sync:")
    assert [db.get(k) for k in ("sync:ab", "sync:a_b", "sync_x", "error:sync")] == [
        None,
        None,
        "sync_x",
        "error:sync",
    ]


@server
def test_a_transaction_lands_whole_or_not_at_all(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    db = open_store(url)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("b", "2"))
            raise Boom
    assert db.query("SELECT key FROM meta") == []

    with pytest.raises(StateError) as failed:  # a failing statement: StateError, nothing saved
        with db.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "again"))
    # ours and the SQLSTATE (standard); the server's own wording after it varies by locale
    assert "the database failed (23505: " in str(failed.value)
    assert db.query("SELECT key FROM meta") == []

    with pytest.raises(StateError) as swallowed:  # a failure the caller went past
        with db.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
            try:
                tx.execute("SELECT * FROM no_such_table")
            except psycopg.Error:
                pass
    assert "none of it was saved" in str(swallowed.value)
    assert db.query("SELECT key FROM meta") == []

    with db.transaction() as tx:  # and the store goes on
        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", '"1"'))
        assert db.query("SELECT value FROM meta WHERE key = ?", ("a",)) == [('"1"',)]
        (count,) = tx.execute("SELECT COUNT(*) FROM meta").fetchone()
        assert count == 1
    assert db.get("a") == "1"


@server
def test_a_transaction_inside_a_transaction_is_refused_as_with_sqlite(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    db = open_store(url)
    with pytest.raises(StateError) as refused:
        with db.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            db.set("b", 2)
    assert "cannot start a transaction within a transaction" in str(refused.value)
    assert db.query("SELECT key FROM meta") == []


def outbox_story(db: StateStore) -> list[Any]:
    """One outbox's life, the same calls on any store; returns everything it saw."""
    seen: list[Any] = []
    sms = Outbox(db)
    mail = Outbox(db, table="email_outbox")

    def plan(key: str, minutes: int, text: str) -> PlannedSend:
        at = NOW + timedelta(minutes=minutes)
        return PlannedSend(key, at, at, at + timedelta(hours=1), {"title": text})

    first = {p.key: p for p in (plan("a#0", 10, "A"), plan("b#0", 20, "B"), plan("c#0", 30, "C"))}
    seen.append(sms.reconcile(first, NOW))
    seen.append(sms.reconcile(first, NOW))  # nothing changes
    moved = dict(first, **{"b#0": plan("b#0", 25, "B2")})
    del moved["c#0"]
    seen.append(sms.reconcile(moved, NOW))
    seen.append(sms.reconcile(dict(moved, **{"c#0": first["c#0"]}), NOW))  # reopened
    seen.append(sms.add("digest@1", "digest", NOW, NOW + timedelta(hours=1), {"n": 1}, NOW))
    seen.append(sms.add("digest@1", "digest", NOW, NOW + timedelta(hours=1), {"n": 2}, NOW))
    seen.append(sms.since(NOW))
    seen.append(sms.since(NOW + timedelta(days=1)))
    later = NOW + timedelta(minutes=26)
    seen.append(sms.due(later))
    seen.append(sms.next_time())
    seen.append(sms.claim("a#0", "A body", later))
    seen.append(sms.claim("a#0", "A body", later))
    seen.append(sms.in_flight())
    sms.sent("a#0", "SM1", later)
    seen.append(sms.claim("b#0", "B body", later))
    sms.retry_at("b#0", later + timedelta(minutes=5), "429", later)
    seen.append(sms.claim("digest@1", "D", later))
    sms.ambiguous_retry("digest@1", later, "timeout")
    seen.append(sms.claim("digest@1", "D", later))
    sms.unconfirmed("digest@1", "nobody knows", later)
    sms.missed("c#0", "too late", later)
    seen.append(sms.recent(10))
    seen.append(sms.missed_since(NOW))
    seen.append(sms.counts())
    seen.append(mail.add("mail@1", "backup", NOW, NOW + timedelta(hours=1), {"to": "x"}, NOW))
    seen.append(mail.claim("mail@1", "mail body", later))
    mail.failed("mail@1", "550 no such user", later)
    seen.append(mail.recent(10))
    seen.append(mail.counts())
    seen.append(sms.counts())
    return seen


@server
def test_the_outbox_lives_the_same_life_on_postgresql_as_on_sqlite(
    tmp_path: Path, url: str, open_store: Callable[..., PostgresStore]
) -> None:
    lite = StateDB(tmp_path / "state.sqlite3")
    try:
        expected = outbox_story(lite)
    finally:
        lite.close()
    assert outbox_story(open_store(url)) == expected
    assert expected[0] == {"added": 3, "moved": 0, "cancelled": 0, "reopened": 0}
    assert expected[2] == {"added": 0, "moved": 1, "cancelled": 1, "reopened": 0}
    assert expected[3] == {"added": 0, "moved": 0, "cancelled": 0, "reopened": 1}


# -- several processes on one database


def add_pending(db: StateStore, keys: list[str]) -> None:
    outbox = Outbox(db)
    for key in keys:
        assert outbox.add(key, "digest", NOW, NOW + timedelta(hours=1), {}, NOW)


@server
def test_two_stores_claiming_the_same_rows_each_row_goes_to_exactly_one(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    one, two = open_store(url), open_store(url)
    keys = [f"k{i}" for i in range(40)]
    add_pending(one, keys)
    won: dict[str, list[str]] = {"one": [], "two": []}
    start = threading.Barrier(2)

    def claim_all(name: str, db: PostgresStore) -> None:
        outbox = Outbox(db)
        start.wait()
        for key in keys:
            if outbox.claim(key, f"body from {name}", NOW):
                won[name].append(key)

    threads = [
        threading.Thread(target=claim_all, args=item) for item in (("one", one), ("two", two))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(won["one"] + won["two"]) == sorted(keys)
    assert set(won["one"]).isdisjoint(won["two"])
    rows = {r.key: r for r in Outbox(one).in_flight()}
    assert {k: rows[k].attempts for k in keys} == dict.fromkeys(keys, 1)
    assert all(rows[k].body == f"body from {n}" for n in won for k in won[n])


CLAIMER = textwrap.dedent(
    """
    import json, os, sys
    from datetime import UTC, datetime
    from reminderd.sms.outbox import Outbox
    from reminderd.store.postgres import PostgresStore

    db = PostgresStore(sys.argv[1], password=os.environ["RD_TEST_PASSWORD"])
    outbox = Outbox(db)
    print("ready", flush=True)
    sys.stdin.readline()
    now = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    won = [k for k in sys.argv[2:] if outbox.claim(k, "from " + str(os.getpid()), now)]
    print(json.dumps(won), flush=True)
    db.close()
    """
)


@server
def test_two_processes_claiming_the_same_rows_never_both_send_one(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    keys = [f"p{i}" for i in range(60)]
    add_pending(open_store(url), keys)
    env = dict(os.environ, RD_TEST_PASSWORD=postgres.password)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, *keys],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # both go at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        won = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sorted(won[0] + won[1]) == sorted(keys)
    assert set(won[0]).isdisjoint(won[1])


@server
def test_threads_of_one_store_claiming_one_row_exactly_one_wins(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    db = open_store(url)
    keys = [f"t{i}" for i in range(15)]
    add_pending(db, keys)
    outbox = Outbox(db)
    for key in keys:
        start = threading.Barrier(8)
        results: list[bool] = []

        def claim(
            key: str = key, start: threading.Barrier = start, results: list[bool] = results
        ) -> None:
            start.wait()
            results.append(outbox.claim(key, "body", NOW))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == [False] * 7 + [True], key
    assert Outbox(db).counts() == {"sending": len(keys)}


@server
def test_read_modify_write_in_transactions_loses_no_update_across_stores(
    url: str, open_store: Callable[..., PostgresStore]
) -> None:
    stores = [open_store(url), open_store(url)]
    stores[0].set("counter", 0)

    def bump(db: PostgresStore) -> None:
        for _ in range(25):
            with db.transaction() as tx:
                (value,) = tx.execute(
                    "SELECT value FROM meta WHERE key = ?", ("counter",)
                ).fetchone()
                time.sleep(0.001)  # widen the window a lost update would need
                tx.execute(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    (json.dumps(json.loads(value) + 1), "counter"),
                )

    threads = [threading.Thread(target=bump, args=(db,)) for db in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert stores[1].get("counter") == 100


@server
def test_a_writer_waiting_too_long_for_another_process_gets_a_state_error(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgstore, "LOCK_TIMEOUT_S", 1)
    db = open_store(url)
    with postgres.admin(url.rsplit("/", 1)[1]) as other:  # another process mid-transaction
        other.execute("SELECT pg_advisory_lock(%s)", (pgstore.WRITE_LOCK,))
        started = time.monotonic()
        with pytest.raises(StateError) as waited:
            db.set("k", 1)
        assert time.monotonic() - started < 10
        assert str(waited.value) == (
            f"state database {url}: another process kept it locked for 1 s"
        )
        assert db.get("k") is None  # reads never wait for writers
    db.set("k", 1)  # released: the store goes on
    assert db.get("k") == 1


# -- the password, outages


@server
def test_the_password_is_never_shown(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-" + postgres.password[::-1]
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(StateError) as refused:
            open_store(url, password=wrong)
        assert str(refused.value) == (
            f"state database {url}: the server refused the password of user reminderd: "
            "check state_password_env, _file, _command or _credential"
        )
        shown.append(str(refused.value))
        db = open_store(url)
        shown += [repr(db), str(db.path), db.where, repr(vars(db)), repr(PgLeases(db, "x"))]
        assert db.where == url
        with pytest.raises(StateError) as in_url:
            open_store(url.replace("reminderd@", f"reminderd:{postgres.password}@"))
        shown.append(str(in_url.value))
        assert "must not hold the password" in str(in_url.value)
        postgres.stop()
        try:
            with pytest.raises(StateError) as down:
                db.get("k")
            shown.append(str(down.value))
        finally:
            postgres.start()
    shown += caplog.messages
    for text in shown:
        assert postgres.password not in text
        assert wrong not in text


@server
def test_a_database_that_went_away_is_a_state_error_and_the_store_recovers(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    db = open_store(url, connect_timeout=2)
    db.set("k", 1)
    with db.transaction():  # a second idle connection in the pool
        assert db.get("k") == 1
    postgres.stop()
    try:
        attempts: list[Callable[[], object]] = [
            lambda: db.get("k"),
            lambda: db.set("k", 2),
            lambda: db.events(CAL),
        ]
        for attempt in attempts:
            with pytest.raises(StateError) as down:
                attempt()
            assert str(down.value).startswith(f"state database {url}: cannot connect (")
            assert "check that PostgreSQL runs there" in str(down.value)
            assert down.value.exit_code == 74
        with pytest.raises(StateError):
            open_store(url, connect_timeout=2)
    finally:
        postgres.start()
    assert db.get("k") == 1  # connected again, without a new store
    db.set("k", 3)
    assert db.get("k") == 3


@server
def test_a_restart_between_calls_is_not_even_noticed(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    db = open_store(url)
    db.set("k", 1)
    postgres.stop()
    postgres.start()
    assert db.get("k") == 1  # the dead idle connection was replaced
    db.set("k", 2)
    assert db.get("k") == 2


@server
def test_what_cannot_connect_says_what_to_do(
    postgres: PgServer,  # noqa: F811
    open_store: Callable[..., PostgresStore],
) -> None:
    missing = postgres.url("no_such_db")
    with pytest.raises(StateError) as refused:
        open_store(missing)
    assert str(refused.value) == (
        f"state database {missing}: database no_such_db does not exist on the server: "
        "create it (createdb -O reminderd no_such_db)"
    )
    with pytest.raises(StateError) as refused:
        open_store("postgresql://reminderd@127.0.0.1:1/x")
    assert str(refused.value).startswith(
        "state database postgresql://reminderd@127.0.0.1:1/x: cannot connect ("
    )
    with pytest.raises(StateError) as refused:
        open_store("http://example.com/")
    assert "not a PostgreSQL URL" in str(refused.value)


@server
def test_a_server_that_does_not_answer_is_given_up_after_the_connect_timeout(
    open_store: Callable[..., PostgresStore],
) -> None:
    with socket.socket() as silent:  # accepts (the kernel does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        where = f"postgresql://reminderd@127.0.0.1:{silent.getsockname()[1]}/x"
        started = time.monotonic()
        with pytest.raises(StateError) as slow:
            open_store(where, connect_timeout=2)
        assert 1.5 < time.monotonic() - started < 10
    assert str(slow.value) == (
        f"state database {where}: no answer within 2 s: check that the server is up and "
        "reachable from here"
    )


@server
def test_a_replaced_database_is_noticed(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    db = open_store(url)
    assert db.still_same()
    with postgres.admin(url.rsplit("/", 1)[1]) as conn:
        conn.execute(
            "DROP TABLE reminderd_schema, calendar_events, sms_outbox, meta, outcomes, "
            "inbound, sms_refs, email_outbox"
        )
    open_store(url)  # a fresh state made in its place
    assert not db.still_same()


# -- daemons sharing the database: a dead one loses its lock with its session

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from reminderd.store.postgres import PgLeases, PostgresStore

    db = PostgresStore(sys.argv[1], password=os.environ["RD_TEST_PASSWORD"])
    leases = PgLeases(db, "held-by-a-child")
    leases.start()
    print("held", flush=True)
    time.sleep(120)
    """
)


@server
def test_a_daemon_killed_with_sigkill_is_seen_dead(
    postgres: PgServer,  # noqa: F811
    url: str,
    open_store: Callable[..., PostgresStore],
) -> None:
    open_store(url).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, RD_TEST_PASSWORD=postgres.password),
    )
    watcher = PgLeases(open_store(url), "watcher")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        watcher.start()
        assert watcher.alive("held-by-a-child")
        with pytest.raises(AlreadyRunning):  # the same identity twice: refused
            PgLeases(open_store(url), "held-by-a-child").start()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while watcher.alive("held-by-a-child"):  # the server ends the session at once
            assert time.monotonic() < deadline, "the killed daemon still looks alive"
            time.sleep(0.1)
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
