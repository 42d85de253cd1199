"""YAML commitments files (and the YAML reader the config uses too).

PyYAML's composer (libyaml when present) gives nodes with their line; we
turn them into `tree` nodes ourselves instead of letting PyYAML build Python
values, so that every value keeps its line and YAML 1.1 surprises (`no` as
false, `+3021...` as a number, `0123` as octal) never reach the model: each
field reads the text as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from ..errors import InvalidValue, Problem
from ..model import Commitment
from ..timeparse import get_zone
from .entries import FileContext
from .files import line_of
from .tree import Map, Node, Scalar, Seq, kind_name

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
MAX_DEPTH = 32
"""Deeper nesting is refused with our own message: a commitments file needs 5 levels
(file, list, entry, follow_ups, a follow-up), and no reader must meet a nesting bomb."""
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_REPARSE_LIMIT = 1_000_000  # characters the pure-Python parser reads to confirm a nesting bomb
FILE_KEYS = ("timezone", "defaults", "commitments")


class _Fatal(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


EntryFn = Callable[[Node, Node | None], None]


def parse_yaml(
    text: str, path: str, on_entry: EntryFn | None = None
) -> tuple[Node | None, Problem | None]:
    """The document as a tree, or the first problem with its line.

    Built straight from libyaml's event stream: PyYAML's own composer
    resolves every scalar's tag in Python and costs 4x more, while we only
    need to tell a plain null from text.

    With `on_entry`, each finished item of the top-level `commitments` list
    (or of a top-level list) is handed over as soon as it ends and is not
    kept: a 10,000-entry file never exists as one tree, which keeps the
    daemon's memory small (the transient nodes do not fragment the heap).
    """
    try:
        return _build(yaml.parse(text, Loader=_Loader), on_entry), None
    except yaml.MarkedYAMLError as exc:
        deep = _too_deep_before(text, exc.problem_mark)
        if deep is not None:
            return None, Problem(path, deep, _TOO_DEEP)
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and mark is not None and mark.index >= len(text.rstrip()):
            mark = (
                exc.context_mark
            )  # hit the end of the file: where the unclosed thing began helps more
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        return None, Problem(path, line, f"YAML syntax error: {what}")
    except yaml.YAMLError as exc:  # ReaderError (control characters) and friends
        position = getattr(exc, "position", None)
        line = 1
        if isinstance(position, int):  # libyaml counts bytes of the UTF-8 text, PyYAML characters
            data = text.encode("utf-8") if _Loader is not yaml.SafeLoader else text
            line = line_of(data, position)
        reason = getattr(exc, "reason", None) or "invalid YAML"
        return None, Problem(path, line, f"YAML error: {reason}")
    except _Fatal as exc:
        return None, Problem(path, exc.line, str(exc))


def _build(events: Any, on_entry: EntryFn | None = None) -> Node | None:
    root: Node | None = None
    entries: Seq | None = None  # the list whose items are streamed to on_entry
    # each frame: [container, pending key or None, line of that key]
    stack: list[list[Any]] = []
    anchors: dict[str, Node] = {}
    unfinished: set[int] = set()

    def add(node: Node, line: int) -> None:
        nonlocal root
        if not stack:
            if root is not None:
                raise _Fatal(line, "more than one YAML document in the file; keep one")
            root = node
            return
        frame = stack[-1]
        container = frame[0]
        if isinstance(container, Seq):
            container.items.append(node)
        elif frame[1] is None:
            if not isinstance(node, Scalar):
                raise _Fatal(line, "a key must be plain text")
            key = node.text
            if key == "<<":
                raise _Fatal(line, "merge keys (<<) are not supported; repeat the values")
            if key in container.items:
                raise _Fatal(
                    line,
                    f"key '{key}' appears twice in the same mapping "
                    f"(first at line {container.items[key][0]})",
                )
            frame[1], frame[2] = key, line
        else:
            container.items[frame[1]] = (frame[2], node)
            frame[1] = None

    def finished(node: Node) -> None:
        """A node just ended: stream it if it is an entry of the entries list."""
        if on_entry is not None and entries is not None and stack and stack[-1][0] is entries:
            entries.items.pop()
            on_entry(node, root)

    for event in events:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            line = event.start_mark.line + 1
            plain_null = not event.style and event.tag is None and event.value in _NULLS
            node: Node = Scalar(event.value, line, "null" if plain_null else "str")
            if event.anchor:
                anchors[event.anchor] = node
            add(node, line)
            finished(node)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            line = event.start_mark.line + 1
            if len(stack) >= MAX_DEPTH:
                raise _Fatal(line, _TOO_DEEP)
            node = Map({}, line) if kind is yaml.MappingStartEvent else Seq([], line)
            if (
                isinstance(node, Seq)
                and entries is None
                and (not stack or (len(stack) == 1 and stack[0][1] == "commitments"))
            ):
                entries = node
            add(node, line)
            if event.anchor:
                anchors[event.anchor] = node
                unfinished.add(id(node))
            stack.append([node, None, 0])
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            done = stack.pop()[0]
            unfinished.discard(id(done))
            finished(done)
        elif kind is yaml.AliasEvent:
            line = event.start_mark.line + 1
            target = anchors.get(event.anchor)
            if target is None:
                raise _Fatal(line, f"unknown alias '*{event.anchor}'")
            if id(target) in unfinished:
                raise _Fatal(line, f"alias '*{event.anchor}' refers to itself")
            # A shallow copy that carries the alias's own line; children stay shared,
            # so an alias bomb costs nothing (nothing walks deeper than an entry).
            copy: Node
            if isinstance(target, Map):
                copy = Map(target.items, line)
            elif isinstance(target, Seq):
                copy = Seq(target.items, line)
            else:
                copy = Scalar(target.text, line, target.tag)
            add(copy, line)
            finished(copy)
    return root


def _too_deep_before(text: str, mark: Any) -> int | None:
    """The line where nesting first goes past MAX_DEPTH, if that is what libyaml tripped on.

    libyaml has a nesting limit of its own (1000 levels since PyYAML 6.0.4) and
    its scanner reads up to 1024 characters of a line ahead of the events we
    count, so `[[[[...` on one line hits its limit before ours. Then, and only
    when the line up to the error holds more than MAX_DEPTH brackets, the text
    up to the error is read again by PyYAML's pure-Python parser, which has no
    such limit, to find our own answer. Past _REPARSE_LIMIT characters that
    would be slow, and libyaml's message stands.
    """
    if _Loader is yaml.SafeLoader or mark is None or not 0 <= mark.index < _REPARSE_LIMIT:
        return None
    start = max(text.rfind("\n", 0, mark.index), text.rfind("\r", 0, mark.index)) + 1
    line = text[start : mark.index + 1]
    if line.count("[") + line.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    events: Any = yaml.parse(text[: mark.index + 1], Loader=yaml.SafeLoader)
    try:
        for event in events:
            kind = type(event)
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                depth += 1
                if depth > MAX_DEPTH:
                    return int(event.start_mark.line) + 1
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                depth -= 1
    except yaml.YAMLError:
        pass
    return None


def commitments_from_yaml(text: str, ctx: FileContext) -> list[Commitment]:
    """Every valid commitment in a YAML file; problems go to `ctx.problems`.

    The file is a mapping (`timezone`, `defaults`, `commitments`) or, for
    short files, just the list of commitments. Entries are built as the
    parser reaches them; a file that sets `timezone` or `defaults` after its
    list is read a second time, whole, so they still apply to every entry.
    """
    before, zone, defaults = len(ctx.problems), ctx.zone_name, ctx.defaults
    found: list[Commitment] = []
    header_done = False

    def on_entry(entry: Node, root: Node | None) -> None:
        nonlocal header_done
        if not header_done:
            if isinstance(root, Map):
                _header(root, ctx)
            header_done = True
        commitment = ctx.commitment(entry)
        if commitment is not None:
            found.append(commitment)

    root, problem = parse_yaml(text, ctx.path, on_entry)
    if isinstance(root, Map) and header_done and _header_after_entries(root):
        del ctx.problems[before:]
        ctx.zone_name, ctx.defaults, found, header_done = zone, defaults, [], False
        root, problem = parse_yaml(text, ctx.path)
    if root is None or (isinstance(root, Scalar) and root.is_null):
        del ctx.problems[before:]  # a syntax error: nothing of this file counts
        ctx.problems.append(problem or Problem(ctx.path, 1, "file is empty"))
        return []
    entries: Node | None = root
    if isinstance(root, Map):
        ctx.check_keys(root, FILE_KEYS, "a commitments file")
        if not header_done:
            _header(root, ctx)
        entries = root.get("commitments")
        if entries is None:
            ctx.problem(root.line, "no 'commitments:' list in this file")
            return []
    if isinstance(entries, Scalar) and entries.is_null:
        return found
    if entries is None or not isinstance(entries, Seq):
        assert entries is not None  # root is not None here, and a missing key returned above
        what = (
            "the file must be a mapping with 'commitments:' (or a list of commitments)"
            if entries is root
            else "'commitments' must be a list"
        )
        ctx.problem(entries.line, f"{what}, not {kind_name(entries)}")
        return []
    for entry in entries.items:  # empty when the entries were streamed
        commitment = ctx.commitment(entry)
        if commitment is not None:
            found.append(commitment)
    return found


def _header(root: Map, ctx: FileContext) -> None:
    """The file's own `timezone` and `defaults`, laid over the config's."""
    zone_node = root.get("timezone")
    zone_name = ctx.text(zone_node, "timezone")
    if zone_node is not None and zone_name:
        try:
            get_zone(zone_name)
            ctx.zone_name = zone_name
        except InvalidValue as exc:
            ctx.problem(zone_node.line, str(exc))
    ctx.defaults = ctx.defaults_from(root.get("defaults"), ctx.defaults)


def _header_after_entries(root: Map) -> bool:
    start = root.items.get("commitments", (0, None))[0]
    return any(root.items[key][0] > start for key in ("timezone", "defaults") if key in root.items)
