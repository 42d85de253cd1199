"""Real servers on 127.0.0.1 for the tests, and a recording proxy to count requests.

Radicale and Xandikos are pip packages (test extra) started here directly;
SabreDAV comes from ../shared/testbed (Debian's php-sabre-dav), Cyrus from Debian's
cyrus-imapd, cyrus-caldav and sasl2-bin (tests/cyrus.py). A server
that cannot be started is a skip with the reason, never a silent pass.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT.parent / "shared" / "testbed"


def wait_for(what: str, check: Callable[[], object], timeout: float, step: float = 0.1) -> object:
    """Poll `check` until it returns something true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


SERVICE_MANAGER_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")


def daemon_env(**extra: str) -> dict[str, str]:
    """The environment for a `reminderd` started by a test: this one without the service
    manager's variables (a daemon under test must not notify the systemd running the
    tests, or log as if journald read it), reminderd importable, plus `extra`."""
    clean = {k: v for k, v in os.environ.items() if k not in SERVICE_MANAGER_VARS}
    return dict(clean, PYTHONPATH=str(ROOT), **extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {url} after {timeout}s") from None
            time.sleep(0.1)


@dataclass
class CalendarServer:
    name: str
    url: str  # root or principal URL, for discovery
    username: str | None
    password: str | None
    stop: object = field(repr=False, default=None)


def start_radicale(
    tmp: Path, port: int | None = None
) -> tuple[CalendarServer, subprocess.Popen[bytes]]:
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    users = tmp / "users"
    users.write_text("alice:secret\n")
    cmd = [
        sys.executable,
        "-m",
        "radicale",
        "--config",
        "",
        "--server-hosts",
        f"127.0.0.1:{port}",
        "--auth-type",
        "htpasswd",
        "--auth-htpasswd-filename",
        str(users),
        "--auth-htpasswd-encryption",
        "plain",
        "--auth-delay",
        "0",
        "--storage-filesystem-folder",
        str(tmp / "collections"),
        "--logging-level",
        "warning",
    ]
    log = open(tmp / "log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/.web/", proc)
    return CalendarServer("radicale", f"http://127.0.0.1:{port}/", "alice", "secret"), proc


def start_xandikos(tmp: Path) -> tuple[CalendarServer, subprocess.Popen[bytes]]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "xandikos",
        "serve",
        "-d",
        str(tmp / "data"),
        "--defaults",
        "-l",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = open(tmp / "log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return CalendarServer("xandikos", f"http://127.0.0.1:{port}/user/", None, None), proc


def start_sabredav(tmp: Path) -> tuple[CalendarServer, list[int]]:
    script = TESTBED / "start-sabredav"
    if not script.exists():
        raise RuntimeError(f"{script} not found (the SabreDAV test bed lives in ../shared)")
    if shutil.which("php") is None and os.geteuid() != 0:
        raise RuntimeError(
            "php is not installed (apt-get install php-cli php-sabre-dav php-sqlite3)"
        )
    info = run_testbed(script, tmp, timeout=600)
    return (
        CalendarServer("sabredav", info["URL"], info["CALDAV_USER"], info["CALDAV_PASSWORD"]),
        [int(info["PID"])],
    )


CALENDAR_SERVERS = ("radicale", "xandikos", "sabredav", "cyrus")


def start_calendar_server(name: str, tmp: Path) -> tuple[CalendarServer, list[int]]:
    """One of CALENDAR_SERVERS on a free loopback port, and the pids to kill when done."""
    if name == "radicale":
        srv, proc = start_radicale(tmp)
        return srv, [proc.pid]
    if name == "xandikos":
        srv, proc = start_xandikos(tmp)
        return srv, [proc.pid]
    if name == "sabredav":
        return start_sabredav(tmp)
    if name == "cyrus":  # Debian's cyrus-imapd + cyrus-caldav (Fastmail's engine): tests/cyrus.py
        from cyrus import start_cyrus

        return start_cyrus(tmp)
    raise ValueError(f"unknown calendar server {name!r}; one of {CALENDAR_SERVERS}")


class CalendarServers:
    """The real calendar servers of one test module: each started on first use, then shared.

    A server that cannot be started here skips the tests that need it, with
    the reason; the failure is remembered, so it is tried once per module.
    """

    def __init__(self, mktemp: Callable[[str], Path]) -> None:
        self.mktemp = mktemp
        self.started: dict[str, CalendarServer] = {}
        self.failed: dict[str, str] = {}
        self.pids: list[int] = []

    def get(self, name: str) -> CalendarServer:
        import pytest

        if name not in self.started and name not in self.failed:
            try:
                srv, pids = start_calendar_server(name, self.mktemp(name))
            except (RuntimeError, OSError, ImportError, subprocess.TimeoutExpired) as exc:
                self.failed[name] = f"{name} could not be started here: {exc}"
            else:
                self.started[name] = srv
                self.pids += pids
        if name in self.failed:
            pytest.skip(self.failed[name])
        return self.started[name]

    def stop(self) -> None:
        for pid in self.pids:
            kill(pid)
        self.pids.clear()


def run_testbed(script: Path, tmp: Path, timeout: float) -> dict[str, str]:
    """Run a ../shared/testbed start-* script; its KEY=VALUE lines as a dict."""
    env = dict(os.environ, TESTBED_STATE=str(tmp), PYTHON=sys.executable)
    done = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed: {done.stderr.strip()[-500:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def relay(
    handler: BaseHTTPRequestHandler,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    data: bytes,
) -> None:
    """Send an upstream reply back through a proxy handler, with a fresh Content-Length."""
    handler.send_response_only(status, reason)
    for k, v in headers:
        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
            handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def stored_calendar_url(state_db: Path) -> str:
    """The calendar URL reminderd discovered and remembered in its state."""
    from reminderd.store.sqlite import StateDB

    db = StateDB(state_db)
    try:
        (url,) = [
            db.get(k) for (k,) in db.query("SELECT key FROM meta WHERE key LIKE 'calendar-url:%'")
        ]
    finally:
        db.close()
    return str(url)


def calendar_objects(url: str, auth: tuple[str, str] | None) -> dict[str, object]:
    """Every object in a calendar (href -> icalendar.Calendar), by one calendar-query REPORT."""
    import xml.etree.ElementTree as ET

    import icalendar
    import requests

    body = (
        '<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        '<d:prop><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"/></c:filter>'
        "</c:calendar-query>"
    )
    reply = requests.request(
        "REPORT",
        url,
        data=body,
        auth=auth,
        timeout=30,
        headers={"Depth": "1", "Content-Type": "application/xml"},
    )
    assert reply.status_code == 207, reply.text
    found: dict[str, object] = {}
    for resp in ET.fromstring(reply.content).findall("{DAV:}response"):
        data = resp.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
        if data:
            found[resp.findtext("{DAV:}href") or ""] = icalendar.Calendar.from_ical(data)
    return found


class DirectClient:
    """A calendar app on the user's phone: talks to one calendar straight (not through the
    proxy), so what it does is never counted as reminderd's traffic."""

    def __init__(self, calendar_url: str, server: CalendarServer) -> None:
        import requests

        self.url = calendar_url if calendar_url.endswith("/") else calendar_url + "/"
        self.auth = (server.username, server.password or "") if server.username else None
        self.session = requests.Session()
        self.session.auth = self.auth

    def objects(self) -> dict[str, object]:
        """Every object in the calendar (href -> icalendar.Calendar)."""
        return calendar_objects(self.url, self.auth)

    def get(self, name: str) -> bytes:
        reply = self.session.get(self.url + name, timeout=30)
        assert reply.status_code == 200, reply.status_code
        return reply.content

    def put(self, name: str, data: bytes, *, create: bool = False) -> None:
        headers = {"Content-Type": "text/calendar"}
        if create:
            headers["If-None-Match"] = "*"
        reply = self.session.put(self.url + name, data=data, headers=headers, timeout=30)
        assert reply.status_code in ((201, 204) if create else (200, 201, 204)), reply.status_code

    def delete(self, name: str) -> None:
        reply = self.session.delete(self.url + name, timeout=30)
        assert reply.status_code in (200, 204), reply.status_code


def kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


# -- recording proxy


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    headers: dict[str, str]


class RecordingProxy:
    """A loopback HTTP/1.1 proxy in front of one server that records every request.

    Keep-alive on both sides, so counting does not change the traffic shape.
    """

    WRITES: ClassVar[set[str]] = {
        "PUT",
        "DELETE",
        "MKCALENDAR",
        "MKCOL",
        "PROPPATCH",
        "POST",
        "MOVE",
        "COPY",
    }

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port_up = parts.hostname or "127.0.0.1", parts.port or 80
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go out in two writes: no 40 ms ACK stall
            )

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = getattr(self, "_up", None)
                if conn is None:
                    conn = self._up = http.client.HTTPConnection(
                        proxy.host, proxy.port_up, timeout=60
                    )
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                headers["Host"] = f"{proxy.host}:{proxy.port_up}"
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                except (OSError, http.client.HTTPException):
                    self._up = None
                    conn.close()
                    self.send_error(502)
                    return
                with proxy.lock:
                    proxy.seen.append(
                        Seen(self.command, self.path, reply.status, dict(self.headers.items()))
                    )
                relay(self, reply.status, reply.reason, reply.getheaders(), data)

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCALENDAR = _forward
            do_OPTIONS = do_POST = do_PROPPATCH = do_MKCOL = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()

    def requests(self, *methods: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if not methods or s.method in methods]

    def writes(self) -> list[Seen]:
        """Every write request, including a server-requested retry (423/5xx) of the same one."""
        return [s for s in self.requests() if s.method in self.WRITES]

    def landed(self) -> list[Seen]:
        """Writes the server accepted (2xx): what actually changed the calendar."""
        return [s for s in self.writes() if 200 <= s.status < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rewrite(self, url: str) -> str:
        """The same URL, through the proxy."""
        parts = urlsplit(url)
        return self.url + parts.path


@dataclass
class TwilioMock:
    """The testbed's Twilio mock in stateful mode: it keeps what was sent, and the
    Messages list (the look-up of an interrupted send) answers from that."""

    url: str
    requests_url: str
    pids: list[int]

    def requests(self) -> list[dict[str, object]]:
        import json

        with urllib.request.urlopen(self.requests_url, timeout=10) as reply:
            return list(json.load(reply))

    def clear(self) -> None:
        """Forget the recorded requests and the kept messages: each test starts from nothing."""
        for url in (self.requests_url, self.url + "/__testbed/messages"):
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()

    def clear_requests(self) -> None:
        """Forget the recorded requests only: the provider still has every message."""
        urllib.request.urlopen(
            urllib.request.Request(self.requests_url, method="DELETE"), timeout=10
        ).close()

    def kept(self) -> list[dict[str, object]]:
        """The messages the provider keeps (what `messages.list` answers from), oldest first."""
        import json

        with urllib.request.urlopen(self.url + "/__testbed/messages", timeout=10) as reply:
            return list(json.load(reply))

    def fail_next(
        self, status: int, code: int, message: str, count: int = 1, method: str | None = "POST"
    ) -> None:
        """The next `count` sends (POST; `method=None`: look-ups too) get a Twilio-shaped error."""
        import json

        body = json.dumps(
            {
                "status": status,
                "code": code,
                "message": message,
                "count": count,
                "path_contains": "Messages.json",
                "method": method,
            }
        ).encode()
        request = urllib.request.Request(
            self.url + "/__testbed/fail",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()

    def messages(self, accepted_only: bool = True) -> list[dict[str, str]]:
        """The form fields of every Messages.json POST the provider accepted (2xx), in order.

        A request cut off by a kill arrives without its form (no To, no Body): Prism still
        answers 201, but no real provider could send it, so it is not counted as a send.
        """
        return [
            r["form"]
            for r in self.requests()  # type: ignore[misc]
            if r.get("method") == "POST"
            and "Messages.json" in str(r.get("path"))
            and (
                not accepted_only
                or (
                    200 <= int(r.get("status") or 0) < 300
                    and {"To", "Body"} <= set(r.get("form") or {})
                )
            )
        ]


def start_twilio_mock(tmp: Path) -> TwilioMock:
    script = TESTBED / "start-twilio-mock"
    if not script.exists():
        raise RuntimeError(f"{script} not found (the Twilio mock lives in ../shared/testbed)")
    if (
        shutil.which("npm") is None
        and not (Path(os.environ.get("TESTBED_CACHE", "/tmp/testbed-cache"))).exists()
    ):
        raise RuntimeError("node and npm are needed for Prism (apt-get install nodejs npm)")
    # run_testbed's steps, with the mock in stateful mode, and up to three tries: the script
    # can take a Prism that is still starting for one that exited (it reads the process's
    # command line while it is being replaced), and says "server exited during startup"
    env = dict(os.environ, TESTBED_STATE=str(tmp), PYTHON=sys.executable, TWILIO_MOCK_STATEFUL="1")
    for attempt in (1, 2, 3):
        done = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=900)
        if done.returncode == 0:
            break
        if attempt == 3 or "exited during startup" not in done.stderr:
            raise RuntimeError(f"{script.name} failed: {done.stderr.strip()[-500:]}")
    info = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return TwilioMock(info["URL"], info["REQUESTS_URL"], [int(info["PID"]), int(info["PRISM_PID"])])
