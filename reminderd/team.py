"""A team on one config (`people:`): whose each follow-up is, and each person's view.

Pure: the config and the commitments in, routed commitments and problems out.
A person's own files are theirs; a shared file (a CRM export of everyone's
tasks) names its owner per row, matched to a person's name or email without
regard to case. A row whose owner is missing or unknown is a problem at its
line, like any other bad input: nothing of a file with problems is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .didyoumean import did_you_mean
from .errors import Problem, UsageError
from .model import Commitment

if TYPE_CHECKING:
    from .config import Config, Person, SourceSpec


def route(
    config: Config,
    spec: SourceSpec,
    found: Iterable[Commitment],
    index: Mapping[str, Person] | None = None,
) -> tuple[list[Commitment], list[Problem]]:
    """One file's commitments with their `owner` set to a person's name; without
    `people:` they pass unchanged. `index` (`owners(config)`) is built once per load:
    an export of 50,000 rows for 1,000 people is then one look-up per row."""
    if not config.people:
        return list(found), []
    own = config.owner_of(spec)
    routed: list[Commitment] = []
    problems: list[Problem] = []
    index = owners(config.people) if index is None else index
    names = [p.name for p in config.people]
    for c in found:
        if own is not None:
            routed.append(replace(c, owner=own))
            continue
        where = (c.source.path, c.source.line)
        if not c.owner:
            problems.append(
                Problem(
                    *where,
                    "no owner: a shared file names whose follow-up each row is "
                    "(an 'owner' column or key: a person's name or email)",
                )
            )
            continue
        person = index.get(c.owner.strip().casefold())
        if person is None:
            problems.append(
                Problem(
                    *where,
                    f"owner '{c.owner}' is not in people (known: {_known(names)})"
                    f"{did_you_mean(c.owner, names)}",
                )
            )
            continue
        routed.append(replace(c, owner=person.name))
    return routed, problems


def owners(people: Iterable[Person]) -> dict[str, Person]:
    """Each person by their name and their bare email address, casefolded."""
    index: dict[str, Person] = {}
    for p in people:
        index.setdefault(p.name.casefold(), p)
        if p.address:
            index.setdefault(p.address.casefold(), p)
    return index


def _known(names: list[str], shown: int = 10) -> str:
    """The people's names for a message; a long list is cut, never a 1,000-name line."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def match(people: Iterable[Person], owner: str) -> Person | None:
    return owners(people).get(owner.strip().casefold())


def person(config: Config, name: str) -> Person:
    """The person `--person NAME` names (name or email, any case); UsageError if none."""
    found = match(config.people, name)
    if found is None:
        if not config.people:
            raise UsageError(f"--person {name}: this config has no 'people:'")
        names = [p.name for p in config.people]
        raise UsageError(
            f"--person {name}: no such person (known: {_known(names)}){did_you_mean(name, names)}"
        )
    return found


def view(config: Config, who: Person) -> Config:
    """One person's config: their calendar, their phone and address as the recipients,
    their files; the state and the shared settings as they are."""
    sms = replace(config.sms, to=who.phone) if config.sms is not None else None
    email = (
        replace(config.email, to=who.email or config.email.to) if config.email is not None else None
    )
    return replace(
        config,
        calendar=who.calendar,
        sms=sms,
        email=email,
        sources=who.sources,
        people=(),
        person=who.name,
    )


def split(
    config: Config, commitments: Iterable[Commitment]
) -> list[tuple[Person, tuple[Commitment, ...]]]:
    """Each person with their commitments, in the config's order."""
    mine: dict[str, list[Commitment]] = {p.name: [] for p in config.people}
    for c in commitments:
        if c.owner in mine:
            mine[c.owner].append(c)
    return [(p, tuple(mine[p.name])) for p in config.people]
