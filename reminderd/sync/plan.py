"""Planning a calendar sync: pure, from (desired, saved state, server view) to actions.

Like vdirsyncer: the plan is computed first, checked (mass-delete guard),
then executed by the adapter. Only objects reminderd owns ever appear in an
action: ones recorded in the state, or, after a lost state, ones whose name
carries our prefix and whose content is verified ours before it is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model import Touch
from ..store.protocol import EventRow

OWNED_PREFIX = "reminderd-"


@dataclass(frozen=True, slots=True)
class Desired:
    uid: str
    href: str
    hash: str
    touch: Touch


@dataclass(frozen=True, slots=True)
class Create:
    want: Desired
    recreate: bool = False  # it was ours and someone deleted it on the server


@dataclass(frozen=True, slots=True)
class Update:
    want: Desired
    etag: str | None
    drift: bool = False  # changed on the server: a person's edit, or the server's own rewrite
    served: str | None = None  # with drift: `ical.served_hash` of the object when we last saw it


@dataclass(frozen=True, slots=True)
class Adopt:
    """Ours by name but not in the state (state lost, or a crash after a PUT):
    verify the content is ours, then update it or just record it."""

    want: Desired
    etag: str | None


@dataclass(frozen=True, slots=True)
class Delete:
    uid: str | None  # None: an orphan found by name, verified before deleting
    href: str
    etag: str | None


@dataclass(frozen=True, slots=True)
class Forget:
    """In the state but gone from the server and no longer wanted: drop the row."""

    uid: str


@dataclass(frozen=True, slots=True)
class Record:
    """Unchanged content whose ETag we did not know yet: remember it, no write."""

    want: Desired
    etag: str | None


Action = Create | Update | Adopt | Delete | Forget | Record


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    owned: int = 0
    owned_recorded: bool = False

    def count(self, kind: type) -> int:
        return sum(1 for a in self.actions if isinstance(a, kind))

    @property
    def writes(self) -> list[Action]:
        return [a for a in self.actions if isinstance(a, (Create, Update, Adopt, Delete))]

    def mass_delete(self) -> bool:
        """True when the plan would delete most owned events (more than half, at least 2).

        With a saved state, only recorded events count (an object merely
        named like ours is verified before any delete); without one, the
        ones found by name are all we know, so they count.
        """
        recorded = sum(1 for a in self.actions if isinstance(a, Delete) and a.uid is not None)
        deletes = recorded if self.owned_recorded else self.count(Delete)
        return deletes >= 2 and deletes * 2 > self.owned


def basename(href: str) -> str:
    return href.rstrip("/").rsplit("/", 1)[-1]


def plan_sync(
    desired: Mapping[str, Desired], state: Mapping[str, EventRow], remote: Mapping[str, str | None]
) -> Plan:
    """Actions that make the calendar match `desired`.

    `remote` maps href -> ETag for what the server holds now (at least every
    href we own; foreign ones are ignored unless named like ours).
    """
    plan = Plan()
    known_hrefs = {row.href for row in state.values()}
    for uid, want in desired.items():
        row = state.get(uid)
        if row is None or row.href != want.href:
            if want.href in remote:
                plan.actions.append(Adopt(want, remote[want.href]))
            else:
                plan.actions.append(Create(want))
            continue
        if want.href not in remote:
            plan.actions.append(Create(want, recreate=True))
            continue
        etag_now = remote[want.href]
        if row.etag is None or etag_now is None:
            if row.hash == want.hash:
                plan.actions.append(Record(want, etag_now))
            else:
                plan.actions.append(Update(want, etag_now))
        elif etag_now != row.etag:
            plan.actions.append(Update(want, etag_now, drift=True, served=row.served))
        elif row.hash != want.hash:
            plan.actions.append(Update(want, row.etag))
        else:
            plan.unchanged += 1
    wanted_hrefs = {w.href for w in desired.values()}
    for uid, row in state.items():
        if uid in desired and desired[uid].href == row.href:
            continue
        if row.href in remote and row.href not in wanted_hrefs:
            plan.actions.append(Delete(uid, row.href, remote[row.href]))
        else:
            plan.actions.append(Forget(uid))
    orphans = [
        h
        for h in remote
        if basename(h).startswith(OWNED_PREFIX) and h not in known_hrefs and h not in wanted_hrefs
    ]
    plan.actions += [Delete(None, h, remote[h]) for h in sorted(orphans)]
    plan.owned_recorded = bool(state)
    plan.owned = len(state) if state else len(orphans)
    return plan
