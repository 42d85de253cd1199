"""`people:` and owner routing: pure parsing, no server.

A shared CRM export is routed to people by its owner column (name or email, any
case); an owner who is not in `people` is an error at that row's line. A person's
own files are theirs. Each person's view of the config has their calendar, phone
and address.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.cli import main
from reminderd.config import load_config
from reminderd.errors import ConfigError, UsageError
from reminderd.sources import load_sources
from reminderd.team import match, person, split, view

CONFIG = """\
timezone: Europe/Athens
commitments:
  - path: crm.csv
    columns: {title: Subject, when: Due, owner: "Task Owner"}
people:
  - name: Ana Silva
    email: Ana Silva <ana@team.example>
    phone: "+30 691 000 0001"
    commitments: [ana.yaml]
  - name: Ben
    email: ben@team.example
    phone: "+30 691 000 0002"
    calendar: {url: "https://dav.example/ben/", username: ben, password_env: BEN_PW}
calendar:
  name: Follow-ups
sms:
  provider: log
email:
  host: 127.0.0.1
  security: none
  from: bot@team.example
"""

CRM = """\
Subject,Due,Task Owner
Call ACME,2027-01-12 10:00,ben@TEAM.example
Call Globex,2027-01-12 11:00,ana silva
Call Initech,2027-01-12 12:00,ANA@team.example
"""

ANA = """\
commitments:
  - id: umbrella
    title: Visit Umbrella
    when: 2027-01-13 10:00
"""


@pytest.fixture
def team(write):  # type: ignore[no-untyped-def]
    write("ana.yaml", ANA)
    write("crm.csv", CRM)
    return write("config.yaml", CONFIG)


def test_people_are_parsed_with_their_own_calendar_phone_and_files(team: Path) -> None:
    config = load_config(team)
    ana, ben = config.people
    assert (ana.name, ana.phone, ben.phone) == ("Ana Silva", "+306910000001", "+306910000002")
    assert ana.calendar.url is None and ana.calendar.name == "Follow-ups (Ana Silva)"
    assert ben.calendar.url == "https://dav.example/ben/" and ben.calendar.username == "ben"
    assert [s.shown for s in ana.sources] == ["ana.yaml"] and ben.sources == ()
    assert [s.shown for s in config.all_sources] == ["crm.csv", "ana.yaml"]
    assert config.sms is not None and config.sms.to is None  # a team's `to` is each phone


def test_a_shared_export_is_routed_by_owner_name_or_email_in_any_case(team: Path) -> None:
    config = load_config(team)
    loaded = load_sources(config)
    assert loaded.problems == ()
    owners = {c.title: c.owner for c in loaded.commitments}
    assert owners == {
        "Call ACME": "Ben",
        "Call Globex": "Ana Silva",
        "Call Initech": "Ana Silva",
        "Visit Umbrella": "Ana Silva",  # a person's own file
    }
    mine = {p.name: [c.title for c in cs] for p, cs in split(config, loaded.commitments)}
    assert mine == {
        "Ana Silva": ["Call Globex", "Call Initech", "Visit Umbrella"],
        "Ben": ["Call ACME"],
    }


def test_an_unknown_or_missing_owner_is_an_error_at_its_line(team: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("crm.csv", CRM + "Call Hooli,2027-01-12 13:00,Bern\nCall Soylent,2027-01-12 14:00,\n")
    problems = [str(p) for p in load_sources(load_config(team)).problems]
    assert problems == [
        "crm.csv:5: owner 'Bern' is not in people (known: Ana Silva, Ben) (did you mean 'Ben'?)",
        "crm.csv:6: no owner: a shared file names whose follow-up each row is "
        "(an 'owner' column or key: a person's name or email)",
    ]


def test_validate_exits_65_naming_the_row(team: Path, write, capsys) -> None:  # type: ignore[no-untyped-def]
    write("crm.csv", CRM + "Call Hooli,2027-01-12 13:00,Carol\n")
    assert main(["--config", str(team), "validate"]) == 65
    assert "crm.csv:5: owner 'Carol' is not in people" in capsys.readouterr().out


def test_each_persons_view_has_their_calendar_and_recipients(team: Path) -> None:
    config = load_config(team)
    ana, ben = config.people
    mine = view(config, ben)
    assert mine.calendar == ben.calendar and mine.person == "Ben" and mine.people == ()
    assert mine.sms is not None and mine.sms.to == "+306910000002"
    assert mine.email is not None and mine.email.to == "ben@team.example"
    assert view(config, ana).calendar.name == "Follow-ups (Ana Silva)"


def test_person_by_name_or_email_and_a_clear_error_otherwise(team: Path) -> None:
    config = load_config(team)
    assert person(config, "ANA@TEAM.EXAMPLE").name == "Ana Silva"
    assert person(config, " ben ").name == "Ben"
    with pytest.raises(UsageError, match=r"--person Bob: no such person \(known: Ana Silva, Ben\)"):
        person(config, "Bob")


@pytest.mark.parametrize(
    ("people", "message"),
    [
        (
            "  - {name: Ana, phone: '+30 691 000 0001'}\n  - {name: ana, phone: '+30 691 000 0002'}\n",
            "config.yaml:6: person 'ana' is also listed at line 5",
        ),
        ("  - {phone: '+30 691 000 0001'}\n", "config.yaml:5: this person has no 'name'"),
        ("  - {name: Ana}\n", "config.yaml:5: Ana: no 'phone' (SMS backups go to it)"),
        (
            "  - {name: Ana, phone: '+30 691 000 0001', email: not-an-address}\n",
            "config.yaml:5: Ana: 'not-an-address' is not an e-mail address",
        ),
        (
            "  - {name: Ana, phone: '12'}\n",
            "config.yaml:5: Ana: phone:",
        ),
        (
            "  - {name: Ana, phone: '+30 691 000 0001', calendar: {name: X}}\n"
            "  - {name: Ben, phone: '+30 691 000 0002', calendar: {name: X}}\n",
            "config.yaml:6: Ben: the same calendar as the person at line 5",
        ),
        (
            "  - {name: Ana, phone: '+30 691 000 0001', mobile: '+30 691 000 0003'}\n",
            "config.yaml:5: unknown key 'mobile' in a person",
        ),
    ],
)
def test_bad_people_are_config_errors_at_their_line(write, people: str, message: str) -> None:  # type: ignore[no-untyped-def]
    write("c.yaml", "commitments: []\n")
    path = write(
        "config.yaml",
        "timezone: UTC\ncommitments: [c.yaml]\nsms: {provider: log}\npeople:\n" + people,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    shown = [f"config.yaml:{p.line}: {p.message}" for p in caught.value.problems]
    assert any(line.startswith(message) for line in shown), shown


def test_without_people_nothing_is_routed(write) -> None:  # type: ignore[no-untyped-def]
    write("c.csv", "title,when,owner\nCall,2027-01-12 10:00,Anyone\n")
    path = write("config.yaml", "timezone: UTC\ncommitments: [c.csv]\n")
    config = load_config(path)
    (c,) = load_sources(config).commitments
    assert c.owner == "Anyone" and config.people == ()


@given(st.text(min_size=1, max_size=30))
def test_match_is_case_insensitive_and_never_matches_a_stranger(text: str) -> None:
    from reminderd.config import CalendarConfig, Person

    cal = CalendarConfig(
        None, None, None, "F", True, "127.0.0.1:5232", None, 4, "adopt", None, None, None, None, ""
    )  # type: ignore[arg-type]
    people = (Person("Ana", "ana@team.example", None, cal, (), 1),)
    found = match(people, text)
    folded = text.strip().casefold()
    assert (found is not None) == (folded in ("ana", "ana@team.example"))
