"""A team on one PostgreSQL: two `reminderd run` processes on one config and database.

Real parts only: PostgreSQL started by the tests (`pgserver`), Radicale with one
calendar per person, the Twilio mock in stateful mode behind a proxy that holds each
send's reply for a moment (so a send is in flight long enough to kill its daemon in
the middle of it). Every `when` is built from the real clock at the start of the test.

- 12 SMS due within 90 s across 3 people, routed from a shared CRM export by its
  owner column: each sent exactly once, to its owner's phone; each person's events in
  their own calendar only.
- Then 6 more, and `kill -9` of the daemon that is sending one of them: each still
  sent exactly once, at most 30 s late.
- PostgreSQL stopped for 20 s while sends are due: both daemons stay up, and every
  send goes out once after it returns.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from pgserver import PgServer, postgres  # noqa: F401  (postgres: the session fixture)
from servers import (
    CalendarServer,
    CalendarServers,
    TwilioMock,
    calendar_objects,
    daemon_env,
    free_port,
    wait_for,
)

from reminderd.errors import StateError
from reminderd.store.postgres import PostgresStore

pytestmark = [pytest.mark.server, pytest.mark.slow]

SID = "AC" + "0123456789abcdef" * 2
OURS = "+15017122661"
PEOPLE = (  # name, email, phone as written, phone as the provider writes it
    ("Ana", "ana@team.example", "+30 691 000 0001", "+306910000001"),
    ("Ben", "ben@team.example", "+30 691 000 0002", "+306910000002"),
    ("Cleo", "cleo@team.example", "+30 691 000 0003", "+306910000003"),
)
PHONE = {name: e164 for name, _, _, e164 in PEOPLE}
MAX_LATE = 30.0  # seconds: the failover bound


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServer]:
    servers = CalendarServers(tmp_path_factory.mktemp)
    try:
        yield servers.get("radicale")  # skips with the reason if it cannot start
    finally:
        servers.stop()


class Team:
    """A team config on one database, the shared CRM export, and the daemons (by PID)."""

    def __init__(
        self, tmp: Path, pg: PgServer, server: CalendarServer, sms_url: str, tag: str
    ) -> None:
        self.tmp, self.pg, self.server = tmp, pg, server
        self.url = pg.new_database("team")
        self.export = tmp / "crm.csv"
        self.rows: list[dict[str, str]] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.calendar_names = {name: f"{tag} {name} {uuid.uuid4().hex[:8]}" for name, *_ in PEOPLE}
        people = "".join(
            f"  - name: {name}\n    email: {email}\n    phone: '{phone}'\n"
            f"    calendar: {{url: '{server.url}', username: {server.username}, "
            f"password_env: TEST_CALDAV_PASSWORD, name: '{self.calendar_names[name]}'}}\n"
            for name, email, phone, _ in PEOPLE
        )
        (tmp / "config.yaml").write_text(
            "timezone: Europe/Athens\nstate_dir: state\n"
            f"state: {self.url}\nstate_password_env: PG_PW\n"
            "commitments:\n  - path: crm.csv\n"
            "    columns: {id: Task, title: Subject, when: Due, owner: 'Task Owner'}\n"
            f"people:\n{people}"
            "calendar:\n  sync_interval: 1h\n"
            "defaults:\n  sms: [-1m]\n  alarms: [-10m]\n"
            "sms:\n  provider: twilio\n  account_sid_env: TEST_TWILIO_SID\n"
            f"  auth_token_env: TEST_TWILIO_TOKEN\n  from: '{OURS}'\n"
            f"  api_url: {sms_url}\n  rate_per_minute: 6000\n  replies: 'off'\n"
        )
        self.write_export()

    def add(self, ident: str, owner: str, send_at: datetime) -> None:
        """One CRM task whose SMS backup (-1m) is due at `send_at`."""
        when = (send_at + timedelta(minutes=1)).astimezone(UTC).isoformat(timespec="seconds")
        self.rows.append(
            {"Task": ident, "Subject": f"Call {ident}", "Due": when, "Task Owner": owner}
        )

    def write_export(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, ["Task", "Subject", "Due", "Task Owner"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        tmp = self.export.with_suffix(".tmp")
        tmp.write_text(out.getvalue())
        os.replace(tmp, self.export)  # as an export lands: whole, at once

    def env(self) -> dict[str, str]:
        return daemon_env(
            PG_PW=self.pg.password,
            TEST_TWILIO_SID=SID,
            TEST_TWILIO_TOKEN="test-token-not-secret",
            TEST_CALDAV_PASSWORD=self.server.password or "x",
        )

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "reminderd", "--config", str(self.tmp / "config.yaml"), "run"],
            cwd=self.tmp,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def store(self) -> PostgresStore:
        return PostgresStore(self.url, password=self.pg.password, readonly=True)

    def outbox(self) -> list[tuple[Any, ...]]:
        try:
            store = self.store()
        except StateError:  # the first daemon has not made the state yet
            return []
        try:
            return store.query(
                "SELECT key, status, send_at, updated_at, claimed_by FROM sms_outbox "
                "WHERE kind = 'backup' ORDER BY send_at"
            )
        finally:
            store.close()


@pytest.fixture
def team(
    tmp_path: Path,
    postgres: PgServer,  # noqa: F811
    radicale: CalendarServer,
    mock: TwilioMock,
) -> Iterator[tuple[Team, FaultProxy, TwilioMock]]:
    mock.clear()
    proxy = FaultProxy(mock.url)
    proxy.slow_reply = 1.5  # each send is in flight this long: the provider has it by then
    rig = Team(tmp_path, postgres, radicale, proxy.url, "Team")
    try:
        yield rig, proxy, mock
    finally:
        rig.stop_all()
        proxy.close()


def titles_sent(mock: TwilioMock, idents: list[str]) -> Counter[str]:
    """How many SMS the provider accepted naming each of `idents` (`Call <id>`)."""
    counts: Counter[str] = Counter()
    for form in mock.messages():
        for ident in idents:
            if f"Call {ident}" in form["Body"]:
                counts[ident] += 1
    return counts


def recipients(mock: TwilioMock, ident: str) -> set[str]:
    return {f["To"] for f in mock.messages() if f"Call {ident}" in f["Body"]}


def test_two_daemons_send_each_sms_once_to_its_owner_and_take_over_from_a_killed_one(
    team: tuple[Team, FaultProxy, TwilioMock],
) -> None:
    rig, _, mock = team
    start = datetime.now(UTC)
    first: list[tuple[str, str]] = []  # (id, owner)
    for i in range(12):
        name = PEOPLE[i % 3][0]
        owner = name if i % 2 else PEOPLE[i % 3][1].upper()  # by name or by email, any case
        ident = f"t{i:02d}"
        rig.add(ident, owner, start + timedelta(seconds=40 + i * 4))  # due in 40..84 s
        first.append((ident, name))
    rig.write_export()
    rig.start("a")
    rig.start("b")
    ids = [i for i, _ in first]
    wait_for(
        "the 12 SMS sent",
        lambda: (
            len(titles_sent(mock, ids)) == 12
            or any(p.poll() is not None for p in rig.procs.values())
        ),
        150,
        step=0.5,
    )
    for name, proc in rig.procs.items():
        assert proc.poll() is None, rig.log(name)[-3000:]
    time.sleep(3)  # a second copy, if any, would arrive now
    counts = titles_sent(mock, ids)
    assert counts == Counter(dict.fromkeys(ids, 1)), counts
    for ident, name in first:
        assert recipients(mock, ident) == {PHONE[name]}, ident

    # each person's events are in their own calendar, and only theirs
    store = rig.store()
    try:
        urls = {
            key.split("|")[1]: str(store.get(key))
            for (key,) in store.query("SELECT key FROM meta WHERE key LIKE 'calendar-url:%'")
        }
    finally:
        store.close()
    auth = (rig.server.username or "", rig.server.password or "")
    for name, *_ in PEOPLE:
        events = calendar_objects(urls[rig.calendar_names[name]], auth)
        summaries = {
            str(component["SUMMARY"])
            for cal in events.values()
            for component in cal.walk("VEVENT")  # type: ignore[attr-defined]
        }
        assert summaries == {f"Call {i}" for i, owner in first if owner == name}, name

    # 6 more; the daemon sending one of them is killed in the middle of that send
    later = datetime.now(UTC)
    more = []
    for i in range(6):
        ident = f"u{i:02d}"
        name = PEOPLE[i % 3][0]
        rig.add(ident, name, later + timedelta(seconds=30 + i * 5))  # due in 30..55 s
        more.append((ident, name))
    rig.write_export()
    pids = {str(p.pid): n for n, p in rig.procs.items()}
    killed = None
    deadline = time.monotonic() + 90
    while killed is None and time.monotonic() < deadline:
        for key, status, *_, claimed_by in rig.outbox():
            if status == "sending" and key.startswith("u") and claimed_by:
                pid = claimed_by.split(":")[1]
                os.kill(int(pid), signal.SIGKILL)
                killed = (pids[pid], key)
                break
        time.sleep(0.05)
    assert killed is not None, "no send of the 6 was seen in flight"
    rig.procs[killed[0]].wait(timeout=10)
    survivor = next(n for n in rig.procs if n != killed[0])
    more_ids = [i for i, _ in more]
    wait_for("the 6 SMS sent", lambda: len(titles_sent(mock, more_ids)) == 6, 120, step=0.5)
    wait_for(
        "every row recorded",
        lambda: all(r[1] == "sent" for r in rig.outbox() if r[0].startswith("u")),
        60,
        step=0.5,
    )
    time.sleep(3)
    counts = titles_sent(mock, more_ids)
    assert counts == Counter(dict.fromkeys(more_ids, 1)), (counts, killed)
    for ident, name in more:
        assert recipients(mock, ident) == {PHONE[name]}, ident
    lateness = {
        key: (datetime.fromisoformat(updated) - datetime.fromisoformat(send_at)).total_seconds()
        for key, status, send_at, updated, _ in rig.outbox()
        if key.startswith("u")
    }
    print(f"\nkilled {killed}; lateness of the 6 (s): {sorted(lateness.values())}")
    assert max(lateness.values()) <= MAX_LATE, lateness
    assert rig.procs[survivor].poll() is None, rig.log(survivor)[-3000:]


def test_postgresql_stopped_for_20_s_while_sends_are_due(
    team: tuple[Team, FaultProxy, TwilioMock],
    postgres: PgServer,  # noqa: F811
) -> None:
    rig, proxy, mock = team
    proxy.slow_reply = 0.0
    start = datetime.now(UTC)
    ids = []
    for i in range(6):
        ident = f"o{i:02d}"
        rig.add(ident, PEOPLE[i % 3][0], start + timedelta(seconds=40 + i * 3))  # due in 40..55 s
        ids.append(ident)
    rig.write_export()
    rig.start("a")
    rig.start("b")
    wait_for(
        "both daemons planned the sends",
        lambda: len(rig.outbox()) == 6 and all("next SMS" in rig.log(n) for n in "ab"),
        60,
        step=0.5,
    )
    wait_until = start + timedelta(seconds=36)
    time.sleep(max(0.0, (wait_until - datetime.now(UTC)).total_seconds()))
    postgres.stop()
    try:
        time.sleep(20)  # every send comes due while the database is away
        assert titles_sent(mock, ids) == Counter(), "nothing can be claimed without the database"
        for name, proc in rig.procs.items():
            assert proc.poll() is None, rig.log(name)[-3000:]
    finally:
        postgres.start()
    wait_for("the 6 SMS sent", lambda: len(titles_sent(mock, ids)) == 6, 120, step=0.5)
    wait_for(
        "every row recorded",
        lambda: all(r[1] == "sent" for r in rig.outbox()),
        60,
        step=0.5,
    )
    time.sleep(3)
    assert titles_sent(mock, ids) == Counter(dict.fromkeys(ids, 1))
    for ident in ids:
        owner = PEOPLE[int(ident[1:]) % 3][0]
        assert recipients(mock, ident) == {PHONE[owner]}
    for name, proc in rig.procs.items():
        assert proc.poll() is None, rig.log(name)[-3000:]
        assert "state database" in rig.log(name)  # the outage was seen and said
    everything = rig.log("a") + rig.log("b")
    assert postgres.password not in everything


def test_daemons_on_one_host_share_the_embedded_calendar_and_one_takes_it_over(
    tmp_path: Path,
    postgres: PgServer,  # noqa: F811
) -> None:
    """People without a calendar URL get their own calendar on the embedded server; two
    daemons of one database on one host share it (one serves), and when the one that
    serves is killed, the other serves it within a few state checks."""
    url = postgres.new_database("embedded")
    when = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="minutes")
    (tmp_path / "a.yaml").write_text(
        f"commitments:\n  - {{id: a1, title: Call A, when: '{when}'}}\n"
    )
    (tmp_path / "config.yaml").write_text(
        f"timezone: UTC\nstate: {url}\nstate_password_env: PG_PW\nstate_dir: state\n"
        f"calendar: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "people:\n  - {name: Ana, commitments: [a.yaml]}\n  - {name: Ben}\n"
    )
    env = daemon_env(PG_PW=postgres.password)
    logs = {n: tmp_path / f"{n}.log" for n in "ab"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in "ab":
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "reminderd", "--config", "config.yaml", "run"],
                cwd=tmp_path,
                env=env,
                stdout=logs[name].open("ab"),
                stderr=subprocess.STDOUT,
            )
            wait_for(
                f"daemon {name} synced", lambda n=name: "sync of Ben" in logs[n].read_text(), 60
            )
        assert "served by another daemon here" in logs["b"].read_text()
        assert "Follow-ups (Ana)" in logs["a"].read_text() + logs["b"].read_text()
        os.kill(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait(10)
        wait_for(
            "the embedded calendar served by the other daemon",
            lambda: "is gone; served here now" in logs["b"].read_text(),
            30,
        )
        synced = subprocess.run(
            [sys.executable, "-m", "reminderd", "--config", "config.yaml", "sync"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert synced.returncode == 0, synced.stderr
        assert "Ana: created 0, updated 0, deleted 0, unchanged 1" in synced.stdout
        assert procs["b"].poll() is None, logs["b"].read_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
