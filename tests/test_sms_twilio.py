"""SMS through the official twilio library, over HTTP, to Prism serving Twilio's own
OpenAPI spec (../shared/testbed), with every request recorded. The mock is stateful:
it keeps what was sent, so the look-up of a send whose outcome is unknown
(`messages.list`) is answered from what really arrived. Faults come from the
recorder (Twilio-shaped errors) and from a local proxy that answers 500/429, hangs,
drops, or loses the reply. The crash test kills the sending process at random points.
"""

from __future__ import annotations

import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from servers import ROOT, TwilioMock

from reminderd.app import state_db
from reminderd.cli import main
from reminderd.config import load_config
from reminderd.sms.dispatch import LOOKUP_MARGIN, LOST_STATE_NOTE
from reminderd.sms.factory import make_dispatcher
from reminderd.sms.outbox import Outbox, Row
from reminderd.sms.providers import TwilioSender
from reminderd.sources import load_sources
from reminderd.store.sqlite import StateDB

pytestmark = pytest.mark.server
SID = "AC" + "0123456789abcdef" * 2
os.environ["TEST_TWILIO_SID"] = SID  # read by the configs below, in process and in the harness
os.environ["TEST_TWILIO_TOKEN"] = "test-token-not-secret"


def setup(
    tmp: Path,
    url: str,
    n: int = 1,
    *,
    extra: str = "",
    minutes: int = 20,
    tag: str = "t",
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> Path:
    """Config + n commitments whose SMS (-minutes) is due right now."""
    start = datetime.now(UTC) + timedelta(minutes=minutes)
    items = "\n".join(
        f"  - {{id: {tag}{i}, title: Call {tag}-{i}, when: '{start.strftime('%Y-%m-%dT%H:%M:%S')}Z', "
        f"contact: {{name: Alex, phone: '+30 210 123 4567'}}, purpose: Card details, sms: [-{minutes}m]}}"
        for i in range(n)
    )
    (tmp / "c.yaml").write_text(f"timezone: Europe/Athens\ncommitments:\n{items}\n")
    (tmp / "config.yaml").write_text(
        "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
        "calendar: {url: 'http://127.0.0.1:9/'}\n"
        "sms:\n  provider: twilio\n  account_sid_env: TEST_TWILIO_SID\n  auth_token_env: TEST_TWILIO_TOKEN\n"
        f"  from: '+15017122661'\n  to: '+30 691 234 5678'\n  api_url: {url}\n  timeout: 2s\n"
        f"  rate_per_minute: 6000\n{extra}"
    )
    return tmp / "config.yaml"


def dispatch(config: Path, clock: Callable[[], datetime] | None = None) -> list[str]:
    cfg = load_config(config)
    db = state_db(cfg)
    d = make_dispatcher(cfg, db, clock=clock)
    try:
        d.recover()
        d.replan(load_sources(cfg).commitments)
        return d.run_due()
    finally:
        d.close()
        db.close()


def test_exact_form_fields(mock: TwilioMock, tmp_path: Path) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    assert dispatch(config) == ["sent"]
    (form,) = mock.messages()
    assert set(form) == {"To", "From", "Body", "ValidityPeriod"}
    assert form["To"] == "+306912345678" and form["From"] == "+15017122661"
    assert re.fullmatch(
        r"(\w{3} \d{2} \w{3} )?\d{2}:\d{2} Call t-0 - Alex \+302101234567\. Why: Card details\."
        r" #[a-z0-9]{2,4}",  # the reference a reply may start with
        form["Body"],
    ), form["Body"]  # the local start time first, then who and why
    assert 1200 <= int(form["ValidityPeriod"]) <= 36000  # until the item starts, not hours later
    (record,) = [r for r in mock.requests() if r.get("method") == "POST"]
    import base64

    assert (
        base64.b64decode(str(record["authorization"]).split()[1]).decode()
        == f"{SID}:test-token-not-secret"
    )
    assert dispatch(config) == []  # sent once, never again


def test_messaging_service_instead_of_from(mock: TwilioMock, tmp_path: Path) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    text = config.read_text().replace(
        "  from: '+15017122661'\n", "  messaging_service_sid: MG" + "a" * 32 + "\n"
    )
    config.write_text(text)
    assert dispatch(config) == ["sent"]
    (form,) = mock.messages()
    assert form["MessagingServiceSid"] == "MG" + "a" * 32 and "From" not in form


def test_permanent_error_is_not_retried_and_shows_in_status(
    mock: TwilioMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    mock.fail_next(400, 21211, "The 'To' number +306912345678 is not a valid phone number.")
    assert dispatch(config) == ["failed"]
    assert dispatch(config) == []
    assert len(mock.messages(accepted_only=False)) == 1
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "21211" in out and "+306912345678" not in out


@pytest.mark.parametrize("status,code", [(429, 20429), (500, 20500), (503, 20503)])
def test_temporary_errors_are_retried(
    mock: TwilioMock, tmp_path: Path, status: int, code: int
) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    mock.fail_next(status, code, "busy", count=2)
    cfg = load_config(config)
    db = state_db(cfg)
    d = make_dispatcher(cfg, db)
    try:
        d.replan(load_sources(cfg).commitments)
        outcomes = d.run_due()
        for _ in range(5):
            nxt = d.outbox.next_time()
            if nxt is None:
                break
            time.sleep(max(0.0, (nxt - datetime.now(UTC)).total_seconds()) + 0.05)
            outcomes += d.run_due()
    finally:
        d.close()
        db.close()
    assert outcomes == ["retry", "retry", "sent"]
    assert len(mock.messages(accepted_only=False)) == 3 and len(mock.messages()) == 1


def through_proxy(
    mock: TwilioMock, tmp_path: Path, mode: str, **proxy_options: float
) -> tuple[list[str], list[tuple[str, str, str]], list[Row]]:
    """One due backup sent through a fault proxy in `mode`, then the retry or look-up when it
    comes due: (outcomes, what the proxy saw, the rows recorded as sent)."""
    mock.clear()
    proxy = FaultProxy(mock.url, **proxy_options)
    try:
        proxy.modes = [mode]
        cfg = load_config(setup(tmp_path, proxy.url))
        db = state_db(cfg)
        d = make_dispatcher(cfg, db)
        d.tuning = replace(d.tuning, lookup_delay=timedelta(seconds=1))
        try:
            d.replan(load_sources(cfg).commitments)
            outcomes = d.run_due()
            nxt = d.outbox.next_time()
            if nxt is not None:
                time.sleep(max(0.0, (nxt - datetime.now(UTC)).total_seconds()) + 0.05)
                outcomes += d.run_due()
            sent = d.outbox.recent(statuses=("sent",))
        finally:
            d.close()
            db.close()
    finally:
        proxy.close()
    return outcomes, list(proxy.seen), sent


@pytest.mark.parametrize("fault", ["500", "429", "hang", "drop"])
def test_fault_proxy(mock: TwilioMock, tmp_path: Path, fault: str) -> None:
    outcomes, seen, _ = through_proxy(mock, tmp_path, fault, hang_seconds=3)
    posts = [s for s in seen if s[0] == "POST"]
    if fault in ("500", "429"):
        assert outcomes == ["retry", "sent"] and [p[2] for p in posts] == [fault, "pass"]
    else:  # the request may have arrived: look it up (GET), not found, send once more
        assert outcomes == ["ambiguous", "sent"]
        assert [p[2] for p in posts] == [fault, "pass"]
        assert any(s[0] == "GET" and "Messages.json" in s[1] for s in seen)
    assert len(mock.messages()) == 1  # the faulty one never reached the provider


def test_a_lost_reply_is_found_by_the_look_up_and_not_sent_again(
    mock: TwilioMock, tmp_path: Path
) -> None:
    """The send reaches the provider, the answer never comes back: the look-up finds it."""
    outcomes, seen, sent = through_proxy(mock, tmp_path, "lose-reply")
    assert outcomes == ["ambiguous", "sent"]
    assert [p[2] for p in seen if p[0] == "POST"] == ["lose-reply"]  # asked, not sent again
    (row,) = sent
    (kept,) = mock.kept()
    assert row.sid == kept["sid"] and (row.error or "").startswith("confirmed by look-up")
    assert len(mock.messages()) == 1


def test_find_sent_finds_a_sent_message_and_not_an_unsent_one(mock: TwilioMock) -> None:
    """The look-up against messages kept by the provider: to, from and time filters, exact text."""
    mock.clear()
    to, sender_number = "+306912345678", "+15017122661"
    sender = TwilioSender(
        SID, auth_token="test-token-not-secret", from_=sender_number, api_url=mock.url
    )
    since = datetime.now(UTC) - LOOKUP_MARGIN
    text = "10:00 Call Alex - Alex (ACME). Why: card details."
    sid = sender.send(to, text, 600)
    for i in range(5):  # newer messages to the same phone: the one we want is on a later page
        sender.send(to, f"10:0{i} Call someone else.", 600)
    sender.send("+306900000000", "10:00 Call Bea.", 600)  # another phone
    sender.lookup_page = 2
    assert sender.find_sent(to, text, since) == sid
    assert (
        sender.find_sent(to, ("LATE reminder: " + text, " " + text + " "), since) == sid
    )  # any of the wordings
    assert sender.find_sent(to, "10:00 Call Bea.", since) is None  # sent, but to another phone
    assert (
        sender.find_sent(to, "11:00 Call Alex - Alex (ACME). Why: card details.", since) is None
    )  # never sent
    assert (
        sender.find_sent(to, text, datetime.now(UTC) + timedelta(minutes=1)) is None
    )  # sent before `since`
    other = TwilioSender(
        SID, auth_token="test-token-not-secret", from_="+15550001111", api_url=mock.url
    )
    assert other.find_sent(to, text, since) is None  # another sender number's message is not ours
    lists = [str(r["query"]) for r in mock.requests() if r.get("method") == "GET"]
    assert lists and all("To=%2B306912345678" in q and "From=%2B1" in q for q in lists)
    assert any("DateSent%3E=" in q and "Page=2" in q for q in lists)  # filtered by time, paged


def test_a_lost_state_database_does_not_send_again(mock: TwilioMock, tmp_path: Path) -> None:
    """Sends go out, the state database is deleted, the daemon starts again a few minutes later
    from the same files: what was sent is found at the provider and not sent again; what had
    not been sent yet goes out, late."""
    mock.clear()
    config = setup(tmp_path, mock.url, n=3, tag="lost")  # due now
    later_one = datetime.now(UTC) + timedelta(minutes=21)  # its SMS is due in a minute
    with (tmp_path / "c.yaml").open("a") as f:
        f.write(
            f"  - {{id: lost9, title: Call lost-9, when: '{later_one.strftime('%Y-%m-%dT%H:%M:%S')}Z', "
            "contact: {name: Alex}, sms: [-20m]}\n"
        )
    assert dispatch(config) == ["sent", "sent", "sent"]
    before = {f["Body"] for f in mock.messages()}
    state = tmp_path / "state"
    for leftover in state.glob("state.sqlite3*"):  # the database and its -wal/-shm
        leftover.unlink()
    mock.clear_requests()
    five_minutes_later = datetime.now(UTC) + timedelta(minutes=5)
    assert dispatch(config, clock=lambda: five_minutes_later) == ["sent"] * 4
    (new,) = mock.messages()  # only the one that had never gone out
    assert new["Body"].startswith("LATE reminder: ") and "Call lost-9" in new["Body"]
    assert not any("Call lost-9" in b for b in before)
    db = StateDB(state / "state.sqlite3")
    notes = Counter(r.error for r in Outbox(db).recent(statuses=("sent",)))
    db.close()
    assert notes == {LOST_STATE_NOTE: 3, None: 1}
    assert dispatch(config, clock=lambda: five_minutes_later) == []  # and recorded now


def test_connection_refused_is_temporary(tmp_path: Path) -> None:
    from servers import free_port

    config = setup(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert dispatch(config) == ["retry"]


def test_test_sms_command(
    mock: TwilioMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    assert main(["--config", str(config), "test-sms"]) == 0
    assert "sent a test SMS to +30********78 via twilio (SM" in capsys.readouterr().out
    mock.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    assert main(["--config", str(config), "test-sms"]) == 1
    err = capsys.readouterr().err
    assert "21610" in err and "unsubscribed" in err and "6912345678" not in err


class ForkServer:
    """tests/sms_harness.py --serve: one sending process per run, forked, killable (see there)."""

    def __init__(self, cwd: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "sms_harness.py"), "--serve"],
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def tell(self, *commands: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(c + "\n" for c in commands))
        self.proc.stdin.flush()

    def line(self) -> str:
        return self.lines.get(timeout=60)  # bounded: a stuck run fails the test, never hangs it

    def until_exit(self) -> list[str]:
        got = [self.line()]
        while not got[-1].startswith("exit"):
            got.append(self.line())
        return got

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server ends at the end of its input
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def test_crash_at_random_points_never_loses_or_triples(mock: TwilioMock, tmp_path: Path) -> None:
    """50 trials: start the sender, SIGKILL it at a random moment, start it again to the end.

    The restart asks the provider about every send the kill left in flight; the mock
    answers from what really arrived, so a send that got there is confirmed, not repeated.
    """
    rnd = random.Random(20261122)
    trials, per_trial = 50, 12
    killed_mid_run = interrupted = confirmed = lost = repeated = 0
    began = time.monotonic()
    server = ForkServer(tmp_path)
    try:
        for trial in range(trials):
            mock.clear()
            work = tmp_path / f"t{trial}"
            work.mkdir()
            tag = f"k{trial}x"
            config = setup(work, mock.url, n=per_trial, tag=tag)
            server.tell(f"run {config}")
            assert server.line() == "ready"
            time.sleep(
                rnd.uniform(0.0, 0.15)
            )  # the sends take about that long: kill somewhere inside
            server.tell("kill")
            killed_mid_run += server.until_exit()[-1] == "exit killed"
            server.tell(f"run {config}", "wait")  # the restart, to the end
            lines = server.until_exit()
            assert lines[0] == "ready" and lines[-1] == "exit 0", lines
            interrupted += int(lines[1].split()[1])  # "recovered N": in flight when killed
            bodies = Counter(
                f["Body"].split(" Call ", 1)[1].split(" - ")[0] for f in mock.messages()
            )
            want = {f"{tag}-{i}" for i in range(per_trial)}
            lost += len(want - set(bodies))
            repeated += sum(1 for n in bodies.values() if n > 1)
            assert set(bodies) == want, f"trial {trial}: lost {want - set(bodies)}"
            assert max(bodies.values()) <= 2, f"trial {trial}: {bodies}"
            db = StateDB(work / "state" / "state.sqlite3")
            rows = Outbox(db).recent(limit=per_trial, statuses=("sent",))
            db.close()
            assert len(rows) == per_trial
            confirmed += sum(1 for r in rows if (r.error or "").startswith("confirmed by look-up"))
    finally:
        server.close()
    print(
        f"\ncrash test: {trials} trials ({killed_mid_run} killed mid-run) in {time.monotonic() - began:.0f} s, "
        f"{trials * per_trial} SMS: lost {lost}, repeated {repeated}; {interrupted} sends in flight at the kill: "
        f"{confirmed} had reached the provider and were confirmed by look-up, "
        f"{interrupted - confirmed} had not and were sent once"
    )
    assert lost == 0
    assert killed_mid_run >= 40  # the kills landed while it was working
    # of the interrupted sends that had reached the provider, the look-up found (nearly) all
    assert confirmed > 0 and repeated < confirmed, (confirmed, repeated)


def test_normal_path_sends_exactly_once(mock: TwilioMock, tmp_path: Path) -> None:
    mock.clear()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT))
    config = setup(tmp_path, mock.url, n=20, tag="once")
    for _ in range(3):
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "sms_harness.py"), str(config)],
            env=env,
            cwd=tmp_path,
            check=True,
            timeout=120,
        )
    bodies = Counter(f["Body"] for f in mock.messages())
    assert len(bodies) == 20 and set(bodies.values()) == {1}


def test_api_key_auth(mock: TwilioMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    monkeypatch.setenv("TEST_TWILIO_KEY_SECRET", "key-secret")
    config.write_text(
        config.read_text().replace(
            "  auth_token_env: TEST_TWILIO_TOKEN\n",
            "  api_key_sid: SK" + "1" * 32 + "\n  api_key_secret_env: TEST_TWILIO_KEY_SECRET\n",
        )
    )
    assert dispatch(config) == ["sent"]
    (record,) = [r for r in mock.requests() if r.get("method") == "POST"]
    import base64

    assert (
        base64.b64decode(str(record["authorization"]).split()[1]).decode()
        == "SK" + "1" * 32 + ":key-secret"
    )
    assert f"/Accounts/{SID}/Messages.json" in str(record["path"])
