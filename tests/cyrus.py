"""Cyrus IMAP's CalDAV server (the engine Fastmail runs), started here for the tests.

Debian's `cyrus-imapd`, `cyrus-caldav` and `sasl2-bin` (bookworm: Cyrus 3.6). Nothing of
the system's own Cyrus is used: its own imapd.conf and cyrus.conf point every path into a
fresh directory, the master process runs as an unprivileged user (the package's `cyrus`
user when the tests run as root, else the user running them), every service listens on
127.0.0.1 only, and the master is stopped by its PID (SIGTERM to its process group).

What it takes before a calendar appears:
  - a SASL user in a sasldb of its own (`saslpasswd2 -f`, realm = `servername`);
  - an INBOX: created on the user's first IMAP login (`autocreate_quota: 0`), so an
    IMAP service runs too (loopback, free port) and one login is made here;
  - the first DAV request then makes the calendar home with `Default`, `Inbox`, `Outbox`.

Cyrus keeps one UID namespace per account: a PUT of a UID already used in any other
calendar of the same user is refused (403, CALDAV:unique-scheduling-object-resource),
as on Fastmail. The contract suites make a fresh calendar per test with the same
commitment ids, so a small loopback front (`RetiringFront`) deletes the calendars made
by earlier tests when a new one is made: each test then has the account to itself, as a
user who moves reminderd to a new calendar on Fastmail must delete the old one.

Seen here (Cyrus 3.6.1): sync-collection and getctag are supported; an unknown sync token
is 403 DAV:valid-sync-token (so is one older than expunged records once they are purged,
which is why `expunge_mode` stays at its default, delayed); stale If-Match and
If-None-Match: * over an existing object are 412; PUT answers with a strong ETag, but a
compressed GET (gzip, the default for larger objects) answers with W/"same"; Cyrus
accepts that weak tag in If-Match. `CATEGORIES:a,b` is stored as two CATEGORIES lines.
An unauthenticated PROPFIND on `/` or `/dav/` is a 207 naming DAV:unauthenticated (no
401), so discovery there never sends the credentials; `/dav/calendars/` asks for them.
"""

from __future__ import annotations

import atexit
import http.client
import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from servers import CalendarServer, free_port, relay

APT_PACKAGES = ("cyrus-imapd", "cyrus-caldav", "sasl2-bin")
BIN = Path("/usr/lib/cyrus/bin")
USER, PASSWORD = "alice", "secret"
SERVERNAME = "localhost"  # also the SASL realm the users are looked up in
STARTUP_TIMEOUT = 30.0


def _run_user() -> pwd.struct_passwd:
    """Who the master runs as: never root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("cyrus")  # made by the cyrus-common package
    except KeyError:
        raise RuntimeError("no `cyrus` user (made by Debian's cyrus-common)") from None


def _configs(base: Path, user: str, http_port: int, imap_port: int) -> tuple[Path, Path]:
    conf = base / "conf"
    for sub in ("proc", "lock", "socket", "log"):
        (conf / sub).mkdir(parents=True)
    (base / "spool").mkdir()
    imapd = base / "imapd.conf"
    imapd.write_text(
        f"""\
configdirectory: {conf}
proc_path: {conf}/proc
mboxname_lockpath: {conf}/lock
lmtpsocket: {conf}/socket/lmtp
idlesocket: {conf}/socket/idle
notifysocket: {conf}/socket/notify
defaultpartition: default
partition-default: {base}/spool
temp_path: {base}
cyrus_user: {user}
servername: {SERVERNAME}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {base}/sasldb2
sasl_mech_list: PLAIN
autocreate_quota: 0
httpmodules: caldav
caldav_realm: reminderd-test
"""
    )
    cyrus = base / "cyrus.conf"
    c = f"-C {imapd}"  # children do not inherit master's -C: without it they read /etc
    cyrus.write_text(
        f"""\
START {{
  recover cmd="ctl_cyrusdb {c} -r"
}}
SERVICES {{
  http cmd="httpd {c}" listen="127.0.0.1:{http_port}" proto="tcp4" prefork=1
  imap cmd="imapd {c}" listen="127.0.0.1:{imap_port}" proto="tcp4" prefork=0
}}
EVENTS {{
  checkpoint cmd="ctl_cyrusdb {c} -c" period=30
}}
"""
    )
    return imapd, cyrus


def _wait_imap_login(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Log in once over IMAP: Cyrus creates the user's INBOX (autocreate_quota)."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cyrus master exited with {proc.returncode} during startup")
        try:
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cyrus imapd did not answer on port {port}") from None
            time.sleep(0.1)
            continue
        try:
            imap.login(USER, PASSWORD)
            status, _ = imap.select("INBOX")
            if status != "OK":
                raise RuntimeError("cyrus did not create the INBOX on login")
            imap.logout()
            return
        except imaplib.IMAP4.error as exc:
            raise RuntimeError(f"cyrus IMAP login failed: {exc}") from None


def _wait_calendar_home(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """The first DAV request makes the calendar home (Default, Inbox, Outbox)."""
    import requests

    home = f"http://127.0.0.1:{port}/dav/calendars/user/{USER}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cyrus master exited with {proc.returncode} during startup")
        try:
            reply = requests.request(
                "PROPFIND", home, auth=(USER, PASSWORD), headers={"Depth": "1"}, timeout=10
            )
            if reply.status_code == 207 and "/Default/" in reply.text:
                return
            problem = f"PROPFIND {home}: HTTP {reply.status_code}"
        except requests.RequestException as exc:
            problem = f"no answer from {home} ({type(exc).__name__})"
        if time.monotonic() > deadline:
            raise RuntimeError(problem)
        time.sleep(0.2)


def start_cyrus(tmp: Path) -> tuple[CalendarServer, list[int]]:
    missing = [p for p in ("master", "httpd", "imapd", "ctl_cyrusdb") if not (BIN / p).exists()]
    if missing or shutil.which("saslpasswd2") is None:
        raise RuntimeError(
            "Cyrus is not installed (apt-get install " + " ".join(APT_PACKAGES) + ")"
        )
    runas = _run_user()
    tmp.mkdir(parents=True, exist_ok=True)
    # not under pytest's tmp: its parents are private to the user running the tests
    base = Path(tempfile.mkdtemp(prefix="reminderd-cyrus-"))
    atexit.register(shutil.rmtree, base, True)
    (tmp / "cyrus-dir").write_text(f"{base}\n")
    http_port, imap_port = free_port(), free_port()
    imapd, cyrus = _configs(base, runas.pw_name, http_port, imap_port)
    made = subprocess.run(
        ["saslpasswd2", "-c", "-p", "-f", str(base / "sasldb2"), "-u", SERVERNAME, USER],
        input=PASSWORD.encode(),
        capture_output=True,
        timeout=30,
    )
    if made.returncode != 0:
        raise RuntimeError(f"saslpasswd2 failed: {made.stderr.decode(errors='replace')[-300:]}")
    root = os.geteuid() == 0
    if root:  # the master starts as the run user: it never holds root
        for path in [base, *base.rglob("*")]:
            os.chown(path, runas.pw_uid, runas.pw_gid)
    log = open(tmp / "log", "ab")  # master's own output; the services log to syslog
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "master"), "-C", str(imapd), "-M", str(cyrus), "-p", str(base / "pid"), "-D"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=base,
        env={"PATH": "/usr/bin:/bin", "HOME": str(base), "CYRUS_USER": runas.pw_name},
        user=runas.pw_uid if root else None,
        group=runas.pw_gid if root else None,
        extra_groups=[] if root else None,
    )
    try:
        deadline = started + STARTUP_TIMEOUT
        _wait_imap_login(imap_port, proc, deadline)
        _wait_calendar_home(http_port, proc, deadline)
    except BaseException:
        _stop(proc)
        raise
    (tmp / "startup-seconds").write_text(f"{time.monotonic() - started:.2f}\n")
    front = RetiringFront("127.0.0.1", http_port)
    # where discovery starts: its current-user-principal leads to /dav/calendars/user/alice/
    server = CalendarServer("cyrus", f"{front.url}/dav/calendars/", USER, PASSWORD)
    server.stop = front.close
    return server, [proc.pid]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 15)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


class RetiringFront:
    """A loopback pass-through in front of Cyrus that deletes the calendars made through
    it before, when a new one is made (MKCALENDAR, or an extended MKCOL, answered 201).

    Cyrus refuses a UID already used in another calendar of the same account; the suites
    reuse their commitment ids in a fresh calendar per test. Everything else (status,
    headers, body) passes unchanged, one upstream connection per client connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self.made: list[tuple[str, dict[str, str]]] = []  # path, auth header
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            _up: http.client.HTTPConnection | None = None  # per client connection

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, method: str, path: str, body: bytes | None, headers: dict[str, str]
            ) -> tuple[http.client.HTTPResponse, bytes]:
                conn = self._up
                if conn is None:
                    conn = self._up = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    reply = conn.getresponse()
                    return reply, reply.read()
                except (OSError, http.client.HTTPException):
                    self._up = None
                    conn.close()
                    raise

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                headers["Host"] = f"{host}:{port}"
                auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
                making = self.command in ("MKCALENDAR", "MKCOL")
                try:
                    if making:
                        with front.lock:
                            for path, old_auth in front.made:
                                self._send(
                                    "DELETE", path, None, {**old_auth, "Host": headers["Host"]}
                                )
                            front.made.clear()
                    reply, data = self._send(self.command, self.path, body, headers)
                except (OSError, http.client.HTTPException):
                    self.send_error(502)
                    return
                if making and reply.status == 201:
                    with front.lock:
                        front.made.append((self.path, auth))
                relay(self, reply.status, reply.reason, reply.getheaders(), data)

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCALENDAR = _forward
            do_OPTIONS = do_POST = do_PROPPATCH = do_MKCOL = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
