"""Who works on a state dir: the daemon's life-long lock and the per-sync lock.

Both are `flock(2)` locks on files in the state dir. The kernel releases
them when the holder dies, however it dies, so there is never a stale lock
to clean up. `daemon.lock` is held by `reminderd run` for its whole life and
names its PID: a second daemon on the same state refuses at once. `sync.lock`
is held for one calendar sync, by the daemon or by `reminderd sync`, so the
two never reconcile the same calendar at the same time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AlreadyRunning, LockTimeout, StateError

DAEMON_LOCK = "daemon.lock"
SYNC_LOCK = "sync.lock"


def _create(path: Path) -> int:
    """Open (making the state dir if needed) a lock file; StateError says why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(
            f"state dir {path.parent}: cannot create {path.name} "
            f"({exc.strerror or type(exc).__name__})"
        ) from None


def _open_existing(path: Path) -> int | None:
    for flags in (os.O_RDWR, os.O_RDONLY):  # flock works on a read-only fd too
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return None


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DaemonLock:
    """Held by `reminderd run` from start to exit.

    `shared`: the state is a PostgreSQL database that several daemons share, so
    daemons on one host may share the state dir too (it holds the embedded
    calendar); a SQLite daemon, which takes it exclusively, still refuses them.
    """

    def __init__(self, state_dir: Path, shared: bool = False) -> None:
        self.path = state_dir / DAEMON_LOCK
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning naming the holder's PID."""
        fd = _create(self.path)
        if not _try_lock(fd, self.shared):
            pid = _pid_in(fd)
            os.close(fd)
            who = f"PID {pid}" if pid else "another process"
            raise AlreadyRunning(
                f"another reminderd daemon ({who}) is running on the state dir "
                f"{self.path.parent}; stop it first, or give this config its own "
                "state_dir"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def still_ours(self) -> bool:
        """False once the lock file was deleted or replaced under us (the state dir is gone)."""
        if self._fd is None:
            return False
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except OSError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def daemon_pid(state_dir: Path) -> int | None:
    """The PID of the daemon working on `state_dir`, or None. Creates nothing."""
    fd = _open_existing(state_dir / DAEMON_LOCK)
    if fd is None:
        return None
    try:
        if _try_lock(fd):
            return None  # nobody holds it (closing our fd drops our probe)
        return _pid_in(fd) or -1
    finally:
        os.close(fd)


def wait_to_take(take: Callable[[], bool], wait: float, on_wait: str | None = None) -> None:
    """Try `take` until it succeeds, up to `wait` seconds: a calendar's sync lock here, or
    its lease on a PostgreSQL state (`cli`). `on_wait` is said once if it must wait;
    LockTimeout (exit 75) when the other sync outlasts `wait`."""
    deadline = time.monotonic() + wait
    said = False
    while not take():
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"another sync of this calendar (the running daemon's) did not "
                f"finish within {wait:.0f} s; try again later"
            )
        if on_wait and not said:
            import sys

            print(on_wait, file=sys.stderr)
            said = True
        time.sleep(0.1)


@contextmanager
def sync_lock(state_dir: Path, wait: float, on_wait: str | None = None) -> Iterator[None]:
    """Hold the sync lock for one sync, waiting up to `wait` seconds for another's to end."""
    fd = _create(state_dir / SYNC_LOCK)
    try:
        wait_to_take(lambda: _try_lock(fd), wait, on_wait)
        yield
    finally:
        os.close(fd)
