"""A config in UTC syncs to the embedded calendar (it used to crash every sync, exit 70)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
from servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def sync(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REMINDERD_", "TWILIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "reminderd", "--config", str(config), "sync"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sync_with_timezone_utc_on_the_embedded_calendar(tmp_path: Path) -> None:
    when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    (tmp_path / "commitments.yaml").write_text(
        "defaults:\n  duration: 20m\n  alarms: [-1d, -10m]\n"
        "commitments:\n"
        "  - id: utc-call\n    title: Call Sam\n"
        f"    when: {when:%Y-%m-%d %H:%M}\n    purpose: Confirm the order\n",
        encoding="utf-8",
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "timezone: UTC\ncommitments:\n  - commitments.yaml\n"
        f"calendar:\n  listen: 127.0.0.1:{free_port()}\nstate_dir: {tmp_path / 'state'}\n",
        encoding="utf-8",
    )

    first = sync(config)
    assert first.returncode == 0, first.stderr
    assert "created 1, updated 0, deleted 0, unchanged 0" in first.stdout
    second = sync(config)
    assert second.returncode == 0, second.stderr
    assert "created 0, updated 0, deleted 0, unchanged 1" in second.stdout

    (stored,) = (
        p
        for p in (tmp_path / "state" / "calendar").rglob("*.ics")
        if ".Radicale.cache" not in p.parts
    )
    cal = icalendar.Calendar.from_ical(stored.read_bytes())
    (event,) = cal.walk("VEVENT")
    assert cal.walk("VTIMEZONE") == []
    assert event.decoded("DTSTART") == when and event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert event.decoded("DTEND") == when + timedelta(minutes=20)
    assert [a.decoded("TRIGGER") for a in event.walk("VALARM")] == [
        timedelta(days=-1),
        timedelta(minutes=-10),
    ]
