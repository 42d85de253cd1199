"""The daemon and the CLI around one state dir, as real processes on the embedded calendar:
one daemon per state, read-only status, a squatted port, a broken or vanished state,
and a reload whose new SMS settings fail. Nothing here needs ../shared."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import daemon_env, free_port, wait_for

pytestmark = [pytest.mark.slow]


def env() -> dict[str, str]:
    return daemon_env()


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Demo:
    """A config on the embedded calendar with SMS to the log, and its daemons."""

    def __init__(self, tmp: Path, sms_in: list[int] | None = None, sms_extra: str = "") -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "config.yaml"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.write_config(sms_extra)
        now = datetime.now(UTC)
        items = []
        for i, seconds in enumerate(sms_in or [3600]):
            start = now + timedelta(seconds=seconds) + timedelta(minutes=1)
            items.append(
                f"  - {{id: c{i}, title: Call customer {i}, when: '{start.strftime('%Y-%m-%dT%H:%M:%S')}Z', "
                "sms: [-1m], alarms: [-10m]}"
            )
        (tmp / "c.yaml").write_text("commitments:\n" + "\n".join(items) + "\n")

    def write_config(self, sms_extra: str = "") -> None:
        tmp_config = self.tmp / "config.yaml.tmp"
        tmp_config.write_text(
            "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
            f"calendar: {{listen: '127.0.0.1:{self.port}', sync_interval: 1h}}\n"
            f"sms:\n  provider: log\n  to: '+30 691 234 5678'\n{sms_extra}"
        )
        os.replace(tmp_config, self.config)

    def start(self, name: str = "daemon") -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "reminderd", "--config", str(self.config), "run"],
            cwd=self.tmp,
            env=env(),
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc, log

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    made: list[Demo] = []

    def make(**kw: object) -> Demo:
        d = Demo(tmp_path, **kw)  # type: ignore[arg-type]
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def outbox(tmp: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp / "state" / "state.sqlite3") as db:
        return sorted(db.execute("SELECT key, status, next_try FROM sms_outbox").fetchall())


def test_a_second_daemon_refuses_at_once_naming_the_first(demo: Callable[..., Demo]) -> None:
    d = demo(sms_in=[600, 1200])
    first, log1 = d.start("first")
    wait_for("first daemon ready", lambda: "calendar sync:" in log1.read_text(), 30)
    counts = (
        cli("--config", str(d.config), "validate", cwd=d.tmp).stdout.strip().removeprefix("ok: ")
    )
    assert f"loaded: {counts}" in log1.read_text()  # validate and the daemon count alike
    before = outbox(d.tmp)
    assert len(before) == 2
    started = time.monotonic()
    second, log2 = d.start("second")
    code = second.wait(timeout=30)
    assert code == 75, log2.read_text()
    assert time.monotonic() - started < 10
    text = log2.read_text()
    assert f"another reminderd daemon (PID {first.pid}) is running on the state dir" in text
    assert "Traceback" not in text
    assert first.poll() is None
    assert outbox(d.tmp) == before  # the first's schedule is untouched
    assert "reopened" not in log1.read_text() and "cancelled" not in log1.read_text()
    # test-sms beside the daemon: sent once, through the same outbox; the schedule stays
    done = cli("--config", str(d.config), "test-sms", cwd=d.tmp)
    assert done.returncode == 0 and "sent a test SMS to +30********78 via log" in done.stdout, (
        done.stderr
    )
    assert [r for r in outbox(d.tmp) if not r[0].startswith("test@")] == before
    # while the daemon runs, `sync` waits for its sync lock and works beside it, on its server
    done = cli("--config", str(d.config), "sync", cwd=d.tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created 0, updated 0, deleted 0, unchanged 2")
    status = cli("--config", str(d.config), "status", "--json", cwd=d.tmp)
    doc = json.loads(status.stdout)
    assert doc["daemon"] == {"running": True, "pid": first.pid, "since": doc["daemon"]["since"]}
    assert doc["daemon"]["since"].endswith(("+02:00", "+03:00"))  # local time (Europe/Athens)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    status = cli("--config", str(d.config), "status", cwd=d.tmp)
    assert "daemon:     not running" in status.stdout


def test_status_and_agenda_create_no_state(demo: Callable[..., Demo]) -> None:
    d = demo()
    done = cli("--config", str(d.config), "status", cwd=d.tmp)
    assert done.returncode == 0, done.stderr
    assert "none yet: reminderd has not run with this config" in done.stdout
    assert cli("--config", str(d.config), "agenda", cwd=d.tmp).returncode == 0
    assert not (d.tmp / "state").exists()


def test_a_squatter_on_the_embedded_port_gets_nothing(demo: Callable[..., Demo]) -> None:
    d = demo()
    received: list[bytes] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", d.port))
        squatter.listen(8)
        squatter.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = squatter.accept()
                except OSError:
                    continue
                conn.settimeout(2)
                try:
                    received.append(conn.recv(65536))
                except OSError:
                    pass
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            proc, log = d.start()
            assert proc.wait(timeout=30) == 69
            sync = cli("--config", str(d.config), "sync", cwd=d.tmp)
        finally:
            stop.set()
            thread.join(timeout=5)
    message = f"127.0.0.1:{d.port} (calendar.listen) is already taken by another process"
    assert message in log.read_text() and "Traceback" not in log.read_text()
    assert sync.returncode == 69 and message in sync.stderr
    assert not [r for r in received if r]  # not one byte: no password, no commitment


def test_a_broken_state_database_is_a_clear_error(demo: Callable[..., Demo]) -> None:
    d = demo()
    (d.tmp / "state").mkdir()
    (d.tmp / "state" / "state.sqlite3").write_bytes(b"this is not a database" * 100)
    for command in ("status", "sync", "test-sms"):
        done = cli("--config", str(d.config), command, cwd=d.tmp)
        assert done.returncode == 74, (command, done.stderr)
        assert "state database" in done.stderr and "not a reminderd state database" in done.stderr
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    proc, log = d.start()
    assert proc.wait(timeout=30) == 74
    text = log.read_text()
    assert "not a reminderd state database" in text
    assert "Traceback" not in text and "SchedulerNotRunning" not in text


def test_a_read_only_state_dir_is_a_clear_error(demo: Callable[..., Demo]) -> None:
    d = demo()
    state = d.tmp / "state"
    state.mkdir(mode=0o500)
    mounted = False
    if os.geteuid() == 0:  # root ignores permissions: a read-only mount stops root too
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(state)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(
                f"root ignores permissions and a read-only tmpfs cannot be mounted: {done.stderr}"
            )
        mounted = True
    try:
        for command in ("sync", "run"):
            done = cli("--config", str(d.config), command, cwd=d.tmp)
            assert done.returncode == 74, (command, done.stderr)
            assert done.stderr.startswith(("reminderd: state dir ", "reminderd: state database "))
            assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(state)], capture_output=True)


def test_a_deleted_state_dir_stops_the_daemon_for_a_restart(demo: Callable[..., Demo]) -> None:
    import shutil

    d = demo()
    proc, log = d.start()
    wait_for("daemon ready", lambda: "calendar sync:" in log.read_text(), 30)
    shutil.rmtree(d.tmp / "state")
    assert proc.wait(timeout=20) == 75
    assert "was deleted or replaced while running" in log.read_text()


def test_a_reload_whose_sms_secret_fails_keeps_sms_going(demo: Callable[..., Demo]) -> None:
    d = demo(sms_in=[20, 22, 24])  # three backups due 20-24 s from now
    proc, log = d.start()
    wait_for("daemon ready", lambda: "calendar sync:" in log.read_text(), 30)
    # new SMS settings whose secret cannot be resolved: the running SMS must stay in force
    d.tmp.joinpath("config.yaml").write_text(
        d.config.read_text().replace(
            "provider: log",
            "provider: twilio\n  from: '+15017122661'\n"
            "  auth_token_env: REMINDERD_TEST_UNSET_VARIABLE",
        )
    )
    wait_for("reload refused", lambda: "new SMS settings not applied" in log.read_text(), 15)
    wait_for("three SMS sent", lambda: log.read_text().count("SMS to +30") >= 3, 40)
    status = cli("--config", str(d.config), "status", "--json", cwd=d.tmp)
    errors = json.loads(status.stdout)["errors"]
    assert [e["area"] for e in errors] == ["config"]
    assert "REMINDERD_TEST_UNSET_VARIABLE" in errors[0]["message"]
    d.write_config()  # fixed: the error clears
    wait_for("reloaded", lambda: log.read_text().count("reloaded:") >= 1, 15)
    status = cli("--config", str(d.config), "status", "--json", cwd=d.tmp)
    assert json.loads(status.stdout)["errors"] == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_a_full_disk_never_blocks_the_stop(demo: Callable[..., Demo], tmp_path: Path) -> None:
    """The state on a tiny tmpfs that fills up: errors are logged without tracebacks and
    SIGTERM still stops the daemon within seconds (needs root to mount; CI runs as root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        d = demo(sms_in=[600])
        d.config.write_text(d.config.read_text().replace("state_dir: state", f"state_dir: {mnt}"))
        proc, log = d.start()
        wait_for("daemon ready", lambda: "calendar sync:" in log.read_text(), 30)
        with open(mnt / "fill", "wb") as fill:
            try:
                while True:
                    fill.write(b"\0" * 65536)
            except OSError:
                pass  # the disk is full now
        (d.tmp / "c.yaml").write_text(
            (d.tmp / "c.yaml").read_text().replace("Call customer 0", "Call again")
        )
        wait_for("the full disk noticed", lambda: "the disk is full" in log.read_text(), 20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 15
        assert "Traceback" not in log.read_text()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
