"""Two-way, end to end: the phone answers back (SPEC "From the phone back (two-way)").

`reminderd run` as a real process on the real clock, the Twilio mock in stateful mode
(a reply is injected as the phone would send it, and the daemon polls for it every 2 s),
and one Radicale shared by the module, with a fresh calendar and state per test. Covered:
a DONE reply, a `#ref MOVE`, a reply from another number and an unknown one, a kill -9
after a reply was acted on, a person's calendar edits (a move, a delete), and the CLI's
outcomes without a daemon. Every wait has a deadline; only our own processes are stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import yaml
from servers import (
    CalendarServer,
    CalendarServers,
    DirectClient,
    TwilioMock,
    calendar_objects,
    daemon_env,
    wait_for,
)

from reminderd.ical import href_name, uid_for
from reminderd.replies.grammar import HELP_TEXT

pytestmark = [pytest.mark.server, pytest.mark.slow]

ZONE = ZoneInfo("Europe/Athens")
SID = "AC" + "0123456789abcdef" * 2
USER = "+306912345678"  # sms.to, as the provider writes it
OURS = "+15017122661"  # sms.from
REF = re.compile(r" #([a-z0-9]{2,4})$")  # what every backup SMS ends with
POLL = 2.0  # sms.reply_poll below, in seconds


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServer]:
    servers = CalendarServers(tmp_path_factory.mktemp)
    try:
        yield servers.get("radicale")  # skips with the reason if it cannot start
    finally:
        servers.stop()


def soon(seconds: float) -> str:
    """A `when` this far from now: ISO with offset, whole seconds (never a fixed date)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def instant(value: object) -> datetime:
    """A `when` read back from the YAML file, as an aware instant (Europe/Athens if naive)."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=ZONE)


def file_when(path: Path, ident: str) -> datetime:
    """The `when` of commitment `ident` as the YAML file says it now."""
    items = {c["id"]: c for c in yaml.safe_load(path.read_text())["commitments"]}
    return instant(items[ident]["when"])


def missing_lines(before: str, after: str) -> list[str]:
    """Lines of `before` not found in `after` in the same order (comments included)."""
    lines, pos, missing = after.splitlines(), 0, []
    for line in before.splitlines():
        try:
            pos = lines.index(line, pos) + 1
        except ValueError:
            missing.append(line)
    return missing


class Rig:
    """Files, a config on the shared Radicale (own calendar) and the Twilio mock, and the
    daemons started on them (by PID, killed when the test ends)."""

    def __init__(
        self,
        tmp: Path,
        server: CalendarServer,
        mock: TwilioMock | None,
        items: str,
        *,
        sync_interval: str = "1h",
    ) -> None:
        self.tmp, self.server, self.mock = tmp, server, mock
        self.file = tmp / "c.yaml"
        self.file.write_text(items)
        self.log = tmp / "daemon.log"
        self.state = tmp / "state" / "state.sqlite3"
        self.procs: list[subprocess.Popen[bytes]] = []
        sms = ""
        if mock is not None:
            sms = (
                "sms:\n  provider: twilio\n  account_sid_env: TEST_TWILIO_SID\n"
                f"  auth_token_env: TEST_TWILIO_TOKEN\n  from: '{OURS}'\n"
                f"  to: '+30 691 234 5678'\n  api_url: {mock.url}\n  rate_per_minute: 6000\n"
                f"  reply_poll: {int(POLL)}s\n"
            )
        (tmp / "config.yaml").write_text(
            "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
            f"calendar:\n  url: {server.url}\n  username: {server.username}\n"
            f"  password_env: TEST_CALDAV_PASSWORD\n  name: Two-way {uuid.uuid4().hex[:10]}\n"
            f"  sync_interval: {sync_interval}\n{sms}"
        )

    # -- processes

    def env(self) -> dict[str, str]:
        return daemon_env(
            TEST_TWILIO_SID=SID,
            TEST_TWILIO_TOKEN="test-token-not-secret",
            TEST_CALDAV_PASSWORD=self.server.password or "x",
        )

    def start(self) -> subprocess.Popen[bytes]:
        """`reminderd run`, once its first calendar sync is done."""
        mark = len(self.text())
        with open(self.log, "ab") as out:  # the daemon keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reminderd",
                    "--config",
                    str(self.tmp / "config.yaml"),
                    "run",
                ],
                cwd=self.tmp,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)

        def started() -> bool:
            return bool(self.syncs(mark)) or proc.poll() is not None

        wait_for("the daemon's first sync", started, 90)  # a loaded machine: slow, still bounded
        assert proc.poll() is None, self.text()[mark:]
        return proc

    def kill9(self) -> None:
        proc = self.procs[-1]
        os.kill(proc.pid, signal.SIGKILL)  # ours, not yet reaped: the PID is still this daemon
        proc.wait(timeout=10)

    def hup(self) -> None:
        os.kill(self.procs[-1].pid, signal.SIGHUP)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def syncs(self, after: int = 0) -> int:
        """Calendar syncs the daemon finished (logged after offset `after`)."""
        return self.text()[after:].count("calendar sync:")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reminderd", "--config", str(self.tmp / "config.yaml"), *args],
            cwd=self.tmp,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def history(self, ident: str) -> dict[str, Any]:
        done = self.cli("log", ident, "--json")
        assert done.returncode == 0, done.stderr
        (item,) = json.loads(done.stdout)["commitments"]
        return dict(item)

    # -- the state, read-only

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.state.exists():
            return []
        db = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def outcomes(self, commitment: str) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT kind, touch, source, start, written FROM outcomes WHERE commitment = ? "
            "ORDER BY at, id",
            (commitment,),
        )

    def backups(self, commitment: str) -> list[tuple[str, datetime]]:
        """(status, due) of each backup SMS of the commitment's first touch, by due time."""
        found = self.rows(
            "SELECT status, due FROM sms_outbox WHERE kind = 'backup' AND key LIKE ?",
            (f"{commitment}#0@%",),
        )
        return sorted(((s, datetime.fromisoformat(d)) for s, d in found), key=lambda r: r[1])

    # -- the calendar, read straight from the server

    def calendar_url(self) -> str:
        ((value,),) = self.rows("SELECT value FROM meta WHERE key LIKE 'calendar-url:%'")
        return str(json.loads(value))

    def phone(self) -> DirectClient:
        return DirectClient(self.calendar_url(), self.server)

    def events(self) -> dict[str, icalendar.Event]:
        """Every event in this test's calendar, by UID."""
        auth = (self.server.username, self.server.password or "") if self.server.username else None
        found = {}
        for cal in calendar_objects(self.calendar_url(), auth).values():
            for event in cal.walk("VEVENT"):  # type: ignore[attr-defined]
                found[str(event["UID"])] = event
        return found

    # -- the phone's SMS side

    def reply(self, body: str, sender: str = USER) -> None:
        assert self.mock is not None
        data = json.dumps({"from": sender, "to": OURS, "body": body, "visible_after": 0})
        request = urllib.request.Request(
            self.mock.url + "/__testbed/inbound",
            data=data.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()

    def sms(self) -> list[str]:
        """Bodies of every SMS the provider accepted, in order."""
        assert self.mock is not None
        return [f["Body"] for f in self.mock.messages()]

    def confirmations(self) -> list[str]:
        return [b for b in self.sms() if b.startswith("OK:")]

    def backup_sms(self, title: str) -> str:
        """The backup SMS for `title` once it went out (waited for)."""

        def found() -> list[str]:
            return [b for b in self.sms() if title in b and not b.startswith("OK:")]

        # ~10 s, but a send that times out (sms.timeout 15 s) is looked up 20 s later: bounded
        wait_for(f"the backup SMS for {title!r}", found, 90, 0.2)
        (body,) = found()
        return body


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()
        print(f"--- {rig.log}:\n{rig.text()[-20000:]}")  # shown by pytest if the test failed


def make(rigs: list[Rig], tmp: Path, *args: Any, **kw: Any) -> Rig:
    rig = Rig(tmp, *args, **kw)
    rigs.append(rig)
    return rig


DONE_FILE = """\
# Follow-ups for this week: comments must survive the write-back
timezone: Europe/Athens
commitments:
  # Alex asked for the call himself
  - id: alex
    title: Call Alex   # keep it short
    when: '{when}'
    purpose: Card details
    alarms: [-10m]     # one alarm is enough
    sms: [-170s]
    follow_ups: [{{after: 2d, purpose: ROI}}]  # then the case study
# end of file
"""


def test_done_reply_marks_done_everywhere(
    mock: TwilioMock, radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    mock.clear()
    original = DONE_FILE.format(when=soon(180))  # the backup SMS is due in ~10 s
    rig = make(rigs, tmp_path, radicale, mock, original)
    rig.start()
    assert set(rig.events()) == {uid_for("alex#0"), uid_for("alex#1")}
    backup = rig.backup_sms("Call Alex")
    assert REF.search(backup), backup
    rig.reply("DONE")
    deadline = time.monotonic() + 15  # everything below within ~15 s of the reply
    wait_for("the confirmation", rig.confirmations, 15, 0.2)
    wait_for("status: done in the file", lambda: "status: done" in rig.file.read_text(), 15)

    def calendar_done() -> bool:
        events = rig.events()
        touch = events.get(uid_for("alex#0"))
        return (
            touch is not None
            and str(touch["SUMMARY"]).startswith("Done: ")
            and uid_for("alex#1") not in events
        )

    wait_for("the calendar to show it done", calendar_done, max(1.0, deadline - time.monotonic()))
    touch = rig.events()[uid_for("alex#0")]
    assert touch.walk("VALARM") == [], touch.to_ical()
    text = rig.file.read_text()
    assert missing_lines(original, text) == [], text
    (item,) = yaml.safe_load(text)["commitments"]
    assert item["status"] == "done"
    pending = "SELECT key FROM sms_outbox WHERE key LIKE 'alex#%' AND status = 'pending'"
    assert rig.rows(pending) == []  # the follow-up's SMS too
    assert [r[:3] for r in rig.outcomes("alex")] == [("done", 0, "sms")]
    (result,) = rig.rows("SELECT result FROM inbound")
    assert result[0].startswith("done alex#0"), result
    time.sleep(2.5 * POLL)  # a few more polls: the reply is acted on once
    assert rig.confirmations() == ["OK: Call Alex done"]
    assert len(rig.outcomes("alex")) == 1


MOVE_FILE = """\
timezone: Europe/Athens
commitments:
  - id: bea-first
    title: Call Bea
    when: '{first}'
    alarms: [-10m]
    sms: [-168s]
  # the visit: its first SMS goes out before the call's, the second only minutes ahead
  - id: visit
    title: Visit Cy
    when: '{second}'
    alarms: [-1h, -10m]
    sms: [-592s, -5m]
"""


def test_ref_move_moves_that_touch_its_alarms_and_its_sms(
    mock: TwilioMock, radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    mock.clear()
    first, second = soon(180), soon(600)  # SMS: the visit's in ~8 s, the call's in ~12 s
    original = MOVE_FILE.format(first=first, second=second)
    rig = make(rigs, tmp_path, radicale, mock, original)
    rig.start()
    visit_sms = rig.backup_sms("Visit Cy")
    rig.backup_sms("Call Bea")  # the latest backup now: the ref must pick the visit anyway
    ref = REF.search(visit_sms)
    assert ref, visit_sms
    old = datetime.fromisoformat(second)
    day = (datetime.now(ZONE) + timedelta(days=2)).date()  # always ahead, whatever today is
    new = datetime(day.year, day.month, day.day, 15, 0, tzinfo=ZONE)
    rig.reply(f"#{ref.group(1)} MOVE {new:%a} 15:00")
    confirmed = wait_for("the confirmation", rig.confirmations, 15, 0.2)
    assert confirmed == [f"OK: Visit Cy moved to {new:%a %m-%d} 15:00"]

    def moved() -> bool:
        event = rig.events().get(uid_for("visit#0"))
        return event is not None and event.decoded("DTSTART") == new

    wait_for("the event at the new time", moved, 15)
    event = rig.events()[uid_for("visit#0")]
    triggers = sorted(a.decoded("TRIGGER") for a in event.walk("VALARM"))
    assert triggers == [timedelta(hours=-1), timedelta(minutes=-10)]  # relative, moved with it
    assert file_when(rig.file, "visit") == new
    assert file_when(rig.file, "bea-first") == datetime.fromisoformat(first)  # untouched
    assert rig.events()[uid_for("bea-first#0")].decoded("DTSTART") == datetime.fromisoformat(first)
    assert missing_lines(original, rig.file.read_text()) == [
        f"    when: '{second}'"
    ]  # only its when changed

    def replanned() -> list[tuple[str, datetime]]:
        rows = rig.backups("visit")
        return rows if ("pending", new - timedelta(minutes=5)) in rows else []

    wait_for("the SMS replanned", replanned, 15)
    rows = rig.backups("visit")
    assert ("cancelled", old - timedelta(minutes=5)) in rows, rows  # the old time's, not sent
    assert ("sent", old - timedelta(seconds=592)) in rows, rows
    assert ("pending", new - timedelta(seconds=592)) in rows, rows
    assert [r for r in rows if r[0] == "pending"] == [
        ("pending", new - timedelta(seconds=592)),
        ("pending", new - timedelta(minutes=5)),
    ]
    assert [r[:3] for r in rig.outcomes("visit")] == [("move", 0, "sms")]
    assert rig.outcomes("bea-first") == []


OTHER_FILE = """\
timezone: Europe/Athens
commitments:
  - id: c1
    title: Call Dee
    when: '{when}'
    alarms: [-10m]
    sms: [-1h]
"""


def test_another_number_changes_nothing_and_unknown_text_gets_help(
    mock: TwilioMock, radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    mock.clear()
    original = OTHER_FILE.format(when=soon(3 * 86400))
    rig = make(rigs, tmp_path, radicale, mock, original)
    rig.start()
    events = {uid: ev.to_ical() for uid, ev in rig.events().items()}
    rig.reply("c1 DONE", sender="+306900000000")  # a valid command, from the wrong phone
    wait_for(
        "the message to be looked at",
        lambda: rig.rows("SELECT result FROM inbound") == [("ignored: another number",)],
        15,
        0.2,
    )
    rig.reply("hello?")  # from sms.to, not a command
    wait_for("the help SMS", rig.sms, 15, 0.2)
    time.sleep(2.5 * POLL)  # a few more polls: nothing else comes
    (body,) = rig.sms()  # the help, and nothing for the other number's message
    assert HELP_TEXT in body, body
    assert rig.rows("SELECT count(*) FROM outcomes") == [(0,)]
    assert rig.rows("SELECT count(*) FROM inbound") == [(2,)]
    assert rig.file.read_text() == original
    item = rig.history("c1")
    assert item["outcomes"] == [] and item["status"] == "open", item
    assert item["sent"] == []  # its backup is days away; the help is no send of c1's
    assert {uid: ev.to_ical() for uid, ev in rig.events().items()} == events


def test_kill_9_after_a_reply_neither_repeats_nor_reapplies(
    mock: TwilioMock, radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    mock.clear()
    original = DONE_FILE.format(when=soon(180))
    rig = make(rigs, tmp_path, radicale, mock, original)
    rig.start()
    rig.backup_sms("Call Alex")
    rig.reply("DONE")
    wait_for("the reply recorded", lambda: rig.rows("SELECT sid FROM inbound"), 15, 0.1)
    wait_for("the confirmation sent", rig.confirmations, 15, 0.1)
    rig.kill9()
    assert rig.procs[-1].returncode == -signal.SIGKILL
    rig.start()  # the same state; the provider still lists the reply
    wait_for("status: done in the file", lambda: "status: done" in rig.file.read_text(), 15)
    time.sleep(3 * POLL)  # three more polls after the restart
    assert rig.confirmations() == ["OK: Call Alex done"]
    assert [r[:3] for r in rig.outcomes("alex")] == [("done", 0, "sms")]
    assert len(rig.rows("SELECT sid FROM inbound")) == 1
    assert rig.file.read_text().count("status: done") == 1
    assert missing_lines(original, rig.file.read_text()) == []
    assert rig.procs[-1].poll() is None, rig.text()


EDITS_FILE = """\
timezone: Europe/Athens
commitments:
{items}
"""


def test_calendar_edits_are_a_move_and_a_skip(
    radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    base = (datetime.now(ZONE) + timedelta(days=5)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    items = "\n".join(
        f"  - {{id: e{i}, title: Meet {i}, when: '{(base + timedelta(days=i)).isoformat()}', "
        "alarms: [-10m]}"
        for i in range(4)
    )
    rig = make(rigs, tmp_path, radicale, None, EDITS_FILE.format(items=items), sync_interval="5s")
    rig.start()
    phone = rig.phone()
    # the phone moves e1 by a day and two hours
    name = href_name(uid_for("e1#0"))
    cal = icalendar.Calendar.from_ical(phone.get(name))
    (event,) = cal.walk("VEVENT")
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    new = start + timedelta(days=1, hours=2)
    for prop, value in (("DTSTART", new), ("DTEND", end + timedelta(days=1, hours=2))):
        event.pop(prop)
        event.add(prop, value)
    phone.put(name, cal.to_ical())
    rig.hup()
    wait_for("the move taken", lambda: rig.outcomes("e1"), 20, 0.2)
    item = rig.history("e1")
    (outcome,) = item["outcomes"]
    assert (outcome["kind"], outcome["source"], outcome["touch"]) == ("move", "calendar", 0)
    assert datetime.fromisoformat(outcome["start"]) == new
    wait_for("the move written into the file", lambda: file_when(rig.file, "e1") == new, 15)
    # the phone deletes e2
    phone.delete(href_name(uid_for("e2#0")))
    mark = len(rig.text())
    rig.hup()
    wait_for("the skip taken", lambda: rig.outcomes("e2"), 20, 0.2)
    wait_for("two more syncs", lambda: rig.syncs(mark) >= 2, 20, 0.2)
    mark = len(rig.text())
    rig.hup()
    wait_for("one more sync", lambda: rig.syncs(mark) >= 1, 20, 0.2)
    events = rig.events()
    assert uid_for("e2#0") not in events  # not recreated
    assert events[uid_for("e1#0")].decoded("DTSTART") == new  # not moved back
    assert set(events) == {uid_for("e0#0"), uid_for("e1#0"), uid_for("e3#0")}
    skip = rig.history("e2")["outcomes"]
    assert [(o["kind"], o["source"], o["touch"]) for o in skip] == [("skip", "calendar", 0)]
    assert len(rig.history("e1")["outcomes"]) == 1  # our own rewrite is not a second move
    assert rig.outcomes("e0") == [] and rig.outcomes("e3") == []
    assert "Traceback" not in rig.text()


CLI_FILE = """\
timezone: Europe/Athens
commitments:
  # a comment that stays
  - id: cli1
    title: Call Eve
    when: '{when}'
    alarms: [-10m]
    follow_ups: [{{after: 2d, purpose: ROI}}]
"""


def test_cli_outcomes_without_a_daemon(
    radicale: CalendarServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    original = CLI_FILE.format(when=soon(2 * 86400))
    rig = make(rigs, tmp_path, radicale, None, original)
    synced = rig.cli("sync")
    assert synced.returncode == 0, synced.stderr
    assert set(rig.events()) == {uid_for("cli1#0"), uid_for("cli1#1")}
    done = rig.cli("done", "cli1", "--note", "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: Call Eve done (x)"), done.stdout
    nope = rig.cli("move", "nope", "15:00")
    assert nope.returncode == 65, (nope.stdout, nope.stderr)
    assert "no commitment with id 'nope'" in nope.stderr and "Traceback" not in nope.stderr
    (outcome,) = rig.history("cli1")["outcomes"]
    assert (outcome["kind"], outcome["source"], outcome["note"]) == ("done", "cli", "x")
    assert outcome["in_file"] == "written"
    text = rig.file.read_text()
    assert "status: done" in text and missing_lines(original, text) == []
    events = rig.events()
    assert str(events[uid_for("cli1#0")]["SUMMARY"]).startswith("Done: ")
    assert uid_for("cli1#1") not in events
