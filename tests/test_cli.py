"""The commands as a user runs them: exit codes, output, --json schema."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from reminderd.cli import main
from reminderd.clock import fixed_clock

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "config.example.yaml")
# The shipped examples carry fixed dates (2026-11/12): read them as of a day before those,
# so these tests pass on any day they run.
BEFORE_EXAMPLES = fixed_clock(datetime(2026, 11, 1, 8, 0, tzinfo=UTC))


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_example_in_a_real_process() -> None:
    done = run("validate", "--config", EXAMPLE)  # --config after the command
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 3 files, 11 commitments (10 open)")


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("reminderd ")
    out = run("--help").stdout
    for command in ("validate", "agenda"):
        assert command in out


def test_agenda_json_is_stable(capsys) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(["--config", EXAMPLE, "agenda", "--days", "3650", "--json"], clock=BEFORE_EXAMPLES)
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1 and doc["days"] == 3650 and doc["timezone"] == "Europe/Athens"
    keys = [t["key"] for t in doc["touches"]]
    assert "old-lead#0" not in keys  # cancelled
    acme = next(t for t in doc["touches"] if t["key"] == "acme-close#0")
    assert set(acme) == {
        "key",
        "id",
        "touch",
        "title",
        "start",
        "end",
        "timezone",
        "channel",
        "status",
        "contact",
        "purpose",
        "bring",
        "questions",
        "agenda",
        "next_step",
        "tags",
        "source",
        "alerts",
    }
    assert acme["start"] == "2026-11-30T10:00:00+02:00"
    assert [(a["kind"], a["offset"], a["at"]) for a in acme["alerts"]][:2] == [
        ("alarm", "-2d", "2026-11-28T10:00:00+02:00"),
        ("alarm", "-1h", "2026-11-30T09:00:00+02:00"),
    ]
    starts = [t["start"] for t in doc["touches"]]
    assert len(starts) >= 12


def test_agenda_text_says_what_to_bring(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["agenda", "--days", "3650", "--config", EXAMPLE], clock=BEFORE_EXAMPLES) == 0
    out = capsys.readouterr().out
    assert (
        "Call Alex at ACME, close the deal" in out
        and "bring    Contract PDF; Onboarding plan" in out
    )


def test_missing_config_is_66(tmp_path: Path) -> None:
    done = run("--config", str(tmp_path / "nope.yaml"), "validate")
    assert done.returncode == 66 and "config file not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_agenda_shows_sms_as_they_will_go_out(write, capsys) -> None:  # type: ignore[no-untyped-def]
    write(
        "c.yaml",
        "commitments:\n  - {title: Early call, when: 2030-07-10 08:00, alarms: [-1h], sms: [-1h]}\n",
    )
    off = write("off.yaml", "timezone: Europe/Athens\ncommitments: [c.yaml]\n")
    quiet = write(
        "quiet.yaml",
        "timezone: Europe/Athens\ncommitments: [c.yaml]\n"
        "sms: {provider: log, quiet_hours: '21:30-07:30'}\n",
    )
    assert (
        main(["--config", str(off), "agenda", "--days", "3650", "--json"], clock=BEFORE_EXAMPLES)
        == 0
    )
    (touch,) = json.loads(capsys.readouterr().out)["touches"]
    assert [a["kind"] for a in touch["alerts"]] == ["alarm"]  # SMS off: no SMS shown
    assert (
        main(["--config", str(quiet), "agenda", "--days", "3650", "--json"], clock=BEFORE_EXAMPLES)
        == 0
    )
    (touch,) = json.loads(capsys.readouterr().out)["touches"]
    sms = [a for a in touch["alerts"] if a["kind"] == "sms"]
    assert sms == [
        {"kind": "sms", "offset": "-1h", "at": "2030-07-10T07:30:00+03:00"}
    ]  # held to the window's end
