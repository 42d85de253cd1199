"""The sending process for the crash test: recover, plan, send everything due, exit.

    python tests/sms_harness.py CONFIG
"""

from __future__ import annotations

import sys
from pathlib import Path

from reminderd.app import state_db
from reminderd.config import load_config
from reminderd.sms import make_dispatcher
from reminderd.sources import load_sources


def main() -> int:
    config = load_config(Path(sys.argv[1]))
    loaded = load_sources(config)
    db = state_db(config)
    dispatcher = make_dispatcher(config, db)
    print("ready", flush=True)  # the crash test times its kill from here
    dispatcher.recover()
    dispatcher.replan(loaded.commitments)
    while dispatcher.outbox.due(dispatcher.clock()):
        dispatcher.run_due()
    dispatcher.close()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
