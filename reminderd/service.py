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
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .app import state_db, sync_once
from .config import Config, load_config
from .errors import MassDeleteRefused, MissingInputError, ReminderdError
from .model import Commitment, touches, upcoming
from .notify import Notifier, watchdog_interval
from .sources import FileCache, load_sources
from .timeparse import get_zone

log = logging.getLogger(__name__)
DEBOUNCE = 0.3
MAX_BACKOFF = 300.0
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
FULL_CHECK_EVERY = 6  # periodic syncs; every 6th lists the whole calendar (cheap drift check otherwise)


@dataclass
class _Loaded:
    config: Config
    commitments: tuple[Commitment, ...]


class Daemon:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.events: queue.Queue[str] = queue.Queue()
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

    # -- life cycle

    def run(self) -> int:
        config = load_config(self.config_path)  # a bad config at start: exit 78, systemd says why
        self.db = state_db(config)
        self._set_daemon_state("starting")
        self._install_signals()
        loaded = self._load(config)
        self.current = _Loaded(config, loaded or ())
        if loaded is None:
            log.error("starting without commitments: fix the errors above; the calendar is left "
                      "untouched and queued SMS still go out")
        self._start_calendar(config)
        self._start_sms(config)
        self._watch(config)
        self._announce(config)
        worker = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
        worker.start()
        if loaded is not None:
            self.sync_wanted.set()
        self.notifier.ready(self._status_line())
        self._set_daemon_state("running")
        try:
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
                self._reload()
            if time.monotonic() >= next_resync:
                periodic += 1
                if periodic % FULL_CHECK_EVERY == 0:
                    self._forget_sync_marker()  # list everything once in a while: catches any drift
                self.sync_wanted.set()
                assert self.current is not None
                next_resync = time.monotonic() + self.current.config.calendar["sync_interval"].total_seconds()

    def _shutdown(self, worker: threading.Thread) -> None:
        log.info("stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.sync_wanted.set()
        if self.observer is not None:
            self.observer.stop()
        if self._debounce is not None:
            self._debounce.cancel()
        if self.scheduler is not None:
            self.scheduler.shutdown()  # an in-flight SMS finishes and is recorded
        with self._sync_lock:  # an in-flight sync finishes its current writes
            pass
        worker.join(timeout=30)
        if self.embedded is not None:
            self.embedded.stop()
        self._set_daemon_state("stopped")
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
        for directory in sorted({p.parent for p in files}):
            if directory.is_dir():
                self.observer.schedule(Handler(), str(directory), recursive=False)
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
                log.error("%s", problem)
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
        commitments = self._load(config)
        if commitments is None:
            return
        if {s.path.resolve() for s in config.sources} | {self.config_path.resolve()} != self._watched:
            self.observer.stop()
            self._watch(config)  # the config now names other files
        self.current = _Loaded(config, commitments)
        if self.scheduler is not None:
            self.scheduler.dispatcher.replan(commitments)
            self.scheduler.rearm()
        log.info("reloaded: %d commitments", len(commitments))
        self.notifier.status(self._status_line())
        self.sync_wanted.set()

    # -- calendar

    def _start_calendar(self, config: Config) -> None:
        if config.calendar["url"]:
            return
        from .calendar.embedded import EmbeddedServer, port_in_use

        cal = config.calendar
        secret = cal["password"]
        server = EmbeddedServer(cal["listen"], config.state_dir / "calendar", cal["username"],
                                secret.resolve() if secret else None)
        if port_in_use(server.host, server.port):
            log.warning("%s:%d is already taken; using the CalDAV server found there", server.host, server.port)
            return
        server.start()
        self.embedded = server

    def _sync_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            self.sync_wanted.wait()
            self.sync_wanted.clear()
            if self.stopping.is_set():
                return
            current = self.current
            if current is None:
                continue
            try:
                with self._sync_lock:
                    result, url = sync_once(current.config, self.db, current.commitments, progress=None,
                                            serve=False)
                failures = 0
                log.info("calendar sync: %s", result.line())
                self.notifier.status(self._status_line())
                if result.errors:
                    self._record_error(f"sync: {result.errors[0]}")
                if url != self._announced_url:
                    self._announced_url = url
                    where = "embedded; subscribe to it from a calendar app" if self.embedded else "CalDAV"
                    log.info("calendar: %s (%s)", url, where)
            except MassDeleteRefused as exc:
                log.error("%s", exc)
                self._record_error(str(exc))
            except ReminderdError as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 1.0 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                log.warning("calendar sync failed (%s); retrying in %.0f s", exc, delay)
                self._record_error(f"sync: {exc}")
                self.notifier.status(f"calendar unreachable, retrying in {delay:.0f} s")
                timer = threading.Timer(delay, self.sync_wanted.set)
                timer.daemon = True
                timer.start()
            except Exception:  # a bug must not kill the worker: log it, try again later
                log.exception("calendar sync crashed; retrying in %.0f s", MAX_BACKOFF)
                timer = threading.Timer(MAX_BACKOFF, self.sync_wanted.set)
                timer.daemon = True
                timer.start()

    def _forget_sync_marker(self) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM meta WHERE key LIKE 'sync:%'")

    # -- SMS

    def _start_sms(self, config: Config) -> None:
        if config.sms is None:
            log.info("SMS backups are off (no sms section in the config)")
            return
        from .sms import make_dispatcher
        from .sms.scheduler import SmsScheduler

        dispatcher = make_dispatcher(config, self.db)
        self.scheduler = SmsScheduler(dispatcher, get_zone(config.timezone), config.sms["digest"],
                                      lambda: self.current.commitments if self.current else ())
        if self.current is not None and self.current.commitments:
            dispatcher.replan(self.current.commitments)
        self.scheduler.start()

    # -- reporting

    def _announce(self, config: Config) -> None:
        assert self.current is not None
        commitments = self.current.commitments
        now = datetime.now(timezone.utc)
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
        n = len(self.current.commitments) if self.current else 0
        nxt = self.scheduler.next_send() if self.scheduler is not None else None
        zone = get_zone(self.current.config.timezone) if self.current else timezone.utc
        return f"{n} commitments" + (f"; next SMS {nxt.astimezone(zone).strftime('%a %H:%M')}" if nxt else "")

    def _set_daemon_state(self, state: str) -> None:
        self.db.set("daemon", {"state": state, "pid": os.getpid(),
                               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def _record_error(self, message: str) -> None:
        self.db.set("last_error", {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "message": message})
