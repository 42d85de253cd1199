"""Property tests: whatever is in the files, `validate` answers with a proper exit code.

Random YAML (documents built from the real schema's keys with random values,
mutations of the example file, raw text, raw bytes), random CSV (headers from
the built-in columns plus junk, random cells, quotes, newlines, delimiters)
and random configs go through `reminderd.cli.main(["--config", ..., "validate"])`
in process. Properties:

- the exit code is one of 0, 65, 66, 78 (never 70, the "internal error" code);
- no traceback and no "internal error" in the output;
- with exit 65, the last line is the summary and every `bad.ext:N:` line names
  a line that exists in the file.

Two targeted properties at the end hammer the ends of the ranges: huge
offsets and durations, and years at both ends of the calendar.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import string
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reminderd.cli import main
from reminderd.config import SOURCE_KEYS, SPEC, TOP_KEYS
from reminderd.sources.csvfile import CSV_COLUMNS
from reminderd.sources.entries import CONTACT_KEYS, DEFAULT_KEYS, ENTRY_KEYS, FOLLOW_UP_KEYS
from reminderd.sources.yamlfile import FILE_KEYS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_YAML = (ROOT / "examples" / "commitments.yaml").read_text(encoding="utf-8")
EXAMPLE_CSV = (ROOT / "examples" / "simple.csv").read_text(encoding="utf-8")

# REMINDERD_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the file near 10-20 s
FUZZ = settings(
    max_examples=int(os.environ.get("REMINDERD_FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
ALLOWED_EXITS = {0, 65, 66, 78}
SUMMARY_RE = re.compile(r"^\d+ errors? in \d+ files?; valid so far: ")
LINE_RE = re.compile(r"^(bad\.(?:yaml|csv)):(\d+): ")


# --- running validate in process ------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def validate(
    root: Path, name: str, data: str | bytes, config: str | None = None
) -> tuple[int, str, str]:
    """Write `data` as `name` and a config naming it, run validate, return (exit, out, err)."""
    path = root / name
    # a lone surrogate from the generator becomes invalid UTF-8 bytes: one more bad input
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    if config is None:
        config = f"timezone: Europe/Athens\ncommitments:\n  - {name}\n"
    (root / "config.yaml").write_text(config, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--config", str(root / "config.yaml"), "validate"])
    return code, out.getvalue(), err.getvalue()


def _line_count(data: str | bytes) -> int:
    """Lines in the file by the most generous count (editors differ on \\r, \\x85, \\u2028)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return max(text.count("\n"), text.count("\r"), len(text.splitlines())) + 1


def check(code: int, out: str, err: str, data: str | bytes) -> None:
    both = out + err
    assert code != 70, both
    assert "reminderd: internal error" not in both, both
    assert "Traceback (most recent call last)" not in both, both
    assert code in ALLOWED_EXITS, (code, both)
    if code == 0:
        assert out.startswith("ok: "), out
    if code == 65:
        lines = out.splitlines()
        assert lines and SUMMARY_RE.match(lines[-1]), out
        assert any(LINE_RE.match(ln) for ln in lines[:-1]), out
        most = _line_count(data)
        for ln in lines[:-1]:
            match = LINE_RE.match(ln)
            if match:  # (a value with a newline may continue a message on the next line)
                assert 1 <= int(match.group(2)) <= most, (ln, most)


# --- value pools: realistic good and bad values for every field ----------------------

# mostly text a user could type; sometimes anything at all (control characters, astral planes)
junk_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.text(max_size=30),
)
printable = st.text(alphabet=string.printable, max_size=30)

offsets = st.one_of(
    st.builds(
        lambda sign, n, unit: f"{sign}{n}{unit}",
        st.sampled_from(["", "-", "+"]),
        st.integers(0, 100_000),
        st.sampled_from(["w", "d", "h", "m", "s", "", "x", "D"]),
    ),
    st.sampled_from(
        [
            "-1d",
            "-1h30m",
            "-10m",
            "-45s",
            "0m",
            "+15m",
            "-PT15M",
            "-P1DT2H",
            "P",
            "-",
            "1h-",
            "--1d",
            "-1d1d",
            "1m30h",
            "-P1W",
            "PT",
            "-pt15m",
            " -1d ",
            "-366d",
            "-367d",
            "-52w",
            "-53w",
        ]
    ),
    junk_text,
)
durations = st.one_of(offsets, st.sampled_from(["15m", "1h30m", "PT20M", "0m", "-5m", "2d"]))
years = st.integers(1, 9999)
whens = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, sep, tail: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}{tail}",
        years,
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from([" ", "T", "t", "  ", "_"]),
        st.sampled_from(
            [
                "",
                "Z",
                "z",
                "+02:00",
                "-05:30",
                "+14:00",
                "+25:00",
                ":00",
                ":00.5",
                " +02:00",
                "+0200",
                "x",
            ]
        ),
    ),
    st.builds(
        lambda y, mo, d: f"{y:04d}-{mo:02d}-{d:02d}", years, st.integers(1, 12), st.integers(1, 28)
    ),
    st.sampled_from(
        [
            "2026-03-29 03:30",
            "2026-10-25 03:30",
            "2026-03-29 04:00",
            "2026-10-25 04:00",
            "2026-11-30 10:00",
            "2026-11-30 9:30",
            "tomorrow",
            "",
            "2026-11-30T10:00Z",
        ]
    ),
    junk_text,
)
zones = st.one_of(
    st.sampled_from(
        [
            "Europe/Athens",
            "UTC",
            "America/New_York",
            "Asia/Kolkata",
            "Europe/Athen",
            "europe/athens",
            "Mars/Olympus",
            "",
            " ",
            "Europe",
            "Europe/",
            "/etc/localtime",
            "../../etc/passwd",
            "Etc/GMT+2",
            "UTC+2",
            "+02:00",
            "localtime",
            "Factory",
            "Europe//Athens",
            "Europe/Athens/",
            "Europe\\Athens",
            "Ελλάδα/Αθήνα",
        ]
    ),
    junk_text,
)
phones = st.one_of(
    st.sampled_from(
        [
            "+30 21 0123 4567",
            "+302101234567",
            "210 123 4567",
            "+30 123",
            "+1 650 253 0000",
            "00302101234567",
            "+",
            "++30",
            "+30 21 0123 4567 ext. 5",
            "tel:+302101234567",
        ]
    ),
    st.text(alphabet="+0123456789 -()x", max_size=25),
    junk_text,
)
emails = st.one_of(
    st.sampled_from(["alex@acme.example", "alex@", "@acme", "a b@c.d", "x@y"]), junk_text
)
choices = st.sampled_from(
    [
        "call",
        "visit",
        "video",
        "email",
        "other",
        "cal",
        "CALL",
        "open",
        "done",
        "cancelled",
        "canceled",
        "don",
        "",
    ]
)
flags = st.sampled_from(["true", "false", "yes", "no", "on", "off", "1", "0", "maybe", "True", ""])
ids = st.one_of(
    st.sampled_from(["acme-close", "acme-close", "a", "-bad", "a b", "x" * 201, "ünï", "1"]),
    junk_text,
)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    junk_text,
    printable,
    offsets,
    whens,
    zones,
    phones,
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(junk_text, st.sampled_from(ENTRY_KEYS)), inner, max_size=4),
    ),
    max_leaves=8,
)


def _keys(real: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Mostly real keys, some typos of them, some junk."""
    typo = st.builds(lambda k, i: k[:i] + k[i + 1 :], st.sampled_from(real), st.integers(0, 3))
    return st.one_of(*[st.sampled_from(real)] * 6, typo, junk_text)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, values)


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": ids,
    "title": st.one_of(st.sampled_from(["Call Alex", "Call Alex", ""]), junk_text),
    "when": whens,
    "timezone": zones,
    "duration": durations,
    "channel": choices,
    "status": choices,
    "alarms": st.one_of(st.lists(offsets, max_size=5), offsets),
    "sms": st.lists(offsets, max_size=3),
    "skip_weekends": flags,
    "purpose": junk_text,
    "next_step": junk_text,
    "agenda": st.lists(junk_text, max_size=3),
    "questions": st.lists(junk_text, max_size=3),
    "bring": st.lists(junk_text, max_size=3),
    "tags": st.lists(junk_text, max_size=3),
}
# values reminderd must accept, so that clean documents reach the deep paths (touches,
# follow-up cadences over DST changes and weekends, id derivation, duplicate ids)
good_offsets = st.builds(
    lambda sign, n, unit: f"{sign}{n}{unit}",
    st.sampled_from(["-", "-", "", "+"]),
    st.integers(0, 300),
    st.sampled_from(["m", "h", "d", "s"]),
)
good_durations = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(1, 300), st.sampled_from(["m", "h", "d"])
)
good_whens = st.builds(
    lambda y, mo, d, h, mi, tail: f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}{tail}",
    st.integers(2020, 2035),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from(["", "", "", "+02:00", "Z"]),
)
good_zones = st.sampled_from(
    [
        "Europe/Athens",
        "UTC",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Europe/Berlin",
    ]
)
good_phones = st.sampled_from(
    ["+30 21 0123 4567", "+1 650 253 0000", "+49 30 901820", "+302101234567"]
)
good_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20
).filter(lambda t: t.strip() != "")
good_follow_ups = st.lists(
    st.one_of(
        good_durations,
        st.fixed_dictionaries({"after": good_durations}, optional={"purpose": good_text}),
    ),
    max_size=4,
)
GOOD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.from_regex(r"[a-z0-9][a-z0-9.-]{0,10}", fullmatch=True),
    "timezone": good_zones,
    "duration": good_durations,
    "channel": st.sampled_from(["call", "visit", "video", "email", "other"]),
    "status": st.sampled_from(["open", "done", "cancelled"]),
    "alarms": st.lists(good_offsets, max_size=4),
    "sms": st.lists(good_offsets, max_size=2),
    "email": st.lists(good_offsets, max_size=2),
    "skip_weekends": st.sampled_from(["true", "false"]),
    "purpose": good_text,
    "next_step": good_text,
    "agenda": st.lists(good_text, max_size=3),
    "questions": st.lists(good_text, max_size=3),
    "bring": st.lists(good_text, max_size=3),
    "tags": st.lists(good_text, max_size=3),
    "follow_ups": good_follow_ups,
    "owner": good_text,  # a team routes by it; one user keeps it as written
    "contact": st.fixed_dictionaries(
        {},
        optional={
            "name": good_text,
            "company": good_text,
            "phone": good_phones,
            "email": st.just("a@b.example"),
        },
    ),
}
clean_entries = st.fixed_dictionaries(
    {"title": st.sampled_from(["Call Alex", "Visit ACME"]) | good_text, "when": good_whens},
    optional=GOOD_FIELDS,
)
clean_defaults = st.fixed_dictionaries({}, optional={k: GOOD_FIELDS[k] for k in DEFAULT_KEYS})

contacts = st.one_of(
    st.dictionaries(_keys(CONTACT_KEYS), st.one_of(phones, emails, junk_text), max_size=4),
    st.fixed_dictionaries(
        {}, optional={"name": junk_text, "company": junk_text, "phone": phones, "email": emails}
    ),
    values,
)
follow_ups = st.one_of(
    st.lists(
        st.one_of(
            durations,
            st.dictionaries(_keys(FOLLOW_UP_KEYS), st.one_of(durations, junk_text), max_size=3),
        ),
        max_size=4,
    ),
    values,
)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(clean_entries)
    if draw(st.integers(0, 20)) == 0:
        return draw(values)  # not a mapping at all
    entry: dict[Any, Any] = {}
    for key in draw(st.lists(_keys(ENTRY_KEYS), max_size=10)):
        if key == "contact":
            entry[key] = draw(contacts)
        elif key == "follow_ups":
            entry[key] = draw(follow_ups)
        else:
            entry[key] = draw(_maybe(FIELD_VALUES.get(key, junk_text)))
    # most entries get the two required fields, so the rest of the builder is reached
    if draw(st.integers(0, 4)):
        entry.setdefault("title", draw(FIELD_VALUES["title"]))
        entry.setdefault("when", draw(whens))
    return entry


@st.composite
def yaml_documents(draw: st.DrawFn) -> Any:
    items = draw(st.lists(entries(), max_size=6))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return items  # a short file: just the list
    if shape == 1:
        return draw(values)
    doc: dict[Any, Any] = {}
    if shape >= 6:  # a clean file around clean entries
        items = draw(st.lists(clean_entries, max_size=6))
        doc.update(
            draw(
                st.fixed_dictionaries(
                    {}, optional={"timezone": good_zones, "defaults": clean_defaults}
                )
            )
        )
        doc["commitments"] = items
        return doc
    for key in draw(st.lists(_keys(FILE_KEYS), max_size=3, unique=True)):
        if key == "defaults":
            doc[key] = draw(
                st.one_of(
                    st.dictionaries(
                        _keys(DEFAULT_KEYS),
                        st.one_of(
                            durations,
                            offsets,
                            st.lists(offsets, max_size=3),
                            choices,
                            flags,
                            follow_ups,
                        ),
                        max_size=4,
                    ),
                    values,
                )
            )
        elif key == "timezone":
            doc[key] = draw(_maybe(zones))
        else:
            doc[key] = draw(values)
    doc["commitments"] = draw(st.one_of(st.just(items), st.just(items), values))
    return doc


def dump(doc: Any, style: int) -> str:
    """YAML text of `doc` in one of several styles (block, flow, JSON)."""
    if style == 0:
        return json.dumps(doc, ensure_ascii=False, default=str)
    return yaml.safe_dump(
        doc, allow_unicode=True, sort_keys=False, default_flow_style=style == 1, width=10**6
    )


def _mutate(text: str, cuts: list[tuple[int, int, str]]) -> str:
    for position, length, insert in cuts:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + length :]
    return text


yaml_noise = st.text(
    alphabet=st.sampled_from(list(":-[]{},&*!|>'\"#%@`?~\n\t ") + list("ab01")) | st.characters(),
    max_size=8,
)
mutations = st.lists(
    st.tuples(st.integers(0, 10**5), st.integers(0, 20), yaml_noise), min_size=1, max_size=6
)


# --- YAML properties ------------------------------------------------------------------


@FUZZ
@given(doc=yaml_documents(), style=st.integers(0, 2))
def test_structured_yaml_documents(workdir: Path, doc: Any, style: int) -> None:
    text = dump(doc, style)
    check(*validate(workdir, "bad.yaml", text), text)


@FUZZ
@given(cuts=mutations)
def test_mutated_example_yaml(workdir: Path, cuts: list[tuple[int, int, str]]) -> None:
    text = _mutate(EXAMPLE_YAML, cuts)
    check(*validate(workdir, "bad.yaml", text), text)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=400),
        yaml_noise.map(lambda s: "commitments:\n" + s * 3),
        st.lists(
            st.one_of(
                yaml_noise,
                st.sampled_from(
                    [
                        "commitments:",
                        "\n  - ",
                        "title: ",
                        "when: ",
                        "2026-11-30 10:00",
                        "&a ",
                        "*a",
                        "[",
                        "]",
                        "{",
                        "}",
                        "\n    ",
                        "\n",
                        "---\n",
                        "- ",
                        ": ",
                    ]
                ),
            ),
            max_size=40,
        ).map("".join),
    )
)
def test_random_yaml_text(workdir: Path, text: str) -> None:
    check(*validate(workdir, "bad.yaml", text), text)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.tuples(st.binary(max_size=30), st.integers(0, 2000)).map(
            lambda t: EXAMPLE_YAML.encode()[: t[1]] + t[0] + EXAMPLE_YAML.encode()[t[1] :]
        ),
    )
)
def test_random_yaml_bytes(workdir: Path, data: bytes) -> None:
    check(*validate(workdir, "bad.yaml", data), data)


# --- CSV properties -------------------------------------------------------------------

cells = st.one_of(
    offsets,
    whens,
    zones,
    phones,
    emails,
    choices,
    flags,
    junk_text,
    printable,
    st.lists(offsets, max_size=3).map(";".join),
    st.text(alphabet=",;\"'\n\r\t |", max_size=6),
    st.just(""),
)
CONTACT_CELLS = {
    "contact": good_text,
    "company": good_text,
    "phone": good_phones,
    "email": st.just("a@b.example"),
}


def _good_cell(column: str) -> st.SearchStrategy[str]:
    """A cell reminderd accepts for this built-in column (lists joined with ';')."""
    if column == "title":
        return good_text
    if column == "when":
        return good_whens
    strategy = CONTACT_CELLS[column] if column in CONTACT_CELLS else GOOD_FIELDS[column]
    return st.one_of(st.just(""), strategy.map(lambda v: ";".join(v) if isinstance(v, list) else v))


headers = st.lists(
    st.one_of(
        *[st.sampled_from(CSV_COLUMNS)] * 8,
        st.sampled_from(
            ["Subject", "Due Date", "follow_ups", "skip_weekends", "Title", " when ", ""]
        ),
        junk_text,
    ),
    max_size=10,
)


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    clean = draw(st.booleans())
    if clean:
        header = draw(st.lists(st.sampled_from(CSV_COLUMNS), unique=True, max_size=10))
        header = list(dict.fromkeys(["title", "when", *header]))
        header = draw(st.permutations(header))
    else:
        header = draw(headers)
        if draw(st.integers(0, 3)):
            header = list(dict.fromkeys(["title", "when", *header]))  # mostly a usable header
    rows = [header]
    for _ in range(draw(st.integers(0, 6))):
        if clean:
            rows.append([draw(_good_cell(name)) for name in header])
            continue
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 3]))
        rows.append([draw(cells) for _ in range(max(width, 0))])
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        buffer = io.StringIO(newline="")
        writer = csv.writer(
            buffer,
            lineterminator=newline,
            quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        )
        writer.writerows(rows)
        text = buffer.getvalue()
    else:  # naive joining: broken quoting, stray delimiters
        text = newline.join(",".join(row) for row in rows) + draw(st.sampled_from(["", newline]))
    if draw(st.integers(0, 4)) == 0:
        text = _mutate(text, draw(mutations))
    return text


@FUZZ
@given(text=csv_files())
def test_random_csv(workdir: Path, text: str) -> None:
    check(*validate(workdir, "bad.csv", text), text)


@FUZZ
@given(
    text=csv_files(),
    delimiter=st.sampled_from([",", ";", "\t", "|", " ", '"', "\n", "ab", ""]),
    columns=st.one_of(
        st.none(),
        st.dictionaries(
            st.one_of(st.sampled_from(CSV_COLUMNS), junk_text),
            st.one_of(st.sampled_from(CSV_COLUMNS), junk_text),
            max_size=5,
        ),
    ),
    date_format=st.one_of(
        st.none(),
        st.sampled_from(["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M", "%Q", "%Y", "%z", "", "%d/%m/%Y"]),
    ),
    encoding=st.sampled_from(["utf-8", "UTF8", "latin-1", "cp1253", "utf-16", "ascii", "nope"]),
)
def test_random_csv_with_source_options(
    workdir: Path,
    text: str,
    delimiter: str,
    columns: dict[str, str] | None,
    date_format: str | None,
    encoding: str,
) -> None:
    if delimiter not in text and delimiter and len(delimiter) == 1:
        text = text.replace(",", delimiter)
    source: dict[str, Any] = {"path": "bad.csv", "delimiter": delimiter, "encoding": encoding}
    if columns is not None:
        source["columns"] = columns
    if date_format is not None:
        source["date_format"] = date_format
    config = (
        "timezone: Europe/Athens\ncommitments:\n  - "
        + json.dumps(source, ensure_ascii=False)
        + "\n"
    )
    data = text.encode("utf-8", "surrogatepass")
    check(*validate(workdir, "bad.csv", data, config), data)


CRM_WORDS = st.one_of(
    st.sampled_from(
        [
            "Call",
            "CALL",
            "call",
            "Meeting",
            "Completed",
            "completed",
            "Deferred",
            "Open",
            "done",
            "Phone Call",
            "",
            " ",
        ]
    ),
    junk_text,
)
value_maps = st.one_of(
    st.dictionaries(
        _keys(("channel", "status")),
        st.one_of(
            st.dictionaries(CRM_WORDS, st.one_of(choices, CRM_WORDS, values), max_size=5), values
        ),
        max_size=3,
    ),
    values,
)


@FUZZ
@given(mapping=value_maps, rows=st.lists(st.tuples(CRM_WORDS, CRM_WORDS), max_size=5))
def test_random_values_mappings(workdir: Path, mapping: Any, rows: list[tuple[str, str]]) -> None:
    """`values:` of any shape over CRM words in any case: a config error or a report, never a crash."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Subject", "Due", "Type", "State"])
    writer.writerows(
        [f"Call {n}", "2026-11-30 10:00", channel, status]
        for n, (channel, status) in enumerate(rows)
    )
    source = {
        "path": "bad.csv",
        "values": mapping,
        "columns": {"title": "Subject", "when": "Due", "channel": "Type", "status": "State"},
    }
    config = (
        "timezone: Europe/Athens\ncommitments:\n  - "
        + json.dumps(source, ensure_ascii=False)
        + "\n"
    )
    data = buffer.getvalue().encode("utf-8", "surrogatepass")
    check(*validate(workdir, "bad.csv", data, config), data)


# --- config properties ----------------------------------------------------------------

OPTION_VALUES = st.one_of(
    zones,
    phones,
    durations,
    flags,
    junk_text,
    st.sampled_from(
        [
            "21:30-07:30",
            "22:00",
            "25:00-07:00",
            "07:30",
            "twilio",
            "log",
            "https://dav.example.com/",
            "dav.example.com",
            "127.0.0.1:5232",
            ":5232",
            "GR",
            "XX",
            "0",
            "17",
            "99999",
        ]
    ),
    values,
)


@st.composite
def configs(draw: st.DrawFn) -> str:
    config: dict[Any, Any] = {}
    for key in draw(st.lists(_keys(TOP_KEYS), max_size=5, unique=True)):
        if key in ("calendar", "sms", "email", "outcomes"):
            names = [o.name for o in SPEC if o.section == key]
            names += [
                f"{o.name}_{way}"
                for o in SPEC
                if o.section == key
                for way in ("env", "file", "command", "credential")
            ]
            config[key] = draw(
                st.one_of(st.dictionaries(_keys(tuple(names)), OPTION_VALUES, max_size=6), values)
            )
        elif key == "defaults":
            config[key] = draw(
                st.one_of(
                    st.dictionaries(
                        _keys(DEFAULT_KEYS),
                        st.one_of(durations, st.lists(offsets, max_size=3), choices, flags),
                        max_size=4,
                    ),
                    values,
                )
            )
        elif key != "commitments":
            config[key] = draw(OPTION_VALUES)
    source = st.one_of(
        st.just("bad.yaml"),
        st.dictionaries(
            _keys(SOURCE_KEYS), st.one_of(st.just("bad.yaml"), OPTION_VALUES), max_size=4
        ).map(lambda d: {"path": "bad.yaml", **d} if "path" not in d else d),
        values,
    )
    config["commitments"] = draw(st.one_of(st.lists(source, min_size=1, max_size=3), source))
    return dump(config, draw(st.integers(0, 2)))


@FUZZ
@given(config=configs())
def test_random_config(workdir: Path, config: str) -> None:
    code, out, err = validate(workdir, "bad.yaml", EXAMPLE_YAML, config)
    check(code, out, err, EXAMPLE_YAML)


# --- the ends of the ranges -------------------------------------------------------------


@FUZZ
@example(number=99_999_999_999, unit="d", key="alarms")
@given(
    number=st.integers(10**9, 10**30),
    unit=st.sampled_from(["w", "d", "h", "m", "s"]),
    key=st.sampled_from(["alarms", "sms", "duration", "after"]),
)
def test_huge_numbers_are_problems_not_crashes(
    workdir: Path, number: int, unit: str, key: str
) -> None:
    value = f"{'' if key in ('duration', 'after') else '-'}{number}{unit}"
    field = {
        "alarms": f"alarms: ['{value}']",
        "sms": f"sms: ['{value}']",
        "duration": f"duration: {value}",
        "after": f"follow_ups: [{{after: {value}}}]",
    }[key]
    text = f"commitments:\n  - title: Call Alex\n    when: 2026-11-30 10:00\n    {field}\n"
    code, out, err = validate(workdir, "bad.yaml", text)
    check(code, out, err, text)
    assert code == 65 and out.startswith("bad.yaml:4: ")


@FUZZ
@example(when="0001-01-01T00:30+05:00", follow=False)
@example(when="9999-12-30 10:00", follow=True)
@given(
    when=st.builds(
        lambda y, tail: f"{y:04d}-12-31 23:30{tail}",
        st.sampled_from([1, 2, 9998, 9999]),
        st.sampled_from(["", "+05:00", "-05:00", "Z"]),
    ),
    follow=st.booleans(),
)
def test_years_at_the_ends_of_the_calendar(workdir: Path, when: str, follow: bool) -> None:
    text = f"commitments:\n  - title: Call Alex\n    when: {when}\n"
    if follow:
        text += "    follow_ups: [{after: 5d}]\n"
    code, out, err = validate(workdir, "bad.yaml", text)
    check(code, out, err, text)
