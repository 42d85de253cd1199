"""The SMS reply grammar and `<when>` resolution: pure, with a fixed injected `now`.

The dates are fixed (2027, never today's): 2027-01-12 is a Tuesday. DST in 2027:
Europe/Athens jumps 03:00 -> 04:00 on Sun 03-28 and falls back 04:00 -> 03:00 on
Sun 10-31; America/New_York jumps 02:00 -> 03:00 on Sun 03-14 and falls back
02:00 -> 01:00 on Sun 11-07.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminderd.replies.grammar import (
    HELP_TEXT,
    ID_RE,
    MAX_REPLY,
    VERBS,
    Command,
    ReplyError,
    parse_reply,
    resolve_when,
)
from reminderd.sms.text import is_gsm7, segments
from reminderd.sources.entries import _ID_RE

ATHENS = ZoneInfo("Europe/Athens")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2027, 1, 12, 10, 0, tzinfo=ATHENS)  # a Tuesday morning


def cmd(
    verb: str,
    target: str | None = None,
    *,
    ref: bool = False,
    when: str | None = None,
    duration: timedelta | None = None,
    text: str | None = None,
) -> Command:
    return Command(verb, target, ref, when, duration, text)


# --- parse_reply: every form ---------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("DONE", cmd("done")),
        ("done", cmd("done")),
        ("Done.", cmd("done")),
        ("  DONE  ", cmd("done")),
        ("DONE sent the contract", cmd("done", text="sent the contract")),
        ("Done, sent it.", cmd("done", text="sent it")),
        ("Done. Thanks!", cmd("done", text="Thanks")),
        ("Skip!", cmd("skip")),
        ("done   two\n\tlines", cmd("done", text="two lines")),
        ("MOVE 15:00", cmd("move", when="15:00")),
        ("move 9:30", cmd("move", when="9:30")),
        ("move 9.30", cmd("move", when="9.30")),
        ("MOVE 3pm", cmd("move", when="3pm")),
        ("MOVE Tue 15:00", cmd("move", when="tue 15:00")),
        ("MOVE Tuesday 15:00", cmd("move", when="tuesday 15:00")),
        ("MOVE tomorrow 10:00", cmd("move", when="tomorrow 10:00")),
        ("MOVE today 18:00", cmd("move", when="today 18:00")),
        ("MOVE 2027-01-12 09:30", cmd("move", when="2027-01-12 09:30")),
        ("MOVE 2027-01-12T09:30", cmd("move", when="2027-01-12t09:30")),
        ("MOVE +2d", cmd("move", when="+2d")),
        ("MOVE +3h", cmd("move", when="+3h")),
        ("MOVE +90m", cmd("move", when="+90m")),
        ("MOVE +1d2h", cmd("move", when="+1d2h")),
        ("MOVE 2d", cmd("move", when="2d")),
        ("SNOOZE 30m", cmd("snooze", duration=timedelta(minutes=30))),
        ("snooze 2h", cmd("snooze", duration=timedelta(hours=2))),
        ("snooze 1h30m", cmd("snooze", duration=timedelta(minutes=90))),
        ("snooze 1h 30m", cmd("snooze", duration=timedelta(minutes=90))),
        ("snooze 1d", cmd("snooze", duration=timedelta(days=1))),
        ("snooze 45", cmd("snooze", duration=timedelta(minutes=45))),
        ("snooze 30 min", cmd("snooze", duration=timedelta(minutes=30))),
        ("snooze 2 hours", cmd("snooze", duration=timedelta(hours=2))),
        ("snooze +15m", cmd("snooze", duration=timedelta(minutes=15))),
        (
            "NEXT tue 15:00 send the quote",
            cmd("next", when="tue 15:00", text="send the quote"),
        ),
        ("NEXT 15:00 call back", cmd("next", when="15:00", text="call back")),
        ("NEXT +2d Ring Alex", cmd("next", when="+2d", text="Ring Alex")),
        (
            "next 2027-02-01 09:30 check the decision date",
            cmd("next", when="2027-02-01 09:30", text="check the decision date"),
        ),
        ("next tomorrow 10:00 demo", cmd("next", when="tomorrow 10:00", text="demo")),
        ("SKIP", cmd("skip")),
        ("skip.", cmd("skip")),
        ("AGENDA", cmd("agenda")),
        ("help", cmd("help")),
        ("Help!", cmd("help")),
    ],
)
def test_every_form_parses(reply: str, expected: Command) -> None:
    assert parse_reply(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("#k3 DONE", cmd("done", "k3", ref=True)),
        ("#K3 done", cmd("done", "k3", ref=True)),
        ("#k3: done", cmd("done", "k3", ref=True)),
        ("#k3. Done.", cmd("done", "k3", ref=True)),
        ("acme-close: done", cmd("done", "acme-close")),
        ("#ab12 MOVE tue 15:00", cmd("move", "ab12", ref=True, when="tue 15:00")),
        ("acme-close DONE", cmd("done", "acme-close")),
        ("acme-close move tue 15:00", cmd("move", "acme-close", when="tue 15:00")),
        ("Acme-Close done", cmd("done", "Acme-Close")),  # ids keep their case
        ("crm:T-001@zoho snooze 1h", cmd("snooze", "crm:T-001@zoho", duration=timedelta(hours=1))),
        # the reference last, as copied from the SMS
        ("DONE #k3", cmd("done", "k3", ref=True)),
        ("done called him #K3", cmd("done", "k3", ref=True, text="called him")),
        ("MOVE 15:00 #k3", cmd("move", "k3", ref=True, when="15:00")),
        (
            "NEXT tue 15:00 send quote #k3",
            cmd("next", "k3", ref=True, when="tue 15:00", text="send quote"),
        ),
        ("#k3 DONE #k3", cmd("done", "k3", ref=True)),  # the same one twice
        # another reference last, after a target first, is part of the note
        ("#k3 DONE told #x9", cmd("done", "k3", ref=True, text="told #x9")),
        # AGENDA and HELP are not about one touch
        ("#k3 AGENDA", cmd("agenda")),
        ("HELP #k3", cmd("help")),
        # a first word that is a command word is the command
        ("done done", cmd("done", text="done")),
    ],
)
def test_targets(reply: str, expected: Command) -> None:
    assert parse_reply(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("\u201cDONE\u201d", None),  # curly quotes around: not a command, but no crash
        ("\uff03k3 DONE", cmd("done", "k3", ref=True)),  # full-width number sign
        ("MOVE \uff11\uff15\uff1a\uff10\uff10", cmd("move", when="15:00")),  # full-width digits
        ("DONE\u00a0sent", cmd("done", text="sent")),  # no-break space
        ("\u200bDONE\u200b", cmd("done")),  # zero-width spaces
        ("\ufeffSKIP", cmd("skip")),  # a byte-order mark
        ("done \u2014 sent Bob\u2019s deck", cmd("done", text="- sent Bob's deck")),
        ("acme\u2013close done", cmd("done", "acme-close")),  # an en dash typed for a hyphen
        ("MOVE +2d\u2026", cmd("move", when="+2d")),  # ellipsis
    ],
)
def test_smart_punctuation(reply: str, expected: Command | None) -> None:
    if expected is None:
        with pytest.raises(ReplyError):
            parse_reply(reply)
    else:
        assert parse_reply(reply) == expected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("", "empty reply"),
        ("   \n ", "empty reply"),
        ("Thanks, will do", "not understood: 'Thanks, will do'"),
        ("dne", "did you mean DONE?"),
        ("#k3 snoze 10m", "did you mean SNOOZE?"),
        ("#k3", "no command after '#k3'"),
        ("acme-close", "not understood"),
        ("#k", "not understood"),  # one character: not a reference
        ("#abcde done", "not understood"),  # five: not a reference
        ("MOVE", "MOVE needs a time"),
        ("MOVE tue", "needs a time"),
        ("MOVE 25:00", "not a time of day"),
        ("MOVE 9:75", "not a time of day"),
        ("MOVE 13pm", "not a time of day"),
        ("MOVE 01/12 10:00", "not a day"),
        ("MOVE 2027-02-30 10:00", "not a date"),
        ("MOVE 1969-01-01 10:00", "year out of range"),
        ("MOVE soon", "not a time"),
        ("MOVE 15", "not a time"),
        ("MOVE tue 15:00 please", "not a time"),
        ("MOVE +0m", "more than zero"),
        ("MOVE +400d", "1 year at most"),
        ("SNOOZE", "SNOOZE needs a length"),
        ("SNOOZE soon", "not a length of time"),
        ("SNOOZE 1.5h", "not a length of time"),
        ("SNOOZE 1h 30", "not a length of time"),
        ("SNOOZE 0", "more than zero"),
        ("SNOOZE -10m", "not a length of time"),
        ("SNOOZE 400d", "1 year at most"),
        ("NEXT", "NEXT needs a time"),
        ("NEXT tue 15:00", "NEXT needs what for"),
        ("NEXT +2d", "NEXT needs what for"),
        ("NEXT tue send quote", "not a time: 'send'"),
        ("NEXT call back", "not a time"),
        ("SKIP it", "SKIP takes nothing after it"),
        ("AGENDA tomorrow", "AGENDA takes nothing after it"),
    ],
)
def test_not_a_command(reply: str, message: str) -> None:
    with pytest.raises(ReplyError, match=None) as caught:
        parse_reply(reply)
    assert message in str(caught.value)
    assert len(str(caught.value)) <= 100  # it goes back by SMS


def test_a_long_reply_is_refused_without_being_echoed() -> None:
    reply = "DONE " + "secret-note " * 200
    assert len(reply) > MAX_REPLY
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply)
    assert "secret" not in str(caught.value) and "too long" in str(caught.value)
    assert parse_reply(("DONE " + "x" * MAX_REPLY)[:MAX_REPLY]).verb == "done"  # at the limit


def test_error_messages_quote_only_a_few_words() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply("please call me back when you have a moment about the thing " * 5)
    assert len(str(caught.value)) < 60


def test_help_text_fits_one_gsm7_segment_and_lists_the_commands() -> None:
    assert is_gsm7(HELP_TEXT) and segments(HELP_TEXT) == 1
    for verb in VERBS:
        if verb != "help":  # they are reading it
            assert verb.upper() in HELP_TEXT
    assert "#ref" in HELP_TEXT


def test_id_pattern_is_the_commitment_files_one() -> None:
    assert ID_RE.pattern == _ID_RE.pattern


def test_the_grammar_loads_no_io_library() -> None:
    code = (
        "import sys\nimport reminderd.replies.grammar\n"
        "print(sorted(m for m in ('twilio', 'http.server', 'socket', 'requests', "
        "'reminderd.sources.entries', 'reminderd.replies.webhook') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- resolve_when --------------------------------------------------------------------


def at(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("15:00", at(ATHENS, 2027, 1, 12, 15, 0)),  # later today
        ("9:30", at(ATHENS, 2027, 1, 13, 9, 30)),  # passed: tomorrow
        ("10:00", at(ATHENS, 2027, 1, 13, 10, 0)),  # exactly now is not ahead
        ("3pm", at(ATHENS, 2027, 1, 12, 15, 0)),
        ("12am", at(ATHENS, 2027, 1, 13, 0, 0)),
        ("12pm", at(ATHENS, 2027, 1, 12, 12, 0)),
        ("tue 15:00", at(ATHENS, 2027, 1, 12, 15, 0)),  # today is Tuesday, still ahead
        ("tue 9:00", at(ATHENS, 2027, 1, 19, 9, 0)),  # today is Tuesday, passed: next week
        ("tuesday 9:00", at(ATHENS, 2027, 1, 19, 9, 0)),
        ("wed 9:00", at(ATHENS, 2027, 1, 13, 9, 0)),
        ("mon 9:00", at(ATHENS, 2027, 1, 18, 9, 0)),  # rolls over the week
        ("sun 18:00", at(ATHENS, 2027, 1, 17, 18, 0)),
        ("thurs 8:15", at(ATHENS, 2027, 1, 14, 8, 15)),
        ("tomorrow 10:00", at(ATHENS, 2027, 1, 13, 10, 0)),
        ("tmrw 7:00", at(ATHENS, 2027, 1, 13, 7, 0)),
        ("today 18:00", at(ATHENS, 2027, 1, 12, 18, 0)),
        ("2027-01-12 09:30", None),  # passed
        ("2027-01-12 10:30", at(ATHENS, 2027, 1, 12, 10, 30)),
        ("2027-02-01 09:30", at(ATHENS, 2027, 2, 1, 9, 30)),
        ("2027-02-01t09:30", at(ATHENS, 2027, 2, 1, 9, 30)),
        ("+2d", at(ATHENS, 2027, 1, 14, 10, 0)),
        ("+3h", at(ATHENS, 2027, 1, 12, 13, 0)),
        ("+90m", at(ATHENS, 2027, 1, 12, 11, 30)),
        ("+1d2h", at(ATHENS, 2027, 1, 13, 12, 0)),
        ("+1w", at(ATHENS, 2027, 1, 19, 10, 0)),
    ],
)
def test_resolve(when: str, expected: datetime | None) -> None:
    if expected is None:
        with pytest.raises(ReplyError, match="already passed"):
            resolve_when(when, NOW)
        return
    got = resolve_when(when, NOW)
    assert got == expected and got.utcoffset() == expected.utcoffset()
    assert got.tzinfo is ATHENS


def test_resolve_takes_the_raw_words_too() -> None:
    assert resolve_when("  Tue  15:00. ", NOW) == at(ATHENS, 2027, 1, 12, 15, 0)


def test_today_that_passed_is_refused() -> None:
    with pytest.raises(ReplyError, match="already passed"):
        resolve_when("today 9:00", NOW)


def test_resolve_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        resolve_when("15:00", datetime(2027, 1, 12, 10, 0))


def test_past_time_means_tomorrow_across_midnight() -> None:
    late = at(NEW_YORK, 2027, 1, 31, 23, 50)
    assert resolve_when("0:10", late) == at(NEW_YORK, 2027, 2, 1, 0, 10)
    assert resolve_when("23:55", late) == at(NEW_YORK, 2027, 1, 31, 23, 55)
    assert resolve_when("23:45", late) == at(NEW_YORK, 2027, 2, 1, 23, 45)


def test_weekday_rolls_over_month_and_year() -> None:
    friday = at(ATHENS, 2027, 12, 31, 12, 0)
    assert resolve_when("mon 9:00", friday) == at(ATHENS, 2028, 1, 3, 9, 0)
    assert resolve_when("fri 11:00", friday) == at(ATHENS, 2028, 1, 7, 11, 0)
    assert resolve_when("fri 13:00", friday) == at(ATHENS, 2027, 12, 31, 13, 0)


# DST gaps: a wall-clock time that does not exist on the day it would be is refused.


@pytest.mark.parametrize(
    ("when", "now"),
    [
        ("03:30", at(ATHENS, 2027, 3, 28, 1, 0)),  # later today, in the gap
        ("03:30", at(ATHENS, 2027, 3, 27, 5, 0)),  # passed today; tomorrow is the gap
        ("sun 3:15", at(ATHENS, 2027, 3, 25, 9, 0)),
        ("2027-03-28 03:00", at(ATHENS, 2027, 1, 12, 10, 0)),
        ("tomorrow 2:30", at(NEW_YORK, 2027, 3, 13, 10, 0)),
        ("2:30", at(NEW_YORK, 2027, 3, 14, 1, 0)),
        ("2027-03-14 02:59", at(NEW_YORK, 2027, 1, 12, 10, 0)),
    ],
)
def test_dst_gap_is_refused(when: str, now: datetime) -> None:
    with pytest.raises(ReplyError, match="does not exist"):
        resolve_when(when, now)


def test_a_gap_already_behind_is_no_problem() -> None:
    after_the_jump = at(ATHENS, 2027, 3, 28, 5, 0)  # 03:30 today never was, and is behind us
    assert resolve_when("03:30", after_the_jump) == at(ATHENS, 2027, 3, 29, 3, 30)
    a_week_on = resolve_when("sun 3:30", after_the_jump)
    assert a_week_on == at(ATHENS, 2027, 4, 4, 3, 30)


def test_offsets_across_the_gap() -> None:
    # hours are elapsed time; days keep the wall clock (moved forward out of a gap)
    assert resolve_when("+3h", at(NEW_YORK, 2027, 3, 14, 0, 30)) == at(NEW_YORK, 2027, 3, 14, 4, 30)
    assert resolve_when("+1d", at(NEW_YORK, 2027, 3, 13, 10, 0)) == at(NEW_YORK, 2027, 3, 14, 10, 0)
    moved = resolve_when("+1d", at(NEW_YORK, 2027, 3, 13, 2, 30))
    assert moved == at(NEW_YORK, 2027, 3, 14, 3, 30) and moved.utcoffset() == timedelta(hours=-4)


# DST folds: a time that happens twice is the first occurrence still ahead.


def test_fold_takes_the_first_occurrence_when_both_are_ahead() -> None:
    got = resolve_when("03:30", at(ATHENS, 2027, 10, 31, 1, 0))
    assert got.astimezone(UTC) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 03:30 EEST
    assert got.utcoffset() == timedelta(hours=3)


def test_fold_takes_the_second_occurrence_once_the_first_passed() -> None:
    first_pass = at(ATHENS, 2027, 10, 31, 3, 45)  # 03:45 EEST: 03:30 EEST is behind
    got = resolve_when("03:30", first_pass)
    assert got.astimezone(UTC) == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)  # 03:30 EET
    assert got.utcoffset() == timedelta(hours=2)
    second_pass = at(ATHENS, 2027, 10, 31, 3, 15, fold=1)  # 03:15 EET
    assert resolve_when("03:30", second_pass).astimezone(UTC) == got.astimezone(UTC)


def test_fold_in_new_york() -> None:
    midnight = at(NEW_YORK, 2027, 11, 7, 0, 0)
    first = resolve_when("1:30", midnight)
    assert first.utcoffset() == timedelta(hours=-4)  # EDT
    assert resolve_when("tomorrow 1:30", at(NEW_YORK, 2027, 11, 6, 12, 0)) == first
    after_first = at(NEW_YORK, 2027, 11, 7, 1, 45)  # EDT
    second = resolve_when("1:30", after_first)
    assert second.utcoffset() == timedelta(hours=-5)  # EST
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert resolve_when("2027-11-07 01:30", after_first).astimezone(UTC) == second.astimezone(UTC)
    after_both = at(NEW_YORK, 2027, 11, 7, 1, 45, fold=1)  # EST: both 01:30 behind
    assert resolve_when("1:30", after_both) == at(NEW_YORK, 2027, 11, 8, 1, 30)
    with pytest.raises(ReplyError, match="already passed"):
        resolve_when("2027-11-07 01:30", after_both)


def test_a_fixed_offset_zone() -> None:
    now = datetime(2027, 1, 12, 10, 0, tzinfo=UTC)
    assert resolve_when("9:00", now) == datetime(2027, 1, 13, 9, 0, tzinfo=UTC)


# --- properties ----------------------------------------------------------------------

SPACES = st.text(alphabet=" \t\n\u00a0\u2003", min_size=1, max_size=3)
REFS = st.from_regex(r"[a-z0-9]{2,4}", fullmatch=True)
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,20}", fullmatch=True).filter(
    lambda s: s.lower() not in VERBS
)
NOTES = st.lists(st.from_regex(r"[A-Za-z0-9',]{1,8}", fullmatch=True), max_size=4)
WHENS = st.sampled_from(
    [
        ["15:00"],
        ["9:30"],
        ["tue", "15:00"],
        ["Tuesday", "9:30"],
        ["tomorrow", "10:00"],
        ["2027-01-12", "19:30"],
        ["+2d"],
        ["+1d2h"],
        ["3pm"],
    ]
)


@st.composite
def commands(draw: st.DrawFn) -> list[tuple[str, bool]]:
    """A valid reply as words, each marked whether its case may vary."""
    words: list[tuple[str, bool]] = []
    target = draw(st.sampled_from(["none", "ref", "id", "ref-last"]))
    if target == "ref":
        words.append(("#" + draw(REFS), True))
    elif target == "id":
        words.append((draw(IDS), False))
    verb = draw(st.sampled_from(VERBS))
    words.append((verb, True))
    if verb == "done":
        words += [(w, False) for w in draw(NOTES)]
    elif verb == "move":
        words += [(w, True) for w in draw(WHENS)]
    elif verb == "snooze":
        words += [(w, True) for w in draw(st.sampled_from([["30m"], ["1h", "30m"], ["45"]]))]
    elif verb == "next":
        words += [(w, True) for w in draw(WHENS)]
        words += [(w, False) for w in draw(NOTES.filter(bool))]
    if target == "ref-last":
        words.append(("#" + draw(REFS), True))
    return words


def render(words: list[tuple[str, bool]], data: st.DataObject, vary: bool) -> str:
    draw = data.draw
    out = draw(SPACES) if vary and draw(st.booleans()) else ""
    for n, (word, casual) in enumerate(words):
        if vary and casual:
            word = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
        out += (draw(SPACES) if vary else " ") if n else ""
        out += word
    if vary:
        out += draw(st.sampled_from(["", ".", "  ", ". ", "\n"]))
    return out


@given(st.data())
@settings(max_examples=300)
def test_case_and_whitespace_do_not_change_the_command(data: st.DataObject) -> None:
    words = data.draw(commands())
    plain = render(words, data, vary=False)
    varied = render(words, data, vary=True)
    expected = parse_reply(plain)
    assert parse_reply(varied) == expected
    assert expected.verb in VERBS
    if expected.when_text is not None:  # what parsed resolves
        assert resolve_when(expected.when_text, NOW) > NOW


@given(st.text(max_size=200))
@settings(max_examples=500)
def test_any_text_is_a_command_or_a_reply_error(text: str) -> None:
    try:
        command = parse_reply(text)
    except ReplyError as exc:
        assert 0 < len(str(exc)) <= 100
    else:
        assert command.verb in VERBS


@given(
    st.sampled_from("!$%&*()=?;'\"/<>[]{}~`^|\\"),
    st.text(max_size=60),
)
def test_junk_raises_reply_error(first: str, rest: str) -> None:
    with pytest.raises(ReplyError):
        parse_reply(first + rest)


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_any_when_text_resolves_or_is_a_reply_error(text: str) -> None:
    try:
        got = resolve_when(text, NOW)
    except ReplyError:
        return
    assert got > NOW and got.tzinfo is ATHENS


@given(
    st.sampled_from([ATHENS, NEW_YORK]),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31)),
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 59]),
    st.sampled_from(["", "mon ", "sun ", "tomorrow "]),
)
@settings(max_examples=400)
def test_a_clock_time_is_the_next_one_ahead(
    zone: ZoneInfo, naive_now: datetime, hour: int, minute: int, day: str
) -> None:
    now = naive_now.replace(tzinfo=zone)
    try:
        got = resolve_when(f"{day}{hour}:{minute:02d}", now)
    except ReplyError as exc:
        assert "does not exist" in str(exc)
        return
    assert got.astimezone(UTC) > now.astimezone(UTC)
    assert (got.hour, got.minute) == (hour, minute)  # the wall clock asked for
    assert got.astimezone(UTC) - now.astimezone(UTC) <= timedelta(days=8, hours=1)
    if not day:
        assert got.astimezone(UTC) - now.astimezone(UTC) <= timedelta(days=1, hours=1)
