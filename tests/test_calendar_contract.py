"""The CLI's contract, run unchanged against real Radicale, Xandikos and SabreDAV.

Each server is started on a free loopback port; each test gets a fresh
calendar (created by reminderd's own discovery) behind a recording proxy
that counts the requests of every sync. The engine's own contract runs over
these servers and the in-memory calendar in test_engine_contract.py.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import icalendar
import pytest
from servers import (
    CALENDAR_SERVERS,
    CalendarServer,
    CalendarServers,
    DirectClient,
    RecordingProxy,
    stored_calendar_url,
)

from reminderd.calendar.memory import foreign_event
from reminderd.cli import main

pytestmark = pytest.mark.server
_counter = itertools.count()


@pytest.fixture(scope="module")
def calendar_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServers]:
    servers = CalendarServers(tmp_path_factory.mktemp)
    yield servers
    servers.stop()


@pytest.fixture(scope="module", params=CALENDAR_SERVERS)
def server(request: pytest.FixtureRequest, calendar_servers: CalendarServers) -> CalendarServer:
    return calendar_servers.get(request.param)


def origin(url: str) -> str:
    """`http://127.0.0.1:1234/user/` -> `http://127.0.0.1:1234`."""
    scheme, _, host = url.split("/", 3)[:3]
    return f"{scheme}//{host}"


def commitment(i: int, **extra: str) -> str:
    lines = {
        "id": f"c{i}",
        "title": f"Call customer {i}",
        "when": f"2030-07-{10 + i:02d} 10:00",
        "contact": f"{{name: Person {i}, company: Co {i}, phone: '+30 210 123 45{i:02d}'}}",
        "purpose": f"Promised figures for deal {i}",
        "bring": "[Quote, Contract draft]",
        "questions": "[Budget approved?]",
        "next_step": "Send the contract",
        "alarms": "[-1d, -1h, -10m]",
    }
    lines.update(extra)
    return "  - " + "\n    ".join(f"{k}: {v}" for k, v in lines.items())


@dataclass
class Env:
    server: CalendarServer
    proxy: RecordingProxy
    dir: Path
    name: str

    def write(self, items: list[str]) -> None:
        (self.dir / "c.yaml").write_text(
            "timezone: Europe/Athens\ncommitments:\n" + "\n".join(items) + "\n"
        )

    def sync(self, *flags: str) -> int:
        self.proxy.reset()
        return main(["--config", str(self.dir / "config.yaml"), "sync", *flags])

    def calendar_url(self) -> str:
        return stored_calendar_url(self.dir / "state" / "state.sqlite3").replace(
            self.proxy.url, origin(self.server.url)
        )

    def phone(self) -> DirectClient:
        """A calendar app talking to the server straight (not through the proxy)."""
        return DirectClient(self.calendar_url(), self.server)

    def objects(self) -> dict[str, icalendar.Calendar]:
        """Every object in the calendar, read straight from the server (no proxy)."""
        return self.phone().objects()  # type: ignore[return-value]

    def put_foreign(self, name: str, uid: str) -> None:
        self.phone().put(name, foreign_event(uid, "Dentist (not reminderd's)"), create=True)


@pytest.fixture
def env(server: CalendarServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    proxy = RecordingProxy(origin(server.url))
    name = f"Follow-ups {next(_counter)} {uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("TEST_CALDAV_PASSWORD", server.password or "x")
    auth = (
        f"  username: {server.username}\n  password_env: TEST_CALDAV_PASSWORD\n"
        if server.username
        else ""
    )
    (tmp_path / "config.yaml").write_text(
        f"timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
        f"calendar:\n  url: {proxy.rewrite(server.url)}\n  name: {name}\n{auth}"
    )
    yield Env(server, proxy, tmp_path, name)
    proxy.close()


def test_first_sync_creates_then_nothing_to_do(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write(
        [commitment(i) for i in range(1, 6)]
        + [commitment(6, follow_ups="[{after: 2d, purpose: Chase}, {after: 5d}]")]
    )
    assert env.sync() == 0
    puts = env.proxy.requests("PUT")
    assert len(puts) == 8  # 6 first touches + 2 follow-ups
    assert all(p.headers.get("If-None-Match") == "*" for p in puts)
    assert "created 8, updated 0, deleted 0, unchanged 0" in capsys.readouterr().out

    assert env.sync() == 0
    assert env.proxy.writes() == []
    assert len(env.proxy.requests()) <= 2, (
        env.proxy.requests()
    )  # token/ctag check, no per-event requests
    assert env.proxy.requests("GET") == []
    assert "created 0, updated 0, deleted 0, unchanged 8" in capsys.readouterr().out
    assert env.sync() == 0 and env.proxy.writes() == [] and len(env.proxy.requests()) == 1


def test_one_change_rewrites_one_event_and_removal_deletes_one(env: Env) -> None:
    items = [commitment(i) for i in range(1, 6)]
    env.write(items)
    assert env.sync() == 0
    items[2] = commitment(3, purpose="'New reason: price changed'")
    env.write(items)
    assert env.sync() == 0
    (put,) = env.proxy.writes()
    assert put.method == "PUT" and put.headers.get("If-Match")
    del items[4]
    env.write(items)
    assert env.sync() == 0
    (delete,) = env.proxy.writes()
    assert delete.method == "DELETE" and delete.headers.get("If-Match")
    summaries = sorted(str(c.walk("VEVENT")[0]["SUMMARY"]) for c in env.objects().values())
    assert summaries == [f"Call customer {i}" for i in range(1, 5)]
    assert any(
        "New reason: price changed" in str(c.walk("VEVENT")[0]["DESCRIPTION"])
        for c in env.objects().values()
    )


def test_foreign_events_survive_every_sync(env: Env) -> None:
    env.write([commitment(1), commitment(2)])
    assert env.sync() == 0
    env.put_foreign("dentist.ics", "dentist-123@example.com")
    env.put_foreign("reminderd-0000000000000000000000000000dead.ics", "looks-like-ours@example.com")
    env.write([commitment(1)])
    assert env.sync() == 0
    env.write([])
    assert env.sync("--force") == 0
    uids = sorted(str(c.walk("VEVENT")[0]["UID"]) for c in env.objects().values())
    assert uids == ["dentist-123@example.com", "looks-like-ours@example.com"]


def test_broken_file_deletes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write([commitment(i) for i in range(1, 4)])
    assert env.sync() == 0
    (env.dir / "c.yaml").write_text("commitments:\n  - title: [broken\n")
    assert env.sync() == 65
    assert env.proxy.requests() == []  # not even a connection: nothing can be deleted
    assert len(env.objects()) == 3
    assert "c.yaml:2:" in capsys.readouterr().err


def test_mass_delete_needs_force(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write([commitment(i) for i in range(1, 5)])
    assert env.sync() == 0
    env.write([commitment(1)])
    assert env.sync() == 1
    assert env.proxy.writes() == []
    assert "--force" in capsys.readouterr().err
    assert env.sync("--dry-run") == 1  # the dry run says the same, and changes nothing
    assert env.sync("--force") == 0
    assert len(env.proxy.requests("DELETE")) == 3


def test_server_side_delete_and_edit_are_repaired(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write([commitment(i) for i in range(1, 4)])
    assert env.sync() == 0
    capsys.readouterr()
    objects = env.objects()
    phone = env.phone()
    hrefs = sorted(objects)
    # a calendar app deletes one event and edits another
    phone.delete(hrefs[0].rsplit("/", 1)[-1])
    edited = objects[hrefs[1]]
    edited.walk("VEVENT")[0]["SUMMARY"] = icalendar.vText("changed in a calendar app")
    phone.put(hrefs[1].rsplit("/", 1)[-1], edited.to_ical())
    assert env.sync() == 0
    out = capsys.readouterr().out
    assert "1 recreated" in out and "1 restored" in out
    assert len(env.proxy.landed()) == 2
    assert (
        len({w.path for w in env.proxy.writes()}) == 2
    )  # a 423/5xx retry repeats a write, never adds one
    summaries = sorted(str(c.walk("VEVENT")[0]["SUMMARY"]) for c in env.objects().values())
    assert summaries == ["Call customer 1", "Call customer 2", "Call customer 3"]


def test_read_back_alarms_timezone_description(env: Env) -> None:
    env.write(
        [
            commitment(
                1,
                alarms="[-2d, -1h, -10m, 0m]",
                tags="[hot, q3]",
                title='"Call Alex, ACME; close\\nBEGIN:VALARM"',
            )
        ]
    )
    assert env.sync() == 0
    (cal,) = env.objects().values()
    (event,) = cal.walk("VEVENT")
    assert event["DTSTART"].params["TZID"] == "Europe/Athens"
    assert event.decoded("DTSTART").strftime("%Y-%m-%d %H:%M %z") == "2030-07-11 10:00 +0300"
    tz = cal.walk("VTIMEZONE")
    assert tz and str(tz[0]["TZID"]) == "Europe/Athens" and tz[0].walk("DAYLIGHT")
    alarms = event.walk("VALARM")
    assert sorted(a.decoded("TRIGGER").total_seconds() for a in alarms) == [-172800, -3600, -600, 0]
    assert all(str(a["ACTION"]) == "DISPLAY" for a in alarms)
    assert str(event["SUMMARY"]) == "Call Alex, ACME; close\nBEGIN:VALARM"  # text, not a property
    description = str(event["DESCRIPTION"])
    for part in (
        "Why: Promised figures for deal 1",
        "Bring:\n- Quote\n- Contract draft",
        "Ask:\n- Budget approved?",
        "Next step: Send the contract",
        "Contact: Person 1 (Co 1)",
        "tel:+302101234501",
    ):
        assert part in description
    assert str(event["X-REMINDERD-KEY"]) == "c1#0"
    # one CATEGORIES with both values as written, or one per value (Cyrus splits them)
    held = event["CATEGORIES"]
    assert [str(c) for p in (held if isinstance(held, list) else [held]) for c in p.cats] == [
        "hot",
        "q3",
    ]


def test_done_removes_alarms_and_further_touches(env: Env) -> None:
    env.write([commitment(1, follow_ups="[2d, 4d]")])
    assert env.sync() == 0
    assert len(env.objects()) == 3
    env.write([commitment(1, follow_ups="[2d, 4d]", status="done")])
    assert env.sync("--force") == 0
    (cal,) = env.objects().values()
    (event,) = cal.walk("VEVENT")
    assert event.walk("VALARM") == [] and str(event["SUMMARY"]).startswith("Done: ")


def test_lost_state_adopts_without_duplicates(env: Env) -> None:
    env.write([commitment(i) for i in range(1, 4)])
    assert env.sync() == 0
    before = sorted(env.objects())
    (env.dir / "state" / "state.sqlite3").unlink()
    for extra in ("-wal", "-shm"):
        (env.dir / "state" / f"state.sqlite3{extra}").unlink(missing_ok=True)
    assert env.sync() == 0
    assert env.proxy.writes() == []  # found by name, verified ours, content unchanged
    assert sorted(env.objects()) == before


def test_unreachable_server_is_69(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from servers import free_port

    (tmp_path / "c.yaml").write_text("commitments: []\n")
    (tmp_path / "config.yaml").write_text(
        f"timezone: UTC\nstate_dir: state\ncommitments: [c.yaml]\n"
        f"calendar: {{url: 'http://127.0.0.1:{free_port()}/dav/'}}\n"
    )
    assert main(["--config", str(tmp_path / "config.yaml"), "sync"]) == 69
    assert "cannot reach the calendar server" in capsys.readouterr().err
