"""The daemon: watch, reload, sync, send; survive bad edits, outages and signals.

Threads, each with one job:
- main: signals, reloads, the watchdog ping, the stop sequence;
- sync worker: calendar reconciles, retried with capped backoff while the
  server is away (the daemon stays up and catches up when it returns);
- APScheduler: SMS at their time and the daily digest;
- watchdog (the library): file events, debounced into one reload.
A bad edit keeps the last good commitments in force: nothing is deleted,
nothing is cancelled, the problems are logged with `path:line`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .agenda import summary
from .app import state_db
from .clock import Clock, system_clock
from .config import Config, load_config
from .errors import (
    MissingInputError,
    ReminderdError,
    StateError,
    StateGone,
)
from .model import Commitment, upcoming
from .notify import Notifier, watchdog_interval
from .sms.providers import mask_numbers
from .sources import FileCache, load_sources
from .statelock import DaemonLock
from .store import daemons
from .store.keys import META_DAEMON, clear_error, record_error
from .syncworker import SyncWorker
from .timeparse import get_zone
from .watcher import FileWatcher

if TYPE_CHECKING:
    from datetime import time as TimeOfDay

    from .calendar.embedded import EmbeddedServer
    from .replies.service import ReplyPoller
    from .replies.webhook import ReplyWebhook
    from .sms.dispatch import Dispatcher
    from .sms.scheduler import SmsScheduler
    from .store.leases import Leases
    from .store.protocol import StateStore
    from .sync.engine import SyncResult

log = logging.getLogger(__name__)
FULL_CHECK_EVERY = (
    6  # periodic syncs; every 6th lists the whole calendar (cheap drift check otherwise)
)
STATE_CHECK = 5.0  # seconds between checks that the state dir is still the one we opened
STOP_SYNC_WAIT = 10.0  # on SIGTERM, a sync in flight gets this long to finish its current write


@dataclass
class _Loaded:
    config: Config
    commitments: tuple[Commitment, ...] | None  # None: no good load yet; never sync or replan on it
    parsed: tuple[Commitment, ...] = ()  # as the files say them, before outcomes


class Daemon:
    def __init__(self, config_path: Path, clock: Clock = system_clock) -> None:
        self.config_path = config_path
        self.clock = clock
        self.events: queue.SimpleQueue[str] = (
            queue.SimpleQueue()
        )  # put() is safe from a signal handler
        self.notifier = Notifier()
        self.current: _Loaded | None = None  # the last good config and commitments
        self.worker: SyncWorker | None = None
        self.stopping = threading.Event()
        self.watcher = FileWatcher(lambda: self.events.put("reload"))
        self.embedded: EmbeddedServer | None = None
        self.scheduler: SmsScheduler | None = None
        self.email: SmsScheduler | None = None  # email alerts' timer, over the email outbox
        self.replies: ReplyPoller | ReplyWebhook | None = None
        self._db: StateStore | None = None
        self.lock: DaemonLock | None = None
        # this process among the daemons sharing one database: claims and leases carry it
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases: Leases | None = None  # state: postgresql://; none with SQLite
        self._db_inode = 0
        self._announced_url = ""
        self._files: FileCache = {}  # parsed files, re-read only when changed
        self._digests: dict[str, str] = {}  # path -> content digest as last parsed
        self._outcomes_seen: tuple[object, ...] | None = None  # (count, latest) of outcomes

    # -- life cycle

    def run(self) -> int:
        config = load_config(self.config_path)  # a bad config at start: exit 78, systemd says why
        # SQLite: one daemon per state dir (a second stops here, naming the first's PID);
        # PostgreSQL: several daemons share the work, on one host or many
        self.lock = DaemonLock(config.state_dir, shared=bool(config.state))
        self.lock.acquire()
        try:
            self._db = state_db(config)
            if config.state:
                from .store.leases import leases_for

                self.leases = leases_for(self.db, self.ident)
                self.leases.start()  # held for life: others see this daemon alive
                daemons.register(
                    self.db, self.ident, socket.gethostname(), os.getpid(), self.clock()
                )
                for gone in daemons.listed(self.db):  # rows of daemons whose session ended
                    if gone["id"] != self.ident and not self.leases.alive(gone["id"]):
                        daemons.forget(self.db, gone["id"])
            else:
                self._db_inode = self.db.path.stat().st_ino
            self.worker = SyncWorker(self.db, self.clock, self._work, self, self.leases)
            self._set_daemon_state("starting")
            self._clear_error("config")
            self._install_signals()
            self._watch(config)  # before loading: fixing a broken file must be noticed too
            loaded = self._load(config)
            self.current = self._with_outcomes(config, loaded)
            if loaded is None:
                log.error(
                    "starting without commitments: fix the errors above; until then the "
                    "calendar is left untouched and already queued SMS still go out"
                )
            self._start_calendar(config)
            self._start_sms(config)
            self._start_email(config)
            self._announce(config)
            self.worker.start()
            if loaded is not None:
                self.worker.wanted()
            self.notifier.ready(self._status_line())
            self._set_daemon_state("running")
            self._main_loop(config)
        finally:
            self._shutdown()
        return 0

    def _main_loop(self, config: Config) -> None:
        ping = watchdog_interval()
        resync = config.calendar.sync_interval.total_seconds()
        next_resync = time.monotonic() + resync
        periodic = 0
        while not self.stopping.is_set():
            timeout = min(ping or 3600.0, STATE_CHECK, max(0.05, next_resync - time.monotonic()))
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = ""
            if ping:
                self.notifier.watchdog()
            if event == "stop":
                break
            self._check_state()
            if self.current is not None:
                self._serve_if_orphaned(self.current.config)
            if event == "" and self._others_decided():
                event = "outcomes"
            if event in ("reload", "outcomes"):
                try:
                    self._reload()
                except (
                    ReminderdError
                ) as exc:  # e.g. the state cannot be written: say so, keep going
                    log.error(
                        "reload failed (%s); keeping the running configuration and commitments", exc
                    )
                except (
                    Exception
                ):  # never let one bad reload end the daemon: keep the last good state
                    log.exception(
                        "reload failed; keeping the running configuration and commitments"
                    )
            if time.monotonic() >= next_resync:
                periodic += 1
                # every FULL_CHECK_EVERY-th lists the whole calendar: catches any drift
                self._sync_soon(full_check=periodic % FULL_CHECK_EVERY == 0)
                assert self.current is not None
                next_resync = (
                    time.monotonic() + self.current.config.calendar.sync_interval.total_seconds()
                )

    def _others_decided(self) -> bool:
        """Several daemons: an outcome recorded by another (its reply, its CLI) is laid
        over here too, within a state check, so no daemon syncs or plans from old news."""
        if self.leases is None:
            return False
        try:
            rows = self.db.query("SELECT COUNT(*), MAX(at) FROM outcomes")
        except ReminderdError:
            return False  # an outage: retried at the next check
        seen = tuple(rows[0]) if rows else None
        changed = self._outcomes_seen is not None and seen != self._outcomes_seen
        self._outcomes_seen = seen
        return changed

    def _sync_soon(self, full_check: bool = False) -> None:
        if self.worker is not None:
            self.worker.wanted(full_check)

    def _shutdown(self) -> None:
        """Bounded, and never hides why we stop: each step runs even if one before failed.

        In-flight SMS finish and are recorded (each send has its HTTP timeout), queued
        ones wait for the next start; a sync in flight gets STOP_SYNC_WAIT, then the
        process ends anyway (every write is its own transaction, so the next start
        resumes where this one stopped). Worst case: the SMS timeout (15 s by default)
        + STOP_SYNC_WAIT + 10 s for the embedded server: under TimeoutStopSec.
        """
        log.info("stopping")
        self.notifier.stopping()
        self.stopping.set()
        clean = True

        def step(what: str, action: Callable[[], object]) -> None:
            nonlocal clean
            try:
                action()
            except Exception as exc:  # keep stopping: the rest must still run
                clean = False
                log.warning("stopping: %s: %s", what, exc)

        step("file watcher", self.watcher.stop)
        step("SMS replies", self._stop_replies)
        if self.scheduler is not None:
            step("SMS scheduler", self.scheduler.shutdown)
        if self.email is not None:
            step("email", self.email.shutdown)
        worker_done = self.worker.stop(STOP_SYNC_WAIT) if self.worker is not None else True
        if self.embedded is not None:
            step("embedded calendar", self.embedded.stop)
        if self._db is not None:
            step("state", lambda: self._set_daemon_state("stopped"))
            if self.leases is not None:
                step("leases", self.leases.close)
            if worker_done:  # a sync still writing keeps its connection; the exit closes it
                step("state", self.db.close)
        if self.lock is not None:
            self.lock.release()
        log.info("stopped cleanly" if clean else "stopped")

    # -- signals and file events

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.events.put("stop"))
        signal.signal(signal.SIGINT, lambda *_: self.events.put("stop"))
        signal.signal(signal.SIGHUP, lambda *_: self.events.put("reload"))

    def _watch(self, config: Config) -> None:
        self.watcher.watch({self.config_path} | {s.path for s in config.all_sources})

    # -- loading

    def _with_outcomes(self, config: Config, parsed: tuple[Commitment, ...] | None) -> _Loaded:
        """The files' commitments with every outcome laid over; first, outcomes not yet in
        their YAML file are written into it (and that file read again)."""
        if parsed is None:
            return _Loaded(config, None)
        from .app import with_outcomes
        from .outcomes.apply import write_back_pending

        written = write_back_pending(config, self.db, {c.id: c for c in parsed}, self._digests)
        if written.files_written:
            parsed = self._load(config) or parsed  # our own write: read it back, no loop
        return _Loaded(config, with_outcomes(self.db, parsed), parsed)

    def _load(self, config: Config) -> tuple[Commitment, ...] | None:
        """Commitments, or None (problems logged with path:line) to keep the last good ones."""
        try:
            loaded = load_sources(config, self._files)
        except MissingInputError as exc:
            log.error("%s; keeping the last good commitments", exc)
            self._record_error("input", str(exc))
            return None
        if loaded.problems:
            for problem in loaded.problems:
                log.error("%s", mask_numbers(str(problem)))
            log.error(
                "%d problem(s): keeping the last good commitments until the files are fixed",
                len(loaded.problems),
            )
            self._record_error(
                "input",
                f"{len(loaded.problems)} input problem(s), first: "
                f"{mask_numbers(str(loaded.problems[0]))}",
            )
            return None
        self._clear_error("input")
        self._digests = dict(loaded.digests)
        log.info("loaded: %s", summary(loaded.commitments, loaded.files, config.sms is not None))
        return loaded.commitments

    def _reload(self) -> None:
        assert self.current is not None
        try:
            config = load_config(self.config_path)
        except ReminderdError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            self._record_error("config", str(exc))
            return
        self._watch(config)  # the config may name other files; watch them even if broken
        parsed = self._load(config)
        if parsed is None:
            return
        fresh = self._with_outcomes(config, parsed)
        commitments = fresh.commitments
        assert commitments is not None
        old = self.current.config
        if (config.calendar.url, config.calendar.listen, config.state_dir) != (
            old.calendar.url,
            old.calendar.listen,
            old.state_dir,
        ):
            log.warning(
                "calendar.url, calendar.listen and state_dir take effect at the next restart"
            )
            config = _keep_runtime(config, old)
        if config.sms != old.sms or config.timezone != old.timezone:
            try:
                self._restart_sms(config, commitments)
            except ReminderdError as exc:  # e.g. a secret that no longer resolves
                log.error("new SMS settings not applied, the running ones stay in force: %s", exc)
                self._record_error("config", f"SMS settings: {exc}")
                config = replace(config, sms=old.sms, timezone=old.timezone)
                if self.scheduler is not None:
                    self.scheduler.replan(commitments)
            else:
                self._clear_error("config")
        elif self.scheduler is not None:
            self.scheduler.replan(commitments)
            self._clear_error("config")
        else:
            self._clear_error("config")
        if config.email != old.email or config.timezone != old.timezone:
            try:
                self._restart_email(config, commitments)
            except ReminderdError as exc:
                log.error("new email settings not applied, the running ones stay: %s", exc)
                self._record_error("config", f"email settings: {exc}")
                config = replace(config, email=old.email)
                if self.email is not None:
                    self.email.replan(commitments)
        elif self.email is not None:
            self.email.replan(commitments)
        self.current = _Loaded(config, commitments, fresh.parsed)
        self._sync_soon()
        log.info("reloaded: %d commitments", len(commitments))
        self.notifier.status(self._status_line())

    # -- calendar

    def _start_calendar(self, config: Config) -> None:
        """The embedded server, when a calendar needs it (no url: the one user's, or a
        person's in a team). Daemons sharing a database on one host share it: one serves,
        and another takes over when that one is gone (`_serve_if_orphaned`)."""
        served = config.embedded_calendar
        if served is None:
            return
        config = replace(config, calendar=served)  # a person's: the server's credentials
        from .calendar import embedded_server, port_taken
        from .calendar.embedded import port_in_use

        secret = config.calendar.password
        server = embedded_server(config, secret.resolve() if secret else None)
        if port_in_use(server.host, server.port):  # never hand our password and data to a squatter
            if self.leases is not None and self._sibling_here():
                log.info("embedded calendar on %s: served by another daemon here", server.url)
                return
            raise port_taken(server)
        server.start()
        self.embedded = server

    def _sibling_here(self) -> bool:
        """Another live daemon of this database runs on this host (and so serves the
        embedded calendar of our shared state dir)."""
        assert self.leases is not None
        host = socket.gethostname()
        return any(
            d["id"] != self.ident and d["host"] == host and self.leases.alive(d["id"])
            for d in daemons.listed(self.db)
        )

    def _serve_if_orphaned(self, config: Config) -> None:
        """The daemon that served the embedded calendar here is gone: serve it now."""
        if self.embedded is not None or self.leases is None or config.embedded_calendar is None:
            return
        from .calendar.embedded import port_in_use

        host, _, port = config.calendar.listen.rpartition(":")
        if not port_in_use(host, int(port)):
            try:
                self._start_calendar(config)
            except ReminderdError as exc:
                log.warning("embedded calendar not served: %s", exc)
                return
            if self.embedded is not None:
                log.warning(
                    "embedded calendar: the daemon that served %s is gone; served here now",
                    self.embedded.url,
                )

    # the sync worker's SyncReport

    def synced(self, result: SyncResult, url: str) -> None:
        self.notifier.status(self._status_line())
        if result.errors:
            self._record_error("sync", result.errors[0])
        else:
            self._clear_error("sync")
        if url != self._announced_url:
            self._announced_url = url
            where = "embedded; subscribe to it from a calendar app" if self.embedded else "CalDAV"
            log.info("calendar: %s (%s)", redact_url(url), where)

    def failed(self, message: str, *, retrying: bool) -> None:
        self._record_error("sync", message)
        if retrying:
            self.notifier.status("calendar unreachable, retrying")

    def outcome(self) -> None:
        self.events.put("outcomes")

    def _work(self) -> tuple[Config, tuple[Commitment, ...], tuple[Commitment, ...]] | None:
        current = self.current
        if current is None or current.commitments is None:
            return None
        return current.config, current.commitments, current.parsed

    # -- SMS

    @property
    def db(self) -> StateStore:
        """The state, open from the start of `run()` to its end."""
        assert self._db is not None
        return self._db

    def _make_scheduler(self, config: Config) -> SmsScheduler:
        """A scheduler for these SMS settings, not started.

        Raises (secrets, ...) before anything changes.
        """
        from .sms.factory import make_dispatcher

        assert config.sms is not None
        dispatcher = make_dispatcher(config, self.db, clock=self.clock, owner=self.ident)
        if config.people:  # each person's SMS and digest go to their phone
            dispatcher.people = {p.name: p.phone for p in config.people if p.phone}
        return self._timer(config, dispatcher, config.sms.digest)

    def _timer(
        self, config: Config, dispatcher: Dispatcher, digest: TimeOfDay | None
    ) -> SmsScheduler:
        """The timer over one channel's outbox (SMS or email), not started."""
        from .sms.scheduler import SmsScheduler

        return SmsScheduler(
            dispatcher,
            get_zone(config.timezone),
            digest,
            lambda: self.current.commitments if self.current else None,
        )

    def _launch(
        self, scheduler: SmsScheduler, commitments: tuple[Commitment, ...] | None
    ) -> SmsScheduler:
        """Plan the timer's sends (see `_planned`), then start it."""
        planned = self._planned(commitments)
        if planned is not None:
            scheduler.replan(planned, started=False)
        scheduler.start()
        return scheduler

    def _planned(self, commitments: tuple[Commitment, ...] | None) -> tuple[Commitment, ...] | None:
        """What a timer starting now plans from: the commitments being loaded, else the
        running ones (a reload passes its own: the running ones are the old ones)."""
        if commitments is not None:
            return commitments
        return self.current.commitments if self.current is not None else None

    def _start_sms(
        self,
        config: Config,
        scheduler: SmsScheduler | None = None,
        commitments: tuple[Commitment, ...] | None = None,
    ) -> None:
        if config.sms is None:
            log.info("SMS backups are off (no sms section in the config)")
            return
        scheduler = self._launch(scheduler or self._make_scheduler(config), commitments)
        self.scheduler = scheduler
        self._start_replies(config, scheduler)

    def _make_email_scheduler(self, config: Config) -> SmsScheduler:
        """Email alerts' timer over their own outbox, not started; raises (the password)
        before anything changes."""
        from .sms.factory import make_email_dispatcher

        assert config.email is not None
        dispatcher = make_email_dispatcher(config, self.db, clock=self.clock, owner=self.ident)
        if config.people:  # each person's email alerts and digest go to their address
            dispatcher.people = {p.name: p.email for p in config.people if p.email}
        return self._timer(config, dispatcher, config.email.digest)

    def _start_email(
        self,
        config: Config,
        scheduler: SmsScheduler | None = None,
        commitments: tuple[Commitment, ...] | None = None,
    ) -> None:
        """Email alerts and the email digest (`email:`)."""
        if config.email is None:
            return
        self.email = self._launch(scheduler or self._make_email_scheduler(config), commitments)

    def _restart_email(self, config: Config, commitments: tuple[Commitment, ...]) -> None:
        """New email settings: the new timer is built first, so settings that fail leave
        the running ones in force."""
        new = self._make_email_scheduler(config) if config.email is not None else None
        if self.email is not None:
            self.email.shutdown()
            self.email = None
        if new is not None:
            self._start_email(config, new, commitments)

    def _start_replies(self, config: Config, scheduler: SmsScheduler) -> None:
        """SMS replies as commands (`sms.replies`); a receiver that cannot start is logged,
        and reminders go on without it."""
        from .replies.handler import ReplyHandler, View
        from .replies.service import start_replies
        from .sms.providers import TwilioSender

        sms = config.sms
        assert sms is not None
        users: str | dict[str, str] | None = sms.to
        if config.people:  # a team: each person's phone, acting on their own follow-ups
            users = {p.phone: p.name for p in config.people if p.phone}
        if sms.reply_mode == "off" or not users:
            return

        def view() -> View | None:
            current = self.current
            if current is None or current.commitments is None:
                return None
            return View({c.id: c for c in current.commitments}, {c.id: c for c in current.parsed})

        sender = scheduler.dispatcher.sender
        handler = ReplyHandler(
            self.db,
            users,
            get_zone(config.timezone),
            self.clock,
            view,
            on_outcome=lambda: self.events.put("outcomes"),
            on_reply=scheduler.rearm,
        )
        try:
            self.replies = start_replies(
                sms.reply_mode,
                handler,
                self.db,
                list_since=sender.inbound if isinstance(sender, TwilioSender) else None,
                interval=sms.reply_poll,
                clock=self.clock,
                listen=sms.webhook_listen,
                public_url=sms.webhook_url,
                auth_token=sms.auth_token.resolve() if sms.auth_token else None,
            )
        except ReminderdError as exc:
            log.error("SMS replies are off: %s", exc)
            self._record_error("replies", str(exc))

    def _stop_replies(self) -> None:
        if self.replies is not None:
            self.replies.close()
            self.replies = None

    def _restart_sms(self, config: Config, commitments: tuple[Commitment, ...]) -> None:
        """New SMS settings (number, provider, quiet hours, digest...): a new scheduler.

        The new one is built first (secrets resolved); only then is the old one
        stopped, so a setting that fails leaves the running SMS untouched.
        """
        new = self._make_scheduler(config) if config.sms is not None else None
        self._stop_replies()
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        self._start_sms(config, new, commitments)

    # -- reporting

    def _announce(self, config: Config) -> None:
        assert self.current is not None
        commitments = self.current.commitments or ()
        now = self.clock()
        soon = upcoming(commitments, now, now + timedelta(days=7))
        for t in soon[:10]:
            alerts = ", ".join(f"{a.kind.value} {a.at.strftime('%a %H:%M')}" for a in t.alerts)
            log.info(
                "next: %s %s (%s)",
                t.start.strftime("%a %d %b %H:%M %Z"),
                t.commitment.title,
                alerts,
            )
        if self.embedded is not None:
            log.info(
                "embedded calendar server on %s (user %s); the calendar URL follows the first sync",
                self.embedded.url,
                self.embedded.username,
            )
        if self.scheduler is not None:
            nxt = self.scheduler.next_send()
            zone = get_zone(config.timezone)
            log.info(
                "next SMS: %s",
                nxt.astimezone(zone).strftime("%a %d %b %H:%M %Z") if nxt else "none pending",
            )

    def _status_line(self) -> str:
        n = len(self.current.commitments or ()) if self.current else 0
        nxt = self.scheduler.next_send() if self.scheduler is not None else None
        zone = get_zone(self.current.config.timezone) if self.current else UTC
        return f"{n} commitments" + (
            f"; next SMS {nxt.astimezone(zone).strftime('%a %H:%M')}" if nxt else ""
        )

    def _set_daemon_state(self, state: str) -> None:
        if self.leases is not None:  # several daemons: each its own row
            daemons.set_state(self.db, self.ident, state, self.clock(), None)
            return
        self.db.set(
            META_DAEMON,
            {
                "state": state,
                "pid": os.getpid(),
                "since": self.clock().isoformat(timespec="seconds"),
            },
        )

    def _record_error(self, area: str, message: str) -> None:
        """Best effort: a state that cannot be written (disk full) is logged, never fatal here."""
        try:
            record_error(self.db, area, message, self.clock())
        except StateError as exc:
            log.error("could not record the error in the state (%s): %s", exc, message)

    def _clear_error(self, area: str) -> None:
        try:
            clear_error(self.db, area)
        except StateError as exc:
            log.error("could not update the state: %s", exc)

    def _check_state(self) -> None:
        """The state dir deleted or replaced under a running daemon: stop, so the service
        manager restarts us on a fresh state (sends are then looked up before any repeat)."""
        if self.lock is None or self._db is None:
            return
        if self.leases is not None:  # PostgreSQL: still the same database
            from .store.postgres import PostgresStore

            assert isinstance(self._db, PostgresStore)
            try:
                same_db = self._db.still_same()
            except ReminderdError:
                same_db = True  # unreachable now is an outage, retried; not a replacement
            where = self._db.where
        else:
            try:
                same_db = self.db.path.stat().st_ino == self._db_inode
            except OSError:
                same_db = False
            where = str(self.db.path.parent)
        if not (same_db and self.lock.still_ours()):
            log.critical(
                "the state %s was deleted or replaced while running; stopping so "
                "that a restart opens a fresh one",
                where,
            )
            raise StateGone(f"state {where} was deleted or replaced while running")


def _keep_runtime(new: Config, old: Config) -> Config:
    """The new config with the settings that need a restart kept as they run now."""
    calendar = replace(new.calendar, url=old.calendar.url, listen=old.calendar.listen)
    return replace(new, calendar=calendar, state_dir=old.state_dir)


def redact_url(url: str) -> str:
    """Never log a password given in a URL's user-info part."""
    return re.sub(r"//[^/@]*@", "//***@", url)
