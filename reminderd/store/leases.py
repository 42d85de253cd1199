"""Who else works on this state: daemon liveness and short exclusive leases.

Several daemons may share one PostgreSQL state (`postgres.PgLeases`: session
advisory locks, gone with the process that held them). A SQLite state has one
daemon (its state dir's lock refuses a second), so `LocalLeases` answers the
same questions without asking anything: every lease is free, and the only
daemon alive is this one.

`leases_for(db, ident)` gives the one `Leases` of this process for that state
and identity, whoever asks first (the daemon, which starts it, and the
dispatchers, which ask it who is alive).
"""

from __future__ import annotations

import math
import sys
import threading
import weakref
from typing import Protocol

from .protocol import StateStore


class Leases(Protocol):
    """This daemon's identity among those sharing a state, and its short leases."""

    ident: str
    shared: bool  # other processes may hold leases (PostgreSQL): liveness means something
    healthy_since: float  # time.monotonic() of the last (re)connection

    def start(self) -> None:
        """Take this daemon's life-long lock (`alive(ident)` is True from here)."""
        ...

    def ping(self) -> None:
        """Check the session, connecting again if it was lost; StateError if unreachable."""
        ...

    def alive(self, ident: str) -> bool: ...

    def try_take(self, name: str) -> bool: ...

    def release(self, name: str) -> None: ...

    def holds(self, name: str) -> bool: ...

    def close(self) -> None: ...


class LocalLeases:
    """One daemon per state (SQLite): every lease is ours, and nobody else is alive."""

    shared = False
    healthy_since = -math.inf  # nothing to lose: always healthy

    def __init__(self, ident: str) -> None:
        self.ident = ident

    def __repr__(self) -> str:
        return f"LocalLeases({self.ident!r})"

    def start(self) -> None:
        pass

    def ping(self) -> None:
        pass

    def alive(self, ident: str) -> bool:
        return ident == self.ident

    def try_take(self, name: str) -> bool:
        return True

    def release(self, name: str) -> None:
        pass

    def holds(self, name: str) -> bool:
        return True

    def close(self) -> None:
        pass


_MADE: weakref.WeakKeyDictionary[StateStore, dict[str, Leases]] = weakref.WeakKeyDictionary()
_MADE_LOCK = threading.Lock()


def leases_for(db: StateStore, ident: str) -> Leases:
    """The leases of daemon `ident` on this state: `PgLeases` on PostgreSQL, else
    `LocalLeases`; the same object for the same store and identity until it is
    closed (made here, started by the daemon)."""
    with _MADE_LOCK:
        made = _MADE.setdefault(db, {})
        found = made.get(ident)
        if found is None or getattr(found, "closed", False):
            found = _make(db, ident)
            made[ident] = found
        return found


def _make(db: StateStore, ident: str) -> Leases:
    # a PostgresStore exists only once its module is loaded: SQLite never imports psycopg
    pg = sys.modules.get(f"{__package__}.postgres")
    if pg is not None and isinstance(db, pg.PostgresStore):
        leases: Leases = pg.PgLeases(db, ident)
        return leases
    return LocalLeases(ident)
