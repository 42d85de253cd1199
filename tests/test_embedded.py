"""The embedded calendar: Radicale in process when the config has no calendar.url."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from servers import free_port

from reminderd.cli import main

ROOT = Path(__file__).resolve().parent.parent


def example_copy(tmp_path: Path, calendar: str) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    text = (ROOT / "config.example.yaml").read_text()
    text = text.replace("calendar:\n  name: Follow-ups\n", calendar)
    assert calendar in text
    (tmp_path / "config.yaml").write_text(text + "state_dir: state\n")
    return tmp_path / "config.yaml"


def test_example_syncs_to_the_embedded_calendar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = example_copy(tmp_path, f"calendar:\n  name: Follow-ups\n  listen: 127.0.0.1:{port}\n")
    assert main(["--config", str(config), "sync"]) == 0
    out = capsys.readouterr().out
    assert "created 14, updated 0, deleted 0, unchanged 0" in out
    url = next(line.split()[1] for line in out.splitlines() if line.startswith("calendar: "))
    assert url.startswith(f"http://127.0.0.1:{port}/reminderd/")
    assert (tmp_path / "state" / "calendar" / "collection-root" / "reminderd").is_dir()
    assert main(["--config", str(config), "sync"]) == 0
    assert "created 0, updated 0, deleted 0, unchanged 14" in capsys.readouterr().out
    with pytest.raises(requests.ConnectionError):  # stopped again after the one-shot sync
        requests.get(url, timeout=2)


def test_embedded_refuses_open_listen_without_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_copy(
        tmp_path, f"calendar:\n  name: Follow-ups\n  listen: 0.0.0.0:{free_port()}\n"
    )
    assert main(["--config", str(config), "sync"]) == 78
    assert "requires authentication" in capsys.readouterr().err


def test_dry_run_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = example_copy(
        tmp_path, f"calendar:\n  name: Follow-ups\n  listen: 127.0.0.1:{free_port()}\n"
    )
    assert main(["--config", str(config), "sync", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "would be created 14, updated 0, deleted 0, unchanged 0" in out
        and "it would be created" in out
    )
    user_dir = tmp_path / "state" / "calendar" / "collection-root" / "reminderd"
    assert not user_dir.exists() or not any(p.is_dir() for p in user_dir.iterdir())
