"""Email alerts end to end: `reminderd run` as a real process against a real SMTP server
(aiosmtpd on loopback, `tests/smtpserver.py`), on the real clock.

Each alert and the digest arrive once and on time with their full content; a 4xx is
retried, a 5xx is not and shows in `status`; a `kill -9` after a recorded send does not
repeat it, one in the middle of a send repeats it once; the SMTP password shows nowhere;
a reload changes where the next alert goes.

Times are built from `datetime.now(UTC)` when a test runs. The config zone is UTC, or,
in the last hours of a UTC day, UTC-12 (`Etc/GMT+12`), so that what a test plans falls
on one local day. Two daemons that wait for a minute (`main`: two alerts and the digest;
`moved`: a digest after a change of zone) start with the module and run beside the other
tests; their tests come last, once their times have passed.
"""

from __future__ import annotations

import base64
import email
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from servers import daemon_env, free_port, wait_for
from smtpserver import USERS, SmtpTestServer, smtp_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

LOGIN, PASSWORD = next(iter(USERS.items()))
WRONG = "Wr0ng-but-secret-too-9f3c1e"  # a password the server refuses: never shown either
ON_TIME = 10.0  # seconds an email may arrive after its time
EARLY = 1.0  # ... and before it: one clock, but the server's stamp and ours may round
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# -- the server side: what arrived, and when


@dataclass(frozen=True)
class Mail:
    at: float  # time.time() when the server accepted it (its final 250)
    rcpt: tuple[str, ...]
    login: str | None  # who authenticated, if anyone
    raw: bytes
    msg: EmailMessage

    @property
    def mid(self) -> str:
        return str(self.msg["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.msg["Subject"])

    def text(self) -> str:
        part = self.msg.get_body(("plain",))
        assert part is not None, self.raw[:500]
        return str(part.get_content()).replace("\r\n", "\n")

    def html(self) -> str:
        part = self.msg.get_body(("html",))
        assert part is not None, self.raw[:500]
        return str(part.get_content()).replace("\r\n", "\n")


class Inbox:
    """A running test server whose accepted messages are kept with their arrival time."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.port = server.port
        self.handler = server.handler
        self._mails: list[Mail] = []
        self._lock = threading.Lock()
        original = server.handler.handle_DATA

        async def handle_data(srv: Any, session: Any, envelope: Any) -> str:
            reply = await original(srv, session, envelope)
            if reply.startswith("250"):
                raw = bytes(envelope.original_content or envelope.content or b"")
                msg = email.message_from_bytes(raw, policy=policy.default)
                assert isinstance(msg, EmailMessage)
                login = session.auth_data if session.authenticated else None
                with self._lock:
                    self._mails.append(Mail(time.time(), tuple(envelope.rcpt_tos), login, raw, msg))
            return reply

        # aiosmtpd looks the hooks up on the handler object for each new connection
        server.handler.handle_DATA = handle_data  # type: ignore[method-assign]

    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def by_id(self, mid: str) -> list[Mail]:
        return [m for m in self.mails() if m.mid == mid]


@contextmanager
def inbox() -> Iterator[Inbox]:
    with smtp_server() as server:  # skips with the reason when aiosmtpd cannot start
        yield Inbox(server)


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    with inbox() as box:
        yield box


# -- the daemon side


def stamp(moment: datetime) -> str:
    """ISO 8601 with its offset, to the second, as a commitment's `when`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def key_of(touch: str, offset: str, start: datetime) -> str:
    """The outbox key SPEC shows: `acme#0@-2m55s@20261130T114147Z`."""
    return f"{touch}@{offset}@{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def label(moment: datetime) -> str:
    """`Mon 30 Nov 11:41`, in English whatever the locale."""
    return f"{DAYS[moment.weekday()]} {moment.day:02d} {MONTHS[moment.month - 1]} {moment:%H:%M}"


def simple(cid: str, title: str, start: datetime, offset: str) -> str:
    """One commitment, as an item of a `commitments:` list."""
    return f"  - {{id: {cid}, title: {title}, when: '{stamp(start)}', email: [{offset}]}}\n"


def pick_zone(now: datetime) -> str:
    """UTC, but UTC-12 in the last three hours of a UTC day: a test's touches (up to two
    hours ahead) and its digest then fall on one local day."""
    return "UTC" if now.astimezone(UTC).hour < 21 else "Etc/GMT+12"


def soon(seconds: float) -> datetime:
    """A whole second `seconds` from now (a `when` is written to the second)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds + 1)


class Run:
    """One config on one state dir (embedded calendar, email to a test server), its daemons."""

    def __init__(
        self,
        tmp: Path,
        smtp_port: int,
        *,
        zone: str = "UTC",
        to: str = "rep@example.com",
        extra: str = "",
        secrets: dict[str, str] | None = None,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.smtp_port = smtp_port
        self.zone = zone
        self.calendar_port = free_port()
        self.config = tmp / "config.yaml"
        self.secrets = secrets or {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.write_config(to=to, extra=extra)

    def _write(self, name: str, text: str) -> None:
        """Whole at once (write, then rename): a reload never reads half a file."""
        part = self.tmp / (name + ".part")
        part.write_text(text, encoding="utf-8")
        os.replace(part, self.tmp / name)

    def write_config(self, *, to: str, extra: str = "") -> None:
        self._write(
            "config.yaml",
            f"timezone: {self.zone}\nstate_dir: state\ncommitments: [c.yaml]\n"
            f"calendar: {{listen: '127.0.0.1:{self.calendar_port}', sync_interval: 1h}}\n"
            f"email:\n  host: 127.0.0.1\n  port: {self.smtp_port}\n  security: none\n"
            f"  from: reminderd@example.com\n  to: {to}\n  timeout: 5s\n{extra}",
        )

    def write_commitments(self, text: str) -> None:
        self._write("c.yaml", text)

    # -- processes

    def start(self, *, verbose: bool = False) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        cmd = [sys.executable, "-m", "reminderd", *(["-v"] if verbose else [])]
        with open(self.tmp / f"d{n}.out", "wb") as out, open(self.tmp / f"d{n}.err", "wb") as err:
            proc = subprocess.Popen(
                [*cmd, "--config", str(self.config), "run"],
                cwd=self.tmp,
                env=daemon_env(**self.secrets),
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def output(self, n: int = -1) -> tuple[str, str]:
        """A daemon's stdout and stderr so far (the last one started by default)."""
        n = n % len(self.procs)
        return tuple(  # type: ignore[return-value]
            (self.tmp / f"d{n}.{s}").read_text(errors="replace") for s in ("out", "err")
        )

    def log(self, n: int = -1) -> str:
        return "".join(self.output(n))

    def wait_log(self, text: str, timeout: float = 30, count: int = 1) -> str:
        proc = self.procs[-1]

        def seen() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({proc.returncode}):\n{self.log()}")
            return self.log().count(text) >= count

        wait_for(f"{text!r} (x{count}) in the daemon's log", seen, timeout)
        return self.log()

    def reload(self) -> None:
        """SIGHUP, and wait until it is done (a file watcher's reload may come too)."""
        before = self.log().count("reloaded:")
        self.procs[-1].send_signal(signal.SIGHUP)
        self.wait_log("reloaded:", count=before + 1)

    def stop(self) -> int:
        proc = self.procs[-1]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    # -- the state and the CLI

    def outbox(self) -> dict[str, dict[str, Any]]:
        """Every email row by key; {} before the daemon has made its state."""
        path = self.tmp / "state" / "state.sqlite3"
        if not path.exists():  # never let sqlite3 create it first
            return {}
        with closing(sqlite3.connect(path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(
                    "SELECT key, kind, status, attempts, ambiguous, sid, error, due, send_at "
                    "FROM email_outbox"
                ).fetchall()
            except sqlite3.OperationalError as exc:  # created, but no tables yet
                if "no such table" not in str(exc):
                    raise
                return {}
        return {r["key"]: dict(r) for r in rows}

    def wait_status(self, key: str, *statuses: str, timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            proc = self.procs[-1]
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({proc.returncode}):\n{self.log()}")
            row = self.outbox().get(key)
            return row if row is not None and row["status"] in statuses else None

        found = wait_for(f"{key} {'|'.join(statuses)}", reached, timeout, step=0.05)
        assert isinstance(found, dict)
        return found

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reminderd", "--config", str(self.config), *args],
            cwd=self.tmp,
            env=daemon_env(**self.secrets),
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    made: list[Run] = []

    def make(smtp_port: int, **kw: Any) -> Run:
        run = Run(tmp_path / f"run{len(made)}", smtp_port, **kw)
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


def until(moment: datetime) -> None:
    """Sleep until `moment` (bounded: never more than five minutes)."""
    left = (moment - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(min(left, 300))


# -- the shared daemon: two alerts and the digest, checked at the end of the module


@dataclass
class Main:
    run: Run
    inbox: Inbox
    zone: ZoneInfo
    acme: datetime  # starts
    globex: datetime
    initech: datetime
    acme_due: datetime
    globex_due: datetime
    digest_at: datetime


ACME = "Call Zoë at ACME"
GLOBEX = "Video demo for Globex"
INITECH = "Visit Initech"


@pytest.fixture(scope="module", autouse=True)
def main(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Main]:
    """Started before the first test so its minute passes while the others run."""
    with inbox() as box:
        now = soon(0)
        zone_name = pick_zone(now)
        acme_due, globex_due = now + timedelta(seconds=20), now + timedelta(seconds=35)
        acme, globex = acme_due + timedelta(minutes=10), globex_due + timedelta(hours=1)
        initech = now + timedelta(hours=2)
        # the first whole minute at least 20 s away: the daemon is up and armed by then
        first = now + timedelta(seconds=20)
        digest_at = first.replace(second=0) + timedelta(minutes=1 if first.second else 0)
        zone = ZoneInfo(zone_name)
        run = Run(
            tmp_path_factory.mktemp("main"),
            box.port,
            zone=zone_name,
            extra=f'  digest: "{digest_at.astimezone(zone):%H:%M}"\n',
        )
        run.write_commitments(
            "defaults:\n  email: [-1h]\ncommitments:\n"
            f"  - id: acme\n    title: {ACME}\n    when: '{stamp(acme)}'\n"
            "    duration: 30m\n    channel: call\n"
            "    contact: {name: Zoë Alexiou, company: ACME, phone: '+30 21 0123 4567', "
            "email: zoe@acme.example}\n"
            "    purpose: She asked for a call to close the deal\n"
            "    bring: [Contract PDF, Price list 2027]\n"
            "    questions: [Who else signs off?]\n"
            "    agenda: [Recap the pilot, Agree the start date]\n"
            "    next_step: Send the contract for signature\n"
            "    email: [-10m]\n"
            f"  - id: globex\n    title: {GLOBEX}\n    when: '{stamp(globex)}'\n"
            "    channel: video\n    contact: {name: Maria Chen, email: maria@globex.example}\n"
            "    purpose: Show the reporting module\n"  # email from defaults: -1h
            f"  - id: initech\n    title: {INITECH}\n    when: '{stamp(initech)}'\n"
            "    channel: visit\n    email: []\n"  # no email for this one
        )
        run.start()
        try:
            run.wait_log("email schedule: 2 added")
            yield Main(run, box, zone, acme, globex, initech, acme_due, globex_due, digest_at)
        finally:
            run.close()


@dataclass
class Moved:
    run: Run
    inbox: Inbox
    fire: datetime  # when the digest is due once the zone has moved


@pytest.fixture(scope="module", autouse=True)
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moved]:
    """A daemon whose `timezone` a reload moves from UTC to UTC-2: its email digest,
    22 hours away in UTC, is then due within the next two minutes. Started with the
    module, checked last."""
    with inbox() as box:
        first = soon(25)
        fire = first.replace(second=0) + timedelta(minutes=1 if first.second else 0)
        run = Run(
            tmp_path_factory.mktemp("moved"),
            box.port,
            extra=f'  digest: "{fire - timedelta(hours=2):%H:%M}"\n',  # UTC-2 wall clock
        )
        run.write_commitments("commitments:\n" + simple("later", "Call Acme", soon(3600), "-10m"))
        run.start()
        try:
            run.wait_log("email schedule: 1 added")
            run.zone = "Etc/GMT+2"  # POSIX sign: UTC-2
            run.write_config(
                to="rep@example.com", extra=f'  digest: "{fire - timedelta(hours=2):%H:%M}"\n'
            )
            run.reload()
            yield Moved(run, box, fire)
        finally:
            run.close()


# -- faults


@pytest.mark.parametrize("stage", ["MAIL", "DATA"])
def test_a_421_is_retried_and_the_email_arrives_once(
    smtp: Inbox, runs: Callable[..., Run], stage: str
) -> None:
    smtp.handler.answer("421 4.3.2 Service busy, try later", at=stage, times=1)
    due = soon(3)
    start = due + timedelta(hours=1)
    run = runs(smtp.port)
    run.write_commitments("commitments:\n" + simple("busy", "Call Hooli", start, "-1h"))
    run.start()
    key = key_of("busy#0", "-1h", start)
    row = run.wait_status(key, "sent", "failed", timeout=40)
    time.sleep(3)  # a repeat would be on its way by now
    row = run.outbox()[key]
    assert row["status"] == "sent", (row, run.log())
    assert row["attempts"] == 2 and row["ambiguous"] == 0
    assert smtp.handler.attempts[stage] == 2  # the refused try and the one that went through
    (mail,) = smtp.mails()
    assert mail.mid == row["sid"]
    assert "421" in run.log() and "retrying in" in run.log()


def test_a_550_is_not_retried_and_status_shows_it(smtp: Inbox, runs: Callable[..., Run]) -> None:
    smtp.handler.answer("550 5.1.1 No such user here", at="RCPT", times=None)
    due = soon(3)
    start = due + timedelta(hours=1)
    run = runs(smtp.port)
    run.write_commitments("commitments:\n" + simple("nobody", "Call Vandelay", start, "-1h"))
    run.start()
    key = key_of("nobody#0", "-1h", start)
    row = run.wait_status(key, "sent", "failed", timeout=40)
    time.sleep(4)  # a retry (backoff of about 2 s) would have come by now
    row = run.outbox()[key]
    assert row["status"] == "failed", row
    assert row["attempts"] == 1
    assert "550 5.1.1 No such user here" in row["error"]
    assert smtp.handler.attempts == {"MAIL": 1, "RCPT": 1}  # one try, never to DATA
    assert smtp.mails() == []
    text = run.cli("status")
    assert text.returncode == 0, text.stderr
    assert f"email:      127.0.0.1:{smtp.port} (none) to r***@example.com" in text.stdout
    assert "email counts: 1 failed" in text.stdout
    (line,) = [x for x in text.stdout.splitlines() if key in x]
    assert line.split()[0] == "failed" and "550 5.1.1 No such user here" in line
    doc = json.loads(run.cli("status", "--json").stdout)
    assert doc["email"] == f"127.0.0.1:{smtp.port} (none) to r***@example.com"
    assert doc["email_counts"] == {"failed": 1} and doc["next_email"] == []
    (recent,) = doc["recent_emails"]
    assert recent["key"] == key and recent["status"] == "failed" and "550" in recent["error"]


def test_kill_9_after_a_recorded_send_sends_no_copy(smtp: Inbox, runs: Callable[..., Run]) -> None:
    first_due = soon(4)
    second_due = first_due + timedelta(seconds=7)  # after the restart: the new daemon works
    one, two = first_due + timedelta(hours=1), second_due + timedelta(hours=1)
    run = runs(smtp.port)
    run.write_commitments(
        "commitments:\n"
        + simple("one", "Call Umbrella", one, "-1h")
        + simple("two", "Call Soylent", two, "-1h")
    )
    first = run.start()
    key1, key2 = key_of("one#0", "-1h", one), key_of("two#0", "-1h", two)
    row = run.wait_status(key1, "sent", "failed", timeout=40)
    first.send_signal(signal.SIGKILL)  # accepted and recorded: nothing is left to do for it
    first.wait(timeout=10)
    assert row["status"] == "sent", (row, run.log())
    assert [m.mid for m in smtp.mails()] == [row["sid"]]
    run.start()
    restarted = datetime.now(UTC)
    run.wait_status(key2, "sent", "failed", timeout=40)
    until(max(restarted + timedelta(seconds=10), second_due + timedelta(seconds=2)))
    rows = run.outbox()
    assert rows[key1]["status"] == "sent" and rows[key1]["attempts"] == 1
    assert rows[key2]["status"] == "sent" and rows[key2]["attempts"] == 1
    assert len(smtp.by_id(rows[key1]["sid"])) == 1, "a second copy arrived after the restart"
    assert len(smtp.by_id(rows[key2]["sid"])) == 1
    assert len(smtp.mails()) == 2
    assert key1 not in run.log(), run.log()  # the restarted daemon left it alone


def test_kill_9_in_the_middle_of_a_send_repeats_it_once(
    smtp: Inbox, runs: Callable[..., Run]
) -> None:
    """The server has the whole message but has not answered: after a restart it goes
    once more, with the same Message-ID (SPEC: at most twice after a crash mid-send)."""
    smtp.handler.drop_after_data(hang=True)  # silent after the data, until the client goes
    start = soon(3) + timedelta(hours=1)
    run = runs(smtp.port)
    run.write_commitments("commitments:\n" + simple("mid", "Call Oscorp", start, "-1h"))
    first = run.start()
    key = key_of("mid#0", "-1h", start)
    wait_for("the message at the server, unanswered", lambda: smtp.handler.dropped, 30)
    assert run.outbox()[key]["status"] == "sending"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    run.start()
    row = run.wait_status(key, "sent", "failed", "unconfirmed", timeout=40)
    time.sleep(3)  # a third copy would be on its way by now
    row = run.outbox()[key]
    assert row["status"] == "sent" and row["attempts"] == 2 and row["ambiguous"] == 1, row
    (copy,) = smtp.handler.dropped
    (mail,) = smtp.mails()
    assert mail.mid == row["sid"]
    assert copy.data.replace(b"\r\n", b"\n").count(f"Message-ID: {mail.mid}".encode()) == 1


def test_the_smtp_password_shows_nowhere(smtp: Inbox, runs: Callable[..., Run]) -> None:
    secrets = {"REMINDERD_TEST_SMTP_PASSWORD": PASSWORD, "REMINDERD_TEST_SMTP_WRONG": WRONG}
    auth = f"  username: {LOGIN}\n  password_env: REMINDERD_TEST_SMTP_PASSWORD\n"
    run = runs(smtp.port, extra=auth, secrets=secrets)
    ok = soon(4) + timedelta(hours=1)
    items = "commitments:\n" + simple("ok", "Call Initrode", ok, "-1h")
    run.write_commitments(items)
    run.start(verbose=True)
    sent = run.wait_status(key_of("ok#0", "-1h", ok), "sent", "failed", timeout=40)
    assert sent["status"] == "sent", (sent, run.log())
    (mail,) = smtp.mails()
    assert mail.login == LOGIN
    run.reload()  # the same settings
    run.write_config(
        to="rep@example.com",
        extra=f"  username: {LOGIN}\n  password_env: REMINDERD_TEST_SMTP_WRONG\n",
    )
    run.reload()  # new email settings: the wrong password
    bad = soon(3) + timedelta(hours=1)
    run.write_commitments(items + simple("bad", "Call Cyberdyne", bad, "-1h"))
    run.reload()
    key = key_of("bad#0", "-1h", bad)
    failed = run.wait_status(key, "sent", "failed", timeout=40)
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed
    assert "535" in failed["error"] and "email.password" in failed["error"]
    assert len(smtp.mails()) == 1
    status = run.cli("status")
    as_json = run.cli("status", "--json")
    assert status.returncode == 0 and as_json.returncode == 0, status.stderr + as_json.stderr
    (line,) = [x for x in status.stdout.splitlines() if key in x]
    assert line.split()[0] == "failed" and "535" in line
    assert run.stop() == 0
    shown = {
        "daemon stdout": run.output()[0],
        "daemon stderr": run.output()[1],
        "status": status.stdout + status.stderr,
        "status --json": as_json.stdout + as_json.stderr,
    }
    assert "535" in shown["daemon stderr"] + shown["daemon stdout"]  # the log does say why
    files = {str(p): p.read_bytes() for p in (run.tmp / "state").rglob("*") if p.is_file()}
    assert any(name.endswith("state.sqlite3") for name in files)
    for secret in (PASSWORD, WRONG):
        forms = [
            secret,
            base64.b64encode(secret.encode()).decode(),  # AUTH LOGIN
            base64.b64encode(f"\0{LOGIN}\0{secret}".encode()).decode(),  # AUTH PLAIN
        ]
        for form in forms:
            for where, text in shown.items():
                assert form not in text, f"the password ({form}) in {where}"
            for where, data in files.items():
                assert form.encode() not in data, f"the password ({form}) in {where}"


def test_a_reload_sends_the_next_alert_to_the_new_address(
    smtp: Inbox, runs: Callable[..., Run]
) -> None:
    run = runs(smtp.port, to="first@example.com")
    one = soon(4) + timedelta(hours=1)
    items = "commitments:\n" + simple("one", "Call Tyrell", one, "-1h")
    run.write_commitments(items)
    run.start()
    row = run.wait_status(key_of("one#0", "-1h", one), "sent", "failed", timeout=40)
    assert row["status"] == "sent", (row, run.log())
    (mail,) = smtp.mails()
    assert mail.rcpt == ("first@example.com",) and mail.msg["To"] == "first@example.com"
    run.write_config(to="second@example.com")
    run.reload()
    two = soon(4) + timedelta(hours=1)
    run.write_commitments(items + simple("two", "Call Wallace", two, "-1h"))
    run.reload()
    row = run.wait_status(key_of("two#0", "-1h", two), "sent", "failed", timeout=40)
    assert row["status"] == "sent", (row, run.log())
    (mail,) = smtp.by_id(row["sid"])
    assert mail.rcpt == ("second@example.com",) and mail.msg["To"] == "second@example.com"
    assert len(smtp.mails()) == 2
    assert "to s***@example.com" in run.cli("status").stdout


def test_one_edit_of_the_email_settings_and_the_commitments_plans_the_new_alert(
    smtp: Inbox, runs: Callable[..., Run]
) -> None:
    """Both files saved together (a `git pull`, a deploy): one reload by the file watcher."""
    run = runs(smtp.port, to="first@example.com")
    one = soon(0) + timedelta(hours=2)
    items = "commitments:\n" + simple("one", "Call Tyrell", one, "-1h")
    run.write_commitments(items)
    run.start()
    run.wait_log("email schedule: 1 added")
    two = soon(5) + timedelta(hours=1)
    run.write_config(to="second@example.com")
    run.write_commitments(items + simple("two", "Call Wallace", two, "-1h"))
    run.wait_log("reloaded:")
    key = key_of("two#0", "-1h", two)
    try:
        wait_for(f"{key} planned", lambda: key in run.outbox(), 5)
    except AssertionError:
        raise AssertionError(f"{key} was not planned by the reload:\n{run.log()}") from None
    row = run.wait_status(key, "sent", "failed", timeout=40)
    assert row["status"] == "sent", (row, run.log())
    (mail,) = smtp.by_id(row["sid"])
    assert mail.rcpt == ("second@example.com",)


# -- the shared daemon's alerts and digest (last: their times have passed by now)


def test_each_alert_arrives_once_on_time_with_its_content(main: Main) -> None:
    run, box = main.run, main.inbox
    acme_key = key_of("acme#0", "-10m", main.acme)
    globex_key = key_of("globex#0", "-1h", main.globex)
    planned = {k: r for k, r in run.outbox().items() if r["kind"] == "backup"}
    assert set(planned) == {acme_key, globex_key}  # initech has `email: []`
    for key, due in ((acme_key, main.acme_due), (globex_key, main.globex_due)):
        assert datetime.fromisoformat(planned[key]["due"]) == due
    for key in planned:
        run.wait_status(key, "sent", "failed", timeout=60)
    until(main.globex_due + timedelta(seconds=ON_TIME))  # a copy would be here by now
    rows = run.outbox()
    got: dict[str, Mail] = {}
    for key, due in ((acme_key, main.acme_due), (globex_key, main.globex_due)):
        row = rows[key]
        assert row["status"] == "sent" and row["attempts"] == 1, row
        mails = box.by_id(row["sid"])
        assert len(mails) == 1, f"{key}: {len(mails)} copies"
        (mail,) = mails
        late = mail.at - due.timestamp()
        assert -EARLY <= late <= ON_TIME, f"{key} arrived {late:+.1f} s from its time"
        assert mail.rcpt == ("rep@example.com",)
        got[key] = mail
    acme = got[acme_key]
    local = main.acme.astimezone(main.zone)
    assert acme.subject == f"Follow-up: {ACME} — {label(local)}"
    assert acme.msg["From"] == "reminderd@example.com" and acme.msg["To"] == "rep@example.com"
    assert acme.msg.get_content_type() == "multipart/mixed"
    text, html = acme.text(), acme.html()
    for needed in (
        "She asked for a call to close the deal",
        "Contract PDF",
        "Price list 2027",
        "Who else signs off?",
        "Recap the pilot",
        "Agree the start date",
        "Send the contract for signature",
        "Zoë Alexiou",
    ):
        assert needed in text, (needed, text)
        assert needed in html, (needed, html)
    assert 'href="tel:+302101234567"' in html
    assert 'href="mailto:zoe@acme.example"' in html
    (ics,) = [p for p in acme.msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics.get_param("method") == "PUBLISH"
    assert str(ics.get_filename()).endswith(".ics")
    from icalendar import Calendar

    cal = Calendar.from_ical(ics.get_payload(decode=True))
    assert str(cal["METHOD"]) == "PUBLISH"
    (event,) = cal.walk("VEVENT")
    assert event.decoded("DTSTART") == main.acme
    assert str(event["SUMMARY"]) == ACME
    globex = got[globex_key]
    assert globex.subject == f"Follow-up: {GLOBEX} — {label(main.globex.astimezone(main.zone))}"
    assert "Maria Chen" in globex.text() and 'href="mailto:maria@globex.example"' in globex.html()
    status = run.cli("status")
    assert f"email:      127.0.0.1:{box.port} (none) to r***@example.com" in status.stdout
    for key in planned:
        (line,) = [x for x in status.stdout.splitlines() if key in x]
        assert line.split()[0] == "sent"


def test_the_digest_arrives_at_its_minute_once(main: Main) -> None:
    run, box = main.run, main.inbox
    day = main.digest_at.astimezone(main.zone).date()
    key = f"digest@{day.isoformat()}"
    wait_for(
        f"{key} in the outbox",
        lambda: key in run.outbox(),
        max(5.0, (main.digest_at - datetime.now(UTC)).total_seconds() + ON_TIME + 5),
    )
    row = run.wait_status(key, "sent", "failed", timeout=30)
    until(main.digest_at + timedelta(seconds=ON_TIME))  # a copy would be here by now
    assert row["status"] == "sent" and row["kind"] == "digest", row
    digests = [m for m in box.mails() if m.subject.startswith("Today ")]
    assert len(digests) == 1, [m.subject for m in digests]
    (mail,) = digests
    assert mail.mid == row["sid"]
    late = mail.at - main.digest_at.timestamp()
    assert -EARLY <= late <= ON_TIME, f"the digest arrived {late:+.1f} s from its minute"
    weekday = DAYS[day.weekday()]
    assert mail.subject == f"Today {weekday} {day.day:02d} {MONTHS[day.month - 1]}: 3 follow-ups"
    text, html = mail.text(), mail.html()
    lines = [
        f"{start.astimezone(main.zone):%H:%M} {title}"
        for start, title in ((main.acme, ACME), (main.globex, GLOBEX), (main.initech, INITECH))
    ]
    where = [text.find(line) for line in lines]
    assert all(i >= 0 for i in where) and where == sorted(where), (lines, text)
    for title in (ACME, GLOBEX, INITECH):
        assert title in html
    assert "She asked for a call to close the deal" in text  # each touch with its content
    # everything this daemon sent, once each: two alerts and the digest
    assert len(box.mails()) == 3, [m.subject for m in box.mails()]
    assert run.stop() == 0


def test_a_reload_that_moves_the_timezone_moves_the_email_digest(moved: Moved) -> None:
    run, box = moved.run, moved.inbox
    wait_for(
        "the email digest in the outbox",
        lambda: any(k.startswith("digest@") for k in run.outbox()),
        max(5.0, (moved.fire - datetime.now(UTC)).total_seconds() + ON_TIME),
    )
    (key,) = [k for k in run.outbox() if k.startswith("digest@")]
    row = run.wait_status(key, "sent", "failed", timeout=30)
    assert row["status"] == "sent", row
    (mail,) = box.by_id(row["sid"])
    late = mail.at - moved.fire.timestamp()
    assert -EARLY <= late <= ON_TIME, f"the digest arrived {late:+.1f} s from its minute"
