"""The pure core never imports the I/O libraries (STYLE.md: adapters at the edges)."""

from __future__ import annotations

import subprocess
import sys

CORE = ["reminderd.model", "reminderd.timeparse", "reminderd.sources", "reminderd.ical", "reminderd.sync.plan",
        "reminderd.sms.text", "reminderd.sms.plan", "reminderd.agenda", "reminderd.config"]
EDGE = ["caldav", "twilio", "apscheduler", "requests", "niquests", "radicale", "watchdog"]


def test_core_imports_no_io_library() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + f"print(sorted(m for m in {EDGE!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
