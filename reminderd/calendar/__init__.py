"""Calendar access: the protocol the sync engine needs (`protocol`), the CalDAV adapter
(`dav`), its in-memory twin (`memory`) and the embedded server (`embedded`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import PortTaken
from ..statelock import daemon_pid
from .dav import DavCalendar, discover
from .embedded import EMBEDDED_NO_AUTH, EmbeddedServer, port_in_use
from .protocol import CalendarStore

if TYPE_CHECKING:
    from ..config import Config
    from ..store.protocol import StateStore
    from .oauth import BearerAuth

log = logging.getLogger(__name__)


def embedded_server(config: Config, password: str | None) -> EmbeddedServer:
    """The embedded server this config describes (not started): address, storage, auth."""
    cal = config.calendar
    return EmbeddedServer(cal.listen, config.state_dir / "calendar", cal.username, password)


@contextmanager
def open_calendar(
    config: Config, db: StateStore, *, serve: bool = True, create: bool = True
) -> Iterator[CalendarStore]:
    """The configured calendar, discovered once and remembered in the state.

    Without `calendar.url` the embedded server is used: started here if
    nothing listens on its address yet (`serve`), else reached as a client
    (a running daemon serves it).
    """
    cal = config.calendar
    secret = cal.password
    password = secret.resolve() if secret is not None else None
    username = cal.username
    server: EmbeddedServer | None = None
    url = cal.url
    rules = cal.rules
    auth = bearer_auth(config) if rules.oauth2 and url else None
    if not url:
        server = embedded_server(config, password)
        username, url = server.username, server.url
        password = password or EMBEDDED_NO_AUTH
        if port_in_use(server.host, server.port):
            if daemon_pid(config.state_dir) is None:
                raise port_taken(server)
            server = None  # this state's daemon serves it
        elif not serve:
            server = None
        else:
            server.start()
    try:
        key = _cache_key(config, url, username)
        found = db.get(key)
        if not found:
            found = discover(
                url, username, password, cal.name, cal.verify_tls, create, rules=rules, auth=auth
            )
            db.set(key, found)
        yield DavCalendar(
            found, username, password, cal.verify_tls, cal.connections, rules=rules, auth=auth
        )
    finally:
        if server is not None:
            server.stop()


def bearer_auth(config: Config) -> BearerAuth:
    """OAuth2 for this calendar; the secrets are resolved here, at first use."""
    from .oauth import BearerAuth

    cal = config.calendar
    assert cal.oauth_client_id and cal.oauth_client_secret and cal.oauth_refresh_token
    return BearerAuth(
        cal.oauth_client_id,
        cal.oauth_client_secret.resolve(),
        cal.oauth_refresh_token.resolve(),
        cal.oauth_token_url,
    )


def port_taken(server: EmbeddedServer) -> PortTaken:
    """A listener we did not start must never get the calendar password or the commitments."""
    return PortTaken(
        f"{server.host}:{server.port} (calendar.listen) is already taken by another "
        "process, not this config's reminderd daemon; reminderd will not send it the "
        "calendar password or any commitment. Stop that process, or set "
        "calendar.listen to a free port"
    )


def _cache_key(config: Config, url: str, username: str | None) -> str:
    return f"calendar-url:{url}|{config.calendar.name}|{username or ''}"


def forget_calendar(db: StateStore) -> None:
    """Drop every remembered calendar URL: the next open discovers again."""
    db.delete_prefix("calendar-url:")
