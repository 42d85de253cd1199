"""The one outcome path: decide (pure), record (one transaction), write back (YAML).

Every source (an SMS reply, a calendar edit, the command line) builds a
`Request` and goes through `decide` and `record`; the daemon, or the CLI,
then re-reads, lays the outcomes over the files (`overlay`) and replans.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..didyoumean import did_you_mean
from ..errors import OutcomeRefused, ReminderdError
from ..model import Commitment, Touch, TouchState, touches
from ..store.protocol import StateStore, Tx
from . import log as outcome_log
from .model import KINDS, WRITTEN, Outcome, digest

if TYPE_CHECKING:
    from ..config import Config
    from .writeback import FileEdit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    commitment: str
    kind: str  # one of model.KINDS
    source: str  # one of model.SOURCES
    touch: int | None = None  # None: the next touch (see `next_touch`)
    note: str | None = None
    start: datetime | None = None  # move/next: the new time (aware)
    snooze: timedelta | None = None
    purpose: str | None = None  # next


def next_touch(ts: Sequence[Touch], now: datetime) -> Touch:
    """The touch an outcome without `#N` means: the first open one not over yet,
    else the last open one, else the last one."""
    open_ = [t for t in ts if t.state is TouchState.OPEN]
    for t in open_:
        if t.end.astimezone(UTC) > now.astimezone(UTC):
            return t
    return (open_ or list(ts))[-1]


def decide(
    request: Request,
    effective: Mapping[str, Commitment],
    parsed: Mapping[str, Commitment],
    now: datetime,
) -> tuple[Outcome, Touch]:
    """The outcome `request` makes, checked against the commitments as they stand.

    `effective` has the outcomes so far laid over; `parsed` is what the files
    say (the outcome remembers its digest: see `overlay`).
    """
    if request.kind not in KINDS:
        raise OutcomeRefused(f"unknown outcome '{request.kind}'")
    c = effective.get(request.commitment)
    if c is None:  # a phone capitalises the first letter: match without regard to case
        same = [i for i in effective if i.casefold() == request.commitment.casefold()]
        c = effective[same[0]] if len(same) == 1 else None
    if c is None:
        starting = [i for i in effective if i.startswith(request.commitment)]
        hint = (
            f" (did you mean '{starting[0]}'?)"
            if len(starting) == 1
            else did_you_mean(request.commitment, effective)
        )
        raise OutcomeRefused(f"no commitment with id '{request.commitment}'{hint}")
    ts = touches(c)
    if request.touch is None:
        touch = next_touch(ts, now)
    else:
        found = [t for t in ts if t.index == request.touch]
        if not found:
            raise OutcomeRefused(
                f"{c.id} has no touch #{request.touch} (it has #{ts[0].index} to #{ts[-1].index})"
            )
        touch = found[0]
    start = request.start
    if start is not None and request.kind in ("move", "next"):
        start = start.replace(second=0, microsecond=0)  # `+1d` from now: to the minute
    if request.kind in ("move", "next") and start is None:
        raise OutcomeRefused(f"{request.kind} needs a time")
    if request.kind == "next" and not (request.purpose or "").strip():
        raise OutcomeRefused("next needs the next step's text")
    if request.kind == "snooze":
        if request.snooze is None or request.snooze <= timedelta(0):
            raise OutcomeRefused("snooze needs a duration, e.g. 30m")
        start = (now + request.snooze).replace(microsecond=0)
    outcome = Outcome(
        id=uuid.uuid4().hex,
        commitment=c.id,
        touch=touch.index,
        kind=request.kind,
        source=request.source,
        at=now,
        base=digest(parsed.get(c.id, c)),
        note=request.note,
        start=start.astimezone(c.start.tzinfo) if start is not None else None,
        purpose=request.purpose,
    )
    return outcome, touch


def record(db: StateStore, outcome: Outcome, also: Callable[[Tx], None] | None = None) -> None:
    """Store the outcome; `also` runs in the same transaction (an SMS reply's
    MessageSid and its confirmation land with it, or nothing does)."""
    with db.transaction() as tx:
        outcome_log.add(tx, outcome)
        if also is not None:
            also(tx)


def confirmation(outcome: Outcome, touch: Touch) -> str:
    """The short line that says what was done: `OK: Call Alex moved to Tue 01-12 15:00`."""
    title = touch.commitment.title
    if touch.index:
        title += f" (follow-up {touch.index})"
    when = outcome.start.strftime("%a %m-%d %H:%M") if outcome.start else ""
    text = {
        "done": f"OK: {title} done",
        "move": f"OK: {title} moved to {when}",
        "snooze": f"OK: {title}: reminder again at {when}",
        "next": f"OK: {title} done; next step {when}: {outcome.purpose}",
        "skip": f"OK: {title} skipped",
    }[outcome.kind]
    return text + (f" ({outcome.note})" if outcome.note and outcome.kind == "done" else "")


# -- into the file


@dataclass(slots=True)
class WriteBack:
    """What `write_back_pending` did: files written, and a line for each thing to say."""

    files_written: int = 0
    said: list[str] = field(default_factory=list)


def write_back_pending(
    config: Config,
    db: StateStore,
    parsed: Mapping[str, Commitment],
    digests: dict[str, str],
) -> WriteBack:
    """Write every outcome not yet in its YAML file into it; returns what happened.

    A file edited since it was read is left alone and tried again after the
    next read (the outcome holds in the state meanwhile); one that cannot
    carry the outcome (a CSV export, `write_back: false`, a layout we cannot
    edit) keeps it in the state, and the log says so.
    """
    from .writeback import NotWritable, WriteConflict, WriteFailed, write_back

    pending = outcome_log.not_written(db)
    report = WriteBack()
    if not pending:
        return report
    by_shown = {spec.shown: spec for spec in config.all_sources}
    said = report.said
    batches: dict[Path, list[tuple[Outcome, FileEdit | None]]] = {}
    for o in pending:
        c = parsed.get(o.commitment)
        spec = by_shown.get(c.source.path) if c is not None else None
        if c is None or spec is None:
            continue  # gone from the files (or not loaded): nothing to write into
        if o.kind in ("snooze", "skip"):
            outcome_log.set_written(db, o.id, "state only: files have no place for it")
            continue
        if digest(c) != o.base:
            outcome_log.set_written(db, o.id, "superseded: the file itself changed it since")
            continue
        if spec.kind != "yaml" or not config.outcomes.write_back:
            why = "a CSV export is never rewritten" if spec.kind != "yaml" else "write_back off"
            outcome_log.set_written(db, o.id, f"kept in the state ({why})")
            continue
        batches.setdefault(spec.path, []).append((o, _file_edit(o, c)))
    for path, items in batches.items():
        edits = [e for _, e in items if e is not None]
        expected = digests.get(str(path), "")
        try:
            digests[str(path)] = write_back(path, expected, edits, phone_region=config.phone_region)
        except WriteConflict as exc:
            said.append(f"{exc}; the outcome holds in the state, written after the next read")
            continue
        except WriteFailed as exc:  # the disk, not the file: try again at the next read
            said.append(f"{exc}; the outcome holds in the state, written after the next read")
            continue
        except NotWritable as exc:
            for o, _ in items:
                outcome_log.set_written(db, o.id, f"kept in the state: {exc}")
            said.append(f"{exc}; the outcome is kept in the state")
            continue
        except (OSError, ReminderdError) as exc:
            said.append(f"{path}: not written ({exc}); the outcome holds in the state")
            continue
        for o, _ in items:
            outcome_log.set_written(db, o.id, WRITTEN)
        report.files_written += 1
        said.append(f"{path}: {len(items)} outcome(s) written into the file")
    for line in said:
        log.info("%s", line)
    return report


def _file_edit(o: Outcome, c: Commitment) -> FileEdit:
    from .writeback import FileEdit

    inherited = len(c.follow_ups)
    when = o.start.strftime("%Y-%m-%d %H:%M") if o.start else None
    if o.start is not None and o.start.utcoffset() != _local_offset(o.start, c):
        when = o.start.isoformat(timespec="minutes")
    if o.kind == "done":
        return FileEdit(o.commitment, status="done", inherited_follow_ups=inherited)
    if o.kind == "move":
        assert when is not None
        return FileEdit(o.commitment, when=(o.touch, when), inherited_follow_ups=inherited)
    assert o.kind == "next" and when is not None
    return FileEdit(o.commitment, append=(when, o.purpose), inherited_follow_ups=inherited)


def _local_offset(moment: datetime, c: Commitment) -> timedelta | None:
    """The UTC offset a wall-clock reading of `moment` gets back in the commitment's
    zone: where it differs (a DST fold), the file gets the offset written out."""
    return moment.replace(tzinfo=None).replace(tzinfo=c.start.tzinfo).utcoffset()


class CalendarEdits:
    """`sync.engine.ServerEdits` that takes a person's calendar edits as outcomes
    (source `calendar`), through the same `decide` and `record` as every other."""

    def __init__(
        self,
        db: StateStore,
        parsed: Mapping[str, Commitment],
        clock: Callable[[], datetime],
        on_recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self.db, self.parsed, self.clock, self.on_recorded = db, parsed, clock, on_recorded
        self.count = 0

    def moved(self, touch: Touch, start: datetime) -> None:
        self._take(
            touch, Request(touch.commitment.id, "move", "calendar", touch.index, start=start)
        )

    def deleted(self, touch: Touch) -> None:
        self._take(touch, Request(touch.commitment.id, "skip", "calendar", touch.index))

    def _take(self, edited: Touch, request: Request) -> None:
        c = edited.commitment
        outcome, touch = decide(request, {c.id: c}, self.parsed, self.clock())
        record(self.db, outcome)
        self.count += 1
        log.info("calendar edit: %s", confirmation(outcome, touch).removeprefix("OK: "))
        self.on_recorded()
