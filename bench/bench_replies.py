"""SMS replies in poll mode: reply-to-effect latency, and the cost of one poll.

Against the Twilio mock of ../shared/testbed (stateful: it keeps messages and
takes injected replies), started here on loopback and stopped at the end.

1. Latency: a real `reminderd run` with `sms.reply_poll: 2s` on a YAML file of
   commitments; each reply (`<id> DONE`) is injected, and the effect is timed
   from the injection to (a) the outcome in the state and (b) `status: done`
   written into the YAML file (the write-back, a re-read, a replan and a sync
   happen in between). Baseline in the same run: half the poll interval, the
   wait a reply has on average before it is even listed.
2. One poll with N inbound messages in the day (all seen already: the steady
   state of a busy day), against one poll of an empty day in the same run.

    python bench/bench_replies.py [--replies 40] [--messages 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import free_port, kill, start_twilio_mock

from reminderd.replies.handler import ReplyHandler
from reminderd.replies.service import ReplyPoller
from reminderd.sms.providers import TwilioSender
from reminderd.store.sqlite import StateDB
from reminderd.timeparse import get_zone

SID = "AC" + "0123456789abcdef" * 2
OURS, USER = "+15017122661", "+306912345678"
POLL = 2.0


def inject(url: str, body: str, sender: str = USER) -> float:
    data = json.dumps({"from": sender, "to": OURS, "body": body, "visible_after": 0}).encode()
    request = urllib.request.Request(
        f"{url}/__testbed/inbound", data, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        return time.monotonic()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(url: str, tmp: Path, n: int) -> None:
    start = datetime.now(UTC) + timedelta(days=2)
    lines = ["# bench commitments: comments stay", "commitments:"]
    for i in range(n):
        when = (start + timedelta(hours=i)).isoformat(timespec="minutes")
        lines += [
            f"  - id: c{i}   # item {i}",
            f"    title: Call customer {i}",
            f'    when: "{when}"',
        ]
    (tmp / "c.yaml").write_text("\n".join(lines) + "\n")
    (tmp / "config.yaml").write_text(
        "timezone: UTC\ncommitments: [c.yaml]\n"
        f"calendar: {{listen: 127.0.0.1:{free_port()}}}\n"
        "sms:\n  provider: twilio\n  account_sid_env: BENCH_SID\n  auth_token_env: BENCH_TOKEN\n"
        f'  from: "{OURS}"\n  to: "{USER}"\n  api_url: {url}\n  reply_poll: {int(POLL)}s\n'
        "state_dir: ./state\n"
    )
    env = dict(os.environ, BENCH_SID=SID, BENCH_TOKEN="token")
    log = (tmp / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "--config", str(tmp / "config.yaml"), "run"],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    db_path = tmp / "state" / "state.sqlite3"
    try:
        deadline = time.monotonic() + 60
        while "SMS replies: polling" not in (tmp / "daemon.log").read_text():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon did not start; see " + str(tmp / "daemon.log"))
            time.sleep(0.1)
        time.sleep(POLL * 1.5)  # the first poll has run: replies begin after it
        recorded, written = [], []
        rnd = random.Random(7)
        for i in range(n):
            time.sleep(rnd.uniform(0, POLL))  # replies come at any point of the poll cycle
            sent = inject(url, f"c{i} DONE")
            got_outcome = got_file = None
            deadline = time.monotonic() + 60
            while (got_outcome is None or got_file is None) and time.monotonic() < deadline:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as con:
                    row = con.execute(
                        "SELECT written FROM outcomes WHERE commitment = ?", (f"c{i}",)
                    ).fetchone()
                if row is not None and got_outcome is None:
                    got_outcome = time.monotonic()
                if row is not None and row[0] == "written" and got_file is None:
                    got_file = time.monotonic()
                time.sleep(0.01)
            if got_outcome is None or got_file is None:
                raise SystemExit(f"reply {i} had no effect within 60 s")
            recorded.append(got_outcome - sent)
            written.append(got_file - sent)
            print(f"replies: {i + 1}/{n}", file=sys.stderr, end="\r", flush=True)
        print(file=sys.stderr)
        text = (tmp / "c.yaml").read_text()
        assert text.count("status: done") == n and "# bench commitments: comments stay" in text
        base = POLL / 2
        for label, values in (("outcome recorded", recorded), ("written into the YAML", written)):
            med = statistics.median(values)
            print(
                f"reply -> {label}: median {med:.2f} s, p99 {percentile(values, 0.99):.2f} s, "
                f"max {max(values):.2f} s over {n} replies (reply_poll {POLL:.0f}s; "
                f"baseline half the poll interval {base:.2f} s: ratio {med / base:.2f})"
            )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()


def one_poll(url: str, tmp: Path, messages: int) -> None:
    sender = TwilioSender(SID, auth_token="token", from_=OURS, api_url=url)
    db = StateDB(tmp / "poll.sqlite3")
    clock = lambda: datetime.now(UTC)  # noqa: E731
    handler = ReplyHandler(db, USER, get_zone("UTC"), clock, lambda: None)
    poller = ReplyPoller(sender.inbound, handler, db, timedelta(seconds=POLL), clock)

    def timed() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        poller.poll_once()
        return time.perf_counter() - wall, time.process_time() - cpu

    urllib.request.urlopen(urllib.request.Request(f"{url}/__testbed/messages", method="DELETE"))
    poller.poll_once()
    empty = min(timed() for _ in range(5))
    t0 = time.perf_counter()
    for i in range(messages):
        inject(url, f"note {i}", sender=f"+3069000{i:05d}")  # other numbers: seen once, ignored
    injected = time.perf_counter() - t0
    first = timed()  # each message recorded as seen (ignored: another number)
    steady = min(timed() for _ in range(5))  # all seen: the list and the look-ups only
    print(f"(injected {messages} messages in {injected:.1f} s)")
    print(
        f"one poll, empty day: {empty[0] * 1000:.0f} ms wall, {empty[1] * 1000:.0f} ms CPU (baseline)"
    )
    print(
        f"one poll, {messages} messages, first sight: {first[0] * 1000:.0f} ms wall, "
        f"{first[1] * 1000:.0f} ms CPU"
    )
    print(
        f"one poll, {messages} messages, all seen: {steady[0] * 1000:.0f} ms wall "
        f"(x{steady[0] / empty[0]:.1f} the baseline), {steady[1] * 1000:.0f} ms CPU "
        f"(x{steady[1] / max(empty[1], 1e-6):.1f})"
    )
    db.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replies", type=int, default=40)
    ap.add_argument("--messages", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mock = start_twilio_mock(tmp / "mock")
        try:
            (tmp / "daemon").mkdir()
            latency(mock.url, tmp / "daemon", args.replies)
            one_poll(mock.url, tmp, args.messages)
        finally:
            for pid in mock.pids:
                kill(pid)


if __name__ == "__main__":
    main()
