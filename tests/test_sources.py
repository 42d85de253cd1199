"""YAML and CSV sources read into the model (good inputs; bad ones are in test_corpus)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from reminderd.config import load_config
from reminderd.model import Status, touches
from reminderd.sources import load_sources

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_every_file() -> None:
    config = load_config(ROOT / "config.example.yaml")
    loaded = load_sources(config)
    assert loaded.problems == ()
    by_id = {c.id: c for c in loaded.commitments}
    acme = by_id["acme-close"]
    assert acme.contact.phone == "+302101234567"
    assert acme.alarms == (
        timedelta(days=-2),
        timedelta(hours=-1),
        timedelta(minutes=-10),
        timedelta(0),
    )
    assert acme.sms == (timedelta(hours=-1), timedelta(minutes=-5))
    assert acme.bring == ("Contract PDF", "Onboarding plan")
    assert acme.source.path == "examples/commitments.yaml" and acme.source.line == 8
    assert len(touches(acme)) == 3
    assert by_id["old-lead"].status is Status.CANCELLED
    # CSV with built-in columns: lists split on ';', empty cells take the defaults
    umbrella = by_id["umbrella-quote"]
    assert umbrella.questions == ("Is the budget approved?", "Who decides?")
    assert by_id["stark-checkin"].sms == (timedelta(minutes=-30),)
    # the Zoho export through its mapping and date format
    zoho = by_id["zcrm_3856000000412001"]
    assert zoho.title == "Discuss the annual plan"
    assert zoho.start.strftime("%Y-%m-%d %H:%M %Z") == "2026-12-01 10:30 EET"
    assert zoho.contact.company == "Olympus Foods"
    assert zoho.source.line == 2


def test_derived_ids_are_stable(write) -> None:  # type: ignore[no-untyped-def]
    write(
        "c.yaml",
        """
        commitments:
          - {title: Call Bob, when: 2026-12-01 10:00, contact: {name: Bob}}
    """,
    )
    cfg = write("config.yaml", "timezone: UTC\ncommitments: [c.yaml]\n")
    first = load_sources(load_config(cfg)).commitments[0].id
    assert (
        first.startswith("call-bob-") and first == load_sources(load_config(cfg)).commitments[0].id
    )


def test_yaml_values_are_read_as_written(write) -> None:  # type: ignore[no-untyped-def]
    # YAML 1.1 would make `no` false and an unquoted +30... phone an int
    write(
        "c.yaml",
        """
        timezone: Europe/Athens
        defaults: {alarms: [], sms: [-5m], duration: 30m}
        commitments:
          - title: no
            when: 2026-12-01 10:00
            contact: {phone: +302101234567}
            bring: Laptop
            follow_ups: [2d, {after: 1w, purpose: last}]
    """,
    )
    cfg = write("config.yaml", "commitments: [c.yaml]\n")
    (c,) = load_sources(load_config(cfg)).commitments
    assert c.title == "no" and c.contact.phone == "+302101234567" and c.bring == ("Laptop",)
    assert (
        c.alarms == () and c.sms == (timedelta(minutes=-5),) and c.duration == timedelta(minutes=30)
    )
    assert [f.after for f in c.follow_ups] == [timedelta(days=2), timedelta(weeks=1)]


def test_csv_with_bom_crlf_and_multiline_cell(write) -> None:  # type: ignore[no-untyped-def]
    write(
        "c.csv",
        '\ufefftitle,when,purpose\r\nCall A,2026-12-01 10:00,"two\r\nlines"\r\nCall B,2026-12-02 10:00,x\r\n'.encode(),
    )
    cfg = write("config.yaml", "timezone: UTC\ncommitments: [c.csv]\n")
    a, b = load_sources(load_config(cfg)).commitments
    assert a.purpose == "two\r\nlines" and (a.source.line, b.source.line) == (2, 4)


def test_csv_other_encoding_and_delimiter(write) -> None:  # type: ignore[no-untyped-def]
    write("c.csv", "Betreff;Fällig\nAnruf Müller;01.12.2026 10:00\n".encode("cp1252"))
    cfg = write(
        "config.yaml",
        """
        timezone: Europe/Berlin
        commitments:
          - path: c.csv
            encoding: cp1252
            delimiter: ";"
            columns: {title: Betreff, when: Fällig}
            date_format: "%d.%m.%Y %H:%M"
    """,
    )
    (c,) = load_sources(load_config(cfg)).commitments
    assert c.title == "Anruf Müller" and c.start.strftime("%H:%M %Z") == "10:00 CET"


def test_cache_reparses_only_changed_files(write) -> None:  # type: ignore[no-untyped-def]
    import os

    a = write("a.yaml", "commitments: [{title: A, when: 2026-12-01 10:00}]\n")
    write("b.csv", "title,when\nB,2026-12-02 10:00\n")
    cfg = load_config(write("config.yaml", "timezone: UTC\ncommitments: [a.yaml, b.csv]\n"))
    cache: dict = {}
    first = load_sources(cfg, cache)
    assert [c.title for c in first.commitments] == ["A", "B"] and len(cache) == 2
    b_entry = cache[str(cfg.sources[1].path)]
    a.write_text("commitments: [{title: A2, when: 2026-12-01 10:00}]\n")
    os.utime(a, ns=(1, 1))  # a different mtime for sure
    second = load_sources(cfg, cache)
    assert [c.title for c in second.commitments] == ["A2", "B"]
    assert cache[str(cfg.sources[1].path)] is b_entry and len(cache) == 2  # b not parsed again


def test_file_settings_after_the_list_still_apply(write) -> None:  # type: ignore[no-untyped-def]
    write(
        "c.yaml",
        """
        commitments:
          - {title: A, when: 2026-12-01 10:00}
          - {title: B, when: 2026-12-02 10:00}
        defaults: {duration: 45m}
        timezone: Asia/Tokyo
    """,
    )
    cfg = write("config.yaml", "timezone: UTC\ncommitments: [c.yaml]\n")
    loaded = load_sources(load_config(cfg))
    assert loaded.problems == ()
    assert [(c.zone_name, c.duration) for c in loaded.commitments] == [
        ("Asia/Tokyo", timedelta(minutes=45))
    ] * 2
