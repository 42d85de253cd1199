"""A real SMTP server on 127.0.0.1 for the email tests: aiosmtpd's threaded Controller.

Its handler records each accepted message, and can be told to misbehave:
answer a given reply at MAIL, RCPT or DATA for the next N attempts (or
always), or take the whole message and hang up without the final reply
(the case where only the server knows whether it kept the message). AUTH
PLAIN/LOGIN against a dict of users, allowed without TLS (loopback only).
With a certificate it offers STARTTLS, or speaks TLS on connect.

A server that cannot be started is a skip with the reason, never a silent pass.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servers import free_port

HOST = "127.0.0.1"
USERS = {"rep@example.com": "correct-horse-battery-staple"}


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None  # who authenticated, if anyone


@dataclass
class _Rule:
    stage: str  # MAIL | RCPT | DATA
    reply: str
    times: int | None  # None: always


@dataclass
class Recorder:
    """The aiosmtpd handler: hooks for MAIL, RCPT and DATA, and the scripted faults."""

    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    messages: list[Received] = field(default_factory=list)
    dropped: list[Received] = field(default_factory=list)  # taken, then hung up on
    attempts: dict[str, int] = field(default_factory=dict)  # per stage, faults included
    _rules: list[_Rule] = field(default_factory=list)
    _drops: int = 0
    _hang: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, reply: str, *, at: str = "DATA", times: int | None = 1) -> None:
        """Reply `reply` (`421 4.3.2 busy`) at `at` for the next `times` attempts (None: always)."""
        with self._lock:
            self._rules.append(_Rule(at.upper(), reply, times))

    def drop_after_data(self, times: int = 1, *, hang: bool = False) -> None:
        """Read the whole message, then close the connection without the final reply
        (`hang`: keep it open, silent, until the client gives up)."""
        with self._lock:
            self._drops += times
            self._hang = hang

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.dropped.clear()
            self.attempts.clear()
            self._rules.clear()
            self._drops = 0
            self._hang = False

    def _take(self, stage: str) -> str | None:
        with self._lock:
            self.attempts[stage] = self.attempts.get(stage, 0) + 1
            for rule in self._rules:
                if rule.stage == stage and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.reply
        return None

    # -- aiosmtpd hooks

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self._take("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self._take("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._take("DATA")
        if reply:
            return reply
        got = Received(
            envelope.mail_from,
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content or b""),
            session.auth_data if session.authenticated else None,
        )
        with self._lock:
            drop = self._drops > 0
            self._drops -= 1 if drop else 0
            (self.dropped if drop else self.messages).append(got)
        if drop:
            if not self._hang:
                server.transport.close()  # connection_lost then cancels this hook: no reply
            await asyncio.sleep(30)  # cancelled when the connection goes, or at stop()
        return "250 2.0.0 OK queued"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            if self.users.get(login) == auth_data.password.decode("utf-8", "replace"):
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


@dataclass
class SmtpTestServer:
    host: str
    port: int
    handler: Recorder
    cert: Path | None = None  # the self-signed certificate, for SSL_CERT_FILE


def make_cert(where: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl); skips when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate for the TLS tests")
    cert, key = where / "cert.pem", where / "key.pem"
    cmd = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl could not make a test certificate: {exc}")
    return cert, key


@contextmanager
def smtp_server(*, tls: str | None = None, tmp: Path | None = None) -> Iterator[SmtpTestServer]:
    """A running server; `tls`: None (plain), "starttls" or "tls" (TLS on connect, needs `tmp`)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError as exc:
        pytest.skip(f"aiosmtpd is not installed: {exc}")
    handler = Recorder()
    kwargs: dict[str, Any] = {}
    cert: Path | None = None
    if tls is not None:
        assert tmp is not None, "a TLS server needs a folder for its certificate"
        cert, key = make_cert(tmp)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs["tls_context" if tls == "starttls" else "ssl_context"] = context
    port = free_port()
    controller = Controller(
        handler,
        hostname=HOST,
        port=port,
        ready_timeout=10,
        authenticator=handler.authenticate,
        auth_require_tls=False,  # loopback only: lets AUTH be tested without a certificate
        **kwargs,
    )
    try:
        controller.start()
    except Exception as exc:  # aiosmtpd wraps bind and start-up failures in several types
        pytest.skip(f"aiosmtpd could not start on {HOST}:{port}: {exc!r}")
    try:
        yield SmtpTestServer(HOST, port, handler, cert)
    finally:
        controller.stop()
