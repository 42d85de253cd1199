"""The state store's migrations: a 0.1 database upgrades in place, a newer one is refused,
a reader changes nothing, and a failing step leaves the version where it was."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reminderd.errors import StateError
from reminderd.sms.outbox import Outbox
from reminderd.store.protocol import EventRow
from reminderd.store.schema import LATEST, STEPS, Step
from reminderd.store.sqlite import StateDB

# The schema of reminderd 0.1 (reminderd/sync/state.py SCHEMA), as it made databases:
# no version (user_version 0), WAL mode.
SCHEMA_0_1 = """
CREATE TABLE IF NOT EXISTS calendar_events (
    calendar TEXT NOT NULL,
    uid      TEXT NOT NULL,
    href     TEXT NOT NULL,
    etag     TEXT,
    hash     TEXT NOT NULL,
    PRIMARY KEY (calendar, uid)
);
CREATE TABLE IF NOT EXISTS sms_outbox (
    key        TEXT PRIMARY KEY,   -- commitment#touch@offset@start: one send, ever
    kind       TEXT NOT NULL,      -- backup | digest | test
    due        TEXT NOT NULL,      -- UTC ISO: when the reminder is for
    send_at    TEXT NOT NULL,      -- UTC ISO: due, moved out of quiet hours
    next_try   TEXT NOT NULL,      -- UTC ISO: send_at, or later after a temporary failure
    deadline   TEXT NOT NULL,      -- UTC ISO: after this the send is useless (missed)
    payload    TEXT NOT NULL,      -- JSON: what the text is made of, so sends survive a broken file
    status     TEXT NOT NULL,      -- pending | sending | sent | failed | missed | cancelled
    attempts   INTEGER NOT NULL DEFAULT 0,
    ambiguous  INTEGER NOT NULL DEFAULT 0,  -- sends whose outcome a crash or timeout hid
    started_at TEXT,               -- UTC ISO of the last request start
    sid        TEXT,
    error      TEXT,
    body       TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_outbox_next ON sms_outbox (status, next_try);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

CAL = "https://cal.example/alex/follow-ups/"
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def make_0_1_database(path: Path) -> None:
    """A state database as reminderd 0.1 left it: one event, one queued send, one small value."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_0_1)
    db.execute(
        "INSERT INTO calendar_events VALUES (?, ?, ?, ?, ?)",
        (CAL, "reminderd-1", "/alex/follow-ups/reminderd-1.ics", '"etag-1"', "hash-1"),
    )
    db.execute(
        "INSERT INTO sms_outbox (key, kind, due, send_at, next_try, deadline, payload, status, "
        "attempts, ambiguous, started_at, sid, error, body, updated_at) "
        "VALUES (?, 'backup', ?, ?, ?, ?, ?, 'sent', 1, 0, ?, 'SM1', NULL, 'Call Dana', ?)",
        (
            "call-dana#1@-30m@2025-03-14T10:00",
            "2025-03-14T10:00:00.000+00:00",
            "2025-03-14T09:30:00.000+00:00",
            "2025-03-14T09:30:00.000+00:00",
            "2025-03-14T10:00:00.000+00:00",
            json.dumps({"title": "Call Dana"}),
            "2025-03-14T09:30:00.100+00:00",
            "2025-03-14T09:30:01.000+00:00",
        ),
    )
    db.execute("INSERT INTO meta VALUES (?, ?)", ("sync:" + CAL, json.dumps("token-7")))
    db.close()


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as db:
        return sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall())


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def old(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "state.sqlite3"
    path.parent.mkdir()
    make_0_1_database(path)
    return path


def test_the_ladder_is_numbered_from_1_without_gaps() -> None:
    assert [s.version for s in STEPS] == list(range(1, len(STEPS) + 1))
    assert LATEST == len(STEPS)


def test_step_1_is_the_0_1_schema(tmp_path: Path, old: Path) -> None:
    stepped = tmp_path / "step1.sqlite3"
    with closing(sqlite3.connect(stepped, isolation_level=None)) as db:
        for statement in STEPS[0].statements:
            db.execute(statement)
    assert schema_of(stepped) == schema_of(old)


def test_a_0_1_database_is_upgraded_in_place_and_keeps_every_row(tmp_path: Path, old: Path) -> None:
    db = StateDB(old)
    try:
        assert db.events(CAL) == {
            "reminderd-1": EventRow(
                "reminderd-1", "/alex/follow-ups/reminderd-1.ics", '"etag-1"', "hash-1"
            )
        }
        assert db.get("sync:" + CAL) == "token-7"
        (row,) = [r for r in Outbox(db).recent(10) if r.key == "call-dana#1@-30m@2025-03-14T10:00"]
        assert (row.status, row.sid, row.body, row.payload) == (
            "sent",
            "SM1",
            "Call Dana",
            {"title": "Call Dana"},
        )
        assert row.send_at == datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    finally:
        db.close()
    assert user_version(old) == LATEST
    assert (
        "index",
        "sms_outbox_kind",
        "CREATE INDEX sms_outbox_kind ON sms_outbox (kind, status)",
    ) in schema_of(old)
    fresh = tmp_path / "fresh" / "state.sqlite3"
    StateDB(fresh).close()
    assert schema_of(old) == schema_of(fresh)  # upgraded or new: one schema


def test_a_second_open_changes_nothing(old: Path, caplog: pytest.LogCaptureFixture) -> None:
    StateDB(old).close()
    before = files_in(old.parent)
    caplog.clear()  # the upgrade above may have logged (an earlier test can leave INFO on)
    with caplog.at_level(logging.INFO, logger="reminderd.store.sqlite"):
        StateDB(old).close()
    assert caplog.messages == []
    assert files_in(old.parent) == before
    assert user_version(old) == LATEST


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_database_newer_than_this_code_is_refused(old: Path, readonly: bool) -> None:
    StateDB(old).close()
    with closing(sqlite3.connect(old, isolation_level=None)) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = files_in(old.parent)
    with pytest.raises(StateError) as refused:
        StateDB(old, readonly=readonly)
    assert str(refused.value) == (
        f"state database {old} has schema version {LATEST + 1}, newer than this reminderd knows "
        f"({LATEST}): upgrade reminderd (an older version must not change it)"
    )
    assert files_in(old.parent) == before


def test_reading_an_old_database_is_refused_and_changes_nothing(old: Path) -> None:
    before = files_in(old.parent)
    with pytest.raises(StateError) as refused:
        StateDB(old, readonly=True)
    assert str(refused.value) == (
        f"state database {old} has schema version 0, older than this reminderd needs ({LATEST}): "
        "run the daemon or `reminderd sync` once to upgrade it"
    )
    assert files_in(old.parent) == before  # same bytes, and no -wal or -shm left behind


def test_reading_an_upgraded_database_works(old: Path) -> None:
    StateDB(old).close()
    db = StateDB(old, readonly=True)
    try:
        assert db.get("sync:" + CAL) == "token-7"
    finally:
        db.close()


def test_a_failing_step_leaves_the_version_where_it_was(old: Path) -> None:
    broken = Step(
        LATEST + 1,
        "test: fails after its first statement",
        ("CREATE TABLE half_done (x TEXT)", "INSERT INTO no_such_table VALUES (1)"),
    )
    with pytest.raises(StateError) as failed:
        StateDB(old, steps=(*STEPS, broken))
    assert str(failed.value) == (
        f"state database {old}: upgrading it to schema version {LATEST + 1} failed, "
        f"it stays at {LATEST}: the database failed (SQLITE_ERROR)"
    )
    assert user_version(old) == LATEST  # the steps before it landed, each on its own
    assert "half_done" not in [name for _, name, _ in schema_of(old)]
    db = StateDB(old)  # and this code still opens it
    try:
        assert db.get("sync:" + CAL) == "token-7"
    finally:
        db.close()


def test_upserts_replace_and_keep_as_before(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.sqlite3")
    try:
        db.put_event(CAL, EventRow("u1", "/a.ics", None, "h1"))
        db.put_event(CAL, EventRow("u1", "/b.ics", '"e2"', "h2"))
        assert db.events(CAL) == {"u1": EventRow("u1", "/b.ics", '"e2"', "h2")}
        db.set("k", {"n": 1})
        db.set("k", {"n": 2})
        assert db.get("k") == {"n": 2}
        outbox = Outbox(db)
        assert outbox.add("digest@2025-03-14", "digest", NOW, NOW, {}, NOW) is True
        assert outbox.add("digest@2025-03-14", "digest", NOW, NOW, {"other": 1}, NOW) is False
        assert outbox.since(NOW) == NOW
        assert outbox.since(datetime(2025, 3, 15, tzinfo=UTC)) == NOW
    finally:
        db.close()


def test_no_sqlite_only_upserts_in_the_code() -> None:
    code = Path(__file__).parent.parent / "reminderd"
    sqlite_only = re.compile(r"[\"']INSERT\s+OR\s+(REPLACE|IGNORE)", re.IGNORECASE)
    found = [str(p) for p in code.rglob("*.py") if sqlite_only.search(p.read_text())]
    assert found == []


def test_only_an_upgrade_is_logged_not_a_new_database(
    tmp_path: Path, old: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reminderd.store.sqlite"):
        StateDB(tmp_path / "new.sqlite3").close()
        assert caplog.messages == []
        StateDB(old).close()
    assert caplog.messages[-1] == (
        f"state database {old}: upgraded to schema version {LATEST} ({STEPS[-1].purpose})"
    )
