"""The facade the CLI and the daemon share: load, sync, remember the outcome."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .calendar import forget_calendar, open_calendar
from .calendar.dav import CalendarMissing, RequestFailed
from .calendar.profiles import capped
from .clock import Clock, system_clock
from .config import Config
from .errors import StateError
from .ical import wants_event
from .model import Commitment, touches
from .outcomes import log as outcome_log
from .outcomes.apply import CalendarEdits
from .outcomes.overlay import overlay
from .store.keys import last_sync_key
from .store.protocol import StateStore
from .store.sqlite import StateDB
from .sync.engine import SyncResult, sync_calendar

log = logging.getLogger(__name__)


def state_path(config: Config) -> Path:
    """Where this config's state database lives."""
    return config.state_dir / "state.sqlite3"


def state_db(config: Config) -> StateStore:
    """The state store this config names: PostgreSQL (`state:`), else SQLite in state_dir."""
    if config.state:
        from .store.postgres import PostgresStore

        secret = config.state_password
        return PostgresStore(config.state, password=secret.resolve() if secret else None)
    return StateDB(state_path(config))


def readonly_state(config: Config) -> StateStore | None:
    """The state opened for reading only (status, log, agenda); None when there is none
    yet. Never creates, never upgrades."""
    if config.state:
        from .store.postgres import PostgresStore

        secret = config.state_password
        return PostgresStore(
            config.state, password=secret.resolve() if secret else None, readonly=True
        )
    path = state_path(config)
    return StateDB(path, readonly=True) if path.exists() else None


def state_where(config: Config) -> str:
    """Where the state lives, for people: the SQLite file, or the database's URL."""
    return config.state or str(state_path(config))


def with_outcomes(db: StateStore, parsed: tuple[Commitment, ...]) -> tuple[Commitment, ...]:
    """The commitments as the files say them, with every recorded outcome laid over."""
    return overlay(parsed, outcome_log.by_commitment(db))


def read_with_outcomes(config: Config, parsed: tuple[Commitment, ...]) -> tuple[Commitment, ...]:
    """`with_outcomes` for read-only commands: never creates or upgrades the state."""
    try:
        db = readonly_state(config)
    except StateError as exc:  # older than this reminderd, or none yet: no outcomes in it
        log.debug("outcomes not read: %s", exc)
        return parsed
    if db is None:
        return parsed
    try:
        return with_outcomes(db, parsed)
    finally:
        db.close()


Calendar = tuple[Config, tuple[Commitment, ...], tuple[Commitment, ...]]
"""One calendar's sync: the config it is synced under (a person's view in a team), the
commitments with outcomes laid over, and the files' own."""


def calendars(
    config: Config, commitments: tuple[Commitment, ...], parsed: tuple[Commitment, ...]
) -> list[Calendar]:
    """What one sync round covers: the one calendar, or each person's with their own."""
    if not config.people:
        return [(config, commitments, parsed)]
    from .team import split, view

    mine = {p.name: own for p, own in split(config, parsed)}
    return [
        (view(config, person), own, mine[person.name]) for person, own in split(config, commitments)
    ]


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
    parsed: tuple[Commitment, ...] | None = None,
    on_outcome: Callable[[], None] = lambda: None,
) -> tuple[SyncResult, str]:
    """One reconcile; returns the result and the calendar URL.

    `commitments` have the outcomes laid over; `parsed` are the files' own.
    With `parsed` and `calendar.server_edits: adopt`, a person's moves and
    deletions on the calendar become outcomes (`on_outcome` is told), and
    the calendar is then synced once more with them, so a moved event is
    rewritten whole at its new time. A remembered calendar URL that vanished
    (404: deleted in a calendar app) is forgotten and discovered again, once.
    """
    rules = config.calendar.rules
    commitments = capped(commitments, rules)  # what the provider keeps (Google: 5 alarms)
    edits = None
    if parsed is not None and config.calendar.server_edits == "adopt" and not dry_run:
        edits = CalendarEdits(db, {c.id: c for c in parsed}, clock, on_outcome)
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
                    edits=edits,
                )
                if edits is not None and edits.count and parsed is not None:
                    again = sync_calendar(
                        cal,
                        db,
                        capped(with_outcomes(db, parsed), rules),
                        force=force,
                        connections=config.calendar.connections,
                        progress=progress,
                    )
                    result.updated += again.updated
                    result.deleted += again.deleted
                    result.errors += again.errors
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
            last_sync_key(config.person),
            {
                "at": clock().isoformat(timespec="seconds"),
                "result": result.line(),
                "errors": result.errors[:20],
            },
        )
    return result, url
