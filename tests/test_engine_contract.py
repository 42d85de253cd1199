"""The sync engine's contract: one suite, run against every calendar backend.

The in-memory calendar always runs (no server, milliseconds), in four
shapes: with sync tokens, with a ctag only, with neither (a full listing
every sync), and without ETags in PUT replies. Radicale, Xandikos and
SabreDAV run the same tests through DavCalendar behind the recording proxy
when they can be started here, and are skipped with the reason otherwise.
The engine is driven directly (no CLI); test_calendar_contract.py keeps the
CLI-level checks against the real servers.

Each test gets a fresh calendar and state. `Backend.requests` is what
reminderd sent (the memory calendar's log, or the proxy's record, in the
same shape); `edit`, `remove` and `add_foreign` are a calendar app on the
user's phone, never counted as reminderd's traffic.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
import pytest
from servers import CALENDAR_SERVERS, CalendarServer, CalendarServers, DirectClient, RecordingProxy

from reminderd.app import with_outcomes
from reminderd.calendar.dav import DavCalendar, discover
from reminderd.calendar.memory import MemoryCalendar, Request, foreign_event
from reminderd.calendar.protocol import CalendarStore
from reminderd.errors import MassDeleteRefused
from reminderd.ical import render, uid_for
from reminderd.model import Commitment, Contact, FollowUp, touches
from reminderd.outcomes import log as outcome_log
from reminderd.outcomes.apply import CalendarEdits
from reminderd.store.keys import SYNC_MARKER
from reminderd.store.sqlite import StateDB
from reminderd.sync.engine import SyncResult, sync_calendar
from reminderd.sync.plan import basename

ATHENS = ZoneInfo("Europe/Athens")
MEMORY: dict[str, dict[str, bool]] = {
    "memory": {},  # sync tokens and a ctag, an ETag in every PUT reply
    "memory-ctag": {"sync_tokens": False},
    "memory-listing": {"sync_tokens": False, "ctag": False},
    "memory-no-put-etag": {"etags_on_put": False},
}
BACKENDS = [*MEMORY, *(pytest.param(name, marks=pytest.mark.server) for name in CALENDAR_SERVERS)]
_counter = itertools.count()


# -- backends: the calendar the engine syncs, what it sent, and a phone that edits it


class Backend:
    cal: CalendarStore
    marker = True  # a sync token or ctag: a sync with nothing to do is that one read

    @property
    def noop_reads(self) -> int:
        return 1 if self.marker else 2  # without one: the collection's PROPFIND and a listing

    def requests(self, *methods: str) -> list[Request]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def objects(self) -> dict[str, bytes]:
        """Every object's data, by name (the last part of its href)."""
        raise NotImplementedError

    def edit(self, name: str, change: Callable[[bytes], bytes]) -> None:
        raise NotImplementedError

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def add_foreign(self, name: str, uid: str) -> None:
        raise NotImplementedError

    def writes(self) -> list[Request]:
        """Every write sent, including a server-requested retry (423/5xx) of the same one."""
        return self.requests("PUT", "DELETE")

    def landed(self) -> list[Request]:
        """Writes the calendar accepted: what actually changed it."""
        return [r for r in self.writes() if 200 <= r.status < 300]


class MemoryBackend(Backend):
    def __init__(self, **shape: bool) -> None:
        self.memory = MemoryCalendar(**shape)
        self.cal = self.memory
        self.marker = self.memory.sync_tokens or self.memory.ctag

    def requests(self, *methods: str) -> list[Request]:
        return self.memory.requests(*methods)

    def reset(self) -> None:
        self.memory.reset_requests()

    def objects(self) -> dict[str, bytes]:
        return {basename(href): data for href, data in self.memory.objects().items()}

    def edit(self, name: str, change: Callable[[bytes], bytes]) -> None:
        self.memory.edit(self.memory.href_for(name), change)

    def remove(self, name: str) -> None:
        self.memory.remove(self.memory.href_for(name))

    def add_foreign(self, name: str, uid: str) -> None:
        self.memory.add_foreign(name, uid)


class DavBackend(Backend):
    """A fresh calendar on a real server, found or created by reminderd's own discovery."""

    def __init__(self, server: CalendarServer) -> None:
        self.proxy = RecordingProxy(server.url)
        name = f"Engine {next(_counter)} {uuid.uuid4().hex[:6]}"
        url = discover(self.proxy.rewrite(server.url), server.username, server.password, name)
        self.cal = DavCalendar(url, server.username, server.password)
        parts = urlsplit(server.url)
        self.phone = DirectClient(f"{parts.scheme}://{parts.netloc}{urlsplit(url).path}", server)

    def requests(self, *methods: str) -> list[Request]:
        return [
            Request(
                s.method,
                s.path,
                s.status,
                s.headers.get("If-Match"),
                s.headers.get("If-None-Match") == "*",
            )
            for s in self.proxy.requests(*methods)
        ]

    def reset(self) -> None:
        self.proxy.reset()

    def objects(self) -> dict[str, bytes]:
        return {
            basename(href): cal.to_ical()  # type: ignore[attr-defined]
            for href, cal in self.phone.objects().items()
        }

    def edit(self, name: str, change: Callable[[bytes], bytes]) -> None:
        self.phone.put(name, change(self.phone.get(name)))

    def remove(self, name: str) -> None:
        self.phone.delete(name)

    def add_foreign(self, name: str, uid: str) -> None:
        self.phone.put(name, foreign_event(uid, "Dentist (not reminderd's)"), create=True)

    def close(self) -> None:
        self.proxy.close()


@pytest.fixture(scope="module")
def calendar_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServers]:
    servers = CalendarServers(tmp_path_factory.mktemp)
    yield servers
    servers.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param in MEMORY:
        yield MemoryBackend(**MEMORY[request.param])
        return
    servers: CalendarServers = request.getfixturevalue("calendar_servers")
    dav = DavBackend(servers.get(request.param))
    yield dav
    dav.close()


@dataclasses.dataclass
class Run:
    """The engine against one backend, with its state database."""

    backend: Backend
    dir: Path
    db: StateDB

    def sync(self, items: list[Commitment], **options: Any) -> SyncResult:
        """One sync; `backend.requests()` then holds exactly its traffic."""
        self.backend.reset()
        return sync_calendar(self.backend.cal, self.db, items, progress=None, **options)

    def lose_state(self) -> None:
        """The state database is gone (a new machine, a deleted state dir)."""
        self.db.close()
        self.db = StateDB(self.dir / f"state-{uuid.uuid4().hex[:6]}.sqlite3")

    def hide_server_changes(self) -> None:
        """Save the calendar's current sync marker, as if the engine had read the calendar
        just before the last phone edit: the edit then lands between its read and its write."""
        collection = self.backend.cal.collection()
        marker = (
            {"token": collection.sync_token} if collection.sync_token else {"ctag": collection.ctag}
        )
        self.db.set(SYNC_MARKER + self.backend.cal.url, marker)


@pytest.fixture
def run(backend: Backend, tmp_path: Path) -> Iterator[Run]:
    r = Run(backend, tmp_path, StateDB(tmp_path / "state.sqlite3"))
    yield r
    r.db.close()


def commitment(i: int, **changes: Any) -> Commitment:
    base = Commitment(
        id=f"c{i}",
        title=f"Call customer {i}",
        start=datetime(2030, 7, 10 + i, 10, tzinfo=ATHENS),
        duration=timedelta(minutes=15),
        contact=Contact(name=f"Person {i}", company=f"Co {i}"),
        purpose=f"Promised figures for deal {i}",
        bring=("Quote", "Contract draft"),
        questions=("Budget approved?",),
        next_step="Send the contract",
        alarms=(timedelta(days=-1), timedelta(hours=-1), timedelta(minutes=-10)),
    )
    return dataclasses.replace(base, **changes)


def events(backend: Backend) -> dict[str, icalendar.Event]:
    """The VEVENT of every object, by name."""
    return {
        name: icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
        for name, data in backend.objects().items()
    }


def summaries(backend: Backend) -> list[str]:
    return sorted(str(e["SUMMARY"]) for e in events(backend).values())


def name_of(backend: Backend, summary: str) -> str:
    (name,) = [n for n, e in events(backend).items() if str(e["SUMMARY"]) == summary]
    return name


def retitled(summary: str) -> Callable[[bytes], bytes]:
    """A calendar app's edit: the event's title changed, everything else kept."""

    def change(data: bytes) -> bytes:
        cal = icalendar.Calendar.from_ical(data)
        cal.walk("VEVENT")[0]["SUMMARY"] = icalendar.vText(summary)
        return bytes(cal.to_ical())

    return change


def assert_nothing_to_do(run: Run, items: list[Commitment]) -> None:
    result = run.sync(items)
    assert run.backend.writes() == []
    assert run.backend.requests("GET") == []
    assert len(run.backend.requests()) == run.backend.noop_reads, run.backend.requests()
    assert result.line() == f"created 0, updated 0, deleted 0, unchanged {len(events(run.backend))}"


# -- the contract


def test_first_sync_creates_then_nothing_to_do(run: Run) -> None:
    items = [commitment(i) for i in range(1, 6)]
    items.append(
        commitment(
            6, follow_ups=(FollowUp(timedelta(days=2), "Chase"), FollowUp(timedelta(days=5)))
        )
    )
    result = run.sync(items)
    assert (
        result.line() == "created 8, updated 0, deleted 0, unchanged 0"
    )  # 6 first touches + 2 follow-ups
    puts = run.backend.requests("PUT")
    assert all(p.if_none_match and p.if_match is None for p in puts)
    assert len({p.href for p in puts}) == len(run.backend.landed()) == 8
    assert len(events(run.backend)) == 8
    assert_nothing_to_do(run, items)
    assert_nothing_to_do(run, items)


def test_one_change_rewrites_one_event(run: Run) -> None:
    items = [commitment(i) for i in range(1, 6)]
    run.sync(items)
    items[2] = commitment(3, purpose="New reason: price changed")
    result = run.sync(items)
    assert result.line() == "created 0, updated 1, deleted 0, unchanged 4"
    (put,) = run.backend.writes()
    assert put.method == "PUT" and put.if_match and not put.if_none_match
    (changed,) = [
        e
        for e in events(run.backend).values()
        if "New reason: price changed" in str(e["DESCRIPTION"])
    ]
    assert str(changed["SUMMARY"]) == "Call customer 3"
    assert_nothing_to_do(run, items)


def test_one_removal_deletes_one_event(run: Run) -> None:
    items = [commitment(i) for i in range(1, 6)]
    run.sync(items)
    result = run.sync(items[:4])
    assert result.line() == "created 0, updated 0, deleted 1, unchanged 4"
    (delete,) = run.backend.writes()
    assert delete.method == "DELETE" and delete.if_match
    assert summaries(run.backend) == [f"Call customer {i}" for i in range(1, 5)]
    assert_nothing_to_do(run, items[:4])


def test_foreign_events_are_never_touched(run: Run) -> None:
    run.sync([commitment(1), commitment(2)])
    foreign = {
        "dentist.ics": "dentist-123@example.com",
        "reminderd-0000000000000000000000000000dead.ics": "looks-like-ours@example.com",
    }
    for name, uid in foreign.items():
        run.backend.add_foreign(name, uid)
    before = {name: events(run.backend)[name].to_ical() for name in foreign}
    touched: list[Request] = []
    run.sync([commitment(1)])
    touched += run.backend.writes()
    run.sync([], force=True)
    touched += run.backend.writes()
    assert not [w for w in touched if basename(w.href) in foreign]
    assert {name: e.to_ical() for name, e in events(run.backend).items()} == before


def test_mass_delete_needs_force(run: Run) -> None:
    items = [commitment(i) for i in range(1, 5)]
    run.sync(items)
    for dry_run in (False, True):  # the dry run says the same, and both change nothing
        with pytest.raises(MassDeleteRefused, match="--force"):
            run.sync(items[:1], dry_run=dry_run)
        assert run.backend.writes() == []
    assert len(events(run.backend)) == 4
    result = run.sync(items[:1], force=True)
    assert result.deleted == 3 and len(run.backend.requests("DELETE")) == 3
    assert summaries(run.backend) == ["Call customer 1"]


def test_dry_run_counts_and_writes_nothing(run: Run) -> None:
    items = [commitment(i) for i in range(1, 5)]
    run.sync(items)
    changed = [commitment(1, purpose="Moved on"), *items[1:3], commitment(5)]
    result = run.sync(changed, dry_run=True)
    assert result.line() == "would be created 1, updated 1, deleted 1, unchanged 2"
    assert run.backend.writes() == []
    assert run.sync(changed).line() == "created 1, updated 1, deleted 1, unchanged 2"


def test_server_side_delete_and_edit_are_restored_from_the_file(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    run.backend.remove(name_of(run.backend, "Call customer 1"))
    run.backend.edit(name_of(run.backend, "Call customer 2"), retitled("changed in a calendar app"))
    result = run.sync(items)
    assert (result.created, result.recreated, result.updated, result.repaired) == (1, 1, 1, 1)
    assert "1 recreated" in result.line() and "1 restored" in result.line()
    assert len(run.backend.landed()) == 2
    assert (
        len({w.href for w in run.backend.writes()}) == 2
    )  # a 423/5xx retry repeats a write, never adds one
    assert summaries(run.backend) == ["Call customer 1", "Call customer 2", "Call customer 3"]
    assert_nothing_to_do(run, items)


def test_lost_state_adopts_owned_events_with_zero_writes(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    before = run.backend.objects()
    run.lose_state()
    result = run.sync(items)
    assert run.backend.writes() == []  # found by name, verified ours, content unchanged
    assert result.line() == "created 0, updated 0, deleted 0, unchanged 3" and result.errors == []
    assert run.backend.objects() == before
    assert_nothing_to_do(run, items)


def test_stale_etag_on_update_is_checked_then_written(run: Run) -> None:
    """An edit that lands between the engine's read and its PUT: the If-Match fails, the
    engine reads the object, sees it is still its own, and writes over it once."""
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    name = name_of(run.backend, "Call customer 2")
    run.backend.edit(name, retitled("changed in a calendar app"))
    run.hide_server_changes()
    items[1] = commitment(2, purpose="New reason")
    result = run.sync(items)
    assert result.errors == [] and result.updated == 1
    if run.backend.marker:  # else its listing showed the edit: no stale write to make
        assert run.backend.writes()[0].status == 412  # the stale If-Match, refused
    (landed,) = run.backend.landed()
    assert landed.method == "PUT" and basename(landed.href) == name
    assert {basename(w.href) for w in run.backend.writes()} == {name}
    event = events(run.backend)[name]
    assert str(event["SUMMARY"]) == "Call customer 2" and "New reason" in str(event["DESCRIPTION"])
    assert_nothing_to_do(run, items)


def test_stale_etag_on_delete_is_checked_then_deleted(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    name = name_of(run.backend, "Call customer 3")
    run.backend.edit(name, retitled("changed in a calendar app"))
    run.hide_server_changes()
    result = run.sync(items[:2])
    assert result.errors == [] and result.deleted == 1
    if run.backend.marker:
        assert run.backend.writes()[0].status == 412  # the stale If-Match, refused
    assert {basename(w.href) for w in run.backend.writes()} == {name}
    assert summaries(run.backend) == ["Call customer 1", "Call customer 2"]
    assert_nothing_to_do(run, items[:2])


def test_forgotten_sync_token_falls_back_to_a_listing(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    run.backend.remove(name_of(run.backend, "Call customer 1"))
    run.db.set(SYNC_MARKER + run.backend.cal.url, {"token": "urn:reminderd-test:forgotten-token"})
    result = run.sync(items)
    refused = run.backend.requests()[0]
    assert refused.method == "REPORT" and 400 <= refused.status < 500
    assert result.errors == [] and result.recreated == 1
    assert summaries(run.backend) == ["Call customer 1", "Call customer 2", "Call customer 3"]
    assert_nothing_to_do(run, items)


# -- a person's edits on the calendar as outcomes (`calendar.server_edits: adopt`)

NOW = datetime(2030, 7, 1, 9, 0, tzinfo=ATHENS)


def adopting(run: Run, items: list[Commitment]) -> CalendarEdits:
    return CalendarEdits(run.db, {c.id: c for c in items}, lambda: NOW)


def moved_to(start: datetime) -> Callable[[bytes], bytes]:
    """A calendar app's drag: DTSTART and DTEND move, the rest is kept."""

    def change(data: bytes) -> bytes:
        cal = icalendar.Calendar.from_ical(data)
        event = cal.walk("VEVENT")[0]
        length = event.decoded("DTEND") - event.decoded("DTSTART")
        del event["DTSTART"], event["DTEND"]
        event.add("dtstart", start)
        event.add("dtend", start + length)
        return bytes(cal.to_ical())

    return change


def test_a_moved_event_is_a_move_of_its_touch(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    new_start = datetime(2030, 7, 13, 15, 30, tzinfo=ATHENS)
    run.backend.edit(name_of(run.backend, "Call customer 2"), moved_to(new_start))
    edits = adopting(run, items)
    result = run.sync(items, edits=edits)
    assert result.moved == 1 and edits.count == 1 and run.backend.writes() == []
    assert "1 moved on the calendar, taken as moves" in result.line()
    (move,) = outcome_log.by_commitment(run.db)["c2"]
    assert (move.kind, move.source, move.touch) == ("move", "calendar", 0)
    assert move.start == new_start
    effective = list(with_outcomes(run.db, tuple(items)))
    result = run.sync(effective, edits=adopting(run, items))
    assert result.line() == "created 0, updated 1, deleted 0, unchanged 2"  # rewritten whole
    event = events(run.backend)[name_of(run.backend, "Call customer 2")]
    assert event.decoded("DTSTART") == new_start
    assert [a.decoded("TRIGGER") for a in event.walk("VALARM")] == list(effective[1].alarms)
    assert_nothing_to_do(run, effective)


def test_a_deleted_event_is_a_skip_and_stays_deleted(run: Run) -> None:
    items = [commitment(i) for i in range(1, 5)]
    run.sync(items)
    run.backend.remove(name_of(run.backend, "Call customer 1"))
    result = run.sync(items, edits=adopting(run, items))
    assert result.skipped == 1 and result.created == 0 and run.backend.writes() == []
    (skip,) = outcome_log.by_commitment(run.db)["c1"]
    assert (skip.kind, skip.source, skip.touch) == ("skip", "calendar", 0)
    effective = list(with_outcomes(run.db, tuple(items)))
    assert summaries(run.backend) == ["Call customer 2", "Call customer 3", "Call customer 4"]
    assert_nothing_to_do(run, effective)


def test_most_events_vanishing_at_once_is_a_reset_and_they_come_back(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    for summary in ("Call customer 1", "Call customer 2", "Call customer 3"):
        run.backend.remove(name_of(run.backend, summary))
    result = run.sync(items, edits=adopting(run, items))
    assert result.reset and result.created == 3 and result.skipped == 0
    assert "recreated them" in result.line()
    assert outcome_log.by_commitment(run.db) == {}
    assert summaries(run.backend) == ["Call customer 1", "Call customer 2", "Call customer 3"]


def test_other_edits_are_still_repaired_when_adopting(run: Run) -> None:
    items = [commitment(i) for i in range(1, 4)]
    run.sync(items)
    run.backend.edit(name_of(run.backend, "Call customer 2"), retitled("changed on the phone"))
    result = run.sync(items, edits=adopting(run, items))
    assert (result.updated, result.repaired, result.moved) == (1, 1, 0)
    assert outcome_log.by_commitment(run.db) == {}
    assert summaries(run.backend) == ["Call customer 1", "Call customer 2", "Call customer 3"]


def test_a_server_rewrite_is_not_an_edit(run: Run) -> None:
    """A new ETag over the same content but for what servers rewrite themselves
    (DTSTAMP, SEQUENCE, LAST-MODIFIED): nothing is written back. Tagged, because some
    servers store CATEGORIES:a,b as one property per value (Cyrus)."""
    items = [commitment(i, tags=("hot", "q3")) for i in range(1, 3)]
    run.sync(items)

    def restamped(data: bytes) -> bytes:
        cal = icalendar.Calendar.from_ical(data)
        event = cal.walk("VEVENT")[0]
        event["DTSTAMP"] = icalendar.vDDDTypes(datetime(2031, 1, 1, 12, tzinfo=ATHENS))
        event["SEQUENCE"] = 3
        return bytes(cal.to_ical())

    run.backend.edit(name_of(run.backend, "Call customer 1"), restamped)
    result = run.sync(items, edits=adopting(run, items))
    assert run.backend.requests("PUT", "DELETE") == [] and result.errors == []
    assert (result.updated, result.moved) == (0, 0)
    assert_nothing_to_do(run, items)


def test_our_own_write_whose_answer_was_lost_is_not_an_edit(run: Run) -> None:
    """A PUT landed but the process died before recording its ETag: the next sync finds
    a new ETag holding exactly what it would write, and writes nothing."""
    items = [commitment(i) for i in range(1, 3)]
    run.sync(items)
    items[1] = commitment(2, purpose="New reason, written just before a crash")
    (touch,) = touches(items[1])
    name = name_of(run.backend, "Call customer 2")
    run.backend.edit(name, lambda _: render(touch, uid=uid_for(touch.key)))  # what landed
    result = run.sync(items, edits=adopting(run, items))
    assert run.backend.requests("PUT", "DELETE") == [] and result.errors == []
    assert (result.updated, result.repaired, result.moved) == (0, 0, 0)
    assert "New reason" in str(events(run.backend)[name]["DESCRIPTION"])
    assert_nothing_to_do(run, items)
