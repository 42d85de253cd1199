"""The domain: commitments, their touches and the alerts of each touch.

Frozen values and pure functions, no I/O. A commitment is what the user
wrote; a touch is one dated contact (the first, then each follow-up of the
cadence); an alert is one instant at which the user is reminded of a touch
(a calendar alarm or an SMS backup).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .timeparse import apply_offset, next_weekday

CHANNELS = ("call", "visit", "video", "email", "other")


class Status(enum.Enum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class AlertKind(enum.Enum):
    ALARM = "alarm"
    SMS = "sms"
    EMAIL = "email"


class TouchState(enum.Enum):
    """What became of one touch through an outcome (`reminderd.outcomes`)."""

    OPEN = "open"
    DONE = "done"  # kept in the calendar as "Done: ...", nothing alerts
    SKIPPED = "skipped"  # no event, nothing alerts; the cadence goes on


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a commitment was written: the file and the line of its entry."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Contact:
    name: str | None = None
    company: str | None = None
    phone: str | None = None  # E.164, normalised by the source
    email: str | None = None

    def label(self) -> str | None:
        """`Alex Valassidis (ACME)`, or whichever part is known."""
        if self.name and self.company:
            return f"{self.name} ({self.company})"
        return self.name or self.company


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One step of the cadence: `after` the previous touch, same local time,
    or `at` a fixed time (a moved follow-up, or one added by a `next` outcome)."""

    after: timedelta | None
    purpose: str | None = None
    at: datetime | None = None  # aware; wins over `after`


@dataclass(frozen=True, slots=True)
class TouchChange:
    """What outcomes made of one touch, laid over the file by `reminderd.outcomes`."""

    index: int
    start: datetime | None = None  # moved here (aware)
    state: TouchState = TouchState.OPEN
    snoozes: tuple[datetime, ...] = ()  # one extra SMS reminder at each of these instants


@dataclass(frozen=True, slots=True)
class Commitment:
    id: str
    title: str
    start: datetime  # aware, in the commitment's zone (a ZoneInfo)
    duration: timedelta
    channel: str = "call"
    contact: Contact = field(default_factory=Contact)
    purpose: str | None = None
    agenda: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    bring: tuple[str, ...] = ()
    next_step: str | None = None
    alarms: tuple[timedelta, ...] = ()
    sms: tuple[timedelta, ...] = ()
    follow_ups: tuple[FollowUp, ...] = ()
    skip_weekends: bool = False
    status: Status = Status.OPEN
    tags: tuple[str, ...] = ()
    source: SourceRef = SourceRef("-", 0)
    email: tuple[timedelta, ...] = ()  # email alert offsets, like `sms`
    changes: tuple[TouchChange, ...] = ()  # outcomes' overlay; empty as parsed from a file
    owner: str | None = None  # team mode: the person it belongs to (`people:`), by name

    @property
    def zone_name(self) -> str:
        return str(getattr(self.start.tzinfo, "key", self.start.tzinfo))

    @property
    def active(self) -> bool:
        """Open commitments alert; done and cancelled ones never do."""
        return self.status is Status.OPEN


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    offset: timedelta
    at: datetime  # aware, same zone as the touch


@dataclass(frozen=True, slots=True)
class Touch:
    """One dated contact of a commitment: index 0 is the first, then follow-ups."""

    commitment: Commitment
    index: int
    start: datetime
    purpose: str | None
    state: TouchState = TouchState.OPEN
    snoozes: tuple[datetime, ...] = ()

    @property
    def alerting(self) -> bool:
        """Whether this touch still reminds anyone: an open touch of an open commitment."""
        return self.commitment.active and self.state is TouchState.OPEN

    @property
    def key(self) -> str:
        """Stable identity of this touch, used in UIDs and send keys."""
        return f"{self.commitment.id}#{self.index}"

    @property
    def end(self) -> datetime:
        return apply_offset(self.start, self.commitment.duration)

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """Alarms and SMS backups, each an absolute instant, in time order.

        `apply_offset` reads an offset as a calendar app reads the alarm's
        TRIGGER: `-1d` is the same local time the day before, `-1h` one real
        hour before, also across a DST change.
        """
        c = self.commitment
        if not self.alerting:
            return ()
        items = [Alert(AlertKind.ALARM, off, apply_offset(self.start, off)) for off in c.alarms]
        items += [Alert(AlertKind.SMS, off, apply_offset(self.start, off)) for off in c.sms]
        items += [Alert(AlertKind.EMAIL, off, apply_offset(self.start, off)) for off in c.email]
        items += [Alert(AlertKind.SMS, at - self.start, at) for at in self.snoozes]
        return tuple(sorted(items, key=lambda a: (a.at.astimezone(UTC), a.kind.value)))


def touches(commitment: Commitment) -> tuple[Touch, ...]:
    """The first touch and one per follow-up, each after the previous one.

    Follow-ups keep the local time of day across DST changes (`after` is
    read like an alarm offset, see `apply_offset`). With
    `skip_weekends`, a follow-up landing on Saturday or Sunday moves to the
    Monday after, and the next one counts from there. The first touch is the
    user's own `when` and is never moved by the cadence.

    Outcomes (`commitment.changes`) move a touch (the ones after it count
    from its new time), mark it done or skipped, or add snoozes. A done or
    cancelled commitment keeps its touches up to the last one marked done
    (the first, when none is), and nothing after.
    """
    c = commitment
    changes = {ch.index: ch for ch in c.changes}
    result: list[Touch] = []
    previous = c.start
    steps = ((None, c.purpose), *((f, f.purpose or c.purpose) for f in c.follow_ups))
    for index, (step, purpose) in enumerate(steps):
        if step is None:
            start = c.start
        elif step.at is not None:
            start = step.at
        else:
            start = apply_offset(previous, step.after or timedelta(0))
            if c.skip_weekends and start.weekday() >= 5:
                start = apply_offset(start, next_weekday(start.date()) - start.date())
        change = changes.get(index)
        if change is None:
            result.append(Touch(c, index, start, purpose))
        else:
            start = change.start or start
            result.append(Touch(c, index, start, purpose, change.state, change.snoozes))
        previous = start
    if not c.active:
        done = [t.index for t in result if t.state is TouchState.DONE]
        result = result[: (max(done) if done else 0) + 1]
    return tuple(result)


def upcoming(commitments: Iterable[Commitment], since: datetime, until: datetime) -> list[Touch]:
    """Open touches of open commitments starting in [since, until), in time order."""
    # in UTC: two times in the same zone compare by wall clock, wrong inside a DST fold
    low, high = since.astimezone(UTC), until.astimezone(UTC)
    found = [
        t
        for c in commitments
        if c.active
        for t in touches(c)
        if t.state is TouchState.OPEN and low <= t.start.astimezone(UTC) < high
    ]
    found.sort(key=lambda t: (t.start.astimezone(UTC), t.key))
    return found
