"""Thin commands over the core, and the one error handler that maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .clock import Clock, system_clock
from .errors import EX_SOFTWARE, InputProblems, MissingInputs, ReminderdError
from .logs import error_lines, setup_logging
from .timeparse import get_zone

if TYPE_CHECKING:
    from .agenda import AlertsFn
    from .config import Config, Person
    from .store.leases import Leases
    from .store.protocol import StateStore

log = logging.getLogger(__name__)
SYNC_WAIT = 120.0  # seconds `sync` waits for a running daemon's sync to finish
WAITING = "waiting for the running daemon's sync to finish"


def _emit(as_json: bool, data: Callable[[], Any], text: Callable[[], str]) -> None:
    """A command's result on stdout: indented JSON (`--json`), or text for a person."""
    if as_json:
        json.dump(data(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text())


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
    from .calendar.profiles import cap_notes

    for note in cap_notes(loaded.commitments, config.calendar.rules):
        print(f"note: {note}", file=out)
    if loaded.problems:
        files = len({p.path for p in loaded.problems})
        print(
            f"{len(loaded.problems)} error{'s' if len(loaded.problems) != 1 else ''} in {files} "
            f"file{'s' if files != 1 else ''}; valid so far: {counts}",
            file=out,
        )
        return 65
    print(f"ok: {counts}", file=out)
    return 0


def cmd_agenda(args: argparse.Namespace) -> int:
    """Upcoming touches; in a team grouped by person (or one person's, `--person`), each
    person's alerts as they fire for them (their calendar's alarm cap, their SMS)."""
    from .agenda import (
        PersonAgenda,
        render_json,
        render_team_json,
        render_team_text,
        render_text,
        window,
    )
    from .app import read_with_outcomes
    from .calendar.profiles import capped

    config, loaded = _load(args)
    now = args.clock()
    whom = _people(config, args.person)
    shown = read_with_outcomes(config, loaded.commitments)
    if whom is None:
        items, after = window(capped(shown, config.calendar.rules), now, args.days)
        alerts = _planned(config)
        _emit(
            args.json,
            lambda: render_json(items, now, args.days, config.timezone, alerts),
            lambda: render_text(items, args.days, config.timezone, after, alerts),
        )
        return 0
    from .team import split, view

    names = {who.name for who in whom}
    groups = []
    for who, own in split(config, shown):
        if who.name in names:
            mine = view(config, who)
            items, after = window(capped(own, mine.calendar.rules), now, args.days)
            groups.append(PersonAgenda(who.name, items, after, _planned(mine)))

    def text() -> str:
        if args.person:  # one person: their agenda as one user sees theirs
            (one,) = groups
            return render_text(one.items, args.days, config.timezone, one.after, one.alerts)
        return render_team_text(groups, args.days, config.timezone)

    _emit(args.json, lambda: render_team_json(groups, now, args.days, config.timezone), text)
    return 0


def _planned(config: Config) -> AlertsFn:
    """A touch's alerts as they will fire under `config` (one user's, or a person's view)."""
    from .agenda import alerts_as_planned

    return alerts_as_planned(
        config.sms.quiet_hours if config.sms else None,
        get_zone(config.timezone),
        config.sms is not None,
        config.email is not None,
    )


def _people(config: Config, name: str | None) -> tuple[Person, ...] | None:
    """Whom `--person` shows: None for one user (no `people:`), else the people, every one
    or the one named. UsageError (64) for a name the config does not have."""
    if name is not None:
        from .team import person

        return (person(config, name),)
    return config.people or None


def cmd_sync(args: argparse.Namespace) -> int:
    """One reconcile (of each person's calendar, in a team). Beside a running daemon it
    waits for the daemon's sync in flight, then syncs itself: the two never reconcile a
    calendar at the same time (SQLite: the state dir's sync lock; PostgreSQL: each
    calendar's lease, which daemons on every host take too)."""
    from .app import calendars, sync_once, with_outcomes

    config, loaded = _load(args)  # a file that fails to parse stops here: nothing is deleted
    failed = False
    with _state_to_sync(config) as (db, leases):
        shown = with_outcomes(db, loaded.commitments)  # as the daemon syncs them
        for view, own, _ in calendars(config, shown, loaded.commitments):
            with _calendar_lease(leases, view):
                result, url = sync_once(
                    view,
                    db,
                    own,
                    dry_run=args.dry_run,
                    force=args.force,
                    clock=args.clock,
                )
            for error in result.errors:
                print(f"error: {error}", file=sys.stderr)
            whose = f"{view.person}: " if view.person else ""
            print(f"{whose}{result.line()}")
            if not view.calendar.url:
                print(
                    f"{whose}calendar: {url} (embedded; subscribe to it from a calendar "
                    "app on this machine)"
                )
            failed = failed or bool(result.errors)
    return 1 if failed else 0


@contextmanager
def _state_to_sync(config: Config) -> Iterator[tuple[StateStore, Leases | None]]:
    """The state, for a command that syncs beside running daemons: with SQLite under the
    state dir's sync lock (no leases); with PostgreSQL with this command's own leases,
    one per calendar as it syncs it (`_calendar_lease`), as daemons on every host take."""
    from contextlib import nullcontext

    from .app import state_db
    from .statelock import sync_lock

    held = nullcontext() if config.state else sync_lock(config.state_dir, SYNC_WAIT, WAITING)
    with held:
        db = state_db(config)
        leases = None
        try:
            if config.state:
                import os
                import socket

                from .store.leases import leases_for

                leases = leases_for(db, f"{socket.gethostname()}:{os.getpid()}:cli")
                leases.start()
            yield db, leases
        finally:
            if leases is not None:
                leases.close()
            db.close()


@contextmanager
def _calendar_lease(leases: Leases | None, view: Config) -> Iterator[None]:
    """Hold one calendar's lease while syncing it, waiting up to SYNC_WAIT for a daemon's
    sync of it to end (LockTimeout then, exit 75); nothing without leases (SQLite)."""
    if leases is None:
        yield
        return
    from .statelock import wait_to_take
    from .syncworker import calendar_lease

    name = calendar_lease(view)
    wait_to_take(lambda: leases.try_take(name), SYNC_WAIT, WAITING)
    try:
        yield
    finally:
        leases.release(name)


def cmd_outcome(args: argparse.Namespace) -> int:
    """`done`, `move`, `snooze`, `next`: the same outcome path as an SMS reply or a
    calendar edit. Beside a running daemon it holds what `sync` holds (`_state_to_sync`:
    the two never reconcile a calendar at once), then tells the daemon (SIGHUP) to lay
    it over and replan."""
    import os
    import signal

    from .app import calendars, sync_once, with_outcomes
    from .errors import OutcomeRefused
    from .outcomes.apply import Request, confirmation, decide, record, write_back_pending
    from .sources import load_sources
    from .statelock import daemon_pid

    config, loaded = _load(args)
    ident, _, index = args.id.partition("#")
    if index and not index.isdigit():
        raise OutcomeRefused(f"'{args.id}': a touch is named ID#N, N a number (0 is the first)")
    now = args.clock()
    with _state_to_sync(config) as (db, leases):
        parsed = {c.id: c for c in loaded.commitments}
        effective = {c.id: c for c in with_outcomes(db, loaded.commitments)}
        c = effective.get(ident)
        start = None
        if args.kind in ("move", "next") and c is not None:
            start = _when(args.when, c.start.tzinfo, now)
        snooze = None
        if args.kind == "snooze":
            from .timeparse import parse_duration

            try:
                snooze = parse_duration(args.duration)
            except ValueError as exc:
                raise OutcomeRefused(str(exc)) from None
        request = Request(
            ident,
            args.kind,
            "cli",
            int(index) if index else None,
            note=getattr(args, "note", None),
            start=start,
            snooze=snooze,
            purpose=" ".join(args.text) if args.kind == "next" else None,
        )
        outcome, touch = decide(request, effective, parsed, now)
        record(db, outcome)
        print(confirmation(outcome, touch))
        write_back_pending(config, db, parsed, dict(loaded.digests))  # logs what it did
        pid = daemon_pid(config.state_dir)
        fresh = load_sources(config)
        if fresh.problems:  # cannot happen after our own write; never sync on a bad read
            raise OutcomeRefused(str(fresh.problems[0]))
        shown = with_outcomes(db, fresh.commitments)
        owner = c.owner if c is not None else None
        try:
            for view, own, own_parsed in calendars(config, shown, fresh.commitments):
                if view.person is not None and view.person != owner:
                    continue  # a team: only the owner's calendar changes
                with _calendar_lease(leases, view):
                    result, _ = sync_once(view, db, own, clock=args.clock, parsed=own_parsed)
                print(f"calendar: {result.line()}")
        except ReminderdError as exc:
            print(
                f"calendar not updated now ({exc}); the outcome is recorded and the next "
                "sync applies it",
                file=sys.stderr,
            )
    if pid and pid > 0:
        os.kill(pid, signal.SIGHUP)  # the daemon replans its SMS with the outcome
        print(f"told the running daemon (PID {pid})")
    return 0


def _when(text: str, zone, now):  # type: ignore[no-untyped-def]
    """A `WHEN` as in the file (`2027-01-12 09:30`, ISO with offset) or as in a reply
    (`15:00`, `tue 15:00`, `+2d`), in the commitment's zone."""
    from .errors import InvalidValue, OutcomeRefused
    from .replies.grammar import ReplyError, resolve_when
    from .timeparse import parse_when

    try:
        return parse_when(text, zone)
    except InvalidValue:
        pass
    try:
        return resolve_when(text, now.astimezone(zone))
    except ReplyError as exc:
        raise OutcomeRefused(f"'{text}': {exc}") from None


def cmd_log(args: argparse.Namespace) -> int:
    """Read-only: the history of one commitment, or all; in a team, grouped by person
    (or one person's, `--person`)."""
    from .app import readonly_state
    from .config import find_config, load_config
    from .history import (
        gather_history,
        render_history_json,
        render_history_text,
        render_team_history_text,
    )
    from .sources import load_sources

    config = load_config(find_config(args.config))
    whom = _people(config, args.person)
    one = whom[0].name if whom and args.person else None  # `--person`: theirs only
    loaded = load_sources(config)
    db = readonly_state(config)
    try:
        items = gather_history(db, loaded.commitments, args.id, team=whom is not None, person=one)
    finally:
        if db is not None:
            db.close()
    if args.id and not items:
        from .errors import OutcomeRefused

        whose = f" of {one}" if one else ""
        raise OutcomeRefused(f"no commitment with id '{args.id}'{whose} in the files or the state")

    def text() -> str:
        if whom is None or one:
            return render_history_text(items)
        return render_team_history_text(items, [p.name for p in whom])

    _emit(args.json, lambda: render_history_json(items), text)
    return 0


def cmd_auth(args: argparse.Namespace) -> int:
    """`auth google`: the one-time OAuth2 device flow; stores the refresh token."""
    from .calendar.oauth import device_flow, store_token
    from .config import find_config, load_config

    config = load_config(find_config(args.config))
    cal = config.calendar
    if not (cal.oauth_client_id and cal.oauth_client_secret):
        print(
            "reminderd: set calendar.oauth_client_id and calendar.oauth_client_secret_file (or "
            "_env, _credential) first: the OAuth client of your Google Cloud project",
            file=sys.stderr,
        )
        return 78
    device_url = args.device_url or cal.oauth_token_url.rsplit("/", 1)[0] + "/device/code"
    token = device_flow(
        cal.oauth_client_id,
        cal.oauth_client_secret.resolve(),
        cal.oauth_token_url,
        device_url,
        lambda line: print(line, flush=True),
    )
    path = config.state_dir / "google-refresh-token"
    store_token(path, token)
    print(f"stored the refresh token in {path} (readable by its owner only)")
    print(f"in the config: calendar.oauth_refresh_token_file: {path}")
    return 0


def cmd_test_sms(args: argparse.Namespace) -> int:
    """One SMS through the outbox's claim/send/record path, so a running daemon never
    sends it too and a crash mid-send is looked up like any other."""
    import uuid

    from .app import state_db
    from .config import find_config, load_config
    from .errors import SmsError
    from .phone import mask
    from .sms.factory import make_dispatcher, make_sender

    config = load_config(find_config(args.config))
    if config.sms is None:
        print("reminderd: no sms section in the config: SMS is off", file=sys.stderr)
        return 78
    if config.people or args.person:  # a team: to one person's phone
        from .errors import UsageError
        from .team import person, view

        if not args.person:
            raise UsageError("test-sms: this config is a team's; say whose phone: --person NAME")
        config = view(config, person(config, args.person))
    to = config.sms.to if config.sms is not None else None
    if not to:
        print("reminderd: sms.to is not set", file=sys.stderr)
        return 78
    now = args.clock()
    body = (
        f"reminderd test SMS, {now.astimezone(get_zone(config.timezone)).strftime('%H:%M')}: "
        "your follow-up backups reach this phone."
    )
    sender = make_sender(config)  # secrets first: a bad one stops here, before any state is touched
    db = state_db(config)
    dispatcher = make_dispatcher(config, db, sender, clock=args.clock)
    try:
        # one row per call
        key = f"test@{now.isoformat(timespec='microseconds')}@{uuid.uuid4().hex[:8]}"
        outcome = dispatcher.send_now(key, "test", body)
    finally:
        dispatcher.close()
        db.close()
    if outcome == "taken":  # a running daemon claimed it first: it sends it
        print(f"the running daemon sends the test SMS to {mask(to)}")
        return 0
    if isinstance(outcome, SmsError):
        print(f"reminderd: test SMS to {mask(to)} failed: {outcome}", file=sys.stderr)
        return 1
    if outcome == "ambiguous":
        print(
            f"reminderd: test SMS to {mask(to)}: no answer from the provider; it may still "
            "arrive (the daemon looks it up before any repeat)",
            file=sys.stderr,
        )
        return 1
    print(f"sent a test SMS to {mask(to)} via {dispatcher.sender.name} ({dispatcher.last_sid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Read-only: never creates the state dir or the database. A PostgreSQL state that
    cannot be reached is one line, not a failure: the rest comes from the config."""
    from dataclasses import replace

    from .app import readonly_state, state_where
    from .config import find_config, load_config
    from .errors import StateError
    from .phone import mask
    from .status import Status, gather, render_json, render_text

    config = load_config(find_config(args.config))
    whom = _people(config, args.person) or ()

    def read(db: StateStore | None, problem: str | None = None) -> Status:
        return gather(
            config.state_dir,
            db,
            get_zone(config.timezone),
            "off" if config.sms is None else config.sms.provider,
            mask(config.sms.to) if config.sms and config.sms.to and not whom else None,
            config.sms.reply_mode if config.sms else "off",
            _email_shown(config),
            people=whom,
            daemons=bool(config.state or whom),  # where several daemons may share it
            state_error=problem,
        )

    db = None
    try:
        db = readonly_state(config)
        found = read(db)
    except StateError as exc:
        if not config.state:  # a damaged SQLite file: exit 74, its message says what to do
            raise
        found = read(None, str(exc))
    finally:
        if db is not None:
            db.close()
    if config.state:  # the state is a database, not the state dir's file
        found = replace(found, state_dir=state_where(config))
    _emit(args.json, lambda: render_json(found), lambda: render_text(found))
    return 0


def _email_shown(config: Config) -> str:
    """`smtp.example.com:587 (starttls) to a***@example.com`: never the password. A
    team's email goes to each person's address (shown under them)."""
    from .email import mask_address

    e = config.email
    if e is None:
        return "off"
    server = f"{e.host}:{e.port} ({e.security})"
    return server if config.people or not e.to else f"{server} to {mask_address(e.to)}"


def cmd_init(args: argparse.Namespace) -> int:
    from .starter import default_dir, write_starter

    directory = Path(args.dir) if args.dir else default_dir()
    written = write_starter(directory, args.clock(), force=args.force)
    print(f"wrote {written.config} and {written.commitments}")
    print(f"next: reminderd --config {written.config} run")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import find_config
    from .service import Daemon

    return Daemon(find_config(args.config), clock=args.clock).run()


def _person_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--person",
        metavar="NAME",
        help="a team's one person (name or email); without it, everyone, grouped by person",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (else $REMINDERD_CONFIG, $XDG_CONFIG_HOME/reminderd/config.yaml, "
        "/etc/reminderd/config.yaml)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="more detail in logs and errors",
    )
    parser = argparse.ArgumentParser(
        prog="reminderd",
        parents=[common],
        description="Never miss a follow-up you promised: commitments from YAML/CSV to calendar "
        "alarms and SMS backups.",
    )
    parser.add_argument("--version", action="version", version=f"reminderd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "validate", parents=[common], help="check config and commitments; list every error"
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("agenda", parents=[common], help="upcoming follow-ups with every alert time")
    p.add_argument(
        "--days", type=int, default=7, metavar="N", help="how many days ahead (default 7)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (schema in README)")
    _person_option(p)
    p.set_defaults(func=cmd_agenda)
    p = sub.add_parser("sync", parents=[common], help="one reconcile of the calendar")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument(
        "--force", action="store_true", help="allow a sync that deletes most owned events"
    )
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser(
        "run", parents=[common], help="the daemon: sync, schedule SMS, watch files, re-sync"
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "status", parents=[common], help="last sync, last error, next SMS, recent sends"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _person_option(p)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "test-sms", parents=[common], help="send one SMS to check credentials and number"
    )
    p.add_argument("--person", metavar="NAME", help="a team's: to this person's phone")
    p.set_defaults(func=cmd_test_sms)
    p = sub.add_parser(
        "init",
        parents=[common],
        help="write a starter config and commitments file, dated from today",
    )
    p.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        help="where to write them (default: $XDG_CONFIG_HOME/reminderd/)",
    )
    p.add_argument("--force", action="store_true", help="replace files that already exist")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("done", parents=[common], help="mark a commitment done: no more alerts")
    p.add_argument("id", metavar="ID[#N]")
    p.add_argument("--note", help="what came of it, kept in the log")
    p.set_defaults(func=cmd_outcome, kind="done")
    p = sub.add_parser("move", parents=[common], help="move one touch (default: the next one)")
    p.add_argument("id", metavar="ID[#N]")
    p.add_argument("when", metavar="WHEN", help="'2027-01-12 09:30', 'tue 15:00', '15:00', '+2d'")
    p.set_defaults(func=cmd_outcome, kind="move")
    p = sub.add_parser("snooze", parents=[common], help="one extra SMS reminder after DURATION")
    p.add_argument("id", metavar="ID[#N]")
    p.add_argument("duration", metavar="DURATION", help="e.g. 30m, 2h")
    p.set_defaults(func=cmd_outcome, kind="snooze")
    p = sub.add_parser("next", parents=[common], help="this touch is done; a new one at WHEN")
    p.add_argument("id", metavar="ID[#N]")
    p.add_argument("when", metavar="WHEN")
    p.add_argument("text", metavar="TEXT", nargs="+", help="the next step's purpose")
    p.set_defaults(func=cmd_outcome, kind="next")
    p = sub.add_parser(
        "auth", parents=[common], help="one-time OAuth2 sign-in for a calendar provider"
    )
    p.add_argument("provider", choices=["google"])
    p.add_argument("--device-url", help=argparse.SUPPRESS)  # tests: a local device endpoint
    p.set_defaults(func=cmd_auth)
    p = sub.add_parser(
        "log", parents=[common], help="history: touches, alerts sent, outcomes and their source"
    )
    p.add_argument("id", metavar="ID", nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _person_option(p)
    p.set_defaults(func=cmd_log)
    return parser


def main(argv: list[str] | None = None, clock: Clock = system_clock) -> int:
    """The CLI; `clock` is where every command reads the time (tests pass a fixed one)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.clock = clock
    args.config = getattr(args, "config", None)
    args.verbose = getattr(args, "verbose", False)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except InputProblems as exc:
        for problem in exc.problems:
            print(error_lines(str(problem)), file=sys.stderr)
        return exc.exit_code
    except MissingInputs as exc:  # one line per file, each with the prefix
        for missing in exc.missing:
            print(error_lines(f"reminderd: {missing}"), file=sys.stderr)
        return exc.exit_code
    except ReminderdError as exc:
        print(error_lines(f"reminderd: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line, details only with -v
        if args.verbose:
            log.exception("internal error")
        print(
            error_lines(
                f"reminderd: internal error ({type(exc).__name__}); run with -v for details "
                "and please report it"
            ),
            file=sys.stderr,
        )
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
