"""Delivering due sends: late and missed rules, retries with backoff, crash recovery.

The dispatcher decides; it never sleeps. `run_due(now)` sends what is due
at `now` and is called by the scheduler (APScheduler in the daemon) or by a
test with its own clock.

The provider is asked before a send that might already have gone out: one
whose outcome a crash or a timeout hid, and one due before this state began
(the state database was deleted or damaged, and an earlier one may have sent
it). Matching is by the exact text the send would have had (on time or late,
today's time or a dated one) within a short window after its time.

Several daemons may share the outbox (a team on one PostgreSQL): each reserves
a few due rows at a time (`Outbox.reserve`), so a burst is shared, and only
sends whose daemon is gone are recovered (`recover`, judged by its lease). A
state database that stops answering after a send went out does not lose the
fact: the outcome is recorded again, with capped backoff, until it lands.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..clock import Clock, system_clock
from ..errors import SmsError, StateError
from ..model import Commitment, Touch, upcoming
from ..phone import mask
from ..retry import backoff
from . import refs
from .outbox import Outbox, Row
from .plan import PlannedSend, planned_sends
from .providers import Ambiguous, Sender
from .text import DEFAULT_TEMPLATE, Parts, clock_label, compose

if TYPE_CHECKING:
    from ..config import SmsConfig
    from ..store.leases import Leases

log = logging.getLogger(__name__)
LATE_AFTER = timedelta(minutes=2)  # later than this past its time, a backup says it is late
LOOKUP_MARGIN = timedelta(minutes=2)
"""A look-up asks for messages since this long before the send could have left: the
provider's clock and ours may differ a little. Kept short, because two offsets of one
touch (-10m and -5m) have the same text and only their times tell them apart."""
NEW_STATE_SLACK = timedelta(seconds=30)
"""A send due this little before the state began is not looked up: an earlier state
would have had to send it and be lost within those seconds. (A commitment added with
its SMS due right now is the common case, and a look-up for each would be waste.)"""
LOST_STATE_NOTE = "confirmed by look-up; the state had lost it"
LEASE = timedelta(seconds=60)
"""How long a daemon's reservation of due rows keeps them from the others (database
clock), renewed with each chunk; a claim by anyone else is refused meanwhile."""
RECONNECT_GRACE = timedelta(seconds=10)
"""After our own leases' session was (re)made, others are not judged dead for this long:
after a database restart every daemon's session is new, and one that has not reconnected
yet would look dead."""
RECORD_RETRY = (0.5, 5.0)  # seconds: recording an outcome again, doubling up to the cap


@dataclass(frozen=True, slots=True)
class Tuning:
    """How the dispatcher works, not what the user configures (that is `SmsConfig`)."""

    workers: int = 8
    batch: int = 1000  # sends taken per run: a burst of any size costs bounded memory
    lookup_delay: timedelta = timedelta(seconds=20)  # let a just-accepted message show in the list
    lease: timedelta = LEASE
    recover_every: timedelta = timedelta(seconds=3)  # look for sends of daemons that died
    reconnect_grace: timedelta = RECONNECT_GRACE


DEFAULT_TUNING = Tuning()


class RateLimiter:
    """At most `per_minute` starts per minute, spread evenly (thread-safe)."""

    def __init__(
        self,
        per_minute: int,
        sleep: Callable[[float], object] = _time.sleep,
        monotonic: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.interval = 60.0 / per_minute
        self.next = 0.0
        self.lock = threading.Lock()
        self.sleep = sleep
        self.monotonic = monotonic

    def wait(self) -> None:
        with self.lock:
            now = self.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            self.sleep(start - now)


class Dispatcher:
    """SMS backups. `email.dispatch.EmailDispatcher` is the same machine for email: it
    changes what is planned and what a send is made of, never the claim/send/record path.

    A team: `people` (name -> number) sends each commitment's alerts to its
    owner's number (kept in each row's payload as `to`; `self.to` otherwise) and
    makes the digest one per person. `leases` (this daemon's, `store.leases`)
    tells which other daemons are alive.
    """

    channel = "SMS"
    people: Mapping[str, str] | None  # a team: person -> number (address); None: one user
    leases: Leases | None  # this daemon's: who else is alive

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        sms: SmsConfig,
        zone: ZoneInfo,
        clock: Clock = system_clock,
        tuning: Tuning = DEFAULT_TUNING,
        *,
        people: Mapping[str, str] | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.sms = sms
        self.template = sms.template or DEFAULT_TEMPLATE
        self._setup(outbox, sender, sms.to or "", zone, clock, tuning, sms.rate_per_minute)
        self.people = people
        self.leases = leases

    def _setup(
        self,
        outbox: Outbox,
        sender: Sender,
        to: str,
        zone: ZoneInfo,
        clock: Clock,
        tuning: Tuning,
        rate_per_minute: int,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.to = to
        self.zone = zone
        self.tuning = tuning
        self.clock = clock
        self.people = None
        self.leases = None
        self._flying: Counter[str] = Counter()  # keys between claim and record, here
        self._flying_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(
            max_workers=tuning.workers, thread_name_prefix=self.channel.lower()
        )
        self.stopping = threading.Event()
        # its waits end at once on close(): a slow rate never holds up a stop
        self.limiter = RateLimiter(rate_per_minute, sleep=self.stopping.wait)
        self.last_sid: str | None = None  # the provider's id of the last send, for `test-sms`
        self.state_since = outbox.since(clock())  # sends due before it may have gone out already

    @property
    def shown_to(self) -> str:
        """The recipient as logs may show it."""
        return self.shown(self.to)

    def shown(self, to: str) -> str:
        """A recipient as logs may show it."""
        return mask(to)

    def recipient(self, c: Commitment) -> str | None:
        """Where a team's commitment's alerts go: its owner's number (address); None for
        one user's (`self.to`)."""
        return self.people.get(c.owner or "") if self.people else None

    def to_of(self, row: Row) -> str:
        """Where this row goes: its own `to` (a team's), else the configured recipient."""
        return str(row.payload.get("to") or self.to)

    def close(self) -> None:
        """Sends in flight finish and are recorded; queued ones stay pending for the next start
        (or another daemon: what this one had reserved is given back)."""
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.outbox.owner is not None:
            try:
                self.outbox.release([self.outbox.owner], self.clock())
            except StateError as exc:  # the others take them once the lease runs out
                log.debug("%s reservations not given back: %s", self.channel, exc)

    # -- planning

    def replan(
        self, commitments: Iterable[Commitment], now: datetime | None = None
    ) -> dict[str, int]:
        planned = planned_sends(
            commitments,
            quiet=self.sms.quiet_hours,
            zone=self.zone,
            late_grace=self.sms.late_grace,
            recipient=self.recipient,
        )
        if self.sms.reply_mode != "off":  # a reply may name its touch: ` #k3`
            found = refs.assign(self.outbox.db, {str(p.payload["touch"]) for p in planned.values()})
            for p in planned.values():
                p.payload["ref"] = found.get(str(p.payload["touch"]))
        return self._reconcile(planned, now)

    def _reconcile(
        self, planned: Mapping[str, PlannedSend], now: datetime | None
    ) -> dict[str, int]:
        counts = self.outbox.reconcile(planned, now or self.clock())
        if any(counts.values()):
            log.info(
                "%s schedule: %s",
                self.channel,
                ", ".join(f"{v} {k}" for k, v in counts.items() if v),
            )
        return counts

    # -- delivering

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Send what is due at `now` (up to `tuning.batch`), in parallel; returns each
        row's outcome.

        A chunk at a time: reserve as many rows as there are workers (fewer when the
        rate limit would make them outlast half a lease), deliver them, reserve the
        next; so another daemon takes its share of a burst. Each row at most once per
        run: one due again at once (a look-up without delay) waits for the next run.
        """
        now = now or self.clock()
        per_lease = self.tuning.lease.total_seconds() / max(self.limiter.interval, 1e-9)
        chunk = max(1, min(self.tuning.workers, int(per_lease / 2)))
        outcomes: list[str] = []
        seen: set[str] = set()
        while len(seen) < self.tuning.batch and not self.stopping.is_set():
            taken = self.outbox.reserve(
                now, min(chunk, self.tuning.batch - len(seen)), self.tuning.lease
            )
            rows = [r for r in taken if r.key not in seen]
            if not rows:
                break
            seen.update(r.key for r in rows)
            try:
                futures = [self.pool.submit(self.deliver, r) for r in rows]
            except RuntimeError:  # the pool is shutting down: the rest waits
                break
            failure: BaseException | None = None
            for future in futures:  # every one ends before the next chunk or a raise
                try:
                    outcomes.append(future.result())
                except CancelledError:  # stopping: it stays pending for the next start
                    continue
                except Exception as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure
        return outcomes

    def deliver(self, row: Row) -> str:
        if self.stopping.is_set():
            return "stopped"
        with self._in_flight(row.key):  # its failure is recorded before recovery may judge it
            return self._deliver(row)

    def _deliver(self, row: Row) -> str:
        now = self.clock()
        if row.ambiguous:
            # an earlier send may have arrived: ask the provider before anything else
            outcome = self._look_up(row, now)
            if outcome is not None:
                return outcome
        elif self.maybe_sent_before(row):
            outcome = self._look_up_lost(row, now)
            if outcome is not None:
                return outcome
        if now > row.deadline:
            return self._missed(row, now)
        self.limiter.wait()  # before the claim: a crash while waiting leaves nothing in flight
        if self.stopping.is_set():
            return "stopped"
        now = self.clock()  # the wait may have been long: late and missed are judged from here
        if now > row.deadline:
            return self._missed(row, now)
        body = self.body(row, late=now - row.send_at > LATE_AFTER)
        validity = int((max(row.deadline, _start(row)) - now).total_seconds())
        result = self.attempt(row.key, body, validity if validity > 0 else 60, self.to_of(row))
        return self._failure(row, result) if isinstance(result, SmsError) else result

    def attempt(self, key: str, body: str, validity: int, to: str | None = None) -> str | SmsError:
        """The one claim -> send -> record path, for backups, digests and `test-sms` alike.

        The claim is committed before the request leaves and `sent` after the answer,
        so a crash in between leaves a row that is looked up before any repeat; a
        state database gone in between is waited for (`record`). Returns "taken"
        (someone else claimed it), "sent", "ambiguous" (no answer: it will be looked
        up), or the provider's SmsError for the caller's retry policy. `to`: the
        row's recipient (`to_of`), else the configured one.
        """
        to = to or self.to
        with self._in_flight(key):
            if not self.outbox.claim(key, body, self.clock()):
                return "taken"
            try:
                sid = self.sender.send(to, body, validity)
            except SmsError as exc:
                return exc
            except Exception as exc:  # Ambiguous, or anything else once the request may have left
                when = self.clock() + self.tuning.lookup_delay
                error = f"outcome unknown: {exc}"
                self.record(
                    key, lambda: self.outbox.ambiguous_retry(key, self.clock(), error, when)
                )
                log.warning(
                    "%s %s: %s; asking the provider at %s before sending again",
                    self.channel,
                    key,
                    exc,
                    when.astimezone(self.zone).strftime("%H:%M:%S"),
                )
                return "ambiguous"
            self.record(key, lambda: self.outbox.sent(key, sid, self.clock()))
            log.info("%s %s sent to %s (%s)", self.channel, key, self.shown(to), sid)
            self.last_sid = sid
            return "sent"

    def record(self, key: str, action: Callable[[], object]) -> bool:
        """Record what a provider call did, whatever the state database is doing: a
        StateError is retried (RECORD_RETRY, capped backoff) until it lands (True) or
        the dispatcher closes (False: the row stays `sending`, claimed by us, and is
        looked up by the next start, or by another daemon once we are gone)."""
        delay, cap = RECORD_RETRY
        failed = False
        while True:
            try:
                action()
            except StateError as exc:
                if not failed:
                    log.warning(
                        "%s %s: its outcome could not be recorded (%s); retrying until the "
                        "state database answers",
                        self.channel,
                        key,
                        exc,
                    )
                    failed = True
                if self.stopping.wait(delay):
                    log.error(
                        "%s %s: stopping before its outcome was recorded; it is looked up "
                        "at the provider before any repeat",
                        self.channel,
                        key,
                    )
                    return False
                delay = min(delay * 2, cap)
                continue
            if failed:
                log.info("%s %s: outcome recorded", self.channel, key)
            return True

    @contextmanager
    def _in_flight(self, key: str) -> Iterator[None]:
        """This process is sending `key` (claimed, not yet recorded): `recover` leaves it."""
        with self._flying_lock:
            self._flying[key] += 1
        try:
            yield
        finally:
            with self._flying_lock:
                self._flying[key] -= 1
                if self._flying[key] <= 0:
                    del self._flying[key]

    def _is_flying(self, key: str) -> bool:
        with self._flying_lock:
            return key in self._flying

    def send_now(self, key: str, kind: str, text: str) -> str | SmsError:
        """One SMS right now (`test-sms`): queued, then sent through `attempt`; a provider
        error is recorded as final (nobody waits for a retry of a test)."""
        now = self.clock()
        # with its recipient: whichever daemon sends it, it goes where this one would
        payload = {"text": text, "to": self.to} if self.to else {"text": text}
        self.outbox.add(key, kind, now, now + timedelta(minutes=10), payload, now)
        with self._in_flight(key):
            outcome = self.attempt(key, text, 600)
            if isinstance(outcome, SmsError):
                error = str(outcome)
                self.record(key, lambda: self.outbox.failed(key, error, self.clock()))
        return outcome

    def _missed(self, row: Row, now: datetime) -> str:
        reason = (
            f"missed: {int((now - row.send_at).total_seconds() // 60)} min late, over late_grace"
        )
        self.outbox.missed(row.key, reason, now)
        log.warning("%s %s %s", self.channel, row.key, reason)
        return "missed"

    def maybe_sent_before(self, row: Row) -> bool:
        """Never tried from this outbox, but due before it began: an earlier state that was
        lost (deleted, damaged) may have sent it, and only the provider knows."""
        return (
            row.attempts == 0
            and row.kind != "test"
            and row.send_at < self.state_since - NEW_STATE_SLACK
        )

    def _look_up_lost(self, row: Row, now: datetime) -> str | None:
        """Ask the provider for a send the state may have lost; None means: send it now."""
        try:
            sid = self.sender.find_sent(
                self.to_of(row), self.wordings(row), row.send_at - LOOKUP_MARGIN
            )
        except Ambiguous as exc:
            if now + self.tuning.lookup_delay < row.deadline:
                self.outbox.retry_at(
                    row.key, now + self.tuning.lookup_delay, f"look-up failed: {exc}", now
                )
                return "lookup-later"
            # no time left to ask again: one copy more is better than none (at most two in all)
            log.warning(
                "%s %s: the provider could not be asked (%s); sending it",
                self.channel,
                row.key,
                exc,
            )
            return None
        if sid:
            self.outbox.sent(row.key, sid, now, note=LOST_STATE_NOTE)
            log.info("%s %s: already sent (%s), %s", self.channel, row.key, sid, LOST_STATE_NOTE)
            return "sent"
        return None

    def _look_up(self, row: Row, now: datetime) -> str | None:
        """Resolve a send whose outcome is unknown; None means: send (again) now."""
        try:
            sid = self.sender.find_sent(
                self.to_of(row), row.body or "", (row.started_at or now) - LOOKUP_MARGIN
            )
        except Ambiguous as exc:  # no answer is not "not sent": ask again later
            if now > row.deadline:
                return self._unconfirmed(row, now, f"the provider could not be asked ({exc})")
            self.outbox.retry_at(
                row.key, now + self.tuning.lookup_delay, f"look-up failed: {exc}", now
            )
            return "lookup-later"
        if sid:
            self.outbox.sent(
                row.key, sid, now, note="confirmed by look-up after an interrupted send"
            )
            log.info("%s %s: the interrupted send did arrive (%s)", self.channel, row.key, sid)
            return "sent"
        if row.ambiguous >= 2 or now > row.deadline:
            # one repeat was already spent, or it is too late: a repeat could be a third copy
            return self._unconfirmed(row, now, "not found at the provider")
        log.warning("%s %s: not found at the provider; sending it again", self.channel, row.key)
        return None

    def _unconfirmed(self, row: Row, now: datetime, why: str) -> str:
        self.outbox.unconfirmed(row.key, f"outcome unknown ({why}); not sent again", now)
        log.warning("%s %s: outcome unknown (%s); not sending it again", self.channel, row.key, why)
        return "unconfirmed"

    def body(self, row: Row, late: bool) -> str:
        return self._text(row, late, self.clock())

    def wordings(self, row: Row) -> tuple[str, ...]:
        """Every text this row may have gone out with: on time or late, with the time alone
        (`10:00`, sent the same day) or dated (`Wed 02 Dec 10:00`). Made by the code that
        makes the text, so a look-up matches exactly what a send would have said."""
        if row.kind != "backup":
            return (str(row.payload["text"]),)
        start = _start(row)
        texts = [
            self._text(row, late, label_day)
            for late in (False, True)
            for label_day in (start, start - timedelta(days=2))
        ]
        return tuple(dict.fromkeys(texts))

    def _text(self, row: Row, late: bool, now: datetime) -> str:
        p = row.payload
        if row.kind != "backup":
            return str(p["text"])
        start = _start(row).astimezone(ZoneInfo(str(p["zone"])))
        parts = Parts(
            late="LATE reminder: " if late else "",
            when=clock_label(start, now),
            title=str(p["title"]),
            who=f" - {p['who']}" if p.get("who") else "",
            phone=f" {p['phone']}" if p.get("phone") else "",
            why=f" Why: {p['why']}." if p.get("why") else "",
            bring=f" Bring: {p['bring']}." if p.get("bring") else "",
        )
        # the reference is part of the template, never trimmed away
        template = self.template + (f" #{p['ref']}" if p.get("ref") else "")
        return compose(parts, template, self.sms.max_segments)

    def _failure(self, row: Row, exc: SmsError) -> str:
        now = self.clock()
        key = row.key
        if exc.permanent:
            self.record(key, lambda: self.outbox.failed(key, str(exc), now))
            log.error(
                "%s %s to %s failed for good: %s",
                self.channel,
                key,
                self.shown(self.to_of(row)),
                exc,
            )
            return "failed"
        delay = backoff(row.attempts, base=2.0, jitter=0.5)
        when = now + timedelta(seconds=delay)
        if when > row.deadline:
            error = f"gave up after {row.attempts + 1} tries: {exc}"
            self.record(key, lambda: self.outbox.failed(key, error, now))
            log.error(
                "%s %s: gave up, provider still failing past its use: %s",
                self.channel,
                row.key,
                exc,
            )
            return "failed"
        self.record(key, lambda: self.outbox.retry_at(key, when, str(exc), now))
        log.warning("%s %s: %s; retrying in %.0f s", self.channel, key, exc, delay)
        return "retry"

    def recover(self) -> int:
        """Sends interrupted by a process that is gone: each is looked up at the provider
        before any repeat, once the interrupted request has had `lookup_delay` to show in
        the provider's list (the same wait as after a timeout: a quick restart must not
        ask too early). Returns how many.

        Gone: claimed by no one (an older schema, a single user's earlier run), by this
        daemon's identity but not in flight here (an earlier run of it), or by a daemon
        whose lease says it is dead; never one in flight in this process, and others
        are not judged within `reconnect_grace` of our own leases' (re)connection. At
        start it resolves what the last stop left; the scheduler runs it every few
        seconds when daemons share the outbox. A row that moved on meanwhile (recorded,
        claimed again) is left as it is.
        """
        rows = self.outbox.in_flight()
        now = self.clock()
        gone = self._judge()
        moved = 0
        for row in rows:
            if self._is_flying(row.key) or not gone(row.claimed_by):
                continue
            when = max(now, (row.started_at or now) + self.tuning.lookup_delay)
            why = (
                "interrupted by a restart"
                if row.claimed_by in (None, self.outbox.owner)
                else f"interrupted: daemon {row.claimed_by} is gone"
            )
            if self.outbox.interrupted(row, now, why, when):
                moved += 1
        return moved

    def free_reservations(self) -> int:
        """Due rows reserved by daemons that are gone are free for anyone now (else they
        wait for the lease to run out); returns how many."""
        gone = self._judge()
        dead = [o for o in self.outbox.reserved_by() if o != self.outbox.owner and gone(o)]
        return self.outbox.release(dead, self.clock()) if dead else 0

    def _judge(self) -> Callable[[str | None], bool]:
        """Whether the process behind a `claimed_by` is gone, asking each daemon's lease
        once per call."""
        leases = self.leases
        settled = (
            leases is None
            or not leases.shared
            or _time.monotonic() - leases.healthy_since
            >= self.tuning.reconnect_grace.total_seconds()
        )
        known: dict[str, bool] = {}

        def gone(owner: str | None) -> bool:
            if owner is None or owner == self.outbox.owner:
                return True  # not in flight here (checked first): an earlier process's
            if leases is None:
                return True  # one daemon per state: any other owner is an earlier process
            if not settled:
                return False
            if owner not in known:
                known[owner] = not leases.alive(owner)
            return known[owner]

        return gone

    # -- the daily agenda

    def digest(self, commitments: Iterable[Commitment], now: datetime | None = None) -> str | None:
        """Queue today's agenda SMS (once per day) and return its text.

        A team (`people`): one per person, to their number, of their own touches
        and missed backups (sent to that number); returns the texts
        queued now, one after the other, or None if every one was queued already."""
        now = now or self.clock()
        local = now.astimezone(self.zone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        today = upcoming(list(commitments), now, (day_start + timedelta(days=1)).astimezone(UTC))
        missed = self.outbox.missed_since(now - timedelta(days=1))
        grace = self.sms.late_grace
        if self.people is None:
            text = self._digest_text(local, today, missed)
            key = f"digest@{local.date().isoformat()}"
            if self.outbox.add(key, "digest", now, now + grace, {"text": text}, now):
                return text
            return None
        queued = []
        for name, to, own, own_missed in self._per_person(today, missed):
            text = self._digest_text(local, own, own_missed)
            key = f"digest@{local.date().isoformat()}@{name}"
            if self.outbox.add(key, "digest", now, now + grace, {"text": text, "to": to}, now):
                queued.append(text)
        return "\n\n".join(queued) if queued else None

    def _per_person(
        self, today: list[Touch], missed: list[Row]
    ) -> Iterator[tuple[str, str, list[Touch], list[Row]]]:
        """Each person of `people` with their number, their touches and missed backups."""
        for name, to in (self.people or {}).items():
            own = [t for t in today if t.commitment.owner == name]
            yield name, to, own, [r for r in missed if r.payload.get("to") == to]

    def _digest_text(self, local: datetime, today: list[Touch], missed: list[Row]) -> str:
        plural = "s" if len(today) != 1 else ""
        lines = [f"Today {local.strftime('%a %d %b')}: {len(today) or 'no'} follow-up{plural}."]
        for t in today:
            who = t.commitment.contact.label()
            lines.append(
                f"{t.start.astimezone(self.zone).strftime('%H:%M')} {t.commitment.title}"
                + (f" ({who})" if who else "")
            )
        if missed:
            lines.append(
                "Missed backups: "
                + "; ".join(
                    f"{r.payload.get('title')} {_start(r).astimezone(self.zone):%a %H:%M}"
                    for r in missed
                )
            )
        return _fit_lines(lines, self.sms.max_segments)


def _start(row: Row) -> datetime:
    value = row.payload.get("start")
    return datetime.fromisoformat(str(value)) if value else row.due


def _fit_lines(lines: list[str], max_segments: int) -> str:
    from .text import segments

    for keep in range(len(lines), 0, -1):
        text = "\n".join(lines[:keep]) + (
            f"\n+{len(lines) - keep} more" if keep < len(lines) else ""
        )
        if segments(text) <= max_segments:
            return text
    return lines[0]
