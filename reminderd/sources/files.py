"""Reading an input file to text.

Regular files only, a size limit, the BOM, and encoding errors with their line.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

from ..errors import MissingInputError, Problem

MAX_FILE_BYTES = 20 * 1024 * 1024
"""A commitments file over this is refused: 10,000 commitments take about 4 MB
of YAML, so a bigger file is almost surely the wrong file, and reading it
whole would cost the daemon memory for nothing."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is ("a FIFO", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "an unknown kind of file"


def read_text(path: str, shown: str, encoding: str = "utf-8") -> tuple[str | None, Problem | None]:
    """The file's text, or a problem naming the line where it went wrong.

    Raises MissingInputError (exit 66) when the file does not exist or is not
    a regular file: there is nothing to read, as with a missing file. Opening
    a FIFO would block until a writer comes and `/dev/zero` never ends, so the
    kind is checked before the open, and again on the open descriptor (opened
    non-blocking) in case the path was swapped in between. At most the size
    limit is read, even from a regular file that grows meanwhile.
    """
    try:
        kind = not_regular(os.stat(path).st_mode)
        size = 0
        data = b""
        if kind is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as handle:
                st = os.fstat(fd)
                kind, size = not_regular(st.st_mode), st.st_size
                if kind is None and size <= MAX_FILE_BYTES:
                    data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MissingInputError(f"{shown}: file not found") from None
    except OSError as exc:
        return None, Problem(shown, 1, f"cannot read: {exc.strerror}")
    if kind is not None:
        raise MissingInputError(f"{shown}: not a regular file ({kind})")
    size = max(size, len(data))
    if size > MAX_FILE_BYTES:
        return None, Problem(
            shown,
            1,
            f"file is {size / 1e6:.1f} MB, over the "
            f"{MAX_FILE_BYTES // (1024 * 1024)} MB limit for a commitments file",
        )
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = line_of(data, exc.start)
        column = exc.start - max(data.rfind(b"\n", 0, exc.start), data.rfind(b"\r", 0, exc.start))
        hint = (
            " (save it as UTF-8, or set 'encoding' for this file in the config)"
            if codec == "utf-8-sig"
            else ""
        )
        return None, Problem(
            shown,
            line,
            f"byte 0x{data[exc.start]:02x} at column {column} is not valid {encoding}{hint}",
        )
    except (UnicodeError, LookupError):
        return None, Problem(shown, 1, f"cannot decode the file as '{encoding}'")
    if "\x00" in text:
        return None, Problem(
            shown, line_of(text, text.index("\x00")), "contains a NUL byte: this is not a text file"
        )
    if not text.strip():
        return None, Problem(shown, 1, "file is empty")
    return text, None


_NEWLINE_B = re.compile(rb"\r\n|\r|\n")
_NEWLINE_S = re.compile(r"\r\n|\r|\n")


def line_of(data: bytes | str, index: int) -> int:
    """1-based line of `index`, counting CRLF, LF and lone CR (old Mac CSV) as line ends."""
    pattern = _NEWLINE_B if isinstance(data, bytes) else _NEWLINE_S
    return len(pattern.findall(data, 0, index)) + 1  # type: ignore[arg-type]


def text_digest(text: str) -> str:
    """The one hash of a file's content as parsed: what a write-back checks is unchanged."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
