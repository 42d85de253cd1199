"""The HTTP endpoint Twilio posts inbound SMS to (`sms.replies: webhook`).

Built on the standard library's `http.server.ThreadingHTTPServer`, not a web
framework: the whole protocol is one form POST answered with an empty TwiML
document, the server is maintained with CPython (no new dependency to pin and
audit), and each connection is bounded by a socket timeout (`TIMEOUT`) and the
body by `MAX_BODY`. Nothing else in the locked requirements serves HTTP for us
(Radicale serves the calendar, not arbitrary routes; aiohttp comes only as a
twilio dependency, with its own event loop to run).

Contract (SPEC, "From the phone back"): only POST to the path of `public_url`
(404 elsewhere, 405 for other methods), form-urlencoded, at most 64 KiB (413),
signed: `X-Twilio-Signature` is checked with the auth token against `public_url`
(the URL Twilio was told to call, not the address we listen on, which a proxy or
tunnel sits in front of). A missing or bad signature is 403 and `on_message` is
not called. A good one calls `on_message` synchronously and answers 200 with an
empty `<Response/>`; if `on_message` raises, 500, so Twilio retries, and the
caller dedupes by MessageSid. Only the auth-token signature (HMAC-SHA1) is
supported. The auth token and full phone numbers are never logged.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import PortTaken
from ..phone import mask

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
TIMEOUT = 10.0  # seconds a connection may stay silent, per socket operation
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
_POLL_INTERVAL = 0.2  # how often serve_forever looks for shutdown(): close() waits this long


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One SMS received by our number, from the webhook or from the message list."""

    sid: str  # MessageSid: the key that makes acting on it exactly-once
    sender: str  # From, E.164
    to: str  # To (our number)
    body: str
    sent_at: datetime | None  # aware UTC if known (the list has it, the webhook does not)


class _Form(dict[str, str]):
    """Form fields, first value per name, with every value for the signature check."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for name, value in pairs:
            self.setdefault(name, value)
            self._all.setdefault(name, []).append(value)

    def getlist(self, name: str) -> list[str]:  # what RequestValidator asks a Django QueryDict
        return self._all.get(name, [])


class ReplyWebhook:
    """Serves the reply endpoint on `listen` (`host:port`, port 0: any free port)."""

    def __init__(
        self,
        listen: str,
        public_url: str,
        auth_token: str,
        on_message: Callable[[InboundMessage], None],
    ) -> None:
        from twilio.request_validator import RequestValidator

        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"listen address must be HOST:PORT, not {listen!r}")
        self._host, self._port = host.strip("[]"), int(port)
        self.listen = listen
        self.public_url = public_url
        self.path = urlsplit(public_url).path or "/"
        self._validator = RequestValidator(auth_token)
        self._on_message = on_message
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread; `PortTaken` if the address cannot be had."""
        try:
            server = _Server(self, (self._host, self._port))
        except OSError as exc:
            reason = (
                "the address is in use (another reminderd, or another program?)"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror or type(exc).__name__
            )
            raise PortTaken(
                f"the reply webhook cannot listen on sms.webhook_listen {self.listen}: {reason}"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="reply-webhook",
            daemon=True,
        )
        self._thread.start()
        log.info("reply webhook on %s:%d, path %s", *self.address, self.path)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when `listen` asked for port 0)."""
        if self._server is None:
            raise RuntimeError("the reply webhook is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop accepting; returns within about `_POLL_INTERVAL`. A request being handled
        finishes on its own thread (bounded by `TIMEOUT`)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _valid(self, form: _Form, signature: str) -> bool:
        return bool(signature) and bool(self._validator.validate(self.public_url, form, signature))

    def _deliver(self, message: InboundMessage) -> None:
        self._on_message(message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # close() does not wait for a slow client: TIMEOUT bounds it

    def __init__(self, webhook: ReplyWebhook, address: tuple[str, int]) -> None:
        self.webhook = webhook
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr; one line in our log says enough
        log.warning("reply webhook: a request failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = TIMEOUT  # StreamRequestHandler puts it on the connection's socket
    server_version = "reminderd"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server's own lines go to stderr with full paths; we log what matters

    def do_POST(self) -> None:
        if not self._on_our_path():
            return
        length = self._length()
        if length is None:
            return
        try:
            raw = self.rfile.read(length)
        except OSError:  # a timeout or a reset mid-body: nothing to answer
            self.close_connection = True
            log.debug("reply webhook: the request body did not arrive")
            return
        if len(raw) < length:
            self.close_connection = True
            return
        try:
            form = _Form(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            self._reply(400, b"bad form body")
            return
        if not self.server.webhook._valid(form, self.headers.get("X-Twilio-Signature", "")):
            log.warning(
                "reply webhook: refused a request with a missing or bad signature (from %s)",
                self.client_address[0],
            )
            self._reply(403, b"bad signature")
            return
        if not (form.get("MessageSid") and form.get("From")):
            self._reply(400, b"MessageSid and From are required")
            return
        message = InboundMessage(
            sid=form["MessageSid"],
            sender=form["From"],
            to=form.get("To", ""),
            body=form.get("Body", ""),
            sent_at=None,
        )
        try:
            self.server.webhook._deliver(message)
        except Exception:  # Twilio retries a 500; the caller dedupes by MessageSid
            log.exception(
                "reply webhook: handling %s from %s failed", message.sid, mask(message.sender)
            )
            self._reply(500, b"not handled, try again")
            return
        log.debug("reply webhook: %s from %s handled", message.sid, mask(message.sender))
        self._reply(200, TWIML_EMPTY, "text/xml")

    def _not_post(self) -> None:
        if self._on_our_path():
            self._reply(405, b"POST only", headers=(("Allow", "POST"),))

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post

    def _on_our_path(self) -> bool:
        if urlsplit(self.path).path == self.server.webhook.path:
            return True
        self._reply(404, b"not found")
        return False

    def _length(self) -> int | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply(411, b"Content-Length required", close=True)
            return None
        text = self.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            self._reply(411, b"Content-Length required", close=True)
            return None
        length = int(text)
        if length > MAX_BODY:
            self._reply(413, b"body too large", close=True)
            return None
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            self._reply(415, b"form-urlencoded only", close=True)
            return None
        return length

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            if close:  # the body was not read: the connection cannot carry another request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True
