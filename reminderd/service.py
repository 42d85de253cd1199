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
import random
import re
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .app import state_db, sync_once
from .config import Config, load_config
from .errors import MassDeleteRefused, MissingInputError, ReminderdError
from .model import Commitment, touches, upcoming
from .notify import Notifier, watchdog_interval
from .sms.providers import mask_numbers
from .sources import FileCache, load_sources
from .timeparse import get_zone

log = logging.getLogger(__name__)
DEBOUNCE = 0.1  # editors save in bursts of a few ms (write, fsync, rename): one reload for all
MAX_BACKOFF = 300.0
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
FULL_CHECK_EVERY = 6  # periodic syncs; every 6th lists the whole calendar (cheap drift check otherwise)


@dataclass
class _Loaded:
    config: Config
    commitments: tuple[Commitment, ...] | None  # None: no good load yet; never sync or replan on it


class Daemon:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
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
        self._watched: set[Path] = set()
        self._announced_url = ""
        self._files: FileCache = {}  # parsed files, re-read only when changed
        self._full_check = False  # set by the main loop, done by the sync worker under its lock

    # -- life cycle

    def run(self) -> int:
        config = load_config(self.config_path)  # a bad config at start: exit 78, systemd says why
        self.db = state_db(config)
        self._set_daemon_state("starting")
        worker = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
        try:
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
        resync = config.calendar["sync_interval"].total_seconds()
        next_resync = time.monotonic() + resync
        periodic = 0
        while not self.stopping.is_set():
            timeout = min(ping or 3600.0, max(0.05, next_resync - time.monotonic()))
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = ""
            if ping:
                self.notifier.watchdog()
            if event == "stop":
                break
            if event == "reload":
                try:
                    self._reload()
                except Exception:  # never let one bad reload end the daemon: keep the last good state
                    log.exception("reload failed; keeping the running configuration and commitments")
            if time.monotonic() >= next_resync:
                periodic += 1
                if periodic % FULL_CHECK_EVERY == 0:
                    self._full_check = True  # list everything once in a while: catches any drift
                self.sync_wanted.set()
                assert self.current is not None
                next_resync = time.monotonic() + self.current.config.calendar["sync_interval"].total_seconds()

    def _shutdown(self, worker: threading.Thread) -> None:
        """Bounded: in-flight SMS finish and are recorded, queued ones wait for the next start;
        a sync in flight gets 20 s, then the process ends anyway (every write is its own
        transaction, so the next start resumes where this one stopped)."""
        log.info("stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.sync_wanted.set()
        if self.observer is not None:
            self.observer.stop()
        if self._debounce is not None:
            self._debounce.cancel()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if worker.is_alive():
            worker.join(timeout=20)
        if self.embedded is not None:
            self.embedded.stop()
        self._set_daemon_state("stopped")
        if not worker.is_alive():
            self.db.close()
        log.info("stopped cleanly")

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
            return None
        if loaded.problems:
            for problem in loaded.problems:
                log.error("%s", mask_numbers(str(problem)))
            log.error("%d problem(s): keeping the last good commitments until the files are fixed",
                      len(loaded.problems))
            self._record_error(f"{len(loaded.problems)} input problem(s), first: {loaded.problems[0]}")
            return None
        return loaded.commitments

    def _reload(self) -> None:
        assert self.current is not None
        try:
            config = load_config(self.config_path)
        except ReminderdError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            self._record_error(f"config: {exc}")
            return
        self._watch(config)  # the config may name other files; watch them even if broken
        commitments = self._load(config)
        if commitments is None:
            return
        old = self.current.config
        if (config.calendar["url"], config.calendar["listen"], config.state_dir) != \
                (old.calendar["url"], old.calendar["listen"], old.state_dir):
            log.warning("calendar.url, calendar.listen and state_dir take effect at the next restart")
            config = _keep_runtime(config, old)
        self.current = _Loaded(config, commitments)
        self.sync_wanted.set()  # first: the sync waits on the server while we replan the SMS
        if config.sms != old.sms or config.timezone != old.timezone:
            self._restart_sms(config)
        elif self.scheduler is not None:
            self.scheduler.dispatcher.replan(commitments)
            self.scheduler.rearm()
        log.info("reloaded: %d commitments", len(commitments))
        self.notifier.status(self._status_line())

    # -- calendar

    def _start_calendar(self, config: Config) -> None:
        if config.calendar["url"]:
            return
        from .calendar import embedded_server
        from .calendar.embedded import port_in_use

        secret = config.calendar["password"]
        server = embedded_server(config, secret.resolve() if secret else None)
        if port_in_use(server.host, server.port):
            log.warning("%s:%d is already taken; using the CalDAV server found there", server.host, server.port)
            return
        server.start()
        self.embedded = server

    def _sync_loop(self) -> None:
        """One sync at a time; after a failure, one retry at a capped, growing delay
        (an edit or a signal meanwhile still syncs at once)."""
        failures = 0
        while not self.stopping.is_set():
            delay = None if failures == 0 else min(MAX_BACKOFF, 2.0 ** (failures - 1)) * random.uniform(0.8, 1.2)
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
            with self._sync_lock:
                if self._full_check:
                    self._full_check = False
                    self.db.delete_prefix("sync:")  # list the whole calendar this time
                result, url = sync_once(current.config, self.db, current.commitments, progress=None,
                                        serve=False)
        except MassDeleteRefused as exc:
            log.error("%s", exc)
            self._record_error(str(exc))
            return True  # retrying cannot help: the files must change
        except ReminderdError as exc:
            log.warning("calendar sync failed (%s); retrying with backoff", exc)
            self._record_error(f"sync: {exc}")
            self.notifier.status("calendar unreachable, retrying")
            return False
        log.info("calendar sync: %s", result.line())
        self.notifier.status(self._status_line())
        if result.errors:
            self._record_error(f"sync: {result.errors[0]}")
        if url != self._announced_url:
            self._announced_url = url
            where = "embedded; subscribe to it from a calendar app" if self.embedded else "CalDAV"
            log.info("calendar: %s (%s)", redact_url(url), where)
        return True

    # -- SMS

    def _start_sms(self, config: Config) -> None:
        if config.sms is None:
            log.info("SMS backups are off (no sms section in the config)")
            return
        from .sms import make_dispatcher
        from .sms.scheduler import SmsScheduler

        dispatcher = make_dispatcher(config, self.db)
        self.scheduler = SmsScheduler(dispatcher, get_zone(config.timezone), config.sms["digest"],
                                      lambda: self.current.commitments if self.current else None)
        if self.current is not None and self.current.commitments is not None:
            dispatcher.replan(self.current.commitments)  # an empty list too: it cancels what is gone
        self.scheduler.start()

    def _restart_sms(self, config: Config) -> None:
        """New SMS settings (number, provider, quiet hours, digest...): a new scheduler."""
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        self._start_sms(config)

    # -- reporting

    def _announce(self, config: Config) -> None:
        assert self.current is not None
        commitments = self.current.commitments or ()
        now = datetime.now(UTC)
        n_touches = sum(len(touches(c)) for c in commitments if c.active)
        log.info("%d commitments, %d touches planned", len(commitments), n_touches)
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
        self.db.set("daemon", {"state": state, "pid": os.getpid(),
                               "since": datetime.now(UTC).isoformat(timespec="seconds")})

    def _record_error(self, message: str) -> None:
        self.db.set("last_error", {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                   "message": message})


def _existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return parent


def _keep_runtime(new: Config, old: Config) -> Config:
    """The new config with the settings that need a restart kept as they run now."""
    from dataclasses import replace

    calendar = dict(new.calendar, url=old.calendar["url"], listen=old.calendar["listen"])
    return replace(new, calendar=calendar, state_dir=old.state_dir)


def redact_url(url: str) -> str:
    """Never log a password given in a URL's user-info part."""
    return re.sub(r"//[^/@]*@", "//***@", url)
