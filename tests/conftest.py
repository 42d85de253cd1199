"""Shared fixtures: paths, and a helper to write a config next to commitment files."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import TwilioMock, kill, start_twilio_mock

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TESTBED = SHARED / "testbed"


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """write(name, text) -> path, dedented, inside tmp_path."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwilioMock]:
    """The Twilio mock (Prism + recorder from ../shared/testbed), once per run; tests clear it."""
    try:
        m = start_twilio_mock(tmp_path_factory.mktemp("twilio"))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Twilio mock (Prism) could not be started here: {exc}")
    yield m
    for pid in m.pids:
        kill(pid)
