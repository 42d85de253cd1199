"""Commitment files to commitments: every file, every problem, ids unique across files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Problem
from ..model import Commitment
from .csvfile import commitments_from_csv
from .entries import FileContext
from .files import read_text
from .yamlfile import commitments_from_yaml

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Loaded", "load_sources"]


@dataclass(frozen=True, slots=True)
class Loaded:
    commitments: tuple[Commitment, ...]
    problems: tuple[Problem, ...]
    files: int

    @property
    def ok(self) -> bool:
        return not self.problems


def load_sources(config: Config) -> Loaded:
    """Read every file the config names. Problems are collected, never raised,
    except a missing file (MissingInputError, exit 66)."""
    commitments: list[Commitment] = []
    problems: list[Problem] = []
    for spec in config.sources:
        ctx = FileContext(spec.shown, spec.timezone or config.timezone, config.defaults,
                          config.phone_region, spec.date_format)
        text, problem = read_text(str(spec.path), spec.shown, spec.encoding)
        if problem is not None:
            problems.append(problem)
            continue
        assert text is not None
        if spec.kind == "csv":
            found = commitments_from_csv(text, ctx, spec.columns, spec.delimiter)
        else:
            found = commitments_from_yaml(text, ctx)
        problems += ctx.problems
        commitments += found
    problems += duplicate_ids(commitments)
    return Loaded(tuple(commitments), tuple(problems), len(config.sources))


def duplicate_ids(commitments: list[Commitment]) -> list[Problem]:
    """One problem per repeated id, at the later entry, naming the first."""
    first: dict[str, Commitment] = {}
    found = []
    for c in commitments:
        if c.id in first:
            other = first[c.id].source
            found.append(Problem(c.source.path, c.source.line,
                                 f"duplicate id '{c.id}': also used at {other}"
                                 + ("" if _explicit(c) else "; give each an 'id:' of its own")))
        else:
            first[c.id] = c
    return found


def _explicit(c: Commitment) -> bool:
    from .entries import derive_id

    return c.id != derive_id(c.title, c.contact)
