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
import signal
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from .agenda import summary
from .app import state_db, sync_once
from .clock import Clock, system_clock
from .config import Config, load_config
from .errors import (
    LockTimeout,
    MassDeleteRefused,
    MissingInputError,
    ReminderdError,
    StateError,
    StateGone,
)
from .model import Commitment, upcoming
from .notify import Notifier, watchdog_interval
from .retry import backoff
from .sms.providers import mask_numbers
from .sources import FileCache, load_sources
from .statelock import DaemonLock, sync_lock
from .store.keys import META_DAEMON, clear_error, forget_sync_markers, record_error
from .timeparse import get_zone

log = logging.getLogger(__name__)
DEBOUNCE = 0.1  # editors save in bursts of a few ms (write, fsync, rename): one reload for all
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
FULL_CHECK_EVERY = 6  # periodic syncs; every 6th lists the whole calendar (cheap drift check otherwise)
STATE_CHECK = 5.0  # seconds between checks that the state dir is still the one we opened
SYNC_LOCK_WAIT = 60.0  # a `reminderd sync` by hand holds the sync lock for at most this long
STOP_SYNC_WAIT = 10.0  # on SIGTERM, a sync in flight gets this long to finish its current write


@dataclass
class _Loaded:
    config: Config
    commitments: tuple[Commitment, ...] | None  # None: no good load yet; never sync or replan on it


class Daemon:
    def __init__(self, config_path: Path, clock: Clock = system_clock) -> None:
        self.config_path = config_path
        self.clock = clock
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()  # put() is safe from a signal handler
        self.notifier = Notifier()
        self.current: _Loaded | None = None  # the last good config and commitments
        self.sync_wanted = threading.Event()
        self.stopping = threading.Event()
        self._sync_lock = threading.Lock()
        self._debounce: threading.Timer | None = None
        self.embedded: Any = None
        self.scheduler: Any = None
        self.observer: Any = None
        self.db: Any = None
        self.lock: DaemonLock | None = None
        self._db_inode = 0
        self._watched: set[Path] = set()
        self._announced_url = ""
        self._files: FileCache = {}  # parsed files, re-read only when changed
        self._full_check = False  # set by the main loop, done by the sync worker under its lock

    # -- life cycle

    def run(self) -> int:
        config = load_config(self.config_path)  # a bad config at start: exit 78, systemd says why
        self.lock = DaemonLock(config.state_dir)
        self.lock.acquire()  # a second daemon on this state stops here, naming the first's PID
        worker = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
        try:
            self.db = state_db(config)
            self._db_inode = self.db.path.stat().st_ino
            self._set_daemon_state("starting")
            self._clear_error("config")
            self._install_signals()
            self._watch(config)  # before loading: fixing a broken file must be noticed too
            loaded = self._load(config)
            self.current = _Loaded(config, loaded)
            if loaded is None:
                log.error("starting without commitments: fix the errors above; until then the "
                          "calendar is left untouched and already queued SMS still go out")
            self._start_calendar(config)
            self._start_sms(config)
            self._announce(config)
            worker.start()
            if loaded is not None:
                self.sync_wanted.set()
            self.notifier.ready(self._status_line())
            self._set_daemon_state("running")
            self._main_loop(config)
        finally:
            self._shutdown(worker)
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
            if event == "reload":
                try:
                    self._reload()
                except ReminderdError as exc:  # e.g. the state cannot be written: say so, keep going
                    log.error("reload failed (%s); keeping the running configuration and commitments", exc)
                except Exception:  # never let one bad reload end the daemon: keep the last good state
                    log.exception("reload failed; keeping the running configuration and commitments")
            if time.monotonic() >= next_resync:
                periodic += 1
                if periodic % FULL_CHECK_EVERY == 0:
                    self._full_check = True  # list everything once in a while: catches any drift
                self.sync_wanted.set()
                assert self.current is not None
                next_resync = time.monotonic() + self.current.config.calendar.sync_interval.total_seconds()

    def _shutdown(self, worker: threading.Thread) -> None:
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
        self.sync_wanted.set()
        steps: list[tuple[str, Any]] = [
            ("file watcher", self.observer.stop if self.observer is not None else None),
            ("debounce timer", self._debounce.cancel if self._debounce is not None else None),
            ("SMS scheduler", self.scheduler.shutdown if self.scheduler is not None else None),
            ("sync worker", (lambda: worker.join(timeout=STOP_SYNC_WAIT)) if worker.is_alive() else None),
            ("embedded calendar", self.embedded.stop if self.embedded is not None else None),
            ("state", (lambda: self._set_daemon_state("stopped")) if self.db is not None else None),
            ("state", self.db.close if self.db is not None and not worker.is_alive() else None),
        ]
        clean = True
        for what, step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # keep stopping: the rest must still run
                clean = False
                log.warning("stopping: %s: %s", what, exc)
        if self.lock is not None:
            self.lock.release()
        log.info("stopped cleanly" if clean else "stopped")

    # -- signals and file events

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.events.put("stop"))
        signal.signal(signal.SIGINT, lambda *_: self.events.put("stop"))
        signal.signal(signal.SIGHUP, lambda *_: self.events.put("reload"))

    def _watch(self, config: Config) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        files = {self.config_path.resolve()} | {s.path.resolve() for s in config.sources}
        if files == self._watched and self.observer is not None:
            return
        if self.observer is not None:
            self.observer.stop()
        daemon = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = {Path(str(event.src_path)).resolve()}
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.add(Path(str(dest)).resolve())
                # only changes: our own reads raise opened / closed_no_write events too
                if paths & files and event.event_type in CHANGE_EVENTS:
                    daemon._file_changed()

        self.observer = Observer()
        for directory in sorted({_existing_parent(p) for p in files}):
            # a folder that does not exist yet is watched from its nearest existing parent
            self.observer.schedule(Handler(), str(directory), recursive=directory not in {p.parent for p in files})
        self.observer.daemon = True
        self.observer.start()
        self._watched = files

    def _file_changed(self) -> None:
        """Editors write in bursts (truncate, write, rename): reload once, shortly after the last."""
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = threading.Timer(DEBOUNCE, lambda: self.events.put("reload"))
        self._debounce.daemon = True
        self._debounce.start()

    # -- loading

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
            log.error("%d problem(s): keeping the last good commitments until the files are fixed",
                      len(loaded.problems))
            self._record_error("input", f"{len(loaded.problems)} input problem(s), first: "
                               f"{mask_numbers(str(loaded.problems[0]))}")
            return None
        self._clear_error("input")
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
        commitments = self._load(config)
        if commitments is None:
            return
        old = self.current.config
        if (config.calendar.url, config.calendar.listen, config.state_dir) != \
                (old.calendar.url, old.calendar.listen, old.state_dir):
            log.warning("calendar.url, calendar.listen and state_dir take effect at the next restart")
            config = _keep_runtime(config, old)
        if config.sms != old.sms or config.timezone != old.timezone:
            try:
                self._restart_sms(config)
            except ReminderdError as exc:  # e.g. a secret that no longer resolves
                log.error("new SMS settings not applied, the running ones stay in force: %s", exc)
                self._record_error("config", f"SMS settings: {exc}")
                config = replace(config, sms=old.sms, timezone=old.timezone)
                if self.scheduler is not None:
                    self.scheduler.dispatcher.replan(commitments)
                    self.scheduler.rearm()
            else:
                self._clear_error("config")
        elif self.scheduler is not None:
            self.scheduler.dispatcher.replan(commitments)
            self.scheduler.rearm()
            self._clear_error("config")
        else:
            self._clear_error("config")
        self.current = _Loaded(config, commitments)
        self.sync_wanted.set()
        log.info("reloaded: %d commitments", len(commitments))
        self.notifier.status(self._status_line())

    # -- calendar

    def _start_calendar(self, config: Config) -> None:
        if config.calendar.url:
            return
        from .calendar import embedded_server, port_taken
        from .calendar.embedded import port_in_use

        secret = config.calendar.password
        server = embedded_server(config, secret.resolve() if secret else None)
        if port_in_use(server.host, server.port):  # never hand our password and data to a squatter
            raise port_taken(server)
        server.start()
        self.embedded = server

    def _sync_loop(self) -> None:
        """One sync at a time; after a failure, one retry at a capped, growing delay
        (an edit or a signal meanwhile still syncs at once)."""
        failures = 0
        while not self.stopping.is_set():
            delay = None if failures == 0 else backoff(failures - 1, base=1.0)
            self.sync_wanted.wait(delay)
            self.sync_wanted.clear()
            current = self.current
            if self.stopping.is_set():
                return
            if current is None or current.commitments is None:
                continue  # nothing good loaded yet: never sync (it would delete)
            try:
                failures = 0 if self._sync(current) else failures + 1
            except Exception:  # a bug must not kill the worker: log it, try again later
                failures = max(failures + 1, 6)
                log.exception("calendar sync crashed; will try again")

    def _sync(self, current: _Loaded) -> bool:
        """One sync; False when it should be retried later."""
        assert current.commitments is not None
        try:
            with self._sync_lock, sync_lock(current.config.state_dir, SYNC_LOCK_WAIT):
                if self._full_check:
                    self._full_check = False
                    forget_sync_markers(self.db)  # list the whole calendar this time
                result, url = sync_once(current.config, self.db, current.commitments, progress=None,
                                        serve=False, clock=self.clock)
        except MassDeleteRefused as exc:
            log.error("%s", exc)
            self._record_error("sync", str(exc))
            return True  # retrying cannot help: the files must change
        except LockTimeout as exc:
            log.warning("calendar sync postponed: %s", exc)
            return False
        except ReminderdError as exc:
            log.warning("calendar sync failed (%s); retrying with backoff", exc)
            self._record_error("sync", str(exc))
            self.notifier.status("calendar unreachable, retrying")
            return False
        log.info("calendar sync: %s", result.line())
        self.notifier.status(self._status_line())
        if result.errors:
            self._record_error("sync", result.errors[0])
        else:
            self._clear_error("sync")
        if url != self._announced_url:
            self._announced_url = url
            where = "embedded; subscribe to it from a calendar app" if self.embedded else "CalDAV"
            log.info("calendar: %s (%s)", redact_url(url), where)
        return True

    # -- SMS

    def _make_scheduler(self, config: Config) -> Any:
        """A scheduler for these SMS settings, not started; raises (secrets, ...) before any change."""
        from .sms.factory import make_dispatcher
        from .sms.scheduler import SmsScheduler

        assert config.sms is not None
        dispatcher = make_dispatcher(config, self.db, clock=self.clock)
        return SmsScheduler(dispatcher, get_zone(config.timezone), config.sms.digest,
                            lambda: self.current.commitments if self.current else None)

    def _start_sms(self, config: Config, scheduler: Any = None) -> None:
        if config.sms is None:
            log.info("SMS backups are off (no sms section in the config)")
            return
        scheduler = scheduler or self._make_scheduler(config)
        if self.current is not None and self.current.commitments is not None:
            scheduler.dispatcher.replan(self.current.commitments)  # an empty list too: it cancels what is gone
        self.scheduler = scheduler
        scheduler.start()

    def _restart_sms(self, config: Config) -> None:
        """New SMS settings (number, provider, quiet hours, digest...): a new scheduler.

        The new one is built first (secrets resolved); only then is the old one
        stopped, so a setting that fails leaves the running SMS untouched.
        """
        new = self._make_scheduler(config) if config.sms is not None else None
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        self._start_sms(config, new)

    # -- reporting

    def _announce(self, config: Config) -> None:
        assert self.current is not None
        commitments = self.current.commitments or ()
        now = self.clock()
        soon = upcoming(commitments, now, now + timedelta(days=7))
        for t in soon[:10]:
            alerts = ", ".join(f"{a.kind.value} {a.at.strftime('%a %H:%M')}" for a in t.alerts)
            log.info("next: %s %s (%s)", t.start.strftime("%a %d %b %H:%M %Z"), t.commitment.title, alerts)
        if self.embedded is not None:
            log.info("embedded calendar server on %s (user %s); the calendar URL follows the first sync",
                     self.embedded.url, self.embedded.username)
        if self.scheduler is not None:
            nxt = self.scheduler.next_send()
            zone = get_zone(config.timezone)
            log.info("next SMS: %s", nxt.astimezone(zone).strftime("%a %d %b %H:%M %Z") if nxt else "none pending")

    def _status_line(self) -> str:
        n = len(self.current.commitments or ()) if self.current else 0
        nxt = self.scheduler.next_send() if self.scheduler is not None else None
        zone = get_zone(self.current.config.timezone) if self.current else UTC
        return f"{n} commitments" + (f"; next SMS {nxt.astimezone(zone).strftime('%a %H:%M')}" if nxt else "")

    def _set_daemon_state(self, state: str) -> None:
        self.db.set(META_DAEMON, {"state": state, "pid": os.getpid(),
                                  "since": self.clock().isoformat(timespec="seconds")})

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
        if self.lock is None or self.db is None:
            return
        try:
            same_db = self.db.path.stat().st_ino == self._db_inode
        except OSError:
            same_db = False
        if not (same_db and self.lock.still_ours()):
            log.critical("the state dir %s was deleted or replaced while running; stopping so "
                         "that a restart opens a fresh one", self.db.path.parent)
            raise StateGone(f"state dir {self.db.path.parent} was deleted or replaced while running")


def _existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return parent


def _keep_runtime(new: Config, old: Config) -> Config:
    """The new config with the settings that need a restart kept as they run now."""
    calendar = replace(new.calendar, url=old.calendar.url, listen=old.calendar.listen)
    return replace(new, calendar=calendar, state_dir=old.state_dir)


def redact_url(url: str) -> str:
    """Never log a password given in a URL's user-info part."""
    return re.sub(r"//[^/@]*@", "//***@", url)
