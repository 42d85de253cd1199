"""Outcomes laid over the commitments the files describe: pure.

Each outcome has a state part, which no file can say (this touch is done or
skipped, an extra reminder), and for some kinds a file part (the commitment
is done, a touch moved, a touch added). The state part always holds. The
file part holds until the file carries it (a YAML write-back) or the file
itself changes that commitment (then the file wins: SPEC, "the file stays
the truth").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from ..model import Commitment, FollowUp, Status, TouchChange, TouchState
from .model import Outcome, digest


def overlay(
    commitments: Iterable[Commitment], outcomes: Mapping[str, Sequence[Outcome]]
) -> tuple[Commitment, ...]:
    """Every commitment with its outcomes (`outcomes`: commitment id -> in recorded order)."""
    return tuple(apply(c, outcomes[c.id]) if c.id in outcomes else c for c in commitments)


def apply(c: Commitment, outcomes: Sequence[Outcome]) -> Commitment:
    """One commitment with its outcomes, oldest first."""
    current = digest(c)
    follow_ups = list(c.follow_ups)
    status = c.status
    moves: dict[int, datetime] = {}
    states: dict[int, TouchState] = {}
    snoozes: dict[int, list[datetime]] = {}
    for o in outcomes:
        file_part = not o.in_file and o.base == current
        zone = c.start.tzinfo
        start = o.start.astimezone(zone) if o.start is not None else None
        if o.kind == "done":
            states[o.touch] = TouchState.DONE
            if file_part:
                status = Status.DONE
        elif o.kind == "skip":
            states[o.touch] = TouchState.SKIPPED
        elif o.kind == "snooze" and start is not None:
            snoozes.setdefault(o.touch, []).append(start)
        elif o.kind == "move" and start is not None:
            states.pop(o.touch, None)  # moved after a skip or a done: it is on again
            if file_part:
                moves[o.touch] = start
        elif o.kind == "next":
            states[o.touch] = TouchState.DONE
            if file_part and start is not None:
                follow_ups.append(FollowUp(None, o.purpose, start))
    if (
        not (moves or states or snoozes)
        and status is c.status
        and len(follow_ups) == len(c.follow_ups)
    ):
        return c
    changes = tuple(
        TouchChange(
            i,
            start=moves.get(i),
            state=states.get(i, TouchState.OPEN),
            snoozes=tuple(snoozes.get(i, ())),
        )
        for i in sorted(set(moves) | set(states) | set(snoozes))
    )
    return replace(c, status=status, follow_ups=tuple(follow_ups), changes=changes)
