"""What the sync engine needs from a calendar, and the errors every backend raises.

Two backends implement `CalendarStore`: `dav.DavCalendar` (a CalDAV
collection on a real server) and `memory.MemoryCalendar` (its in-memory
twin for fast tests). One contract suite runs against both
(tests/test_engine_contract.py), so the engine is typed against this
protocol and never against one backend.

Hrefs are URL paths on the server (`/calendars/alex/follow-ups/x.ics`),
ETags are opaque strings as the server sends them (quotes included); a
backend may not know an ETag (None), and the engine then verifies content
instead. Writes are always conditional, so a repeated write is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import ReminderdError


class PreconditionFailed(ReminderdError):
    """412: the object changed (If-Match) or exists (If-None-Match) on the server."""


class InvalidSyncToken(ReminderdError):
    """The server no longer knows our sync token: fall back to a full listing."""


class RequestFailed(ReminderdError):
    """The server refused a request for another reason; `status` is its HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Collection:
    """What a depth-0 PROPFIND tells about the calendar.

    `sync_token` is None on a server without RFC 6578 sync-collection,
    `ctag` None on one without a collection tag; with neither, every sync
    lists the whole calendar.
    """

    sync_token: str | None
    ctag: str | None


class CalendarStore(Protocol):
    """One calendar collection, as the sync engine uses it.

    Besides the errors below, any call may raise `ServerUnreachable` or
    `AuthFailed` (from `reminderd.errors`). Implementations are used from
    several threads at once (the engine writes in parallel).
    """

    @property
    def url(self) -> str:
        """The collection's URL, ending in `/`: the key of its rows in the state."""
        ...

    @property
    def uid_salt(self) -> str:
        """What makes our UIDs unique on this calendar's account (`ical.uid_for`); often ""."""
        ...

    @property
    def reuse_uids(self) -> bool:
        """Whether a UID we deleted may be written again (not where a trash bin keeps it)."""
        ...

    def collection(self) -> Collection:
        """The collection's current sync token and ctag (one cheap read)."""
        ...

    def listing(self) -> dict[str, str | None]:
        """Every object in the calendar: href -> ETag (None if the server gave none)."""
        ...

    def changes(self, token: str) -> tuple[dict[str, str | None], set[str], str | None]:
        """What changed since `token`: (changed href -> ETag, deleted hrefs, new token).

        Raises InvalidSyncToken when the server does not know the token (or
        has no sync tokens at all): the caller lists the calendar instead.
        """
        ...

    def get(self, href: str) -> tuple[bytes, str | None] | None:
        """The object's data and ETag, or None if there is no such object."""
        ...

    def put(self, href: str, data: bytes, etag: str | None, create: bool) -> str | None:
        """Write one object; returns its new ETag when the server tells it.

        `create`: only if nothing is there yet (If-None-Match: *). Else with
        `etag`: only if the object still has that ETag (If-Match). Either
        precondition failing raises PreconditionFailed and changes nothing.
        """
        ...

    def delete(self, href: str, etag: str | None) -> None:
        """Delete one object, only if it still has `etag` when given (PreconditionFailed
        otherwise). An object already gone is not an error, except that a server
        may answer a conditional delete of it with 412 (SabreDAV does)."""
        ...

    def href_for(self, name: str) -> str:
        """The href an object called `name` (e.g. `reminderd-….ics`) has in this calendar."""
        ...
