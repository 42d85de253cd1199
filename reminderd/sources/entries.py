"""From value trees to commitments: one builder for every source format.

Each reader collects every problem it finds (all of them, each with its
line) instead of stopping at the first, so `validate` can list them all.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from ..didyoumean import closest, did_you_mean
from ..errors import InvalidValue, Problem
from ..model import CHANNELS, Commitment, Contact, FollowUp, SourceRef, Status
from ..phone import normalise
from ..timeparse import get_zone, parse_duration, parse_offset, parse_when
from .tree import Map, Node, Scalar, Seq, kind_name

T = TypeVar("T")

ENTRY_KEYS = (
    "id",
    "title",
    "when",
    "timezone",
    "duration",
    "channel",
    "contact",
    "purpose",
    "agenda",
    "questions",
    "bring",
    "next_step",
    "alarms",
    "sms",
    "email",
    "follow_ups",
    "skip_weekends",
    "status",
    "tags",
    "owner",
)
CONTACT_KEYS = ("name", "company", "phone", "email")
FOLLOW_UP_KEYS = ("after", "when", "purpose")
DEFAULT_KEYS = ("duration", "alarms", "sms", "email", "channel", "skip_weekends", "follow_ups")
ENUM_KEYS = ("channel", "status")  # the fields with fixed values, which `values:` may map onto

MAX_CHARS: dict[str, int] = {
    # what a person writes
    "title": 200,
    "purpose": 2000,
    "next_step": 2000,
    "agenda": 500,
    "questions": 500,
    "bring": 500,
    "tags": 100,  # each item
    "contact": 200,
    "name": 200,
    "company": 200,
    "phone": 50,
    "email": 254,
    "owner": 254,  # a person's name or email
    # codes and dates: far shorter in any real file
    "id": 200,
    "when": 100,
    "timezone": 100,
    "duration": 50,
    "after": 50,
    "alarms": 50,
    "sms": 50,
    "follow_ups": 50,
    "channel": 100,
    "status": 100,
    "skip_weekends": 20,
}
"""Most characters in one value of a commitment field (a list's limit is per item).

Far above anything a follow-up needs, and low enough that a pasted document
or a runaway export cell is an error at its line instead of a 19 MB calendar
event, SMS or error message (a refused value is never echoed)."""

MAX_ITEMS: dict[str, int] = {
    "agenda": 50,
    "questions": 50,
    "bring": 50,
    "tags": 50,
    "alarms": 50,
    "sms": 50,
    "email": 50,
    "follow_ups": 100,
}
"""Most items in one list field: 50 alarms already ring every few minutes for hours."""

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")
EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Defaults:
    """What an entry gets for the keys it leaves out (config, then file level)."""

    duration: timedelta = timedelta(minutes=15)
    alarms: tuple[timedelta, ...] = (
        timedelta(days=-1),
        timedelta(hours=-1),
        timedelta(minutes=-10),
    )
    sms: tuple[timedelta, ...] = (timedelta(minutes=-30),)
    email: tuple[timedelta, ...] = ()  # email alerts are opt-in: they need an `email:` config
    channel: str = "call"
    skip_weekends: bool = False
    follow_ups: tuple[FollowUp, ...] = ()


@dataclass(slots=True)
class FileContext:
    """Settings that apply to every entry of one file, and its problem list."""

    path: str
    zone_name: str
    defaults: Defaults = field(default_factory=Defaults)
    phone_region: str | None = None
    date_format: str | None = None
    problems: list[Problem] = field(default_factory=list)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """A CRM's own words for enum fields: field -> {word, casefolded: our value}."""
    choice_hint: bool = False
    """Whether an unknown enum value suggests a `values:` mapping (CSV files)."""

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    # -- typed readers: each returns None (and records a problem) on bad input

    def check_keys(self, node: Map, allowed: tuple[str, ...], where: str) -> None:
        for key, (line, _) in node.items.items():
            if key not in allowed:
                self.problem(line, f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")

    def text(self, node: Node | None, key: str, *, item: bool = False) -> str | None:
        """The stripped text; None (with a problem) if not text or over its MAX_CHARS."""
        if node is None:
            return None
        if not isinstance(node, Scalar):
            self.problem(node.line, f"'{key}' must be text, not {kind_name(node)}")
            return None
        if node.is_null:
            return None
        value = node.text.strip()
        limit = MAX_CHARS.get(key)
        if limit is not None and len(value) > limit:
            self.problem(
                node.line,
                f"{key}{' item' if item else ''} is {len(value)} characters; at most {limit}",
            )
            return None
        return value

    def items(self, node: Seq, key: str) -> list[Node] | None:
        """The items of a list field, or None (with a problem) if over its MAX_ITEMS."""
        limit = MAX_ITEMS.get(key)
        if limit is not None and len(node.items) > limit:
            self.problem(node.line, f"{key} has {len(node.items)} items; at most {limit}")
            return None
        return node.items

    def texts(self, node: Node | None, key: str) -> tuple[str, ...]:
        if node is None or (isinstance(node, Scalar) and node.is_null):
            return ()
        items = self.items(node, key) if isinstance(node, Seq) else [node]
        out = []
        for item in items or ():
            value = self.text(item, key, item=True)
            if value:
                out.append(value)
        return tuple(out)

    def parsed(
        self, node: Node | None, key: str, parse: Callable[[str], T], *, item: bool = False
    ) -> T | None:
        value = self.text(node, key, item=item)
        if value is None or node is None:
            return None
        try:
            return parse(value)
        except InvalidValue as exc:
            message = str(exc)
            self.problem(
                node.line,
                message
                if message.startswith(key.rsplit(".", 1)[-1] + " ")
                else f"{key}: {message}",
            )
            return None

    def offsets(self, node: Node | None, key: str) -> tuple[timedelta, ...] | None:
        if node is None:
            return None
        if isinstance(node, Map):
            self.problem(
                node.line, f"'{key}' must be a list of offsets like [-1h, -10m], not a mapping"
            )
            return None
        items = self.items(node, key) if isinstance(node, Seq) else ([] if node.is_null else [node])
        if items is None:
            return None
        found: set[timedelta] = set()
        for item in items:
            value = self.parsed(item, key, parse_offset, item=True)
            if value is not None:
                found.add(value)
        return tuple(sorted(found))

    def choice(self, node: Node | None, key: str, choices: tuple[str, ...]) -> str | None:
        """One of `choices`, matched without regard to case, or a word `values:` maps onto one."""
        value = self.text(node, key)
        if value is None or node is None:
            return None
        folded = value.casefold()
        mapped = self.values.get(key, {}).get(folded)
        if mapped is not None:
            return mapped
        for choice in choices:
            if choice.casefold() == folded:
                return choice
        close = closest(value, choices)
        hint = f" (did you mean '{close}'?)" if close else ""
        if self.choice_hint:  # a CSV export: its own words can be mapped in the config
            hint += (
                f"; map the export's own words in the config, e.g. values: "
                f"{{{key}: {{{json.dumps(value, ensure_ascii=False)}: {close or choices[0]}}}}}"
            )
        self.problem(node.line, f"{key} '{value}' must be one of {', '.join(choices)}{hint}")
        return None

    def flag(self, node: Node | None, key: str) -> bool | None:
        value = self.text(node, key)
        if value is None or node is None:
            return None
        try:
            return parse_bool(value)
        except InvalidValue as exc:
            self.problem(node.line, f"{key} {exc}")
            return None

    def follow_ups(
        self, node: Node | None, zone: ZoneInfo | None = None
    ) -> tuple[FollowUp, ...] | None:
        """The cadence: each step `after` the previous touch, or at a fixed `when`
        (in `zone`, the entry's; `defaults` have none, so only `after` there)."""
        if node is None:
            return None
        if not isinstance(node, Seq):
            if isinstance(node, Scalar) and node.is_null:
                return ()
            self.problem(node.line, "'follow_ups' must be a list like [{after: 2d, purpose: ...}]")
            return None
        items = self.items(node, "follow_ups")
        if items is None:
            return None
        steps = []
        for item in items:
            if isinstance(item, Scalar):
                after = self.parsed(
                    item, "follow_ups", lambda s: parse_duration(s, what="after"), item=True
                )
                if after is not None:
                    steps.append(FollowUp(after))
                continue
            if isinstance(item, Seq):
                self.problem(
                    item.line, "a follow-up must be a mapping with 'after' (and 'purpose')"
                )
                continue
            self.check_keys(item, FOLLOW_UP_KEYS, "a follow-up")
            after_node, when_node = item.get("after"), item.get("when")
            purpose = self.text(item.get("purpose"), "purpose")
            if when_node is not None:
                if zone is None:
                    self.problem(
                        when_node.line, "a default follow-up has no fixed 'when'; use 'after'"
                    )
                    continue
                at = self.parsed(when_node, "when", lambda s: parse_when(s, zone, self.date_format))
                if at is not None:  # `after`, if also given, is kept only as a note
                    steps.append(FollowUp(None, purpose, at))
                continue
            if after_node is None:
                self.problem(item.line, "follow-up has no 'after' (e.g. after: 2d) or 'when'")
                continue
            after = self.parsed(after_node, "after", lambda s: parse_duration(s, what="after"))
            if after is not None:
                steps.append(FollowUp(after, purpose))
        return tuple(steps)

    def defaults_from(self, node: Node | None, base: Defaults) -> Defaults:
        """A file's `defaults:` mapping laid over `base`."""
        if node is None or (isinstance(node, Scalar) and node.is_null):
            return base
        if not isinstance(node, Map):
            self.problem(node.line, f"'defaults' must be a mapping, not {kind_name(node)}")
            return base
        self.check_keys(node, DEFAULT_KEYS, "defaults")
        changes: dict[str, object] = {}
        duration = self.parsed(node.get("duration"), "duration", parse_duration)
        alarms = self.offsets(node.get("alarms"), "alarms")
        sms = self.offsets(node.get("sms"), "sms")
        email = self.offsets(node.get("email"), "email")
        channel = self.choice(node.get("channel"), "channel", CHANNELS)
        skip = self.flag(node.get("skip_weekends"), "skip_weekends")
        follow = self.follow_ups(node.get("follow_ups"))
        for name, value in (
            ("duration", duration),
            ("alarms", alarms),
            ("sms", sms),
            ("email", email),
            ("channel", channel),
            ("skip_weekends", skip),
            ("follow_ups", follow),
        ):
            if value is not None:
                changes[name] = value
        return replace(base, **changes)  # type: ignore[arg-type]

    # -- the entry itself

    def commitment(self, entry: Node) -> Commitment | None:
        """One commitment from one entry, or None with its problems recorded."""
        if not isinstance(entry, Map):
            self.problem(
                entry.line,
                f"a commitment must be a mapping with title and when, not {kind_name(entry)}",
            )
            return None
        before = len(self.problems)
        self.check_keys(entry, ENTRY_KEYS, "a commitment")
        get = entry.get
        title_node, when_node, zone_node = get("title"), get("when"), get("timezone")
        title = self.text(title_node, "title")
        if title_node is None or (isinstance(title_node, Scalar) and title_node.is_null):
            self.problem(title_node.line if title_node else entry.line, "commitment has no title")
        zone_name = self.text(zone_node, "timezone") or self.zone_name
        try:
            zone = get_zone(zone_name)
        except InvalidValue as exc:
            self.problem(zone_node.line if zone_node else entry.line, str(exc))
            zone = None
        start = None
        if when_node is None or (isinstance(when_node, Scalar) and when_node.is_null):
            self.problem(
                when_node.line if when_node else entry.line,
                "commitment has no 'when' (e.g. when: 2026-11-30 10:00)",
            )
        elif zone is not None:
            start = self.parsed(when_node, "when", lambda s: parse_when(s, zone, self.date_format))
        contact = self.contact(get("contact"))
        d = self.defaults
        duration = self.parsed(get("duration"), "duration", parse_duration) or d.duration
        channel = self.choice(get("channel"), "channel", CHANNELS) or d.channel
        status = self.choice(get("status"), "status", tuple(s.value for s in Status)) or "open"
        alarms = self.offsets(get("alarms"), "alarms")
        sms = self.offsets(get("sms"), "sms")
        email = self.offsets(get("email"), "email")
        follow = self.follow_ups(get("follow_ups"), zone)
        skip = self.flag(get("skip_weekends"), "skip_weekends")
        purpose = self.text(get("purpose"), "purpose")
        next_step = self.text(get("next_step"), "next_step")
        agenda = self.texts(get("agenda"), "agenda")
        questions = self.texts(get("questions"), "questions")
        bring = self.texts(get("bring"), "bring")
        tags = self.texts(get("tags"), "tags")
        owner = self.text(get("owner"), "owner")
        id_node = get("id")
        ident = self.text(id_node, "id")
        if id_node is not None and ident is not None and not _ID_RE.match(ident):
            self.problem(
                id_node.line,
                f"id '{ident}' may hold only letters, digits and . _ : @ + - "
                "(at most 200, starting with a letter or digit)",
            )
        if len(self.problems) > before or title is None or start is None or contact is None:
            return None
        return Commitment(
            id=ident or derive_id(title, contact),
            title=title,
            start=start,
            duration=duration,
            channel=channel,
            contact=contact,
            purpose=purpose,
            agenda=agenda,
            questions=questions,
            bring=bring,
            next_step=next_step,
            alarms=d.alarms if alarms is None else alarms,
            sms=d.sms if sms is None else sms,
            email=d.email if email is None else email,
            follow_ups=d.follow_ups if follow is None else follow,
            skip_weekends=d.skip_weekends if skip is None else skip,
            status=Status(status),
            tags=tags,
            source=SourceRef(self.path, entry.line),
            owner=owner,
        )

    def contact(self, node: Node | None) -> Contact | None:
        if node is None:
            return Contact()
        if isinstance(node, Scalar):
            return Contact(name=self.text(node, "contact"))
        if isinstance(node, Seq):
            self.problem(
                node.line, "'contact' must be a mapping (name, company, phone, email) or a name"
            )
            return None
        self.check_keys(node, CONTACT_KEYS, "contact")
        before = len(self.problems)
        phone = self.parsed(node.get("phone"), "phone", lambda s: normalise(s, self.phone_region))
        email_node = node.get("email")
        email = self.text(email_node, "email")
        if email_node is not None and email is not None and not EMAIL_ADDRESS.match(email):
            self.problem(email_node.line, f"email '{email}' is not an e-mail address")
        return (
            None
            if len(self.problems) > before
            else Contact(
                name=self.text(node.get("name"), "name"),
                company=self.text(node.get("company"), "company"),
                phone=phone,
                email=email,
            )
        )


def parse_bool(text: str) -> bool:
    """The one boolean reader, for commitment files and the config alike."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise InvalidValue(f"'{text}' must be true or false")


def derive_id(title: str, contact: Contact) -> str:
    """A stable id from title and contact: readable slug plus a short hash."""
    basis = "\x1f".join((title, contact.name or "", contact.company or "", contact.phone or ""))
    digest = hashlib.sha1(basis.encode("utf-8")).hexdigest()[:8]
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:40].rstrip("-")
    return f"{slug}-{digest}" if slug else f"c-{digest}"
