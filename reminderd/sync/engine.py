"""One calendar sync: read the server's view cheaply, plan, guard, execute in parallel.

The server view comes from the cheapest source the server offers: an RFC
6578 sync token (one REPORT that lists only what changed), else the
collection's ctag (one PROPFIND; a full listing only when it moved), else a
full listing. Writes run on a small pool of kept-alive connections; each
result is recorded in the state as it lands, so an interrupted sync resumes
where it stopped.

The engine sees the calendar only through `calendar.protocol.CalendarStore`:
the CalDAV adapter in production, the in-memory twin in fast tests.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol, TextIO

from ..calendar.protocol import CalendarStore, InvalidSyncToken, PreconditionFailed
from ..errors import MassDeleteRefused, ReminderdError
from ..ical import (
    content_hash,
    event_start,
    href_name,
    ownership,
    render,
    served_hash,
    uid_for,
    wants_event,
)
from ..model import Commitment, Touch, touches
from ..store.keys import SYNC_MARKER
from ..store.protocol import EventRow, StateStore
from .plan import Action, Adopt, Create, Delete, Desired, Forget, Record, Update, plan_sync

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    recreated: int = 0  # deleted on the server by someone, written again
    repaired: int = 0  # edited on the server by someone, overwritten from the file
    moved: int = 0  # moved on the server by someone: taken as a move of that touch
    skipped: int = 0  # deleted on the server by someone: taken as a skip of that touch
    reset: bool = False  # most owned events vanished at once: recreated, not skipped
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    def line(self) -> str:
        text = (
            f"{'would be ' if self.dry_run else ''}created {self.created}, updated {self.updated}, "
            f"deleted {self.deleted}, unchanged {self.unchanged}"
        )
        extra = []
        if self.recreated:
            extra.append(f"{self.recreated} recreated after deletion on the server")
        if self.repaired:
            extra.append(f"{self.repaired} restored after edits on the server")
        if self.moved:
            extra.append(f"{self.moved} moved on the calendar, taken as moves")
        if self.skipped:
            extra.append(f"{self.skipped} deleted on the calendar, taken as skips")
        if self.reset:
            extra.append("the calendar lost most of our events at once: recreated them")
        if self.errors:
            extra.append(f"{len(self.errors)} errors")
        return text + (f" ({'; '.join(extra)})" if extra else "")


class ServerEdits(Protocol):
    """Where a person's edits on the calendar go (`calendar.server_edits: adopt`).

    Called on the sync's threads; each records an outcome (see
    `reminderd.outcomes`); the sync itself writes nothing for that touch.
    """

    def moved(self, touch: Touch, start: datetime) -> None: ...

    def deleted(self, touch: Touch) -> None: ...


RETIRED = "retired-uids:"  # + calendar URL: UIDs we deleted where they may not come back


def desired_events(
    cal: CalendarStore, commitments: Iterable[Commitment], retired: frozenset[str] = frozenset()
) -> dict[str, Desired]:
    """The event each wanted touch should have; a touch whose UID we deleted on a
    server that keeps it in a trash bin (`retired`) gets the next generation's."""
    found: dict[str, Desired] = {}
    for c in commitments:
        for t in touches(c):
            if wants_event(t):
                uid = uid_for(t.key, cal.uid_salt)
                generation = 2
                while uid in retired:
                    uid = uid_for(t.key, f"{cal.uid_salt}~{generation}")
                    generation += 1
                found[uid] = Desired(uid, cal.href_for(href_name(uid)), content_hash(t), t)
    return found


def server_view(
    cal: CalendarStore, db: StateStore, state: dict[str, EventRow]
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(href -> ETag as the server has it now, marker to save after the sync)."""
    key = SYNC_MARKER + cal.url
    saved = db.get(key) or {}
    known: dict[str, str | None] = {row.href: row.etag for row in state.values()}
    if saved.get("token"):
        try:
            changed, deleted, token = cal.changes(saved["token"])
            for href in deleted:
                known.pop(href, None)
            known.update(changed)
            return known, {"token": token}
        except InvalidSyncToken:
            log.info("the server forgot our sync token; listing the calendar")
    elif saved.get("ctag"):
        collection = cal.collection()
        if collection.ctag and collection.ctag == saved["ctag"]:
            return known, {"ctag": collection.ctag}
    collection = cal.collection()
    listing = cal.listing()
    return listing, (
        {"token": collection.sync_token} if collection.sync_token else {"ctag": collection.ctag}
    )


class _Progress:
    """A progress line on stderr for long syncs, at most once a second."""

    def __init__(self, total: int, out: TextIO | None) -> None:
        self.total, self.done, self.out = total, 0, out
        self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if (
            self.out is not None
            and self.total >= 50
            and (now - self.last >= 1 or self.done == self.total)
        ):
            self.last = now
            print(f"sync: {self.done}/{self.total} changes written", file=self.out, flush=True)


def sync_calendar(
    cal: CalendarStore,
    db: StateStore,
    commitments: Iterable[Commitment],
    *,
    dry_run: bool = False,
    force: bool = False,
    connections: int = 4,
    progress: TextIO | None = sys.stderr,
    edits: ServerEdits | None = None,
) -> SyncResult:
    """Make the calendar match the commitments; only reminderd's own events are touched.

    With `edits`, a person's changes on the calendar are outcomes: an owned
    event deleted on the server is a skip of its touch (unless most owned
    events vanished at once: a reset server, recreated), and one whose start
    moved is a move. Without, the file wins (`server_edits: repair`).
    """
    state = db.events(cal.url)
    retired = frozenset(db.get(RETIRED + cal.url) or ()) if not cal.reuse_uids else frozenset()
    desired = desired_events(cal, commitments, retired)
    remote, marker = server_view(cal, db, state)
    plan = plan_sync(desired, state, remote)
    result = SyncResult(unchanged=plan.unchanged, dry_run=dry_run)
    recreates = [a for a in plan.actions if isinstance(a, Create) and a.recreate]
    if edits is not None and recreates:
        if len(recreates) >= 2 and len(recreates) * 2 > plan.owned:
            result.reset = True
            log.warning(
                "%d of the %d events reminderd owns vanished from the calendar at once: "
                "a reset server, not a person; recreating them",
                len(recreates),
                plan.owned,
            )
        elif not dry_run:
            for redo in recreates:
                edits.deleted(redo.want.touch)
                result.skipped += 1
            plan.actions = [Forget(a.want.uid) if a in recreates else a for a in plan.actions]
    if not cal.reuse_uids and not dry_run:
        gone = {
            a.want.uid: a.want.touch.key
            for a in plan.actions
            if isinstance(a, Create) and a.recreate
        }
        if gone:  # deleted on the server, kept in its trash bin: write them under new UIDs
            retired |= set(gone)
            db.set(RETIRED + cal.url, sorted(retired))
            for uid in gone:
                db.forget_event(cal.url, uid)
            state = db.events(cal.url)
            desired = desired_events(cal, commitments, retired)
            plan = plan_sync(desired, state, remote)
            again = set(gone.values())
            plan.actions = [
                Create(a.want, recreate=True)
                if isinstance(a, Create) and a.want.touch.key in again
                else a
                for a in plan.actions
            ]
    if plan.mass_delete() and not force:
        raise MassDeleteRefused(
            f"this sync would delete {plan.count(Delete)} of the {plan.owned} events "
            "reminderd owns; "
            "nothing was changed. If that is what you want, run `reminderd sync --force`"
        )
    if dry_run:
        for action in plan.actions:
            _count(result, action)
        return result
    for action in plan.actions:  # state-only actions first: cheap and local
        if isinstance(action, Forget):
            db.forget_event(cal.url, action.uid)
        elif isinstance(action, Record):
            known = state.get(action.want.uid)
            db.put_event(
                cal.url,
                EventRow(
                    action.want.uid,
                    action.want.href,
                    action.etag,
                    action.want.hash,
                    known.served if known is not None else None,
                ),
            )
            result.unchanged += 1
    writes = plan.writes
    bar = _Progress(len(writes), progress)
    with ThreadPoolExecutor(max_workers=max(1, connections), thread_name_prefix="sync") as pool:
        futures = {pool.submit(_execute, cal, action, edits): action for action in writes}
        for future in as_completed(futures):
            action = futures[future]
            try:
                outcome = future.result()
            except ReminderdError as exc:
                result.errors.append(str(exc))
                log.warning("sync: %s", exc)
            else:
                moved_to = outcome[3]
                if moved_to is not None and edits is not None and isinstance(action, Update):
                    edits.moved(action.want.touch, moved_to)
                _record(db, cal, action, outcome, result)
            bar.step()
    created = any(isinstance(a, (Create, Adopt)) for a in writes)
    if created and marker.get("token"):
        # Updates and deletes need no confirming: their objects existed at the old token,
        # so whatever happens to them next shows up in the next change list.
        marker = _confirm_writes(
            cal,
            db,
            str(marker["token"]),
            {a.want.href for a in writes if isinstance(a, (Create, Update, Adopt))},
        )
    elif writes and "ctag" in marker:
        marker = {"ctag": cal.collection().ctag}  # ctag servers: our own writes moved it
    if not result.errors or "token" in marker:
        db.set(SYNC_MARKER + cal.url, marker)
    return result


def _confirm_writes(
    cal: CalendarStore, db: StateStore, token: str, written: set[str]
) -> dict[str, str | None]:
    """Move the sync token past our own writes, checking each one landed as we left it.

    One REPORT from the pre-write token lists our writes (with their ETags,
    which some servers do not return on PUT) and anything someone else did
    meanwhile. A write changed again by someone is marked stale so the next
    sync rewrites it; one deleted meanwhile is forgotten so it is recreated.
    Without this, a server that reports only net changes (Xandikos) would
    hide an event deleted after our write forever.
    """
    try:
        changed, deleted, new_token = cal.changes(token)
    except InvalidSyncToken:
        return {"token": token}
    for row in db.events(cal.url).values():
        if row.href in deleted:
            db.forget_event(cal.url, row.uid)
        elif row.href in changed and changed[row.href] != row.etag:
            if row.href in written and row.etag is None:
                db.put_event(cal.url, replace(row, etag=changed[row.href]))
            else:  # changed again by someone: stale, so the next sync looks at it
                db.put_event(cal.url, replace(row, etag=changed[row.href], hash=""))
    return {"token": new_token}


_Outcome = tuple[str, str | None, str | None, datetime | None]
"""(what happened, new ETag, served hash of what the server now holds, a moved start)."""


def _execute(cal: CalendarStore, action: Action, edits: ServerEdits | None = None) -> _Outcome:
    """One write on a worker thread; returns what happened for the main thread to record."""
    if isinstance(action, Create):
        data = render(action.want.touch, uid=action.want.uid)
        try:
            return (
                ("recreated" if action.recreate else "created"),
                cal.put(action.want.href, data, None, create=True),
                served_hash(data),
                None,
            )
        except PreconditionFailed:
            return _adopt(cal, action.want, None)
    if isinstance(action, Update):
        etag = action.etag
        if action.drift:
            found = cal.get(action.want.href)
            if found is None:
                return "gone", None, None, None
            held, etag = found[0], found[1] or etag
            served = served_hash(held)
            if action.served is not None and served == action.served:
                return "rewritten", etag, served, None  # the server's own rewrite: no edit
            if served == served_hash(render(action.want.touch, uid=action.want.uid)):
                # what we would write: our own PUT whose answer a crash (or a dropped reply)
                # kept from the state; nothing to repair
                return "ours", etag, served, None
            touch = action.want.touch
            start = event_start(held, touch.start.tzinfo)  # type: ignore[arg-type]
            if (
                edits is not None
                and start is not None
                and start.astimezone(UTC) != touch.start.astimezone(UTC)
                and ownership(held) is not None
            ):
                return "moved", etag, served, start
        data = render(action.want.touch, uid=action.want.uid)
        try:
            return (
                ("repaired" if action.drift else "updated"),
                cal.put(action.want.href, data, etag, create=False),
                served_hash(data),
                None,
            )
        except PreconditionFailed:
            return _adopt(cal, action.want, None)  # changed under us: verify it is ours, then write
    if isinstance(action, Adopt):
        return _adopt(cal, action.want, action.etag)
    assert isinstance(action, Delete)
    etag = action.etag
    if action.uid is None:  # an orphan found by name: only delete what is provably ours
        found = cal.get(action.href)
        if found is None:
            return "gone", None, None, None
        if ownership(found[0]) is None:
            return "foreign", None, None, None
        etag = found[1] or etag
    try:
        cal.delete(action.href, etag)
    except PreconditionFailed:
        found = cal.get(action.href)
        if found is None:
            return "deleted", None, None, None
        if ownership(found[0]) is None:
            return "foreign", None, None, None
        cal.delete(action.href, found[1])
    return "deleted", None, None, None


def _adopt(cal: CalendarStore, want: Desired, etag: str | None) -> _Outcome:
    found = cal.get(want.href)
    if found is None:
        data = render(want.touch, uid=want.uid)
        return "created", cal.put(want.href, data, None, create=True), served_hash(data), None
    held, etag_now = found
    owner = ownership(held)
    if owner is None or owner[0] != want.touch.key:
        raise ReminderdError(
            f"{want.href}: an event not written by reminderd has this name; left alone"
        )
    if owner[1] == want.hash:
        return "adopted", etag_now, served_hash(held), None
    data = render(want.touch, uid=want.uid)
    return "updated", cal.put(want.href, data, etag_now, create=False), served_hash(data), None


def _record(
    db: StateStore, cal: CalendarStore, action: Action, outcome: _Outcome, result: SyncResult
) -> None:
    what, etag, served, _ = outcome
    if isinstance(action, Delete):
        if action.uid is not None:
            db.forget_event(cal.url, action.uid)
            if not cal.reuse_uids and what == "deleted":
                db.set(RETIRED + cal.url, [*(db.get(RETIRED + cal.url) or ()), action.uid])
        if what == "deleted":
            result.deleted += 1
        return
    want = action.want  # type: ignore[union-attr]
    if what == "gone":  # deleted while we looked: the next sync decides (recreate or skip)
        db.forget_event(cal.url, want.uid)
        return
    if what == "ours":  # it holds what we want: remember that, like an adopted event
        db.put_event(cal.url, EventRow(want.uid, want.href, etag, want.hash, served))
        result.unchanged += 1
        return
    if what in ("moved", "rewritten"):
        # not written: a move is rewritten once the outcome moved the touch; the row's
        # old hash makes sure of that. A server's rewrite needs nothing.
        row = db.events(cal.url).get(want.uid)
        db.put_event(cal.url, EventRow(want.uid, want.href, etag, row.hash if row else "", served))
        if what == "moved":
            result.moved += 1
        else:
            result.unchanged += 1
        return
    db.put_event(cal.url, EventRow(want.uid, want.href, etag, want.hash, served))
    if what == "created":
        result.created += 1
    elif what == "recreated":
        result.created += 1
        result.recreated += 1
    elif what == "repaired":
        result.updated += 1
        result.repaired += 1
    elif what == "updated":
        result.updated += 1
    else:  # adopted: already right on the server
        result.unchanged += 1


def _count(result: SyncResult, action: Action) -> None:
    if isinstance(action, Create):
        result.created += 1
        result.recreated += int(action.recreate)
    elif isinstance(action, (Update, Adopt)):
        result.updated += 1
        result.repaired += int(isinstance(action, Update) and action.drift)
    elif isinstance(action, Delete):
        result.deleted += 1
    elif isinstance(action, Record):
        result.unchanged += 1
