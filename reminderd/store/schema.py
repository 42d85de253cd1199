"""The schema as a ladder of numbered steps, run in order by every backend.

A database records the number of the last step it ran (SQLite: `PRAGMA
user_version`; PostgreSQL: a one-row table of its own). Opening it runs the
steps above that number, each in one transaction together with recording
its number, so a failed step leaves the database at the step before.

Rules for adding a step:

- Append only. A released step is never edited, reordered or removed: a
  database at version N has run exactly steps 1..N.
- Statements are the portable SQL of `protocol` (SQLite and PostgreSQL
  alike), one statement per string, DDL and SQL data changes only.
- Step 1 is the 0.1 schema, which had no version: a 0.1 database (version 0,
  tables present) passes through it unchanged, hence `IF NOT EXISTS`.
- A database newer than `LATEST` is refused (an older reminderd must not
  write to a schema it does not know), and a read-only open never migrates.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StateError


@dataclass(frozen=True, slots=True)
class Step:
    version: int  # the database's version once this step has run
    purpose: str
    statements: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step(
        1,
        "the 0.1 schema: calendar events, the SMS outbox, small values",
        (
            """CREATE TABLE IF NOT EXISTS calendar_events (
    calendar TEXT NOT NULL,
    uid      TEXT NOT NULL,
    href     TEXT NOT NULL,
    etag     TEXT,
    hash     TEXT NOT NULL,
    PRIMARY KEY (calendar, uid)
)""",
            """CREATE TABLE IF NOT EXISTS sms_outbox (
    key        TEXT PRIMARY KEY,   -- commitment#touch@offset@start: one send, ever
    kind       TEXT NOT NULL,      -- backup | digest | test
    due        TEXT NOT NULL,      -- UTC ISO: when the reminder is for
    send_at    TEXT NOT NULL,      -- UTC ISO: due, moved out of quiet hours
    next_try   TEXT NOT NULL,      -- UTC ISO: send_at, or later after a temporary failure
    deadline   TEXT NOT NULL,      -- UTC ISO: after this the send is useless (missed)
    payload    TEXT NOT NULL,      -- JSON: what the text is made of, so sends survive a broken file
    status     TEXT NOT NULL,      -- pending | sending | sent | failed | missed | cancelled
    attempts   INTEGER NOT NULL DEFAULT 0,
    ambiguous  INTEGER NOT NULL DEFAULT 0,  -- sends whose outcome a crash or timeout hid
    started_at TEXT,               -- UTC ISO of the last request start
    sid        TEXT,
    error      TEXT,
    body       TEXT,
    updated_at TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS sms_outbox_next ON sms_outbox (status, next_try)",
            """CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
)""",
        ),
    ),
    Step(
        2,
        "the outbox's reconcile reads one kind of send",
        ("CREATE INDEX IF NOT EXISTS sms_outbox_kind ON sms_outbox (kind, status)",),
    ),
)

STEPS += (
    Step(
        3,
        "two-way: outcomes, inbound replies, SMS references; email alerts' own outbox",
        (
            """CREATE TABLE IF NOT EXISTS outcomes (
    id         TEXT PRIMARY KEY,   -- random; order is (at, id)
    commitment TEXT NOT NULL,
    touch      INTEGER NOT NULL,   -- the touch's index (0: the first)
    kind       TEXT NOT NULL,      -- done | move | snooze | next | skip
    source     TEXT NOT NULL,      -- sms | calendar | cli
    at         TEXT NOT NULL,      -- UTC ISO: when it was recorded
    note       TEXT,
    start      TEXT,               -- ISO with offset: move/next's new time, snooze's reminder
    purpose    TEXT,               -- next: the new touch's purpose
    base       TEXT NOT NULL,      -- the commitment's content hash when it was recorded
    written    TEXT                -- NULL: not written into the file (yet); else what happened
)""",
            "CREATE INDEX IF NOT EXISTS outcomes_commitment ON outcomes (commitment, at)",
            """CREATE TABLE IF NOT EXISTS inbound (
    sid      TEXT PRIMARY KEY,     -- the provider's message id: each is acted on once
    received TEXT NOT NULL,        -- UTC ISO
    result   TEXT NOT NULL         -- what reminderd made of it (for `log`)
)""",
            """CREATE TABLE IF NOT EXISTS sms_refs (
    ref   TEXT PRIMARY KEY,        -- the ` #k3` a backup SMS ends with
    touch TEXT NOT NULL UNIQUE     -- commitment#index
)""",
            "ALTER TABLE calendar_events ADD COLUMN served TEXT",
            """CREATE TABLE IF NOT EXISTS email_outbox (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    due        TEXT NOT NULL,
    send_at    TEXT NOT NULL,
    next_try   TEXT NOT NULL,
    deadline   TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    ambiguous  INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    sid        TEXT,
    error      TEXT,
    body       TEXT,
    updated_at TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS email_outbox_next ON email_outbox (status, next_try)",
            "CREATE INDEX IF NOT EXISTS email_outbox_kind ON email_outbox (kind, status)",
        ),
    ),
)

STEPS += (
    Step(
        4,
        "a team on one database: claims with leases on both outboxes, the daemons' table",
        (
            "ALTER TABLE sms_outbox ADD COLUMN claimed_by TEXT",  # the daemon that took it
            "ALTER TABLE sms_outbox ADD COLUMN lease_until TEXT",  # UTC ISO, the database's clock
            "ALTER TABLE email_outbox ADD COLUMN claimed_by TEXT",
            "ALTER TABLE email_outbox ADD COLUMN lease_until TEXT",
            """CREATE TABLE IF NOT EXISTS daemons (
    id         TEXT PRIMARY KEY,   -- host:pid:random, what claims and leases carry
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    state      TEXT NOT NULL,      -- starting | running | stopped ...
    started_at TEXT NOT NULL,      -- UTC ISO
    seen_at    TEXT NOT NULL,      -- UTC ISO of its last word
    info       TEXT                -- JSON: what `status` shows of it
)""",
        ),
    ),
)

LATEST = STEPS[-1].version


def check_version(where: object, found: int, latest: int, readonly: bool) -> None:
    """Refuse a schema this code does not know, and, when reading only, one it would
    upgrade. `where` names the database in the message (a path, or a URL)."""
    if found > latest:
        raise StateError(
            f"state database {where} has schema version {found}, newer than this reminderd "
            f"knows ({latest}): upgrade reminderd (an older version must not change it)"
        )
    if readonly and found < latest:
        raise StateError(
            f"state database {where} has schema version {found}, older than this reminderd "
            f"needs ({latest}): run the daemon or `reminderd sync` once to upgrade it"
        )
