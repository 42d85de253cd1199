"""The command grammar of an SMS reply, and `<when>` resolved against a given `now`.

Pure: no I/O, no clock reads (time is passed in). `parse_reply` checks everything it
can without a clock, so a reply that parses fails later only on time itself: a past
date or a wall-clock time that does not exist (`resolve_when`).

A reply is `[TARGET] VERB [ARGS]`, case-insensitive:

- Text is cleaned first, as phone keyboards rewrite it: Unicode compatibility forms
  folded (full-width digits, `#` and `:`, no-break spaces), curly quotes and dashes made
  ASCII, zero-width characters dropped, runs of whitespace made one space, and trailing
  `.`/`!` removed (`Done.`). Punctuation right after the target or the command word is
  ignored too (`#k3: done`, `Done, sent it`, `Done. Thanks`).
- TARGET: `#k3` (a reference: `#` and 2-4 letters or digits, kept lowercase) or a
  commitment id followed by a command word, kept as typed (a phone may capitalise it:
  the caller matches ids). A first word that is a command word is always the command:
  a commitment whose id is `done` is named by its reference.
- The reference may come last instead (`DONE #k3`, `MOVE 15:00 #k3`), as people copy
  it from the SMS: a last word shaped like a reference is the target when none came
  first; a repeat of the leading reference is dropped. So a DONE note or a NEXT text
  cannot end in a reference-like word such as `#12` (it would name a touch, and an
  unknown one is refused by the caller, not applied to the wrong touch).
- VERB and ARGS: `DONE [note]`, `MOVE <when>`, `SNOOZE <duration>`,
  `NEXT <when> <text>`, `SKIP`, `AGENDA`, `HELP`. SKIP, AGENDA and HELP take nothing
  after them; AGENDA and HELP are not about one touch, so a target is dropped.
- `<when>`, one or two words: `15:00`, `9:30`, `9.30`, `3pm`, `3:30pm` (today, or
  tomorrow if that time has passed); `tue 15:00` (any day name of 3 or more letters:
  the next such day, today if the time is still ahead); `today 15:00`,
  `tomorrow 10:00` (`tmrw`); `2027-01-12 09:30` (or `2027-01-12T09:30`); offsets from
  now `+2d`, `+3h`, `+90m`, `+1d2h`, `+1w` (the `+` may be left out). Dates like
  `01/12` are refused: day and month order differ by country. For NEXT the two-word
  reading is tried first, then the one-word one; the rest is the text, required.
- `<duration>`: `30m`, `2h`, `1h30m`, `1h 30m`, `1d`, `30 min`, `2 hours`; a bare
  number is minutes.

A reply longer than `MAX_REPLY` characters is refused without being echoed. Error
messages are short (they go back by SMS) and quote at most a few words of the reply.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from ..didyoumean import closest
from ..errors import InvalidValue
from ..timeparse import MAX_YEAR, MIN_YEAR, apply_offset, localize, parse_duration

MAX_REPLY = 1600  # Twilio's limit for one message body, concatenated segments included
VERBS = ("done", "move", "snooze", "next", "skip", "agenda", "help")
HELP_TEXT = (
    "Reply DONE [note], MOVE <when>, SNOOZE 30m, NEXT <when> <what>, SKIP, AGENDA. "
    "<when>: 15:00, tue 9:30, YYYY-MM-DD 9:30, +2d. #ref first for another reminder"
)
"""One GSM-7 segment (a test counts it with `reminderd.sms.text.segments`)."""

# Same as reminderd.sources.entries._ID_RE (a test keeps them equal); copied so that
# the grammar does not load the file readers.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")
_REF_RE = re.compile(r"#([a-z0-9]{2,4})", re.IGNORECASE)
_ASCII = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff", ""),
    }
)
_SEPARATORS = ",;:.!"  # after a target or a command word: `#k3: done`, `Done. Sent it`
_CLOCK_24 = re.compile(r"(\d{1,2})[:.](\d{2})")
_CLOCK_12 = re.compile(r"(\d{1,2})(?:[:.](\d{2}))?([ap])\.?m?\.?")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_OFFSET = re.compile(r"\+?((?:\d+[wdhm])+)")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_ALIASES = {"weds": 2, "thur": 3, "thurs": 3}
_RELATIVE = {"today": 0, "tomorrow": 1, "tmrw": 1}
_UNITS = {
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "w"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
}
_DURATION_PART = re.compile(r"(\d+)\s*([a-z]*)")


class ReplyError(ValueError):
    """The reply is not a command; the message says what was not understood (for an SMS)."""


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed reply. `target` is a reference without `#` (`target_is_ref`) or an id."""

    verb: str  # done | move | snooze | next | skip | agenda | help
    target: str | None
    target_is_ref: bool
    when_text: str | None  # move/next, unresolved, normalised (lowercase, single spaces)
    duration: timedelta | None  # snooze
    text: str | None  # done's note, next's purpose


@dataclass(frozen=True, slots=True)
class _When:
    """A parsed `<when>`: an offset from now, or a clock time on a day rule."""

    offset: timedelta | None = None
    clock: time | None = None
    weekday: int | None = None  # 0 Monday
    relative: int | None = None  # days from today: 0 today, 1 tomorrow
    day: date | None = None


def parse_reply(text: str) -> Command:
    """The command in an SMS reply; `ReplyError` when it is not one."""
    if len(text) > MAX_REPLY:
        raise ReplyError(f"reply too long (over {MAX_REPLY} characters)")
    cleaned = _clean(text)
    if not cleaned:
        raise ReplyError("empty reply")
    words = cleaned.split(" ")
    target, is_ref = None, False
    verb = _verb(words[0])
    if verb is None:
        head = words[0].rstrip(_SEPARATORS)
        ref = _ref(head)
        if ref is not None:
            target, is_ref = ref, True
        elif len(words) > 1 and ID_RE.match(head) and _verb(words[1]):
            target = head
        else:
            raise ReplyError(_not_understood(words))
        words = words[1:]
        if not words:
            raise ReplyError(f"no command after '{_short(head)}', e.g. '{_short(head)} DONE'")
        verb = _verb(words[0])
        if verb is None:
            raise ReplyError(_not_understood(words))
    args = words[1:]
    if args and (last := _ref(args[-1])) is not None:
        if target is None:
            target, is_ref, args = last, True, args[:-1]
        elif is_ref and last == target:
            args = args[:-1]
    if verb in ("agenda", "help"):
        target, is_ref = None, False
    return _command(verb, target, is_ref, args)


def _command(verb: str, target: str | None, is_ref: bool, args: list[str]) -> Command:
    when_text: str | None = None
    duration: timedelta | None = None
    note: str | None = None
    shown = verb.upper()
    if verb in ("skip", "agenda", "help"):
        if args:
            raise ReplyError(f"{shown} takes nothing after it (got '{_short(' '.join(args))}')")
    elif verb == "done":
        note = " ".join(args) or None
    elif verb == "move":
        if not args:
            raise ReplyError("MOVE needs a time, e.g. MOVE tue 15:00")
        _parse_when(args)
        when_text = " ".join(args).lower()
    elif verb == "snooze":
        if not args:
            raise ReplyError("SNOOZE needs a length, e.g. SNOOZE 30m")
        duration = _duration(" ".join(args))
    else:  # next
        if not args:
            raise ReplyError("NEXT needs a time and what for, e.g. NEXT tue 15:00 send quote")
        count = _when_words(args)
        when_text = " ".join(args[:count]).lower()
        note = " ".join(args[count:]) or None
        if note is None:
            raise ReplyError(f"NEXT needs what for after '{_short(when_text)}'")
    return Command(verb, target, is_ref, when_text, duration, note)


def resolve_when(when_text: str, now: datetime) -> datetime:
    """The instant `when_text` names, seen from `now` (aware, in the commitment's zone).

    Returns an aware datetime in that zone, after `now`. Offsets follow
    `apply_offset` (days keep the local time, hours and minutes are elapsed). A clock
    time is the next one ahead: today, else tomorrow; with a day name, that day this
    week, else next week. Raises `ReplyError` for an explicit date (or `today`) that
    has passed, and for a wall-clock time that does not exist (DST gap) on the day it
    would be. A time that happens twice (DST fold) is the first of the two still ahead.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("resolve_when needs an aware `now`")
    words = _clean(when_text).split(" ")
    when = _parse_when(words)
    zone = now.tzinfo
    if when.offset is not None:
        return apply_offset(now, when.offset)
    assert when.clock is not None  # every non-offset form has a time of day
    today = now.date()
    if when.day is not None or when.relative is not None:
        day = when.day if when.day is not None else today + timedelta(days=when.relative or 0)
        found = _ahead(_instants(day, when.clock, zone), now)
        if found is None:
            if not _instants(day, when.clock, zone):
                raise ReplyError(_gap_message(day, when.clock))
            raise ReplyError(f"{_label(day, when.clock)} has already passed")
        return found
    if when.weekday is None:
        days = [today + timedelta(days=n) for n in range(3)]  # 3: a zone may skip a whole day
    else:
        first = today + timedelta(days=(when.weekday - today.weekday()) % 7)
        days = [first, first + timedelta(days=7)]
    now_wall = now.replace(tzinfo=None)
    for day in days:
        instants = _instants(day, when.clock, zone)
        if not instants and datetime.combine(day, when.clock) > now_wall:
            raise ReplyError(_gap_message(day, when.clock))
        found = _ahead(instants, now)
        if found is not None:
            return found
    raise ReplyError(f"no {_short(when_text)} ahead")  # not reached with real zones


def _clean(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(_ASCII)
    return " ".join(folded.split()).rstrip(".!").rstrip()


def _verb(word: str) -> str | None:
    lowered = word.rstrip(_SEPARATORS).lower()
    return lowered if lowered in VERBS else None


def _ref(word: str) -> str | None:
    match = _REF_RE.fullmatch(word.rstrip(_SEPARATORS))
    return match.group(1).lower() if match else None


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_understood(words: list[str]) -> str:
    hint = ""
    for word in words[:2]:
        close = closest(word.rstrip(_SEPARATORS), VERBS)
        if close is not None:
            hint = f" (did you mean {close.upper()}?)"
            break
    return f"not understood: '{_short(' '.join(words[:3]))}'{hint}"


def _when_words(args: list[str]) -> int:
    """How many of `args` (2 or 1) make NEXT's `<when>`; the rest is its text."""
    if len(args) >= 2:
        try:
            _parse_when(args[:2])
            return 2
        except ReplyError as exc:
            two_words_error = exc
        if _day_word(args[0]):
            raise two_words_error  # `tue 25:00 ...`: the time is wrong, say so
    _parse_when(args[:1])
    return 1


def _parse_when(words: list[str]) -> _When:
    shown = " ".join(words)
    lowered = [w.lower() for w in words]
    if len(lowered) == 1:
        word = lowered[0]
        if (offset := _offset(word)) is not None:
            return _When(offset=offset)
        if (clock := _clock(word)) is not None:
            return _When(clock=clock)
        if "t" in word and _DATE.fullmatch(word.partition("t")[0]):
            return _parse_when(word.split("t", 1))
        if _day_word(word):
            raise ReplyError(f"'{_short(shown)}' needs a time, e.g. '{_short(word)} 15:00'")
        raise ReplyError(f"not a time: '{_short(shown)}' (e.g. 15:00, tue 15:00, +2d)")
    if len(lowered) == 2:
        clock = _clock(lowered[1])
        if clock is None:
            raise ReplyError(f"not a time: '{_short(lowered[1])}' (e.g. 15:00 or 9:30)")
        if (weekday := _weekday(lowered[0])) is not None:
            return _When(clock=clock, weekday=weekday)
        if lowered[0] in _RELATIVE:
            return _When(clock=clock, relative=_RELATIVE[lowered[0]])
        if _DATE.fullmatch(lowered[0]):
            return _When(clock=clock, day=_date(lowered[0]))
        raise ReplyError(f"not a day: '{_short(lowered[0])}' (e.g. tue, tomorrow, 2027-01-12)")
    raise ReplyError(f"not a time: '{_short(shown)}' (e.g. 15:00, tue 15:00, +2d)")


def _day_word(word: str) -> bool:
    lowered = word.lower()
    return _weekday(lowered) is not None or lowered in _RELATIVE or bool(_DATE.fullmatch(lowered))


def _weekday(word: str) -> int | None:
    if word in _DAY_ALIASES:
        return _DAY_ALIASES[word]
    if len(word) < 3:
        return None
    return next((n for n, name in enumerate(_DAYS) if name.startswith(word)), None)


def _clock(word: str) -> time | None:
    if match := _CLOCK_24.fullmatch(word):
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            raise ReplyError(f"not a time of day: '{_short(word)}'")
        return time(hour, minute)
    if match := _CLOCK_12.fullmatch(word):
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise ReplyError(f"not a time of day: '{_short(word)}'")
        return time(hour % 12 + (12 if match.group(3) == "p" else 0), minute)
    return None


def _date(word: str) -> date:
    match = _DATE.fullmatch(word)
    assert match is not None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ReplyError(f"not a date: '{word}'") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ReplyError(f"year out of range: '{word}'")
    return day


def _offset(word: str) -> timedelta | None:
    match = _OFFSET.fullmatch(word)
    if match is None:
        return None
    return _length(match.group(1), word)


def _duration(text: str) -> timedelta:
    """`30m`, `1h30m`, `1h 30m`, `30 min`, `2 hours`, `1d`; a bare number is minutes."""
    raw = text.lower().lstrip("+").strip()
    parts = _DURATION_PART.findall(raw)
    canonical = "".join(
        number + _UNITS.get(unit or ("m" if len(parts) == 1 else "?"), "?")
        for number, unit in parts
    )
    if not parts or "?" in canonical or _DURATION_PART.sub("", raw).strip():
        raise ReplyError(f"not a length of time: '{_short(text)}' (e.g. 30m, 2h, 1h30m)")
    return _length(canonical, text)


def _length(canonical: str, shown: str) -> timedelta:
    """`parse_duration` (one way to read lengths), its refusals made short."""
    try:
        return parse_duration(canonical)
    except InvalidValue as exc:
        limit = "more than zero" if "zero" in str(exc) else "1 year at most"
        raise ReplyError(f"'{_short(shown)}' must be {limit}") from None


def _instants(day: date, clock: time, zone: tzinfo) -> list[datetime]:
    """The instants showing `clock` on `day` in `zone`: none in a DST gap, two in a fold."""
    naive = datetime.combine(day, clock)
    if not isinstance(zone, ZoneInfo):  # a fixed offset: every wall time exists once
        return [naive.replace(tzinfo=zone)]
    try:
        return [localize(naive, zone)]
    except InvalidValue:
        first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
        if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
            return []  # the gap: this wall time is skipped
        return [first.astimezone(UTC).astimezone(zone), second.astimezone(UTC).astimezone(zone)]


def _ahead(instants: list[datetime], now: datetime) -> datetime | None:
    # compared in UTC: two datetimes sharing a tzinfo compare by wall time, ignoring `fold`
    later = [i for i in instants if i.astimezone(UTC) > now.astimezone(UTC)]
    return min(later, key=lambda i: i.astimezone(UTC)) if later else None


def _label(day: date, clock: time) -> str:
    return datetime.combine(day, clock).strftime("%a %m-%d %H:%M")


def _gap_message(day: date, clock: time) -> str:
    return f"{_label(day, clock)} does not exist (clocks jump forward); pick another time"
