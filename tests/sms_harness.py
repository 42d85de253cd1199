"""The sending process for the crash test: recover, plan, send everything due, exit.

    python tests/sms_harness.py CONFIG       one run
    python tests/sms_harness.py --serve      a fork server for many runs (the crash test)

The fork server imports everything once, then reads commands on stdin:
`run CONFIG` forks a child that does one run (it prints `ready`, then
`recovered N` once it has looked at what a killed run left in flight);
`kill` SIGKILLs that child wherever it is, `wait` lets it finish; both reap it
and print `exit killed` or `exit CODE`. The server kills only its own,
not yet reaped, child, so a PID can never have been reused by then. A fork
costs milliseconds where a new interpreter costs a second: the crash test
gets its 50 kills well inside its time budget.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from reminderd.app import state_db
from reminderd.config import load_config
from reminderd.sms.factory import make_dispatcher
from reminderd.sms.providers import TwilioSender
from reminderd.sources import load_sources

SOON = timedelta(seconds=30)
LOOKUP_DELAY = timedelta(seconds=0.3)


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: lines of parent and child never interleave


def run(config_path: Path) -> None:
    config = load_config(config_path)
    loaded = load_sources(config)
    db = state_db(config)
    dispatcher = make_dispatcher(config, db)
    # the mock lists a message within milliseconds: no need for the default 20 s before a look-up
    dispatcher.tuning = replace(dispatcher.tuning, lookup_delay=LOOKUP_DELAY)
    say("ready")  # the crash test times its kill from here
    say(f"recovered {dispatcher.recover()}")
    dispatcher.replan(loaded.commitments)
    # until nothing is pending soon: a look-up or a retry may wait a little, a later send is not ours
    while (nxt := dispatcher.outbox.next_time()) is not None and nxt - dispatcher.clock() < SOON:
        time.sleep(max(0.0, (nxt - dispatcher.clock()).total_seconds()))
        dispatcher.run_due()
    dispatcher.close()
    db.close()


def serve() -> None:
    # load the twilio client's modules now, so a forked child only runs
    TwilioSender("AC" + "0" * 32, auth_token="x", api_url="http://127.0.0.1:9")._client.messages  # noqa: B018
    child = 0
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            child = os.fork()
            if child == 0:
                code = 0
                try:
                    run(Path(arg))
                except BaseException as exc:  # report, never return into the server's loop
                    print(f"run failed: {exc!r}", file=sys.stderr, flush=True)
                    code = 1
                os._exit(code)
        elif command in ("kill", "wait") and child:
            if command == "kill":
                os.kill(
                    child, signal.SIGKILL
                )  # ours and not yet reaped: the PID is still this child
            _, status = os.waitpid(child, 0)
            child = 0
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            say("exit killed" if killed else f"exit {os.waitstatus_to_exitcode(status)}")


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run(Path(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
