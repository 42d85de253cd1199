"""CSV commitments files: built-in columns, or a CRM export read through a mapping.

A row becomes the same value tree a YAML entry does, so the same builder
checks it; every error names the line where the row starts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

from ..didyoumean import did_you_mean
from ..model import Commitment
from .entries import FileContext
from .files import MAX_FILE_BYTES
from .tree import Map, Node, Scalar, Seq

# The csv module refuses a cell over 128 KiB with its own error, which ends the
# file there; the file size cap bounds a cell anyway, and each field's own limit
# (entries.MAX_CHARS) then names the field at its line. Set once, only upwards.
csv.field_size_limit(max(csv.field_size_limit(), MAX_FILE_BYTES))

CSV_COLUMNS = (
    "id",
    "title",
    "when",
    "timezone",
    "duration",
    "channel",
    "contact",
    "company",
    "phone",
    "email",
    "purpose",
    "agenda",
    "questions",
    "bring",
    "next_step",
    "alarms",
    "sms",
    "status",
    "tags",
    "owner",
)
LIST_COLUMNS = frozenset({"agenda", "questions", "bring", "alarms", "sms", "tags"})
CONTACT_COLUMNS = {"contact": "name", "company": "company", "phone": "phone", "email": "email"}
REQUIRED = ("title", "when")


def commitments_from_csv(
    text: str,
    ctx: FileContext,
    columns: Mapping[str, str] | None = None,
    delimiter: str = ",",
    values: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Commitment]:
    """Every valid commitment in a CSV file; problems go to `ctx.problems`.

    Without `columns` the header must use the built-in names and any other
    header is an error; with it (our key -> their header) only the mapped
    columns are read and the export's other columns are ignored. `values`
    (field -> {their word, casefolded: our value}) reads a CRM's own words for
    channel and status; a word neither mapped nor ours says how to map it.
    """
    ctx.values = values or {}
    ctx.choice_hint = True
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 1
    picks: list[tuple[str, int]] | None = []  # (our key, cell index)
    found: list[Commitment] = []
    next_line = 1
    try:
        for row in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = [cell.strip() for cell in row], line
                picks = _picks(header, header_line, ctx, columns)
                if picks is None:
                    return []
                continue
            if len(row) != len(header):
                ctx.problem(
                    line,
                    f"row has {len(row)} cells but the header (line {header_line}) "
                    f"has {len(header)}",
                )
                continue
            assert picks is not None
            commitment = ctx.commitment(_row_tree(row, picks, line))
            if commitment is not None:
                found.append(commitment)
    except csv.Error as exc:
        ctx.problem(next_line, f"CSV error: {exc}")
    if header is None:
        ctx.problem(1, "no header row (expected columns like title,when,...)")
    return found


def _picks(
    header: list[str], line: int, ctx: FileContext, columns: Mapping[str, str] | None
) -> list[tuple[str, int]] | None:
    """Which cell feeds which key; problems for unknown, duplicate or missing columns."""
    before = len(ctx.problems)
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in seen and name:
            ctx.problem(line, f"column '{name}' appears twice in the header")
        seen.setdefault(name, index)
    picks: list[tuple[str, int]] = []
    if columns is None:
        for index, name in enumerate(header):
            if name not in CSV_COLUMNS:
                ctx.problem(
                    line,
                    f"unknown column '{name}'{did_you_mean(name, CSV_COLUMNS)}; "
                    "map a CRM export's columns in the config with 'columns:'",
                )
            elif seen[name] == index:
                picks.append((name, index))
    else:
        for key, name in columns.items():
            if name in seen:
                picks.append((key, seen[name]))
            else:
                ctx.problem(
                    line,
                    f"column '{name}' (mapped to {key}) is not in the header"
                    f"{did_you_mean(name, seen)}",
                )
    have = {key for key, _ in picks} | (set(columns) if columns else set())
    for key in REQUIRED:
        if key not in have:
            ctx.problem(line, f"no '{key}' column in the header")
    return picks if len(ctx.problems) == before else None


def _row_tree(row: list[str], picks: list[tuple[str, int]], line: int) -> Map:
    items: dict[str, tuple[int, Node]] = {}
    contact: dict[str, tuple[int, Node]] = {}
    for key, index in picks:
        cell = row[index].strip()
        if not cell:
            continue  # an empty cell means "not given": defaults apply
        node: Node
        if key in LIST_COLUMNS:
            node = Seq(
                [Scalar(part.strip(), line) for part in cell.split(";") if part.strip()], line
            )
        else:
            node = Scalar(cell, line)
        if key in CONTACT_COLUMNS:
            contact[CONTACT_COLUMNS[key]] = (line, node)
        else:
            items[key] = (line, node)
    if contact:
        items["contact"] = (line, Map(contact, line))
    return Map(items, line)
