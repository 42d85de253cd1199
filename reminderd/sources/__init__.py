"""Commitment files to commitments: every file, every problem, ids unique across files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import MissingInputError, MissingInputs, Problem
from ..model import Commitment
from ..team import owners, route
from .csvfile import commitments_from_csv
from .entries import FileContext
from .files import read_text, text_digest
from .yamlfile import commitments_from_yaml

if TYPE_CHECKING:
    from ..config import Config, SourceSpec

__all__ = ["FileCache", "Loaded", "in_line_order", "load_sources"]


@dataclass(frozen=True, slots=True)
class Loaded:
    commitments: tuple[Commitment, ...]
    problems: tuple[Problem, ...]
    files: int
    digests: dict[str, str] = field(default_factory=dict)  # path -> text_digest as parsed


FileCache = dict[str, tuple[tuple[object, ...], list[Commitment], list[Problem], str]]


def load_sources(config: Config, cache: FileCache | None = None) -> Loaded:
    """Read every file the config names. Problems are collected, never raised,
    and come in reading order: files in config order, each file's by line.
    Files that are missing (or not regular files) raise MissingInputs (exit
    66) naming every one of them, after all the files were tried.

    With a `cache` (the daemon keeps one), a file whose size, mtime and inode
    are unchanged under the same settings is not parsed again: editing a small
    YAML file next to a big CRM export re-reads only the YAML.
    """
    commitments: list[Commitment] = []
    problems: list[Problem] = []
    missing: list[str] = []
    digests: dict[str, str] = {}
    index = owners(config.people) if config.people else None  # once per load, not per row
    for spec in config.all_sources:
        stamp = _stamp(config, spec)
        hit = cache.get(str(spec.path)) if cache is not None else None
        if hit is not None and stamp is not None and hit[0] == stamp:
            found, file_problems, digest = hit[1], hit[2], hit[3]
        else:
            try:
                found, file_problems, digest = _load_file(config, spec)
            except MissingInputError as exc:
                missing.append(str(exc))
                continue
            if cache is not None and stamp is not None:
                cache[str(spec.path)] = (stamp, found, file_problems, digest)  # one per file
        digests[str(spec.path)] = digest
        problems += file_problems
        routed, unrouted = route(config, spec, found, index)  # a team: whose each one is
        problems += unrouted
        commitments += routed
    if missing:
        raise MissingInputs(missing)
    problems += duplicate_ids(commitments)
    return Loaded(
        tuple(commitments),
        tuple(in_line_order(problems, [s.shown for s in config.all_sources])),
        len(config.all_sources),
        digests,
    )


def in_line_order(problems: list[Problem], paths: list[str]) -> list[Problem]:
    """Problems by file (in `paths` order, others after) then by line; stable, so
    two problems on one line keep the order they were found in."""
    rank: dict[str, int] = {}
    for path in paths:
        rank.setdefault(path, len(rank))
    return sorted(problems, key=lambda p: (rank.get(p.path, len(rank)), p.line))


def _load_file(config: Config, spec: SourceSpec) -> tuple[list[Commitment], list[Problem], str]:
    ctx = FileContext(
        spec.shown,
        spec.timezone or config.timezone,
        config.defaults,
        config.phone_region,
        spec.date_format,
    )
    text, problem = read_text(str(spec.path), spec.shown, spec.encoding)
    if problem is not None:
        return [], [problem], ""
    assert text is not None
    if spec.kind == "csv":
        found = commitments_from_csv(text, ctx, spec.columns, spec.delimiter, spec.values)
    else:
        found = commitments_from_yaml(text, ctx)
    return found, ctx.problems, text_digest(text)


def _stamp(config: Config, spec: SourceSpec) -> tuple[object, ...] | None:
    """What the parse of this file depends on; None when it cannot be had (re-read it)."""
    try:
        st = os.stat(spec.path)
    except OSError:
        return None  # read_text reports it
    return (
        repr(spec),
        st.st_mtime_ns,
        st.st_size,
        st.st_ino,
        config.timezone,
        config.defaults,
        config.phone_region,
    )


def duplicate_ids(commitments: list[Commitment]) -> list[Problem]:
    """One problem per repeated id, at the later entry, naming the first."""
    first: dict[str, Commitment] = {}
    found = []
    for c in commitments:
        if c.id in first:
            other = first[c.id].source
            found.append(
                Problem(
                    c.source.path,
                    c.source.line,
                    f"duplicate id '{c.id}': also used at {other}"
                    + ("" if _explicit(c) else "; give each an 'id:' of its own"),
                )
            )
        else:
            first[c.id] = c
    return found


def _explicit(c: Commitment) -> bool:
    from .entries import derive_id

    return c.id != derive_id(c.title, c.contact)
