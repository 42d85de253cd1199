"""Offsets, durations, `when` values and time zones, with DST checks.

Pure functions; every problem raises `InvalidValue` with a message meant for
the user, which the caller prefixes with `path:line`.
"""

from __future__ import annotations

import functools
import re
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
    seconds = (((parts["w"] * 7 + parts["d"]) * 24 + parts["h"]) * 60 + parts["m"]) * 60 + parts["s"]
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
        reason = "has no unit" if "no unit" in str(exc) else "is more than a year" \
            if "more than a year" in str(exc) else "is not a length of time"
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
    body = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n)
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
        raise InvalidValue(f"unknown time zone '{name}'{did_you_mean(name, _all_zones())}") from None


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
            raise InvalidValue(f"when '{text}' does not match the date format '{date_format}'") from None
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
    raise InvalidValue(
        f"when '{shown}' is ambiguous in {zone.key}: it happens twice when the clocks go back "
        f"(DST fold); write the UTC offset: {naive.strftime('%Y-%m-%dT%H:%M')}{_fmt_utcoffset(first)} "
        f"(first) or {naive.strftime('%Y-%m-%dT%H:%M')}{_fmt_utcoffset(second)} (second)"
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


def parse_clock(text: str, *, what: str) -> time:
    """`HH:MM` (24 h) for quiet hours and the digest time."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise InvalidValue(f"{what} '{text}' must be a time of day like 07:30")
    return time(int(match.group(1)), int(match.group(2)))


def next_weekday(day: date) -> date:
    """Monday for a Saturday or Sunday; the day itself otherwise."""
    return day + timedelta(days=(7 - day.weekday()) % 7) if day.weekday() >= 5 else day

