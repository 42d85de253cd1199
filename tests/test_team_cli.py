"""`agenda`, `status` and `log` for a team (`people:`): grouped by person, or one person's
with `--person NAME`; `status` per person, and when PostgreSQL cannot be reached."""

from __future__ import annotations

import json
import socket
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reminderd.app import state_db
from reminderd.cli import main
from reminderd.clock import fixed_clock
from reminderd.config import load_config
from reminderd.outcomes import log as outcome_log
from reminderd.outcomes.model import Outcome
from reminderd.sms.outbox import Outbox
from reminderd.store.keys import last_sync_key

NOW = datetime(2030, 6, 3, 7, 0, tzinfo=UTC)  # every `when` below is built from it
CLOCK = fixed_clock(NOW)
ZONE = ZoneInfo("Europe/Athens")
ANA_PHONE, BEN_PHONE, CLEO_PHONE = "+306910000001", "+306910000002", "+306910000003"


def _when(**delta: float) -> str:
    return (NOW + timedelta(**delta)).astimezone(ZONE).strftime("%Y-%m-%d %H:%M")


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """Ana (a row of the shared CRM export and her own YAML), Ben (a row, owner given by
    his email in another case), Cleo (only something three weeks away)."""
    _write(
        tmp_path / "crm.csv",
        f"""
        Subject,Due,Task Owner
        Call ACME,{_when(days=1)},BEN@team.example
        Call Globex,{_when(days=2)},ana
        Renewal Initech,{_when(days=21)},Cleo
        """,
    )
    _write(
        tmp_path / "ana.yaml",
        f"""
        commitments:
          - id: umbrella
            title: Visit Umbrella
            when: {_when(days=3)}
        """,
    )
    return _write(
        tmp_path / "config.yaml",
        """
        timezone: Europe/Athens
        state_dir: state
        commitments:
          - path: crm.csv
            columns: {title: Subject, when: Due, owner: "Task Owner"}
        people:
          - name: Ana
            email: ana@team.example
            phone: "+30 691 000 0001"
            commitments: [ana.yaml]
          - name: Ben
            email: Ben <ben@team.example>
            phone: "+30 691 000 0002"
          - name: Cleo
            email: cleo@team.example
            phone: "+30 691 000 0003"
        sms:
          provider: log
        """,
    )


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args], clock=CLOCK)


def test_agenda_groups_a_team_by_person_in_config_order(team: Path, capsys: Any) -> None:
    assert cli(team, "agenda") == 0
    out = capsys.readouterr().out
    assert out.startswith("3 follow-ups in the next 7 days for 3 people")
    ana, ben, cleo = (out.index(f"== {name}: ") for name in ("Ana", "Ben", "Cleo"))
    assert ana < out.index("Call Globex") < out.index("Visit Umbrella") < ben
    assert ben < out.index("Call ACME") < cleo
    assert "== Ana: 2 follow-ups ==" in out and "== Ben: 1 follow-up ==" in out
    assert "== Cleo: nothing in the next 7 days ==\nnext: " in out
    assert "Renewal Initech" in out[cleo:]  # only as her next one, after the window


@pytest.mark.parametrize("name", ["ben", "BEN", "ben@TEAM.example", "Ben@team.example"])
def test_agenda_person_by_name_or_email_in_any_case(team: Path, capsys: Any, name: str) -> None:
    assert cli(team, "agenda", "--person", name) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 follow-up in the next 7 days")  # as one user sees theirs
    assert "Call ACME" in out and "Globex" not in out and "Umbrella" not in out
    assert "==" not in out


def test_agenda_json_names_each_touchs_person(team: Path, capsys: Any) -> None:
    assert cli(team, "agenda", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(t["title"], t["person"]) for t in doc["touches"]] == [
        ("Call ACME", "Ben"),
        ("Call Globex", "Ana"),
        ("Visit Umbrella", "Ana"),
    ]
    assert set(doc) == {"version", "generated_at", "days", "timezone", "touches"}
    assert doc["generated_at"] == NOW.isoformat(timespec="seconds")
    assert all(t["alerts"] for t in doc["touches"])  # computed with each person's view
    assert cli(team, "agenda", "--json", "--person", "ana@team.example") == 0
    mine = json.loads(capsys.readouterr().out)["touches"]
    assert {t["person"] for t in mine} == {"Ana"} and len(mine) == 2


def test_an_unknown_person_is_64_with_the_known_names(team: Path, capsys: Any) -> None:
    for command in ("agenda", "status", "log"):
        assert cli(team, command, "--person", "Bem") == 64
        err = capsys.readouterr().err
        assert "--person Bem: no such person (known: Ana, Ben, Cleo)" in err, command
        assert "Traceback" not in err


def test_person_without_people_is_64_and_one_user_stays_as_it_was(
    tmp_path: Path, capsys: Any
) -> None:
    _write(tmp_path / "c.yaml", f"commitments:\n  - title: Call Alex\n    when: {_when(days=1)}\n")
    config = _write(
        tmp_path / "config.yaml",
        "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n",
    )
    for command in ("agenda", "status", "log"):
        assert cli(config, command, "--person", "ana") == 64
        assert "--person ana: this config has no 'people:'" in capsys.readouterr().err
    assert cli(config, "agenda", "--json") == 0
    (touch,) = json.loads(capsys.readouterr().out)["touches"]
    assert "person" not in touch
    assert cli(config, "agenda") == 0
    out = capsys.readouterr().out
    assert out.startswith("1 follow-up in the next 7 days (times local") and "==" not in out
    assert cli(config, "log", "--json") == 0
    assert "person" not in json.loads(capsys.readouterr().out)["commitments"][0]


def _state(config: Path) -> Any:
    """The team's state (SQLite), as a sync and the daemon would leave it."""
    db = state_db(load_config(config))
    synced = (NOW - timedelta(minutes=5)).isoformat(timespec="seconds")
    db.set(last_sync_key("Ana"), {"at": synced, "result": "created 2", "errors": []})
    db.set(last_sync_key("Ben"), {"at": synced, "result": "created 1", "errors": []})
    sms = Outbox(db)
    for key, title, to, hours in (
        ("globex#0@-30m", "Call Globex", ANA_PHONE, 40),
        ("acme#0@-30m", "Call ACME", BEN_PHONE, 20),
        ("acme#0@-2h", "Call ACME early", BEN_PHONE, -2),
    ):
        due = NOW + timedelta(hours=hours)
        sms.add(key, "backup", due, due + timedelta(hours=1), {"title": title, "to": to}, NOW)
    sms.claim("acme#0@-2h", "body", NOW)
    sms.sent("acme#0@-2h", "SM0001", NOW)
    return db


def test_status_per_person_with_their_sync_recipient_and_sends(team: Path, capsys: Any) -> None:
    _state(team).close()
    assert cli(team, "status") == 0
    out = capsys.readouterr().out
    assert "last sync:  never" not in out.split("Ana:")[0]  # a team has no single last sync
    assert "sms counts: 2 pending, 1 sent" in out
    ana, ben, cleo = out.split("Ana:\n")[1], out.split("Ben:\n")[1], out.split("Cleo:\n")[1]
    assert "last sync:  2030-06-03 09:55:00+03:00 (created 2)" in ana
    assert "sms:        to +30********01" in ana
    assert "next sms:   2030-06-05 02:00:00+03:00 Call Globex (globex#0@-30m)" in ana
    assert "Call ACME" not in ana.split("Ben:")[0]
    assert "next sms:   2030-06-04 06:00:00+03:00 Call ACME (acme#0@-30m)" in ben
    assert "sent        2030-06-03 10:00:00+03:00 acme#0@-2h" in ben
    assert "last sync:  never" in cleo and "next sms" not in cleo
    assert ANA_PHONE not in out and BEN_PHONE not in out  # masked


def test_status_person_json_shows_only_theirs(team: Path, capsys: Any) -> None:
    _state(team).close()
    assert cli(team, "status", "--json", "--person", "BEN@team.example") == 0
    doc = json.loads(capsys.readouterr().out)
    (ben,) = doc["people"]
    assert ben["name"] == "Ben" and ben["sms_to"] == "+30********02"
    assert [r["key"] for r in ben["next_sms"]] == ["acme#0@-30m"]
    assert [(r["key"], r["status"], r["sid"]) for r in ben["recent_sends"]] == [
        ("acme#0@-2h", "sent", "SM0001")
    ]
    assert ben["last_sync"]["result"] == "created 1" and doc["state"] == "present"


def test_status_lists_the_daemons_when_the_state_has_them(team: Path, capsys: Any) -> None:
    db = _state(team)
    with db.transaction() as tx:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS daemons (id TEXT PRIMARY KEY, host TEXT, pid INTEGER, "
            "state TEXT, started_at TEXT, seen_at TEXT, info TEXT)"
        )
        tx.execute(
            "INSERT INTO daemons (id, host, pid, state, started_at, seen_at, info) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("d1", "sales-1", 4242, "running", NOW.isoformat(), NOW.isoformat(), '{"v": "1"}'),
        )
    db.close()
    assert cli(team, "status") == 0
    out = capsys.readouterr().out
    assert "daemons:    1 on this state\n  sales-1 PID 4242: running, started 2030-06-03" in out
    assert cli(team, "status", "--json") == 0
    (daemon,) = json.loads(capsys.readouterr().out)["daemons"]
    assert daemon["host"] == "sales-1" and daemon["pid"] == 4242


def test_status_without_a_daemons_table_skips_the_block(team: Path, capsys: Any) -> None:
    db = _state(team)
    with db.transaction() as tx:  # a state from before the table: nothing to show
        tx.execute("DROP TABLE IF EXISTS daemons")
    db.close()
    assert cli(team, "status") == 0
    out = capsys.readouterr().out
    assert "daemons:" not in out and "Ana:\n  last sync:  2030-06-03" in out
    assert cli(team, "status", "--json") == 0
    assert "daemons" not in json.loads(capsys.readouterr().out)


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("people", [True, False])
def test_status_with_postgresql_unreachable_says_so_and_exits_0(
    team: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, people: bool
) -> None:
    monkeypatch.setenv("REMINDERD_TEST_PG_PASSWORD", "not-used")
    url = f"postgresql://rem@127.0.0.1:{_closed_port()}/reminderd"
    text = team.read_text().replace(
        "state_dir: state\n",
        f"state_dir: state\nstate: {url}\nstate_password_env: REMINDERD_TEST_PG_PASSWORD\n",
    )
    if not people:
        text = text.split("people:")[0] + "sms:\n  provider: log\n  to: '+30 691 000 0009'\n"
        text = text.replace('    columns: {title: Subject, when: Due, owner: "Task Owner"}\n', "")
    team.write_text(text)
    assert cli(team, "status") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"state:      {url} unreachable (state database ")
    assert "cannot connect" in out.splitlines()[0]
    assert "sms:        log" in out and "not-used" not in out
    if people:
        assert "Ana:\n  last sync:  unknown\n  sms:        to +30********01" in out
    else:
        assert "sms:        log to +30********09" in out
    assert cli(team, "status", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "unreachable" and "cannot connect" in doc["state_error"]


def _outcome(db: Any, commitment: str, note: str) -> None:
    with db.transaction() as tx:
        outcome_log.add(
            tx, Outcome(f"o-{commitment}", commitment, 0, "done", "cli", NOW, "x", note=note)
        )


def test_log_groups_by_person_and_filters_with_person(team: Path, capsys: Any) -> None:
    db = _state(team)
    _outcome(db, "umbrella", "signed")
    _outcome(db, "gone", "left the files")
    db.close()
    assert cli(team, "log") == 0
    out = capsys.readouterr().out
    ana, ben, cleo = (out.index(f"== {n}: ") for n in ("Ana", "Ben", "Cleo"))
    orphans = out.index("== no longer in the files: 1 commitment ==")
    assert ana < out.index("umbrella: Visit Umbrella") < ben < out.index("Call ACME") < cleo
    assert cleo < out.index("Renewal Initech") < orphans < out.index("gone: ")
    assert "done (signed)" in out[ana:ben]

    assert cli(team, "log", "--person", "ANA") == 0
    out = capsys.readouterr().out
    assert "Visit Umbrella" in out and "Call Globex" in out
    assert "ACME" not in out and "gone" not in out and "==" not in out

    assert cli(team, "log", "--json") == 0
    items = json.loads(capsys.readouterr().out)["commitments"]
    assert {i["id"]: i["person"] for i in items if i["id"] in ("umbrella", "gone")} == {
        "umbrella": "Ana",
        "gone": None,
    }
    assert cli(team, "log", "umbrella", "--person", "ben") == 65
    assert "no commitment with id 'umbrella' of Ben" in capsys.readouterr().err


def test_test_sms_in_a_team_goes_to_the_named_persons_phone(team: Path, capsys: Any) -> None:
    assert main(["--config", str(team), "test-sms"], clock=CLOCK) == 64
    assert "say whose phone: --person NAME" in capsys.readouterr().err
    assert main(["--config", str(team), "test-sms", "--person", "ben"], clock=CLOCK) == 0
    assert "sent a test SMS to +30********02" in capsys.readouterr().out
    db = state_db(load_config(team))
    try:
        (payload,) = db.query("SELECT payload FROM sms_outbox WHERE kind = 'test'")[0]
    finally:
        db.close()
    assert json.loads(payload)["to"] == BEN_PHONE  # whichever daemon sends it, it goes there
