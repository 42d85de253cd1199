"""`reminderd init`: a starter that is never stale, never overwrites, keeps its own state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminderd.cli import main
from reminderd.clock import fixed_clock
from reminderd.starter import _wall, plan_dates, write_starter
from reminderd.timeparse import get_zone, parse_when

ZONES = ["Europe/Athens", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Etc/UTC"]
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2150, 12, 31), timezones=st.just(UTC)
)


# around every DST change of these zones too: that is where wall-clock arithmetic goes wrong
FOLDS = st.sampled_from(
    [
        datetime(2030, 10, 27, 0, 0, tzinfo=UTC),
        datetime(2030, 3, 31, 0, 0, tzinfo=UTC),
        datetime(2030, 11, 3, 5, 0, tzinfo=UTC),
        datetime(2030, 3, 10, 6, 0, tzinfo=UTC),
        datetime(2030, 4, 6, 14, 0, tzinfo=UTC),
        datetime(2030, 10, 5, 15, 0, tzinfo=UTC),
    ]
)
NEAR_CHANGES = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes), FOLDS, st.integers(-120, 120)
)


@settings(max_examples=300, deadline=None)
@given(INSTANTS | NEAR_CHANGES, st.sampled_from(ZONES))
def test_dates_are_upcoming_from_any_instant(now: datetime, zone_name: str) -> None:
    zone = get_zone(zone_name)
    first, second, third = plan_dates(now, zone)
    for planned in (first, second, third):  # what the file says is the instant planned
        assert parse_when(_wall(planned), zone) == planned
    assert timedelta(minutes=44) <= first - now <= timedelta(minutes=51)  # within the hour
    assert now < second < third
    assert second - now <= timedelta(days=4) and second.weekday() < 5 and third.weekday() < 5


def test_init_then_agenda_shows_a_touch_and_an_alert_soon(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2031, 3, 30, 0, 20, tzinfo=UTC)  # the night Europe/Athens moves its clocks
    clock = fixed_clock(now)
    assert main(["init", str(tmp_path / "demo")], clock=clock) == 0
    config = tmp_path / "demo" / "config.yaml"
    assert "state_dir: state" in config.read_text()
    assert main(["--config", str(config), "validate"], clock=clock) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "agenda", "--days", "1", "--json"], clock=clock) == 0
    touches = json.loads(capsys.readouterr().out)["touches"]
    assert touches, "no touch within 24 h"
    alerts = [datetime.fromisoformat(a["at"]) for t in touches for a in t["alerts"]]
    assert any(now < at <= now + timedelta(hours=1) for at in alerts)
    assert {a["kind"] for t in touches for a in t["alerts"]} == {"alarm", "sms"}
    assert not (tmp_path / "demo" / "state").exists()  # nothing ran yet: no state anywhere


def test_init_never_overwrites_without_force(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clock = fixed_clock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
    assert main(["init", str(tmp_path)], clock=clock) == 0
    (tmp_path / "commitments.yaml").write_text("# mine\n")
    capsys.readouterr()
    assert main(["init", str(tmp_path)], clock=clock) == 73
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "commitments.yaml").read_text() == "# mine\n"
    assert main(["init", str(tmp_path), "--force"], clock=clock) == 0
    assert "demo-acme-call" in (tmp_path / "commitments.yaml").read_text()


def test_init_defaults_to_the_xdg_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert main(["init"], clock=fixed_clock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))) == 0
    assert (tmp_path / "xdg" / "reminderd" / "config.yaml").is_file()


def test_a_fold_hour_is_written_with_its_offset(tmp_path: Path) -> None:
    # 2030-10-27 in Athens: 03:00-04:00 happens twice; 45 minutes after 00:30 UTC is its second 03:15
    written = write_starter(
        tmp_path, datetime(2030, 10, 27, 0, 30, tzinfo=UTC), zone_name="Europe/Athens"
    )
    assert "when: 2030-10-27T03:15+02:00" in written.commitments.read_text()
    assert main(["--config", str(written.config), "validate"]) == 0
