"""The facade the CLI and the daemon share: load, sync, remember the outcome."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

from .calendar import forget_calendar, open_calendar
from .calendar.dav import CalendarMissing, RequestFailed
from .clock import Clock, system_clock
from .config import Config
from .ical import wants_event
from .model import Commitment, touches
from .store.keys import META_LAST_SYNC
from .store.protocol import StateStore
from .store.sqlite import StateDB
from .sync.engine import SyncResult, sync_calendar

log = logging.getLogger(__name__)


def state_path(config: Config) -> Path:
    """Where this config's state database lives."""
    return config.state_dir / "state.sqlite3"


def state_db(config: Config) -> StateDB:
    return StateDB(state_path(config))


def sync_once(
    config: Config,
    db: StateStore,
    commitments: tuple[Commitment, ...],
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: TextIO | None = sys.stderr,
    serve: bool = True,
    clock: Clock = system_clock,
) -> tuple[SyncResult, str]:
    """One reconcile; returns the result and the calendar URL.

    A remembered calendar URL that vanished (404: deleted in a calendar app)
    is forgotten and discovered again, once.
    """
    for attempt in (1, 2):
        try:
            with open_calendar(config, db, serve=serve, create=not dry_run) as cal:
                result = sync_calendar(
                    cal,
                    db,
                    commitments,
                    dry_run=dry_run,
                    force=force,
                    connections=config.calendar.connections,
                    progress=progress,
                )
                url = cal.url
            break
        except CalendarMissing as exc:  # only in a dry run: say what the real one would do
            wanted = sum(1 for c in commitments for t in touches(c) if wants_event(t))
            return SyncResult(created=wanted, dry_run=True), f"({exc}; it would be created)"
        except RequestFailed as exc:
            if exc.status != 404 or attempt == 2:
                raise
            log.warning("the calendar is gone from the server; finding or creating it again")
            forget_calendar(db)
    if not dry_run:
        db.set(
            META_LAST_SYNC,
            {
                "at": clock().isoformat(timespec="seconds"),
                "result": result.line(),
                "errors": result.errors[:20],
            },
        )
    return result, url
