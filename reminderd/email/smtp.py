"""Sending one email over SMTP (`smtplib`), with the outcome in the outbox's terms.

Like the SMS providers (`reminderd.sms.providers`), a send returns an id
(here the Message-ID) or raises one of:

- `EmailError(permanent=False)`: nothing was delivered and a retry may help
  (4xx replies, a refused or timed-out connection, a server that hung up
  before the end of the message data);
- `EmailError(permanent=True)`: the server refused for good (5xx: 550 on
  RCPT or DATA, 535 bad credentials), or our side cannot work (the server
  offers no STARTTLS, its certificate is not trusted);
- `Ambiguous`: the whole message went out, then the connection broke or
  timed out before the server's final reply: it may have accepted it.

The transaction is driven step by step (MAIL, RCPT, DATA, the data, the
final reply) rather than through `sendmail`, so this module knows, not
guesses, on which side of the end of the data a failure fell.

The password is kept out of every message, repr and log line; server
replies quoted in errors are scrubbed of it too.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import TYPE_CHECKING

from ..errors import SmsError
from ..sms.providers import Ambiguous

if TYPE_CHECKING:
    from ..config import EmailConfig

log = logging.getLogger(__name__)
REPLY_MAX = 200  # characters of a server reply quoted in an error


class EmailError(SmsError):
    """The SMTP server refused or failed a send; `permanent` says whether a retry can help.

    A kind of `SmsError` only so that the outbox's one delivery path
    (`Dispatcher.attempt`, which catches `SmsError`) classifies it as it
    is; `code` is the SMTP reply code when there was one.
    """


@dataclass(slots=True)
class _Progress:
    step: str = "connect"
    data_sent: bool = False  # the message and its final "." left: only the reply is missing


class SmtpSender:
    """One SMTP connection per send, as the `email:` section says.

    `security`: `starttls` (refuses to go on in clear text when the server
    offers no STARTTLS), `tls` (SMTPS), `none` (the config allows it on
    loopback only). Certificates are checked by `ssl.create_default_context()`.
    """

    name = "smtp"

    def __init__(self, cfg: EmailConfig, password: str | None) -> None:
        self.host = cfg.host
        self.port = cfg.port
        self.security = cfg.security
        self.username = cfg.username
        self.timeout = cfg.timeout.total_seconds()
        self._password = password
        self._context = ssl.create_default_context() if cfg.security != "none" else None

    def __repr__(self) -> str:
        secret = "***" if self._password else None
        return (
            f"SmtpSender({self.host}:{self.port}, security={self.security}, "
            f"username={self.username!r}, password={secret})"
        )

    def send(self, msg: EmailMessage) -> str:
        """Deliver `msg` to its To/Cc addresses; returns its Message-ID."""
        mid = str(msg.get("Message-ID") or "")
        if not mid:
            raise EmailError("the message has no Message-ID", permanent=True)
        sender, recipients, data = _envelope(msg)
        if self.username and self._password is None:
            raise EmailError("email.username is set but no email.password", permanent=True)
        progress = _Progress()
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open(progress)
            _transaction(smtp, sender, recipients, data, progress)
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            raise self._classify(exc, progress) from None
        try:
            smtp.quit()
        except OSError:  # smtplib's errors are OSErrors; the message is accepted already
            smtp.close()
        log.debug("SMTP %s:%d accepted %s", self.host, self.port, mid)
        return mid

    def _open(self, progress: _Progress) -> smtplib.SMTP:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                progress.step = "STARTTLS"
                smtp.ehlo()
                smtp.starttls(context=self._context)
                smtp.ehlo()
            if self.username:
                progress.step = "AUTH"
                smtp.login(self.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    # -- outcomes

    def _classify(self, exc: Exception, progress: _Progress) -> EmailError | Ambiguous:
        where = f"SMTP {self.host}:{self.port}"
        if isinstance(exc, EmailError | Ambiguous):
            return exc
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = list(exc.recipients.values())
            code, text = replies[0] if replies else (-1, b"")
            busy = bool(replies) and all(400 <= c < 500 for c, _ in replies)
            return self._reply_error(where, "RCPT", code, text, permanent=not busy)
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            if not 400 <= code < 600:  # no reply we can read
                if progress.data_sent:
                    return Ambiguous(f"{where}: unreadable reply after the message data")
                return self._reply_error(where, progress.step, code, exc.smtp_error, False)
            return self._reply_error(where, progress.step, code, exc.smtp_error, code >= 500)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return self._lost(where, progress, "connection closed")
        if isinstance(exc, smtplib.SMTPNotSupportedError) and progress.step == "STARTTLS":
            return EmailError(
                f"{where} offers no STARTTLS: not sending in clear text "
                "(use email.security tls if it speaks TLS on connect)",
                permanent=True,
            )
        if isinstance(exc, smtplib.SMTPException):  # no AUTH offered, no usable mechanism...
            return EmailError(
                f"{where} at {progress.step}: {self._scrub(str(exc))}", permanent=True
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return EmailError(
                f"{where}: its TLS certificate is not trusted ({exc.verify_message})",
                permanent=True,
            )
        if isinstance(exc, OSError):  # refused, unreachable, timed out, TLS broken off
            return self._lost(where, progress, type(exc).__name__)
        if progress.data_sent:
            return Ambiguous(f"{where}: {type(exc).__name__} after the message data")
        return EmailError(f"{where} at {progress.step}: {type(exc).__name__}", permanent=True)

    def _lost(self, where: str, progress: _Progress, what: str) -> EmailError | Ambiguous:
        if progress.data_sent:
            return Ambiguous(
                f"{where}: {what} after the message data, before the server's answer "
                "(it may have accepted it)"
            )
        if progress.step == "connect":
            return EmailError(f"cannot reach {where} ({what})", permanent=False)
        return EmailError(f"{where}: {what} at {progress.step}", permanent=False)

    def _reply_error(
        self, where: str, step: str, code: int, text: bytes | str, permanent: bool
    ) -> EmailError:
        reply = self._scrub(_reply_text(text))
        why = "refused" if permanent else "deferred"
        if step == "AUTH" and code == 535:
            reply += " (check email.username and email.password)"
        return EmailError(
            f"{where} {why} at {step}: {code} {reply}", permanent=permanent, code=code
        )

    def _scrub(self, text: str) -> str:
        """The password in any form a server could echo: plain, base64, AUTH PLAIN."""
        if not self._password:
            return text
        secret = self._password
        forms = [secret, _b64(secret), _b64(f"\0{self.username or ''}\0{secret}")]
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _reply_text(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    one = " ".join(raw.split())
    return one if len(one) <= REPLY_MAX else one[: REPLY_MAX - 1] + "…"


def _envelope(msg: EmailMessage) -> tuple[str, list[str], bytes]:
    """Envelope sender, recipients (To and Cc) and the bytes to send (CRLF, 7-bit)."""
    try:
        senders = getaddresses([str(v) for v in msg.get_all("Sender") or msg.get_all("From") or []])
        recipients = [
            a for _, a in getaddresses([str(v) for k in ("To", "Cc") for v in msg.get_all(k, [])])
        ]
        data = msg.as_bytes(policy=policy.SMTP)
    except Exception as exc:  # a bad header value: no server will ever take it
        raise EmailError(f"the message cannot be serialised ({exc})", permanent=True) from None
    if not senders or not senders[0][1] or not recipients:
        raise EmailError("the message needs From and To addresses", permanent=True)
    for addr in (senders[0][1], *recipients):
        if not addr.isascii():
            raise EmailError(f"address {addr!r} is not ASCII (SMTPUTF8)", permanent=True)
    return senders[0][1], recipients, data


def _transaction(
    smtp: smtplib.SMTP, sender: str, recipients: list[str], data: bytes, progress: _Progress
) -> None:
    """MAIL, RCPT, DATA, the data, the final reply: each step's failure is known for what it is."""
    smtp.ehlo_or_helo_if_needed()
    options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
    if not data.isascii():
        if not smtp.has_extn("8bitmime"):
            raise EmailError(
                "the message has 8-bit data and the server no 8BITMIME", permanent=True
            )
        options.append("BODY=8BITMIME")
    progress.step = "MAIL"
    code, reply = smtp.mail(sender, options)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    progress.step = "RCPT"
    refused: dict[str, tuple[int, bytes]] = {}
    for rcpt in recipients:
        code, reply = smtp.rcpt(rcpt)
        if code not in (250, 251):
            refused[rcpt] = (code, reply)
    if len(refused) == len(recipients):
        raise smtplib.SMTPRecipientsRefused(refused)
    if refused:
        log.warning("SMTP: %d of %d recipients refused", len(refused), len(recipients))
    progress.step = "DATA"
    code, reply = smtp.docmd("DATA")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    progress.step = "end of DATA"
    body = re.sub(rb"(?m)^\.", b"..", data)  # RFC 5321 4.5.2: a leading dot is doubled
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    smtp.send(body + b".\r\n")
    progress.data_sent = True
    code, reply = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
