"""SMS timing: lateness of 500 sends due in the same minute, and idle CPU with 10,000 pending.

Against the Twilio mock of ../shared/testbed (Prism + recorder), started here on
loopback and stopped at the end. Lateness is from each send's due time to the
moment the recorder saw the request. Baseline in the same run: the same number
of messages sent by a bare loop over the twilio library (no outbox, no timer).

    python bench/bench_sms.py [--n 500] [--idle 60] [--pending 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import kill, start_twilio_mock

from reminderd.config import sms_config
from reminderd.sms.dispatch import Dispatcher, Tuning
from reminderd.sms.outbox import Outbox
from reminderd.sms.plan import PlannedSend
from reminderd.sms.providers import TwilioSender
from reminderd.sms.scheduler import SmsScheduler
from reminderd.store.sqlite import StateDB

SID = "AC" + "0123456789abcdef" * 2
ATHENS = ZoneInfo("Europe/Athens")


def planned(n: int, due: datetime, spread: float) -> dict[str, PlannedSend]:
    sends = {}
    for i in range(n):
        at = due + timedelta(seconds=spread * i / max(1, n - 1))
        start = at + timedelta(minutes=30)
        sends[f"b{i}"] = PlannedSend(
            f"b{i}",
            at,
            at,
            at + timedelta(minutes=30),
            {
                "touch": f"c{i}#0",
                "title": f"Call customer {i}",
                "start": start.isoformat(),
                "zone": "Europe/Athens",
                "who": f"Person {i}",
                "phone": "+302101234567",
                "why": "renewal",
                "bring": None,
                "offset": "-30m",
            },
        )
    return sends


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def lateness_run(mock, n: int, spread: float, workers: int) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDB(Path(tmp) / "state.sqlite3")
        sender = TwilioSender(SID, auth_token="token", from_="+15017122661", api_url=mock.url)
        settings = sms_config(to="+306912345678", rate_per_minute=1_000_000)
        dispatcher = Dispatcher(
            Outbox(db), sender, settings, ATHENS, tuning=Tuning(workers=workers)
        )
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
        sends = planned(n, due, spread)
        dispatcher.outbox.reconcile(sends, datetime.now(UTC))
        scheduler = SmsScheduler(dispatcher, ATHENS, None, lambda: ())
        mock.clear()
        scheduler.start()
        deadline = time.monotonic() + 120 + spread
        while time.monotonic() < deadline and len(mock.messages()) < n:
            time.sleep(0.2)
        scheduler.shutdown()
        db.close()
    got = mock.requests()
    late = []
    arrivals = []
    for r in got:
        if r.get("method") != "POST":
            continue
        i = int(str(r["form"]["Body"]).split("Call customer ")[1].split(" ")[0])
        arrived = float(r["time"])
        arrivals.append(arrived)
        late.append(arrived - sends[f"b{i}"].due.timestamp())
    rate = len(arrivals) / max(1e-9, (max(arrivals) - min(arrivals))) if len(arrivals) > 1 else 0.0
    label = f"{n} due at the same second" if spread == 0 else f"{n} due spread over {spread:.0f} s"
    print(
        f"{label:36s} sent {len(late)}/{n}; lateness p50 {pct(late, 50) * 1000:6.0f} ms, "
        f"p99 {pct(late, 99) * 1000:6.0f} ms, max {max(late) * 1000:6.0f} ms; "
        f"{rate:6.0f} sends/s while sending ({workers} workers)"
    )


def baseline(mock, n: int) -> float:  # type: ignore[no-untyped-def]
    sender = TwilioSender(SID, auth_token="token", from_="+15017122661", api_url=mock.url)
    start = time.perf_counter()
    for i in range(n):
        sender.send("+306912345678", f"baseline {i}", 600)
    return n / (time.perf_counter() - start)


def idle_cpu(pending: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDB(Path(tmp) / "state.sqlite3")
        sender = TwilioSender(
            SID, auth_token="token", from_="+15017122661", api_url="http://127.0.0.1:9"
        )
        dispatcher = Dispatcher(Outbox(db), sender, sms_config(to="+306912345678"), ATHENS)
        later = datetime.now(UTC) + timedelta(days=2)
        dispatcher.outbox.reconcile(planned(pending, later, 86400), datetime.now(UTC))
        scheduler = SmsScheduler(dispatcher, ATHENS, None, lambda: ())
        scheduler.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        scheduler.shutdown()
        db.close()
    base0 = time.process_time()
    time.sleep(min(5.0, seconds))
    base = (time.process_time() - base0) / min(5.0, seconds)
    print(
        f"idle with {pending} pending sends: {cpu * 1000:.0f} ms CPU over {wall:.0f} s = "
        f"{100 * cpu / wall:.3f}% of one core (baseline, a sleeping interpreter: {100 * base:.3f}%); "
        f"goal < 1%: {'met' if cpu / wall < 0.01 else 'NOT met'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--pending", type=int, default=10_000)
    args = ap.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; Twilio mock = Prism + recorder on loopback"
    )
    with tempfile.TemporaryDirectory() as tmp:
        mock = start_twilio_mock(Path(tmp))
        try:
            rate = baseline(mock, args.n)
            print(
                f"{'baseline: bare twilio-library loop':36s} {rate:6.0f} sends/s (one connection, no outbox)"
            )
            for workers in (8, 16, 32):
                lateness_run(mock, args.n, 0.0, workers)
            lateness_run(mock, args.n, 60.0, 8)
        finally:
            for pid in mock.pids:
                kill(pid)
    idle_cpu(args.pending, args.idle)


if __name__ == "__main__":
    main()
