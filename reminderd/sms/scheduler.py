"""APScheduler 3 drives the timing: one date job at the next due send, and the daily digest.

One re-armed job instead of one job per send: 10,000 pending sends cost one
timer, and the scheduler sleeps until it is due (no polling, no idle CPU).
"Now" is the dispatcher's clock, the same one that decides what is due, so a
test with its own clock drives the timer without the wall clock.

The timer is re-armed after each run from APScheduler's "job executed" event,
never from inside the run: a re-armed job that is already due (more than one
batch due, or sends that came due during a long rate-limited run) would find
the run still counted as running, be skipped (`max_instances=1`) and, being a
one-shot date job, deleted, leaving every pending send without a timer.
Once stopping, nothing re-arms: APScheduler's shutdown holds its job-store lock
while it waits for a finishing run, and a re-arm from that run would wait for
the lock for ever.

A state database that stops answering never stops the timer: a run or a re-arm
that fails with StateError logs one warning for the outage and points the timer
a few seconds ahead (capped backoff) instead of at the next planned send.
When daemons share the outbox (`dispatcher.leases.shared`), a check every few
seconds hands the sends of daemons that died to this one (`Dispatcher.recover`,
`free_reservations`) and re-arms the timer, so rows whose reservation ran out are
seen too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from ..errors import StateError
from ..model import Commitment
from ..retry import backoff
from .dispatch import Dispatcher

log = logging.getLogger(__name__)
JOB = "sms-due"
WATCH = "sms-recover"  # daemons sharing the outbox: take over the sends of dead ones
DIGEST_RETRY = "sms-digest-retry"
OUTAGE_RETRY = (1.0, 10.0)  # seconds: the state database is tried again, doubling to the cap


class SmsScheduler:
    def __init__(
        self,
        dispatcher: Dispatcher,
        zone: ZoneInfo,
        digest: time | None,
        commitments: Callable[[], tuple[Commitment, ...] | None],
    ) -> None:
        self.dispatcher = dispatcher
        self.commitments = commitments  # None while nothing good is loaded: no digest then
        self._arm = threading.Lock()  # rearm runs on the main thread and on APScheduler's
        self._stopped = False  # set under _arm: no re-arm can start after it
        self._busy = threading.Event()  # a run is under way; its end re-arms
        self._outage = threading.Lock()
        self._failures = 0  # consecutive tries that found the state database unreachable
        self.scheduler = BackgroundScheduler(
            timezone=zone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        if digest is not None:
            self.scheduler.add_job(
                self._digest,
                "cron",
                hour=digest.hour,
                minute=digest.minute,
                id="sms-digest",
                replace_existing=True,
            )
        self.scheduler.add_listener(self._after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def start(self) -> None:
        recovered = self.dispatcher.recover()
        if recovered:
            log.warning(
                "resolved %d %s interrupted by the last stop", recovered, self.dispatcher.channel
            )
        self.scheduler.start()
        leases = self.dispatcher.leases
        if leases is not None and leases.shared:
            self.scheduler.add_job(
                self._watch,
                "interval",
                seconds=self.dispatcher.tuning.recover_every.total_seconds(),
                id=WATCH,
                replace_existing=True,
            )
        self.rearm()

    def replan(self, commitments: tuple[Commitment, ...], *, started: bool = True) -> None:
        """The outbox follows these commitments (an empty tuple too: it cancels what is
        gone), and the timer follows the outbox."""
        self.dispatcher.replan(commitments)
        if started:
            self.rearm()

    def rearm(self) -> None:
        """Point the one timer at the earliest pending send this daemon may take (now, if
        overdue); a few seconds ahead while the state database does not answer."""
        with self._arm:
            if self._stopped or self._busy.is_set():
                return  # a run is under way: its end re-arms (`_after_run`), seeing this too
            try:
                due = self.dispatcher.outbox.next_time(free=True)
            except StateError as exc:
                self._unreachable(exc)
                due = self.dispatcher.clock()  # try again after the backoff below
            if due is None:
                try:
                    self.scheduler.remove_job(JOB)
                except JobLookupError:
                    pass
                return
            run_at = max(due, self.dispatcher.clock() + self._retry_delay())
            job = self.scheduler.get_job(JOB)
            if job is not None and job.next_run_time == run_at:
                return  # already pointed there (the watch re-arms every few seconds)
            self.scheduler.add_job(
                self._tick, "date", run_date=run_at, id=JOB, replace_existing=True
            )

    def next_send(self) -> datetime | None:
        return self.dispatcher.outbox.next_time()

    def _tick(self) -> None:
        self._busy.set()
        try:
            self.dispatcher.run_due()
            self._reachable()
        except StateError as exc:  # an outage: the re-arm after this run waits a little
            self._unreachable(exc)
        except Exception:  # the timer must survive anything a send throws
            log.exception("%s dispatch failed; will try again", self.dispatcher.channel)
        finally:
            self._busy.clear()

    def _watch(self) -> None:
        """Every few seconds with daemons sharing the outbox: sends of a daemon that is
        gone are handed to us (looked up first), its reservations freed; then re-arm."""
        d = self.dispatcher
        try:
            if d.leases is not None:
                d.leases.ping()  # a lost session is made again (and our lease taken again)
            moved = d.recover()
            freed = d.free_reservations()
            self._reachable()
        except StateError as exc:
            self._unreachable(exc)
            return
        except Exception:  # the check must survive a bug: it runs again in a few seconds
            log.exception("%s: checking for sends of stopped daemons failed", d.channel)
            return
        if moved:
            log.warning(
                "%d %s interrupted by a daemon that is gone: looked up before any repeat",
                moved,
                d.channel,
            )
        if freed:
            log.info("%d %s reserved by a daemon that is gone: taken over", freed, d.channel)
        if moved or freed or self.scheduler.get_job(JOB) is None:
            # not at every check: a re-arm in the instant a run is ending is skipped by
            # APScheduler with a warning ("maximum number of running instances")
            self.rearm()  # no timer: rows whose reservation ran out are due to us

    def _unreachable(self, exc: StateError) -> None:
        with self._outage:
            self._failures += 1
            first = self._failures == 1
        if first:
            log.warning(
                "%s: state database unreachable; retrying (%s)", self.dispatcher.channel, exc
            )

    def _reachable(self) -> None:
        with self._outage:
            was, self._failures = self._failures, 0
        if was:
            log.info("%s: state database reachable again", self.dispatcher.channel)

    def _retry_delay(self) -> timedelta:
        """Zero, or how long to wait before trying the state database again."""
        with self._outage:
            failures = self._failures
        if not failures:
            return timedelta(0)
        first, cap = OUTAGE_RETRY
        return timedelta(seconds=backoff(failures - 1, base=first, cap=cap))

    def _after_run(self, event: JobExecutionEvent) -> None:
        """APScheduler calls this once a run no longer counts as running: re-arm from here."""
        if event.job_id == JOB:
            self.rearm()

    def _digest(self) -> None:
        commitments = self.commitments()
        if commitments is None:
            log.warning(
                "no daily agenda %s: the commitment files have not loaded yet",
                self.dispatcher.channel,
            )
            return
        try:
            if self.dispatcher.digest(commitments) is not None:
                log.info("daily agenda %s queued", self.dispatcher.channel)
        except StateError as exc:  # an outage at digest time: queue it once it is back
            self._unreachable(exc)
            with self._arm:
                if not self._stopped:
                    self.scheduler.add_job(
                        self._digest,
                        "date",
                        run_date=self.dispatcher.clock() + self._retry_delay(),
                        id=DIGEST_RETRY,
                        replace_existing=True,
                    )
            return
        except Exception:
            log.exception("daily agenda failed")
        self.rearm()

    def shutdown(self) -> None:
        """Stop timers, let an in-flight send finish and be recorded; queued ones wait."""
        with self._arm:  # a re-arm under way finishes first; none starts after this
            self._stopped = True
        self.dispatcher.close()  # first, so a running tick stops taking new sends
        self.scheduler.shutdown(wait=True)
