"""The config file: one declarative spec drives parsing, defaults and messages.

Every option is a row of `SPEC` (section, name, parser, default, help). The
same rows give the "did you mean" for unknown keys and the messages that
name the option, the file and the line. Secrets are never read here: an
option of kind secret becomes a `SecretRef` resolved only when used.
"""

from __future__ import annotations

import codecs
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .didyoumean import did_you_mean
from .errors import ConfigError, InvalidValue, MissingInputError, Problem, SecretError
from .model import CHANNELS, Status
from .netaddr import is_loopback
from .phone import normalise, valid_region
from .sms.text import check_template
from .sources import in_line_order
from .sources.csvfile import CSV_COLUMNS
from .sources.entries import EMAIL_ADDRESS, ENUM_KEYS, Defaults, FileContext, parse_bool
from .sources.files import read_text
from .sources.tree import Map, Node, Scalar, Seq, kind_name
from .sources.yamlfile import parse_yaml

if TYPE_CHECKING:
    from .calendar.profiles import Profile
from .timeparse import get_zone, parse_clock, parse_duration, system_zone_name

SECRET_WAYS = ("env", "file", "command", "credential")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives; `resolve()` reads it, and nothing ever prints it."""

    option: str  # e.g. "sms.auth_token", for messages
    way: str  # env | file | command | credential
    where: str

    def resolve(self) -> str:
        if self.way == "env":
            value = os.environ.get(self.where)
            if not value:
                raise SecretError(f"{self.option}: environment variable {self.where} is not set")
            return value.strip()
        if self.way == "file" or self.way == "credential":
            base = os.environ.get("CREDENTIALS_DIRECTORY") if self.way == "credential" else None
            if self.way == "credential" and not base:
                raise SecretError(
                    f"{self.option}: no $CREDENTIALS_DIRECTORY (set LoadCredential= "
                    f"in the unit, or use {self.option.split('.')[-1]}_file)"
                )
            path = Path(base, self.where) if base else Path(self.where)
            try:  # like every file we read: never a FIFO (it would block) or a device (endless)
                text, problem = read_text(str(path), str(path))
            except MissingInputError as exc:
                raise SecretError(f"{self.option}: {exc}") from None
            if problem is not None or text is None:
                raise SecretError(f"{self.option}: {problem}") from None
            return text.strip()
        import subprocess  # only here: loading a config never needs it

        try:
            argv = command_words(self.where)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except InvalidValue as exc:
            raise SecretError(f"{self.option}_command: {exc}") from None
        except FileNotFoundError:
            raise SecretError(
                f"{self.option}_command: command '{argv[0]}' not found "
                "(give its full path, or check PATH)"
            ) from None
        except PermissionError:
            raise SecretError(f"{self.option}_command: '{argv[0]}' is not executable") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(
                f"{self.option}: command failed to run ({type(exc).__name__})"
            ) from None
        if done.returncode != 0 or not done.stdout.strip():
            raise SecretError(f"{self.option}: command exited {done.returncode} without a value")
        return done.stdout.strip()

    def __repr__(self) -> str:  # the reference, never the value
        return f"SecretRef({self.option} via {self.way})"


def command_words(command: str) -> list[str]:
    """A `*_command` split as a shell would (no shell runs it); InvalidValue if it cannot be."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise InvalidValue("the command has an unclosed quote") from None
    if not words or not words[0]:
        raise InvalidValue("the command is empty")
    return words


# -- parsers for option values: text in, value out, InvalidValue on error


def _str(text: str) -> str:
    return text


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise InvalidValue(f"'{text}' must be a whole number") from None
        if not low <= value <= high:
            raise InvalidValue(f"{value} must be between {low} and {high}")
        return value

    return parse


def _zone(text: str) -> str:
    get_zone(text)
    return text


def _region(text: str) -> str:
    if not valid_region(text):
        raise InvalidValue(f"'{text}' is not a region code like GR, US or DE")
    return text.upper()


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise InvalidValue(f"'{text}' must start with http:// or https://")
    if "@" in text.split("/", 3)[2]:
        raise InvalidValue(
            "put no user name or password in the URL; use calendar.username and "
            "calendar.password_env (or _file, _command, _credential)"
        )
    return text


def _pg_url(text: str) -> str:
    """`postgresql://user@host:5432/db`: the password is never in it (`state_password_*`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise InvalidValue(f"'{text}' must look like postgresql://user@host:5432/database")
    if parts.password is not None:
        raise InvalidValue(
            "put no password in the URL; use state_password_env (or _file, _command, _credential)"
        )
    return text


def _listen(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValue(f"'{text}' must be HOST:PORT, like 127.0.0.1:5232")
    return text


def _window(text: str) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise InvalidValue(f"'{text}' must be a window like 21:30-07:30")
    return parse_clock(start, what="quiet_hours start"), parse_clock(end, what="quiet_hours end")


def _encoding(text: str) -> str:
    try:
        codecs.lookup(text)
        b"a".decode(text)
    except (LookupError, UnicodeError, ValueError):
        raise InvalidValue(
            f"unknown or unusable encoding '{text}' (e.g. utf-8, cp1252, latin-1)"
        ) from None
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise InvalidValue(
                f"'{text}' must be one of {', '.join(choices)}{did_you_mean(text, choices)}"
            )
        return text

    return parse


SECRET = object()  # marks a secret option: read through *_env / *_file / *_command / *_credential


@dataclass(frozen=True, slots=True)
class Option:
    section: str  # "" for the top level
    name: str
    parse: Callable[[str], Any] | object
    default: Any
    help: str


SPEC: tuple[Option, ...] = (
    Option("", "timezone", _zone, None, "default zone for commitments (else the system's)"),
    Option("", "phone_region", _region, None, "region for phone numbers written without +country"),
    Option("", "state_dir", _str, None, "state database and embedded calendar storage"),
    Option(
        "",
        "state",
        _pg_url,
        None,
        "a PostgreSQL URL for the state instead of SQLite in state_dir (daemons may share it)",
    ),
    Option("", "state_password", SECRET, None, "the state database's password"),
    Option(
        "calendar",
        "url",
        _url,
        None,
        "CalDAV server, principal, home or calendar URL; omit for the embedded server",
    ),
    Option("calendar", "username", _str, None, "CalDAV user name"),
    Option("calendar", "password", SECRET, None, "CalDAV password"),
    Option("calendar", "name", _str, "Follow-ups", "calendar display name; created if missing"),
    Option("calendar", "verify_tls", parse_bool, True, "check the server's TLS certificate"),
    Option("calendar", "listen", _listen, "127.0.0.1:5232", "embedded server address"),
    Option(
        "calendar", "sync_interval", parse_duration, timedelta(minutes=10), "daemon re-sync period"
    ),
    Option("calendar", "connections", _int(1, 16), 4, "parallel requests during a sync"),
    Option(
        "calendar",
        "profile",
        _choice("generic", "google", "icloud", "fastmail", "nextcloud"),
        None,
        "the provider's rules (alarm cap, conditional headers, UIDs, rate); default: from the URL",
    ),
    Option("calendar", "oauth_client_id", _str, None, "OAuth2 client id (Google)"),
    Option("calendar", "oauth_client_secret", SECRET, None, "OAuth2 client secret (Google)"),
    Option(
        "calendar",
        "oauth_refresh_token",
        SECRET,
        None,
        "OAuth2 refresh token (Google; `reminderd auth google` gets one)",
    ),
    Option(
        "calendar",
        "oauth_token_url",
        _url,
        "https://oauth2.googleapis.com/token",
        "OAuth2 token endpoint",
    ),
    Option(
        "calendar",
        "server_edits",
        _choice("adopt", "repair"),
        "adopt",
        "adopt: a moved event is a move, a deleted one a skip; repair: the file always wins",
    ),
    Option(
        "sms",
        "provider",
        _choice("twilio", "log"),
        "twilio",
        "twilio, or log (write SMS to the log only)",
    ),
    Option("sms", "account_sid", SECRET, ("env", "TWILIO_ACCOUNT_SID"), "Twilio account SID"),
    Option("sms", "auth_token", SECRET, ("env", "TWILIO_AUTH_TOKEN"), "Twilio auth token"),
    Option("sms", "api_key_sid", _str, None, "Twilio API key SID (instead of the auth token)"),
    Option("sms", "api_key_secret", SECRET, None, "Twilio API key secret"),
    Option("sms", "from", _str, None, "sender number (E.164)"),
    Option(
        "sms", "messaging_service_sid", _str, None, "Twilio messaging service (instead of from)"
    ),
    Option("sms", "to", _str, None, "your mobile number"),
    Option(
        "sms",
        "api_url",
        _url,
        "https://api.twilio.com",
        "API base URL (Twilio-compatible providers)",
    ),
    Option(
        "sms", "quiet_hours", _window, None, "no SMS in this window, except for items due in it"
    ),
    Option(
        "sms",
        "late_grace",
        parse_duration,
        timedelta(minutes=30),
        "a missed backup is still sent if at most this late",
    ),
    Option("sms", "digest", lambda t: parse_clock(t, what="digest"), None, "daily agenda SMS time"),
    Option("sms", "max_segments", _int(1, 10), 2, "longest SMS, in segments"),
    Option(
        "sms",
        "template",
        lambda t: check_template(t),
        None,
        "message template ({when} {title} {who} {phone} {why} {bring})",
    ),
    Option("sms", "rate_per_minute", _int(1, 6000), 60, "most sends per minute"),
    Option("sms", "timeout", parse_duration, timedelta(seconds=15), "HTTP timeout per request"),
    Option(
        "sms",
        "replies",
        _choice("poll", "webhook", "off"),
        None,
        "SMS replies as commands: poll (default with twilio), webhook, or off",
    ),
    Option("sms", "reply_poll", parse_duration, timedelta(seconds=30), "how often to poll replies"),
    Option("sms", "webhook_listen", _listen, None, "the reply webhook's address (host:port)"),
    Option("sms", "webhook_url", _url, None, "the public URL Twilio posts replies to"),
    Option("email", "host", _str, None, "SMTP server"),
    Option("email", "port", _int(1, 65535), None, "SMTP port (default: 587, tls 465, none 25)"),
    Option(
        "email",
        "security",
        _choice("starttls", "tls", "none"),
        "starttls",
        "starttls, tls, or none (loopback only)",
    ),
    Option("email", "username", _str, None, "SMTP user name"),
    Option("email", "password", SECRET, None, "SMTP password"),
    Option("email", "from", _str, None, "sender address"),
    Option("email", "to", _str, None, "where email alerts go"),
    Option("email", "digest", lambda t: parse_clock(t, what="digest"), None, "daily agenda email"),
    Option(
        "email",
        "late_grace",
        parse_duration,
        timedelta(minutes=30),
        "a missed email alert is still sent if at most this late",
    ),
    Option("email", "timeout", parse_duration, timedelta(seconds=30), "SMTP timeout"),
    Option("outcomes", "write_back", parse_bool, True, "write outcomes into YAML files"),
)
SECTIONS = {"calendar", "sms", "email", "outcomes"}
TOP_KEYS = (
    "state",
    *(f"state_password_{way}" for way in SECRET_WAYS),
    "timezone",
    "phone_region",
    "state_dir",
    "commitments",
    "people",
    "defaults",
    "calendar",
    "sms",
    "email",
    "outcomes",
)
SOURCE_KEYS = ("path", "columns", "date_format", "encoding", "delimiter", "timezone", "values")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One commitments file named by the config."""

    path: Path
    shown: str  # the path as the user wrote it, for messages
    kind: str  # yaml | csv
    columns: dict[str, str] | None = None
    date_format: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    timezone: str | None = None
    values: dict[str, dict[str, str]] | None = None  # field -> {their word, casefolded: ours}


@dataclass(frozen=True, slots=True)
class CalendarConfig:
    """The `calendar:` section (SPEC rows "calendar.*"), typed."""

    url: str | None  # None: the embedded server
    username: str | None
    password: SecretRef | None
    name: str
    verify_tls: bool
    listen: str
    sync_interval: timedelta
    connections: int
    server_edits: str  # adopt | repair
    profile: str | None  # None: from the URL (`calendar.profiles.detect`)
    oauth_client_id: str | None
    oauth_client_secret: SecretRef | None
    oauth_refresh_token: SecretRef | None
    oauth_token_url: str

    @property
    def rules(self) -> Profile:
        """The provider's rules this calendar is written under."""
        from .calendar.profiles import PROFILES, detect

        return PROFILES[self.profile or detect(self.url)]


@dataclass(frozen=True, slots=True)
class SmsConfig:
    """The `sms:` section (SPEC rows "sms.*"), typed; the one SMS settings type."""

    provider: str
    account_sid: SecretRef | None
    auth_token: SecretRef | None
    api_key_sid: str | None
    api_key_secret: SecretRef | None
    sender: str | None  # `from:` in the file
    messaging_service_sid: str | None
    to: str | None
    api_url: str
    quiet_hours: tuple[time, time] | None
    late_grace: timedelta
    digest: time | None
    max_segments: int
    template: str | None
    rate_per_minute: int
    timeout: timedelta
    replies: str | None  # poll | webhook | off; None: poll with twilio, else off
    reply_poll: timedelta
    webhook_listen: str | None
    webhook_url: str | None

    @property
    def reply_mode(self) -> str:
        """`sms.replies` as it applies: replies need a provider that receives them."""
        if self.provider != "twilio":
            return "off"
        return self.replies or "poll"


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """The `email:` section (SPEC "Email alerts"), typed."""

    host: str
    port: int
    security: str  # starttls | tls | none
    username: str | None
    password: SecretRef | None
    sender: str  # `from:` in the file
    to: str
    digest: time | None
    late_grace: timedelta
    timeout: timedelta


@dataclass(frozen=True, slots=True)
class OutcomesConfig:
    """The `outcomes:` section."""

    write_back: bool  # write outcomes into YAML commitment files


@dataclass(frozen=True, slots=True)
class Person:
    """One rep of a team (`people:`): whose follow-ups, where their alerts and events go."""

    name: str
    email: str | None  # matched as an owner; where their email alerts go
    phone: str | None  # E.164; where their SMS go
    calendar: CalendarConfig  # their own (no url: their own calendar on the embedded server)
    sources: tuple[SourceSpec, ...]  # their own commitment files
    line: int  # where the config names them, for messages

    @property
    def address(self) -> str | None:
        """The bare address of `email` (`Ana <ana@x>` -> `ana@x`): what owners match."""
        if not self.email:
            return None
        from email.utils import parseaddr  # here: it loads socket, and the core loads no I/O

        return parseaddr(self.email)[1] or self.email


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    timezone: str
    phone_region: str | None
    sources: tuple[SourceSpec, ...]
    defaults: Defaults
    state_dir: Path
    calendar: CalendarConfig
    sms: SmsConfig | None  # None: SMS off
    email: EmailConfig | None = None  # None: email off
    state: str | None = None  # a PostgreSQL URL; None: SQLite under state_dir
    state_password: SecretRef | None = None
    outcomes: OutcomesConfig = OutcomesConfig(write_back=True)
    people: tuple[Person, ...] = ()  # a team (`people:`); empty: one user
    person: str | None = None  # set in one person's view of a team config (`team.view`)

    @property
    def all_sources(self) -> tuple[SourceSpec, ...]:
        """Every file read: the shared ones, then each person's."""
        return self.sources + tuple(s for p in self.people for s in p.sources)

    @property
    def embedded_calendar(self) -> CalendarConfig | None:
        """The calendar whose settings the embedded server runs under (its address and
        credentials): the first without a url, one user's or a person's; None when every
        calendar is a CalDAV account's."""
        calendars = [p.calendar for p in self.people] if self.people else [self.calendar]
        return next((c for c in calendars if not c.url), None)

    def owner_of(self, spec: SourceSpec) -> str | None:
        """The person a file belongs to; None for a shared one (routed by `owner`)."""
        return next((p.name for p in self.people if spec in p.sources), None)


def find_config(explicit: str | None) -> Path:
    """The config path by SPEC's lookup order; MissingInputError if none exists."""
    if explicit:
        candidates = [("--config", Path(explicit))]
    elif os.environ.get("REMINDERD_CONFIG"):
        candidates = [("$REMINDERD_CONFIG", Path(os.environ["REMINDERD_CONFIG"]))]
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        candidates = [
            ("", Path(xdg, "reminderd", "config.yaml")),
            ("", Path("/etc/reminderd/config.yaml")),
        ]
    for _, path in candidates:
        if path.exists():  # not only is_file(): read_text says what else it is
            return path
    if candidates[0][0]:
        raise MissingInputError(
            f"{candidates[0][1]}: config file not found (from {candidates[0][0]})"
        )
    looked = ", ".join(str(p) for _, p in candidates)
    raise MissingInputError(
        f"no config file found (looked in {looked}); pass --config PATH, "
        "e.g. --config config.example.yaml"
    )


def load_config(path: Path) -> Config:
    """Parse and check the config; ConfigError lists every problem (exit 78)."""
    shown = str(path)
    text, problem = read_text(str(path), shown)
    ctx = FileContext(shown, "UTC")
    if problem is not None:
        raise ConfigError([problem])
    assert text is not None
    root, problem = parse_yaml(text, shown)
    if problem is not None:
        raise ConfigError([problem])
    if not isinstance(root, Map):
        raise ConfigError(
            [Problem(shown, getattr(root, "line", 1), "the config must be a mapping of options")]
        )
    ctx.check_keys(root, TOP_KEYS, "the config")
    base_dir = path.parent
    values: dict[str, dict[str, Any]] = {"": _section(root, "", ctx, base_dir)}
    present: set[str] = set()
    for section in sorted(SECTIONS):
        node = root.get(section)
        if node is None or (isinstance(node, Scalar) and node.is_null):
            values[section] = _section(Map({}, root.line), section, ctx, base_dir)
            continue
        present.add(section)
        if not isinstance(node, Map):
            ctx.problem(node.line, f"'{section}' must be a mapping, not {kind_name(node)}")
            node = Map({}, node.line)
        values[section] = _section(node, section, ctx, base_dir)
    top = values[""]
    people_node = root.get("people")
    team = people_node is not None and not (isinstance(people_node, Scalar) and people_node.is_null)
    zone = top["timezone"] or system_zone_name()
    ctx.zone_name = zone
    ctx.phone_region = top["phone_region"]
    defaults = ctx.defaults_from(root.get("defaults"), Defaults())
    commitments_node = root.get("commitments")
    sources = (
        []
        if team and commitments_node is None
        else _sources(commitments_node, base_dir, ctx, root.line)
    )
    sms_values = values["sms"] if "sms" in present else None
    if sms_values is not None:
        _check_sms(sms_values, root.get("sms"), root.items["sms"][0], ctx, team)  # type: ignore[arg-type]
    email_values = values["email"] if "email" in present else None
    if email_values is not None:
        _check_email(email_values, root.get("email"), root.items["email"][0], ctx, team)  # type: ignore[arg-type]
    calendar = values["calendar"]
    cal_node = root.get("calendar")
    _check_oauth(calendar, cal_node, root.items.get("calendar", (root.line, None))[0], ctx)
    if not calendar["url"] and isinstance(cal_node, Map) and "listen" in cal_node.items:
        host = calendar["listen"].rpartition(":")[0]
        if not is_loopback(host) and not (calendar["username"] and calendar["password"]):
            ctx.problem(
                cal_node.items["listen"][0],
                f"calendar.listen {calendar['listen']} is beyond "
                "loopback: the embedded server then requires authentication; set "
                "calendar.username and calendar.password_env (or _file, _credential)",
            )
    calendar_config = CalendarConfig(**_fields("calendar", calendar))
    people: tuple[Person, ...] = ()
    if team:
        assert people_node is not None
        people = _people(people_node, calendar_config, cal_node, base_dir, ctx)
        if not sources and not any(p.sources for p in people):
            ctx.problem(
                people_node.line, "no commitments: give 'commitments:' files, shared or per person"
            )
        _check_team_channels(people, sms_values, email_values, ctx)
    if ctx.problems:
        raise ConfigError(in_line_order(ctx.problems, [shown]))
    return Config(
        path=path,
        timezone=zone,
        phone_region=top["phone_region"],
        sources=tuple(sources),
        defaults=defaults,
        state_dir=_state_dir(top["state_dir"], base_dir),
        state=top["state"],
        state_password=top["state_password"],
        calendar=calendar_config,
        sms=SmsConfig(**_fields("sms", sms_values)) if sms_values is not None else None,
        email=EmailConfig(**_fields("email", email_values)) if email_values is not None else None,
        outcomes=OutcomesConfig(**values["outcomes"]),
        people=people,
    )


PERSON_KEYS = ("name", "email", "phone", "calendar", "commitments")


def _check_team_channels(
    people: tuple[Person, ...],
    sms: dict[str, Any] | None,
    email: dict[str, Any] | None,
    ctx: FileContext,
) -> None:
    """A team's SMS go to each person's phone, its email to each person's address."""
    for person in people:
        if sms is not None and not person.phone:
            ctx.problem(person.line, f"{person.name}: no 'phone' (SMS backups go to it)")
        if email is not None and not person.email:
            ctx.problem(person.line, f"{person.name}: no 'email' (email alerts go to it)")


def _people(
    node: Node, shared: CalendarConfig, cal_node: Node | None, base: Path, ctx: FileContext
) -> tuple[Person, ...]:
    """`people:`: each rep's name, email, phone, calendar and files; names, emails and
    calendars unique, so every follow-up has exactly one place to go."""
    from email.utils import parseaddr

    if not isinstance(node, Seq):
        ctx.problem(node.line, "'people' must be a list of people (name, email, phone, ...)")
        return ()
    people: list[Person] = []
    names: dict[str, int] = {}
    emails: dict[str, int] = {}
    calendars: dict[tuple[str | None, str | None, str], int] = {}
    for item in node.items:
        if not isinstance(item, Map):
            ctx.problem(item.line, "each person is a mapping with at least 'name'")
            continue
        ctx.check_keys(item, PERSON_KEYS, "a person")
        name = ctx.text(item.get("name"), "name")
        if not name:
            ctx.problem(item.line, "this person has no 'name'")
            continue
        folded = name.casefold()
        if folded in names:
            ctx.problem(item.line, f"person '{name}' is also listed at line {names[folded]}")
            continue
        names[folded] = item.line
        email = ctx.text(item.get("email"), "email")
        if email:
            address = parseaddr(email)[1]
            if not EMAIL_ADDRESS.match(address):
                ctx.problem(item.items["email"][0], f"{name}: '{email}' is not an e-mail address")
            elif address.casefold() in emails:
                ctx.problem(
                    item.line,
                    f"{name}: email {address} is also given at line {emails[address.casefold()]}",
                )
            else:
                emails[address.casefold()] = item.line
        phone = ctx.text(item.get("phone"), "phone")
        if phone:
            try:
                phone = normalise(phone, ctx.phone_region)
            except InvalidValue as exc:
                ctx.problem(item.items["phone"][0], f"{name}: phone: {exc}")
                phone = None
        calendar = _person_calendar(item.get("calendar"), shared, name, base, ctx)
        where = (calendar.url, calendar.username, calendar.name)  # found or made by name
        if where in calendars:
            ctx.problem(
                item.line,
                f"{name}: the same calendar as the person at line "
                f"{calendars[where]}; give each person their own",
            )
        calendars[where] = item.line
        files = item.get("commitments")
        sources = (
            tuple(_sources(files, base, ctx, item.line))
            if files is not None and not (isinstance(files, Scalar) and files.is_null)
            else ()
        )
        people.append(Person(name, email, phone, calendar, sources, item.line))
    return tuple(people)


def _person_calendar(
    node: Node | None, shared: CalendarConfig, name: str, base: Path, ctx: FileContext
) -> CalendarConfig:
    """A person's `calendar:` over the shared one; without a url, a calendar of their own on
    the embedded server (named after them unless they name it)."""
    own_name = f"{shared.name} ({name})"
    if node is None or (isinstance(node, Scalar) and node.is_null):
        return replace(
            shared,
            url=None,
            name=own_name,
            username=shared.username if shared.url is None else None,
            password=shared.password if shared.url is None else None,
        )
    if not isinstance(node, Map):
        ctx.problem(node.line, f"{name}: 'calendar' must be a mapping (url, username, ...)")
        return replace(shared, url=None, name=own_name)
    given = _section(node, "calendar", ctx, base)
    named = set()
    for key in node.items:
        way = next((w for w in SECRET_WAYS if key.endswith(f"_{w}")), None)
        named.add(key[: -len(way) - 1] if way else key)
    changes = {k: v for k, v in given.items() if k in named}
    if not given["url"]:
        changes.setdefault("name", own_name)
        changes["url"] = None
        changes["listen"] = shared.listen  # one embedded server serves everyone
    else:
        _check_oauth(given, node, node.line, ctx)
    return replace(shared, **changes)


FIELD_NAMES = {("sms", "from"): "sender", ("email", "from"): "sender"}  # Python keywords


def _fields(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's parsed values keyed by the typed object's field names."""
    return {FIELD_NAMES.get((section, name), name): value for name, value in values.items()}


def sms_config(**overrides: Any) -> SmsConfig:
    """SPEC's defaults for `sms:`, with `overrides` (for tools and tests that have no file)."""
    values = _section(Map({}, 1), "sms", FileContext("<defaults>", "UTC"), Path("."))
    return replace(SmsConfig(**_fields("sms", values)), **overrides)


def _section(node: Map, section: str, ctx: FileContext, base: Path) -> dict[str, Any]:
    """Typed values of one section; unknown keys and bad values become problems.

    A relative `*_file` is resolved against `base`, the config's folder, here:
    the daemon's working directory (`/` under systemd) must not decide it.
    """
    options = [o for o in SPEC if o.section == section]
    allowed: list[str] = []
    for o in options:
        allowed += [f"{o.name}_{way}" for way in SECRET_WAYS] if o.parse is SECRET else [o.name]
    if section:
        ctx.check_keys(node, tuple(allowed), f"'{section}'")
    where = f"{section}." if section else ""
    values: dict[str, Any] = {}
    for o in options:
        if o.parse is SECRET:
            given = [
                (way, node.items[f"{o.name}_{way}"])
                for way in SECRET_WAYS
                if f"{o.name}_{way}" in node.items
            ]
            if len(given) > 1:
                ctx.problem(
                    given[1][1][0],
                    f"{where}{o.name}: give only one of "
                    + ", ".join(f"{o.name}_{w}" for w, _ in given),
                )
            if given:
                way, (_, secret_node) = given[0]
                key = f"{where}{o.name}_{way}"
                text = ctx.text(secret_node, key)
                if text and way == "file":  # like every path in the config: relative to its folder
                    text = os.path.abspath(base / os.path.expanduser(text))
                elif (
                    text
                    and way == "command"
                    and ctx.parsed(secret_node, key, command_words) is None
                ):
                    text = None  # the problem is recorded; the option stays unset
                values[o.name] = SecretRef(f"{where}{o.name}", way, text) if text else None
            else:
                values[o.name] = SecretRef(f"{where}{o.name}", *o.default) if o.default else None
            continue
        value_node = node.get(o.name)
        parser: Callable[[str], Any] = o.parse  # type: ignore[assignment]
        value = ctx.parsed(value_node, f"{where}{o.name}", parser)
        values[o.name] = o.default if value is None else value
    return values


def _sources(node: Node | None, base: Path, ctx: FileContext, line: int) -> list[SourceSpec]:
    if node is None or (isinstance(node, Scalar) and node.is_null):
        ctx.problem(line, "no 'commitments:' list of files in the config")
        return []
    items: list[Node] = node.items if isinstance(node, Seq) else [node]
    specs: list[SourceSpec] = []
    for item in items:
        if isinstance(item, Scalar):
            entry: dict[str, Any] = {"path": ctx.text(item, "commitments")}
        elif isinstance(item, Map):
            ctx.check_keys(item, SOURCE_KEYS, "a commitments entry")
            entry = {
                k: ctx.text(item.get(k), k)
                for k in SOURCE_KEYS
                if k not in ("columns", "delimiter", "values")
            }
            entry["columns"] = _columns(item.get("columns"), ctx)
            entry["values"] = _values(item.get("values"), ctx)
            if entry["timezone"]:
                ctx.parsed(item.get("timezone"), "timezone", _zone)
            if entry["encoding"]:
                ctx.parsed(item.get("encoding"), "encoding", _encoding)
            delimiter = item.get("delimiter")
            if delimiter is not None:  # read unstripped: a tab or a space is a fine delimiter
                if (
                    not isinstance(delimiter, Scalar)
                    or len(delimiter.text) != 1
                    or delimiter.text in '"\r\n'
                ):
                    ctx.problem(
                        delimiter.line, "delimiter must be one character, like ';' or a tab"
                    )
                else:
                    entry["delimiter"] = delimiter.text
        else:
            ctx.problem(item.line, "each commitments entry is a path or a mapping with 'path:'")
            continue
        if not entry.get("path"):
            ctx.problem(item.line, "commitments entry has no path")
            continue
        raw = str(entry["path"])
        full = Path(os.path.expanduser(raw))
        full = full if full.is_absolute() else base / full
        suffix = full.suffix.lower()
        kind = (
            "csv" if suffix in (".csv", ".tsv") else "yaml" if suffix in (".yaml", ".yml") else ""
        )
        if not kind:
            ctx.problem(item.line, f"'{raw}': use a .yaml, .yml or .csv file")
            continue
        csv_only = [key for key in ("columns", "date_format", "values") if entry.get(key)]
        if kind == "yaml" and csv_only:
            ctx.problem(
                item.line,
                f"'{raw}': {' and '.join(csv_only)} "
                f"appl{'y' if len(csv_only) > 1 else 'ies'} to CSV files only",
            )
        specs.append(
            SourceSpec(
                path=full,
                shown=raw if not os.path.isabs(raw) else str(full),
                kind=kind,
                columns=entry.get("columns"),
                date_format=entry.get("date_format"),
                encoding=entry.get("encoding") or "utf-8",
                delimiter=entry.get("delimiter") or ("\t" if suffix == ".tsv" else ","),
                timezone=entry.get("timezone"),
                values=entry.get("values"),
            )
        )
    return specs


def _columns(node: Node | None, ctx: FileContext) -> dict[str, str] | None:
    if node is None:
        return None
    if not isinstance(node, Map):
        ctx.problem(
            node.line, "'columns' maps our keys to the export's headers, e.g. {title: Subject}"
        )
        return None
    ctx.check_keys(node, CSV_COLUMNS, "columns")
    for key in ("title", "when"):
        if key not in node.items:
            ctx.problem(
                node.line,
                f"columns: no column is mapped to '{key}' (e.g. {key}: \"Their header\"); "
                "with a mapping only mapped columns are read",
            )
    mapped = {key: ctx.text(value, f"columns.{key}") for key, (_, value) in node.items.items()}
    return {k: v for k, v in mapped.items() if v}


_VALUE_EXAMPLES = {"channel": "{Meeting: visit}", "status": "{Completed: done}"}


def _values(node: Node | None, ctx: FileContext) -> dict[str, dict[str, str]] | None:
    """`values: {channel: {Call: call}, status: {Completed: done}}`: a CRM's own words
    for the fields with fixed values, each onto one of ours. Words are matched
    without regard to case, as our own values are, so they are kept casefolded."""
    if node is None or (isinstance(node, Scalar) and node.is_null):
        return None
    if not isinstance(node, Map):
        ctx.problem(
            node.line, "'values' maps the export's words to ours, e.g. {status: {Completed: done}}"
        )
        return None
    choices = {"channel": CHANNELS, "status": tuple(s.value for s in Status)}
    found: dict[str, dict[str, str]] = {}
    for name, (line, words) in node.items.items():
        if name not in ENUM_KEYS:
            why = (
                f"values: '{name}' has no fixed values to map"
                if name in CSV_COLUMNS
                else f"unknown key '{name}' in values{did_you_mean(name, ENUM_KEYS)}"
            )
            ctx.problem(line, f"{why}; only {' and '.join(ENUM_KEYS)} can be mapped")
            continue
        if not isinstance(words, Map):
            ctx.problem(
                words.line,
                f"values.{name} maps the export's words to ours, e.g. {_VALUE_EXAMPLES[name]}",
            )
            continue
        mapping: dict[str, str] = {}
        seen: dict[str, tuple[str, int]] = {}
        for word, (word_line, target) in words.items.items():
            folded = word.strip().casefold()
            if folded in seen:
                other, other_line = seen[folded]
                ctx.problem(
                    word_line,
                    f"values.{name}: '{word}' is also given as '{other}' "
                    f"(line {other_line}); words are matched without regard to case",
                )
                continue
            seen[folded] = (word, word_line)
            ours = ctx.text(target, f"values.{name}.{word}")
            if not isinstance(target, Scalar):
                continue  # ctx.text said it must be text
            match = next((c for c in choices[name] if ours and c == ours.casefold()), None)
            if match is None:
                shown = f"'{ours}'" if ours else "nothing"
                ctx.problem(
                    target.line,
                    f"values.{name}: '{word}' maps to {shown}; use one of "
                    f"{', '.join(choices[name])}{did_you_mean(ours or '', choices[name])}",
                )
                continue
            mapping[folded] = match
        found[name] = mapping
    return found


def _check_sms(
    sms: dict[str, Any], node: Map, line: int, ctx: FileContext, team: bool = False
) -> None:
    """Cross-option rules: numbers valid, a sender for Twilio; a team's `to` is each
    person's phone."""
    for key in ("to", "from"):
        if sms[key]:
            try:
                sms[key] = normalise(sms[key], ctx.phone_region)
            except InvalidValue as exc:
                ctx.problem(node.items[key][0], f"sms.{key}: {exc}")
    if sms["replies"] == "webhook" and not (sms["webhook_listen"] and sms["webhook_url"]):
        ctx.problem(
            line, "sms.replies webhook needs sms.webhook_listen and sms.webhook_url (public URL)"
        )
    if sms["provider"] == "twilio":
        if not sms["to"] and not team:
            ctx.problem(line, "sms.to is required: the number the reminders go to")
        if not sms["from"] and not sms["messaging_service_sid"]:
            ctx.problem(line, "sms needs 'from' (a number) or 'messaging_service_sid'")


def _check_oauth(cal: dict[str, Any], node: Node | None, line: int, ctx: FileContext) -> None:
    """Google takes OAuth2 only: a refresh token, the client it was issued to, no password."""
    from .calendar.profiles import PROFILES, detect

    rules = PROFILES[cal["profile"] or detect(cal["url"])]
    oauth = [k for k in ("oauth_client_id", "oauth_client_secret", "oauth_refresh_token") if cal[k]]
    if rules.oauth2:
        missing = [
            k
            for k in ("oauth_client_id", "oauth_client_secret", "oauth_refresh_token")
            if not cal[k]
        ]
        if missing:
            ctx.problem(
                line,
                f"calendar.profile {rules.name} takes OAuth2 only: set "
                + ", ".join(f"calendar.{k}" for k in missing)
                + " (`reminderd auth google` gets a refresh token)",
            )
        if cal["password"] is not None:
            ctx.problem(line, f"calendar.profile {rules.name} takes no password, only OAuth2")
    elif oauth:
        ctx.problem(
            line,
            f"calendar.{oauth[0]} is for OAuth2 providers (calendar.profile google), "
            f"not {rules.name}",
        )


EMAIL_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _check_email(
    email: dict[str, Any], node: Map, line: int, ctx: FileContext, team: bool = False
) -> None:
    """Cross-option rules: a host, addresses, and plain SMTP only on loopback; a team's
    `to` is each person's email."""
    for key in ("host", "from", "to"):
        if not email[key] and not (key == "to" and team):
            ctx.problem(line, f"email.{key} is required")
    from email.utils import parseaddr

    for key in ("from", "to"):  # `Name <address>` or a bare address
        if email[key] and not EMAIL_ADDRESS.match(parseaddr(email[key])[1]):
            ctx.problem(node.items[key][0], f"email.{key}: '{email[key]}' is not an e-mail address")
    if email["security"] == "none" and email["host"] and not is_loopback(email["host"]):
        where = node.items["security"][0] if "security" in node.items else line
        ctx.problem(
            where,
            f"email.security none sends in clear text: refused for {email['host']}, which "
            "is not a loopback address; use starttls or tls",
        )
    if email["port"] is None:
        email["port"] = EMAIL_PORTS[email["security"]]


SYSTEM_CONFIG_DIR = Path("/etc/reminderd")
SYSTEM_STATE_DIR = Path("/var/lib/reminderd")  # systemd/reminderd.service: StateDirectory=reminderd


def _state_dir(given: str | None, base: Path) -> Path:
    if given:
        path = Path(os.path.expanduser(given))
        return path if path.is_absolute() else base / path
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if base == SYSTEM_CONFIG_DIR:  # the system service's config: its StateDirectory, also when
        return SYSTEM_STATE_DIR  # `status` is run by hand (no $STATE_DIRECTORY then)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg, "reminderd")


def reference_table() -> str:
    """The README's config reference, made from SPEC (a test keeps the two equal)."""
    from .timeparse import format_offset

    rows = ["| option | default | what it is |", "|---|---|---|"]
    for o in SPEC:
        name = f"{o.section}.{o.name}" if o.section else o.name
        default = o.default
        if o.parse is SECRET:
            name += "_env` / `_file` / `_command` / `_credential"
            default = f"${default[1]}" if default else None
        elif isinstance(default, timedelta):
            default = format_offset(default).lstrip("+")
        elif isinstance(default, bool):
            default = str(default).lower()
        rows.append(f"| `{name}` | {'' if default is None else f'`{default}`'} | {o.help} |")
    return "\n".join(rows)
