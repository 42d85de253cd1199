"""Calendar sync against a local Radicale: initial sync, no-op sync, one change.

One run, one Radicale started here on a free 127.0.0.1 port (stopped at the
end), the engine called in-process (StateDB in a temp dir, DavCalendar,
sync_calendar). Figures only, no assertions on time.

1. Initial sync of N1 commitments (one touch each) into a fresh empty
   calendar, against the floor measured in the same run (before and after
   the engine's runs, averaged): the same rendered
   objects PUT sequentially by one kept-alive requests.Session with
   `If-None-Match: *` into another fresh empty calendar. The engine is run
   with connections=1 and with the default 4 (Radicale serialises writes).
2. No-op sync of N2: the rendered objects are written straight into
   Radicale's filesystem storage (PUT gets slow as a Radicale collection
   grows), one sync adopts them (GET each, record, no writes), then the
   no-op sync is timed and its requests counted through a recording proxy.
3. One title changed among N2: requests and writes of that sync.

    python bench/bench_sync.py [--n1 1000] [--n2 10000] [--adopt-budget 300]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import RecordingProxy, kill, start_radicale

from reminderd.calendar.dav import DavCalendar
from reminderd.ical import href_name, render, uid_for
from reminderd.model import Commitment, Contact, touches
from reminderd.store.sqlite import StateDB
from reminderd.sync.engine import SyncResult, sync_calendar

ZONE = ZoneInfo("Europe/Athens")
ALARMS = (timedelta(days=-1), timedelta(hours=-1), timedelta(minutes=-10))
STAMP = datetime(2029, 12, 1, tzinfo=UTC)


def make_commitments(n: int, prefix: str) -> list[Commitment]:
    """n commitments in 2030, distinct ids, one touch each (no follow-ups)."""
    return [
        Commitment(
            id=f"{prefix}{i}",
            title=f"Call customer {i} about the renewal",
            start=datetime(2030, 1 + i % 12, 1 + i % 28, 8 + i % 10, (i * 5) % 60, tzinfo=ZONE),
            duration=timedelta(minutes=15),
            contact=Contact(f"Person {i}", f"Company {i % 500}", f"+30210{1000000 + i:07d}"),
            purpose="Promised to call back with the numbers",
            bring=("Quote", "Contract draft"),
            questions=("Budget?", "Decision date?"),
            next_step="Send the contract",
            alarms=ALARMS,
            tags=("q1",),
        )
        for i in range(n)
    ]


def rendered(commitments: list[Commitment]) -> list[tuple[str, bytes]]:
    """(href name, body) of each commitment's single touch, as reminderd renders it."""
    out = []
    for c in commitments:
        (t,) = touches(c)
        out.append((href_name(uid_for(t.key)), render(t, STAMP)))
    return out


class Server:
    """The Radicale under test: one user, calendars made by MKCALENDAR."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "radicale"
        self.info, self.proc = start_radicale(self.dir)
        self.root = self.info.url.rstrip("/")
        self.auth = (self.info.username or "", self.info.password or "")
        self.http = requests.Session()
        self.http.auth = self.auth

    def mkcalendar(self, name: str) -> str:
        url = f"{self.root}/{self.info.username}/{name}/"
        reply = self.http.request("MKCALENDAR", url, timeout=60)
        if reply.status_code != 201:
            raise SystemExit(f"MKCALENDAR {url}: HTTP {reply.status_code} {reply.text[:200]}")
        return url

    def storage_dir(self, name: str) -> Path:
        """Radicale multifilesystem layout: <folder>/collection-root/<user>/<collection>/."""
        path = self.dir / "collections" / "collection-root" / str(self.info.username) / name
        if not (path / ".Radicale.props").is_file():
            raise SystemExit(f"{path}: not a Radicale collection folder (storage layout changed?)")
        return path

    def count(self, url: str) -> int:
        """Objects in a calendar, by a depth-1 PROPFIND straight to Radicale."""
        reply = self.http.request(
            "PROPFIND",
            url,
            headers={"Depth": "1"},
            timeout=600,
            data=b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop>'
            b"<d:getetag/></d:prop></d:propfind>",
        )
        if reply.status_code != 207:
            raise SystemExit(f"PROPFIND {url}: HTTP {reply.status_code}")
        hrefs = [e.text for e in ET.fromstring(reply.content).iter("{DAV:}href")]
        return sum(1 for h in hrefs if h and not h.endswith("/"))  # objects, not the collection

    def sync_token(self, url: str) -> str:
        reply = self.http.request(
            "PROPFIND",
            url,
            headers={"Depth": "0"},
            timeout=600,
            data=b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop>'
            b"<d:sync-token/></d:prop></d:propfind>",
        )
        token = ET.fromstring(reply.content).findtext(".//{DAV:}sync-token")
        if reply.status_code != 207 or not token:
            raise SystemExit(f"PROPFIND sync-token {url}: HTTP {reply.status_code}")
        return token

    def report_changes(self, url: str, token: str) -> float:
        """Seconds for one bare sync-collection REPORT: the server's share of a no-op sync."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
            f"<d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>"
            "<d:prop><d:getetag/></d:prop></d:sync-collection>"
        ).encode()
        start = time.perf_counter()
        reply = self.http.request(
            "REPORT",
            url,
            data=body,
            timeout=600,
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
        )
        took = time.perf_counter() - start
        if reply.status_code != 207:
            raise SystemExit(f"REPORT {url}: HTTP {reply.status_code}")
        return took

    def stop(self) -> None:
        self.http.close()
        kill(self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def floor_puts(srv: Server, url: str, objects: list[tuple[str, bytes]]) -> float:
    """Sequential conditional PUTs on one kept-alive session: the least any client could do."""
    with requests.Session() as s:
        s.auth = srv.auth
        headers = {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"}
        start = time.perf_counter()
        for name, body in objects:
            reply = s.put(url + name, data=body, headers=headers, timeout=60)
            if reply.status_code not in (201, 204):
                raise SystemExit(f"floor PUT {name}: HTTP {reply.status_code}")
        return time.perf_counter() - start


def engine_sync(
    url: str, db: StateDB, commitments: list[Commitment], connections: int, user: tuple[str, str]
) -> tuple[float, SyncResult]:
    """One sync as the CLI does it: a fresh DavCalendar, the engine in-process."""
    cal = DavCalendar(url, user[0], user[1], connections=connections)
    start = time.perf_counter()
    result = sync_calendar(cal, db, commitments, connections=connections, progress=None)
    return time.perf_counter() - start, result


def traffic(proxy: RecordingProxy) -> str:
    seen = proxy.requests()
    by = collections.Counter(s.method for s in seen)
    kinds = ", ".join(f"{m} {k}" for m, k in sorted(by.items()))
    return f"{len(seen)} requests ({kinds or 'none'}), {len(proxy.writes())} writes"


def check(result: SyncResult, what: str) -> None:
    if result.errors:
        print(f"  !! {what}: {len(result.errors)} errors, first: {result.errors[0]}")


def part1(srv: Server, tmp: Path, n: int) -> None:
    """Floor, engine with 1 and 4 connections, floor again: the floor is their mean,
    so a drift of the machine during the run shows as the spread of the two floors."""
    commitments = make_commitments(n, "a")
    start = time.perf_counter()
    objects = [(href_name(uid_for(t.key)), render(t)) for c in commitments for t in touches(c)]
    render_s = time.perf_counter() - start
    print(
        f"\n1. initial sync of {n} commitments into an empty calendar "
        f"(rendering them alone: {render_s:.2f} s, {render_s / n * 1e3:.2f} ms each)"
    )
    floors = [floor_puts(srv, srv.mkcalendar("floor-before"), objects)]
    runs = []
    for connections in (1, 4):
        url = srv.mkcalendar(f"initial-c{connections}")
        db = StateDB(tmp / f"state-initial-c{connections}" / "state.sqlite3")
        took, result = engine_sync(url, db, commitments, connections, srv.auth)
        stored = srv.count(url)
        db.close()
        check(result, f"connections={connections}")
        runs.append((connections, took, result, stored))
    floors.append(floor_puts(srv, srv.mkcalendar("floor-after"), objects))
    floor_s = sum(floors) / len(floors)
    for label, took in (("before", floors[0]), ("after", floors[1])):
        print(
            f"   {f'floor ({label}): plain PUTs, 1 session':44s} {took:7.2f} s  "
            f"{took / n * 1e3:6.1f} ms/PUT"
        )
    for connections, took, result, stored in runs:
        ratio = took / floor_s
        print(
            f"   {f'reminderd sync, connections={connections}':44s} {took:7.2f} s  "
            f"{took / n * 1e3:6.1f} ms/PUT  = {ratio:.2f}x floor (mean of both); goal <= 1.3x: "
            f"{'met' if ratio <= 1.3 else 'NOT met'}  [{result.line()}; {stored} on server]"
        )


def load_calendar(srv: Server, name: str, objects: list[tuple[str, bytes]]) -> tuple[str, float]:
    """Write objects straight into Radicale's storage; check Radicale serves them all."""
    url = srv.mkcalendar(name)
    folder = srv.storage_dir(name)
    for fname, body in objects:
        (folder / fname).write_bytes(body)
    start = time.perf_counter()
    served = srv.count(url)  # first listing: Radicale parses and caches every new file
    srv.sync_token(url)  # and its first sync token builds the history cache of each one
    warm = time.perf_counter() - start
    if served != len(objects):
        raise SystemExit(f"{name}: Radicale serves {served} of the {len(objects)} files written")
    fname, body = objects[len(objects) // 2]
    got = srv.http.get(url + fname, timeout=60)
    if got.status_code != 200 or b"X-REMINDERD-KEY" not in got.content:
        raise SystemExit(
            f"GET {url + fname}: HTTP {got.status_code}; Radicale does not serve the files"
        )
    return url, warm


def adopt(
    srv: Server, proxy: RecordingProxy, url: str, db: StateDB, commitments: list[Commitment]
) -> tuple[float, SyncResult]:
    proxy.reset()
    return engine_sync(proxy.rewrite(url), db, commitments, 4, srv.auth)


def pick_n(srv: Server, tmp: Path, n: int, budget: float) -> tuple[int, str]:
    """Adopt a small pilot calendar first; shrink n if adopting n would exceed the budget."""
    pilot_n = min(n, 300)
    commitments = make_commitments(pilot_n, "p")
    url, warm = load_calendar(srv, "pilot", rendered(commitments))
    proxy = RecordingProxy(srv.root)
    db = StateDB(tmp / "state-pilot" / "state.sqlite3")
    try:
        took, _ = adopt(srv, proxy, url, db, commitments)
    finally:
        db.close()
        proxy.close()
    per_item = (took + warm) / pilot_n
    estimate = per_item * n
    if estimate <= budget:
        return (
            n,
            f"pilot of {pilot_n}: {per_item * 1e3:.1f} ms/object, est. {estimate:.0f} s for {n}",
        )
    smaller = max(pilot_n, int(budget / per_item) // 1000 * 1000 or int(budget / per_item))
    return smaller, (
        f"FALLBACK: pilot of {pilot_n} adopted at {per_item * 1e3:.1f} ms/object, "
        f"{n} would take ~{estimate:.0f} s > {budget:.0f} s budget; using n={smaller}"
    )


def part2and3(srv: Server, tmp: Path, n: int, budget: float) -> None:
    n, note = pick_n(srv, tmp, n, budget)
    print(f"\n2. no-op sync of {n} commitments ({note})")
    commitments = make_commitments(n, "b")
    start = time.perf_counter()
    objects = rendered(commitments)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    url, warm = load_calendar(srv, "big", objects)
    load_s = time.perf_counter() - start
    print(
        f"   setup: rendered {n} in {render_s:.1f} s, wrote them into Radicale's storage and "
        f"listed them back in {load_s:.1f} s (Radicale's first listing and sync token: {warm:.1f} s)"
    )
    proxy = RecordingProxy(srv.root)
    db = StateDB(tmp / "state-big" / "state.sqlite3")
    try:
        took, result = adopt(srv, proxy, url, db, commitments)
        check(result, "adoption")
        puts = len(proxy.requests("PUT"))
        print(
            f"   {'adoption sync (state empty, objects ours)':44s} {took:7.2f} s  {traffic(proxy)}; "
            f"PUTs {puts} (goal 0: {'met' if puts == 0 else 'NOT met'})  [{result.line()}]"
        )

        proxy.reset()
        start = time.perf_counter()
        fresh = make_commitments(n, "b")
        built = time.perf_counter() - start
        took, result = engine_sync(proxy.rewrite(url), db, fresh, 4, srv.auth)
        check(result, "no-op")
        count = len(proxy.requests())
        print(
            f"   {'no-op sync: sync_calendar alone':44s} {took:7.3f} s  {traffic(proxy)}  "
            f"[{result.line()}]"
        )
        total = took + built
        marker = db.get(f"sync:{proxy.rewrite(url)}") or {}
        if marker.get("token"):
            bare = srv.report_changes(url, marker["token"])
            print(f"   {'  its server floor: one bare REPORT, direct':44s} {bare:7.3f} s")
        print(
            f"   {'no-op sync: with building the commitments':44s} {total:7.3f} s  (building: {built:.3f} s); "
            f"goal < 1.5 s: {'met' if total < 1.5 else 'NOT met'}; "
            f"O(1) requests: {'met' if count <= 2 else 'NOT met'}"
        )

        print(f"\n3. one title changed among {n}")
        k = n // 2
        fresh[k] = dataclasses.replace(fresh[k], title=fresh[k].title + " (moved up)")
        proxy.reset()
        took, result = engine_sync(proxy.rewrite(url), db, fresh, 4, srv.auth)
        check(result, "one change")
        landed = proxy.landed()
        print(
            f"   {'sync after one change':44s} {took:7.3f} s  {traffic(proxy)}, {len(landed)} landed; "
            f"goal exactly 1 write: {'met' if len(proxy.writes()) == 1 else 'NOT met'}  "
            f"[{result.line()}]"
        )
        proxy.reset()
        took, result = engine_sync(proxy.rewrite(url), db, fresh, 4, srv.auth)
        print(
            f"   {'no-op sync right after it':44s} {took:7.3f} s  {traffic(proxy)}  [{result.line()}]"
        )
    finally:
        db.close()
        proxy.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n1", type=int, default=1_000, help="commitments in the initial sync")
    ap.add_argument(
        "--n2", type=int, default=10_000, help="commitments in the no-op / one-change syncs"
    )
    ap.add_argument(
        "--adopt-budget",
        type=float,
        default=300,
        help="seconds the adoption of n2 may take before a smaller n2 is used",
    )
    args = ap.parse_args()
    os.environ["NO_PROXY"] = ",".join(
        filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])
    )
    print(
        f"n1={args.n1}, n2={args.n2}, local Radicale, one run; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus"
    )
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_sync-") as tmp:
        srv = Server(Path(tmp))
        try:
            import radicale

            print(f"Radicale {radicale.VERSION} at {srv.root} (pid {srv.proc.pid})")
            part1(srv, Path(tmp), args.n1)
            part2and3(srv, Path(tmp), args.n2, args.adopt_budget)
        finally:
            srv.stop()
    print(f"\ntotal {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
