"""An in-memory calendar collection: the CalDAV model the engine relies on, without a server.

`MemoryCalendar` is a `CalendarStore` that behaves like a CalDAV collection
for the operations the sync uses: every write gives the object a new ETag
and moves the ctag and the sync token; creates are conditional on nothing
being there (If-None-Match: *), updates and deletes on the ETag (If-Match);
`changes(token)` answers like an RFC 6578 sync-collection REPORT, and a
token it does not know (or has forgotten) raises InvalidSyncToken.
`sync_tokens=False` makes it a server with a ctag only, `ctag=False` as well
one with neither (every sync lists it).

For tests it also keeps a log of the requests a CalDAV client would have
sent (`requests`, `counts`), can fail the next requests (`fail_next`), and
takes edits as a person's phone makes them (`edit`, `remove`, `add`,
`add_foreign`), which are not logged: they are another client.

It does not model: authentication, HTTP retries, calendar discovery, iCalendar
validation beyond "starts with BEGIN:VCALENDAR", the CalDAV no-uid-conflict
rule, server-side rewriting of the data, or ETags derived from the content
(real servers give the same ETag to the same bytes; here every write is new).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import AuthFailed, ReminderdError, ServerUnreachable
from .protocol import CalendarStore, Collection, InvalidSyncToken, PreconditionFailed, RequestFailed

READS = ("PROPFIND", "REPORT", "GET")
WRITES = ("PUT", "DELETE")


@dataclass(frozen=True, slots=True)
class Request:
    """One call, as the CalDAV request a client would have sent and the status a server answers."""

    method: str  # PROPFIND (collection, listing), REPORT (changes), GET, PUT, DELETE
    href: str
    status: int
    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    etag: str
    revision: int  # the collection's revision at its last write


@dataclass(slots=True)
class _Fault:
    method: str | None
    status: int
    times: int
    landed: bool


class MemoryCalendar:
    """One calendar collection held in memory; safe to use from several threads."""

    def __init__(
        self,
        url: str = "memory://localhost/calendars/alex/follow-ups/",
        *,
        sync_tokens: bool = True,
        ctag: bool = True,
        etags_on_put: bool = True,
        uid_salt: str = "",
        reuse_uids: bool = True,
        account: dict[bytes, str] | None = None,
    ) -> None:
        self._url = url if url.endswith("/") else url + "/"
        self.uid_salt = uid_salt
        self.reuse_uids = reuse_uids  # False: like Nextcloud, a deleted UID stays in a trash bin
        self._trash: set[bytes] = set()
        # shared by the calendars of one account where UIDs are unique per account (Cyrus)
        self._account = account
        self.path = urlsplit(self._url).path
        self.sync_tokens = sync_tokens
        self.ctag = ctag
        self.etags_on_put = etags_on_put  # False: like servers that send no ETag on PUT
        self._lock = threading.RLock()
        self._objects: dict[str, _Object] = {}
        self._deleted: dict[str, int] = {}  # href -> revision of its deletion
        self._revision = 0
        self._oldest_token = 0  # tokens for older revisions are forgotten
        self._etags = count(1)
        self._log: list[Request] = []
        self._faults: list[_Fault] = []

    @property
    def url(self) -> str:
        return self._url

    # -- the CalendarStore protocol

    def collection(self) -> Collection:
        with self._lock:
            self._begin("PROPFIND", self.path)
            self._log.append(Request("PROPFIND", self.path, 207))
            return Collection(
                self._token() if self.sync_tokens else None,
                f'"{self._revision}"' if self.ctag else None,
            )

    def listing(self) -> dict[str, str | None]:
        with self._lock:
            self._begin("PROPFIND", self.path)
            self._log.append(Request("PROPFIND", self.path, 207))
            return {href: obj.etag for href, obj in self._objects.items()}

    def changes(self, token: str) -> tuple[dict[str, str | None], set[str], str | None]:
        with self._lock:
            self._begin("REPORT", self.path)
            since = self._revision_of(token) if self.sync_tokens else None
            if since is None:
                self._log.append(Request("REPORT", self.path, 403))
                raise InvalidSyncToken("sync token refused (unknown to the calendar)")
            self._log.append(Request("REPORT", self.path, 207))
            changed: dict[str, str | None] = {
                href: obj.etag for href, obj in self._objects.items() if obj.revision > since
            }
            deleted = {href for href, at in self._deleted.items() if at > since}
            return changed, deleted, self._token()

    def get(self, href: str) -> tuple[bytes, str | None] | None:
        with self._lock:
            self._begin("GET", href)
            obj = self._objects.get(href)
            self._log.append(Request("GET", href, 200 if obj else 404))
            return (obj.data, obj.etag) if obj else None

    def put(self, href: str, data: bytes, etag: str | None, create: bool) -> str | None:
        if_match = None if create else etag
        with self._lock:
            lost = self._begin("PUT", href, if_match, create)
            current = self._objects.get(href)
            if (create and current is not None) or (
                if_match is not None and (current is None or current.etag != if_match)
            ):
                self._log.append(Request("PUT", href, 412, if_match, create))
                raise PreconditionFailed(f"PUT {href}: changed or exists on the server (412)")
            if not data.lstrip().startswith(b"BEGIN:VCALENDAR"):
                self._log.append(Request("PUT", href, 400, if_match, create))
                raise RequestFailed(f"PUT {href}: HTTP 400 (not iCalendar data)", 400)
            if _uid(data) in self._trash:
                self._log.append(Request("PUT", href, 409, if_match, create))
                raise RequestFailed(f"PUT {href}: HTTP 409 (UID in the trash bin)", 409)
            if self._account is not None:
                holder = self._account.setdefault(_uid(data), self._url)
                if holder != self._url:
                    self._log.append(Request("PUT", href, 403, if_match, create))
                    raise RequestFailed(
                        f"PUT {href}: HTTP 403 (UID in another calendar of the account)", 403
                    )
            new = self._store(href, data)
            self._log.append(Request("PUT", href, 204 if current else 201, if_match, create))
            if lost is not None:
                raise lost
            return new if self.etags_on_put else None

    def delete(self, href: str, etag: str | None) -> None:
        with self._lock:
            lost = self._begin("DELETE", href, etag)
            current = self._objects.get(href)
            if current is None:  # 404, like Radicale and Xandikos: not an error
                self._log.append(Request("DELETE", href, 404, etag))
            elif etag is not None and current.etag != etag:
                self._log.append(Request("DELETE", href, 412, etag))
                raise PreconditionFailed(f"DELETE {href}: changed on the server (412)")
            else:
                if not self.reuse_uids:
                    self._trash.add(_uid(current.data))
                if self._account is not None:
                    self._account.pop(_uid(current.data), None)
                self._remove(href)
                self._log.append(Request("DELETE", href, 204, etag))
            if lost is not None:
                raise lost

    def href_for(self, name: str) -> str:
        return self.path + name

    # -- what a person (or another client) does to the calendar: not logged as requests

    def objects(self) -> dict[str, bytes]:
        """Every object's data, by href."""
        with self._lock:
            return {href: obj.data for href, obj in self._objects.items()}

    def etag(self, href: str) -> str | None:
        with self._lock:
            obj = self._objects.get(href)
            return obj.etag if obj else None

    def add(self, name: str, data: bytes) -> str:
        """Store a new object called `name` (or replace it); returns its href."""
        href = self.href_for(name)
        with self._lock:
            self._store(href, data)
        return href

    def add_foreign(self, name: str, uid: str, summary: str = "Dentist (not reminderd's)") -> str:
        """An event another app created (no reminderd marks); returns its href."""
        return self.add(name, foreign_event(uid, summary))

    def edit(self, href: str, change: bytes | Callable[[bytes], bytes]) -> str:
        """Replace an object's data (or apply `change` to it), as a calendar app does.

        Returns its new ETag.
        """
        with self._lock:
            obj = self._objects.get(href)
            if obj is None:
                raise KeyError(f"no object {href} in the memory calendar")
            return self._store(href, change(obj.data) if callable(change) else change)

    def remove(self, href: str) -> None:
        """Delete an object, as a calendar app does."""
        with self._lock:
            if href not in self._objects:
                raise KeyError(f"no object {href} in the memory calendar")
            if not self.reuse_uids:
                self._trash.add(_uid(self._objects[href].data))
            self._remove(href)

    def forget_sync_tokens(self) -> None:
        """Every token given out so far becomes unknown, as after a server's cleanup or restore."""
        with self._lock:
            self._revision += 1
            self._oldest_token = self._revision

    # -- test hooks: the request log and injected failures

    def fail_next(
        self, method: str | None = None, status: int = 503, times: int = 1, *, landed: bool = False
    ) -> None:
        """The next `times` requests (of `method`: PROPFIND, REPORT, GET, PUT, DELETE;
        None: any) fail with `status`, before changing anything.

        The error is the one DavCalendar raises for that final status (401:
        AuthFailed; 502-504: ServerUnreachable; 412 on a write: PreconditionFailed;
        400/403/409/412 on REPORT: InvalidSyncToken; else RequestFailed).
        `landed=True`, for writes: the server applies the write and only the
        reply is lost, as when the connection drops after the server committed it.
        """
        if method not in (None, *READS, *WRITES):
            raise ValueError(f"fail_next: {method!r} is not one of {READS + WRITES}")
        with self._lock:
            self._faults.append(_Fault(method, status, times, landed))

    def requests(self, *methods: str) -> list[Request]:
        """Requests so far (only those of `methods`, if given), oldest first."""
        with self._lock:
            return [r for r in self._log if not methods or r.method in methods]

    def writes(self) -> list[Request]:
        """Every write request, including ones that failed."""
        return self.requests(*WRITES)

    def counts(self) -> Counter[str]:
        """How many requests of each method so far."""
        with self._lock:
            return Counter(r.method for r in self._log)

    def reset_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -- internals (called with the lock held)

    def _token(self) -> str:
        return f"{self._url}sync/{self._revision}"

    def _revision_of(self, token: str) -> int | None:
        prefix = f"{self._url}sync/"
        number = token[len(prefix) :] if token.startswith(prefix) else ""
        if not number.isdigit() or str(int(number)) != number:
            return None
        revision = int(number)
        return revision if self._oldest_token <= revision <= self._revision else None

    def _store(self, href: str, data: bytes) -> str:
        self._revision += 1
        etag = f'"m{next(self._etags)}"'
        self._objects[href] = _Object(data, etag, self._revision)
        self._deleted.pop(href, None)
        return etag

    def _remove(self, href: str) -> None:
        self._revision += 1
        del self._objects[href]
        self._deleted[href] = self._revision

    def _begin(
        self, method: str, href: str, if_match: str | None = None, if_none_match: bool = False
    ) -> ReminderdError | None:
        """Apply an injected failure to this request: raise it now, or (a write that
        lands) return it for the caller to raise once the write is done."""
        for fault in self._faults:
            if fault.method in (None, method):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                error = _error(method, href, fault.status)
                if fault.landed and method in WRITES:
                    return error
                self._log.append(Request(method, href, fault.status, if_match, if_none_match))
                raise error
        return None


def _error(method: str, href: str, status: int) -> ReminderdError:
    """The error DavCalendar raises for a final reply with this status."""
    if status == 401:
        return AuthFailed("the memory calendar refused the credentials (injected)")
    if status in (502, 503, 504):
        return ServerUnreachable(f"memory calendar: server unavailable (HTTP {status}, injected)")
    if method == "REPORT" and status in (400, 403, 409, 412):
        return InvalidSyncToken(f"sync token refused (HTTP {status}, injected)")
    if method in WRITES and status == 412:
        return PreconditionFailed(f"{method} {href}: changed on the server (412, injected)")
    return RequestFailed(f"{method} {href}: HTTP {status} (injected)", status)


def _uid(data: bytes) -> bytes:
    found = re.search(rb"^UID:(.*?)\r?$", data, re.M)
    return found.group(1).strip() if found else b""


def foreign_event(uid: str, summary: str) -> bytes:
    """A minimal event as another calendar app writes it: no reminderd marks."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//someone else//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20300101T000000Z",
        "DTSTART:20300712T090000Z",
        "DURATION:PT1H",
        f"SUMMARY:{summary}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


if TYPE_CHECKING:
    _twin: type[CalendarStore] = MemoryCalendar  # mypy checks the twin has the whole protocol
