"""A real PostgreSQL for the tests, started here from Debian's packages.

Debian's `postgresql` (bookworm: `postgresql-15`, binaries in
/usr/lib/postgresql/15/bin; /usr/local/bin/initdb may be a symlink to the same). Nothing
of the system's own clusters is used: `initdb` makes a fresh cluster in a temporary
directory, the server listens on 127.0.0.1 only (a free port) and on a Unix socket in
that directory, and is stopped by its PID (`pg_ctl stop -m fast`, then signals).

PostgreSQL refuses to run as root: when the tests run as root, initdb and the server
run as the `postgres` user (made by postgresql-common) or else `nobody`, and the
directory is theirs. Clients authenticate with a password (`scram-sha-256` for host
127.0.0.1 in pg_hba.conf), so the store's password path is the one exercised; the
tests' own superuser (`pgadmin`) talks over the Unix socket (`trust`), to make
databases and to poke at the store's tables.

`postgres` is the session fixture: a `PgServer` with `conninfo`, `password`,
`new_database()` (an empty database of one's own per test), `admin()`, and `stop()` /
`start()` for outage tests. A server that cannot be started is a skip with the reason.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import free_port

APT_PACKAGES = ("postgresql",)
ADMIN = "pgadmin"  # the cluster's superuser, over the Unix socket only
ROLE = "reminderd"  # what the store logs in as, with a password over TCP
STARTUP_TIMEOUT = 60


def find_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (initdb, pg_ctl, postgres)."""
    found: list[tuple[int, Path]] = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if bindir.parent.name.isdigit() and (bindir / "pg_ctl").exists():
            found.append((int(bindir.parent.name), bindir))
    if found:
        return max(found)[1]
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent
    raise RuntimeError(
        "PostgreSQL is not installed (apt-get install " + " ".join(APT_PACKAGES) + ")"
    )


def _run_user() -> pwd.struct_passwd:
    """Who initdb and the server run as: never root (PostgreSQL refuses it)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no `postgres` or `nobody` user to drop to")


@dataclass
class PgServer:
    """One running cluster; `conninfo` + `password` are what the store is given."""

    bindir: Path
    base: Path  # owned by the run user: data/, sock/, log
    port: int
    password: str = field(repr=False)
    runas: pwd.struct_passwd = field(repr=False)
    database: str = ROLE
    pid: int | None = None
    _made: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log(self) -> Path:
        return self.base / "log"

    @property
    def conninfo(self) -> str:
        """The shared test database's URL (no password in it)."""
        return self.url(self.database)

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    # -- running the binaries as the unprivileged user

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        root = os.geteuid() == 0
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.base), "LC_ALL": "C"},
            user=self.runas.pw_uid if root else None,
            group=self.runas.pw_gid if root else None,
            extra_groups=[] if root else None,
        )
        return done

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def _pid_file(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(first) if first.isdigit() else None

    # -- life cycle

    def start(self) -> None:
        """Start (or start again after `stop`) on the same port and data."""
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()[-300:]} "
                f"{self._log_tail()}"
            )
        self.pid = self._pid_file()
        if self.pid is None:
            raise RuntimeError(f"PostgreSQL started but wrote no PID: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (fast: sessions are cut), by its PID if pg_ctl cannot."""
        pid = self.pid or self._pid_file()
        if pid is None:
            return
        try:
            done = self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
            ok = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if not ok:
            for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):  # fast, immediate, kill
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if not _alive(pid):
                    break
        self.pid = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- helpers for the tests

    @contextmanager
    def admin(self, database: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A superuser connection over the Unix socket (autocommit)."""
        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=ADMIN,
            dbname=database or "postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            yield conn

    def new_database(self, prefix: str = "t") -> str:
        """An empty database owned by the test role; returns its URL."""
        self._made += 1
        name = f"{prefix}_{self._made}_{secrets.token_hex(3)}"
        if not re.fullmatch(r"[a-z0-9_]{1,60}", name):
            raise ValueError(f"bad database name {name!r}")
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        return self.url(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def start_postgres(tmp: Path) -> PgServer:
    """initdb + start a cluster of our own; RuntimeError saying why it cannot be."""
    bindir = find_bindir()
    runas = _run_user()
    tmp.mkdir(parents=True, exist_ok=True)
    # not under pytest's tmp: its parents are private to the user running the tests
    base = Path(tempfile.mkdtemp(prefix="reminderd-pg-"))
    (tmp / "postgres-dir").write_text(f"{base}\n")
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        for path in (base, base / "sock"):
            os.chown(path, runas.pw_uid, runas.pw_gid)
    server = PgServer(
        bindir=bindir,
        base=base,
        port=free_port(),
        password="pw-" + secrets.token_urlsafe(18),
        runas=runas,
    )
    atexit.register(server.close)  # idempotent: the fixture closes it first
    try:
        made = server._run(
            "initdb",
            "-D",
            str(server.data),
            "-U",
            ADMIN,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
    except PermissionError as exc:
        raise RuntimeError(f"cannot run initdb as {runas.pw_name}: {exc}") from None
    if made.returncode != 0:
        raise RuntimeError(f"initdb failed ({made.returncode}): {made.stderr.strip()[-400:]}")
    (server.data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
            f"unix_socket_directories = '{server.socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 200\n"
        )
    server.start()
    started = time.monotonic()
    while True:
        try:
            with server.admin() as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(server.password)
                    )
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(server.database), sql.Identifier(ROLE)
                    )
                )
            break
        except psycopg.OperationalError:
            if time.monotonic() - started > STARTUP_TIMEOUT:
                server.close()
                raise
            time.sleep(0.1)
    return server


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """A PostgreSQL of the tests' own, once per run (skipped, with why, if it cannot be)."""
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except (RuntimeError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        pytest.skip(f"PostgreSQL could not be started here: {exc}")
    try:
        yield server
    finally:
        server.close()
