"""SMS providers: Twilio (the official library) and `log` (write the SMS to the log).

The adapter turns the library's outcomes into three cases the outbox
understands: sent (a SID), failed for good (`SmsError(permanent=True)`),
failed for now (`SmsError(permanent=False)`), plus `Ambiguous` when the
request may have reached the provider but no answer came back.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ReminderdError, SmsError
from ..phone import mask

if TYPE_CHECKING:
    from ..replies.webhook import InboundMessage

log = logging.getLogger(__name__)

# Twilio error codes that no retry can fix.
PERMANENT_CODES = {
    20003: "authentication failed (check the account SID and token)",
    20404: "the account or resource was not found",
    21211: "the 'to' number is not a valid phone number",
    21408: "SMS to this region is not enabled on the account",
    21606: "the 'from' number cannot send SMS",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "this 'from' number cannot reach that 'to' number",
    21614: "the 'to' number is not a mobile number",
    21617: "the message is too long",
    30004: "the message was blocked",
}


QUEUED_LOOKUP = 50  # how many of the newest messages a look-up checks for ones still queued


class Ambiguous(ReminderdError):
    """The request may have been delivered to the provider; only a look-up can tell."""


class Sender(Protocol):
    name: str

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        """Send one SMS; returns the provider's message id."""

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        """The id of a message to `to` with this body (or one of these bodies), created at or
        after `since` (the provider's clock: the caller leaves a margin), if any.
        Raises `Ambiguous` when the provider cannot be asked: that is not "not sent"."""


class LogSender:
    """`provider: log`: the SMS goes to the log only (numbers masked)."""

    name = "log"

    def __init__(self) -> None:
        self.count = 0

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        self.count += 1
        log.info("SMS to %s: %s", mask(to), mask_numbers(body))
        return f"log-{self.count}"

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        return None  # the log keeps no record to ask


class TwilioSender:
    """Twilio's Messages API through the `twilio` library, pointed at `api_url`."""

    name = "twilio"
    lookup_page = 1000  # Twilio's largest page: one request unless a burst went out since
    lookup_limit = 20_000  # a bound far above what one phone receives within late_grace

    def __init__(
        self,
        account_sid: str,
        *,
        auth_token: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        api_url: str = "https://api.twilio.com",
        timeout: float = 15.0,
    ) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        base = api_url.rstrip("/")

        class _BaseUrlClient(TwilioHttpClient):  # type: ignore[misc]
            """Sends the library's requests to `api_url` (Twilio-compatible providers, tests)."""

            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                if base != "https://api.twilio.com":
                    url = re.sub(r"^https://[^/]+\.twilio\.com", base, url)
                return super().request(method, url, *args, **kwargs)

        http = _BaseUrlClient(timeout=timeout, max_retries=None)
        if api_key:
            self._client = Client(api_key, api_secret, account_sid=account_sid, http_client=http)
        else:
            self._client = Client(account_sid, auth_token, http_client=http)
        self._from = from_
        self._service = messaging_service_sid

    def inbound(self, since: datetime) -> list[InboundMessage]:
        """Messages received by our number since `since`'s UTC day (`sms.replies: poll`)."""
        from ..replies.poll import list_inbound

        if not self._from:
            raise SmsError(
                "sms.replies poll needs sms.from: the number replies go to", permanent=True
            )
        return list_inbound(self._client, our_number=self._from, since=since)

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from
        if validity_seconds:
            kwargs["validity_period"] = max(1, min(36000, validity_seconds))
        try:
            message = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise _classify(exc.status, exc.code, exc.msg) from None
        except TwilioException as exc:
            raise SmsError(f"Twilio client error: {type(exc).__name__}", permanent=True) from None
        except Exception as exc:  # requests' network errors, through the library
            raise _network(exc) from None
        return str(message.sid)

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        """Two questions, both filtered to `to` and (without a messaging service) our `from`.

        First what was sent since `since`: Twilio may apply the DateSent filter by day
        only, so the time is checked here again. Then, if that found nothing, what is
        still waiting in Twilio's queue: a queued message has no DateSent yet, so the
        first question cannot see it, and a crash right after the request is exactly
        when a message is still queued. A message Twilio reports as `failed` or
        `canceled` never went out and does not count.
        """
        wanted = {_words(b) for b in ((body,) if isinstance(body, str) else body)}
        floor = since.astimezone(UTC).replace(microsecond=0)  # Twilio's times have whole seconds
        query: dict[str, Any] = {"to": to}
        if self._from and not self._service:  # a service picks its sender from a pool
            query["from_"] = self._from
        try:
            for message in self._client.messages.stream(
                date_sent_after=floor, page_size=self.lookup_page, limit=self.lookup_limit, **query
            ):
                if _is_one_of(message, wanted, floor):
                    return str(message.sid)
            for message in self._client.messages.stream(
                page_size=QUEUED_LOOKUP, limit=QUEUED_LOOKUP, **query
            ):
                if message.date_sent is None and _is_one_of(message, wanted, floor):
                    return str(message.sid)
        except Exception as exc:  # a failed look-up is not an answer: the caller asks again later
            raise Ambiguous(f"message look-up failed ({type(exc).__name__})") from None
        return None


def _words(text: str | None) -> str:
    return " ".join((text or "").split())


def _is_one_of(message: Any, wanted: set[str], floor: datetime) -> bool:
    if (
        getattr(message, "status", None) in ("failed", "canceled")
        or _words(message.body) not in wanted
    ):
        return False
    when = getattr(message, "date_sent", None) or getattr(message, "date_created", None)
    return when is None or when >= floor


def _classify(status: int, code: int | None, message: str | None) -> SmsError:
    if status == 429 or status >= 500:
        return SmsError(
            f"provider busy or failing (HTTP {status}{f', code {code}' if code else ''})",
            permanent=False,
            code=code,
            status=status,
        )
    reason = PERMANENT_CODES.get(code or 0) or (message or "request refused")
    return SmsError(
        f"provider refused the SMS (HTTP {status}, code {code}): {mask_numbers(reason)}",
        permanent=True,
        code=code,
        status=status,
    )


def _network(exc: Exception) -> ReminderdError:
    """Connection refused or a connect timeout: nothing left, a retry is safe.
    A read timeout or a dropped reply: the request may have arrived."""
    chain: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(type(current).__name__)
        current = current.__cause__ or current.__context__
        if current is None and exc.args and isinstance(exc.args[0], BaseException):
            current = exc.args[0]
    names = " ".join(chain)
    text = str(exc)
    if (
        "ConnectTimeout" in names
        or "NewConnectionError" in names
        or "Connection refused" in text
        or "Failed to establish" in text
        or "NameResolution" in text
    ):
        return SmsError(f"cannot reach the SMS provider ({chain[0]})", permanent=False)
    return Ambiguous(f"no answer from the SMS provider ({chain[0]})")


def mask_numbers(text: str) -> str:
    """Mask anything that looks like a phone number in provider messages."""
    return re.sub(r"\+?\d[\d ]{6,}\d", lambda m: mask(m.group(0)), text)
