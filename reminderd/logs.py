"""Logging set-up: plain lines for a terminal, no timestamps of our own under journald."""

from __future__ import annotations

import logging
import os
import sys
from typing import ClassVar


def setup_logging(verbose: bool = False) -> None:
    """Our loggers at INFO (DEBUG with -v); libraries only from WARNING.

    Under systemd (JOURNAL_STREAM set) journald stamps each line itself, so
    we print the level as a syslog prefix and no time.
    """
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("reminderd").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("radicale").setLevel(
        logging.ERROR
    )  # its auth=none warning is expected on loopback


def error_lines(text: str) -> str:
    """An error for stderr: under journald each line gets the error priority (`<3>`),
    so `journalctl -p err` shows why a unit stopped; on a terminal, unchanged."""
    if not os.environ.get("JOURNAL_STREAM"):
        return text
    return "\n".join(f"<3>{line}" for line in text.split("\n"))


class _JournalFormatter(logging.Formatter):
    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIORITY.get(record.levelno, 6)}>{super().format(record)}"
