"""Inbound SMS from Twilio's message list (`sms.replies: poll`, works behind NAT).

Twilio's list filters by day (GMT), may show a message minutes after it arrived,
and pages newest first. So this asks for everything sent to our number from the
UTC day of `since` on, without cutting at `since`'s exact time: a message that
shows up late with an earlier DateSent is still returned. The caller keeps the
sender it listens to and dedupes by MessageSid, which makes overlap harmless.

The client is the one `reminderd.sms.providers` builds (api_url rewrite, timeouts,
no retries of its own); this module only asks it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import SmsError
from ..sms.providers import mask_numbers
from .webhook import InboundMessage

if TYPE_CHECKING:
    from twilio.rest import Client

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # Twilio's largest page: one request on a normal day
LIMIT = 10_000  # far above the replies one phone sends in a day; newest are kept
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def list_inbound(client: Client, *, our_number: str, since: datetime) -> list[InboundMessage]:
    """Messages received by `our_number` on or after `since`'s UTC day, oldest first
    (by DateSent, then sid). Raises `SmsError` when Twilio cannot be asked: a retry
    later (`permanent=False`) or a configuration problem (`permanent=True`)."""
    if since.tzinfo is None:
        raise ValueError("list_inbound needs an aware `since`")
    day = since.astimezone(UTC).date().isoformat()  # a string: the library would add T00:00:00Z
    try:
        listed = client.messages.list(
            to=our_number, date_sent_after=day, page_size=PAGE_SIZE, limit=LIMIT
        )
    except Exception as exc:  # the library's errors and requests' network ones
        raise _error(exc) from None
    if len(listed) >= LIMIT:
        log.warning("listing replies: stopped at %d messages; older ones are not read", LIMIT)
    found = [_inbound(m) for m in listed if _direction(m) == "inbound"]
    found.sort(key=lambda m: (m.sent_at or _EPOCH, m.sid))
    return found


def _direction(message: Any) -> str:
    direction = getattr(message, "direction", None)
    return str(getattr(direction, "value", direction) or "")


def _inbound(message: Any) -> InboundMessage:
    sent = getattr(message, "date_sent", None) or getattr(message, "date_created", None)
    return InboundMessage(
        sid=str(message.sid),
        sender=str(message.from_ or ""),
        to=str(message.to or ""),
        body=str(message.body or ""),
        sent_at=sent.astimezone(UTC) if isinstance(sent, datetime) else None,
    )


def _error(exc: Exception) -> SmsError:
    """Twilio's answer as an SmsError: HTTP 429 and 5xx are worth a retry, other refusals
    (credentials, account) are not. The list call raises `TwilioException("Unable to fetch
    page", response)` for an error page; other calls raise `TwilioRestException`."""
    status, code, detail = _http_error(exc)
    if status is None:
        return SmsError(f"listing replies failed ({type(exc).__name__})", permanent=False)
    temporary = status == 429 or status >= 500
    reason = "" if temporary or not detail else f": {mask_numbers(detail)}"
    return SmsError(
        f"listing replies failed (HTTP {status}{f', code {code}' if code else ''}){reason}",
        permanent=not temporary,
        code=code,
        status=status,
    )


def _http_error(exc: Exception) -> tuple[int | None, int | None, str]:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        code = getattr(exc, "code", None)
        return status, code if isinstance(code, int) else None, str(getattr(exc, "msg", "") or "")
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None, None, ""
    try:
        payload = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    code = payload.get("code")
    return status, code if isinstance(code, int) else None, str(payload.get("message") or "")
