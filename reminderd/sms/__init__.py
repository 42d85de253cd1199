"""SMS backups: message text, providers, the persistent outbox and its delivery rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dispatch import Dispatcher, SmsSettings
from .outbox import Outbox
from .providers import LogSender, Sender, TwilioSender

if TYPE_CHECKING:
    from ..clock import Clock
    from ..config import Config
    from ..sync.state import StateDB

__all__ = ["Dispatcher", "LogSender", "Outbox", "Sender", "SmsSettings", "TwilioSender",
           "make_dispatcher", "make_sender"]


def make_sender(config: Config) -> Sender:
    """The configured provider; secrets are resolved here, at first use."""
    sms = config.sms
    assert sms is not None
    if sms["provider"] == "log":
        return LogSender()
    if sms["api_key_sid"]:
        secret = sms["api_key_secret"]
        auth = {"api_key": sms["api_key_sid"], "api_secret": secret.resolve() if secret else None}
    else:
        auth = {"auth_token": sms["auth_token"].resolve()}
    return TwilioSender(sms["account_sid"].resolve(), **auth, from_=sms["from"],
                        messaging_service_sid=sms["messaging_service_sid"], api_url=sms["api_url"],
                        timeout=sms["timeout"].total_seconds())


def make_dispatcher(config: Config, db: StateDB, sender: Sender | None = None,
                    clock: Clock | None = None) -> Dispatcher:
    from ..timeparse import get_zone
    from .text import DEFAULT_TEMPLATE

    sms = config.sms
    assert sms is not None
    settings = SmsSettings(
        to=sms["to"] or "+0", zone=get_zone(config.timezone), quiet=sms["quiet_hours"],
        late_grace=sms["late_grace"], template=sms["template"] or DEFAULT_TEMPLATE,
        max_segments=sms["max_segments"], rate_per_minute=sms["rate_per_minute"])
    if clock is None:
        return Dispatcher(Outbox(db), sender or make_sender(config), settings)
    return Dispatcher(Outbox(db), sender or make_sender(config), settings, clock=clock)
