"""The units in systemd/ pass `systemd-analyze verify`, and the system unit's exposure is OK.

systemd-analyze checks that ExecStart= names an executable that exists, so the
tests point it at the installed `reminderd` of this environment, changing nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def installed_copy(unit: str, tmp: Path, placeholder: str) -> Path:
    exe = shutil.which("reminderd") or str(Path(sys.executable).with_name("reminderd"))
    if not Path(exe).exists():
        pytest.skip("the reminderd console script is not installed in this environment")
    text = (ROOT / "systemd" / unit).read_text()
    assert placeholder in text
    target = tmp / "reminderd.service"
    target.write_text(text.replace(placeholder, exe))
    return target


def test_system_unit_verifies(tmp_path: Path) -> None:
    unit = installed_copy("reminderd.service", tmp_path, "/usr/local/bin/reminderd")
    done = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )  # type: ignore[list-item]
    assert done.returncode == 0, done.stderr


def test_system_unit_exposure_is_ok(tmp_path: Path) -> None:
    unit = installed_copy("reminderd.service", tmp_path, "/usr/local/bin/reminderd")
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(unit)],
        capture_output=True,  # type: ignore[list-item]
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout[-3000:]


def test_user_unit_verifies(tmp_path: Path) -> None:
    unit = installed_copy("reminderd.user.service", tmp_path, "%h/.local/bin/reminderd")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(
        os.environ, XDG_RUNTIME_DIR=str(runtime)
    )  # --user needs one; a container may lack it
    done = subprocess.run(
        [ANALYZE, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,  # type: ignore[list-item]
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr


def test_units_agree_with_the_code() -> None:
    system = (ROOT / "systemd" / "reminderd.service").read_text()
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "LoadCredential=",
        "StateDirectory=reminderd",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert needed in system
    assert "Type=notify" in (ROOT / "systemd" / "reminderd.user.service").read_text()


def _seconds(unit_text: str, key: str) -> float:
    match = re.search(rf"^{key}=(\d+)s$", unit_text, re.M)
    assert match, f"{key}= missing"
    return float(match.group(1))


@pytest.mark.parametrize("unit", ["reminderd.service", "reminderd.user.service"])
def test_units_do_not_restart_bad_input_and_wait_out_the_stop_path(unit: str) -> None:
    from reminderd.calendar.embedded import STOP_WAIT
    from reminderd.config import SPEC
    from reminderd.service import STOP_SYNC_WAIT

    text = (ROOT / "systemd" / unit).read_text()
    match = re.search(r"^RestartPreventExitStatus=(.*)$", text, re.M)
    assert match and {"65", "66", "78"} <= set(match.group(1).split())  # bad input: no restart loop
    sms_timeout = next(
        o.default for o in SPEC if (o.section, o.name) == ("sms", "timeout")
    ).total_seconds()
    worst = sms_timeout + STOP_SYNC_WAIT + STOP_WAIT  # the stop path's bound, from the code
    assert _seconds(text, "TimeoutStopSec") >= worst + 10


def test_the_system_config_and_the_unit_agree_on_the_state_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reminderd.config import SYSTEM_CONFIG_DIR, SYSTEM_STATE_DIR, _state_dir

    unit = (ROOT / "systemd" / "reminderd.service").read_text()
    assert f"--config {SYSTEM_CONFIG_DIR}/config.yaml" in unit
    assert f"StateDirectory={SYSTEM_STATE_DIR.name}" in unit and SYSTEM_STATE_DIR.parent == Path(
        "/var/lib"
    )
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert _state_dir(None, SYSTEM_CONFIG_DIR) == SYSTEM_STATE_DIR  # `status` by hand, as root
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/reminderd")
    assert _state_dir(None, SYSTEM_CONFIG_DIR) == SYSTEM_STATE_DIR  # under systemd
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.local/state")
    assert _state_dir(None, Path("/home/u/.config/reminderd")) == Path(
        "/home/u/.local/state/reminderd"
    )
