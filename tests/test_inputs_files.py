"""Which files are read at all: regular files only, every missing one named, problems in order.

The config and every commitments file must be regular files: a FIFO blocks
whoever opens it until a writer comes, and `/dev/zero` never ends. Those run
in a real process with a timeout, so that a regression fails instead of
hanging the test run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reminderd.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
TIMEOUT = 20  # seconds: reading a FIFO or /dev/zero would take forever


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def config_naming(root: Path, *files: str) -> Path:
    (root / "ok.yaml").write_text("commitments: []\n", encoding="utf-8")
    path = root / "config.yaml"
    path.write_text(
        "timezone: Europe/Athens\ncommitments: [" + ", ".join(files) + "]\n", encoding="utf-8"
    )
    return path


def test_a_fifo_as_commitments_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")  # no writer ever comes: a blocking open would wait forever
    config_naming(tmp_path, "ok.yaml", "pipe.yaml")
    done = run(tmp_path, "--config", "config.yaml", "validate")
    assert done.returncode == 66, done
    assert done.stderr == "reminderd: pipe.yaml: not a regular file (a FIFO)\n"


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.yaml")
    done = run(tmp_path, "--config", "config.yaml", "validate")
    assert done.returncode == 66, done
    assert done.stderr == "reminderd: config.yaml: not a regular file (a FIFO)\n"


def test_dev_zero_is_refused_not_read_forever(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # a file name that looks right
    config_naming(tmp_path, "zero.yaml")
    done = run(tmp_path, "--config", "config.yaml", "validate")
    assert done.returncode == 66, done
    assert done.stderr == "reminderd: zero.yaml: not a regular file (a character device)\n"
    done = run(tmp_path, "--config", "/dev/zero", "validate")
    assert done.returncode == 66, done
    assert done.stderr == "reminderd: /dev/zero: not a regular file (a character device)\n"


def test_a_directory_or_a_socket_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dir.yaml").mkdir()
    monkeypatch.chdir(tmp_path)  # a short relative name: a socket path has a length limit
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock.csv")
        config_naming(tmp_path, "dir.yaml", "sock.csv")
        assert main(["--config", "config.yaml", "validate"]) == 66
    assert capsys.readouterr().err == (
        "reminderd: dir.yaml: not a regular file (a directory)\n"
        "reminderd: sock.csv: not a regular file (a socket)\n"
    )
    assert main(["--config", str(tmp_path / "dir.yaml"), "validate"]) == 66
    assert "dir.yaml: not a regular file (a directory)" in capsys.readouterr().err


def test_every_missing_file_is_named_in_config_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "bad.yaml").write_text("commitments: [{title: A}]\n", encoding="utf-8")
    config_naming(tmp_path, "first.yaml", "ok.yaml", "bad.yaml", "pipe.csv", "last.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "config.yaml", "validate"]) == 66
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "reminderd: first.yaml: file not found\n"
        "reminderd: pipe.csv: not a regular file (a FIFO)\n"
        "reminderd: last.csv: file not found\n"
    )


def test_problems_come_in_line_order_file_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the file's own keys after its list are checked after the entries; a duplicate id
    # across files is found after every file was read: the report is in line order anyway
    shutil.copyfile(CORPUS / "yaml_errors_in_line_order.yaml", tmp_path / "a.yaml")
    (tmp_path / "b.csv").write_text(
        "id,title,when\nx,Call Bob,2026-11-30 25:00\nacme,Call Carol,2026-11-30 10:00\n",
        encoding="utf-8",
    )
    (tmp_path / "c.yaml").write_text(
        "commitments:\n"
        "  - {id: acme, title: Call Dan, when: 2026-12-01 10:00}\n"
        "  - {id: y, title: Call Eve, when: 2026-12-01 10:00, status: don}\n",
        encoding="utf-8",
    )
    config_naming(tmp_path, "c.yaml", "a.yaml", "b.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "config.yaml", "validate"]) == 65
    lines = capsys.readouterr().out.splitlines()
    where = [ln.split(" ", 1)[0] for ln in lines[:-1]]
    assert where == [
        "c.yaml:3:",
        "a.yaml:4:",
        "a.yaml:6:",
        "a.yaml:7:",
        "a.yaml:8:",
        "b.csv:2:",
        "b.csv:3:",
    ], lines
    assert lines[-2] == "b.csv:3: duplicate id 'acme': also used at c.yaml:2"


def test_config_problems_come_in_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ok.yaml").write_text("commitments: []\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        "commitments:\n"
        "  - {path: ok.yaml, timezone: Mars/Base}\n"
        "sms:\n"
        "  provider: log\n"
        "  quiet_hours: '22:00'\n"
        "calendar:\n"
        "  verify_tls: maybe\n"
        "timezone: Europe/Athen\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "config.yaml", "validate"]) == 78
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == [
        "config.yaml:2:",
        "config.yaml:5:",
        "config.yaml:7:",
        "config.yaml:8:",
    ], lines
