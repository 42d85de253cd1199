"""The daemon with 10,000 commitments already synced: start-up to READY, RSS, idle CPU,
and edit-to-server latency (median of 20 edits).

A local Radicale (started here, loopback, stopped at the end) holds the 10,000
events, written straight into its storage and adopted by one `reminderd sync`
(as in bench_sync.py), so the daemon starts on a calendar that is in sync.
`reminderd run` is a real process with a NOTIFY_SOCKET made here; READY is the
sd_notify datagram. Baselines from the same run: an empty interpreter, and
`reminderd validate` on the same files (the parse floor every start and every
reload pays).

    python bench/bench_daemon.py [--n 10000] [--idle 60] [--edits 20] [--format yaml|csv|both]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_sync import Server, load_calendar

from reminderd.config import load_config
from reminderd.ical import href_name, render, uid_for
from reminderd.model import touches
from reminderd.sources import load_sources

ZONES = ("Europe/Athens",)


def write_yaml(path: Path, n: int, changed: dict[int, str] | None = None) -> None:
    changed = changed or {}
    lines = [
        "timezone: Europe/Athens",
        "defaults: {duration: 15m, alarms: [-1d, -1h, -10m], sms: [-30m]}",
        "commitments:",
    ]
    for i in range(n):
        lines += [
            f"  - id: c{i}",
            f"    title: {changed.get(i, f'Call customer {i} about the renewal')}",
            f"    when: 2030-{1 + i % 12:02d}-{1 + i % 28:02d} {8 + i % 10:02d}:{(i * 5) % 60:02d}",
            f'    contact: {{name: Person {i}, company: Company {i % 500}, phone: "+30 210 {1000000 + i:07d}"}}',
            "    purpose: Promised to call back with the numbers",
            "    bring: [Quote, Contract draft]",
            "    next_step: Send the contract",
            "    tags: [q1]",
        ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, n: int, changed: dict[int, str] | None = None) -> None:
    changed = changed or {}
    rows = ["id,title,when,contact,company,phone,purpose,bring,next_step,alarms,sms,tags"]
    for i in range(n):
        rows.append(
            f"c{i},{changed.get(i, f'Call customer {i} about the renewal')},"
            f"2030-{1 + i % 12:02d}-{1 + i % 28:02d} {8 + i % 10:02d}:{(i * 5) % 60:02d},"
            f"Person {i},Company {i % 500},+30 210 {1000000 + i:07d},Promised to call back with the numbers,"
            "Quote;Contract draft,Send the contract,-1d;-1h;-10m,-30m,q1"
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def run_one(srv: Server, base: Path, fmt: str, n: int, idle: float, edits: int) -> None:
    work = base / fmt
    work.mkdir()
    data = work / f"c.{fmt}"
    writer = write_yaml if fmt == "yaml" else write_csv
    writer(data, n)
    name = f"daemon-{fmt}"
    (work / "config.yaml").write_text(
        f"timezone: Europe/Athens\nstate_dir: state\ncommitments: [c.{fmt}]\n"
        f"calendar:\n  url: {srv.root}/{srv.info.username}/{name}/\n  username: {srv.info.username}\n"
        "  password_env: BENCH_CALDAV_PASSWORD\n  sync_interval: 1h\n"
        "sms: {provider: log, to: '+30 691 234 5678'}\n"
    )
    env = dict(os.environ, BENCH_CALDAV_PASSWORD=srv.auth[1], PYTHONPATH=str(ROOT))
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"):
        env.pop(key, None)
    # the calendar, already holding what reminderd would write, then adopted once
    loaded = load_sources(load_config(work / "config.yaml"))
    objects = [
        (href_name(uid_for(t.key)), render(t)) for c in loaded.commitments for t in touches(c)
    ]
    url, warm = load_calendar(srv, name, objects)
    adopt = timed([sys.executable, "-m", "reminderd", "--config", "config.yaml", "sync"], work, env)
    empty = timed([sys.executable, "-c", "pass"], work, env)
    validate = min(
        timed([sys.executable, "-m", "reminderd", "--config", "config.yaml", "validate"], work, env)
        for _ in range(3)
    )
    print(
        f"[{fmt}] {n} commitments ({data.stat().st_size / 1e6:.1f} MB); calendar loaded "
        f"({warm:.0f} s Radicale warm-up) and adopted by one sync in {adopt:.1f} s"
    )
    print(
        f"[{fmt}]   baseline: empty interpreter {empty:.3f} s; `reminderd validate` {validate:.3f} s"
    )

    sock_path = str(work / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(60)
    log = open(work / "daemon.log", "wb")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "--config", "config.yaml", "run"],
        cwd=work,
        env=dict(env, NOTIFY_SOCKET=sock_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - start
        sock.close()  # like a systemd that stopped listening: the daemon must not mind
        deadline = time.monotonic() + 120
        while "calendar sync:" not in (work / "daemon.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit("no first sync within 120 s")
            time.sleep(0.05)
        first_sync = time.perf_counter() - start
        sync_line = next(
            ln for ln in (work / "daemon.log").read_text().splitlines() if "calendar sync:" in ln
        )
        print(
            f"[{fmt}]   start-up to READY {ready:.2f} s (= {ready / validate:.1f}x validate; goal < 2 s: "
            f"{'met' if ready < 2 else 'NOT met'}); first sync done at {first_sync:.2f} s: "
            f"{sync_line.split('calendar sync: ')[1]}"
        )
        time.sleep(2)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(idle)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.monotonic() - t0
        print(
            f"[{fmt}]   RSS peak {rss_kb(proc.pid, 'VmHWM') / 1024:.0f} MiB, idle {rss_kb(proc.pid, 'VmRSS') / 1024:.0f} MiB "
            f"(goal idle < 80 MiB); idle CPU {cpu:.2f} s over {wall:.0f} s = {100 * cpu / wall:.2f}% (goal < 1%)"
        )
        import requests

        http = requests.Session()
        http.auth = srv.auth
        latencies = []
        for k in range(edits):
            i = (k * 7919) % n
            title = f"Edited {k} for customer {i}"
            mark = len((work / "daemon.log").read_text(errors="replace"))
            href = url + href_name(uid_for(f"c{i}#0"))
            t_edit = time.perf_counter()
            writer(data, n, {i: title})
            while True:
                body = http.get(href, timeout=30).content
                if title.encode() in body:
                    break
                if time.perf_counter() - t_edit > 60:
                    raise SystemExit(f"edit {k} not on the server after 60 s")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - t_edit)
            while "calendar sync:" not in (work / "daemon.log").read_text(errors="replace")[mark:]:
                time.sleep(0.05)
            writer(data, n)  # and back, so each edit is one change
            deadline = time.monotonic() + 60
            while (work / "daemon.log").read_text(errors="replace")[mark:].count(
                "calendar sync:"
            ) < 2:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        "the revert was not synced within 60 s:\n"
                        + (work / "daemon.log").read_text(errors="replace")[mark:]
                    )
                time.sleep(0.05)
        med = statistics.median(latencies)
        print(
            f"[{fmt}]   edit-to-server over {edits} edits: median {med:.2f} s, min {min(latencies):.2f} s, "
            f"max {max(latencies):.2f} s (goal median < 2 s: {'met' if med < 2 else 'NOT met'}; "
            f"of which parsing is about {validate - empty:.2f} s)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--format", choices=("yaml", "csv", "both"), default="both")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; local Radicale on loopback")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        srv = Server(base)
        try:
            for fmt in ("yaml", "csv") if args.format == "both" else (args.format,):
                run_one(srv, base, fmt, args.n, args.idle, args.edits)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
