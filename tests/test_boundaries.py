"""The pure core never imports the I/O libraries (STYLE.md: adapters at the edges).

Each module is imported in a process of its own, so one module's heavy import
cannot hide behind another's.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "reminderd.model",
    "reminderd.timeparse",
    "reminderd.sources",
    "reminderd.ical",
    "reminderd.sync.plan",
    "reminderd.sms.text",
    "reminderd.sms.plan",
    "reminderd.agenda",
    "reminderd.config",
    "reminderd.team",
    "reminderd.clock",
    "reminderd.retry",
    "reminderd.starter",
    "reminderd.sms",
    "reminderd.store",
    "reminderd.outcomes.model",
    "reminderd.outcomes.overlay",
    "reminderd.replies.grammar",
    # not reminderd.email.message: the standard library's email.utils imports socket itself
]
EDGE = [
    "caldav",
    "twilio",
    "apscheduler",
    "requests",
    "niquests",
    "urllib3",
    "radicale",
    "watchdog",
    "sqlite3",
    "psycopg",
    "smtplib",
    "http.client",
    "concurrent.futures",
    "subprocess",
    "socket",
]


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_io_library(module: str) -> None:
    code = f"import sys\nimport {module}\nprint(sorted(m for m in {EDGE!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"
