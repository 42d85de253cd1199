"""Delivering email alerts and the email digest: the SMS dispatcher's machine, email's parts.

What a send is made of changes (a whole message, built from the row's
payload at the claim, recorded, then handed to SMTP); the claim/send/record
path, the late and missed rules, the backoff and the crash rules do not. An
SMTP server cannot be asked whether it took a message, so an interrupted
send is repeated once (with the same Message-ID, so mail clients thread or
drop the copy) and then marked unconfirmed: at most two, as SPEC says.
"""

from __future__ import annotations

import email.policy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..clock import Clock, system_clock
from ..model import Commitment, upcoming
from ..sms.dispatch import Dispatcher, Tuning
from ..sms.outbox import Outbox, Row
from . import mask_address
from .message import build_alert, build_digest, email_payload
from .plan import planned_emails

if TYPE_CHECKING:
    from ..config import EmailConfig
    from ..store.leases import Leases
    from .smtp import SmtpSender

EMAIL_TUNING = Tuning(workers=4, lookup_delay=timedelta(0))  # nothing to look up: no wait


class MailSender:
    """`sms.providers.Sender` over SMTP: the outbox records a message as its RFC 5322 text."""

    name = "smtp"

    def __init__(self, smtp: SmtpSender) -> None:
        self.smtp = smtp

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        msg = message_from_bytes(body.encode("ascii"), policy=email.policy.SMTP)
        assert isinstance(msg, EmailMessage)  # policy SMTP parses into EmailMessage
        return self.smtp.send(msg)

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        return None  # SMTP keeps no list to ask: an interrupted send is repeated once


class EmailDispatcher(Dispatcher):
    channel = "email"

    def __init__(
        self,
        outbox: Outbox,
        sender: MailSender,
        cfg: EmailConfig,
        zone: ZoneInfo,
        clock: Clock = system_clock,
        tuning: Tuning = EMAIL_TUNING,
        *,
        people: Mapping[str, str] | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.cfg = cfg
        self.domain = cfg.sender.rpartition("@")[2].rstrip(">") or "reminderd.invalid"
        self._setup(outbox, sender, cfg.to, zone, clock, tuning, rate_per_minute=60)
        self.people = people
        self.leases = leases

    def shown(self, to: str) -> str:
        return mask_address(to)

    def replan(
        self, commitments: Iterable[Commitment], now: datetime | None = None
    ) -> dict[str, int]:
        planned = planned_emails(
            commitments, late_grace=self.cfg.late_grace, recipient=self.recipient
        )
        return self._reconcile(planned, now)

    def _text(self, row: Row, late: bool, now: datetime) -> str:
        if row.kind == "digest":
            msg = build_digest(
                list(row.payload["touches"]),
                day=datetime.fromisoformat(str(row.payload["day"])).date(),
                zone=self.zone,
                sender=self.cfg.sender,
                to=self.to_of(row),
                key=row.key,
                now=now,
                domain=self.domain,
            )
        else:
            msg = build_alert(
                row.payload,
                sender=self.cfg.sender,
                to=self.to_of(row),
                key=row.key,
                now=now,
                domain=self.domain,
            )
        return msg.as_bytes(policy=email.policy.SMTP).decode("ascii")

    def wordings(self, row: Row) -> tuple[str, ...]:
        return ()  # never looked up (`MailSender.find_sent`)

    def digest(self, commitments: Iterable[Commitment], now: datetime | None = None) -> str | None:
        """Queue today's agenda email (once per day), each touch with its full content.

        A team (`people`): one per person, to their address, of their own touches."""
        now = now or self.clock()
        local = now.astimezone(self.zone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        today = upcoming(list(commitments), now, (day_start + timedelta(days=1)).astimezone(UTC))
        day = local.date().isoformat()
        until = now + self.cfg.late_grace
        if self.people is None:
            payload = {"day": day, "touches": [email_payload(t) for t in today]}
            if self.outbox.add(f"digest@{day}", "digest", now, until, payload, now):
                return f"{len(today)} follow-ups"
            return None
        queued = []
        for name, to, own, _missed in self._per_person(today, []):
            payload = {"day": day, "touches": [email_payload(t) for t in own], "to": to}
            if self.outbox.add(f"digest@{day}@{name}", "digest", now, until, payload, now):
                queued.append(f"{name}: {len(own)} follow-ups")
        return ", ".join(queued) if queued else None
