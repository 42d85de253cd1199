"""One outcome as recorded: what was decided about which touch, when, from where. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime

from ..model import Commitment

KINDS = ("done", "move", "snooze", "next", "skip")
SOURCES = ("sms", "calendar", "cli")


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str  # random; the log orders by (at, id)
    commitment: str
    touch: int  # the touch's index: 0 is the first, then each follow-up
    kind: str  # one of KINDS
    source: str  # one of SOURCES
    at: datetime  # aware: when it was recorded
    base: str  # `digest()` of the commitment as the file said it then
    note: str | None = None
    start: datetime | None = None  # move/next: the new time; snooze: the extra reminder
    purpose: str | None = None  # next: the new touch's purpose
    written: str | None = None  # None: not (yet) in the file; else what became of the write-back

    @property
    def in_file(self) -> bool:
        """Whether the file itself now says what this outcome's file part says."""
        return self.written == WRITTEN


WRITTEN = "written"  # `Outcome.written` once the YAML file carries the outcome

_SKIP = {"source", "changes", "owner"}  # a task handed to a colleague is the same task


def digest(c: Commitment) -> str:
    """The commitment as its file says it (not where: lines move when others are edited).

    An outcome the file does not carry (a CSV export, or a YAML file that could
    not be written) holds only while this stays what it was when it was taken:
    once the file itself changes the commitment, the file wins.
    """
    parts = tuple(repr(getattr(c, f.name)) for f in fields(c) if f.name not in _SKIP)
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
