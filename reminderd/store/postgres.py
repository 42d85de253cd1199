"""The PostgreSQL state store: one database shared by a team's daemons (`state: postgresql://`).

`PostgresStore` is a `protocol.StateStore`, written to behave like the SQLite
`StateDB`, so callers are the same for both:

- Where: `postgresql://user@host:port/db` plus a separate password (never in
  the URL, and never in a log line, an error or a repr: libpq's messages are
  scrubbed of it too). `where` is that URL for messages; `path` is the same
  text as a `Path`, only an identity (it names no file, and `Path` folds the
  `//`), and `still_same()` tells whether the database was replaced.
- Transactions: `transaction()` starts with `pg_advisory_xact_lock(WRITE_LOCK)`,
  the equivalent of SQLite's `BEGIN IMMEDIATE`: one writing transaction at a
  time on the database, across every process sharing it, held to COMMIT or
  ROLLBACK. The isolation is READ COMMITTED, so every statement after the lock
  sees all that the writers before committed: a read-modify-write inside one
  transaction (outbox reconcile, claims, refs, replies) cannot lose an update
  or act on a stale read, with no retry loop in the callers (SERIALIZABLE
  would need them to re-run their bodies). Reads through `query()` take no
  lock and see the last commit. A lock or a transaction held too long is cut
  by the server (`lock_timeout` 30 s, like SQLite's busy timeout;
  `idle_in_transaction_session_timeout` 60 s). `transaction(row_locks=True)`
  skips the write lock, for the outbox's reservations: they lock the rows they
  pick (`FOR UPDATE SKIP LOCKED`, `skip_locked`) and change only those, so
  daemons sharing a burst never wait for each other's picks. The claim and
  the record after a send are each one conditional UPDATE by key; they still
  take the write lock (short transactions), so a long reconcile holds them up
  while it runs.
- Threads: a small pool of connections (one per concurrent caller, up to
  `max_connections`); a thread inside `transaction()` uses its transaction's
  connection for `query()` too (it sees its own writes, as with SQLite), and a
  transaction inside a transaction is refused, as SQLite refuses it.
- Outages: a dropped connection is discarded; the next call connects again
  (an idle connection found dead is replaced at once, so the first call after
  a server restart works). Failures raise `StateError` (exit 74) saying what
  to do, with the password scrubbed from whatever libpq said.
- Schema: the same ladder as SQLite (`schema.STEPS`), the version in a one-row
  table of its own (`reminderd_schema`); each step runs in one transaction
  with its number, under the write lock, so two processes starting at once
  migrate once. A newer schema is refused, and so is an older one read-only.
- SQL: the portable subset of `protocol`; each `?` outside string literals,
  quoted identifiers and comments becomes `%s`, and every `%` (inside
  literals too: psycopg reads them everywhere) becomes `%%`. Dollar-quoted
  and E'' strings are not portable and not recognised. `True`/`False`
  parameters are sent as 1/0, as SQLite stores them.
- Daemons sharing the database: `PgLeases` holds `daemon:<ident>` on a session
  of its own for the process's life (others read it in `pg_locks`: `alive()`),
  and short named leases (one calendar's sync) on the same session; all of
  them die with the process (kill -9: at once; a vanished host: the TCP
  keepalives below, ~30 s). Lease times use the database's clock (`db_now`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from ..errors import AlreadyRunning, StateError
from .common import SqlRows
from .protocol import Tx
from .schema import STEPS, Step, check_version

if TYPE_CHECKING:
    from .protocol import StateStore

log = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")

VERSION_TABLE = "reminderd_schema"
_VERSION_DDL = f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    one     INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),
    version INTEGER NOT NULL
)"""

LOCK_TIMEOUT_S = 30  # waiting for another process's transaction (SQLite: busy_timeout)
IDLE_IN_TRANSACTION_S = 60  # a transaction left open this long is ended by the server
POOL_WAIT_S = 60  # waiting for a free connection of our own pool


def lock_key(name: str) -> int:
    """The advisory lock key (signed 64 bits) of one of our locks, stable across versions."""
    digest = hashlib.blake2b(f"reminderd:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


WRITE_LOCK = lock_key("write")  # every writing transaction and every migration step


# -- the portable SQL, for psycopg


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """`?` -> `%s` outside literals, identifiers and comments; every `%` -> `%%`."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":  # a literal or a quoted identifier; a doubled quote stays inside
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class _Secret:
    """The password: shown as nothing by repr/str, so no traceback or log can carry it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value

    def reveal(self) -> str | None:
        return self._value

    def scrub(self, text: str) -> str:
        if self._value:
            text = text.replace(self._value, "***")
        return text

    def __repr__(self) -> str:
        return "<hidden>" if self._value else "None"

    __str__ = __repr__


# -- errors, saying what to do

_BY_SQLSTATE = {
    "28P01": "the server refused the password of user {user}: check state_password_env, "
    "_file, _command or _credential",
    "28000": "the server does not let user {user} in from this host (no such role, or no "
    "pg_hba.conf entry for it)",
    "3D000": "database {db} does not exist on the server: create it (createdb -O {user} {db})",
    "42501": "user {user} lacks a privilege it needs ({detail}): make it the owner of "
    "database {db}, or grant it",
    "53100": "the database server's disk is full",
    "53200": "the database server is out of memory",
    "53300": "the database server has no free connection slot (max_connections)",
    "55P03": "another process kept it locked for {lock_s} s",
    "57P03": "the database server is starting up or shutting down; try again shortly",
    "25006": "it is read-only here ({detail})",
    "25P03": "a transaction stayed open too long and the server ended it",
    "40001": "a concurrent transaction of another process conflicted with this one; try again",
    "40P01": "a concurrent transaction of another process deadlocked with this one; try again",
    "XX001": "the server reports damaged data ({detail}); see its log",
    "XX002": "the server reports a damaged index ({detail}); see its log",
}

_CONNECT_TEXTS = (  # libpq's words when it could not connect -> what to do
    ("permission denied", "42501"),
    ("password authentication failed", "28P01"),
    ("no password supplied", "28P01"),
    ("no pg_hba.conf entry", "28000"),
    ('role "', "28000"),
    ('database "', "3D000"),
    ("too many clients", "53300"),
    ("remaining connection slots", "53300"),
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
    ("the database system is in recovery mode", "57P03"),
)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


class PostgresStore(SqlRows):
    """The PostgreSQL state store (a `protocol.StateStore`), shared by the daemon's threads.

    `conninfo` is `postgresql://user@host:port/db` (libpq's URL or key=value
    form; no password in it); `password` is given apart. `readonly=True`
    opens an existing state for reading only (status, agenda): it never
    creates or migrates anything and every transaction is read-only on the
    server. `steps` is the migration ladder (tests pass one of their own).
    """

    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        conninfo: str,
        *,
        password: str | None = None,
        readonly: bool = False,
        steps: Sequence[Step] = STEPS,
        connect_timeout: float = 10,
        max_connections: int = 6,
        application_name: str = "reminderd",
    ) -> None:
        self._secret = _Secret(password)
        self.readonly = readonly
        try:
            given = pg_conninfo.conninfo_to_dict(conninfo)
        except psycopg.Error:
            raise StateError(
                "state: not a PostgreSQL URL (postgresql://user@host:port/database)"
            ) from None
        if "password" in given:
            raise StateError(
                "state: the PostgreSQL URL must not hold the password; give it with "
                "state_password_env, _file, _command or _credential"
            )
        self._user = str(given.get("user") or _os_user())
        self._db_name = str(given.get("dbname") or self._user)
        self.where = _display(given, self._user, self._db_name)
        options = " ".join(
            [
                str(given.get("options") or ""),
                f"-c lock_timeout={LOCK_TIMEOUT_S}s",
                f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S}s",
                # a host that vanished without closing its connections: found out in ~30 s
                "-c tcp_keepalives_idle=15 -c tcp_keepalives_interval=5",
                "-c tcp_keepalives_count=3",
            ]
            + (["-c default_transaction_read_only=on"] if readonly else [])
        ).strip()
        self._params: dict[str, Any] = {
            **given,
            "options": options,
            "connect_timeout": max(2, round(connect_timeout)),
            "application_name": given.get("application_name") or application_name,
            "keepalives": 1,
            "keepalives_idle": 15,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        }
        self._max = max(1, max_connections)
        self._idle: list[Conn] = []
        self._out = 0
        self._closed = False
        self._cond = threading.Condition()
        self._local = threading.local()
        self._identity: tuple[int, int] | None = None
        latest = steps[-1].version if steps else 0
        try:
            found = self._version()
            if found is None:
                if readonly:
                    raise StateError(
                        f"no state yet in {self.where} (reminderd has not run with this config)"
                    )
                found = 0
            check_version(self.where, found, latest, readonly)
            if not readonly:
                self._migrate(steps, found)
            self._identity = self._current_identity()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r}, readonly={self.readonly})"

    @property
    def path(self) -> Path:
        """An identity, not a file: `where` as a Path (which folds `//` into `/`).

        The daemon's inode check does not apply: use `still_same()`.
        """
        return Path(self.where)

    # -- connections

    def _connect(self) -> Conn:
        try:
            return psycopg.Connection.connect(
                autocommit=True,
                prepare_threshold=None,  # no server-side plans to go stale after a migration
                password=self._secret.reveal(),
                **self._params,
            )
        except psycopg.Error as exc:
            raise self._error(exc, connecting=True) from None

    def _checkout(self) -> tuple[Conn, bool]:
        """A connection of the pool (True: reused, may have died since) or a new one."""
        deadline = time.monotonic() + POOL_WAIT_S
        with self._cond:
            while True:
                if self._closed:
                    raise StateError(f"state database {self.where}: already closed")
                while self._idle:
                    conn = self._idle.pop()
                    if conn.closed or conn.broken:
                        _quiet_close(conn)
                        continue
                    self._out += 1
                    return conn, True
                if self._out < self._max:
                    self._out += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StateError(
                        f"state database {self.where}: all {self._max} connections of this "
                        f"process stayed busy for {POOL_WAIT_S} s"
                    )
                self._cond.wait(left)
        try:
            return self._connect(), False
        except BaseException:
            with self._cond:
                self._out -= 1
                self._cond.notify()
            raise

    def _checkin(self, conn: Conn) -> None:
        with self._cond:
            self._out -= 1
            keep = (
                not self._closed
                and not conn.closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
            )
            if keep:
                self._idle.append(conn)
            self._cond.notify()
        if not keep:
            _quiet_close(conn)

    def _drop_idle(self) -> None:
        """One connection was found dead (a server restart): its idle siblings are too."""
        with self._cond:
            idle, self._idle = self._idle, []
        for conn in idle:
            _quiet_close(conn)

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        conn, _ = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    # -- errors

    def _error(self, exc: BaseException, *, connecting: bool = False) -> StateError:
        return StateError(f"state database {self.where}: {self._cause(exc, connecting)}")

    def _cause(self, exc: BaseException, connecting: bool = False) -> str:
        text = self._secret.scrub(str(exc))
        state = getattr(exc, "sqlstate", None)
        if connecting and state is None:
            if isinstance(exc, pg_errors.ConnectionTimeout):
                return (
                    f"no answer within {self._params['connect_timeout']} s: check that the "
                    "server is up and reachable from here"
                )
            lowered = text.lower()
            state = next((s for words, s in _CONNECT_TEXTS if words.lower() in lowered), None)
            if state is None:
                detail = text.rsplit("failed:", 1)[-1] if "failed:" in text else text
                return (
                    f"cannot connect ({_first_line(detail)}): check that PostgreSQL runs "
                    "there and accepts connections from this host"
                )
        detail = _first_line(getattr(getattr(exc, "diag", None), "message_primary", None) or text)
        detail = self._secret.scrub(detail)
        if state and (state.startswith("08") or state in ("57P01", "57P02")):
            return (
                f"the connection to the server was lost ({detail}); reminderd connects "
                "again on the next try"
            )
        if state in _BY_SQLSTATE:
            return _BY_SQLSTATE[state].format(
                user=self._user, db=self._db_name, detail=detail, lock_s=LOCK_TIMEOUT_S
            )
        if isinstance(exc, psycopg.OperationalError) and not state:
            return (
                f"the connection to the server was lost ({detail}); reminderd connects "
                "again on the next try"
            )
        if isinstance(exc, psycopg.Error):
            return f"the database failed ({state or type(exc).__name__}: {detail})"
        return type(exc).__name__

    # -- the schema

    def _version(self) -> int | None:
        """The schema version recorded in the database, None if it has no state at all."""
        rows = self.query(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL")
        if not rows[0][0]:
            return None
        rows = self.query(f"SELECT version FROM {VERSION_TABLE}")
        return int(rows[0][0]) if rows else 0

    def _migrate(self, steps: Sequence[Step], found: int) -> None:
        """Run the steps above the database's version, each with its number in one transaction."""
        latest = steps[-1].version if steps else 0
        if found >= latest:
            return  # the usual open: nothing to write
        existing = found > 0  # a new database is simply made; only an upgrade is news
        for step in steps:
            with self.transaction() as tx:  # the write lock: one process migrates
                tx.execute(_VERSION_DDL)
                tx.execute(
                    f"INSERT INTO {VERSION_TABLE} (one, version) VALUES (1, 0) "
                    "ON CONFLICT DO NOTHING"
                )
                (now,) = tx.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
                found = int(now)  # again under the lock: another process may have run it
                if found >= step.version:
                    continue
                try:
                    for statement in step.statements:
                        tx.execute(statement)
                    tx.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (step.version,))
                except psycopg.Error as exc:
                    raise StateError(
                        f"state database {self.where}: upgrading it to schema version "
                        f"{step.version} failed, it stays at {found}: {self._cause(exc)}"
                    ) from None
            if existing:
                log.info(
                    "state database %s: upgraded to schema version %d (%s)",
                    self.where,
                    step.version,
                    step.purpose,
                )
        after = self._version() or 0
        check_version(self.where, after, latest, False)  # a newer reminderd may have won

    def _current_identity(self) -> tuple[int, int]:
        rows = self.query(
            "SELECT d.oid::bigint, to_regclass(?)::oid::bigint FROM pg_database d "
            "WHERE d.datname = current_database()",
            (VERSION_TABLE,),
        )
        return int(rows[0][0]), int(rows[0][1] or 0)

    def still_same(self) -> bool:
        """False once the database (or its reminderd tables) was dropped and made again
        under us: the daemon's check that its state was not replaced. StateError when
        the server cannot be asked (an outage is not a replacement)."""
        return self._current_identity() == self._identity

    # -- transactions and reads

    def _begin(self, row_locks: bool = False) -> Conn:
        """A connection in a new transaction holding the write lock (unless read-only, or
        the caller's row locks make it safe)."""
        for attempt in range(2):
            conn, reused = self._checkout()
            try:
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")  # whatever the default
                if not (self.readonly or row_locks):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                return conn
            except psycopg.Error as exc:
                broken = conn.broken or conn.closed
                if not broken:
                    _quiet_rollback(conn)
                self._checkin(conn)
                if broken and reused and attempt == 0:
                    self._drop_idle()  # the server went away since: connect again
                    continue
                raise self._error(exc) from None
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self, *, row_locks: bool = False) -> Iterator[Tx]:
        """One atomic unit, holding the write lock from its start; failures become StateError.

        `row_locks=True` starts it without the write lock, for a transaction whose
        own row locks make it safe: a SELECT ending in `skip_locked` that changes only
        the rows it locked (the outbox's reservations), or one conditional UPDATE by
        key (it waits for the row's lock, then checks its condition again). Writers
        under the write lock still queue on those rows' locks, never on each other's
        reservations; a reservation never waits at all (it passes over locked rows),
        so no deadlock can form between the two kinds.
        """
        if getattr(self._local, "conn", None) is not None:
            raise StateError(
                f"state database {self.where}: a transaction inside a transaction "
                "(cannot start a transaction within a transaction)"
            )
        conn = self._begin(row_locks)
        self._local.conn = conn
        try:
            try:
                yield _PgTx(conn)
            except BaseException as exc:
                _quiet_rollback(conn)
                if isinstance(exc, psycopg.Error):
                    raise self._error(exc) from None
                raise
            if conn.info.transaction_status == TransactionStatus.INERROR:
                # a statement failed and the caller went on: COMMIT would roll back silently
                _quiet_rollback(conn)
                raise StateError(
                    f"state database {self.where}: a statement of the transaction failed, "
                    "so none of it was saved"
                )
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    raise StateError(
                        f"state database {self.where}: the connection was lost while "
                        f"committing, so the change may or may not have been saved "
                        f"({self._cause(exc)})"
                    ) from None
                _quiet_rollback(conn)
                raise self._error(exc) from None
        finally:
            self._local.conn = None
            self._checkin(conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statement, values = translate(sql), _params(params)
        held: Conn | None = getattr(self._local, "conn", None)
        if held is not None:  # inside this thread's transaction: see its own writes
            try:
                return held.execute(statement, values).fetchall()
            except psycopg.Error as exc:
                raise self._error(exc) from None
        for attempt in range(2):
            conn, reused = self._checkout()
            try:
                return conn.execute(statement, values).fetchall()
            except psycopg.Error as exc:
                if (conn.broken or conn.closed) and reused and attempt == 0:
                    self._drop_idle()  # the server went away since: read again, connected anew
                    continue
                raise self._error(exc) from None
            finally:
                self._checkin(conn)
        raise AssertionError("unreachable")

    def db_now(self) -> datetime:
        """The server's clock (`clock_timestamp()`, not the transaction's start): the
        time every daemon sharing the database agrees on, whatever their hosts say."""
        (now,) = self.query("SELECT clock_timestamp()")[0]
        assert isinstance(now, datetime)
        return now.astimezone(UTC)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for conn in idle:
            _quiet_close(conn)

    def daemon_alive(self, ident: str) -> bool:
        """Does a live session hold daemon `ident`'s life-long lock (`PgLeases`)? Read
        from pg_locks: takes nothing, so read-only callers (`status`) may ask."""
        with self._connection() as conn:
            try:
                return _holder(conn, _daemon_key(ident)) is not None
            except psycopg.Error as exc:
                raise self._error(exc) from None


class _PgTx:
    """`protocol.Tx` over one connection in a transaction: the portable SQL, translated."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[TupleRow]:
        return self._conn.execute(translate(sql), _params(params))


def _session(store: PostgresStore, application_name: str) -> Conn:
    """A connection of its own (not the pool's) for session-level locks held for long,
    named after its process so that others can tell who holds them."""
    params = dict(store._params)
    params["application_name"] = application_name
    try:
        conn = psycopg.Connection.connect(
            autocommit=True,
            prepare_threshold=None,
            password=store._secret.reveal(),
            **params,
        )
    except psycopg.Error as exc:
        raise store._error(exc, connecting=True) from None
    if conn.info.server_version >= 140000:  # a server-wide idle timeout must not end it
        try:
            conn.execute("SET idle_session_timeout = 0")
        except psycopg.Error as exc:
            _quiet_close(conn)
            raise store._error(exc) from None
    return conn


class PgLeases:
    """This daemon among the daemons sharing the database, and its short leases.

    `start()` takes `daemon:<ident>` (a session advisory lock) on a connection of
    its own and keeps it for the process's life: `alive(ident)` of any daemon is
    whether some session holds its lock (`pg_locks`), so a daemon that died is
    seen dead as soon as the server ends its session (kill -9: at once; a host
    that vanished: the TCP keepalives, ~30 s). `try_take(name)` / `release(name)`
    are short exclusive leases on the same session (one calendar's sync), and
    die with it too.

    A lost connection (a server restart) is made again by the next call, which
    takes the daemon's lock again and whichever leases it still can (`holds`
    says which); `healthy_since` is the `time.monotonic()` of that (re)connection.
    Right after an outage every daemon's session is new, and one that has not
    called yet looks dead: judge others only a grace period after `healthy_since`.
    Thread-safe: one lock around the connection.
    """

    shared = True  # other processes hold leases too: liveness means something

    def __init__(self, store: PostgresStore, ident: str) -> None:
        self.store = store
        self.ident = ident
        self.me = f"reminderd[{os.getpid()}@{socket.gethostname()}]"[:63]
        self.healthy_since = time.monotonic()  # not connected yet: no earlier than now
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._started = False
        self._closed = False
        self._held: set[str] = set()

    def __repr__(self) -> str:
        return f"PgLeases({self.ident!r}, {self.store.where!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the session

    def start(self) -> None:
        """Take this daemon's life-long lock; AlreadyRunning if another session holds it
        (the identity is in use)."""
        with self._lock:
            self._started = True
            try:
                self._session()
            except _IdentityHeld as held:
                self._started = False
                raise AlreadyRunning(
                    f"another session ({held.who}) holds the daemon identity {self.ident} "
                    f"on the state database {self.store.where}"
                ) from None
            except BaseException:
                self._started = False
                raise

    def ping(self) -> None:
        """Check the session, connecting again (and taking the locks again) if it was
        lost; StateError when the server cannot be reached."""
        self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        """Give up every lock of this process at once and close the session."""
        with self._lock:
            self._closed = True
            self._held.clear()
            conn, self._conn = self._conn, None
        if conn is None:
            return
        if not (conn.closed or conn.broken):
            try:  # at once: the server notices a closed socket only a moment later
                conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass  # the session is gone already, and its locks with it
        _quiet_close(conn)

    def _session(self) -> Conn:
        """The connection, made again with this daemon's locks if it was lost (under _lock)."""
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken):
            return conn
        if self._closed:
            raise StateError(f"state database {self.store.where}: the leases are closed")
        if conn is not None:
            self._conn = None
            _quiet_close(conn)
            log.info("state database %s: daemon session lost; connecting again", self.store.where)
        conn = _session(self.store, self.me)
        try:
            if self._started and not _try_lock(conn, _daemon_key(self.ident)):
                who = _holder(conn, _daemon_key(self.ident)) or "another session"
                _quiet_close(conn)
                raise _IdentityHeld(who)
            for name in sorted(self._held):
                if not _try_lock(conn, _lease_key(name)):
                    self._held.discard(name)
                    log.warning(
                        "lease %s was lost with the database session: another daemon has it",
                        name,
                    )
        except psycopg.Error as exc:
            _quiet_close(conn)
            raise self.store._error(exc) from None
        self._conn = conn
        self.healthy_since = time.monotonic()
        return conn

    def _call(self, action: Callable[[Conn], T]) -> T:
        """`action` on the session; once more on a new session if the old one had died."""
        with self._lock:
            for attempt in range(2):
                try:
                    conn = self._session()
                except _IdentityHeld as held:
                    raise StateError(
                        f"state database {self.store.where}: the daemon identity {self.ident} "
                        f"is still held by {held.who} (an old session of ours the server "
                        "has not ended yet); trying again on the next call"
                    ) from None
                try:
                    return action(conn)
                except psycopg.Error as exc:
                    if (conn.broken or conn.closed) and attempt == 0:
                        continue  # the server restarted since the last call: connect again
                    raise self.store._error(exc) from None
            raise AssertionError("unreachable")

    # -- what this daemon and the others hold

    def alive(self, ident: str) -> bool:
        """Does a live session hold daemon `ident`'s lock (this daemon's own too)?"""
        key = _daemon_key(ident)
        return self._call(lambda conn: _holder(conn, key) is not None)

    def try_take(self, name: str) -> bool:
        """Take the lease `name` if nobody holds it: True (also when it is ours already)."""
        key = _lease_key(name)

        def take(conn: Conn) -> bool:
            if name in self._held:
                return True
            if not _try_lock(conn, key):
                return False
            self._held.add(name)
            return True

        return self._call(take)

    def release(self, name: str) -> None:
        """Give the lease back (a lost session gave it back already)."""
        with self._lock:
            if name not in self._held:
                return
            self._held.discard(name)
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                return
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_lease_key(name),))
            except psycopg.Error:
                pass  # the session died, and the lease with it; the next call reconnects

    def holds(self, name: str) -> bool:
        """Is the lease ours (False once a lost session let another daemon take it)?"""
        with self._lock:
            return name in self._held


class _IdentityHeld(Exception):
    """Our daemon lock is held by another session (a dead one of ours, not yet ended)."""

    def __init__(self, who: str) -> None:
        super().__init__(who)
        self.who = who


def _daemon_key(ident: str) -> int:
    return lock_key(f"daemon:{ident}")


def _lease_key(name: str) -> int:
    return lock_key(f"lease:{name}")


def _try_lock(conn: Conn, key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def _split_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


_HOLDER_RE = re.compile(r"^reminderd\[(\d+)@(.*)\]$")


def _holder(conn: Conn, key: int) -> str | None:
    row = conn.execute(
        "SELECT l.pid, a.application_name FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        _split_key(key),
    ).fetchone()
    if row is None:
        return None
    found = _HOLDER_RE.match(row[1] or "")
    if found:
        return f"PID {found.group(1)} on {found.group(2)}"
    return f"server session {row[0]}"


def _display(given: dict[str, Any], user: str, db: str) -> str:
    """`postgresql://user@host:port/db`: where the state is, fit for messages (no password)."""
    host = str(given.get("host") or given.get("hostaddr") or "")
    if ":" in host and "," not in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    port = f":{given['port']}" if given.get("port") else ""
    return f"postgresql://{user}@{host}{port}/{db}"


def _os_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "")


def _quiet_rollback(conn: Conn) -> None:
    if conn.closed or conn.broken:
        return
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        _quiet_close(conn)  # unusable: the pool drops it


def _quiet_close(conn: Conn) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass


if TYPE_CHECKING:
    _conforms: type[StateStore] = PostgresStore  # mypy checks the store against the protocol
