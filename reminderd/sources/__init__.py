"""Commitment files to commitments: every file, every problem, ids unique across files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Problem
from ..model import Commitment
from .csvfile import commitments_from_csv
from .entries import FileContext
from .files import read_text
from .yamlfile import commitments_from_yaml

if TYPE_CHECKING:
    from ..config import Config, SourceSpec

__all__ = ["FileCache", "Loaded", "load_sources"]


@dataclass(frozen=True, slots=True)
class Loaded:
    commitments: tuple[Commitment, ...]
    problems: tuple[Problem, ...]
    files: int


FileCache = dict[str, tuple[tuple[object, ...], list[Commitment], list[Problem]]]


def load_sources(config: Config, cache: FileCache | None = None) -> Loaded:
    """Read every file the config names. Problems are collected, never raised,
    except a missing file (MissingInputError, exit 66).

    With a `cache` (the daemon keeps one), a file whose size, mtime and inode
    are unchanged under the same settings is not parsed again: editing a small
    YAML file next to a big CRM export re-reads only the YAML.
    """
    commitments: list[Commitment] = []
    problems: list[Problem] = []
    for spec in config.sources:
        stamp = _stamp(config, spec)
        hit = cache.get(str(spec.path)) if cache is not None else None
        if hit is not None and stamp is not None and hit[0] == stamp:
            found, file_problems = hit[1], hit[2]
        else:
            found, file_problems = _load_file(config, spec)
            if cache is not None and stamp is not None:
                cache[str(spec.path)] = (stamp, found, file_problems)  # one entry per file
        problems += file_problems
        commitments += found
    problems += duplicate_ids(commitments)
    return Loaded(tuple(commitments), tuple(problems), len(config.sources))


def _load_file(config: Config, spec: SourceSpec) -> tuple[list[Commitment], list[Problem]]:
    ctx = FileContext(spec.shown, spec.timezone or config.timezone, config.defaults,
                      config.phone_region, spec.date_format)
    text, problem = read_text(str(spec.path), spec.shown, spec.encoding)
    if problem is not None:
        return [], [problem]
    assert text is not None
    if spec.kind == "csv":
        found = commitments_from_csv(text, ctx, spec.columns, spec.delimiter)
    else:
        found = commitments_from_yaml(text, ctx)
    return found, ctx.problems


def _stamp(config: Config, spec: SourceSpec) -> tuple[object, ...] | None:
    """What the parse of this file depends on; None when it cannot be had (re-read it)."""
    try:
        st = os.stat(spec.path)
    except OSError:
        return None  # read_text reports it
    return (repr(spec), st.st_mtime_ns, st.st_size, st.st_ino, config.timezone, config.defaults,
            config.phone_region)


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
