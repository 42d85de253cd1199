"""Which files the daemon watches, and one callback per burst of edits to them.

inotify (through the `watchdog` library, with its portable fallback) on each
file's folder: editors save by writing a temp file and renaming it over, so
the folder is what sees the change. Only change events count: our own reads
raise opened / closed-no-write events too, and reacting to those loops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEBOUNCE = 0.1  # editors save in bursts of a few ms (write, fsync, rename): one callback for all
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


class FileWatcher:
    """Calls `on_change` once, DEBOUNCE after the last change to any watched file."""

    def __init__(self, on_change: Callable[[], None], debounce: float = DEBOUNCE) -> None:
        self.on_change = on_change
        self.debounce = debounce
        self._files: frozenset[Path] = frozenset()
        self._observer: Any = None  # watchdog's Observer (untyped library)
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def watch(self, files: set[Path]) -> None:
        """Watch exactly these files (resolved); a no-op when the set is unchanged.

        A folder that does not exist yet is watched from its nearest existing parent,
        so creating it, then the file, is noticed too.
        """
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wanted = frozenset(p.resolve() for p in files)
        if wanted == self._files and self._observer is not None:
            return
        self._stop_observer()
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = {Path(str(event.src_path)).resolve()}
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.add(Path(str(dest)).resolve())
                if paths & wanted and event.event_type in CHANGE_EVENTS:
                    watcher._changed()

        observer = Observer()
        parents = {p.parent for p in wanted}
        for directory in sorted({_existing_parent(p) for p in wanted}):
            observer.schedule(Handler(), str(directory), recursive=directory not in parents)
        observer.daemon = True
        observer.start()
        self._observer, self._files = observer, wanted

    def _changed(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self.on_change)
            self._timer.daemon = True
            self._timer.start()

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None

    def stop(self) -> None:
        self._stop_observer()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def _existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return parent
