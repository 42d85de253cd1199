"""A team on ONE PostgreSQL: validate, calendar sync, SMS across two daemons, claims.

One run, one PostgreSQL 15 (Debian's package, tests/pgserver.py: initdb in a temp dir,
unprivileged, a free 127.0.0.1 port) and one Radicale (tests/servers.py), both started
here and stopped by PID at the end. Figures only, no assertions on time; every ratio is
against a baseline measured in the same run. Every `when` is built from the time of
the run, so the bench never ages.

1. `reminderd validate` (a subprocess) of a generated team config: PEOPLE people with
   email and phone, PER_PERSON commitments each, half of them rows of one shared
   CRM-style CSV routed by its `Task Owner` column (the person's name, every tenth row
   their email in capitals), half in one YAML file per person. Wall time and peak RSS
   (the child's own ru_maxrss, from wait4). Baseline: the same files for one user
   (no `people:`, the YAML files as top-level commitments), so the ratio is what
   routing and the team's config cost; and the same commitments for a tenth of the
   people (how that cost grows with the team).
2. Calendar sync of SYNC_PEOPLE people (their own config, same PER_PERSON, state in a
   database of the same PostgreSQL), each person's calendar on the local Radicale, as
   the daemon's sync worker does it (a calendar lease, then `app.sync_once` of the
   person's view): initial sync into empty calendars, then a no-op sync. Per calendar
   median and p90, the measured total, and the total EXTRAPOLATED to all PEOPLE
   (mean per calendar x PEOPLE), against `calendar.sync_interval` (10 min). Floor:
   the same objects PUT one by one (`bench_sync.floor_puts`) for up to 5 of them.
3. SMS lateness: SMS commitments of the same people (half CSV, half YAML) loaded once,
   re-anchored in memory so their SMS fall evenly spaced (to the ms) in SMS_WINDOW s
   starting SMS_LEAD s after planning, planned by one replan into a fresh database;
   then daemons start, each a process of its own (this file, `--sms-daemon`) with
   its own store (`app.state_db`), `make_dispatcher(owner=...)`, its leases started
   and the real SmsScheduler on the real clock, sending through an in-process sender
   with a fixed latency of 20 ms that notes each call's wall time. Lateness = provider
   call - send_at. Baseline: ONE daemon; then TWO. `sms.rate_per_minute` as given
   (default 6000, per daemon). Duplicates and missing are counted, not asserted.
4. Claims per second against the database alone: N pending rows due now, each taken
   by `Outbox.reserve` (8 at a time, as the dispatcher's 8 workers) + `claim` + `sent`
   with no sender, one thread per process: one process, then two in parallel.

Then a short paragraph: what one host carries and where the bottleneck is, computed
from the figures above.

    python bench/bench_team.py [--people 1000] [--per-person 100] [--sync-people 20]
        [--sms 2000] [--rate 6000] [--claims 3000] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench_sms import pct  # one percentile rule for every bench

ZONE_NAME = "Europe/Athens"
ZONE = ZoneInfo(ZONE_NAME)
LATENCY = 0.020  # seconds per provider call of the bench's sender
CHUNK = 8  # rows per reserve in part 4: the dispatcher's default workers
PG_PW = "BENCH_PG_PW"
DAV_PW = "BENCH_DAV_PASSWORD"
TITLE = re.compile(r"customer (\d{7})")
SYNC_INTERVAL = timedelta(minutes=10)  # calendar.sync_interval's default, used in the config


# -- the generated team


def name_of(i: int) -> str:
    return f"Rep {i:04d}"


def email_of(i: int) -> str:
    return f"rep{i:04d}@team.example"


def phone_of(i: int) -> str:
    return f"+30 {6900000000 + i}"


def when_of(now: datetime, n: int) -> str:
    """Spread over the next 60 days, office hours, local time."""
    at = now + timedelta(days=1 + n % 60, hours=n % 9, minutes=(n * 7) % 60)
    return at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Generated:
    config: Path
    baseline: Path  # the same files for one user (no people:)
    commitments: int
    csv_rows: int
    yaml_files: int


def write_team(
    folder: Path,
    people: int,
    total: int,
    now: datetime,
    *,
    state: str,
    sms_offset: str = "-30m",
    rate: int = 6000,
    dav_root: str | None = None,
) -> Generated:
    """`total` commitments, number n belonging to person n % people; a row of the shared
    CSV when (n // people) is even, else an entry of the person's YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people").mkdir(exist_ok=True)
    yaml_rows: dict[int, list[str]] = {}
    rows = 0
    with open(folder / "crm.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["Task ID", "Subject", "Due Date", "Contact", "Company", "Task Owner"])
        for n in range(total):
            who = n % people
            title = f"Call customer {n:07d} about the renewal"
            if (n // people) % 2 == 0:
                owner = email_of(who).upper() if n % 10 == 9 else name_of(who)
                out.writerow(
                    [f"crm-{n}", title, when_of(now, n), f"Contact {n}", f"Co {n % 500}", owner]
                )
                rows += 1
            else:
                yaml_rows.setdefault(who, []).append(
                    f"  - id: own-{n}\n    title: {title}\n    when: {when_of(now, n)}\n"
                    f"    contact: {{name: Contact {n}, company: Co {n % 500}}}\n"
                )
    files: list[str] = []
    for who, entries in sorted(yaml_rows.items()):
        name = f"people/rep{who:04d}.yaml"
        (folder / name).write_text("commitments:\n" + "".join(entries), encoding="utf-8")
        files.append(name)
    head = (
        f"timezone: {ZONE_NAME}\nstate_dir: state\nstate: {state}\nstate_password_env: {PG_PW}\n"
        f"defaults:\n  duration: 15m\n  alarms: [-1h, -10m]\n  sms: [{sms_offset}]\n"
        f"calendar: {{sync_interval: {int(SYNC_INTERVAL.total_seconds() // 60)}m}}\n"
        f"sms: {{provider: log, rate_per_minute: {rate}, replies: 'off'}}\n"
    )
    shared = (
        "commitments:\n  - path: crm.csv\n    columns: {id: 'Task ID', title: Subject, "
        "when: 'Due Date', contact: Contact, company: Company, owner: 'Task Owner'}\n"
    )
    lines = []
    for who in range(people):
        own = f"people/rep{who:04d}.yaml"
        cal = (
            f"    calendar: {{url: '{dav_root}/p{who:04d}/', username: alice, "
            f"password_env: {DAV_PW}}}\n"
            if dav_root
            else ""
        )
        lines.append(
            f"  - name: {name_of(who)}\n    email: {email_of(who)}\n    phone: '{phone_of(who)}'\n"
            + (f"    commitments: [{own}]\n" if who in yaml_rows else "")
            + cal
        )
    config = folder / "team.yaml"
    config.write_text(head + shared + "people:\n" + "".join(lines), encoding="utf-8")
    baseline = folder / "one-user.yaml"
    baseline.write_text(
        head.replace("sms: {", f"sms: {{to: '{phone_of(0)}', ")
        + shared
        + "".join(f"  - {name}\n" for name in files),
        encoding="utf-8",
    )
    return Generated(config, baseline, total, rows, len(files))


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


# -- 1. validate


def run_measured(cmd: list[str], timeout: float, out: Path) -> tuple[float, float, int | None]:
    """Wall seconds, the child's own peak RSS (MiB, from wait4) and its exit code
    (None: killed at the timeout)."""
    killed = threading.Event()
    with open(out, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env())

        def stop() -> None:
            killed.set()
            os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return took, usage.ru_maxrss / 1024, None if killed.is_set() else proc.returncode


def validate(config: Path, label: str, timeout: float) -> tuple[float, float, bool]:
    """One `reminderd validate` in a child: seconds, peak RSS (MiB), whether it passed."""
    cmd = [sys.executable, "-m", "reminderd", "--config", str(config), "validate"]
    out = config.with_suffix(".out")
    took, rss, code = run_measured(cmd, timeout, out)
    last = out.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    said = f"KILLED at the {timeout:.0f} s timeout" if code is None else f"exit {code}: {last[0]}"
    print(f"   {label:38s} {took:7.1f} s  peak RSS {rss:5.0f} MiB  [{said[:100]}]")
    return took, rss, code == 0


def part1(tmp: Path, pg_url: str, args: argparse.Namespace, now: datetime) -> dict[str, float]:
    """The team's files, the same files for one user, and the same commitments for a
    tenth of the people (per-row routing against the team's size)."""
    total = args.people * args.per_person
    made = write_team(tmp / "validate", args.people, total, now, state=pg_url)
    size = (made.config.parent / "crm.csv").stat().st_size / 2**20
    print(
        f"\n1. reminderd validate: {args.people} people x {args.per_person} = {total} "
        f"commitments ({made.csv_rows} rows of one {size:.1f} MiB CSV routed by owner, "
        f"the rest in {made.yaml_files} per-person YAML files)"
    )
    t = args.validate_timeout
    base_s, base_rss, _ = validate(made.baseline, "baseline: one user, the same files", t)
    fewer = max(1, args.people // 10)
    small = write_team(tmp / "validate-tenth", fewer, total, now, state=pg_url)
    tenth_s, _, _ = validate(small.config, f"team of {fewer} people, {total} commitments", t)
    team_s, team_rss, ok = validate(made.config, f"team of {args.people} people", t)
    per_row = (team_s - base_s) / max(made.csv_rows, 1)
    print(
        f"   team / baseline: {team_s / base_s:.2f}x time, {team_rss / base_rss:.2f}x peak RSS "
        f"= {per_row * 1e3:.2f} ms per routed CSV row; {args.people} people / {fewer} people "
        f"(same commitments, more files): {team_s / tenth_s:.2f}x time. The daemon pays it "
        "at start and on every reload of a changed file"
    )
    return {
        "team_s": team_s,
        "team_rss": team_rss,
        "team_ok": float(ok),
        "base_s": base_s,
        "ratio": team_s / base_s,
        "tenth_s": tenth_s,
        "fewer": fewer,
    }


# -- 2. calendar sync


def part2(tmp: Path, pg: Any, args: argparse.Namespace, now: datetime) -> dict[str, float]:
    import requests
    from servers import kill, start_radicale

    from reminderd.app import calendars, state_db, sync_once, with_outcomes
    from reminderd.clock import system_clock
    from reminderd.config import load_config
    from reminderd.sources import load_sources
    from reminderd.store.leases import leases_for
    from reminderd.syncworker import calendar_lease

    k = min(args.sync_people, args.people)
    print(
        f"\n2. calendar sync, {k} people x {args.per_person} commitments, each person's own "
        f"calendar on one local Radicale, state in PostgreSQL (a calendar lease + sync_once "
        f"per calendar, as the sync worker does)"
    )
    info, proc = start_radicale(tmp / "radicale")
    figures: dict[str, float] = {}
    try:
        root = info.url.rstrip("/") + f"/{info.username}"
        os.environ[DAV_PW] = info.password or ""
        with requests.Session() as http:
            http.auth = (info.username or "", info.password or "")
            for who in range(k):
                reply = http.request("MKCALENDAR", f"{root}/p{who:04d}/", timeout=60)
                if reply.status_code != 201:
                    raise SystemExit(f"MKCALENDAR: HTTP {reply.status_code} {reply.text[:200]}")
        made = write_team(
            tmp / "sync",
            k,
            k * args.per_person,
            now,
            state=pg.new_database("sync"),
            dav_root=root,
        )
        config = load_config(made.config)
        loaded = load_sources(config)
        if loaded.problems:
            raise SystemExit(f"sync config: {loaded.problems[0]}")
        db = state_db(config)
        leases = leases_for(db, "bench-sync")
        leases.start()
        try:
            rounds: dict[str, list[float]] = {}
            for label in ("initial", "no-op"):
                start = time.perf_counter()
                shown = with_outcomes(db, loaded.commitments)
                work = calendars(config, shown, loaded.commitments)
                overhead = time.perf_counter() - start
                times: list[float] = []
                errors = 0
                lines: Counter[str] = Counter()
                for view, own, own_parsed in work:
                    start = time.perf_counter()
                    lease = calendar_lease(view)
                    if not leases.try_take(lease):
                        raise SystemExit(f"lease {lease} not free")
                    try:
                        result, _ = sync_once(
                            view,
                            db,
                            own,
                            progress=None,
                            serve=False,
                            clock=system_clock,
                            parsed=own_parsed,
                        )
                    finally:
                        leases.release(lease)
                    times.append(time.perf_counter() - start)
                    errors += len(result.errors)
                    lines[result.line()] += 1
                rounds[label] = times
                total = sum(times) + overhead
                mean = total / len(times)
                figures[f"{label}_mean"] = mean
                figures[f"{label}_median"] = statistics.median(times)
                common = lines.most_common(1)[0][0]
                print(
                    f"   {label:8s} per calendar: median {statistics.median(times) * 1e3:7.0f} ms, "
                    f"p90 {pct(times, 90) * 1e3:7.0f} ms, max {max(times) * 1e3:7.0f} ms; "
                    f"measured total {total:6.1f} s for {len(times)} calendars "
                    f"(outcomes + split: {overhead * 1e3:.0f} ms); errors {errors}; "
                    f"{lines[common]}x [{common}]"
                )
                print(
                    f"   {'':8s} EXTRAPOLATED to {args.people} calendars (mean x people, "
                    f"one daemon, one calendar after another): {mean * args.people:7.0f} s"
                    f" = {mean * args.people / SYNC_INTERVAL.total_seconds():.2f}x the "
                    f"{SYNC_INTERVAL.total_seconds() / 60:.0f} min sync_interval"
                )
            floor = floor_round(root, info, work[: min(5, len(work))])
            figures["floor_median"] = statistics.median(floor)
            print(
                f"   floor: the same objects PUT one by one on one kept-alive session into a "
                f"fresh calendar, {len(floor)} calendars: median {statistics.median(floor) * 1e3:.0f} "
                f"ms per calendar; initial sync / floor (medians): "
                f"{figures['initial_median'] / statistics.median(floor):.2f}x"
            )
        finally:
            leases.close()
            db.close()
    finally:
        kill(proc.pid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return figures


def floor_round(root: str, info: Any, work: list[Any]) -> list[float]:
    """Seconds per calendar for plain conditional PUTs of each person's rendered events
    (`bench_sync.floor_puts`: the least any client could do) into a fresh calendar."""
    import requests
    from bench_sync import floor_puts

    from reminderd.ical import href_name, render, uid_for
    from reminderd.model import touches

    server = SimpleNamespace(auth=(info.username or "", info.password or ""))
    took = []
    with requests.Session() as http:
        http.auth = server.auth
        for n, (_, own, _) in enumerate(work):
            url = f"{root}/floor-{n}/"
            reply = http.request("MKCALENDAR", url, timeout=60)
            if reply.status_code != 201:
                raise SystemExit(f"MKCALENDAR {url}: HTTP {reply.status_code}")
            objects = [(href_name(uid_for(t.key)), render(t)) for c in own for t in touches(c)]
            took.append(floor_puts(server, url, objects))
    return took


# -- 3. SMS across daemons


class TimedSender:
    """The bench's provider: a fixed latency per send; notes each call's wall time and
    which commitment it names (thread-safe: the dispatcher sends from 8 threads)."""

    name = "bench"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: list[tuple[float, str]] = []
        self.lookups = 0
        self.lock = threading.Lock()

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        at = time.time()
        found = TITLE.search(body)
        with self.lock:
            self.calls.append((at, found.group(1) if found else body))
            n = len(self.calls)
        time.sleep(self.latency)
        return f"SM{os.getpid()}x{n}"

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        with self.lock:
            self.lookups += 1
        return None  # a look-up would only follow a lost daemon: it is counted, not served


def sms_daemon(config_path: str, ident: str, until: float) -> dict[str, Any]:
    """In a process of its own: one daemon's SMS part on the real clock, until the
    outbox has nothing pending or in flight (or `until`, a wall time)."""
    from reminderd.app import state_db
    from reminderd.config import load_config
    from reminderd.sms.factory import make_dispatcher
    from reminderd.sms.scheduler import SmsScheduler
    from reminderd.timeparse import get_zone

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = load_config(Path(config_path))
    db = state_db(config)
    sender = TimedSender(LATENCY)
    dispatcher = make_dispatcher(config, db, sender=sender, owner=ident)
    leases = dispatcher.leases
    assert leases is not None
    leases.start()  # alive for the others, as the daemon is from its start
    scheduler = SmsScheduler(dispatcher, get_zone(config.timezone), None, lambda: None)
    ready = time.time()
    scheduler.start()
    counts: dict[str, int] = {}
    try:
        while time.time() < until:
            counts = dispatcher.outbox.counts()
            if not counts.get("pending") and not counts.get("sending"):
                break
            time.sleep(0.5)
    finally:
        scheduler.shutdown()
        leases.close()
        db.close()
    return {"calls": sender.calls, "lookups": sender.lookups, "ready": ready, "counts": counts}


def load_sms_team(
    tmp: Path, args: argparse.Namespace, now: datetime, state: str
) -> tuple[Any, tuple[Any, ...], float]:
    from reminderd.config import load_config
    from reminderd.sources import load_sources

    made = write_team(
        tmp / "sms", args.people, args.sms, now, state=state, sms_offset="-1m", rate=args.rate
    )
    start = time.perf_counter()
    config = load_config(made.config)
    loaded = load_sources(config)
    took = time.perf_counter() - start
    if loaded.problems:
        raise SystemExit(f"sms config: {loaded.problems[0]}")
    return config, loaded.commitments, took


def plan_burst(config: Any, commitments: tuple[Any, ...], args: argparse.Namespace) -> float:
    """Re-anchor the commitments (each one SMS at -1m) so their SMS fall uniformly over
    the window starting `sms_lead` s from now, and plan them by one replan. Returns
    the window's start (wall time)."""
    from reminderd.app import state_db
    from reminderd.sms.factory import make_dispatcher

    step = args.sms_window / len(commitments)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.sms_lead)
    anchored = [
        replace(
            c,
            start=(first + timedelta(minutes=1, milliseconds=round(i * step * 1000))).astimezone(
                c.start.tzinfo
            ),
        )
        for i, c in enumerate(commitments)
    ]
    db = state_db(config)
    try:
        planner = make_dispatcher(config, db, sender=TimedSender(0))
        to = {p.name: p.phone for p in config.people}
        planner.people = to  # as the daemon routes a team's
        start = time.perf_counter()
        counts = planner.replan(anchored)
        took = time.perf_counter() - start
        planner.close()
    finally:
        db.close()
    lead = first.timestamp() - time.time()
    print(f"   planned by one replan in {took:.1f} s ({counts}); the window starts in {lead:.1f} s")
    if lead < 5:
        print("   !! planning took most of --sms-lead: the first sends may be late for it")
    return first.timestamp()


def child(mode: str, *params: str, out: Path) -> subprocess.Popen[bytes]:
    """This file in a process of its own (`mode`: --sms-daemon, --claims-worker)."""
    with open(out, "wb") as sink, open(out.with_suffix(".err"), "wb") as err:
        return subprocess.Popen(
            [sys.executable, __file__, mode, json.dumps(params)], stdout=sink, stderr=err, env=env()
        )


def collect(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, Any]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise SystemExit(f"{out.name}: no answer in {timeout:.0f} s (killed)") from None
    text = out.read_text().strip()
    if proc.returncode != 0 or not text:
        err = out.with_suffix(".err").read_text(errors="replace")[-800:]
        raise SystemExit(f"{out.name}: exit {proc.returncode}\n{err}")
    return dict(json.loads(text.splitlines()[-1]))


def sms_run(
    tmp: Path, pg: Any, args: argparse.Namespace, team: tuple[Any, tuple[Any, ...]], daemons: int
) -> dict[str, float]:
    import psycopg

    from reminderd.store.postgres import PostgresStore

    config, commitments = team
    url = pg.new_database(f"sms{daemons}")
    config = replace(config, state=url)
    path = tmp / f"sms-{daemons}.yaml"
    # the workers read the same config, with this database
    text = re.sub(r"(?m)^state: .*$", f"state: {url}", config.path.read_text())
    path.write_text(text)
    print(f"\n   {daemons} daemon{'s' if daemons > 1 else ''}:")
    first = plan_burst(config, commitments, args)
    until = first + args.sms_window + 120
    procs = [
        (
            child(
                "--sms-daemon",
                str(path),
                f"bench-{daemons}-{d}",
                str(until),
                out=tmp / f"sms-{daemons}-{d}.json",
            ),
            tmp / f"sms-{daemons}-{d}.json",
        )
        for d in range(daemons)
    ]
    results = [collect(p, out, until - time.time() + 60) for p, out in procs]
    store = PostgresStore(url, password=pg.password, readonly=True)
    try:
        rows = store.query("SELECT send_at, status, payload FROM sms_outbox WHERE kind = 'backup'")
    except psycopg.Error as exc:
        raise SystemExit(f"reading the outbox: {exc}") from None
    finally:
        store.close()
    send_at: dict[str, float] = {}
    statuses: Counter[str] = Counter()
    for at, status, payload in rows:
        found = TITLE.search(str(json.loads(payload).get("title", "")))
        if found:
            send_at[found.group(1)] = datetime.fromisoformat(at).timestamp()
        statuses[status] += 1
    seen: Counter[str] = Counter()
    late: list[float] = []
    for r in results:
        for at, n in r["calls"]:
            seen[n] += 1
            if n in send_at:
                late.append(at - send_at[n])
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    missing = len(set(send_at) - set(seen))
    per = ", ".join(str(len(r["calls"])) for r in results)
    ready = max(r["ready"] for r in results) - first
    print(
        f"   sent per daemon: {per}; duplicates {duplicates} (must be 0), missing {missing} "
        f"(must be 0); outbox {dict(statuses)}; provider look-ups "
        f"{sum(r['lookups'] for r in results)}; last daemon up {-ready:.1f} s before the window"
    )
    if late:
        print(
            f"   lateness (provider call - send_at): p50 {pct(late, 50) * 1e3:6.0f} ms, "
            f"p99 {pct(late, 99) * 1e3:6.0f} ms, max {max(late) * 1e3:6.0f} ms; "
            f"earliest {min(late) * 1e3:+.0f} ms"
        )
    else:
        print("   lateness: nothing was sent")
    warned = [
        line
        for d in range(daemons)
        for line in (tmp / f"sms-{daemons}-{d}.err").read_text(errors="replace").splitlines()
        if line.startswith(("WARNING", "ERROR", "CRITICAL"))
    ]
    for line in list(dict.fromkeys(warned))[:3]:
        print(f"   daemon log ({len(warned)} warnings in all): {line[:160]}")
    return {
        "p50": pct(late, 50) if late else float("nan"),
        "p99": pct(late, 99) if late else float("nan"),
        "max": max(late) if late else float("nan"),
        "dup": duplicates,
        "missing": missing,
    }


def part3(tmp: Path, pg: Any, args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    print(
        f"\n3. SMS: {args.sms} commitments of {args.people} people, one SMS each, due "
        f"uniformly over {args.sms_window:.0f} s starting {args.sms_lead:.0f} s after the "
        f"replan; sender latency {LATENCY * 1e3:.0f} ms; sms.rate_per_minute {args.rate} per "
        "daemon; 8 workers per daemon (the default); real SmsScheduler, real clock"
    )
    config, commitments, took = load_sms_team(tmp, args, now, pg.url("unused"))
    print(f"   loaded and routed once in {took:.1f} s (load_config + load_sources)")
    one = sms_run(tmp, pg, args, (config, commitments), 1)
    two = sms_run(tmp, pg, args, (config, commitments), 2)
    if one["p99"] == one["p99"] and two["p99"] == two["p99"]:
        print(
            f"   two daemons / one: p50 {two['p50'] / max(one['p50'], 1e-6):.2f}x, "
            f"p99 {two['p99'] / max(one['p99'], 1e-6):.2f}x"
        )
    return {"one": one, "two": two}


# -- 4. claims per second


def claims_worker(url: str, ident: str, start_at: float) -> dict[str, Any]:
    """In a process of its own: reserve + claim + sent until nothing is left for it."""
    from reminderd.sms.outbox import Outbox
    from reminderd.store.postgres import PostgresStore

    db = PostgresStore(url, password=os.environ[PG_PW])
    outbox = Outbox(db, owner=ident)
    lease = timedelta(seconds=60)
    done = reserves = 0
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    try:
        while True:
            now = datetime.now(UTC)
            rows = outbox.reserve(now, CHUNK, lease)
            reserves += 1
            if not rows:
                break
            for row in rows:
                if outbox.claim(row.key, "bench", now):
                    outbox.sent(row.key, f"SM-{row.key}", now)
                    done += 1
    finally:
        db.close()
    return {"done": done, "reserves": reserves, "began": began, "ended": time.time()}


def part4(tmp: Path, pg: Any, args: argparse.Namespace) -> dict[str, float]:
    from reminderd.sms.outbox import Outbox
    from reminderd.sms.plan import PlannedSend
    from reminderd.store.postgres import PostgresStore

    n = args.claims
    print(
        f"\n4. claims against PostgreSQL alone: {n} due rows, reserve ({CHUNK} at a time) + "
        "claim + sent, no sender, one thread per process"
    )
    figures: dict[str, float] = {}
    for procs in (1, 2):
        url = pg.new_database(f"claims{procs}")
        db = PostgresStore(url, password=pg.password)
        now = datetime.now(UTC)
        due = now - timedelta(seconds=1)
        planned = {
            f"bench-{i}": PlannedSend(
                f"bench-{i}",
                due,
                due,
                now + timedelta(hours=1),
                {"title": f"row {i}", "to": "+306900000000"},
            )
            for i in range(n)
        }
        Outbox(db).reconcile(planned, now)
        db.close()
        start_at = time.time() + 3  # both processes imported and connected by then
        running = [
            (
                child(
                    "--claims-worker",
                    url,
                    f"claims-{procs}-{p}",
                    str(start_at),
                    out=tmp / f"claims-{procs}-{p}.json",
                ),
                tmp / f"claims-{procs}-{p}.json",
            )
            for p in range(procs)
        ]
        results = [collect(proc, out, 600) for proc, out in running]
        total = sum(r["done"] for r in results)
        span = max(r["ended"] for r in results) - min(r["began"] for r in results)
        figures[f"rate{procs}"] = total / span
        each = ", ".join(f"{r['done']} in {r['ended'] - r['began']:.1f} s" for r in results)
        print(
            f"   {procs} process{'es' if procs > 1 else '  '}: {total}/{n} rows in {span:5.1f} s = "
            f"{total / span:6.0f} sends/s ({each}; reserves {sum(r['reserves'] for r in results)})"
        )
    print(f"   two processes / one: {figures['rate2'] / figures['rate1']:.2f}x")
    return figures


# -- the verdict


def verdict(
    args: argparse.Namespace,
    v: dict[str, float],
    s: dict[str, float],
    m: dict[str, Any],
    c: dict[str, float],
) -> None:
    total = args.people * args.per_person
    interval = SYNC_INTERVAL.total_seconds()
    noop = s["no-op_mean"] * args.people
    initial = s["initial_mean"] * args.people
    per_minute = c["rate2"] * 60
    sms_cap = 2 * args.rate
    demand = args.sms * 60 / args.sms_window
    floor = s["initial_median"] / s["floor_median"]
    print(
        "\nWhat one host carries, from these figures:\n"
        f"- Loading {total} commitments for {args.people} people: {v['team_s']:.0f} s, "
        f"{v['team_rss']:.0f} MiB ({v['ratio']:.1f}x the same files for one user; "
        f"{v['tenth_s']:.0f} s for {v['fewer']:.0f} people: "
        + (
            "routing grows with rows x people"
            if v["team_s"] / v["tenth_s"] > 3
            else "routing barely grows with people"
        )
        + "); validate, each daemon start and every reload of a changed CRM export pay it, "
        "on one core.\n"
        f"- Calendars: a no-op round of {args.people} by one daemon ~{noop:.0f} s "
        f"(EXTRAPOLATED) = {noop / interval:.2f} of the {interval / 60:.0f} min "
        f"sync_interval; the first full sync ~{initial / 60:.1f} min (EXTRAPOLATED, "
        f"{initial / interval:.1f}x the interval) at {floor:.1f}x plain PUTs"
        f"{': the calendar server sets the pace' if floor < 1.3 else ''}.\n"
        f"- SMS: {args.sms} due within {args.sms_window:.0f} s ({demand:.0f}/min) went out "
        f"with p99 lateness {m['two']['p99'] * 1e3:.0f} ms from two daemons "
        f"({m['one']['p99'] * 1e3:.0f} ms from one), duplicates {m['two']['dup']}, missing "
        f"{m['two']['missing']}. The database alone claims {c['rate1']:.0f}/s from one "
        f"process, {c['rate2']:.0f}/s from two ({c['rate2'] / c['rate1']:.2f}x"
        f"{': they serialise' if c['rate2'] / c['rate1'] < 1.5 else ''}) = {per_minute:.0f}/min, above 2 x rate_per_minute = {sms_cap}/min "
        f"({per_minute / sms_cap:.1f}x) and {per_minute / demand:.0f}x this burst."
    )
    limits = {
        "loading and routing the files (budget: a reload within a minute)": v["team_s"] / 60,
        "the no-op calendar round (budget: sync_interval)": noop / interval,
        "the first calendar sync (budget: one hour)": initial / 3600,
        "claims in the database (budget: 2 x rate_per_minute)": sms_cap / per_minute,
    }
    worst = max(limits, key=lambda k: limits[k])
    print(
        f"Bottleneck: {worst}, at {limits[worst]:.2f}x its budget; then "
        + ", ".join(
            f"{k.split(' (')[0]} {x:.2f}x"
            for k, x in sorted(limits.items(), key=lambda kv: -kv[1])
            if k != worst
        )
        + "."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--per-person", type=int, default=100)
    ap.add_argument("--sync-people", type=int, default=20, help="people whose calendars sync")
    ap.add_argument("--sms", type=int, default=2000, help="SMS due within the window")
    ap.add_argument("--sms-window", type=float, default=60.0, help="seconds the SMS fall in")
    ap.add_argument("--sms-lead", type=float, default=20.0, help="seconds from plan to window")
    ap.add_argument("--rate", type=int, default=6000, help="sms.rate_per_minute, per daemon")
    ap.add_argument("--claims", type=int, default=3000, help="rows in part 4")
    ap.add_argument("--validate-timeout", type=float, default=1200.0)
    ap.add_argument("--quick", action="store_true", help="a smoke run: everything small")
    ap.add_argument("--sms-daemon", help=argparse.SUPPRESS)
    ap.add_argument("--claims-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sms_daemon:
        path, ident, until = json.loads(args.sms_daemon)
        print(json.dumps(sms_daemon(path, ident, float(until))))
        return
    if args.claims_worker:
        url, ident, start_at = json.loads(args.claims_worker)
        print(json.dumps(claims_worker(url, ident, float(start_at))))
        return
    if args.quick:
        args.people, args.per_person, args.sync_people = 50, 20, 4
        args.sms, args.sms_window, args.sms_lead, args.claims = 200, 10.0, 8.0, 500
    os.environ["NO_PROXY"] = ",".join(
        filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])
    )
    import radicale
    from pgserver import start_postgres

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.people} people x "
        f"{args.per_person}; Radicale {radicale.VERSION}; one run"
    )
    begun = time.perf_counter()
    now = datetime.now(UTC)
    tmp = Path(tempfile.mkdtemp(prefix="bench_team-"))
    pg = None
    try:
        pg = start_postgres(tmp / "pg")
        os.environ[PG_PW] = pg.password
        with pg.admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {version[0] if version else '?'} on 127.0.0.1:{pg.port} (pid {pg.pid})")
        v = part1(tmp, pg.new_database("validate"), args, now)
        s = part2(tmp, pg, args, now)
        m = part3(tmp, pg, args, now)
        c = part4(tmp, pg, args)
        verdict(args, v, s, m, c)
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
