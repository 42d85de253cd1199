"""Limits on what one field of a commitment may hold (entries.MAX_CHARS, MAX_ITEMS).

Over a limit is an error at the value's line that says how long it is and
how long it may be; the value itself is never echoed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reminderd.cli import main
from reminderd.sources.csvfile import CSV_COLUMNS
from reminderd.sources.entries import CONTACT_KEYS, ENTRY_KEYS, FOLLOW_UP_KEYS, MAX_CHARS, MAX_ITEMS

LIST_KEYS = ("agenda", "questions", "bring", "tags", "alarms", "sms")


def _entry(key: str, value: str) -> tuple[str, str]:
    """YAML of one commitment with `value` in field `key`, and how messages name the field."""
    fields = {"title": "Call Alex", "when": "2026-11-30 10:00"}
    extra, label = "", key
    if key in fields:
        fields[key] = value
    elif key in LIST_KEYS:
        extra, label = f"    {key}: [{value}]\n", f"{key} item"
    elif key in CONTACT_KEYS:
        extra = f"    contact: {{{key}: {value}}}\n"
    elif key == "after":
        extra = f"    follow_ups: [{{after: {value}}}]\n"
    elif key == "follow_ups":
        extra, label = f"    follow_ups: [{value}]\n", "follow_ups item"
    else:
        extra = f"    {key}: {value}\n"
    return f"commitments:\n  - title: {fields['title']}\n    when: {fields['when']}\n{extra}", label


def validate(
    tmp_path: Path, name: str, text: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        f"timezone: UTC\ncommitments: [{name}]\n", encoding="utf-8"
    )
    code = main(["--config", str(tmp_path / "config.yaml"), "validate"])
    return code, capsys.readouterr().out.splitlines()


def test_the_table_covers_every_text_field() -> None:
    assert set(ENTRY_KEYS) | set(CONTACT_KEYS) | set(FOLLOW_UP_KEYS) | set(CSV_COLUMNS) <= set(
        MAX_CHARS
    )
    # `email` is both the contact's address (MAX_CHARS) and the list of email alert offsets
    assert set(LIST_KEYS) | {"follow_ups", "email"} == set(MAX_ITEMS)


@pytest.mark.parametrize("key", sorted(MAX_CHARS))
def test_one_character_over_the_limit(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limit = MAX_CHARS[key]
    text, label = _entry(key, "a" * (limit + 1))
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "a" * (limit + 1) in ln)
    code, lines = validate(tmp_path, "c.yaml", text, capsys)
    assert code == 65
    assert lines[:-1] == [f"c.yaml:{line}: {label} is {limit + 1} characters; at most {limit}"]


@pytest.mark.parametrize("key", sorted(MAX_CHARS))
def test_at_the_limit_length_is_no_error(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, _ = _entry(key, "a" * MAX_CHARS[key])
    _, lines = validate(tmp_path, "c.yaml", text, capsys)
    assert not [ln for ln in lines if "characters; at most" in ln]  # (other rules may object)


@pytest.mark.parametrize("key", sorted(MAX_ITEMS))
def test_one_item_too_many(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limit = MAX_ITEMS[key]
    item = "2d" if key == "follow_ups" else "-1m" if key in ("alarms", "sms", "email") else "x"
    text = (
        "commitments:\n  - title: Call Alex\n    when: 2026-11-30 10:00\n"
        f"    {key}: [{', '.join([item] * (limit + 1))}]\n"
    )
    code, lines = validate(tmp_path, "c.yaml", text, capsys)
    assert code == 65
    assert lines[:-1] == [f"c.yaml:4: {key} has {limit + 1} items; at most {limit}"]
    text = text.replace(", ".join([item] * (limit + 1)), ", ".join([item] * limit))
    assert validate(tmp_path, "c.yaml", text, capsys)[0] == 0


def test_csv_list_cells_are_limited_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "title,when,tags\nCall Alex,2026-11-30 10:00," + ";".join(["t"] * 51) + "\n"
    code, lines = validate(tmp_path, "c.csv", text, capsys)
    assert code == 65 and lines[:-1] == ["c.csv:2: tags has 51 items; at most 50"]


@pytest.mark.parametrize("name", ["c.yaml", "c.csv"])
def test_a_19_mb_title_is_refused_quickly(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # under the 20 MB file cap, so the field's own limit must catch it
    title = "x" * 19_000_000
    if name.endswith(".csv"):
        text = f"title,when\nCall Alex,2026-11-30 10:00\n{title},2026-11-30 10:00\n"
        line = 3
    else:
        text = (
            f"commitments:\n  - title: Call Alex\n    when: 2026-11-30 10:00\n"
            f"  - title: {title}\n    when: 2026-11-30 10:00\n"
        )
        line = 4
    started = time.monotonic()
    code, lines = validate(tmp_path, name, text, capsys)
    assert time.monotonic() - started < 15
    assert code == 65
    assert lines[:-1] == [f"{name}:{line}: title is 19000000 characters; at most 200"]
    assert lines[-1].startswith("1 error in 1 file; valid so far: 1 file, 1 commitment ")
