"""`sms.replies: webhook` in a running daemon: a signed reply has its effect, an unsigned one none.

Against the Twilio mock (for the confirmation SMS) and the embedded calendar; the
reply is posted as Twilio would, to the daemon's `sms.webhook_listen`, signed for the
public `sms.webhook_url`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import TwilioMock, free_port, wait_for
from twilio.request_validator import RequestValidator

pytestmark = [pytest.mark.server, pytest.mark.slow]

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "webhook-test-token"
OURS, USER = "+15017122661", "+306912345678"
PUBLIC = "https://reminderd.example.com/twilio/sms"  # what Twilio posts to, behind a proxy


@pytest.fixture
def daemon(mock: TwilioMock, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    mock.clear()
    port = free_port()
    start = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="minutes")
    (tmp_path / "c.yaml").write_text(
        "# kept: comments stay\ncommitments:\n"
        f'  - id: acme   # the big one\n    title: Call Alex\n    when: "{start}"\n'
    )
    (tmp_path / "config.yaml").write_text(
        "timezone: UTC\nstate_dir: state\ncommitments: [c.yaml]\n"
        f"calendar: {{listen: 127.0.0.1:{free_port()}}}\n"
        "sms:\n  provider: twilio\n  account_sid_env: T_SID\n  auth_token_env: T_TOKEN\n"
        f'  from: "{OURS}"\n  to: "{USER}"\n  api_url: {mock.url}\n'
        f"  replies: webhook\n  webhook_listen: 127.0.0.1:{port}\n  webhook_url: {PUBLIC}\n"
    )
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "--config", str(tmp_path / "config.yaml"), "run"],
        cwd=tmp_path,
        env=dict(os.environ, T_SID=SID, T_TOKEN=TOKEN),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for("the webhook", lambda: "SMS replies: webhook" in log.read_text(), 30)
        yield f"http://127.0.0.1:{port}{urllib.parse.urlsplit(PUBLIC).path}", tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert TOKEN not in log.read_text()


def post(url: str, form: dict[str, str], signature: str | None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    request = urllib.request.Request(url, urllib.parse.urlencode(form).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert b"<Response/>" in reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def outcomes(tmp: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{tmp / 'state' / 'state.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT commitment, kind, source FROM outcomes").fetchall()


def test_unsigned_is_403_and_signed_has_its_effect(
    daemon: tuple[str, Path], mock: TwilioMock
) -> None:
    url, tmp = daemon
    form = {"MessageSid": "SM" + "1" * 32, "From": USER, "To": OURS, "Body": "acme DONE signed"}
    assert post(url, form, None) == 403
    assert post(url, form, RequestValidator("wrong-token").compute_signature(PUBLIC, form)) == 403
    assert outcomes(tmp) == [] and "status: done" not in (tmp / "c.yaml").read_text()

    good = RequestValidator(TOKEN).compute_signature(PUBLIC, form)
    assert post(url, form, good) == 200
    assert outcomes(tmp) == [("acme", "done", "sms")]  # recorded before the 200
    wait_for("the write-back", lambda: "status: done" in (tmp / "c.yaml").read_text(), 15)
    text = (tmp / "c.yaml").read_text()
    assert "# kept: comments stay" in text and "# the big one" in text
    sent = wait_for(
        "the confirmation",
        lambda: [m for m in mock.kept() if str(m.get("body", "")).startswith("OK:")],
        15,
    )
    assert [m["body"] for m in sent] == ["OK: Call Alex done (signed)"]  # type: ignore[index]

    assert post(url, form, good) == 200  # Twilio's retry of the same message: acted on once
    assert outcomes(tmp) == [("acme", "done", "sms")]
