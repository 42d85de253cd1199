"""Names of the small values in `meta`, shared by the daemon, the CLI and status, and their helpers.

Values are JSON. Keys ending in `:` are prefixes, completed by an area or a
calendar URL.
"""

from __future__ import annotations

from datetime import datetime

from .protocol import StateStore

META_DAEMON = "daemon"  # {"state", "pid", "since"}
META_LAST_SYNC = "last_sync"  # {"at", "result", "errors"}; a team's: + ":" + person
META_ERROR = "error:"  # + area (config | input | sync): {"at", "message"}; removed when fixed
ERROR_AREAS = ("config", "input", "sync")
SYNC_MARKER = "sync:"  # + calendar URL: the sync token / ctag of the last listing
META_SINCE = "sms_outbox_since"  # when this state began keeping sends (sms.outbox)


def last_sync_key(person: str | None) -> str:
    """Where the last sync of one calendar is kept: one user's, or one person's of a team."""
    return META_LAST_SYNC if person is None else f"{META_LAST_SYNC}:{person}"


def forget_sync_markers(db: StateStore) -> None:
    """The next sync lists the whole calendar instead of asking what changed."""
    db.delete_prefix(SYNC_MARKER)


def record_error(db: StateStore, area: str, message: str, now: datetime) -> None:
    """Remember a current problem of one area (shown by `status` until it is fixed)."""
    db.set(META_ERROR + area, {"at": now.isoformat(timespec="seconds"), "message": message})


def clear_error(db: StateStore, area: str) -> None:
    """The area works again: its problem no longer shows."""
    db.delete_prefix(META_ERROR + area)


def current_errors(db: StateStore) -> list[dict[str, str]]:
    """Every area's current problem, newest first."""
    found = []
    for area in ERROR_AREAS:
        value = db.get(META_ERROR + area)
        if value:
            found.append(
                {"area": area, "at": value.get("at", ""), "message": value.get("message", "")}
            )
    return sorted(found, key=lambda e: e["at"], reverse=True)
