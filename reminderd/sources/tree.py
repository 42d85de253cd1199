"""A tiny value tree that remembers the line of every value.

Both sources (YAML and CSV) turn a file into these nodes, and one builder
(`entries.py`) turns nodes into commitments, so an error in either format
names the same `path:line`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Scalar:
    """A leaf as written.

    `tag` is `null` for YAML's plain nulls (`~`, `null`, empty), else `str`.
    """

    text: str
    line: int
    tag: str = "str"
    is_null: bool = field(init=False)  # computed once: read for every value of every entry

    def __post_init__(self) -> None:
        self.is_null = self.tag == "null" or not self.text.strip()


@dataclass(slots=True)
class Seq:
    items: list[Node]
    line: int


@dataclass(slots=True)
class Map:
    """Keys in file order; each key keeps its own line for error messages."""

    items: dict[str, tuple[int, Node]]
    line: int

    def get(self, key: str) -> Node | None:
        found = self.items.get(key)
        return found[1] if found else None


Node = Scalar | Seq | Map


def kind_name(node: Node) -> str:
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    return "empty" if node.is_null else f"'{node.text}'"
