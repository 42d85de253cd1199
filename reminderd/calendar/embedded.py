"""The embedded calendar: Radicale served in process, storage under the state dir.

Used when the config has no `calendar.url`, so a new user gets a calendar
to subscribe to with no account anywhere. It refuses to listen beyond
loopback without authentication.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

from ..errors import AuthFailed, ServerUnreachable
from ..netaddr import is_loopback

log = logging.getLogger(__name__)
EMBEDDED_USER = "reminderd"
STOP_WAIT = 10.0  # seconds stop() waits for the server thread
EMBEDDED_NO_AUTH = (
    "none"  # sent when the server has no auth: Radicale then takes the user name as given
)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.settimeout(1)
        return probe.connect_ex((host.strip("[]"), port)) == 0


class EmbeddedServer:
    """Radicale on `listen` in a background thread; `stop()` ends it cleanly."""

    def __init__(
        self, listen: str, storage: Path, username: str | None = None, password: str | None = None
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        if not is_loopback(host) and not (username and password):  # config checks it too
            raise AuthFailed(
                f"calendar.listen {listen} is beyond loopback: the embedded server "
                "requires authentication (calendar.username and a password)"
            )
        self.username = username or EMBEDDED_USER
        self.password = password
        self.storage = storage
        self._shutdown: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        from radicale import config as rconfig
        from radicale import server as rserver

        self.storage.mkdir(parents=True, exist_ok=True, mode=0o700)
        auth: dict[str, str] = {"type": "none"}
        if self.password:
            users = self.storage.parent / "embedded-users"
            users.touch(mode=0o600)
            users.write_text(f"{self.username}:{self.password}\n", encoding="utf-8")
            auth = {
                "type": "htpasswd",
                "htpasswd_filename": str(users),
                "htpasswd_encryption": "plain",
            }
        configuration = rconfig.load()
        configuration.update(
            {
                "server": {"hosts": f"{self.host}:{self.port}"},
                "auth": auth,
                "storage": {"filesystem_folder": str(self.storage)},
                "logging": {"level": "warning", "mask_passwords": "True"},
            },
            "reminderd",
        )
        inside, self._shutdown = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve,
            args=(rserver, configuration, inside),
            name="embedded-caldav",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not port_in_use(self.host, self.port):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServerUnreachable(
                    f"the embedded calendar server could not listen on "
                    f"{self.host}:{self.port} (is the port taken?)"
                )
            time.sleep(0.02)
        log.debug("embedded calendar server on %s (storage %s)", self.url, self.storage)

    @staticmethod
    def _serve(rserver, configuration, inside: socket.socket) -> None:  # type: ignore[no-untyped-def]
        try:
            rserver.serve(configuration, inside)
        except Exception as exc:  # reported by start() as "could not listen"
            log.error("embedded calendar server stopped: %s", exc)

    def stop(self) -> None:
        if self._shutdown is not None:
            self._shutdown.close()
            self._shutdown = None
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT)
            self._thread = None
