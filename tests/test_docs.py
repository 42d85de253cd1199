"""The README stays true to the code: config reference, commands, the two first commands."""

from __future__ import annotations

import re
from pathlib import Path

from reminderd.cli import build_parser
from reminderd.config import reference_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_config_reference_is_generated_from_the_spec() -> None:
    block = (
        README.split("<!-- config-reference", 1)[1]
        .split("-->", 1)[1]
        .split("<!-- /config-reference -->")[0]
    )
    assert block.strip() == reference_table()


def test_every_command_is_documented() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"`reminderd {name}" in README, name


def test_first_lines_give_exactly_two_commands() -> None:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None
    lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
    assert len(lines) == 2 and lines[1] == "./scripts/test"
    first = lines[0]
    # installs from the lock, writes a fresh demo (never stale), runs the daemon on it
    assert "--require-hashes -r requirements.lock" in first and "--no-deps ." in first
    assert "reminderd init demo" in first and first.endswith("--config demo/config.yaml run")
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
