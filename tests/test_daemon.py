"""`reminderd run` end to end: a real process, a real Radicale, the Twilio mock.

Everything is waited for with deadlines (polling), never with fixed sleeps
that assume speed; every server and process stops with the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import (
    CalendarServer,
    TwilioMock,
    calendar_objects,
    daemon_env,
    free_port,
    kill,
    start_radicale,
    stored_calendar_url,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]
SID = "AC" + "0123456789abcdef" * 2


class Rig:
    """A radicale + a daemon + files, all under one tmp dir."""

    def __init__(self, tmp: Path, mock: TwilioMock | None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.radicale: subprocess.Popen[bytes] | None = None
        self.server: CalendarServer | None = None
        self.start_radicale()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mock = mock
        self.log = tmp / "daemon.log"
        sms = ""
        if mock is not None:
            sms = (
                "sms:\n  provider: twilio\n  account_sid_env: TEST_TWILIO_SID\n  auth_token_env: TEST_TWILIO_TOKEN\n"
                f"  from: '+15017122661'\n  to: '+30 691 234 5678'\n  api_url: {mock.url}\n"
                "  rate_per_minute: 6000\n  late_grace: 10m\n"
            )
        assert self.server is not None
        (tmp / "config.yaml").write_text(
            "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
            f"calendar:\n  url: {self.server.url}\n  username: alice\n  password_env: TEST_CALDAV_PASSWORD\n"
            f"  name: Daemon test\n  sync_interval: 1h\n{sms}"
        )

    def start_radicale(self) -> None:
        self.server, self.radicale = start_radicale(self.tmp / "radicale", self.port)

    def stop_radicale(self) -> None:
        assert self.radicale is not None
        kill(self.radicale.pid)
        self.radicale.wait(timeout=10)

    def write(self, items: list[str]) -> None:
        path = self.tmp / "c.yaml"
        tmp = self.tmp / "c.yaml.tmp"
        tmp.write_text("timezone: Europe/Athens\ncommitments:\n" + "\n".join(items) + "\n")
        os.replace(tmp, path)  # like an editor's atomic save

    def start(self, extra_env: dict[str, str] | None = None, wait: str = "calendar sync:") -> None:
        env = daemon_env(
            TEST_TWILIO_SID=SID,
            TEST_TWILIO_TOKEN="token",
            TEST_CALDAV_PASSWORD="secret",
            **(extra_env or {}),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reminderd", "--config", str(self.tmp / "config.yaml"), "run"],
            cwd=self.tmp,
            env=env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        self.wait_log(wait, 30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, fragment: str, timeout: float, after: int = 0) -> None:
        wait_for(f"log line {fragment!r}", lambda: fragment in self.text()[after:], timeout)

    def summaries(self) -> list[str]:
        url = stored_calendar_url(self.tmp / "state" / "state.sqlite3")
        return sorted(
            str(cal.walk("VEVENT")[0]["SUMMARY"])  # type: ignore[attr-defined]
            for cal in calendar_objects(url, ("alice", "secret")).values()
        )

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.radicale is not None:
            kill(self.radicale.pid)


def item(i: int, when: datetime | None = None, **extra: str) -> str:
    # upcoming relative to today: the test means "a future call", whatever day it runs
    when = when or (datetime.now(UTC) + timedelta(days=30 + i)).replace(
        hour=10, minute=0, second=0, microsecond=0, tzinfo=None
    )
    fields = {
        "id": f"c{i}",
        "title": f"Call customer {i}",
        "when": f"'{when.strftime('%Y-%m-%dT%H:%M:%S')}" + ("Z'" if when.tzinfo else "'"),
        "contact": "{name: Alex}",
        "sms": "[]",
    }
    fields.update(extra)
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def _rig(tmp_path: Path, mock: TwilioMock | None) -> Iterator[Rig]:
    try:
        r = Rig(tmp_path, mock)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Radicale could not be started here: {exc}")
    yield r
    r.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path, None)


@pytest.fixture
def sms_rig(tmp_path: Path, mock: TwilioMock) -> Iterator[Rig]:
    yield from _rig(tmp_path, mock)


def test_edit_reaches_the_server_within_5s_and_a_broken_edit_deletes_nothing(rig: Rig) -> None:
    rig.write([item(1), item(2)])
    rig.start()
    wait_for("two events", lambda: rig.summaries() == ["Call customer 1", "Call customer 2"], 10)
    mark = len(rig.text())
    rig.write([item(1), item(2), item(3)])
    start = time.monotonic()
    wait_for("the edit on the server", lambda: "Call customer 3" in rig.summaries(), 5)
    assert time.monotonic() - start < 5
    time.sleep(2)  # its own reads of the files must not look like edits: one edit, one reload
    assert rig.text()[mark:].count("reloaded:") == 1, rig.text()[mark:]
    mark = len(rig.text())
    (rig.tmp / "c.yaml").write_text("commitments:\n  - title: [broken\n")
    rig.wait_log("c.yaml:2: YAML syntax error", 5, after=mark)
    time.sleep(1.5)
    assert rig.summaries() == ["Call customer 1", "Call customer 2", "Call customer 3"]
    assert rig.proc is not None and rig.proc.poll() is None
    rig.write([item(1), item(2)])  # fixed again: now the removal is real
    wait_for("the removal", lambda: rig.summaries() == ["Call customer 1", "Call customer 2"], 5)
    assert rig.stop() == 0
    assert "stopped cleanly" in rig.text()


def test_a_file_broken_at_start_deletes_nothing_ever(rig: Rig) -> None:
    rig.write([item(1)])
    rig.start()
    assert rig.stop() == 0
    (rig.tmp / "c.yaml").write_text("commitments:\n  - {title: Call, when: 2030-13-45 10:00}\n")
    rig.start(wait="starting without commitments")
    assert rig.proc is not None
    rig.proc.send_signal(signal.SIGHUP)  # a reload and a sync request while nothing good is loaded
    rig.wait_log("keeping the last good commitments", 5)
    time.sleep(2)
    assert rig.summaries() == ["Call customer 1"]
    assert "calendar sync:" not in rig.text().split("starting without commitments")[1]
    rig.write([item(1), item(2)])  # fixed: now it syncs
    wait_for(
        "the fixed file on the server",
        lambda: rig.summaries() == ["Call customer 1", "Call customer 2"],
        5,
    )
    assert rig.stop() == 0


def test_sighup_reloads(rig: Rig) -> None:
    rig.write([item(1)])
    rig.start()
    mark = len(rig.text())
    assert rig.proc is not None
    rig.proc.send_signal(signal.SIGHUP)
    rig.wait_log("reloaded: 1 commitments", 5, after=mark)
    assert rig.stop(signal.SIGINT) == 0


def test_calendar_outage_of_30s_daemon_stays_up_and_converges(rig: Rig) -> None:
    rig.write([item(1)])
    rig.start()
    rig.stop_radicale()
    mark = len(rig.text())
    rig.write([item(1), item(2)])
    rig.wait_log("calendar sync failed", 10, after=mark)
    time.sleep(30)
    assert rig.proc is not None and rig.proc.poll() is None
    rig.start_radicale()
    wait_for(
        "convergence after the outage",
        lambda: rig.summaries() == ["Call customer 1", "Call customer 2"],
        60,
        step=0.5,
    )
    assert rig.stop() == 0


def test_sms_on_time_and_kill_9_restart_sends_no_duplicate(sms_rig: Rig, mock: TwilioMock) -> None:
    mock.clear()
    now = datetime.now(UTC).replace(microsecond=0)
    # SMS due 8 s and 25 s from now (one minute before items starting a minute later)
    first, second = now + timedelta(seconds=68), now + timedelta(seconds=85)
    sms_rig.write([item(1, first, sms="[-1m]"), item(2, second, sms="[-1m]")])
    sms_rig.start()

    def posts() -> list[dict[str, object]]:
        return [r for r in mock.requests() if r.get("method") == "POST" and r.get("status") == 201]

    wait_for("the first SMS", lambda: len(posts()) >= 1, 20)
    arrived = datetime.fromtimestamp(float(posts()[0]["time"]), UTC)  # type: ignore[arg-type]
    due = first - timedelta(minutes=1)
    assert timedelta(0) <= arrived - due < timedelta(seconds=2), (due, arrived)
    assert sms_rig.proc is not None
    sms_rig.stop(signal.SIGKILL)  # between the two sends
    sms_rig.start()
    wait_for("the second SMS", lambda: len(posts()) >= 2, 30)
    time.sleep(2)
    bodies = sorted(str(r["form"]["Body"]) for r in posts())  # type: ignore[index]
    assert len(bodies) == 2 and "Call customer 1" in bodies[0] and "Call customer 2" in bodies[1]
    arrived = datetime.fromtimestamp(float(posts()[1]["time"]), UTC)  # type: ignore[arg-type]
    assert timedelta(0) <= arrived - (second - timedelta(minutes=1)) < timedelta(seconds=2)
    assert sms_rig.stop() == 0


def test_notify_socket_gets_ready_and_watchdog(rig: Rig, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    rig.write([item(1)])
    rig.start({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    got: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(got)):
        got += sock.recv(4096).decode().split("\n")
    assert "READY=1" in got and "WATCHDOG=1" in got
    assert any(line.startswith("STATUS=") for line in got)
    assert rig.stop() == 0
    rest: list[str] = []
    sock.settimeout(2)
    try:
        while "STOPPING=1" not in rest:
            rest += sock.recv(4096).decode().split("\n")
    except TimeoutError:
        pass
    assert "STOPPING=1" in rest
    sock.close()


def test_a_stalled_notify_reader_never_blocks(tmp_path: Path) -> None:
    from reminderd.notify import Notifier

    path = str(tmp_path / "n.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # bound, never read: its buffer fills up
    notifier = Notifier(path)
    start = time.monotonic()
    for _ in range(20_000):
        notifier.status("x" * 200)
    assert time.monotonic() - start < 10
    sock.close()
