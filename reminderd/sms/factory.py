"""The configured SMS parts: the provider and the dispatcher, built from `SmsConfig`.

Secrets are resolved here, at first use, never when the config is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import Clock, system_clock
from ..errors import SecretError
from .dispatch import DEFAULT_TUNING, Dispatcher, Tuning
from .outbox import Outbox
from .providers import LogSender, Sender, TwilioSender

if TYPE_CHECKING:
    from ..config import Config, SecretRef
    from ..email.dispatch import EmailDispatcher
    from ..store.leases import Leases
    from ..store.protocol import StateStore


def make_sender(config: Config) -> Sender:
    """The configured provider; secrets are resolved here, at first use."""
    sms = config.sms
    assert sms is not None
    if sms.provider == "log":
        return LogSender()
    if sms.api_key_sid:
        auth = {
            "api_key": sms.api_key_sid,
            "api_secret": _secret(sms.api_key_secret, "sms.api_key_secret"),
        }
    else:
        auth = {"auth_token": _secret(sms.auth_token, "sms.auth_token")}
    return TwilioSender(
        _secret(sms.account_sid, "sms.account_sid"),
        **auth,
        from_=sms.sender,
        messaging_service_sid=sms.messaging_service_sid,
        api_url=sms.api_url,
        timeout=sms.timeout.total_seconds(),
    )


def _secret(ref: SecretRef | None, option: str) -> str:
    if ref is None:
        raise SecretError(
            f"{option} is not set (give {option.split('.')[-1]}_env, _file, _command "
            "or _credential)"
        )
    return ref.resolve()


def make_dispatcher(
    config: Config,
    db: StateStore,
    sender: Sender | None = None,
    clock: Clock | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    owner: str | None = None,
    leases: Leases | None = None,
) -> Dispatcher:
    """The SMS dispatcher. `owner`: this daemon's identity, carried by its claims, whose
    leases (`leases_for(db, owner)` unless given) tell it which other daemons are alive."""
    from ..timeparse import get_zone

    assert config.sms is not None
    return Dispatcher(
        Outbox(db, owner=owner),
        sender or make_sender(config),
        config.sms,
        get_zone(config.timezone),
        clock or system_clock,
        tuning,
        leases=_leases(db, owner, leases),
    )


def _leases(db: StateStore, owner: str | None, given: Leases | None) -> Leases | None:
    if given is not None or owner is None:
        return given
    from ..store.leases import leases_for

    return leases_for(db, owner)


def make_email_dispatcher(
    config: Config,
    db: StateStore,
    clock: Clock | None = None,
    owner: str | None = None,
    leases: Leases | None = None,
) -> EmailDispatcher:
    """The email alerts' dispatcher; the SMTP password is resolved here, at first use.
    `owner` and `leases` as for `make_dispatcher`."""
    from ..email.dispatch import EmailDispatcher, MailSender
    from ..email.smtp import SmtpSender
    from ..timeparse import get_zone

    cfg = config.email
    assert cfg is not None
    password = cfg.password.resolve() if cfg.password else None
    return EmailDispatcher(
        Outbox(db, table="email_outbox", owner=owner),
        MailSender(SmtpSender(cfg, password)),
        cfg,
        get_zone(config.timezone),
        clock or system_clock,
        leases=_leases(db, owner, leases),
    )
