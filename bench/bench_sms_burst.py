"""A burst: 5,000 SMS due in the same second, through the real timer (APScheduler), the
outbox (SQLite) and the dispatcher, with the `log` provider and with the Twilio mock of
../shared/testbed (Prism + recorder, started here on loopback and stopped at the end).

Each run is its own process, so its peak RSS is its own: "before" is the RSS with the
5,000 sends planned and nothing sent, "peak" the highest RSS seen while sending (sampled
every 20 ms). Lateness is from each send's due time to the moment its request left
(the sender is called). Rate limits: unlimited (what the machine can do) and one that
must stretch the burst; for the latter, "over the limit" is how much later each send
went than the rate limit alone implies (send i of n cannot leave before i / rate).
Baselines in the same run: the same number of messages through the bare provider in a
loop (no outbox, no timer, no threads), and the RSS of a process that only imported
and planned.

    python bench/bench_sms_burst.py [--n 5000] [--rate 6000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench_sms import SID, pct, planned  # the same sends as bench_sms.py

from reminderd.config import sms_config
from reminderd.sms.dispatch import Dispatcher
from reminderd.sms.outbox import Outbox
from reminderd.sms.providers import LogSender, Sender, TwilioSender
from reminderd.sms.scheduler import SmsScheduler
from reminderd.store.sqlite import StateDB

ATHENS = ZoneInfo("Europe/Athens")
TO = "+306912345678"
UNLIMITED = 1_000_000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Timed:
    """The provider, noting when each send left (the body names the send)."""

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.name = inner.name
        self.left: dict[str, float] = {}

    def send(self, to: str, body: str, validity_seconds: int | None) -> str:
        self.left[body.split("Call customer ")[1].split(" ")[0]] = time.time()
        return self.inner.send(to, body, validity_seconds)

    def find_sent(self, to: str, body: str | tuple[str, ...], since: datetime) -> str | None:
        return self.inner.find_sent(to, body, since)


def provider(kind: str, url: str | None) -> Sender:
    if kind == "log":
        return LogSender()
    assert url is not None
    return TwilioSender(SID, auth_token="token", from_="+15017122661", api_url=url)


def one_run(kind: str, url: str | None, n: int, rate: int, plan_only: bool) -> dict[str, Any]:
    """In a child process: plan n sends due in a few seconds, let the daemon's timer send them."""
    # the log provider writes every SMS to the log, as the daemon does: the cost is counted
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDB(Path(tmp) / "state.sqlite3")
        sender = Timed(provider(kind, url))
        settings = sms_config(to=TO, rate_per_minute=rate)
        dispatcher = Dispatcher(Outbox(db), sender, settings, ATHENS)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        sends = planned(n, due, 0.0)
        dispatcher.outbox.reconcile(sends, datetime.now(UTC))
        before = rss_mib()
        if plan_only:
            dispatcher.close()
            db.close()
            return {"before": before, "peak": before}
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], rss_mib())

        threading.Thread(target=sample, daemon=True).start()
        scheduler = SmsScheduler(dispatcher, ATHENS, None, lambda: ())
        scheduler.start()
        limit = time.monotonic() + 60 + 1.5 * n * 60 / rate
        while time.monotonic() < limit:
            counts = dispatcher.outbox.counts()
            if not counts.get("pending") and not counts.get("sending"):
                break
            time.sleep(0.2)
        scheduler.shutdown()
        done.set()
        counts = dispatcher.outbox.counts()
        db.close()
    order = sorted(sender.left.values())
    late = [t - due.timestamp() for t in order]
    # send i cannot leave before due + i / rate: what is left is ours
    over = (
        [t - (due.timestamp() + i * 60 / rate) for i, t in enumerate(order)]
        if rate < UNLIMITED
        else []
    )
    span = order[-1] - order[0] if len(order) > 1 else 0.0
    return {
        "before": before,
        "peak": max(peak[0], rss_mib()),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "counts": counts,
        "late": late,
        "over": over,
        "rate": (len(order) - 1) / span if span else 0.0,
    }


def bare_loop(kind: str, url: str | None, n: int) -> float:
    sender = provider(kind, url)
    start = time.perf_counter()
    for i in range(n):
        sender.send(TO, f"baseline {i}", 600)
    return n / (time.perf_counter() - start)


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ms(values: list[float], p: float) -> str:
    return f"{pct(values, p) * 1000:7.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=6000, help="the limited run's rate_per_minute")
    ap.add_argument(
        "--child",
        nargs=5,
        metavar=("KIND", "URL", "N", "RATE", "PLAN_ONLY"),
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args()
    if args.child:
        kind, url, n, rate, plan_only = args.child
        if plan_only == "bare":
            print(json.dumps({"rate": bare_loop(kind, url if url != "-" else None, int(n))}))
        else:
            print(
                json.dumps(
                    one_run(kind, url if url != "-" else None, int(n), int(rate), plan_only == "1")
                )
            )
        return

    from servers import kill, start_twilio_mock

    n = args.n
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {n} SMS due in the same second; "
        f"8 workers; Twilio mock = Prism + recorder on loopback"
    )
    base = child("log", "-", str(n), str(UNLIMITED), "1")
    print(f"baseline RSS, imported and {n} sends planned, nothing sent: {base['before']:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        mock = start_twilio_mock(Path(tmp))
        try:
            for kind in ("log", "twilio-mock"):
                url = mock.url if kind != "log" else "-"
                mock.clear()
                bare = child(kind, url, str(n), "0", "bare")["rate"]
                print(f"\n{kind}: baseline, the bare provider in a loop: {bare:6.0f} sends/s")
                for rate in (UNLIMITED, args.rate):
                    mock.clear()
                    r = child(kind, url, str(n), str(rate), "0")
                    label = "no rate limit" if rate == UNLIMITED else f"rate_per_minute {rate}"
                    late = r["late"]
                    print(
                        f"  {label:22s} sent {len(late)}/{n} {r['counts']}; {r['rate']:6.0f} sends/s; "
                        f"RSS {r['before']:.0f} -> peak {r['peak']:.0f} MiB (ru_maxrss {r['maxrss']:.0f})"
                    )
                    print(
                        f"  {'':22s} lateness p50 {ms(late, 50)} ms, p99 {ms(late, 99)} ms, "
                        f"max {max(late) * 1000:7.0f} ms"
                    )
                    if r["over"]:
                        implied = (n - 1) * 60 / rate
                        print(
                            f"  {'':22s} over what the limit implies (last send at {implied:.1f} s): "
                            f"p50 {ms(r['over'], 50)} ms, p99 {ms(r['over'], 99)} ms, "
                            f"max {max(r['over']) * 1000:7.0f} ms"
                        )
        finally:
            for pid in mock.pids:
                kill(pid)


if __name__ == "__main__":
    main()
