"""The in-memory calendar: the CalDAV behaviour it promises, and the engine under its injected faults.

The engine's contract over every backend is test_engine_contract.py; here
are the twin's own rules (what a real server does for the same requests,
checked against Radicale, Xandikos and SabreDAV when it was written) and
the failures only a twin can stage on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminderd.calendar.memory import MemoryCalendar, foreign_event
from reminderd.calendar.protocol import InvalidSyncToken, PreconditionFailed, RequestFailed
from reminderd.errors import AuthFailed, ServerUnreachable
from reminderd.model import Commitment
from reminderd.store.sqlite import StateDB
from reminderd.sync.engine import sync_calendar

EVENT = foreign_event("a@example.com", "A")
OTHER = foreign_event("a@example.com", "A, edited")


def test_every_write_gets_a_new_etag_and_moves_the_ctag() -> None:
    cal = MemoryCalendar()
    href = cal.href_for("a.ics")
    ctag0 = cal.collection().ctag
    first = cal.put(href, EVENT, None, create=True)
    ctag1 = cal.collection().ctag
    second = cal.put(href, EVENT, first, create=False)  # the same bytes again: still a new write
    assert first and second and first != second
    assert len({ctag0, ctag1, cal.collection().ctag}) == 3
    assert cal.listing() == {href: second}
    assert cal.get(href) == (EVENT, second)
    assert cal.get(cal.href_for("missing.ics")) is None


def test_create_only_where_nothing_is() -> None:
    cal = MemoryCalendar()
    href = cal.href_for("a.ics")
    etag = cal.put(href, EVENT, None, create=True)
    with pytest.raises(PreconditionFailed):
        cal.put(href, OTHER, None, create=True)
    assert cal.get(href) == (EVENT, etag)
    assert [(r.method, r.status, r.if_none_match) for r in cal.writes()] == [
        ("PUT", 201, True),
        ("PUT", 412, True),
    ]


def test_update_and_delete_only_with_the_current_etag() -> None:
    cal = MemoryCalendar()
    href = cal.href_for("a.ics")
    old = cal.put(href, EVENT, None, create=True)
    now = cal.edit(href, OTHER)  # a phone's edit
    for attempt in (lambda: cal.put(href, EVENT, old, create=False), lambda: cal.delete(href, old)):
        with pytest.raises(PreconditionFailed):
            attempt()
    assert cal.get(href) == (OTHER, now)
    with pytest.raises(PreconditionFailed):  # If-Match on nothing fails too
        cal.put(cal.href_for("b.ics"), EVENT, old, create=False)
    cal.delete(href, now)
    assert cal.objects() == {}
    cal.delete(href, now)  # already gone: a 404, not an error
    assert [r.status for r in cal.requests("DELETE")] == [412, 204, 404]


def test_unconditional_put_writes_whatever_is_there() -> None:
    cal = MemoryCalendar()
    href = cal.href_for("a.ics")
    cal.put(href, EVENT, None, create=False)
    cal.put(href, OTHER, None, create=False)
    assert cal.objects() == {href: OTHER}


def test_data_that_is_not_icalendar_is_refused() -> None:
    cal = MemoryCalendar()
    with pytest.raises(RequestFailed) as refused:
        cal.put(cal.href_for("a.ics"), b"hello", None, create=True)
    assert refused.value.status == 400 and cal.objects() == {}


def test_changes_since_a_token() -> None:
    cal = MemoryCalendar()
    a, b, c = (cal.href_for(f"{n}.ics") for n in "abc")
    cal.put(a, EVENT, None, create=True)
    cal.put(b, EVENT, None, create=True)
    token = cal.collection().sync_token
    assert token is not None
    assert cal.changes(token) == ({}, set(), token)
    etag_a = cal.edit(a, OTHER)
    cal.remove(b)
    etag_c = cal.put(c, EVENT, None, create=True)
    changed, deleted, new = cal.changes(token)
    assert changed == {a: etag_a, c: etag_c} and deleted == {b} and new != token
    assert new == cal.collection().sync_token
    assert cal.changes(new or "") == ({}, set(), new)
    cal.add("b.ics", EVENT)  # back again: a change, no longer a deletion
    changed, deleted, _ = cal.changes(token)
    assert set(changed) == {a, b, c} and deleted == set()


def test_unknown_or_forgotten_tokens_are_refused() -> None:
    cal = MemoryCalendar()
    token = cal.collection().sync_token or ""
    cal.add("a.ics", EVENT)
    never = cal.url + "sync/99"  # a revision it never reached
    for bad in (
        "garbage",
        token + "0",
        never,
        MemoryCalendar("memory://other/cal/").collection().sync_token or "",
    ):
        with pytest.raises(InvalidSyncToken):
            cal.changes(bad)
    cal.forget_sync_tokens()
    with pytest.raises(InvalidSyncToken):
        cal.changes(token)
    assert cal.changes(cal.collection().sync_token or "")[0] == {}


def test_servers_without_sync_tokens_or_ctag() -> None:
    ctag_only = MemoryCalendar(sync_tokens=False)
    assert ctag_only.collection().sync_token is None and ctag_only.collection().ctag
    with pytest.raises(InvalidSyncToken):
        ctag_only.changes(MemoryCalendar().collection().sync_token or "")
    bare = MemoryCalendar(sync_tokens=False, ctag=False)
    href = bare.add("a.ics", EVENT)
    assert (bare.collection().sync_token, bare.collection().ctag) == (None, None)
    assert bare.listing() == {href: bare.etag(href)}
    assert MemoryCalendar(etags_on_put=False).put(href, EVENT, None, create=True) is None


def test_requests_are_counted_by_kind_and_phone_edits_are_not() -> None:
    cal = MemoryCalendar()
    href = cal.add_foreign("dentist.ics", "dentist@example.com")
    cal.edit(href, lambda data: data.replace(b"SUMMARY:", b"SUMMARY:Moved: "))
    assert cal.requests() == [] and b"SUMMARY:Moved: Dentist" in cal.objects()[href]
    cal.collection()
    cal.listing()
    cal.get(href)
    cal.put(cal.href_for("b.ics"), EVENT, None, create=True)
    assert cal.counts() == {"PROPFIND": 2, "GET": 1, "PUT": 1}
    cal.reset_requests()
    assert cal.counts() == {}
    with pytest.raises(KeyError):
        cal.remove(cal.href_for("missing.ics"))


@pytest.mark.parametrize(
    ("method", "status", "error"),
    [
        ("PUT", 503, ServerUnreachable),
        ("DELETE", 500, RequestFailed),
        ("GET", 401, AuthFailed),
        ("REPORT", 403, InvalidSyncToken),
        ("PUT", 412, PreconditionFailed),
        ("PROPFIND", 504, ServerUnreachable),
    ],
)
def test_fail_next_raises_what_the_dav_adapter_raises(
    method: str, status: int, error: type[Exception]
) -> None:
    cal = MemoryCalendar()
    href = cal.add("a.ics", EVENT)
    etag = cal.etag(href)
    cal.fail_next(method, status)
    calls = {
        "PUT": lambda: cal.put(href, OTHER, etag, create=False),
        "DELETE": lambda: cal.delete(href, etag),
        "GET": lambda: cal.get(href),
        "PROPFIND": cal.listing,
        "REPORT": lambda: cal.changes(cal.collection().sync_token or ""),
    }
    with pytest.raises(error):
        calls[method]()
    assert cal.objects() == {href: EVENT}  # failed before changing anything
    assert cal.requests(method)[-1].status == status
    calls[method]()  # only the next one fails


def test_fail_next_landed_applies_the_write_and_loses_the_reply() -> None:
    cal = MemoryCalendar()
    href = cal.href_for("a.ics")
    cal.fail_next("PUT", 504, landed=True)
    with pytest.raises(ServerUnreachable):
        cal.put(href, EVENT, None, create=True)
    assert cal.objects() == {href: EVENT}
    with pytest.raises(ValueError, match="PATCH"):
        cal.fail_next("PATCH")


def test_parallel_writers_each_land_once() -> None:
    cal = MemoryCalendar()
    hrefs = [cal.href_for(f"{n}.ics") for n in range(400)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        etags = list(pool.map(lambda h: cal.put(h, EVENT, None, create=True), hrefs))
    assert len(set(etags)) == 400 and set(cal.listing()) == set(hrefs)
    token = cal.collection().sync_token or ""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda h: cal.delete(h, cal.etag(h)), hrefs[::2]))
    changed, deleted, _ = cal.changes(token)
    assert changed == {} and deleted == set(hrefs[::2]) and len(cal.objects()) == 200


# -- the engine against failures staged on the twin


def commitments(n: int) -> list[Commitment]:
    first = datetime(2030, 7, 1, 10, tzinfo=ZoneInfo("Europe/Athens"))
    return [
        Commitment(
            id=f"c{i}",
            title=f"Call customer {i}",
            duration=timedelta(minutes=15),
            start=first + timedelta(hours=i),
        )
        for i in range(1, n + 1)
    ]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(tmp_path / "state.sqlite3")
    yield state
    state.close()


def test_a_write_whose_reply_was_lost_is_not_duplicated(db: StateDB) -> None:
    cal = MemoryCalendar()
    items = commitments(3)
    cal.fail_next("PUT", 504, landed=True)
    result = sync_calendar(cal, db, items, progress=None)
    assert len(result.errors) == 1 and "server unavailable" in result.errors[0]
    assert len(cal.objects()) == 3
    cal.reset_requests()
    result = sync_calendar(cal, db, items, progress=None)
    assert (
        result.errors == [] and [w for w in cal.writes() if w.status < 300] == []
    )  # adopted as it is
    assert len(cal.objects()) == 3
    cal.reset_requests()
    assert sync_calendar(cal, db, items, progress=None).unchanged == 3 and cal.writes() == []


def test_a_failed_write_is_retried_by_the_next_sync(db: StateDB) -> None:
    cal = MemoryCalendar()
    items = commitments(3)
    cal.fail_next("PUT", 500)
    first = sync_calendar(cal, db, items, progress=None)
    assert (first.created, len(first.errors)) == (2, 1) and len(cal.objects()) == 2
    second = sync_calendar(cal, db, items, progress=None)
    assert (second.created, second.unchanged, second.errors) == (1, 2, []) and len(
        cal.objects()
    ) == 3


def test_an_unreachable_calendar_stops_the_sync_before_any_write(db: StateDB) -> None:
    cal = MemoryCalendar()
    cal.fail_next(None, 503)
    with pytest.raises(ServerUnreachable):
        sync_calendar(cal, db, commitments(2), progress=None)
    assert cal.writes() == [] and cal.objects() == {}


def test_many_events_are_written_in_parallel_once_each(db: StateDB) -> None:
    cal = MemoryCalendar()
    result = sync_calendar(cal, db, commitments(300), connections=8, progress=None)
    assert result.created == 300 and len(cal.requests("PUT")) == 300 and len(cal.objects()) == 300
    cal.reset_requests()
    assert sync_calendar(cal, db, commitments(300), progress=None).unchanged == 300
    assert cal.counts() == {"REPORT": 1}
