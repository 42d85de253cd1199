"""Enum values (channel, status): any case, and a CRM's own words through `values:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from reminderd.cli import main
from reminderd.config import load_config
from reminderd.model import Status
from reminderd.sources import load_sources

ROOT = Path(__file__).resolve().parent.parent


def test_a_crm_export_is_read_through_its_values(write) -> None:  # type: ignore[no-untyped-def]
    write(
        "crm.csv",
        "Subject,Due,Kind,State\n"
        "A,2026-11-30 10:00,Call,Completed\n"
        "B,2026-11-30 11:00,MEETING,deferred\n"
        "C,2026-11-30 12:00,video,Open\n"
        "D,2026-11-30 13:00,,\n",
    )
    config = write(
        "config.yaml",
        """
        timezone: UTC
        defaults: {channel: Visit}
        commitments:
          - path: crm.csv
            columns: {title: Subject, when: Due, channel: Kind, status: State}
            values:
              channel: {call: CALL, Meeting: visit}
              status: {COMPLETED: Done, Deferred: cancelled}
    """,
    )
    loaded = load_sources(load_config(config))
    assert loaded.problems == ()
    got = [(c.title, c.channel, c.status) for c in loaded.commitments]
    assert got == [
        ("A", "call", Status.DONE),
        ("B", "visit", Status.CANCELLED),
        ("C", "video", Status.OPEN),
        ("D", "visit", Status.OPEN),
    ]


def test_yaml_enum_values_in_any_case_read_as_ours(write) -> None:  # type: ignore[no-untyped-def]
    write(
        "c.yaml",
        """
        defaults: {channel: VIDEO}
        commitments:
          - {title: A, when: 2026-11-30 10:00, channel: Call, status: CANCELLED}
          - {title: B, when: 2026-11-30 11:00}
    """,
    )
    loaded = load_sources(
        load_config(write("config.yaml", "timezone: UTC\ncommitments: [c.yaml]\n"))
    )
    assert [(c.channel, c.status) for c in loaded.commitments] == [
        ("call", Status.CANCELLED),
        ("video", Status.OPEN),
    ]


def test_yaml_files_get_no_values_hint(write, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    write("c.yaml", "commitments: [{title: A, when: 2026-11-30 10:00, status: Completed}]\n")
    config = write("config.yaml", "timezone: UTC\ncommitments: [c.yaml]\n")
    assert main(["--config", str(config), "validate"]) == 65
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "c.yaml:1: status 'Completed' must be one of open, done, cancelled"


def test_two_words_that_differ_only_in_case_are_an_error(
    write, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    write("c.csv", "title,when\n")
    config = write(
        "config.yaml",
        """
        commitments:
          - path: c.csv
            values:
              status:
                Completed: done
                COMPLETED: cancelled
    """,
    )
    assert main(["--config", str(config), "validate"]) == 78
    assert capsys.readouterr().err.splitlines() == [
        f"{config}:6: values.status: 'COMPLETED' is also given as 'Completed' (line 5); "
        "words are matched without regard to case"
    ]


def test_the_example_maps_zoho_statuses() -> None:
    config = load_config(ROOT / "config.example.yaml")
    (zoho,) = [s for s in config.sources if s.path.name == "zoho-calls.csv"]
    assert zoho.values == {"status": {"scheduled": "open", "overdue": "open", "completed": "done"}}
    loaded = load_sources(config)
    assert {c.status for c in loaded.commitments if c.id.startswith("zcrm_")} == {Status.OPEN}
