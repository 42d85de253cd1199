"""Thin commands over the core, and the one error handler that maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from . import __version__
from .errors import EX_SOFTWARE, InputProblems, ReminderdError
from .logs import setup_logging

log = logging.getLogger(__name__)
Command = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Config and commitments; raises ConfigError / CommitmentsError / MissingInputError."""
    from .config import find_config, load_config
    from .errors import CommitmentsError
    from .sources import load_sources

    config = load_config(find_config(args.config))
    loaded = load_sources(config)
    if loaded.problems:
        raise CommitmentsError(list(loaded.problems))
    return config, loaded


def cmd_validate(args: argparse.Namespace) -> int:
    from .agenda import summary
    from .config import find_config, load_config
    from .sources import load_sources

    config = load_config(find_config(args.config))
    loaded = load_sources(config)
    out: TextIO = sys.stdout
    for problem in loaded.problems:
        print(problem, file=out)
    counts = summary(loaded.commitments, loaded.files, config.sms is not None)
    if loaded.problems:
        files = len({p.path for p in loaded.problems})
        print(f"{len(loaded.problems)} error{'s' if len(loaded.problems) != 1 else ''} in {files} "
              f"file{'s' if files != 1 else ''}; valid so far: {counts}", file=out)
        return 65
    print(f"ok: {counts}", file=out)
    return 0


def cmd_agenda(args: argparse.Namespace) -> int:
    from .agenda import alerts_as_planned, render_json, render_text, window
    from .timeparse import get_zone

    config, loaded = _load(args)
    now = datetime.now(UTC)
    items, after = window(loaded.commitments, now, args.days)
    alerts = alerts_as_planned(config.sms["quiet_hours"] if config.sms else None, get_zone(config.timezone),
                               config.sms is not None)
    if args.json:
        json.dump(render_json(items, now, args.days, config.timezone, alerts), sys.stdout, indent=2,
                  ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(items, now, args.days, config.timezone, after, alerts))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from .app import state_db, sync_once

    config, loaded = _load(args)  # a file that fails to parse stops here: nothing is deleted
    db = state_db(config)
    try:
        result, url = sync_once(config, db, loaded.commitments, dry_run=args.dry_run, force=args.force)
    finally:
        db.close()
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    print(result.line())
    if not config.calendar["url"]:
        print(f"calendar: {url} (embedded; subscribe to it from a calendar app on this machine)")
    return 1 if result.errors else 0


def cmd_test_sms(args: argparse.Namespace) -> int:
    import uuid

    from .app import state_db
    from .config import find_config, load_config
    from .errors import SmsError
    from .phone import mask
    from .sms import make_sender
    from .sms.outbox import Outbox

    config = load_config(find_config(args.config))
    if config.sms is None:
        print("reminderd: no sms section in the config: SMS is off", file=sys.stderr)
        return 78
    to = config.sms["to"]
    if not to:
        print("reminderd: sms.to is not set", file=sys.stderr)
        return 78
    sender = make_sender(config)
    now = datetime.now(UTC)
    body = f"reminderd test SMS, {now.astimezone().strftime('%H:%M')}: your follow-up backups reach this phone."
    db = state_db(config)
    try:
        outbox = Outbox(db)
        key = f"test@{now.isoformat(timespec='microseconds')}@{uuid.uuid4().hex[:8]}"  # one row per call
        outbox.add(key, "test", now, now, {"text": body}, now)
        if not outbox.claim(key, body, now):  # a running daemon took it first: it sends it
            print(f"the running daemon sends the test SMS to {mask(to)}")
            return 0
        try:
            sid = sender.send(to, body, 600)
        except SmsError as exc:
            outbox.failed(key, str(exc), datetime.now(UTC))
            print(f"reminderd: test SMS to {mask(to)} failed: {exc}", file=sys.stderr)
            return 1
        except ReminderdError as exc:  # Ambiguous: no answer, it may still arrive
            outbox.unconfirmed(key, str(exc), datetime.now(UTC))
            print(f"reminderd: test SMS to {mask(to)}: {exc}; it may still arrive", file=sys.stderr)
            return 1
        outbox.sent(key, sid, datetime.now(UTC))
    finally:
        db.close()
    print(f"sent a test SMS to {mask(to)} via {sender.name} ({sid})")
    return 0


def _alive(pid: object) -> bool:
    import os

    try:
        os.kill(int(pid), 0)  # type: ignore[call-overload]
    except (OSError, TypeError, ValueError):
        return False
    return True


def cmd_status(args: argparse.Namespace) -> int:
    from .app import state_db
    from .config import find_config, load_config
    from .phone import mask
    from .sms.outbox import Outbox

    config = load_config(find_config(args.config))
    db = state_db(config)
    try:
        outbox = Outbox(db)
        upcoming_rows = outbox.due(datetime.max.replace(tzinfo=UTC), limit=1)
        doc = {
            "state_dir": str(config.state_dir),
            "daemon": db.get("daemon"),
            "last_sync": db.get("last_sync"),
            "last_error": db.get("last_error"),
            "sms": "off" if config.sms is None else config.sms["provider"],
            "sms_to": mask(config.sms["to"]) if config.sms and config.sms["to"] else None,
            "next_sms": [{"key": r.key, "at": r.next_try.isoformat(), "title": r.payload.get("title"),
                          "kind": r.kind} for r in upcoming_rows],
            "sms_counts": outbox.counts(),
            "recent_sends": [{"key": r.key, "status": r.status, "at": r.started_at.isoformat() if r.started_at else None,
                              "sid": r.sid, "error": r.error} for r in outbox.recent(10)],
        }
    finally:
        db.close()
    if args.json:
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    daemon = doc["daemon"] or {}
    if daemon.get("state") in ("running", "starting") and not _alive(daemon.get("pid")):
        daemon = dict(daemon, state="not running (it stopped without saying so: killed or crashed)")
    last = doc["last_sync"] or {}
    print(f"state:      {doc['state_dir']}")
    print(f"daemon:     {daemon.get('state', 'not running')}" + (f" since {daemon['since']}" if daemon.get("since") else ""))
    print(f"last sync:  {last.get('at', 'never')}" + (f" ({last['result']})" if last.get("result") else ""))
    err = doc["last_error"] or {}
    print(f"last error: {err.get('at', '') + ' ' + err.get('message', '') if err else 'none'}")
    print(f"sms:        {doc['sms']}" + (f" to {doc['sms_to']}" if doc["sms_to"] else ""))
    for r in doc["next_sms"]:
        print(f"next sms:   {r['at']} {r['title'] or r['kind']} ({r['key']})")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["sms_counts"].items()))
    print(f"sms counts: {counts or 'none'}")
    for r in doc["recent_sends"]:
        print(f"  {r['status']:9s} {r['at'] or '-':25s} {r['key']}" + (f"  {r['error']}" if r["error"] else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import find_config
    from .service import Daemon

    return Daemon(find_config(args.config)).run()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (else $REMINDERD_CONFIG, $XDG_CONFIG_HOME/reminderd/config.yaml, "
                             "/etc/reminderd/config.yaml)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="more detail in logs and errors")
    parser = argparse.ArgumentParser(
        prog="reminderd", parents=[common],
        description="Never miss a follow-up you promised: commitments from YAML/CSV to calendar "
                    "alarms and SMS backups.")
    parser.add_argument("--version", action="version", version=f"reminderd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", parents=[common], help="check config and commitments; list every error")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("agenda", parents=[common], help="upcoming follow-ups with every alert time")
    p.add_argument("--days", type=int, default=7, metavar="N", help="how many days ahead (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output (schema in README)")
    p.set_defaults(func=cmd_agenda)
    p = sub.add_parser("sync", parents=[common], help="one reconcile of the calendar")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("--force", action="store_true", help="allow a sync that deletes most owned events")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("run", parents=[common], help="the daemon: sync, schedule SMS, watch files, re-sync")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", parents=[common], help="last sync, last error, next SMS, recent sends")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("test-sms", parents=[common], help="send one SMS to check credentials and number")
    p.set_defaults(func=cmd_test_sms)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config = getattr(args, "config", None)
    args.verbose = getattr(args, "verbose", False)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except InputProblems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except ReminderdError as exc:
        print(f"reminderd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line, details only with -v
        if args.verbose:
            log.exception("internal error")
        print(f"reminderd: internal error ({type(exc).__name__}); run with -v for details "
              "and please report it", file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
