"""Logging: no timestamps of our own under journald; secrets and numbers stay out."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reminderd.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("reminderd").level
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("reminderd").setLevel(saved[2])


def test_journald_lines_have_priority_and_no_timestamp(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    setup_logging()
    logging.getLogger("reminderd.test").warning("calendar unreachable")
    err = capsys.readouterr().err
    assert err == "<4>reminderd.test: calendar unreachable\n"


def test_terminal_lines_have_a_timestamp(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging()
    logging.getLogger("reminderd.test").info("hello")
    err = capsys.readouterr().err
    assert err.endswith(" INFO reminderd.test: hello\n") and err[:4].isdigit()


def test_secret_refs_never_show_their_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from reminderd.config import SecretRef

    monkeypatch.setenv("SOME_TOKEN", "s3cr3t-value")
    ref = SecretRef("sms.auth_token", "env", "SOME_TOKEN")
    assert ref.resolve() == "s3cr3t-value"
    assert "s3cr3t" not in repr(ref) and "s3cr3t" not in str(ref)


def test_errors_the_cli_prints_are_errors_in_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under journald (JOURNAL_STREAM set) why a unit stopped is PRIORITY 3, every line."""
    from reminderd.cli import main

    (tmp_path / "config.yaml").write_text("timezone: Europe/Athens\nsms: {provider: twillio}\n")
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    assert main(["--config", str(tmp_path / "config.yaml"), "validate"]) == 78
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("<3>") for line in lines)
    assert any("twillio" in line for line in lines)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert main(["--config", str(tmp_path / "config.yaml"), "validate"]) == 78
    assert not capsys.readouterr().err.startswith("<3>")  # a terminal gets plain lines
