"""OAuth2 for CalDAV providers that take nothing else (Google): bearer tokens, refreshed.

The refresh token is a secret like any other (`calendar.oauth_refresh_token_file`,
`_credential`, ...). `google-auth` exchanges it for an access token and says
when that expires; a new one is fetched before then, under a lock, so the
sync's threads share one. No token ever reaches a log line, an error or a repr.

`device_flow` is the one-time `reminderd auth google`: the OAuth2 device flow
(RFC 8628), made for a machine without a browser, like a server running the
daemon: it prints a code to enter on any device, then stores the refresh token.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase

from ..errors import AuthFailed, ServerUnreachable

log = logging.getLogger(__name__)
SCOPE = "https://www.googleapis.com/auth/calendar"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class BearerAuth(AuthBase):
    """`Authorization: Bearer ...` for requests (and niquests, for discovery)."""

    def __init__(
        self, client_id: str, client_secret: str, refresh_token: str, token_url: str
    ) -> None:
        from google.oauth2.credentials import Credentials

        self._creds = Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=refresh_token,
            token_uri=token_url,
            client_id=client_id,
            client_secret=client_secret,
            scopes=[SCOPE],
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "BearerAuth(***)"

    def token(self) -> str:
        """A valid access token; a new one once the old is near its expiry."""
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        with self._lock:
            if not self._creds.valid:  # google-auth counts a token near expiry as not valid
                try:
                    self._creds.refresh(Request())  # type: ignore[no-untyped-call]
                except google.auth.exceptions.RefreshError as exc:
                    code = (
                        exc.args[1].get("error")
                        if len(exc.args) > 1 and isinstance(exc.args[1], dict)
                        else None
                    )
                    raise AuthFailed(
                        "the OAuth2 token endpoint refused the refresh token"
                        + (f" ({code})" if isinstance(code, str) else "")
                        + "; run `reminderd auth google` again"
                    ) from None
                except google.auth.exceptions.TransportError:
                    raise ServerUnreachable("the OAuth2 token endpoint cannot be reached") from None
            return str(self._creds.token)

    def __call__(self, r: Any) -> Any:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r


def device_flow(
    client_id: str,
    client_secret: str,
    token_url: str,
    device_url: str,
    show: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The refresh token the user grants through the device flow (bounded by its expiry)."""
    try:
        answer = requests.post(
            device_url, data={"client_id": client_id, "scope": SCOPE}, timeout=30
        )
    except requests.RequestException:
        raise ServerUnreachable(f"{device_url} cannot be reached") from None
    if answer.status_code != 200:
        raise AuthFailed(f"{device_url} refused the client (HTTP {answer.status_code})")
    grant = answer.json()
    where = grant.get("verification_url") or grant.get("verification_uri")
    show(f"open {where} on any device and enter the code {grant['user_code']}")
    interval = float(grant.get("interval", 5))
    deadline = time.monotonic() + float(grant.get("expires_in", 1800))
    while time.monotonic() < deadline:
        sleep(interval)
        try:
            reply = requests.post(
                token_url,
                data={
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "device_code": grant["device_code"],
                    "grant_type": DEVICE_GRANT,
                },
                timeout=30,
            )
        except requests.RequestException:
            continue  # a dropped poll: ask again at the next interval
        body = (
            reply.json()
            if reply.headers.get("Content-Type", "").startswith("application/json")
            else {}
        )
        if reply.status_code == 200 and body.get("refresh_token"):
            return str(body["refresh_token"])
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        raise AuthFailed(f"authorization not granted ({error or f'HTTP {reply.status_code}'})")
    raise AuthFailed("the code expired before it was entered; run `reminderd auth google` again")


def store_token(path: Path, token: str) -> None:
    """Write the refresh token readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
