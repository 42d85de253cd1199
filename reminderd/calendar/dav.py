"""The CalDAV adapter: discovery through the `caldav` library, the hot path by hand.

Discovery (principal, calendar home, find or create the calendar by name)
is what `caldav` does well and happens once per config. The sync's own
requests (listing, sync-collection, conditional PUT and DELETE) go through a
kept-alive `requests` session per worker thread with explicit preconditions:
`If-None-Match: *` to create, `If-Match` to update and delete, on every
server alike. Library and HTTP errors become our own error types here.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from ..errors import AuthFailed, ReminderdError, ServerUnreachable
from ..retry import backoff
from .profiles import PROFILES, Profile, uid_salt

# Defined with the protocol, so every backend raises the same types; re-exported
# here for the callers that import them from the adapter.
from .protocol import Collection as Collection
from .protocol import InvalidSyncToken as InvalidSyncToken
from .protocol import PreconditionFailed as PreconditionFailed
from .protocol import RequestFailed as RequestFailed

log = logging.getLogger(__name__)
GENERIC = PROFILES["generic"]

NS = {"d": "DAV:", "cs": "http://calendarserver.org/ns/", "c": "urn:ietf:params:xml:ns:caldav"}
TIMEOUT = 30
RETRIES = 4


def _propfind_body(*props: str) -> bytes:
    inner = "".join(f"<{p}/>" for p in props)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" '
        f'xmlns:cs="http://calendarserver.org/ns/"><d:prop>{inner}</d:prop></d:propfind>'
    ).encode()


class DavCalendar:
    """One calendar collection on a CalDAV server (a `protocol.CalendarStore`)."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        verify_tls: bool = True,
        connections: int = 4,
        *,
        rules: Profile = GENERIC,
        auth: AuthBase | None = None,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.path = urlsplit(self.url).path
        self._auth: AuthBase | tuple[str, str] | None = auth or (
            (username, password or "") if username else None
        )
        self._verify = verify_tls
        self._local = threading.local()
        self._one_writer = threading.BoundedSemaphore(1)
        self._writers = threading.BoundedSemaphore(max(1, connections))
        self.rules = rules
        self.reuse_uids = rules.reuse_uids
        self.uid_salt = uid_salt(rules, self.path)
        self._pace = threading.Lock()
        self._next_request = 0.0

    # -- HTTP plumbing

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            session.auth = self._auth
            session.verify = self._verify
            session.headers["User-Agent"] = "reminderd"
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One request, retried on transient failures (5xx, 429, 423 Locked, dropped connections).

        Every request we send is safe to repeat: reads are, and writes carry a
        precondition, so a repeat of one that landed answers 412 or 404,
        which the engine understands. Xandikos, for one, answers 500 when
        two writes touch its git store at once.
        """
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            self._wait_turn()
            try:
                response = self._session().request(
                    method, url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
                )
            except requests.exceptions.SSLError as exc:
                raise ServerUnreachable(
                    f"{_origin(url)}: TLS error ({type(exc).__name__}); "
                    "check the certificate or calendar.verify_tls"
                ) from None
            except requests.RequestException as exc:
                if last or (isinstance(exc, requests.ConnectionError) and attempt >= 1):
                    raise ServerUnreachable(
                        f"{_origin(url)}: cannot reach the calendar server ({type(exc).__name__})"
                    ) from None
                self._local.session = None
            else:
                if response.status_code not in (423, 429, 500, 502, 503, 504) or last:
                    break
                if method in ("PUT", "DELETE") and response.status_code in (423, 500):
                    self._serialise_writes()
                wait = _retry_after(response)
                if wait is not None:  # the provider says how long (429, 503): do as it says
                    time.sleep(wait)
                    continue
            time.sleep(backoff(attempt, base=0.1, cap=2.0, jitter=0.5))
        if response.status_code == 401:
            raise AuthFailed(
                f"{_origin(url)} refused the credentials (check calendar.username and the password)"
            )
        if response.status_code in (502, 503, 504):
            raise ServerUnreachable(
                f"{_origin(url)}: server unavailable (HTTP {response.status_code})"
            )
        return response

    def _wait_turn(self) -> None:
        """At most one request per `rules.min_interval` (providers that rate-limit)."""
        if not self.rules.min_interval:
            return
        with self._pace:
            now = time.monotonic()
            start = max(now, self._next_request)
            self._next_request = start + self.rules.min_interval
        if start > now:
            time.sleep(start - now)

    def _multistatus(self, method: str, body: bytes, depth: str) -> ET.Element:
        response = self.request(
            method,
            self.url,
            body=body,
            headers={"Depth": depth, "Content-Type": "application/xml; charset=utf-8"},
        )
        if response.status_code != 207:
            if method == "REPORT" and response.status_code in (403, 409, 400, 412):
                raise InvalidSyncToken(f"sync token refused (HTTP {response.status_code})")
            raise RequestFailed(
                f"{method} {self.path}: HTTP {response.status_code}", response.status_code
            )
        try:
            return ET.fromstring(response.content)
        except ET.ParseError:
            raise RequestFailed(f"{method} {self.path}: unreadable XML reply") from None

    def _serialise_writes(self) -> None:
        """After a lock conflict, send one write at a time (Xandikos's git store needs it)."""
        if self._writers is not self._one_writer:
            log.debug("%s: write conflict; sending writes one at a time from now on", self.path)
            self._writers = self._one_writer

    # -- reading

    def collection(self) -> Collection:
        root = self._multistatus("PROPFIND", _propfind_body("d:sync-token", "cs:getctag"), "0")
        token = root.findtext(".//d:prop/d:sync-token", namespaces=NS)
        ctag = root.findtext(".//d:prop/cs:getctag", namespaces=NS)
        return Collection(token or None, ctag or None)

    def listing(self) -> dict[str, str | None]:
        """Every object in the calendar: href path -> ETag (one PROPFIND)."""
        root = self._multistatus("PROPFIND", _propfind_body("d:getetag", "d:resourcetype"), "1")
        found: dict[str, str | None] = {}
        for item in root.findall("d:response", NS):
            href = self._href(item)
            if href is None or href.rstrip("/") == self.path.rstrip("/"):
                continue
            if item.find(".//d:resourcetype/d:collection", NS) is not None:
                continue
            found[href] = _strong(item.findtext(".//d:getetag", namespaces=NS))
        return found

    def changes(self, token: str) -> tuple[dict[str, str | None], set[str], str | None]:
        """RFC 6578 sync-collection: (changed href -> ETag, deleted hrefs, new token)."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
            f"<d:sync-token>{_xml_text(token)}</d:sync-token><d:sync-level>1</d:sync-level>"
            "<d:prop><d:getetag/></d:prop></d:sync-collection>"
        ).encode()
        root = self._multistatus("REPORT", body, "1")
        changed: dict[str, str | None] = {}
        deleted: set[str] = set()
        for item in root.findall("d:response", NS):
            href = self._href(item)
            if href is None or href.rstrip("/") == self.path.rstrip("/"):
                continue
            status = item.findtext("d:status", namespaces=NS) or ""
            if " 404" in status:
                deleted.add(href)
            else:
                changed[href] = _strong(item.findtext(".//d:getetag", namespaces=NS))
        return changed, deleted, root.findtext("d:sync-token", namespaces=NS)

    def get(self, href: str) -> tuple[bytes, str | None] | None:
        response = self.request("GET", self._abs(href))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RequestFailed(f"GET {href}: HTTP {response.status_code}", response.status_code)
        return response.content, _strong(response.headers.get("ETag"))

    # -- writing, always conditional

    def put(self, href: str, data: bytes, etag: str | None, create: bool) -> str | None:
        """Create (If-None-Match: *) or update (If-Match). Returns the new ETag if given."""
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if create and self.rules.create_precondition:
            headers["If-None-Match"] = "*"
        elif create:  # no If-None-Match (Google): look first; a race is caught by the UID
            if self.get(href) is not None:
                raise PreconditionFailed(f"PUT {href}: exists on the server")
        elif etag:
            headers["If-Match"] = etag
        with self._writers:
            response = self.request("PUT", self._abs(href), body=data, headers=headers)
        if response.status_code == 412:
            raise PreconditionFailed(f"PUT {href}: changed or exists on the server (412)")
        if response.status_code == 403 and "unique-scheduling-object-resource" in response.text:
            raise RequestFailed(
                f"PUT {href}: the server already holds this event's UID in another calendar "
                "of the account (Cyrus, Fastmail: UIDs are unique per account); set "
                "calendar.profile: fastmail",
                403,
            )
        if response.status_code not in (200, 201, 204):
            raise RequestFailed(
                f"PUT {href}: HTTP {response.status_code} {_short(response.text)}",
                response.status_code,
            )
        return _strong(response.headers.get("ETag"))

    def delete(self, href: str, etag: str | None) -> None:
        headers = {"If-Match": etag} if etag else {}
        with self._writers:
            response = self.request("DELETE", self._abs(href), headers=headers)
        if response.status_code == 412:
            raise PreconditionFailed(f"DELETE {href}: changed on the server (412)")
        if response.status_code not in (200, 204, 404):
            raise RequestFailed(f"DELETE {href}: HTTP {response.status_code}", response.status_code)

    # -- helpers

    def href_for(self, name: str) -> str:
        return self.path + name

    def _abs(self, href: str) -> str:
        return urljoin(self.url, href)

    def _href(self, item: ET.Element) -> str | None:
        text = item.findtext("d:href", namespaces=NS)
        if not text:
            return None
        return unquote(urlsplit(text.strip()).path)


def _follow(
    url: str,
    username: str | None,
    password: str | None,
    verify_tls: bool,
    rules: Profile,
    auth: AuthBase | None,
) -> str:
    """Where `url` leads after the redirects a server gives for it (`/.well-known/caldav`)."""
    for _ in range(5):
        probe = DavCalendar(url, username, password, verify_tls, rules=rules, auth=auth)
        reply = probe.request("PROPFIND", probe.url, headers={"Depth": "0"})
        if reply.status_code not in (301, 302, 307, 308) or "Location" not in reply.headers:
            return url
        url = urljoin(probe.url, reply.headers["Location"])
    return url


def _strong(etag: str | None) -> str | None:
    """The ETag as listings give it: a compressed GET may mark it weak (`W/"x"`, Cyrus),
    and the same tag must compare equal however it was read."""
    return etag[2:] if etag and etag.startswith("W/") else etag


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a 429/503's Retry-After (a number of seconds), capped at 30."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "").strip()
    return min(float(value), 30.0) if value.isdigit() else None


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text[:200]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


class CalendarMissing(ReminderdError):
    """No calendar of that name yet, and we were asked not to create one (dry run)."""


class CalendarCannotBeCreated(ReminderdError):
    """No calendar of that name, and the provider does not let clients make one."""

    exit_code = 78  # a configuration the user must change


def discover(
    url: str,
    username: str | None,
    password: str | None,
    name: str,
    verify_tls: bool = True,
    create: bool = True,
    *,
    rules: Profile = GENERIC,
    auth: AuthBase | None = None,
) -> str:
    """The URL of the calendar called `name` (created if missing, where the provider
    lets clients create calendars).

    `url` may be a calendar itself, a principal, a calendar home or a server
    root; the `caldav` library walks the well-known discovery steps.
    """
    import caldav
    from caldav.lib import error as caldav_error

    url = _follow(url, username, password, verify_tls, rules, auth)
    probe = DavCalendar(url, username, password, verify_tls, rules=rules, auth=auth)
    root = probe._multistatus(
        "PROPFIND", _propfind_body("d:resourcetype", "d:current-user-principal"), "0"
    )
    if root.find(".//d:resourcetype/c:calendar", NS) is not None:
        return probe.url
    # asked with our credentials: a server that answers an anonymous PROPFIND with 207
    # and no principal (Cyrus at / and /dav/) would send the library astray
    principal_href = root.findtext(".//d:current-user-principal/d:href", namespaces=NS)
    try:
        client_class: Any = caldav.DAVClient
        extra: dict[str, Any] = {"auth": auth} if auth is not None else {}
        client = client_class(
            url=url,
            username=None if auth is not None else username,
            password=None if auth is not None else password,
            ssl_verify_cert=verify_tls,
            timeout=TIMEOUT,
            enable_rfc6764=False,
            **extra,
        )
        principal_class: Any = caldav.Principal
        principal: Any = (
            principal_class(client=client, url=urljoin(url, principal_href.strip()))
            if principal_href
            else client.principal()
        )
        for cal in principal.calendars():
            if (cal.get_display_name() or "") == name:
                return str(cal.url)
        if not create:
            raise CalendarMissing(f"no calendar named {name!r} on {_origin(url)} yet")
        if not rules.make_calendar:
            raise CalendarCannotBeCreated(
                f"no calendar named {name!r} on {_origin(url)}, and {rules.name} does not let "
                f"clients create calendars: create {name!r} there, or give its URL as "
                "calendar.url"
            )
        log.info("creating calendar %r on %s", name, _origin(url))
        created: Any = principal.make_calendar(name=name)
        return str(created.url)
    except caldav_error.AuthorizationError:
        raise AuthFailed(f"{_origin(url)} refused the credentials") from None
    except (CalendarMissing, CalendarCannotBeCreated):
        raise
    except Exception as exc:  # caldav raises DAVError, niquests and socket errors alike
        raise ServerUnreachable(
            f"{_origin(url)}: calendar discovery failed ({type(exc).__name__}: {_short(str(exc))})"
        ) from None
