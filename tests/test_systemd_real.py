"""The units in systemd/ under a real systemd: systemd 252 as PID 1 of a systemd-nspawn container.

../shared/testbed/start-systemd boots Debian bookworm's systemd in a container that shares this
machine's network, so a unit inside reaches the Radicale and the Twilio mock these tests start
on 127.0.0.1. reminderd goes into the container's root the README's way: a venv made by the
container's own python3, the dependencies from requirements.lock with --require-hashes, then
reminderd itself with --no-deps (a wheel built here from a copy of the sources, so nothing is
written into the work tree). The units are copied in unchanged; only the watchdog test adds a
drop-in with a short WatchdogSec, and removes it again.

One container for the module, its root cached in $REMINDERD_SDTEST_DIR (default
/tmp/sdtest-reminderd, machine `reminderd-sdtest`): the first run builds it with debootstrap
(2-3 min), later runs boot it in about a second and reinstall reminderd only when its sources or
the lock changed. The container is powered off at the end if this module booted it; the root
stays. Needs root, systemd-nspawn (start-systemd installs it with apt) and, for the first build,
a Debian mirror and a package index: without them every test here is skipped with the reason.

The user unit runs under `systemd --user` of a lingering user inside the container
(`loginctl enable-linger`); that needs pam_systemd (libpam-systemd) in the root, which the
build adds (SDTEST_EXTRA_PKGS) or, for an older root, apt installs inside the container. Its
~/.local/bin/reminderd links to the venv above (the README makes one per user; the unit
cannot tell the difference).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from servers import (
    ROOT,
    TESTBED,
    CalendarServer,
    TwilioMock,
    calendar_objects,
    free_port,
    kill,
    start_radicale,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

SDTEST_DIR = Path(os.environ.get("REMINDERD_SDTEST_DIR", "/tmp/sdtest-reminderd"))
MACHINE = os.environ.get("REMINDERD_SDTEST_MACHINE", "reminderd-sdtest")
START, IN, STOP = (TESTBED / n for n in ("start-systemd", "in-systemd", "stop-systemd"))
VENV = "/opt/reminderd"  # outside /tmp: a DynamicUser unit gets a private /tmp
USER = "rdtest"  # the login that runs the user unit
SID = "AC" + "0123456789abcdef" * 2
SECRETS = {  # LoadCredential= name -> value (Radicale's htpasswd says alice:secret)
    "caldav-password": "secret",
    "twilio-account-sid": SID,
    "twilio-auth-token": "tok-" + uuid.uuid4().hex,
}
TIMINGS: dict[str, float] = {}
TEST_WATCHDOG = 4  # seconds, in a drop-in for the watchdog test only (the unit says 60 s)


def _tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]


# -- the container


class Container:
    """The running container: commands inside by in-systemd (nsenter into its PID 1)."""

    def __init__(self, directory: Path, machine: str) -> None:
        self.dir = directory
        self.root = directory / "root"
        self.shared = directory / "shared"  # /shared inside
        self.env = dict(
            os.environ,
            SDTEST_DIR=str(directory),
            SDTEST_ROOT=str(self.root),
            SDTEST_MACHINE=machine,
            SDTEST_EXTRA_PKGS="libpam-systemd",  # systemd --user sessions (pam_systemd)
        )
        self.booted_here = False

    def running(self) -> bool:
        done = subprocess.run(
            [str(IN), "true"], env=self.env, capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(IN)]
        if user is not None:
            uid = self.uid(user)
            cmd += ["runuser", "-u", user, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}"]
        done = subprocess.run(
            cmd + list(argv),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in the container: {' '.join(argv)} exited {done.returncode}\n"
                f"{_tail(done.stdout)}\n{_tail(done.stderr)}"
            )
        return done

    def uid(self, user: str) -> int:
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2])
        raise KeyError(user)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


def _cannot_boot() -> str | None:
    if not START.exists():
        return f"{START} not found (the systemd test bed lives in ../shared/testbed)"
    if os.geteuid() != 0:
        return "needs root: systemd-nspawn boots the container (run the tests as root)"
    if shutil.which("systemd-nspawn") is None and shutil.which("apt-get") is None:
        return "no systemd-nspawn, and no apt-get to install systemd-container"
    return None


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    why = _cannot_boot()
    if why:
        pytest.skip(why)
    SDTEST_DIR.mkdir(parents=True, exist_ok=True)
    with open(SDTEST_DIR / "reminderd-tests.lock", "w") as lock:
        deadline = time.monotonic() + 1200
        while True:  # one run of this module at a time uses the container
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another test run has held {lock.name} for 20 min")
                time.sleep(1)
        ct = Container(SDTEST_DIR, MACHINE)
        try:
            if not ct.running():
                first = not (ct.root / ".sdtest-built").exists()
                t0 = time.monotonic()
                ct.booted_here = True  # whatever runs from now on was started here
                done = _start_systemd(ct)
                if done.returncode != 0:
                    pytest.skip(
                        "the systemd container could not be started here "
                        f"(start-systemd exited {done.returncode}): {_tail(done.stderr, 800)}"
                    )
                TIMINGS["build and boot" if first else "boot"] = time.monotonic() - t0
            t0 = time.monotonic()
            _install_reminderd(ct)
            TIMINGS["install reminderd"] = time.monotonic() - t0
            yield ct
        finally:
            if ct.booted_here:
                subprocess.run([str(STOP)], env=ct.env, capture_output=True, timeout=180)
            print(
                "\nsystemd container timings: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items())
            )


def _start_systemd(ct: Container) -> subprocess.CompletedProcess[str]:
    """start-systemd, tried again while another apt-get holds the dpkg lock (it installs
    systemd-container and debootstrap on the host when they are missing)."""
    deadline = time.monotonic() + 600
    while True:
        try:
            done = subprocess.run(
                [str(START)], env=ct.env, capture_output=True, text=True, timeout=1500, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.skip("start-systemd did not finish in 25 min")
        if "Could not get lock" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(10)


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for top in paths:
        files = [top] if top.is_file() else sorted(top.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _host(argv: list[str], what: str, timeout: float = 900) -> None:
    """A step on this machine that needs the package index: a skip (with why) if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what}: timed out after {timeout:.0f}s")
    if done.returncode != 0:
        pytest.skip(f"{what} failed here: {_tail(done.stderr, 800)}")


def _install_reminderd(ct: Container) -> None:
    """The README's install, inside the container: cached by the lock's and the sources' digest."""
    lock = ROOT / "requirements.lock"
    stage = ct.shared / "reminderd"
    venv = ct.path(VENV)
    deps_stamp, src_stamp = venv / ".sdtest-lock-sha256", venv / ".sdtest-src-sha256"
    lock_sum = _digest(lock)
    if not deps_stamp.exists() or deps_stamp.read_text() != lock_sum:
        shutil.rmtree(stage / "wheels", ignore_errors=True)
        py = ct.run(
            "python3",
            "-c",
            "import sys, platform; print(sys.version_info[0], "
            "sys.version_info[1], platform.machine())",
        ).stdout.split()
        pick = []
        if (int(py[0]), int(py[1])) != sys.version_info[:2]:  # wheels for the container's python
            pick = [
                "--python-version",
                f"{py[0]}.{py[1]}",
                "--implementation",
                "cp",
                "--abi",
                f"cp{py[0]}{py[1]}",
                "--platform",
                f"manylinux_2_36_{py[2]}",
            ]
        _host(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--require-hashes", "--only-binary=:all:", *pick, "-r", str(lock),
             "-d", str(stage / "wheels")],
            "downloading the wheels of requirements.lock",
        )  # fmt: skip
        shutil.copy(lock, stage / "requirements.lock")
        ct.run("rm", "-rf", VENV)
        ct.run("python3", "-m", "venv", VENV, timeout=300)
        ct.run(f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
               "--find-links", "/shared/reminderd/wheels", "--require-hashes",
               "-r", "/shared/reminderd/requirements.lock", timeout=900)  # fmt: skip
        deps_stamp.write_text(lock_sum)
        src_stamp.unlink(missing_ok=True)
    src_sum = _digest(ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "reminderd")
    if not src_stamp.exists() or src_stamp.read_text() != src_sum:
        copy = stage / "src"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(stage / "dist", ignore_errors=True)
        copy.mkdir(parents=True)
        shutil.copy(ROOT / "pyproject.toml", copy)
        shutil.copy(ROOT / "README.md", copy)
        shutil.copytree(
            ROOT / "reminderd", copy / "reminderd", ignore=shutil.ignore_patterns("__pycache__")
        )
        _host(
            [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
             "--no-deps", "-w", str(stage / "dist"), str(copy)],
            "building the reminderd wheel",
        )  # fmt: skip
        (wheel,) = (stage / "dist").glob("reminderd-*.whl")
        ct.run(f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
               "--no-deps", "--force-reinstall", f"/shared/reminderd/dist/{wheel.name}",
               timeout=300)  # fmt: skip
        src_stamp.write_text(src_sum)
    ct.run("ln", "-sfn", f"{VENV}/bin/reminderd", "/usr/local/bin/reminderd")
    version = ct.run("/usr/local/bin/reminderd", "--version").stdout
    assert version.startswith("reminderd "), version


# -- the servers on this machine's loopback


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServer]:
    try:
        server, proc = start_radicale(tmp_path_factory.mktemp("sd-radicale"))
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Radicale could not be started here: {exc}")
    yield server
    kill(proc.pid)


# -- the service under test: the system unit, or the user unit of a lingering login


def item(ident: str, title: str, start: datetime, sms: str = "[]") -> str:
    when = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"  - {{id: {ident}, title: '{title}', when: '{when}', contact: {{name: Alex}}, sms: {sms}}}"


def later(days: int = 30) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=10, minute=0, second=0)


# Commitments that stay in the file through every test: each test replaces only its own,
# which never deletes "most owned events" (reminderd refuses such a sync without --force)
ANCHORS = 4


class Service:
    """reminderd.service under the container's systemd (kind "system") or under the
    `systemd --user` of USER (kind "user"), with its files and its journal."""

    def __init__(self, ct: Container, kind: str, server: CalendarServer, mock: TwilioMock):
        self.ct, self.kind, self.server, self.mock = ct, kind, server, mock
        self.unit_file = (
            ROOT
            / "systemd"
            / ("reminderd.service" if kind == "system" else "reminderd.user.service")
        )
        self.unit_text = self.unit_file.read_text()
        if kind == "system":
            self.user: str | None = None
            self.uid: int | None = None
            self.config_dir = "/etc/reminderd"
            self.unit_dir = "/etc/systemd/system"
            self.state_dir = (
                "/var/lib/private/reminderd"  # DynamicUser: /var/lib/reminderd links here
            )
        else:
            self.user = USER
            self.uid = ct.uid(USER)
            home = f"/home/{USER}"
            self.config_dir = f"{home}/.config/reminderd"  # %E/reminderd
            self.unit_dir = f"{home}/.config/systemd/user"
            self.state_dir = f"{home}/.local/state/reminderd"  # $XDG_STATE_HOME/reminderd
        self.dropin = f"{self.unit_dir}/reminderd.service.d/50-sdtest.conf"
        self.calendar_name = f"sdtest {kind}"

    # files

    def put(self, inside: str, text: str, mode: int = 0o644, dir_mode: int = 0o755) -> None:
        """Write a file into the container's root atomically (as an editor saves)."""
        target = self.ct.path(inside)
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        for d in reversed(missing):
            d.mkdir(mode=dir_mode)
            self._own(d)
        tmp = target.with_name(f".{target.name}.sdtest-tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        self._own(tmp)
        os.replace(tmp, target)

    def _own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def credentials(self) -> dict[str, str]:
        """The unit's LoadCredential= lines: name -> path on the host (in the container)."""
        return dict(re.findall(r"^LoadCredential=([^:\s]+):(\S+)$", self.unit_text, re.M))

    def config(self, extra: str = "") -> str:
        names = {
            "password": "caldav-password",
            "account_sid": "twilio-account-sid",
            "auth_token": "twilio-auth-token",
        }
        if self.kind == "system":  # secrets through LoadCredential=, as the README says
            ways = {k: f"{k}_credential" for k in names}
        else:  # a user unit has no credentials here: 0600 files beside the config
            ways = {k: f"{k}_file" for k in names}
            names = {k: f"secrets/{v}" for k, v in names.items()}
        return (
            "timezone: Europe/Athens\n"
            "commitments: [commitments.yaml]\n"
            "calendar:\n"
            f"  url: {self.server.url}\n"
            "  username: alice\n"
            f"  {ways['password']}: {names['password']}\n"
            f"  name: {self.calendar_name}\n"
            "  sync_interval: 1h\n"
            "sms:\n"
            "  provider: twilio\n"
            f"  {ways['account_sid']}: {names['account_sid']}\n"
            f"  {ways['auth_token']}: {names['auth_token']}\n"
            "  from: '+15017122661'\n"
            "  to: '+30 691 234 5678'\n"
            f"  api_url: {self.mock.url}\n"
            "  rate_per_minute: 6000\n"
            "  late_grace: 10m\n" + extra
        )

    def write_commitments(self, items: list[str]) -> None:
        anchors = [item(f"anchor-{i}", f"Anchor {i}", later(40 + i)) for i in range(ANCHORS)]
        text = "timezone: Europe/Athens\ncommitments:\n" + "\n".join(anchors + items) + "\n"
        self.put(f"{self.config_dir}/commitments.yaml", text)

    def install(
        self, items: list[str], config: str | None = None, dropin: str | None = None
    ) -> None:
        """Stopped, the unit file as in the repo (plus `dropin`), a config and commitments."""
        self.systemctl("stop", "reminderd.service", check=False, timeout=90)
        self.systemctl("reset-failed", "reminderd.service", check=False)
        self.put(f"{self.unit_dir}/reminderd.service", self.unit_text)
        dropin_path = self.ct.path(self.dropin)
        if dropin is None:
            dropin_path.unlink(missing_ok=True)
        else:
            self.put(self.dropin, dropin)
        if self.kind == "system":
            self.put(self.config_dir + "/config.yaml", config or self.config())
            for name, path in self.credentials().items():
                assert name in SECRETS, (
                    f"the unit loads a credential the test does not know: {name}"
                )
                self.put(path, SECRETS[name], mode=0o600, dir_mode=0o700)
        else:
            self.put(self.config_dir + "/config.yaml", config or self.config(), mode=0o600)
            for name, value in SECRETS.items():
                self.put(f"{self.config_dir}/secrets/{name}", value, mode=0o600, dir_mode=0o700)
        self.write_commitments(items)
        self.systemctl("daemon-reload")

    # systemctl and the journal

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        scope = ["--user"] if self.kind == "user" else []
        return self.ct.run(
            "systemctl", "--no-pager", *scope, *args, check=check, timeout=timeout, user=self.user
        )

    def start(self) -> float:
        t0 = time.monotonic()
        self.systemctl("start", "reminderd.service", timeout=150)  # TimeoutStartSec=120s
        return time.monotonic() - t0

    def show(self, *props: str) -> dict[str, str]:
        out = self.systemctl("show", "reminderd.service", *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def prop(self, name: str) -> str:
        return self.show(name)[name]

    def status(self) -> str:
        return self.systemctl("status", "reminderd.service", "-l", "-n", "30", check=False).stdout

    def cli(self, *args: str) -> dict[str, Any]:
        """`reminderd ... --json` by hand as the README runs it, outside the unit."""
        if self.kind == "system":
            out = self.ct.run(
                "reminderd", "--config", "/etc/reminderd/config.yaml", *args, "--json"
            )
        else:  # a login shell of the user: no $STATE_DIRECTORY, the config found by itself
            exe = f"/home/{USER}/.local/bin/reminderd"
            out = self.ct.run("runuser", "-l", USER, "-c", " ".join([exe, *args, "--json"]))
        return dict(json.loads(out.stdout))

    def cursor(self) -> str:
        out = self.ct.run("journalctl", "--no-pager", "-n", "1", "-o", "json").stdout
        return str(json.loads(out.strip().splitlines()[-1])["__CURSOR"])

    def journal(self, after: str) -> list[dict[str, Any]]:
        """Entries about the unit since `after`: the daemon's own lines and its manager's.

        Filtered here, not by journalctl matches: systemd 252's `--after-cursor` with a
        match skips the first matching entry when the cursor's own entry does not match.
        """
        out = self.ct.run("journalctl", "--no-pager", "-o", "json", f"--after-cursor={after}")
        entries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        if self.kind == "system":
            keys, uid = ("_SYSTEMD_UNIT", "UNIT"), None
        else:
            keys, uid = ("_SYSTEMD_USER_UNIT", "USER_UNIT"), str(self.uid)
        return [
            e
            for e in entries
            if any(e.get(k) == "reminderd.service" for k in keys)
            and (uid is None or e.get("_UID") == uid)
        ]

    def log(self, after: str) -> str:
        return "\n".join(str(e.get("MESSAGE", "")) for e in self.journal(after))

    def wait_log(self, fragment: str, after: str, timeout: float) -> str:
        wait_for(f"journal line {fragment!r}", lambda: fragment in self.log(after), timeout, 0.3)
        return self.log(after)

    # the calendar

    def calendar_titles(self, after: str) -> list[str]:
        found = re.findall(r"calendar: (http://\S+) \(CalDAV\)", self.log(after))
        if not found:
            return []
        objects = calendar_objects(found[-1], ("alice", "secret"))
        return sorted(str(c.walk("VEVENT")[0]["SUMMARY"]) for c in objects.values())  # type: ignore[attr-defined]


def _user_manager(ct: Container) -> str | None:
    """Start `systemd --user` for USER (lingering); None, or why it cannot be had here."""
    pam = [*ct.root.glob("lib/*/security/pam_systemd.so"), *ct.root.glob("usr/lib/*/security/pam_systemd.so")]  # fmt: skip
    if not pam:  # a root built before SDTEST_EXTRA_PKGS named libpam-systemd
        done = ct.run(
            "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
            "--no-install-recommends", "libpam-systemd", check=False, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            return (
                "systemd --user needs pam_systemd (libpam-systemd) in the container, to set "
                f"XDG_RUNTIME_DIR; apt-get install in the container failed: {_tail(done.stdout, 500)}"
            )
    if ct.run("id", USER, check=False).returncode != 0:
        ct.run("useradd", "--create-home", "--shell", "/bin/bash", USER)
    uid = ct.uid(USER)
    ct.run("loginctl", "enable-linger", USER)
    ct.run("systemctl", "start", f"user@{uid}.service", check=False, timeout=60)

    def up() -> bool:
        state = ct.run("systemctl", "--user", "is-system-running", user=USER, check=False)
        return state.stdout.strip() in ("running", "degraded")

    try:
        wait_for("systemd --user", up, 30, 0.3)
    except AssertionError:
        why = ct.run("systemctl", "status", f"user@{uid}.service", "-l", "--no-pager", check=False)
        return (
            f"systemd --user of {USER} did not come up in the container: {_tail(why.stdout, 800)}"
        )
    home = f"/home/{USER}"
    ct.run("runuser", "-u", USER, "--", "mkdir", "-p", f"{home}/.local/bin")
    ct.run("runuser", "-u", USER, "--", "ln", "-sfn", f"{VENV}/bin/reminderd", f"{home}/.local/bin/reminderd")  # fmt: skip
    return None


@pytest.fixture(scope="module", params=["system", "user"])
def svc(
    request: pytest.FixtureRequest,
    container: Container,
    radicale: CalendarServer,
    mock: TwilioMock,
) -> Iterator[Service]:
    if request.param == "user":
        why = _user_manager(container)
        if why:
            pytest.skip(why)
    service = Service(container, request.param, radicale, mock)
    # a fresh state for this module's fresh Radicale: nothing owned in an old calendar
    service.systemctl("stop", "reminderd.service", check=False, timeout=90)
    container.run("rm", "-rf", service.state_dir)
    for name in ("state.sqlite3", "daemon.lock", "sync.lock"):  # never state beside the config
        container.path(f"{service.config_dir}/{name}").unlink(missing_ok=True)
    yield service
    service.systemctl("stop", "reminderd.service", check=False, timeout=90)
    container.path(service.dropin).unlink(missing_ok=True)
    service.systemctl("daemon-reload", check=False)


def _token() -> str:
    return uuid.uuid4().hex[:6]


# -- the tests


def test_start_returns_after_ready_and_status_shows_our_status_line(svc: Service) -> None:
    t = _token()
    svc.install([item(f"start-{t}", f"Start {t}", later())])
    mark = svc.cursor()
    took = svc.start()
    TIMINGS[f"{svc.kind}: systemctl start"] = took
    # Type=notify: start returns when READY=1 came, not when the process was forked
    props = svc.show(
        "ActiveState",
        "SubState",
        "StatusText",
        "MainPID",
        "ExecMainStartTimestampMonotonic",
        "ActiveEnterTimestampMonotonic",
        "Type",
    )
    assert props["Type"] == "notify"
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert re.fullmatch(r"\d+ commitments(; next SMS .+)?", props["StatusText"]), props
    ready_after = (
        int(props["ActiveEnterTimestampMonotonic"]) - int(props["ExecMainStartTimestampMonotonic"])
    ) / 1e6
    assert ready_after > 0.2, props  # active only once the daemon had loaded and said READY
    status = svc.status()
    assert f'Status: "{props["StatusText"]}"' in status, status
    text = svc.wait_log("Started reminderd.service", mark, 10)
    assert text.index(f"loaded: 1 file, {ANCHORS + 1} commitments") < text.index(
        "Started reminderd.service"
    )


def test_reload_is_a_sighup_without_a_restart(svc: Service) -> None:
    t = _token()
    svc.install([item(f"reload-{t}", f"Reload {t}", later())])
    svc.start()
    before = svc.show("MainPID", "NRestarts", "ExecMainStartTimestampMonotonic")
    mark = svc.cursor()
    svc.systemctl("reload", "reminderd.service")  # ExecReload=/bin/kill -HUP $MAINPID
    text = svc.wait_log(
        f"reloaded: {ANCHORS + 1} commitments", mark, 15
    )  # no file changed: only the HUP
    assert "Reloaded reminderd.service" in text or "Reloading reminderd.service" in text, text
    after = svc.show("MainPID", "NRestarts", "ExecMainStartTimestampMonotonic", "ActiveState")
    assert after["ActiveState"] == "active"
    assert {k: after[k] for k in before} == before  # same process, no restart


def _kept(mock: TwilioMock, title: str) -> list[dict[str, Any]]:
    return [
        m
        for m in mock.kept()
        if m.get("direction") != "inbound" and title in str(m.get("body", ""))
    ]


def test_kill_9_restarts_and_no_sms_is_sent_twice(svc: Service) -> None:
    mock = svc.mock
    mock.clear()
    t = _token()
    first, second = f"Before kill {t}", f"After kill {t}"
    now = datetime.now(UTC)
    due_first = now + timedelta(seconds=12)  # sent by the first process
    due_second = due_first + timedelta(seconds=12)  # due while the service restarts
    svc.install(
        [
            item(f"k1-{t}", first, due_first + timedelta(minutes=1), "[-1m]"),
            item(f"k2-{t}", second, due_second + timedelta(minutes=1), "[-1m]"),
            item(f"k3-{t}", f"Calendar only {t}", later()),
        ]
    )
    mark = svc.cursor()
    svc.start()
    pid = svc.prop("MainPID")
    restarts = int(svc.prop("NRestarts"))
    wait_for("the first SMS", lambda: _kept(mock, first), 40, 0.3)
    killed_at = datetime.now(UTC)
    assert killed_at < due_second - timedelta(seconds=4), "too slow to kill before the second SMS"
    svc.ct.run("kill", "-9", pid)

    def restarted() -> bool:
        p = svc.show("NRestarts", "ActiveState", "MainPID")
        return int(p["NRestarts"]) > restarts and p["ActiveState"] == "active" and p["MainPID"] != pid  # fmt: skip

    wait_for("the restart after kill -9", restarted, 30, 0.3)
    wait_for("the second SMS", lambda: _kept(mock, second), 40, 0.3)
    time.sleep(3)  # a duplicate would be sent right away: give it the chance
    sent_first, sent_second = _kept(mock, first), _kept(mock, second)
    assert len(sent_first) == 1, sent_first  # the restart did not send it again
    assert len(sent_second) == 1, sent_second
    assert sent_second[0]["_epoch"] > killed_at.timestamp()  # sent by the restarted process
    text = svc.log(mark)
    assert "status=9/KILL" in text, text
    assert "Scheduled restart job" in text, text


def test_a_hung_main_loop_is_killed_by_the_watchdog_and_restarted(svc: Service) -> None:
    assert re.search(r"^WatchdogSec=60s$", svc.unit_text, re.M)
    # 60 s would make the test take minutes: a drop-in shortens it for this test only
    t = _token()
    svc.install(
        [item(f"wd-{t}", f"Watchdog {t}", later())],
        dropin=f"[Service]\nWatchdogSec={TEST_WATCHDOG}s\n",
    )
    svc.start()
    assert svc.prop("WatchdogUSec") == f"{TEST_WATCHDOG}s"
    before = svc.show("MainPID", "NRestarts")
    time.sleep(TEST_WATCHDOG * 2.5)  # the daemon pings in time: no restart while it runs
    assert svc.show("MainPID", "NRestarts") == before
    mark = svc.cursor()
    t0 = time.monotonic()
    svc.ct.run("kill", "-STOP", before["MainPID"])  # the main loop hangs (all threads stop)

    def restarted() -> bool:
        p = svc.show("NRestarts", "ActiveState", "MainPID")
        return int(p["NRestarts"]) > int(before["NRestarts"]) and p["ActiveState"] == "active"

    wait_for("the watchdog restart", restarted, TEST_WATCHDOG + 30, 0.3)
    TIMINGS[f"{svc.kind}: hang to restart"] = time.monotonic() - t0
    assert svc.prop("MainPID") != before["MainPID"]
    text = svc.log(mark)
    assert "Watchdog timeout" in text, text
    assert "Failed with result 'watchdog'" in text, text
    assert "status=6/ABRT" in text, text  # WatchdogSignal=SIGABRT reached the stopped process


def test_a_bad_config_exits_78_is_not_restarted_and_the_unit_stays_failed(svc: Service) -> None:
    t = _token()
    svc.install(
        [item(f"bad-{t}", f"Bad {t}", later())],
        config=svc.config().replace("provider: twilio", "provider: twillio"),
    )
    mark = svc.cursor()
    done = svc.systemctl("start", "reminderd.service", check=False, timeout=150)
    assert done.returncode != 0  # it never said READY
    time.sleep(8)  # RestartSec=5s: a restart would have come by now
    props = svc.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "78",
        "NRestarts": "0",
    }, props
    status = svc.status()
    assert "failed (Result: exit-code)" in status, status
    assert "status=78/CONFIG" in status, status
    assert "config.yaml:" in status and "twillio" in status, status  # the problem, path:line
    text = svc.log(mark)
    assert "Scheduled restart job" not in text, text


def test_the_reason_for_exit_78_is_an_error_in_the_journal(svc: Service) -> None:
    """What made the service fail is an error (PRIORITY 3), like every other error line:
    `journalctl -p err -u reminderd` must show why the unit is failed."""
    svc.install(
        [item(f"bad-{_token()}", "Bad", later())],
        config=svc.config().replace("provider: twilio", "provider: twillio"),
    )
    mark = svc.cursor()
    svc.systemctl("start", "reminderd.service", check=False, timeout=150)
    wait_for("the failed unit", lambda: svc.prop("ActiveState") == "failed", 20, 0.3)
    svc.wait_log("twillio", mark, 10)
    reason = [e for e in svc.journal(mark) if "twillio" in str(e.get("MESSAGE"))]
    assert [str(e["PRIORITY"]) for e in reason] == ["3"], [
        (e["PRIORITY"], e["MESSAGE"]) for e in reason
    ]


def test_the_journal_has_priorities_and_no_timestamps_of_our_own(svc: Service) -> None:
    t = _token()
    svc.install([item(f"j-{t}", f"Journal {t}", later())])
    mark = svc.cursor()
    svc.start()
    pid = svc.prop("MainPID")
    svc.wait_log("calendar: http://", mark, 30)
    svc.write_commitments([item(f"j-{t}", f"Journal {t}", later()), "  - {id: broken, when: x}"])
    svc.wait_log("keeping the last good commitments", mark, 20)  # the file watcher's reload
    ours = [e for e in svc.journal(mark) if e.get("_PID") == pid]
    assert ours, svc.log(mark)
    by_text = {str(e["MESSAGE"]): str(e["PRIORITY"]) for e in ours}
    loaded = [p for m, p in by_text.items() if m.startswith("reminderd.service: loaded: ")]
    errors = [p for m, p in by_text.items() if "keeping the last good commitments" in m]
    assert loaded == ["6"], by_text
    assert errors and set(errors) == {"3"}, by_text
    for message in by_text:
        assert not re.match(r"\s*(<\d>|\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d)", message), message
        assert not re.match(r"\S+: (INFO|ERROR|WARNING) ", message), message
    assert {e.get("SYSLOG_IDENTIFIER") for e in ours} == {"reminderd"}


def test_the_hardened_unit_syncs_sends_and_keeps_its_state(svc: Service) -> None:
    """The proof that every hardening option of the unit leaves the daemon working: under
    all of them it syncs to Radicale, sends an SMS, writes its state in its state dir,
    and sees a file edit by itself; and the options are in force on the running process."""
    mock = svc.mock
    mock.clear()
    mock.clear_requests()
    t = _token()
    before_reload = svc.cursor()
    sms_title, cal_title = f"Hardened SMS {t}", f"Hardened calendar {t}"
    due = datetime.now(UTC) + timedelta(seconds=8)
    svc.install(
        [
            item(f"h1-{t}", sms_title, due + timedelta(minutes=1), "[-1m]"),
            item(f"h2-{t}", cal_title, later()),
        ]
    )
    mark = svc.cursor()
    svc.start()
    pid = svc.prop("MainPID")
    wait_for(
        "both events in Radicale",
        lambda: {sms_title, cal_title} <= set(svc.calendar_titles(mark)),
        30,
        0.5,
    )
    wait_for("the SMS", lambda: _kept(mock, sms_title), 40, 0.3)
    # an edit is seen by the file watcher (inotify under the sandbox), without a reload
    added = f"Added later {t}"
    svc.write_commitments(
        [
            item(f"h1-{t}", sms_title, due + timedelta(minutes=1), "[-1m]"),
            item(f"h2-{t}", cal_title, later()),
            item(f"h3-{t}", added, later(31)),
        ]
    )
    wait_for("the edit in Radicale", lambda: added in svc.calendar_titles(mark), 30, 0.5)
    time.sleep(2)
    assert len(_kept(mock, sms_title)) == 1
    assert svc.prop("MainPID") == pid  # all of it without a restart
    # the state: a database in the StateDirectory, owned by the service's user
    state = svc.ct.path(svc.state_dir) / "state.sqlite3"
    assert state.is_file(), sorted(p.name for p in state.parent.iterdir())
    owner = state.stat().st_uid
    proc_status = svc.ct.run("cat", f"/proc/{pid}/status").stdout
    uid = int(re.search(r"^Uid:\s+(\d+)", proc_status, re.M).group(1))  # type: ignore[union-attr]
    assert owner == uid
    assert oct(state.parent.stat().st_mode & 0o777) == "0o700"
    assert not svc.ct.path(f"{svc.config_dir}/state.sqlite3").exists()
    by_hand = svc.cli("status")  # the CLI finds the daemon's state (README: `status`)
    assert by_hand["daemon"]["running"] and by_hand["daemon"]["pid"] == int(pid), by_hand
    text = svc.log(mark)
    assert "Read-only file system" not in text and "Permission denied" not in text, text
    assert "Traceback" not in text, text
    # systemd understood every line of the unit (an unknown key or value is only a warning)
    everything = svc.ct.run(
        "journalctl", "--no-pager", "-o", "cat", f"--after-cursor={before_reload}"
    )
    assert not re.findall(r"reminderd\.service:\d+: .*", everything.stdout), everything.stdout
    assert re.search(r"^NoNewPrivs:\s+1$", proc_status, re.M), proc_status
    mounts = svc.ct.run("cat", f"/proc/{pid}/mountinfo").stdout
    tmp = [line.split() for line in mounts.splitlines() if line.split()[4] == "/tmp"]
    assert tmp and "/systemd-private-" in tmp[-1][3], tmp  # PrivateTmp= is in force
    if svc.kind == "system":
        _check_system_sandbox(svc, pid, uid, proc_status, mounts, mark)
    else:
        assert uid == svc.uid
        user_ns = svc.ct.run("readlink", f"/proc/{pid}/ns/user", "/proc/1/ns/user").stdout.split()
        assert user_ns[0] != user_ns[1], user_ns  # PrivateUsers=yes (what PrivateTmp= needs)


def _check_system_sandbox(
    svc: Service, pid: str, uid: int, proc_status: str, mounts: str, mark: str
) -> None:
    assert 61184 <= uid <= 65519, uid  # DynamicUser=yes
    link = svc.ct.path("/var/lib/reminderd")
    assert link.is_symlink() and os.readlink(link) == "private/reminderd"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert re.search(rf"^{field}:\s+0+$", proc_status, re.M), proc_status  # no capabilities
    assert re.search(r"^Seccomp:\s+2$", proc_status, re.M), proc_status  # SystemCallFilter=
    root = [line.split() for line in mounts.splitlines() if line.split()[4] == "/"][-1]
    assert "ro" in root[5].split(","), root  # ProtectSystem=strict: / is read-only for it
    # systemd applies every option as written
    unit_options = dict(
        re.findall(r"^([A-Z]\w+)=(.*)$", svc.unit_text.split("[Service]")[1].split("[")[0], re.M)
    )
    plain = (
        "NoNewPrivileges PrivateTmp PrivateDevices PrivateUsers ProtectSystem ProtectHome "
        "ProtectClock ProtectHostname ProtectKernelTunables ProtectKernelModules "
        "ProtectKernelLogs ProtectControlGroups ProtectProc ProcSubset RestrictRealtime "
        "RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute RemoveIPC KeyringMode "
        "DynamicUser DevicePolicy UMask RestrictNamespaces"
    ).split()
    live = svc.show(*plain, "CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallFilter")
    mismatched = {
        k: (unit_options[k], live[k])
        for k in plain
        if k in unit_options and live[k] != unit_options[k] and not _same(unit_options[k], live[k])
    }
    assert not mismatched, mismatched
    assert live["CapabilityBoundingSet"] == "", live
    assert set(live["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # LoadCredential=: the secrets reached the daemon as files, never as environment
    creds = svc.credentials()
    assert set(creds) == set(SECRETS), creds
    environ = svc.ct.run("cat", f"/proc/{pid}/environ").stdout.split("\0")
    assert "CREDENTIALS_DIRECTORY=/run/credentials/reminderd.service" in environ, environ
    assert not [v for v in SECRETS.values() if any(v in e for e in environ)]
    listed = svc.ct.run("ls", "/run/credentials/reminderd.service").stdout.split()
    assert sorted(listed) == sorted(creds), listed
    auth = {str(r.get("authorization")) for r in svc.mock.requests() if r.get("authorization")}
    expected = (
        "Basic "
        + base64.b64encode(
            f"{SECRETS['twilio-account-sid']}:{SECRETS['twilio-auth-token']}".encode()
        ).decode()
    )
    assert auth == {expected}, auth  # the Twilio secrets came from the credentials
    assert SECRETS["twilio-auth-token"] not in svc.log(mark)
    exposure = svc.ct.run("systemd-analyze", "security", "--no-pager", "reminderd.service").stdout
    level = re.search(r"Overall exposure level for reminderd.service: (\d+\.\d+)", exposure)
    assert level and float(level.group(1)) <= 2.0, _tail(exposure, 3000)
    print(f"\nsystemd-analyze security reminderd.service (live): {level.group(1)}")


def _same(written: str, shown: str) -> bool:
    """A unit file value and `systemctl show`'s spelling of it."""
    yes, no = {"yes", "true", "on", "1"}, {"no", "false", "off", "0"}
    if written in yes | no:
        return (written in yes) == (shown in yes)
    return written.lstrip("0") == shown.lstrip("0")


def test_an_sms_reply_is_applied_under_the_sandbox(svc: Service) -> None:
    """Reply polling and outcomes under the unit: DONE by SMS marks the commitment done."""
    mock = svc.mock
    mock.clear()
    t = _token()
    ident, title = f"r-{t}", f"Reply {t}"
    due = datetime.now(UTC) + timedelta(seconds=8)
    svc.install(
        [item(ident, title, due + timedelta(minutes=1), "[-1m]")],
        config=svc.config("  reply_poll: 2s\n"),
    )
    svc.start()
    sent = wait_for("the SMS", lambda: _kept(mock, title), 40, 0.3)
    ref = re.search(r"#[a-z0-9]{2,4}\b", str(sent[0]["body"]))  # type: ignore[index]
    assert ref, sent
    inbound = json.dumps(
        {"from": "+306912345678", "to": "+15017122661", "body": f"DONE {ref.group(0)}"}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            mock.url + "/__testbed/inbound",
            data=inbound,
            method="POST",
            headers={"Content-Type": "application/json"},
        ),
        timeout=10,
    ).close()

    def confirmed() -> list[dict[str, Any]]:
        return [m for m in _kept(mock, title) if str(m["body"]).startswith("OK:")]

    wait_for("the confirmation SMS", confirmed, 30, 0.5)
    (history,) = svc.cli("log", ident)["commitments"]
    assert history["status"] == "done", history
    assert [o["kind"] for o in history["outcomes"]] == ["done"], history
    if svc.kind == "user":  # the user's own file: the outcome is written into it
        assert history["outcomes"][0]["in_file"] == "written", history
    # (the system unit cannot write /etc/reminderd/commitments.yaml: root's file, and
    # ProtectSystem=strict; the outcome holds in the state, which `log` read back above)


def test_the_embedded_calendar_serves_under_the_sandbox(svc: Service) -> None:
    """No calendar.url: reminderd serves its own CalDAV (Radicale in process, storage in
    the state dir) under the same hardening; a client on loopback reads the events."""
    port = free_port()
    t = _token()
    title = f"Embedded {t}"
    config = (
        "timezone: Europe/Athens\ncommitments: [commitments.yaml]\n"
        f"calendar:\n  listen: 127.0.0.1:{port}\n  name: sdtest embedded\n"
        "sms:\n  provider: log\n  to: '+30 691 234 5678'\n"
    )
    svc.install([item(f"e-{t}", title, later())], config=config)
    mark = svc.cursor()
    svc.start()
    text = svc.wait_log("(embedded; subscribe", mark, 30)
    url = re.findall(r"calendar: (http://\S+) \(embedded", text)[-1]
    assert url.startswith(f"http://127.0.0.1:{port}/"), url
    titles = sorted(
        str(c.walk("VEVENT")[0]["SUMMARY"])  # type: ignore[attr-defined]
        for c in calendar_objects(url, None).values()
    )
    assert title in titles and "Anchor 0" in titles, titles
    assert svc.ct.path(f"{svc.state_dir}/calendar").is_dir()
    assert "Traceback" not in svc.log(mark)
