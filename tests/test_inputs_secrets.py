"""Secrets in the config: `*_file` relative to the config's folder, `*_command` checked early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reminderd.cli import main
from reminderd.config import SecretRef, load_config
from reminderd.errors import SecretError

TWILIO_CONFIG = """\
timezone: Europe/Athens
commitments: [c.yaml]
state_dir: state
sms:
  provider: twilio
  account_sid_file: secrets/sid
  {token}
  from: "+15017122661"
  to: "+306912345678"
  api_url: http://127.0.0.1:9
  timeout: 2s
"""


def _setup(root: Path, token: str = "auth_token_file: secrets/token") -> Path:
    (root / "cfg" / "secrets").mkdir(parents=True)
    (root / "cfg" / "secrets" / "sid").write_text("AC0123\n", encoding="utf-8")
    (root / "cfg" / "secrets" / "token").write_text("t0ken\n", encoding="utf-8")
    (root / "cfg" / "c.yaml").write_text("commitments: []\n", encoding="utf-8")
    (root / "cfg" / "config.yaml").write_text(TWILIO_CONFIG.format(token=token), encoding="utf-8")
    (root / "elsewhere").mkdir()
    return root / "cfg" / "config.yaml"


def test_relative_secret_files_are_read_from_the_config_folder(tmp_path: Path) -> None:
    # run from another folder: the secrets are found, so the send itself is tried
    # (and fails: nothing listens on port 9), instead of a config error (78)
    _setup(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "reminderd", "--config", "../cfg/config.yaml", "test-sms"],
        cwd=tmp_path / "elsewhere",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "cannot read" not in done.stderr, done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "test SMS to +30********78 failed" in done.stderr


def test_a_relative_secret_file_does_not_follow_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_setup(tmp_path))
    monkeypatch.chdir(tmp_path / "elsewhere")  # as a daemon that changed its directory
    sms = config.sms
    assert sms is not None
    assert sms is not None and sms.account_sid is not None and sms.auth_token is not None
    assert sms.account_sid.resolve() == "AC0123" and sms.auth_token.resolve() == "t0ken"


def test_a_command_with_an_unclosed_quote_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path, token='auth_token_command: "pass show \'twilio"')
    assert main(["--config", str(config), "validate"]) == 78
    assert capsys.readouterr().err == (
        f"{config}:7: sms.auth_token_command: the command has an unclosed quote\n"
    )


def test_a_command_that_is_not_there_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path, token="auth_token_command: reminderd-no-such-command --field token")
    assert main(["--config", str(config), "validate"]) == 0  # secrets are read when used
    capsys.readouterr()
    assert main(["--config", str(config), "test-sms"]) == 78
    assert capsys.readouterr().err == (
        "reminderd: sms.auth_token_command: command 'reminderd-no-such-command' not found "
        "(give its full path, or check PATH)\n"
    )


def test_secret_command_errors_say_which_option() -> None:
    with pytest.raises(
        SecretError, match=r"^calendar\.password_command: the command has an unclosed quote$"
    ):
        SecretRef("calendar.password", "command", "pass show 'x").resolve()
    with pytest.raises(SecretError, match=r"^calendar\.password_command: '/' is not executable$"):
        SecretRef("calendar.password", "command", "/").resolve()


def test_a_fifo_or_device_as_a_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe")
    for where in (str(tmp_path / "pipe"), "/dev/zero"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from reminderd.config import SecretRef\n"
                f"SecretRef('calendar.password', 'file', {where!r}).resolve()",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )  # a hang fails here instead of blocking
        assert done.returncode == 1 and "SecretError: calendar.password: " in done.stderr
        assert "not a regular file" in done.stderr
