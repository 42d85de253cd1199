"""Which email alerts should exist, and when: pure, like `sms.plan` for SMS.

Every (commitment, touch, offset) of `email:` is one planned send with the
same kind of deterministic key as an SMS backup (in the email outbox). No
quiet hours: an email waits in the inbox, it does not wake anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, timedelta

from ..model import Commitment, touches
from ..sms.plan import PlannedSend, send_key
from ..timeparse import apply_offset, format_offset
from .message import email_payload


def planned_emails(
    commitments: Iterable[Commitment],
    *,
    late_grace: timedelta,
    recipient: Callable[[Commitment], str | None] | None = None,
) -> dict[str, PlannedSend]:
    """Every email alert of every open touch of every open commitment.

    `recipient` (a team): the address a commitment's alerts go to, put in each
    payload as `to`; None (or no address) leaves `to` out: the configured one.
    """
    found: dict[str, PlannedSend] = {}
    for c in commitments:
        if not c.active or not c.email:
            continue
        to = recipient(c) if recipient is not None else None
        for t in touches(c):
            if not t.alerting:
                continue
            payload = email_payload(t)
            if to:
                payload["to"] = to
            for offset in c.email:
                due = apply_offset(t.start, offset).astimezone(UTC)
                key = send_key(t.key, offset, t.start)
                found[key] = PlannedSend(
                    key, due, due, due + late_grace, dict(payload, offset=format_offset(offset))
                )
    return found
