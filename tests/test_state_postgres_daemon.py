"""`state: postgresql://...`: the daemon and the commands on a real PostgreSQL.

Several daemons may share one database (the team tests, `test_team_daemon.py`, prove
the sends): a second daemon from another state dir (another host) runs beside the
first, and `status` lists both. The password comes from `state_password_env` and
shows nowhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pgserver import PgServer, postgres  # noqa: F401  (postgres: the session fixture)
from servers import free_port, wait_for

from reminderd.store.postgres import PostgresStore

pytestmark = [pytest.mark.server, pytest.mark.slow]


def config(tmp: Path, url: str, state_dir: str) -> Path:
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="minutes")
    (tmp / "c.yaml").write_text(
        f"commitments:\n  - {{id: c0, title: Call Alex, when: '{start}', sms: [-1h]}}\n"
    )
    path = tmp / f"config-{state_dir}.yaml"
    path.write_text(
        f"timezone: UTC\ncommitments: [c.yaml]\nstate: {url}\nstate_password_env: PG_PW\n"
        f"state_dir: {state_dir}\ncalendar: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "sms: {provider: log, to: '+30 691 234 5678'}\n"
    )
    return path


@pytest.fixture
def rig(postgres: PgServer, tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:  # noqa: F811
    url = postgres.new_database("daemon")
    env = dict(os.environ, PG_PW=postgres.password)
    yield url, tmp_path, env


def run(env: dict[str, str], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_daemons_on_one_database_and_the_commands_on_postgresql(
    rig: tuple[str, Path, dict[str, str]],
    postgres: PgServer,  # noqa: F811
) -> None:
    url, tmp, env = rig
    first = config(tmp, url, "state-a")
    log = tmp / "a.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "--config", str(first), "run"],
        cwd=tmp,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    other_log = tmp / "b.log"
    other = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "--config", str(config(tmp, url, "state-b")), "run"],
        cwd=tmp,
        env=env,
        stdout=other_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            "both daemons up",
            lambda: all("next SMS" in f.read_text() for f in (log, other_log)),
            60,
        )
        wait_for(
            "the first sync (by either: each calendar is synced by one at a time)",
            lambda: "calendar sync: created 1" in log.read_text() + other_log.read_text(),
            60,
        )
        assert other.poll() is None, other_log.read_text()
        wait_for(
            "both daemons listed",
            lambda: (
                f"PID {daemon.pid}" in run(env, tmp, "--config", str(first), "status").stdout
                and f"PID {other.pid}" in run(env, tmp, "--config", str(first), "status").stdout
            ),
            30,
            step=0.5,
        )

        status = run(env, tmp, "--config", str(first), "status")
        assert status.returncode == 0, status.stderr
        assert f"state:      {url}" in status.stdout and "1 pending" in status.stdout

        done = run(env, tmp, "--config", str(first), "done", "c0", "--note", "signed")
        assert done.returncode == 0, done.stderr
        assert "OK: Call Alex done (signed)" in done.stdout
        store = PostgresStore(url, password=postgres.password, readonly=True)
        try:
            assert store.query("SELECT commitment, kind, source FROM outcomes") == [
                ("c0", "done", "cli")
            ]
            wait_for(
                "the backup cancelled",
                lambda: store.query("SELECT status FROM sms_outbox") == [("cancelled",)],
                30,
            )
        finally:
            store.close()
        history = run(env, tmp, "--config", str(first), "log", "c0")
        assert "done (signed) on #0 from cli; file: written" in history.stdout
    finally:
        daemon.terminate()
        other.terminate()
        assert daemon.wait(timeout=60) == 0
        assert other.wait(timeout=60) == 0
    everything = (
        log.read_text() + other_log.read_text() + status.stdout + status.stderr + history.stdout
    )
    assert postgres.password not in everything
