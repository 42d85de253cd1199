"""SMS through the official twilio library, over HTTP, to Prism serving Twilio's own
OpenAPI spec (../shared/testbed), with every request recorded. Faults come from the
recorder (Twilio-shaped errors) and from a local proxy that answers 500/429, hangs
or drops. The crash test kills the sending process at random points.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from servers import ROOT, TwilioMock

from reminderd.app import state_db
from reminderd.cli import main
from reminderd.config import load_config
from reminderd.sms import make_dispatcher
from reminderd.sources import load_sources

pytestmark = pytest.mark.server
SID = "AC" + "0123456789abcdef" * 2
os.environ["TEST_TWILIO_SID"] = SID  # read by the configs below, in process and in the harness
os.environ["TEST_TWILIO_TOKEN"] = "test-token-not-secret"


def setup(tmp: Path, url: str, n: int = 1, *, extra: str = "", minutes: int = 20, tag: str = "t",
          monkeypatch: pytest.MonkeyPatch | None = None) -> Path:
    """Config + n commitments whose SMS (-minutes) is due right now."""
    start = datetime.now(UTC) + timedelta(minutes=minutes)
    items = "\n".join(
        f"  - {{id: {tag}{i}, title: Call {tag}-{i}, when: '{start.strftime('%Y-%m-%dT%H:%M:%S')}Z', "
        f"contact: {{name: Alex, phone: '+30 210 123 4567'}}, purpose: Card details, sms: [-{minutes}m]}}"
        for i in range(n))
    (tmp / "c.yaml").write_text(f"timezone: Europe/Athens\ncommitments:\n{items}\n")
    (tmp / "config.yaml").write_text(
        "timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.yaml]\n"
        "calendar: {url: 'http://127.0.0.1:9/'}\n"
        "sms:\n  provider: twilio\n  account_sid_env: TEST_TWILIO_SID\n  auth_token_env: TEST_TWILIO_TOKEN\n"
        f"  from: '+15017122661'\n  to: '+30 691 234 5678'\n  api_url: {url}\n  timeout: 2s\n"
        f"  rate_per_minute: 6000\n{extra}")
    return tmp / "config.yaml"


def dispatch(config: Path) -> list[str]:
    cfg = load_config(config)
    db = state_db(cfg)
    d = make_dispatcher(cfg, db)
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
    assert re.fullmatch(r"(\w{3} \d{2} \w{3} )?\d{2}:\d{2} Call t-0 - Alex \+302101234567\. Why: Card details\.",
                        form["Body"]), form["Body"]  # the local start time first, then who and why
    assert 1200 <= int(form["ValidityPeriod"]) <= 36000  # until the item starts, not hours later
    (record,) = [r for r in mock.requests() if r.get("method") == "POST"]
    import base64
    assert base64.b64decode(str(record["authorization"]).split()[1]).decode() == f"{SID}:test-token-not-secret"
    assert dispatch(config) == []  # sent once, never again


def test_messaging_service_instead_of_from(mock: TwilioMock, tmp_path: Path) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    text = config.read_text().replace("  from: '+15017122661'\n", "  messaging_service_sid: MG" + "a" * 32 + "\n")
    config.write_text(text)
    assert dispatch(config) == ["sent"]
    (form,) = mock.messages()
    assert form["MessagingServiceSid"] == "MG" + "a" * 32 and "From" not in form


def test_permanent_error_is_not_retried_and_shows_in_status(mock: TwilioMock, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
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
def test_temporary_errors_are_retried(mock: TwilioMock, tmp_path: Path, status: int, code: int) -> None:
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


@pytest.mark.parametrize("fault", ["500", "429", "hang", "drop"])
def test_fault_proxy(mock: TwilioMock, tmp_path: Path, fault: str) -> None:
    mock.clear()
    proxy = FaultProxy(mock.url, hang_seconds=3)
    try:
        proxy.modes = [fault]
        config = setup(tmp_path, proxy.url)
        cfg = load_config(config)
        db = state_db(cfg)
        d = make_dispatcher(cfg, db)
        d.s = replace(d.s, lookup_delay=timedelta(seconds=1))
        try:
            d.replan(load_sources(cfg).commitments)
            outcomes = d.run_due()
            nxt = d.outbox.next_time()
            if nxt is not None:
                time.sleep(max(0.0, (nxt - datetime.now(UTC)).total_seconds()) + 0.05)
                outcomes += d.run_due()
        finally:
            d.close()
            db.close()
    finally:
        proxy.close()
    posts = [s for s in proxy.seen if s[0] == "POST"]
    if fault in ("500", "429"):
        assert outcomes == ["retry", "sent"] and [p[2] for p in posts] == [fault, "pass"]
    else:  # the request may have arrived: look it up (GET), not found, send once more
        assert outcomes == ["ambiguous", "sent"]
        assert [p[2] for p in posts] == [fault, "pass"]
        assert any(s[0] == "GET" and "Messages.json" in s[1] for s in proxy.seen)
    assert len(mock.messages()) == 1  # the faulty one never reached the provider


def test_connection_refused_is_temporary(tmp_path: Path) -> None:
    from servers import free_port

    config = setup(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert dispatch(config) == ["retry"]


def test_test_sms_command(mock: TwilioMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    assert main(["--config", str(config), "test-sms"]) == 0
    assert "sent a test SMS to +30********78 via twilio (SM" in capsys.readouterr().out
    mock.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    assert main(["--config", str(config), "test-sms"]) == 1
    err = capsys.readouterr().err
    assert "21610" in err and "unsubscribed" in err and "6912345678" not in err


def test_crash_at_random_points_never_loses_or_triples(mock: TwilioMock, tmp_path: Path) -> None:
    """50 trials: start the sender, SIGKILL it at a random moment, start it again to the end."""
    rnd = random.Random(20261122)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT))
    harness = str(ROOT / "tests" / "sms_harness.py")
    killed_mid_run = 0
    per_trial = 12
    for trial in range(50):
        mock.clear()
        work = tmp_path / f"t{trial}"
        work.mkdir()
        tag = f"k{trial}x"
        config = setup(work, mock.url, n=per_trial, tag=tag)
        proc = subprocess.Popen([sys.executable, harness, str(config)], env=env, cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rnd.uniform(0.0, 0.15))  # the sends take about that long: kill somewhere inside
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait(timeout=30)
        subprocess.run([sys.executable, harness, str(config)], env=env, cwd=work, check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bodies = Counter(f["Body"].split(" Call ", 1)[1].split(" - ")[0] for f in mock.messages())
        want = {f"{tag}-{i}" for i in range(per_trial)}
        assert set(bodies) == want, f"trial {trial}: lost {want - set(bodies)}"
        assert max(bodies.values()) <= 2, f"trial {trial}: {bodies}"
    assert killed_mid_run >= 40  # the kills landed while it was working


def test_normal_path_sends_exactly_once(mock: TwilioMock, tmp_path: Path) -> None:
    mock.clear()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT))
    config = setup(tmp_path, mock.url, n=20, tag="once")
    for _ in range(3):
        subprocess.run([sys.executable, str(ROOT / "tests" / "sms_harness.py"), str(config)], env=env,
                       cwd=tmp_path, check=True, timeout=120)
    bodies = Counter(f["Body"] for f in mock.messages())
    assert len(bodies) == 20 and set(bodies.values()) == {1}


def test_api_key_auth(mock: TwilioMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mock.clear()
    config = setup(tmp_path, mock.url)
    monkeypatch.setenv("TEST_TWILIO_KEY_SECRET", "key-secret")
    config.write_text(config.read_text().replace(
        "  auth_token_env: TEST_TWILIO_TOKEN\n",
        "  api_key_sid: SK" + "1" * 32 + "\n  api_key_secret_env: TEST_TWILIO_KEY_SECRET\n"))
    assert dispatch(config) == ["sent"]
    (record,) = [r for r in mock.requests() if r.get("method") == "POST"]
    import base64
    assert base64.b64decode(str(record["authorization"]).split()[1]).decode() == "SK" + "1" * 32 + ":key-secret"
    assert f"/Accounts/{SID}/Messages.json" in str(record["path"])
