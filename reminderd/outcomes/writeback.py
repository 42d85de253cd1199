"""Outcomes written back into the user's YAML commitments file (SPEC "The file stays the truth").

The file is the user's: an outcome changes the few values it is about and
nothing else, byte for byte. ruamel.yaml's round-trip mode makes each change,
on the lines of the one entry it concerns, but its output is not written as
is: it does not keep every layout (one indentation setting per dump, comments
it moves, trailing spaces, a tab before a comment), so only the lines that
differ between its untouched dump and the edited one are spliced into the
original text, where the lines being replaced are the original's. Each result
is read back with our own loader and must equal the old content plus the edit,
or nothing is written.
"""

from __future__ import annotations

import copy
import difflib
import errno
import io
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from ..errors import EX_DATAERR, EX_IOERR, EX_TEMPFAIL, MissingInputError, ReminderdError
from ..sources.entries import FileContext, derive_id
from ..sources.files import MAX_FILE_BYTES, read_text, text_digest
from ..sources.tree import Map, Node, Seq
from ..sources.yamlfile import parse_yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOM = "\ufeff"
_NEWLINE = re.compile(r"\r\n|\r|\n")
_OTHER_BREAKS = re.compile("[\x85\u2028\u2029]")  # line breaks to YAML 1.1, not to us
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()

Plain = dict[str, Any] | list[Any] | str | None
"""A YAML value as our loader reads it: text or null, lists and mappings of them."""


@dataclass(frozen=True, slots=True)
class FileEdit:
    """One outcome's change to one commitment of a YAML file."""

    commitment: str
    """The commitment's id: its `id:` key, or `derive_id(title, contact)` when it has none."""
    status: str | None = None
    """Set the item's `status:` (e.g. "done")."""
    when: tuple[int, str] | None = None
    """(touch index, text): 0 sets the item's `when:`, n >= 1 the `when:` of follow_ups[n-1]
    (a bare-duration follow-up becomes {after: <old>, when: <text>})."""
    append: tuple[str, str | None] | None = None
    """(when text, purpose): a new follow-up {when, purpose} at the end of `follow_ups`."""
    inherited_follow_ups: int = 0
    """Follow-ups the commitment has from `defaults` when the item has no `follow_ups:` key."""


class WriteConflict(ReminderdError):
    """The file changed since reminderd read it: nothing written, the outcome stays in the state."""

    exit_code = EX_TEMPFAIL


class NotWritable(ReminderdError):
    """The edit cannot be made in this file without guessing: nothing written."""

    exit_code = EX_DATAERR


class WriteFailed(NotWritable):
    """The file system refused the write (permissions, disk full): nothing written."""

    exit_code = EX_IOERR


def write_back(
    path: Path, expected_digest: str, edits: Sequence[FileEdit], *, phone_region: str | None = None
) -> str:
    """Apply `edits` to the YAML file at `path` only if its content's text_digest still equals
    `expected_digest`; write atomically; return the new digest (the old one when nothing changed).

    `phone_region` is the config's: a derived id hashes the contact's normalised phone.
    An edit already in the file changes nothing, so applying one twice (after a crash) is safe.
    """
    shown = str(path)
    target = Path(os.path.realpath(path))  # write through a symlink: the link stays
    text, bom = _read(target, shown)
    if text_digest(text) != expected_digest:
        raise _conflict(shown)
    new_text = edited_text(text, edits, shown, phone_region)
    if new_text == text:
        return expected_digest
    _replace(target, shown, expected_digest, (_BOM if bom else "") + new_text)
    return text_digest(new_text)


def edited_text(
    text: str, edits: Sequence[FileEdit], shown: str, phone_region: str | None = None
) -> str:
    """The file's text with `edits` made (`text` itself when they are all there already)."""
    root, problem = parse_yaml(text, shown)
    if root is None:
        line = f" (line {problem.line})" if problem is not None else ""
        raise NotWritable(
            f"{shown}: not written: the file does not read as one YAML document{line}"
        )
    before = _plain(root)
    ids = _entry_ids(root, shown, phone_region)
    after = copy.deepcopy(before)
    ops: list[_Op] = []
    for edit in edits:
        index = _find(ids, edit.commitment, shown)
        entry = _entries(after)[index]  # a mapping: only a mapping has an id
        ops += _plan(entry, index, edit, shown)
    if after == before:
        return text
    lines, endings = _lines(text)
    survey = _survey(text, lines)
    for op in ops:
        if op.entry in survey.anchored:
            raise NotWritable(
                f"{shown}: not written: commitment '{ids[op.entry]}' uses a YAML anchor or alias"
            )
    new = _render(lines, endings, ops, survey, shown)
    check, _ = parse_yaml(new, shown)
    if check is None or _plain(check) != after:  # pragma: no cover - each op was checked
        raise NotWritable(f"{shown}: not written: the result would not read back as intended")
    return new


# -- reading and writing the file


def _read(target: Path, shown: str) -> tuple[str, bool]:
    """The text as `read_text` gives it (what the digest is of) and whether it had a BOM."""
    try:
        text, problem = read_text(str(target), shown)
    except MissingInputError as exc:
        if os.path.lexists(target):  # there, but a FIFO, a directory...
            raise NotWritable(f"{exc}; not written") from None
        raise _conflict(shown) from None
    if problem is not None or text is None:
        raise NotWritable(f"{problem}; not written")
    try:
        with open(target, "rb") as handle:
            bom = handle.read(3) == _BOM.encode("utf-8")
    except OSError as exc:
        raise WriteFailed(f"{shown}: cannot read: {exc.strerror}") from None
    return text, bom


def _replace(target: Path, shown: str, expected_digest: str, content: str) -> None:
    """Write `content` to a temp file beside `target`, then rename it over `target`.

    A crash leaves the old file or the new one, never half of one; the temp file is
    removed on any error. The digest is checked once more just before the rename, so
    an edit the user saved meanwhile is not overwritten (short of a race in that gap).
    """
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise NotWritable(f"{shown}: not written: the result would be over the size limit")
    directory = target.parent
    tmp: str | None = None
    try:
        old = os.stat(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                try:  # root editing someone's file: it stays theirs
                    os.fchown(fd, old.st_uid, old.st_gid)
                except OSError:
                    pass
            os.fsync(fd)
        now, _ = _read(target, shown)
        if text_digest(now) != expected_digest:
            raise _conflict(shown)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(directory)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # never ours to write
            raise NotWritable(
                f"{shown}: not written: {exc.strerror or exc} (reminderd may not write "
                "this file; the outcome is kept in the state)"
            ) from None
        raise WriteFailed(f"{shown}: not written: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; best effort, since the file is already replaced
    (some file systems refuse to fsync a directory), so no error may say otherwise."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _conflict(shown: str) -> WriteConflict:
    return WriteConflict(
        f"{shown}: not written: the file changed since reminderd read it; "
        "the outcome stays in the state"
    )


# -- what the file holds, as our loader reads it


def _plain(node: Node) -> Plain:
    if isinstance(node, Map):
        return {key: _plain(value) for key, (_, value) in node.items.items()}
    if isinstance(node, Seq):
        return [_plain(item) for item in node.items]
    return None if node.is_null else node.text


def _entries(root: Any) -> list[Any]:
    """The commitments list of a file (a mapping with `commitments:`, or the list itself)."""
    if isinstance(root, dict):
        root = root.get("commitments")
    return root if isinstance(root, list) else []


def _entry_ids(root: Node, shown: str, phone_region: str | None) -> list[str | None]:
    """Each entry's id as `entries.py` computes it; None where it has none (not valid)."""
    items: Node | None = root.get("commitments") if isinstance(root, Map) else root
    if not isinstance(items, Seq):
        return []
    ctx = FileContext(shown, "UTC", phone_region=phone_region)
    ids: list[str | None] = []
    for entry in items.items:
        ident = None
        if isinstance(entry, Map):
            ident = ctx.text(entry.get("id"), "id")
            if not ident:
                title = ctx.text(entry.get("title"), "title")
                contact = ctx.contact(entry.get("contact"))
                if title and contact is not None:
                    ident = derive_id(title, contact)
        ids.append(ident)
    return ids


def _find(ids: list[str | None], commitment: str, shown: str) -> int:
    found = [i for i, ident in enumerate(ids) if ident == commitment]
    if not found:
        raise NotWritable(f"{shown}: not written: no commitment '{commitment}' in the file")
    if len(found) > 1:
        raise NotWritable(f"{shown}: not written: more than one commitment '{commitment}'")
    return found[0]


# -- the edits: planned and checked on the plain content, then replayed on ruamel's


@dataclass(frozen=True, slots=True)
class _Op:
    """One change to make: `set` a key to a text, `wrap` a bare follow-up, `append` one."""

    kind: str
    entry: int
    follow_up: int | None = None  # index in follow_ups; None: the entry itself
    key: str = ""
    text: str = ""
    purpose: str | None = None


def _plan(entry: dict[str, Any], index: int, edit: FileEdit, shown: str) -> list[_Op]:
    """The ops `edit` needs (none when it is in the file already), made on `entry` too."""
    ops: list[_Op] = []

    def do(op: _Op) -> None:
        _apply_plain(entry, op)
        ops.append(op)

    name = edit.commitment
    if (
        (edit.append or (edit.when and edit.when[0] > 0))
        and "follow_ups" not in entry
        and edit.inherited_follow_ups
    ):
        raise NotWritable(
            f"{shown}: not written: commitment '{name}' takes its follow-ups from `defaults`; "
            "writing one here would replace that cadence"
        )
    if edit.status is not None:
        old = entry.get("status")
        if not (isinstance(old, str) and old.strip().casefold() == edit.status.casefold()):
            do(_Op("set", index, None, "status", edit.status))
    if edit.when is not None:
        touch, text = edit.when
        steps = entry.get("follow_ups")
        if touch == 0:
            step: Any = entry
        elif touch > 0 and isinstance(steps, list) and touch <= len(steps):
            step = steps[touch - 1]
        else:
            raise NotWritable(f"{shown}: not written: commitment '{name}' has no touch {touch}")
        at = None if touch == 0 else touch - 1
        if isinstance(step, dict):
            old = step.get("when")
            if not (isinstance(old, str) and old.strip() == text.strip()):
                do(_Op("set", index, at, "when", text))
        elif isinstance(step, str) and step.strip():
            do(_Op("wrap", index, at, "when", text))
        else:
            raise NotWritable(
                f"{shown}: not written: follow-up {touch} of '{name}' is not a mapping"
            )
    if edit.append is not None:
        text, purpose = edit.append
        steps = entry.get("follow_ups")
        if steps is not None and not isinstance(steps, list):
            raise NotWritable(f"{shown}: not written: follow_ups of '{name}' is not a list")
        if not any(_same_step(step, text, purpose) for step in steps or ()):
            do(_Op("append", index, None, "", text, purpose))
    return ops


def _apply_plain(entry: dict[str, Any], op: _Op) -> None:
    """What `op` makes of the content as our loader reads it: the check for ruamel's edit."""
    if op.kind == "append":
        step = {"when": op.text} | ({} if op.purpose is None else {"purpose": op.purpose})
        entry["follow_ups"] = [*(entry.get("follow_ups") or ()), step]
        return
    target = entry if op.follow_up is None else entry["follow_ups"][op.follow_up]
    if op.kind == "wrap":
        entry["follow_ups"][op.follow_up] = {"after": target, "when": op.text}
    else:
        target[op.key] = op.text


def _same_step(step: Any, when: str, purpose: str | None) -> bool:
    if not isinstance(step, dict):
        return False
    old_when, old_purpose = step.get("when"), step.get("purpose")
    return (
        isinstance(old_when, str)
        and old_when.strip() == when.strip()
        and (old_purpose.strip() if isinstance(old_purpose, str) else None)
        == (purpose.strip() if purpose is not None else None)
    )


def _replay(data: Any, op: _Op) -> None:
    """Make one planned op on ruamel's round-trip data: scalars assigned, items appended."""
    entry = _entries(data)[op.entry]
    flow = _is_flow(entry)
    if op.kind == "append":
        steps = entry.get("follow_ups")
        item = CommentedMap()
        item["when"] = _scalar(None, op.text)
        if op.purpose is not None:
            item["purpose"] = _scalar(None, op.purpose)
        if isinstance(steps, CommentedSeq):
            if _is_flow(steps):
                item.fa.set_flow_style()
            steps.append(item)
        else:  # absent, or `follow_ups:` with no value
            steps = CommentedSeq([item])
            if flow:
                item.fa.set_flow_style()
                steps.fa.set_flow_style()
            entry["follow_ups"] = steps
        return
    target = entry if op.follow_up is None else entry["follow_ups"][op.follow_up]
    if op.kind == "wrap":
        steps = entry["follow_ups"]
        item = CommentedMap()
        item["after"] = target
        item["when"] = _scalar(None, op.text)
        if _is_flow(steps):
            item.fa.set_flow_style()
        else:  # the line's `# comment` stays on it, after the value, not after the dash
            slots = steps.ca.items.get(op.follow_up)
            if slots and slots[0] is not None:
                slots[0].column += len("after: ")  # the same gap before the `#`
                item.ca.items["after"] = [None, None, slots[0], None]
                slots[0] = None
        steps[op.follow_up] = item
    else:
        target[op.key] = _scalar(target.get(op.key), op.text)


def _is_flow(node: Any) -> bool:
    return bool(getattr(node, "fa", None) is not None and node.fa.flow_style())


def _scalar(old: Any, text: str) -> str:
    """`text` in the old value's quotes, or quoted when a YAML 1.1 reader (PyYAML's
    resolver) would not read it as a string (`2026-12-03 15:00:00` is a timestamp there)."""
    styled: str = text
    if isinstance(old, DoubleQuotedScalarString):
        styled = DoubleQuotedScalarString(text)
    elif isinstance(old, SingleQuotedScalarString) or not _plain_is_text(text):
        styled = SingleQuotedScalarString(text)
    return styled


def _plain_is_text(text: str) -> bool:
    resolve: Any = _RESOLVER.resolve
    return bool(resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG)


# -- rendering: ruamel's dumps, their difference spliced into the original lines


@dataclass(slots=True)
class _Survey:
    """How the file indents its blocks, each way counted, and the entries that hold
    an anchor or an alias (an edit there could change another place too)."""

    maps: Counter[int] = field(default_factory=Counter)  # nested mapping - its parent's keys
    seqs: Counter[tuple[int, int]] = field(default_factory=Counter)  # (dash, item) - parent's
    anchored: set[int] = field(default_factory=set)
    starts: list[int] = field(default_factory=list)  # 0-based line where each entry begins
    dash: int | None = None  # the column of the entries' dashes, for a block list
    end: tuple[int, int] | None = None  # where the list of entries ends (line, column)
    odd_breaks: bool = False  # NEL, LS or PS: YAML 1.1 counts lines differently from us

    def indents(self) -> list[tuple[int, int, int]]:
        """ruamel's (mapping, sequence, offset) settings to try, the most common first:
        ruamel has one setting per dump, and a file may mix several."""
        maps = [m for m, _ in self.maps.most_common(2)] or [2]
        seqs = [s for s, _ in self.seqs.most_common(3)]
        for usual in ((2, 2 + maps[0]), (0, maps[0])):  # `  - item` and `- item`
            if usual not in seqs:
                seqs.append(usual)
        return [(m, max(seq, dash + 2), dash) for (dash, seq) in seqs for m in maps]


@dataclass(slots=True)
class _Frame:
    mapping: bool
    column: int | None  # of a mapping's keys or a block list's dashes; None: unknown
    line: int
    flow: bool
    value: bool  # the value of a key in a block mapping
    want_key: bool = True
    key: str | None = None
    first: bool = True  # no child seen yet
    entries: bool = False


def _survey(text: str, lines: list[str]) -> _Survey:
    """Indentation from the parser's event columns; entries with `&anchor` or `*alias`."""
    survey = _Survey(odd_breaks=bool(_OTHER_BREAKS.search(text)))
    stack: list[_Frame] = []
    entry = -1
    inside = False  # within the commitments list
    events: Any = yaml.parse(text, Loader=_Loader)
    for event in events:
        kind = type(event)
        if kind in (yaml.MappingEndEvent, yaml.SequenceEndEvent):
            if stack.pop().entries:
                inside = False
                survey.end = (event.start_mark.line, event.start_mark.column)
            _child_done(stack)
            continue
        if kind not in (
            yaml.ScalarEvent,
            yaml.AliasEvent,
            yaml.MappingStartEvent,
            yaml.SequenceStartEvent,
        ):
            continue
        parent = stack[-1] if stack else None
        mark = event.start_mark
        if parent is not None and parent.entries:
            entry += 1
            survey.starts.append(mark.line)
        if inside and (kind is yaml.AliasEvent or getattr(event, "anchor", None)):
            survey.anchored.add(entry)
        sample = parent is not None and not parent.flow and (parent.first or not parent.mapping)
        if sample and not survey.odd_breaks:  # with odd breaks, its lines are not ours
            _sample(survey, stack, mark, lines)
        if kind in (yaml.MappingStartEvent, yaml.SequenceStartEvent):
            mapping = kind is yaml.MappingStartEvent
            is_value = parent is not None and parent.mapping and not parent.want_key
            marked = event.anchor is not None or not event.implicit
            column = None if mapping or marked else mark.column  # a key's column comes later
            entries = not mapping and (
                parent is None or (len(stack) == 1 and is_value and parent.key == "commitments")
            )
            flow = bool(event.flow_style)
            block_value = is_value and parent is not None and not parent.flow
            stack.append(_Frame(mapping, column, mark.line, flow, block_value, entries=entries))
            if entries:
                inside, survey.dash = True, None if flow else column
        else:
            if parent is not None and parent.mapping and parent.want_key:
                parent.key = event.value if kind is yaml.ScalarEvent else None
            _child_done(stack)
    return survey


def _sample(survey: _Survey, stack: list[_Frame], mark: Any, lines: list[str]) -> None:
    """Count the indentation a child (at `mark`) of the innermost block shows: a
    mapping's first key, or a list item that starts on its dash's line."""
    frame = stack[-1]
    frame.first = False
    owner = stack[-2] if len(stack) > 1 else None
    if frame.mapping:
        frame.column = mark.column
        if frame.value and owner is not None and owner.column is not None:
            survey.maps[mark.column - owner.column] += 1
    elif frame.column is not None and lines[mark.line][frame.column : frame.column + 1] == "-":
        base = 0 if owner is None else owner.column  # ruamel indents a top-level list too
        if base is not None and (owner is None or frame.value):
            survey.seqs[(frame.column - base, mark.column - base)] += 1


def _child_done(stack: list[_Frame]) -> None:
    if stack and stack[-1].mapping:
        stack[-1].want_key = not stack[-1].want_key


def _render(
    lines: list[str], endings: list[str], ops: list[_Op], survey: _Survey, shown: str
) -> str:
    """The file's text with `ops` made, one at a time, each by ruamel.yaml.

    ruamel.yaml reads and writes only the lines of the edited entry (an item of a
    block list is a YAML document of its own): it is slow, 30 KB/s, and a big file
    must not take minutes. One op at a time, because ruamel has one indentation
    setting per dump and a file may use one for its entries, another for follow-ups.
    """
    spans = None if survey.odd_breaks else _spans(lines, survey)
    out = list(zip(lines, endings, strict=True))
    if spans is None:  # a flow list of entries: the whole file
        jobs = [(0, len(lines), ops)]
    else:
        jobs = [
            (*spans[entry], [replace(op, entry=0) for op in ops if op.entry == entry])
            for entry in sorted({op.entry for op in ops}, reverse=True)
        ]
    for start, stop, job in jobs:
        piece = out[start:stop]
        for op in job:
            piece = _edit(piece, op, survey.indents(), shown)
        out[start:stop] = piece
    return "".join(line + end for line, end in out)


def _lines(text: str) -> tuple[list[str], list[str]]:
    """The text's lines and each one's line break ("" for a last line without one)."""
    pieces = _NEWLINE.split(text)
    endings = _NEWLINE.findall(text)
    lines = pieces[: len(endings)] + ([pieces[-1]] if pieces[-1] else [])
    return lines, endings + [""] * (len(lines) - len(endings))


def _spans(lines: list[str], survey: _Survey) -> list[tuple[int, int]] | None:
    """Each entry's lines [start, stop): from its dash to the next one's; None for a flow list."""
    column = survey.dash
    if column is None or survey.end is None:
        return None
    indent = " " * column
    starts: list[int] = []
    for line in survey.starts:  # the dash is on the entry's first line or above it
        dash = line
        while dash >= 0 and not (
            lines[dash].startswith(indent) and lines[dash][column : column + 2] in ("-", "- ")
        ):
            dash -= 1
        if dash < 0 or (starts and dash <= starts[-1]):
            return None
        starts.append(dash)
    end_line, end_column = survey.end  # the next token after the list, at a line's start
    if end_line < len(lines) and lines[end_line][:end_column].strip():
        return None
    return list(zip(starts, [*starts[1:], min(end_line, len(lines))], strict=True))


def _edit(
    piece: list[tuple[str, str]], op: _Op, indents: list[tuple[int, int, int]], shown: str
) -> list[tuple[str, str]]:
    """`piece` (lines and their breaks) with `op` made by ruamel.yaml: its dumps before
    and after, the difference spliced in where the lines around it are the file's own,
    and the result read back by our loader as `op` says."""
    lines = [line for line, _ in piece]
    endings = [end for _, end in piece]
    source = "\n".join(lines) + "\n"
    tree, _ = parse_yaml(source, shown)
    expected = _plain(tree) if tree is not None else None
    entries = _entries(expected)
    if len(entries) <= op.entry or not isinstance(entries[op.entry], dict):
        raise NotWritable(f"{shown}: not written: the entry's lines do not read on their own")
    _apply_plain(entries[op.entry], op)
    for mapping, sequence, offset in indents:
        rt = YAML(typ="rt")
        rt.preserve_quotes = True
        rt.width = MAX_FILE_BYTES + 1  # no line is longer than the file: nothing re-wrapped
        rt.brace_single_entry_mapping_in_flow_sequence = True  # [{when: ...}], not [when: ...]
        rt.indent(mapping=mapping, sequence=sequence, offset=offset)
        try:
            data = rt.load(source)
            if not isinstance(_entries(data)[op.entry], CommentedMap):
                break  # ruamel reads the list differently from our loader: do not guess
            before = _dump(rt, data)
            _replay(data, op)
            after = _dump(rt, data)
        except (RuamelError, IndexError, KeyError) as exc:
            raise NotWritable(
                f"{shown}: not written: ruamel.yaml cannot edit this file ({type(exc).__name__})"
            ) from None
        new = _splice(lines, endings, before, after)
        if new is not None:
            check, _ = parse_yaml("".join(line + end for line, end in new), shown)
            if check is not None and _plain(check) == expected:
                return new
    raise NotWritable(
        f"{shown}: not written: ruamel.yaml cannot make this edit and keep the file's layout"
    )


def _dump(rt: YAML, data: Any) -> list[str]:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue().split("\n")[:-1]


def _splice(
    lines: list[str], endings: list[str], before: list[str], after: list[str]
) -> list[tuple[str, str]] | None:
    """The original lines with each change from `before` to `after` made at its place;
    None when a changed line of `before` is not one of the original's."""
    at = _line_map(before, lines)
    data = _data_lines("\n".join(before) + "\n")
    newline = Counter(e for e in endings if e).most_common(1)[0][0] if any(endings) else "\n"
    out = list(zip(lines, endings, strict=True))
    for tag, i1, i2, j1, j2 in reversed(_opcodes(before, after)):
        if tag == "insert":
            while i1 > 0 and i1 - 1 not in data:  # right after the YAML, before any comments
                i1 -= 1
            if i1 - 1 in at:
                start = at[i1 - 1] + 1
            elif i1 in at or i1 == len(before):
                start = at.get(i1, len(out))
            else:
                return None
            stop = start
        else:
            if i1 not in at or any(at.get(i) != at[i1] + i - i1 for i in range(i1, i2)):
                return None
            start, stop = at[i1], at[i1] + i2 - i1
        new = [(line, newline) for line in after[j1:j2]]
        if new and out and stop == len(out) and not out[-1][1]:
            # the file ends without a line break, and so does its new last line
            if stop == start:
                out[-1] = (out[-1][0], newline)
            new[-1] = (new[-1][0], "")
        out[start:stop] = new
    return out


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's changes, looked for only between the common head and tail (most of a file)."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    matcher = difflib.SequenceMatcher(None, a[head : len(a) - tail], b[head : len(b) - tail])
    return [
        (tag, i1 + head, i2 + head, j1 + head, j2 + head)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _line_map(a: list[str], b: list[str]) -> dict[int, int]:
    """Which line of `b` each line of `a` is, where the two agree but for trailing
    blanks (which ruamel drops: a line with them can still be edited)."""
    a = [line.rstrip() for line in a]
    b = [line.rstrip() for line in b]
    if a == b:
        return {i: i for i in range(len(a))}
    at = {}
    for i, j, size in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(size):
            at[i + k] = j + k
    return at


def _data_lines(text: str) -> set[int]:
    """0-based lines that hold YAML (not only a comment or blanks).

    A block scalar's trailing blank lines count only when they are its content (`|+`).
    """
    found: set[int] = set()
    skip = (yaml.StreamStartToken, yaml.StreamEndToken, yaml.BlockEndToken)
    rows = text.split("\n")
    tokens: Any = yaml.scan(text, Loader=_Loader)
    for token in tokens:
        if isinstance(token, skip):
            continue
        start, end = token.start_mark, token.end_mark
        last = end.line - 1 if end.column == 0 and end.line > start.line else end.line
        if isinstance(token, yaml.ScalarToken) and not token.value.endswith("\n\n"):
            while last > start.line and not rows[last].strip():
                last -= 1
        found.update(range(start.line, last + 1))
    return found
