"""The daemon's calendar sync thread: one sync at a time, retried with capped backoff.

It syncs when asked (`wanted()`: an edit, a reload, the periodic timer) and,
after a failure, again at a growing, capped delay, while the daemon stays up.
It never syncs before a good load: a file broken at start must delete nothing.
Each sync holds the state dir's sync lock, so a `reminderd sync` by hand never
runs beside it. A team's calendars are synced one after the other; with
several daemons on one PostgreSQL each calendar is taken under a lease (a
session advisory lock, `Leases`), and a calendar another daemon is syncing is
left to it. What happened is reported to the daemon through `SyncReport`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Protocol

from .app import sync_once
from .clock import Clock
from .errors import LockTimeout, MassDeleteRefused, ReminderdError
from .retry import backoff
from .statelock import sync_lock
from .store.keys import forget_sync_markers

if TYPE_CHECKING:
    from .config import Config
    from .model import Commitment
    from .store.protocol import StateStore
    from .sync.engine import SyncResult

log = logging.getLogger(__name__)
SYNC_LOCK_WAIT = 60.0  # a `reminderd sync` by hand holds the sync lock for at most this long
CRASH_BACKOFF = 6  # after a crash (a bug), wait as after six failures: about a minute


class Leases(Protocol):
    """Short exclusive leases shared by every daemon on one state (`store.leases`)."""

    def try_take(self, name: str) -> bool: ...
    def release(self, name: str) -> None: ...


def calendar_lease(config: Config) -> str:
    """The lease name of the calendar `config` syncs (a person's view in a team)."""
    cal = config.calendar
    if cal.url:
        return f"calendar:{cal.url}|{cal.username or ''}|{cal.name}"
    # the embedded server's calendars live in this host's state dir: one lease per host
    return f"calendar:embedded@{socket.gethostname()}/{cal.listen}|{cal.name}"


class SyncReport(Protocol):
    """What the worker tells the daemon."""

    def synced(self, result: SyncResult, url: str) -> None: ...
    def failed(self, message: str, *, retrying: bool) -> None: ...
    def outcome(self) -> None:
        """A calendar edit was recorded as an outcome: lay it over and replan."""
        ...


Work = Callable[[], "tuple[Config, tuple[Commitment, ...], tuple[Commitment, ...]] | None"]
"""The config, the commitments with outcomes laid over, and the files' own; None before
a good load."""


class SyncWorker:
    def __init__(
        self,
        db: StateStore,
        clock: Clock,
        work: Work,
        report: SyncReport,
        leases: Leases | None = None,
    ) -> None:
        self.db = db
        self.leases = leases  # several daemons on one database: one syncs each calendar
        self.clock = clock
        self.work = work  # the config and the last good commitments, or None before a good load
        self.report = report
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._full_check = False
        self._thread = threading.Thread(target=self._loop, name="sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wanted(self, full_check: bool = False) -> None:
        """Sync soon; `full_check` lists the whole calendar this time (a drift check)."""
        if full_check:
            self._full_check = True
        self._wanted.set()

    def stop(self, wait: float) -> bool:
        """Ask it to stop; True once the thread has ended (a sync in flight gets `wait` s)."""
        self._stopping.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout=wait)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wanted.wait(None if failures == 0 else backoff(failures - 1, base=1.0))
            self._wanted.clear()
            if self._stopping.is_set():
                return
            work = self.work()
            if work is None:
                continue  # nothing good loaded yet: never sync (it would delete)
            try:
                failures = 0 if self._sync(*work) else failures + 1
            except Exception:  # a bug must not kill the worker: log it, try again later
                failures = max(failures + 1, CRASH_BACKOFF)
                log.exception("calendar sync crashed; will try again")

    def _sync(
        self,
        config: Config,
        commitments: tuple[Commitment, ...],
        parsed: tuple[Commitment, ...],
    ) -> bool:
        """One round over every calendar; False when it should be retried later."""
        from .app import calendars

        # with leases (PostgreSQL) each calendar has its own, across hosts; else the state
        # dir's lock keeps a `reminderd sync` by hand from running beside this one
        held = (
            nullcontext()
            if self.leases is not None
            else sync_lock(config.state_dir, SYNC_LOCK_WAIT)
        )
        try:
            with held:
                if self._full_check:
                    self._full_check = False
                    forget_sync_markers(self.db)
                ok = True
                for view, own, own_parsed in calendars(config, commitments, parsed):
                    ok = self._sync_one(view, own, own_parsed) and ok
                return ok
        except LockTimeout as exc:
            log.warning("calendar sync postponed: %s", exc)
            return False

    def _sync_one(
        self,
        config: Config,
        commitments: tuple[Commitment, ...],
        parsed: tuple[Commitment, ...],
    ) -> bool:
        """One calendar; False when it should be retried later."""
        whose = f" of {config.person}" if config.person else ""
        lease = calendar_lease(config)
        try:
            if self.leases is not None and not self.leases.try_take(lease):
                log.debug("calendar%s: another daemon is syncing it", whose)
                return True
        except ReminderdError as exc:  # the database is away: the whole round is retried
            log.warning("calendar sync%s postponed: %s", whose, exc)
            self.report.failed(str(exc), retrying=True)
            return False
        try:
            result, url = sync_once(
                config,
                self.db,
                commitments,
                progress=None,
                serve=False,
                clock=self.clock,
                parsed=parsed,
                on_outcome=self.report.outcome,
            )
        except MassDeleteRefused as exc:
            log.error("%s", exc)
            self.report.failed(str(exc), retrying=False)
            return True  # retrying cannot help: the files must change
        except ReminderdError as exc:
            log.warning("calendar sync%s failed (%s); retrying with backoff", whose, exc)
            self.report.failed(str(exc), retrying=True)
            return False
        finally:
            if self.leases is not None:
                try:
                    self.leases.release(lease)
                except ReminderdError as exc:  # the session is gone, and the lease with it
                    log.debug("lease %s not released: %s", lease, exc)
        log.info("calendar sync%s: %s", whose, result.line())
        self.report.synced(result, url)
        return True
