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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from ..model import Commitment
from .dispatch import Dispatcher

log = logging.getLogger(__name__)
JOB = "sms-due"


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
        self.rearm()

    def replan(self, commitments: tuple[Commitment, ...], *, started: bool = True) -> None:
        """The outbox follows these commitments (an empty tuple too: it cancels what is
        gone), and the timer follows the outbox."""
        self.dispatcher.replan(commitments)
        if started:
            self.rearm()

    def rearm(self) -> None:
        """Point the one timer at the earliest pending send (now, if overdue)."""
        with self._arm:
            if self._stopped or self._busy.is_set():
                return  # a run is under way: its end re-arms (`_after_run`), seeing this too
            due = self.dispatcher.outbox.next_time()
            if due is None:
                try:
                    self.scheduler.remove_job(JOB)
                except JobLookupError:
                    pass
                return
            run_at = max(due, self.dispatcher.clock())
            self.scheduler.add_job(
                self._tick, "date", run_date=run_at, id=JOB, replace_existing=True
            )

    def next_send(self) -> datetime | None:
        return self.dispatcher.outbox.next_time()

    def _tick(self) -> None:
        self._busy.set()
        try:
            self.dispatcher.run_due()
        except Exception:  # the timer must survive anything a send throws
            log.exception("%s dispatch failed; will try again", self.dispatcher.channel)
        finally:
            self._busy.clear()

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
        except Exception:
            log.exception("daily agenda failed")
        self.rearm()

    def shutdown(self) -> None:
        """Stop timers, let an in-flight send finish and be recorded; queued ones wait."""
        with self._arm:  # a re-arm under way finishes first; none starts after this
            self._stopped = True
        self.dispatcher.close()  # first, so a running tick stops taking new sends
        self.scheduler.shutdown(wait=True)
