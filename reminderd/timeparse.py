"""Offsets, durations, `when` values and time zones, with DST checks.

Pure functions; every problem raises `InvalidValue` with a message meant for
the user, which the caller prefixes with `path:line`. Also a zone's changes
and yearly rules, read off the tz database, for the VTIMEZONE of an event.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .didyoumean import did_you_mean
from .errors import InvalidValue

_SHORT = re.compile(
    r"^(?P<sign>[+-])?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$"
)
_ISO = re.compile(
    r"^(?P<sign>[+-])?P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
MAX_OFFSET = timedelta(days=366)
OFFSET_HELP = "write it like -1d, -1h30m, -10m, -45s, 0m, +15m or ISO 8601 -PT15M"


@functools.lru_cache(maxsize=1024)  # the same few offsets repeat across thousands of entries
def parse_offset(text: str) -> timedelta:
    """Parse a signed offset relative to a start; unsigned means after.

    `-1d`, `-1h30m`, `-45s`, `0m`, `15m`, `+15m`, `-PT15M`, `-P1DT2H`.
    """
    raw = text.strip()
    match = _SHORT.match(raw) or _ISO.match(raw.upper())
    if not raw or match is None or not any(match.group(k) for k in "wdhms"):
        if re.fullmatch(r"[+-]?\d+", raw):
            raise InvalidValue(f"offset '{text}' has no unit; {OFFSET_HELP}")
        raise InvalidValue(f"bad offset '{text}'; {OFFSET_HELP}")
    parts = {k: int(match.group(k) or 0) for k in "wdhms"}
    seconds = (((parts["w"] * 7 + parts["d"]) * 24 + parts["h"]) * 60 + parts["m"]) * 60 + parts[
        "s"
    ]
    if seconds > MAX_OFFSET.total_seconds():  # checked before timedelta() can overflow
        raise InvalidValue(f"offset '{text}' is more than a year; {OFFSET_HELP}")
    delta = timedelta(seconds=seconds)
    return -delta if match.group("sign") == "-" else delta


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """Parse a positive length of time such as `15m`, `1h30m` or `PT20M`."""
    raw = text.strip()
    help_ = "write it like 15m, 1h30m, 2d or PT20M"
    if raw.startswith(("-", "+")):
        raise InvalidValue(f"{what} '{text}' must be a plain length without a sign; {help_}")
    try:
        delta = parse_offset(raw)
    except InvalidValue as exc:
        reason = (
            "has no unit"
            if "no unit" in str(exc)
            else "is more than a year"
            if "more than a year" in str(exc)
            else "is not a length of time"
        )
        raise InvalidValue(f"{what} '{text}' {reason}; {help_}") from None
    if delta <= timedelta(0):
        raise InvalidValue(f"{what} '{text}' must be longer than zero")
    return delta


def format_offset(delta: timedelta) -> str:
    """Render an offset the way users write it: `-1d`, `-1h30m`, `0m`, `+15m`."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    if seconds == 0:
        return "0m"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    body = "".join(
        f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n
    )
    return sign + body


@functools.cache
def _all_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.lru_cache(maxsize=256)
def get_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or an error suggesting the closest name."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidValue(f"unknown time zone '{name}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidValue(
            f"unknown time zone '{name}'{did_you_mean(name, _all_zones())}"
        ) from None


# tzdata's names for UTC itself (links to Etc/UTC and Etc/GMT), not places that use UTC+0
UTC_ZONES = frozenset(
    {
        "UTC",
        "Etc/UTC",
        "UCT",
        "Etc/UCT",
        "Universal",
        "Etc/Universal",
        "Zulu",
        "Etc/Zulu",
        "GMT",
        "Etc/GMT",
        "GMT0",
        "Etc/GMT0",
        "GMT+0",
        "Etc/GMT+0",
        "GMT-0",
        "Etc/GMT-0",
        "Greenwich",
        "Etc/Greenwich",
    }
)


def is_utc_zone(name: str) -> bool:
    """`UTC`, `Etc/UTC`, `GMT`...: times in it are written in UTC (`...Z`), not with a TZID."""
    return name in UTC_ZONES


def system_zone_name() -> str:
    """The machine's zone name ($TZ, /etc/localtime ...); UTC when it cannot tell."""
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises several types on odd systems; UTC is the safe answer
        return "UTC"
    return name or "UTC"


MIN_YEAR, MAX_YEAR = 1970, 2200  # also keeps follow-up arithmetic far from datetime's limits
_WHEN_HELP = "write it as YYYY-MM-DD HH:MM, or ISO 8601 with a UTC offset"


def parse_when(text: str, zone: ZoneInfo, date_format: str | None = None) -> datetime:
    """Parse a `when` value into an aware datetime in `zone`.

    A local time is checked against the zone's DST transitions: a time that
    does not exist (gap) or happens twice (fold) is an error that suggests
    writing the UTC offset. A value with an explicit offset is exact and is
    only converted to `zone` for display.
    """
    raw = text.strip()
    if not raw:
        raise InvalidValue(f"'when' is empty; {_WHEN_HELP}")
    if date_format:
        try:
            parsed = datetime.strptime(raw, date_format)
        except ValueError:
            raise InvalidValue(
                f"when '{text}' does not match the date format '{date_format}'"
            ) from None
    else:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise InvalidValue(f"when '{text}' has no time of day; {_WHEN_HELP}")
        candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
        if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}", candidate):
            raise InvalidValue(f"bad date/time '{text}'; {_WHEN_HELP}")
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            raise InvalidValue(f"bad date/time '{text}'; {_WHEN_HELP}") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InvalidValue(f"when '{text}' is outside the years {MIN_YEAR}-{MAX_YEAR}")
    if parsed.tzinfo is not None:
        return parsed.astimezone(zone)
    return localize(parsed, zone, shown=raw)


def localize(naive: datetime, zone: ZoneInfo, *, shown: str | None = None) -> datetime:
    """Attach `zone` to a wall-clock time, refusing DST gaps and folds."""
    shown = shown or naive.strftime("%Y-%m-%d %H:%M")
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return first
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) != naive:
        later = as_utc.astimezone(zone)
        raise InvalidValue(
            f"when '{shown}' does not exist in {zone.key}: the clocks jump forward that night "
            f"(DST gap); pick another time, or write the UTC offset, e.g. "
            f"{naive.strftime('%Y-%m-%dT%H:%M')}{_fmt_utcoffset(first)} "
            f"(= {later.strftime('%H:%M')} local)"
        )
    wall = naive.strftime("%Y-%m-%dT%H:%M")
    raise InvalidValue(
        f"when '{shown}' is ambiguous in {zone.key}: it happens twice when the clocks go back "
        f"(DST fold); write the UTC offset: {wall}{_fmt_utcoffset(first)} "
        f"(first) or {wall}{_fmt_utcoffset(second)} (second)"
    )


def _fmt_utcoffset(dt: datetime) -> str:
    off = dt.utcoffset() or timedelta(0)
    total = int(off.total_seconds())
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def wall_clock_shift(start: datetime, delta: timedelta) -> datetime:
    """`start` moved by `delta` in local wall time (same local time `2d` later).

    A result inside a DST gap moves forward by the gap, like clocks do; in a
    fold the first occurrence is taken. Never raises: touches are derived.
    """
    zone = start.tzinfo
    naive = start.replace(tzinfo=None) + delta
    moved = naive.replace(tzinfo=zone, fold=0)
    return moved.astimezone(UTC).astimezone(zone)


def apply_offset(start: datetime, delta: timedelta) -> datetime:
    """`start` moved by an offset or duration, as RFC 5545 reads `-P1DT2H`.

    Whole days and weeks are nominal: the same local time that many days
    away (23 or 25 hours across a DST change), like `wall_clock_shift`. The
    rest (hours, minutes, seconds) is exact elapsed time. So `-1d` alerts at
    10:00 the day before a 10:00 touch, and `-1h` is one real hour before
    even when the clocks change in between. Alerts (calendar alarms and
    SMS), event ends and follow-ups all follow this one rule.
    """
    negative = delta < timedelta(0)
    days = abs(delta).days
    rest = abs(delta) - timedelta(days=days)
    moved = wall_clock_shift(start, timedelta(days=-days if negative else days)) if days else start
    if rest:
        moved = (moved.astimezone(UTC) + (-rest if negative else rest)).astimezone(start.tzinfo)
    return moved


def parse_clock(text: str, *, what: str) -> time:
    """`HH:MM` (24 h) for quiet hours and the digest time."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise InvalidValue(f"{what} '{text}' must be a time of day like 07:30")
    return time(int(match.group(1)), int(match.group(2)))


def next_weekday(day: date) -> date:
    """Monday for a Saturday or Sunday; the day itself otherwise."""
    return day + timedelta(days=(7 - day.weekday()) % 7) if day.weekday() >= 5 else day


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What a zone's clocks say between two changes."""

    utcoffset: timedelta
    dst: timedelta
    name: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a zone's clocks at the UTC instant `at`."""

    at: datetime
    before: ZoneState
    after: ZoneState

    @property
    def onset(self) -> datetime:
        """The naive local time of the change on the clocks before it (RFC 5545 DTSTART)."""
        return (self.at + self.before.utcoffset).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class YearlyRule:
    """A change on the same local time every year: on the `weekday` (0 Monday) that
    falls within days `first_day`..`first_day`+6 of `month`, or on the `last` such
    weekday of the month, or, with no weekday, on day `first_day` itself."""

    month: int
    weekday: int | None
    first_day: int
    last: bool
    at: time

    def day(self, year: int) -> date:
        if self.weekday is None:
            return date(year, self.month, self.first_day)
        if self.last:
            end = date(year, self.month, calendar.monthrange(year, self.month)[1])
            return end - timedelta(days=(end.weekday() - self.weekday) % 7)
        first = date(year, self.month, self.first_day)
        return first + timedelta(days=(self.weekday - first.weekday()) % 7)

    def matches(self, onset: datetime) -> bool:
        return onset.date() == self.day(onset.year) and onset.time() == self.at


@dataclass(frozen=True, slots=True)
class ZoneRules:
    """A zone's clocks from `since` on, for ever: each change as it first
    happened, then every year by its rule (no rule: it happened once, and the
    zone has kept that time since)."""

    since: datetime
    changes: tuple[tuple[Transition, YearlyRule | None], ...]


_SCAN_STEP = timedelta(
    days=3
)  # the shortest summer time in tzdata since 1968: a week (Brazil 2000)
_RULE_YEARS = range(
    2039, 2067
)  # past tzdata's tables (2037): each zone's own rule, a 28-year cycle


def zone_state(zone: ZoneInfo, at: datetime) -> ZoneState:
    """What `zone`'s clocks say at the aware instant `at`."""
    local = at.astimezone(zone)
    return ZoneState(
        local.utcoffset() or timedelta(0), local.dst() or timedelta(0), local.tzname() or ""
    )


@functools.lru_cache(maxsize=8192)
def _year_transitions(zone: ZoneInfo, year: int) -> tuple[Transition, ...]:
    """The changes of `zone` in (Jan 1 `year`, Jan 1 `year`+1], UTC, to the second."""
    at, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    state, found = zone_state(zone, at), []
    while at < end:
        probe = min(at + _SCAN_STEP, end)
        if zone_state(zone, probe) == state:
            at = probe
            continue
        low, high = at, probe  # state at `low`, another one at `high`: bisect to the second
        while high - low > timedelta(seconds=1):
            middle = low + timedelta(seconds=(high - low) // timedelta(seconds=2))
            low, high = (middle, high) if zone_state(zone, middle) == state else (low, middle)
        after = zone_state(zone, high)
        found.append(Transition(high, state, after))
        at, state = high, after
    return tuple(found)


def zone_transitions(zone: ZoneInfo, first_year: int, last_year: int) -> tuple[Transition, ...]:
    """Every change of `zone`'s clocks from Jan 1 `first_year` to Jan 1 `last_year`+1 (UTC)."""
    last_year = min(last_year, date.max.year - 1)  # Jan 1 of the year after must exist
    return tuple(
        t for year in range(first_year, last_year + 1) for t in _year_transitions(zone, year)
    )


def _fit_rule(onsets: list[datetime]) -> YearlyRule | None:
    """The yearly rule that gives exactly these local onsets (one a year), if there is one."""
    if len({(o.month, o.time()) for o in onsets}) != 1:
        return None
    month, at = onsets[0].month, onsets[0].time()
    days = [o.day for o in onsets]
    candidates: list[YearlyRule] = []
    if len({o.weekday() for o in onsets}) == 1:
        weekday, low, high = onsets[0].weekday(), min(days), max(days)
        candidates += [
            YearlyRule(month, weekday, first, False, at)
            for first in (1, 8, 15, 22)
            if first <= low and high <= first + 6
        ]
        candidates.append(YearlyRule(month, weekday, 0, True, at))
        shortest = 28 if month == 2 else calendar.monthrange(2001, month)[1]
        if high - low <= 6 and low + 6 <= shortest:
            candidates.append(YearlyRule(month, weekday, low, False, at))
    elif len(set(days)) == 1:
        candidates.append(YearlyRule(month, None, days[0], False, at))
    return next((r for r in candidates if all(r.matches(o) for o in onsets)), None)


@functools.lru_cache(maxsize=256)
def zone_rules(zone: ZoneInfo) -> ZoneRules | None:
    """How `zone` keeps time from the last change of its rules on, for ever.

    Derived from what the zone does (tzdata has no public rule API): the
    changes of 28 years past its tables are fitted with yearly rules, which
    are then followed back year by year as far as they hold. None when the
    future does not follow a yearly rule (tzdata tabulates Morocco's
    Ramadan changes to 2087): callers then list the changes they need.
    """
    years = [_year_transitions(zone, y) for y in _RULE_YEARS]
    count = len(years[0])
    if any(len(y) != count for y in years):
        return None
    if count == 0:
        year = _RULE_YEARS.start - 1
        while year >= MIN_YEAR and not _year_transitions(zone, year):
            year -= 1
        if year >= MIN_YEAR:
            last = _year_transitions(zone, year)[-1]
            return ZoneRules(last.at, ((last, None),))
        start = datetime(MIN_YEAR, 1, 1).replace(tzinfo=zone).astimezone(UTC)
        state = zone_state(zone, start)
        return ZoneRules(start, ((Transition(start, state, state), None),))
    rules: list[YearlyRule] = []
    for slot in range(count):
        if len({(y[slot].before, y[slot].after) for y in years}) != 1:
            return None
        rule = _fit_rule([y[slot].onset for y in years])
        if rule is None:
            return None
        rules.append(rule)

    def holds(found: tuple[Transition, ...]) -> bool:
        return len(found) == count and all(
            (t.before, t.after) == (y.before, y.after) and rule.matches(t.onset)
            for t, y, rule in zip(found, years[0], rules, strict=True)
        )

    first = _RULE_YEARS.start
    while first > MIN_YEAR and holds(_year_transitions(zone, first - 1)):
        first -= 1
    found = _year_transitions(zone, first)
    return ZoneRules(found[0].at, tuple(zip(found, rules, strict=True)))
