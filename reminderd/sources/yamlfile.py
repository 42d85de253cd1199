"""YAML commitments files (and the YAML reader the config uses too).

PyYAML's composer (libyaml when present) gives nodes with their line; we
turn them into `tree` nodes ourselves instead of letting PyYAML build Python
values, so that every value keeps its line and YAML 1.1 surprises (`no` as
false, `+3021...` as a number, `0123` as octal) never reach the model: each
field reads the text as written.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import InvalidValue, Problem
from ..model import Commitment
from ..timeparse import get_zone
from .entries import FileContext
from .tree import Map, Node, Scalar, Seq, kind_name

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_TAGS = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "timestamp",
}
MAX_DEPTH = 32
FILE_KEYS = ("timezone", "defaults", "commitments")


class _Fatal(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def parse_yaml(text: str, path: str) -> tuple[Node | None, Problem | None]:
    """The document as a tree, or the first syntax problem with its line."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        return None, Problem(path, line, f"YAML syntax error: {what}")
    except yaml.YAMLError as exc:  # ReaderError (control characters) and friends
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        reason = getattr(exc, "reason", None) or "invalid YAML"
        return None, Problem(path, line, f"YAML error: {reason}")
    if root is None:
        return None, Problem(path, 1, "file is empty")
    try:
        # Aliases can make a small file expand enormously ("billion laughs");
        # a budget of one node per character of input stops that.
        return _convert(root, 0, [len(text) + 16]), None
    except _Fatal as exc:
        return None, Problem(path, exc.line, str(exc))


def _convert(node: yaml.Node, depth: int, budget: list[int]) -> Node:
    line = node.start_mark.line + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise _Fatal(line, "too many aliases: the document expands far beyond its size")
    if depth > MAX_DEPTH:
        raise _Fatal(line, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, yaml.ScalarNode):
        return Scalar(node.value, line, _TAGS.get(node.tag, "str"))
    if isinstance(node, yaml.SequenceNode):
        return Seq([_convert(item, depth + 1, budget) for item in node.value], line)
    items: dict[str, tuple[int, Node]] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Fatal(key_line, "a key must be plain text")
        key = key_node.value
        if key == "<<":
            raise _Fatal(key_line, "merge keys (<<) are not supported; repeat the values")
        if key in items:
            raise _Fatal(key_line, f"key '{key}' appears twice in the same mapping "
                          f"(first at line {items[key][0]})")
        items[key] = (key_line, _convert(value_node, depth + 1, budget))
    return Map(items, line)


def commitments_from_yaml(text: str, ctx: FileContext) -> list[Commitment]:
    """Every valid commitment in a YAML file; problems go to `ctx.problems`.

    The file is a mapping (`timezone`, `defaults`, `commitments`) or, for
    short files, just the list of commitments.
    """
    root, problem = parse_yaml(text, ctx.path)
    if root is None:
        ctx.problems.append(problem or Problem(ctx.path, 1, "file is empty"))
        return []
    entries: Node | None = root
    if isinstance(root, Map):
        ctx.check_keys(root, FILE_KEYS, "a commitments file")
        zone_node = root.get("timezone")
        zone_name = ctx.text(zone_node, "timezone")
        if zone_node is not None and zone_name:
            try:
                get_zone(zone_name)
                ctx.zone_name = zone_name
            except InvalidValue as exc:
                ctx.problem(zone_node.line, str(exc))
        ctx.defaults = ctx.defaults_from(root.get("defaults"), ctx.defaults)
        entries = root.get("commitments")
        if entries is None:
            ctx.problem(root.line, "no 'commitments:' list in this file")
            return []
    if isinstance(entries, Scalar) and entries.is_null:
        return []
    if not isinstance(entries, Seq):
        ctx.problem(entries.line, f"'commitments' must be a list, not {kind_name(entries)}")
        return []
    found = []
    for entry in entries.items:
        commitment = ctx.commitment(entry)
        if commitment is not None:
            found.append(commitment)
    return found
