"""Provider profiles: detection, alarm caps, UID rules, and Google's rules enforced by a proxy.

No network reaches the real providers here. A "Google-like" proxy in front of a
local Radicale enforces what Google documents: OAuth2 bearer tokens only (from
a local token endpoint), no `If-None-Match`, no MKCALENDAR. The device flow of
`reminderd auth google` runs against the same local endpoints.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import requests
from servers import CalendarServers

from reminderd.calendar.memory import MemoryCalendar
from reminderd.calendar.profiles import (
    PROFILES,
    cap_notes,
    capped,
    detect,
    nearest_alarms,
    uid_salt,
)
from reminderd.cli import main
from reminderd.ical import is_uid_of, uid_for
from reminderd.model import Commitment, Contact
from reminderd.store.sqlite import StateDB
from reminderd.sync.engine import sync_calendar

ATHENS = ZoneInfo("Europe/Athens")
D = timedelta


def item(i: int, **changes: Any) -> Commitment:
    base = Commitment(
        id=f"c{i}",
        title=f"Call customer {i}",
        start=datetime(2031, 5, 10 + i, 10, tzinfo=ATHENS),
        duration=D(minutes=15),
        contact=Contact(name=f"Person {i}"),
        alarms=(D(hours=-1),),
    )
    return dataclasses.replace(base, **changes)


# -- pure rules


@pytest.mark.parametrize(
    ("url", "profile"),
    [
        ("https://apidata.googleusercontent.com/caldav/v2/abc%40group/events/", "google"),
        ("https://caldav.icloud.com/1234/calendars/", "icloud"),
        ("https://caldav.fastmail.com/dav/calendars/user/a@b.c/", "fastmail"),
        ("https://cloud.example.org/remote.php/dav/calendars/alex/", "nextcloud"),
        ("https://dav.example.com/alex/", "generic"),
        (None, "generic"),
    ],
)
def test_the_profile_follows_the_url(url: str | None, profile: str) -> None:
    assert detect(url) == profile


def test_google_keeps_the_nearest_five_alarms_and_validate_says_so() -> None:
    alarms = (D(days=-2), D(days=-1), D(hours=-1), D(minutes=-10), D(0), D(minutes=-30))
    assert nearest_alarms(alarms, 5) == (
        D(days=-1),
        D(hours=-1),
        D(minutes=-10),
        D(0),
        D(minutes=-30),
    )
    c = item(1, alarms=alarms)
    (kept,) = capped((c,), PROFILES["google"])
    assert len(kept.alarms) == 5 and D(days=-2) not in kept.alarms
    (note,) = cap_notes((c,), PROFILES["google"])
    assert "c1 has 6 alarms; calendar.profile google keeps 5" in note and "-2d left out" in note
    assert capped((c,), PROFILES["generic"]) == (c,) and cap_notes((c,), PROFILES["fastmail"]) == []


def test_uids_with_a_salt_are_still_ours_and_nothing_else_is() -> None:
    assert is_uid_of(uid_for("c1#0"), "c1#0")
    assert is_uid_of(uid_for("c1#0", "~a1b2c3d4~2"), "c1#0")
    assert not is_uid_of(uid_for("c1#01"), "c1#0")
    assert not is_uid_of("c1#0~X!@reminderd", "c1#0")


def test_a_server_with_a_trash_bin_never_gets_a_deleted_uid_again(tmp_path: Path) -> None:
    """Nextcloud keeps a deleted UID in its trash bin: writing it again fails. A touch
    that comes back (or an event a person deleted, in repair mode) gets a new UID."""
    cal = MemoryCalendar(reuse_uids=False)
    db = StateDB(tmp_path / "state.sqlite3")
    try:
        items = [item(1), item(2), item(3)]
        assert sync_calendar(cal, db, items, progress=None).created == 3
        assert sync_calendar(cal, db, items[:2], progress=None).deleted == 1
        result = sync_calendar(cal, db, items, progress=None)  # c3 is back
        assert result.errors == [] and result.created == 1
        uids = {
            str(icalendar.Calendar.from_ical(d).walk("VEVENT")[0]["UID"])
            for d in cal.objects().values()
        }
        assert uid_for("c3#0") not in uids and uid_for("c3#0", "~2") in uids
        victim = next(h for h, d in cal.objects().items() if b"Call customer 1" in d)
        cal.remove(victim)  # deleted in a calendar app: into the trash bin too
        result = sync_calendar(cal, db, items, progress=None)  # repair mode: written again
        assert result.errors == [] and result.recreated == 1
        assert sync_calendar(cal, db, items, progress=None).line() == (
            "created 0, updated 0, deleted 0, unchanged 3"
        )
    finally:
        db.close()


# -- Google's rules, enforced by a proxy in front of Radicale


class OAuthServer:
    """A local token endpoint (refresh and device grants) and device-code endpoint."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.pending = 1  # device polls answered "authorization_pending" before the grant
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                form = dict(
                    urllib.parse.parse_qsl(
                        self.rfile.read(int(self.headers["Content-Length"])).decode()
                    )
                )
                if self.path == "/device/code":
                    self._json(
                        200,
                        {
                            "device_code": "dev-1",
                            "user_code": "ABCD-EFGH",
                            "verification_url": "https://example.invalid/device",
                            "expires_in": 60,
                            "interval": 0,
                        },
                    )
                    return
                if form.get("client_id") != "cid" or form.get("client_secret") != "csecret":
                    self._json(401, {"error": "invalid_client"})
                elif (
                    form.get("grant_type") == "refresh_token"
                    and form.get("refresh_token") == "refresh-1"
                ):
                    token = f"access-{len(outer.issued) + 1}"
                    outer.issued.append(token)
                    self._json(
                        200,
                        {
                            "access_token": token,
                            "expires_in": outer.expires_in,
                            "token_type": "Bearer",
                        },
                    )
                elif form.get("grant_type", "").endswith("device_code"):
                    if outer.pending:
                        outer.pending -= 1
                        self._json(428, {"error": "authorization_pending"})
                    else:
                        self._json(
                            200,
                            {"access_token": "a", "refresh_token": "refresh-1", "expires_in": 3600},
                        )
                else:
                    self._json(400, {"error": "invalid_grant"})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class GoogleLikeProxy:
    """Forwards to the real server only what Google would take; records what was refused."""

    def __init__(self, upstream: str, user: str, password: str, oauth: OAuthServer) -> None:
        self.refused: list[str] = []
        self.seen: list[tuple[str, str]] = []
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        outer = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                outer.seen.append((self.command, self.headers.get("Authorization") or ""))
                if bearer not in oauth.issued:
                    return self._refuse(401, "no valid bearer token")
                if self.command == "MKCALENDAR":
                    return self._refuse(403, "MKCALENDAR")
                if "If-None-Match" in self.headers:
                    return self._refuse(400, "If-None-Match")
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "authorization", "content-length")
                }
                headers["Authorization"] = basic
                reply = session.request(
                    self.command,
                    upstream + self.path,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                )
                self.send_response(reply.status_code)
                for k, v in reply.headers.items():
                    if k.lower() not in (
                        "transfer-encoding",
                        "content-encoding",
                        "content-length",
                        "connection",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def _refuse(self, status: int, why: str) -> None:
                outer.refused.append(why)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCALENDAR = do_OPTIONS = (
                _any
            )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        parts = urllib.parse.urlsplit(upstream)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    servers = CalendarServers(tmp_path_factory.mktemp)
    yield servers.get("radicale")
    servers.stop()


@pytest.fixture
def google(radicale: Any, tmp_path: Path) -> Iterator[tuple[GoogleLikeProxy, OAuthServer, str]]:
    """The proxy, the token endpoint, and the URL of a fresh calendar behind the proxy."""
    from reminderd.calendar.dav import discover

    name = f"Google {tmp_path.name}"
    real = discover(radicale.url, radicale.username, radicale.password, name)  # made by hand
    oauth = OAuthServer()
    proxy = GoogleLikeProxy(
        urllib.parse.urlsplit(real)._replace(path="").geturl(),
        radicale.username,
        radicale.password,
        oauth,
    )
    yield proxy, oauth, proxy.url + urllib.parse.urlsplit(real).path
    proxy.close()
    oauth.close()


def google_config(tmp_path: Path, url: str, oauth: OAuthServer, alarms: str = "[-1h]") -> Path:
    (tmp_path / "c.yaml").write_text(
        "commitments:\n"
        f"  - {{id: g1, title: Call Alex, when: '2031-05-12 10:00', alarms: {alarms}}}\n"
        "  - {id: g2, title: Call Bea, when: '2031-05-13 11:00'}\n"
    )
    (tmp_path / "config.yaml").write_text(
        "timezone: Europe/Athens\ncommitments: [c.yaml]\nstate_dir: state\n"
        f"calendar:\n  url: {url}\n  profile: google\n  oauth_client_id: cid\n"
        "  oauth_client_secret_env: G_SECRET\n  oauth_refresh_token_env: G_REFRESH\n"
        f"  oauth_token_url: {oauth.url}/token\n"
    )
    return tmp_path / "config.yaml"


@pytest.mark.server
def test_google_rules_sync_with_bearer_tokens_no_if_none_match_and_five_alarms(
    google: tuple[GoogleLikeProxy, OAuthServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy, oauth, url = google
    monkeypatch.setenv("G_SECRET", "csecret")
    monkeypatch.setenv("G_REFRESH", "refresh-1")
    config = google_config(tmp_path, url, oauth, alarms="[-3d, -2d, -1d, -1h, -10m, 0m]")
    assert main(["--config", str(config), "validate"]) == 0
    out = capsys.readouterr().out
    assert "g1 has 6 alarms; calendar.profile google keeps 5" in out and "-3d left out" in out
    assert main(["-v", "--config", str(config), "sync"]) == 0
    out = capsys.readouterr()
    assert "created 2, updated 0, deleted 0, unchanged 0" in out.out
    assert proxy.refused == []  # never an If-None-Match, never a MKCALENDAR, always a token
    assert all(auth.startswith("Bearer access-") for _, auth in proxy.seen)
    assert len(oauth.issued) == 1  # one token for the whole sync, refreshed only near expiry
    for secret in ("csecret", "refresh-1", "access-1"):
        assert secret not in out.out + out.err
    events = requests.request(
        "PROPFIND", url, headers={"Depth": "1", "Authorization": "Bearer access-1"}
    )
    assert events.status_code == 207
    assert main(["--config", str(config), "sync"]) == 0
    assert "created 0, updated 0, deleted 0, unchanged 2" in capsys.readouterr().out
    assert proxy.refused == []


@pytest.mark.server
def test_tokens_are_refreshed_before_they_expire(
    google: tuple[GoogleLikeProxy, OAuthServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, oauth, url = google
    oauth.expires_in = 60  # inside google-auth's refresh margin: a new token before each use
    monkeypatch.setenv("G_SECRET", "csecret")
    monkeypatch.setenv("G_REFRESH", "refresh-1")
    config = google_config(tmp_path, url, oauth)
    assert main(["--config", str(config), "sync"]) == 0
    assert len(oauth.issued) > 1 and proxy.refused == []


@pytest.mark.server
def test_google_cannot_create_a_calendar_and_says_what_to_do(
    radicale: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    oauth = OAuthServer()
    proxy = GoogleLikeProxy(radicale.url.rstrip("/"), radicale.username, radicale.password, oauth)
    try:
        monkeypatch.setenv("G_SECRET", "csecret")
        monkeypatch.setenv("G_REFRESH", "refresh-1")
        root = proxy.url + urllib.parse.urlsplit(radicale.url).path
        config = google_config(tmp_path, root, oauth)
        code = main(["--config", str(config), "sync"])
        err = capsys.readouterr().err
        assert code == 78, err
        assert "google does not let clients create calendars" in err
        assert "MKCALENDAR" not in proxy.refused
    finally:
        proxy.close()
        oauth.close()


def test_a_wrong_refresh_token_is_a_clear_error_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    oauth = OAuthServer()
    try:
        monkeypatch.setenv("G_SECRET", "csecret")
        monkeypatch.setenv("G_REFRESH", "revoked-token")
        config = google_config(tmp_path, "http://127.0.0.1:9/cal/", oauth)
        assert main(["--config", str(config), "sync"]) == 78
        err = capsys.readouterr().err
        assert "refused the refresh token (invalid_grant)" in err and "reminderd auth google" in err
        assert "revoked-token" not in err and "csecret" not in err
    finally:
        oauth.close()


def test_google_without_oauth_settings_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.yaml").write_text("commitments: []\n")
    (tmp_path / "config.yaml").write_text(
        "commitments: [c.yaml]\ncalendar:\n  url: https://apidata.googleusercontent.com/caldav/v2/x/events/\n"
        "  username: alex\n  password_env: NOPE\n"
    )
    assert main(["--config", str(tmp_path / "config.yaml"), "validate"]) == 78
    err = capsys.readouterr().err
    assert "calendar.profile google takes OAuth2 only: set calendar.oauth_client_id" in err
    assert "calendar.profile google takes no password, only OAuth2" in err


def test_auth_google_runs_the_device_flow_and_stores_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    oauth = OAuthServer()
    try:
        monkeypatch.setenv("G_SECRET", "csecret")
        monkeypatch.setenv("G_REFRESH", "unused")
        config = google_config(tmp_path, "http://127.0.0.1:9/cal/", oauth)
        assert main(["--config", str(config), "auth", "google"]) == 0
        out = capsys.readouterr().out
        assert "enter the code ABCD-EFGH" in out
        stored = tmp_path / "state" / "google-refresh-token"
        assert stored.read_text() == "refresh-1\n"
        assert stored.stat().st_mode & 0o777 == 0o600
        assert f"calendar.oauth_refresh_token_file: {stored}" in out and "refresh-1" not in out
    finally:
        oauth.close()


def test_two_calendars_of_one_account_with_the_same_commitments(tmp_path: Path) -> None:
    """Cyrus (Fastmail) refuses a UID another calendar of the account holds (403, seen
    on a real Cyrus in tests/cyrus.py); the fastmail profile's per-calendar suffix avoids it."""
    items = [item(1), item(2)]
    for name, expect_errors in (("generic", True), ("fastmail", False)):
        account: dict[bytes, str] = {}
        rules = PROFILES[name]
        results = []
        for path in ("/dav/calendars/user/alex/Work/", "/dav/calendars/user/alex/Home/"):
            cal = MemoryCalendar(
                f"memory://cyrus{path}", uid_salt=uid_salt(rules, path), account=account
            )
            db = StateDB(tmp_path / f"{name}-{path.strip('/').replace('/', '-')}.sqlite3")
            try:
                results.append(sync_calendar(cal, db, items, progress=None))
            finally:
                db.close()
        assert results[0].errors == [] and results[0].created == 2
        assert bool(results[1].errors) is expect_errors, (name, results[1])
        assert results[1].created == (0 if expect_errors else 2)
