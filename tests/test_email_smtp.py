"""The SMTP sender against a real server on loopback (aiosmtpd), one outcome per case.

sent (the Message-ID), temporary (4xx, nothing listening, a silent server),
permanent (5xx, bad credentials, no STARTTLS, an untrusted certificate),
ambiguous (the whole message went out, then no final reply). Fixed times only.
"""

from __future__ import annotations

import email
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from servers import free_port
from smtpserver import USERS, SmtpTestServer, smtp_server

from reminderd.config import EmailConfig
from reminderd.email.message import build_alert, email_payload
from reminderd.email.smtp import EmailError, SmtpSender
from reminderd.model import Commitment, Contact, touches
from reminderd.sms.providers import Ambiguous

START = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Europe/Athens"))
NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
LOGIN = next(iter(USERS))
PASSWORD = USERS[LOGIN]
WRONG = "wrong-Pa55word-not-this-one"


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server() as server:
        yield server


def config(port: int, **overrides: object) -> EmailConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": None,
        "password": None,
        "sender": "reminderd@example.com",
        "to": "rep@example.com",
        "digest": None,
        "late_grace": timedelta(minutes=30),
        "timeout": timedelta(seconds=5),
    }
    values.update(overrides)
    return EmailConfig(**values)  # type: ignore[arg-type]


def message(key: str = "acme#0@-1d@20261130T080000Z") -> EmailMessage:
    c = Commitment(
        id="acme",
        title="Call Ζωή at ACME",
        start=START,
        duration=timedelta(minutes=30),
        contact=Contact("Ζωή Αλεξίου", "ACME", "+306912345678", "zoe@acme.example"),
        # a lone "." line would end the DATA early if it were not doubled
        purpose="Close the deal\n.\n.. and more",
        bring=("contract",),
    )
    return build_alert(
        email_payload(touches(c)[0]),
        sender="Reminders <reminderd@example.com>",
        to="Rep <rep@example.com>",
        key=key,
        now=NOW,
        domain="example.com",
    )


def test_accepted_once_with_content_intact(smtp: SmtpTestServer) -> None:
    msg = message()
    sent_id = SmtpSender(config(smtp.port), None).send(msg)
    assert sent_id == msg["Message-ID"]
    (got,) = smtp.handler.messages
    assert got.mail_from == "reminderd@example.com"
    assert got.rcpt_tos == ("rep@example.com",)
    assert smtp.handler.attempts == {"MAIL": 1, "RCPT": 1, "DATA": 1}
    assert got.data.replace(b"\r\n", b"\n") == msg.as_bytes(policy=policy.SMTP).replace(
        b"\r\n", b"\n"
    )
    back = email.message_from_bytes(got.data, policy=policy.default)
    assert back["Subject"] == "Follow-up: Call Ζωή at ACME — Mon 30 Nov 10:00"
    assert back["Message-ID"] == sent_id
    plain = back.get_body(("plain",))
    assert plain is not None
    assert "Why: Close the deal\n.\n.. and more\n" in plain.get_content().replace("\r\n", "\n")


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_4xx_is_temporary_and_a_retry_goes_through(smtp: SmtpTestServer, stage: str) -> None:
    smtp.handler.answer("421 4.3.2 Service busy, try later", at=stage, times=1)
    sender = SmtpSender(config(smtp.port), None)
    with pytest.raises(EmailError) as caught:
        sender.send(message())
    assert caught.value.permanent is False
    assert caught.value.code == 421
    assert stage in str(caught.value)
    assert smtp.handler.messages == []
    sender.send(message())
    assert len(smtp.handler.messages) == 1


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_550_is_permanent(smtp: SmtpTestServer, stage: str) -> None:
    smtp.handler.answer("550 5.1.1 No such user here", at=stage, times=None)
    with pytest.raises(EmailError) as caught:
        SmtpSender(config(smtp.port), None).send(message())
    assert caught.value.permanent is True
    assert caught.value.code == 550
    assert "No such user here" in str(caught.value)
    assert smtp.handler.messages == []


def test_auth_with_the_password(smtp: SmtpTestServer) -> None:
    sender = SmtpSender(config(smtp.port, username=LOGIN), PASSWORD)
    sender.send(message())
    (got,) = smtp.handler.messages
    assert got.login == LOGIN


def test_a_wrong_password_is_permanent_and_never_shown(
    smtp: SmtpTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender = SmtpSender(config(smtp.port, username=LOGIN), WRONG)
    with pytest.raises(EmailError) as caught:
        sender.send(message())
    exc = caught.value
    assert exc.permanent is True and exc.code == 535
    assert "email.password" in str(exc)
    shown = [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(exc)),
        repr(sender),
        str(sender),
        caplog.text,
    ]
    for text in shown:
        assert WRONG not in text
    assert "***" in repr(sender)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("reminderd"))
    for form in sender_forms(WRONG):
        assert form not in ours and form not in str(exc)
    assert smtp.handler.messages == []


def sender_forms(password: str) -> list[str]:
    import base64

    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{LOGIN}\0{password}".encode()).decode(),
    ]


def test_connection_refused_is_temporary() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(EmailError) as caught:
        SmtpSender(config(port), None).send(message())
    assert caught.value.permanent is False
    assert "cannot reach" in str(caught.value)


def test_a_silent_server_times_out_as_temporary() -> None:
    """Connected, but no greeting within the timeout: nothing was sent, a retry is safe."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        cfg = config(port, timeout=timedelta(seconds=0.5))
        with pytest.raises(EmailError) as caught:
            SmtpSender(cfg, None).send(message())
    assert caught.value.permanent is False


def test_dropped_after_the_data_is_ambiguous(smtp: SmtpTestServer) -> None:
    smtp.handler.drop_after_data()
    msg = message()
    with pytest.raises(Ambiguous) as caught:
        SmtpSender(config(smtp.port), None).send(msg)
    assert "may have accepted" in str(caught.value)
    (got,) = smtp.handler.dropped  # the server had all of it: only it knows what it kept
    assert got.data.replace(b"\r\n", b"\n") == msg.as_bytes(policy=policy.SMTP).replace(
        b"\r\n", b"\n"
    )
    assert smtp.handler.messages == []


def test_no_final_reply_within_the_timeout_is_ambiguous(smtp: SmtpTestServer) -> None:
    smtp.handler.drop_after_data(hang=True)
    cfg = config(smtp.port, timeout=timedelta(seconds=0.5))
    with pytest.raises(Ambiguous):
        SmtpSender(cfg, None).send(message())
    assert len(smtp.handler.dropped) == 1


# -- TLS


def test_starttls_with_a_trusted_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server(tls="starttls", tmp=tmp_path) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # read by create_default_context
        sender = SmtpSender(config(server.port, security="starttls", username=LOGIN), PASSWORD)
        sender.send(message())
        (got,) = server.handler.messages
        assert got.login == LOGIN


def test_tls_on_connect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server(tls="tls", tmp=tmp_path) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        SmtpSender(config(server.port, security="tls"), None).send(message())
        assert len(server.handler.messages) == 1


def test_an_untrusted_certificate_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server(tls="starttls", tmp=tmp_path) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
        sender = SmtpSender(config(server.port, security="starttls", username=LOGIN), PASSWORD)
        with pytest.raises(EmailError) as caught:
            sender.send(message())
        assert caught.value.permanent is True
        assert "not trusted" in str(caught.value)
        assert server.handler.messages == []
        assert PASSWORD not in str(caught.value)


def test_starttls_not_offered_never_falls_back_to_clear_text(smtp: SmtpTestServer) -> None:
    sender = SmtpSender(config(smtp.port, security="starttls", username=LOGIN), PASSWORD)
    with pytest.raises(EmailError) as caught:
        sender.send(message())
    assert caught.value.permanent is True
    assert "STARTTLS" in str(caught.value)
    assert smtp.handler.attempts == {}  # not even MAIL FROM went out


def test_the_server_sees_one_connection_per_send(smtp: SmtpTestServer) -> None:
    """Sends from several threads (the dispatcher's pool) do not share a connection."""
    sender = SmtpSender(config(smtp.port), None)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            sender.send(message(key=f"k{n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = sorted(email.message_from_bytes(m.data)["Message-ID"] for m in smtp.handler.messages)
    assert len(set(ids)) == 5
