"""A corpus of bad inputs: each must give the exact exit code and `path:line: message`.

Every file under `tests/corpus/` is named after what it reproduces. A case
copies its file(s) into a temporary directory under a predictable name
(`bad.yaml`, `bad.csv`, `config.yaml`, ...), writes a minimal config next to
it, and runs `reminderd validate` there, in process (and some in a real
process), then checks:

- the exact exit code (0 ok, 65 bad commitments, 66 missing input, 78 bad config);
- that one output line starts with the exact `path:line:` prefix and contains
  the message fragment;
- that no traceback and no "internal error" ever reaches the user.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from reminderd.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"

YAML_CONFIG = """\
timezone: Europe/Athens
commitments:
  - {file}
"""

SUMMARY_RE = re.compile(r"^\d+ errors? in \d+ files?; valid so far: ")
PROBLEM_RE = re.compile(r"^[^\s:]+:\d+: \S")

# A valid commitments file the config-error cases point at, so only the config is wrong.
HELPERS = {
    "commitments.yaml": "commitments: []\n",
    "commitments.csv": "title,when\n",
}


@dataclass(frozen=True)
class Case:
    corpus: str | None  # file under tests/corpus; None: the case writes no input file
    exit: int
    prefix: str | None  # exact start of the expected line, e.g. "bad.yaml:4:"; None for exit 0
    fragment: str  # text that line must contain
    config: str | None = None  # config text ({file} = the copied input); None: YAML_CONFIG
    target: str | None = None  # name the corpus file is copied to (default bad.<ext>)
    extra: tuple[tuple[str, str], ...] = ()  # more (corpus file, copied name) pairs
    real_process: bool = False  # also run through `python -m reminderd`
    name: str | None = None  # test id when there is no corpus file
    absent: tuple[str, ...] = ()  # text the expected line must not contain

    @property
    def id(self) -> str:
        return self.name or Path(self.corpus or "none").stem

    @property
    def is_config_case(self) -> bool:
        return self.target == "config.yaml"


def cfg(corpus: str, exit: int, prefix: str, fragment: str, **kw: object) -> Case:
    """A case whose corpus file is the config itself (copied to config.yaml)."""
    return Case(corpus, exit, prefix, fragment, target="config.yaml", **kw)  # type: ignore[arg-type]


MAPPED_CSV_CONFIG = """\
timezone: Europe/Athens
commitments:
  - path: {file}
    columns: {{title: Subject, when: "Due Date", contact: "Contact Name"}}
    date_format: "%d/%m/%Y %H:%M"
"""

# A CRM export with its own words for channel and status (matched in any case).
CRM_VALUES_CONFIG = """\
timezone: Europe/Athens
commitments:
  - path: {file}
    columns: {{title: Subject, when: "Due Date", contact: "Contact Name", channel: Type, status: State}}
    date_format: "%d/%m/%Y %H:%M"
    values:
      channel: {{Call: call, Meeting: visit}}
      status: {{Completed: done, Deferred: cancelled, Not Started: open}}
"""

CASES: list[Case] = [
    # --- YAML syntax -------------------------------------------------------------------
    # an unclosed quote runs to the end of the file: the line must be where it opens
    Case("yaml_syntax_unterminated_quote.yaml", 65, "bad.yaml:2:", "quoted"),
    Case(
        "yaml_syntax_mapping_values_not_allowed.yaml",
        65,
        "bad.yaml:4:",
        "YAML syntax error: mapping values are not allowed",
        real_process=True,
    ),
    Case("yaml_syntax_tab_indent.yaml", 65, "bad.yaml:3:", "tab character"),
    Case(
        "yaml_syntax_unclosed_flow_list.yaml", 65, "bad.yaml:5:", "did not find expected ',' or ']'"
    ),
    # 2-byte characters above must not move the line (marks count characters, not bytes)
    Case(
        "yaml_syntax_unclosed_flow_list_after_greek.yaml",
        65,
        "bad.yaml:5:",
        "did not find expected ',' or ']'",
    ),
    Case("yaml_two_documents.yaml", 65, "bad.yaml:3:", "document"),
    # --- wrong types --------------------------------------------------------------------
    Case(
        "yaml_commitments_is_mapping.yaml",
        65,
        "bad.yaml:3:",
        "'commitments' must be a list, not a mapping",
    ),
    Case("yaml_title_is_list.yaml", 65, "bad.yaml:2:", "'title' must be text, not a list"),
    Case(
        "yaml_purpose_is_mapping.yaml", 65, "bad.yaml:5:", "'purpose' must be text, not a mapping"
    ),
    Case("yaml_contact_is_list.yaml", 65, "bad.yaml:4:", "'contact' must be a mapping"),
    Case("yaml_entry_is_scalar.yaml", 65, "bad.yaml:2:", "a commitment must be a mapping"),
    Case("yaml_only_a_scalar.yaml", 65, "bad.yaml:1:", "must be a mapping with 'commitments:'"),
    Case("yaml_non_scalar_key.yaml", 65, "bad.yaml:4:", "a key must be plain text"),
    Case("yaml_merge_key.yaml", 65, "bad.yaml:4:", "merge keys (<<) are not supported"),
    Case(
        "yaml_alarms_is_mapping.yaml",
        65,
        "bad.yaml:4:",
        "'alarms' must be a list of offsets like [-1h, -10m], not a mapping",
    ),
    Case("yaml_follow_ups_is_text.yaml", 65, "bad.yaml:4:", "'follow_ups' must be a list"),
    # --- unknown keys, with "did you mean" ----------------------------------------------
    Case(
        "yaml_unknown_key_file_commitment.yaml",
        65,
        "bad.yaml:2:",
        "unknown key 'commitment' in a commitments file (did you mean 'commitments'?)",
    ),
    Case(
        "yaml_unknown_key_titel.yaml",
        65,
        "bad.yaml:2:",
        "unknown key 'titel' in a commitment (did you mean 'title'?)",
        real_process=True,
    ),
    Case(
        "yaml_unknown_key_contact_phnoe.yaml",
        65,
        "bad.yaml:6:",
        "unknown key 'phnoe' in contact (did you mean 'phone'?)",
    ),
    Case(
        "yaml_unknown_key_follow_up_afer.yaml",
        65,
        "bad.yaml:5:",
        "unknown key 'afer' in a follow-up (did you mean 'after'?)",
    ),
    Case(
        "yaml_unknown_key_defaults_duraton.yaml",
        65,
        "bad.yaml:3:",
        "unknown key 'duraton' in defaults (did you mean 'duration'?)",
    ),
    # --- dates, time zones, DST ---------------------------------------------------------
    Case("yaml_bad_date_month_13.yaml", 65, "bad.yaml:3:", "bad date/time '2026-13-30 10:00'"),
    Case("yaml_bad_date_words.yaml", 65, "bad.yaml:3:", "bad date/time 'next monday 10am'"),
    Case("yaml_date_without_time.yaml", 65, "bad.yaml:3:", "has no time of day"),
    Case("yaml_when_null.yaml", 65, "bad.yaml:3:", "commitment has no 'when'"),
    Case("yaml_missing_when.yaml", 65, "bad.yaml:2:", "commitment has no 'when'"),
    Case("yaml_missing_title.yaml", 65, "bad.yaml:2:", "commitment has no title"),
    Case(
        "yaml_dst_gap_athens.yaml",
        65,
        "bad.yaml:4:",
        "does not exist in Europe/Athens: the clocks jump forward that night (DST gap)",
        real_process=True,
    ),
    Case(
        "yaml_dst_fold_athens.yaml",
        65,
        "bad.yaml:4:",
        "is ambiguous in Europe/Athens: it happens twice when the clocks go back (DST fold); "
        "write the UTC offset: 2026-10-25T03:30+03:00 (first) or 2026-10-25T03:30+02:00 (second)",
    ),
    Case(
        "yaml_unknown_timezone_file.yaml",
        65,
        "bad.yaml:1:",
        "unknown time zone 'Europe/Athen' (did you mean 'Europe/Athens'?)",
    ),
    Case(
        "yaml_unknown_timezone_item.yaml",
        65,
        "bad.yaml:4:",
        "unknown time zone 'Mars/Olympus_Mons'",
    ),
    Case("yaml_when_year_1_with_offset.yaml", 65, "bad.yaml:3:", "0001-01-01T00:30+05:00"),
    Case("yaml_follow_up_past_year_9999.yaml", 65, "bad.yaml:3:", "9999-12-30 10:00"),
    # --- ids ----------------------------------------------------------------------------
    Case(
        "yaml_duplicate_id_same_file.yaml",
        65,
        "bad.yaml:5:",
        "duplicate id 'acme-close': also used at bad.yaml:2",
    ),
    Case(
        "yaml_duplicate_id_across_files_a.yaml",
        65,
        "b.yaml:3:",
        "duplicate id 'acme-close': also used at a.yaml:2",
        target="a.yaml",
        extra=(("yaml_duplicate_id_across_files_b.yaml", "b.yaml"),),
        config="timezone: Europe/Athens\ncommitments: [a.yaml, b.yaml]\n",
        real_process=True,
    ),
    Case(
        "yaml_duplicate_derived_id.yaml",
        65,
        "bad.yaml:5:",
        "also used at bad.yaml:2; give each an 'id:' of its own",
    ),
    Case(
        "yaml_duplicate_id_via_alias.yaml",
        65,
        "bad.yaml:3:",
        "duplicate id 'acme-close': also used at bad.yaml:2",
    ),
    Case("yaml_bad_id_chars.yaml", 65, "bad.yaml:2:", "id 'acme close/2026' may hold only"),
    # --- offsets and durations ----------------------------------------------------------
    Case("yaml_offset_no_unit.yaml", 65, "bad.yaml:4:", "alarms: offset '-10' has no unit"),
    Case("yaml_offset_garbage.yaml", 65, "bad.yaml:6:", "sms: bad offset 'half an hour before'"),
    Case("yaml_offset_over_a_year.yaml", 65, "bad.yaml:4:", "offset '-400d' is more than a year"),
    Case(
        "yaml_offset_huge_number.yaml",
        65,
        "bad.yaml:4:",
        "offset '-99999999999d' is more than a year",
    ),
    Case(
        "yaml_duration_negative.yaml",
        65,
        "bad.yaml:4:",
        "duration '-15m' must be a plain length without a sign",
    ),
    Case(
        "yaml_duration_no_unit.yaml",
        65,
        "bad.yaml:4:",
        "duration '15' has no unit",
        absent=("-1d", "-10m", "-PT15M"),
    ),
    Case("yaml_duration_zero.yaml", 65, "bad.yaml:4:", "duration '0m' must be longer than zero"),
    # --- contact ------------------------------------------------------------------------
    Case("yaml_phone_invalid.yaml", 65, "bad.yaml:6:", "phone '+30 123' is not a valid number"),
    Case(
        "yaml_phone_no_country_code.yaml",
        65,
        "bad.yaml:6:",
        "phone '210 123 4567' has no country code",
    ),
    Case(
        "yaml_email_invalid.yaml",
        65,
        "bad.yaml:6:",
        "email 'alex at acme dot example' is not an e-mail address",
    ),
    # --- choices, flags, follow-ups -----------------------------------------------------
    Case(
        "yaml_channel_cal.yaml",
        65,
        "bad.yaml:4:",
        "channel 'cal' must be one of call, visit, video, email, other (did you mean 'call'?)",
    ),
    Case(
        "yaml_status_don.yaml",
        65,
        "bad.yaml:4:",
        "status 'don' must be one of open, done, cancelled (did you mean 'done'?)",
    ),
    Case(
        "yaml_skip_weekends_maybe.yaml",
        65,
        "bad.yaml:4:",
        "skip_weekends 'maybe' must be true or false",
    ),
    Case("yaml_follow_up_without_after.yaml", 65, "bad.yaml:6:", "follow-up has no 'after'"),
    # channel and status are matched without regard to case, in YAML and CSV
    Case("yaml_enum_values_any_case_ok.yaml", 0, None, "ok: 1 file, 2 commitments (1 open)"),
    Case("csv_enum_values_any_case_ok.csv", 0, None, "ok: 1 file, 3 commitments (1 open)"),
    # --- limits on what one field may hold ----------------------------------------------
    Case(
        "yaml_title_too_long.yaml",
        65,
        "bad.yaml:2:",
        "title is 269 characters; at most 200",
        absent=("commitment has no title",),
    ),
    Case("yaml_agenda_too_many_items.yaml", 65, "bad.yaml:4:", "agenda has 51 items; at most 50"),
    Case(
        "csv_purpose_too_long.csv",
        65,
        "bad.csv:3:",
        "purpose is 2399 characters; at most 2000",
        absent=("why why",),
    ),
    # problems come in line order, whatever order they were found in
    Case(
        "yaml_errors_in_line_order.yaml",
        65,
        "bad.yaml:7:",
        "unknown key 'timezon' in a commitments file (did you mean 'timezone'?)",
    ),
    # --- empty, odd bytes, hostile YAML -------------------------------------------------
    Case("yaml_empty_file.yaml", 65, "bad.yaml:1:", "file is empty", real_process=True),
    Case("yaml_whitespace_only.yaml", 65, "bad.yaml:1:", "file is empty"),
    Case("yaml_comment_only.yaml", 65, "bad.yaml:1:", "file is empty"),
    Case("yaml_utf8_bom_ok.yaml", 0, None, "ok: 1 file, 1 commitment"),
    Case("yaml_explicit_nulls_ok.yaml", 0, None, "ok: 1 file, 1 commitment"),
    Case(
        "yaml_latin1_bytes.yaml",
        65,
        "bad.yaml:2:",
        "byte 0xe9 at column 20 is not valid utf-8 (save it as UTF-8",
        real_process=True,
    ),
    Case("yaml_nul_byte.yaml", 65, "bad.yaml:3:", "contains a NUL byte"),
    Case(
        "yaml_control_char_after_greek.yaml",
        65,
        "bad.yaml:15:",
        "control characters are not allowed",
    ),
    Case(
        "yaml_duplicate_key.yaml",
        65,
        "bad.yaml:5:",
        "key 'title' appears twice in the same mapping (first at line 2)",
    ),
    # 9 problems, one per entry on the page (the summary count is checked): never 9**9
    Case(
        "yaml_alias_bomb.yaml",
        65,
        "bad.yaml:11:",
        "a commitment must be a mapping with title and when, not a list",
        real_process=True,
    ),
    Case("yaml_recursive_alias.yaml", 65, "bad.yaml:4:", "alias '*loop' refers to itself"),
    Case("yaml_only_document_marker.yaml", 65, "bad.yaml:1:", "empty"),
    # 1000 levels on one line: libyaml's own limit (PyYAML 6.0.4) must not speak first
    Case(
        "yaml_deep_nesting.yaml",
        65,
        "bad.yaml:4:",
        "nested more than 32 levels deep",
        absent=("YAML syntax error",),
    ),
    # --- CSV ----------------------------------------------------------------------------
    Case("csv_only_blank_lines.csv", 65, "bad.csv:1:", "file is empty"),
    Case("csv_only_commas.csv", 65, "bad.csv:1:", "no header row"),
    Case(
        "csv_unknown_header_titel.csv",
        65,
        "bad.csv:1:",
        "unknown column 'titel' (did you mean 'title'?); map a CRM export's columns",
    ),
    Case("csv_missing_required_when.csv", 65, "bad.csv:1:", "no 'when' column in the header"),
    Case(
        "csv_duplicate_column.csv", 65, "bad.csv:1:", "column 'title' appears twice in the header"
    ),
    Case(
        "csv_ragged_row.csv",
        65,
        "bad.csv:3:",
        "row has 4 cells but the header (line 1) has 3",
        real_process=True,
    ),
    Case(
        "csv_ragged_row_after_multiline_cell.csv",
        65,
        "bad.csv:5:",
        "row has 3 cells but the header (line 1) has 4",
    ),
    Case("csv_unterminated_quote.csv", 65, "bad.csv:3:", "CSV error: unexpected end of data"),
    Case("csv_text_after_closing_quote.csv", 65, "bad.csv:3:", "CSV error:"),
    Case(
        "csv_bad_date_with_date_format.csv",
        65,
        "bad.csv:3:",
        "when '2026-12-01 10:00' does not match the date format '%d/%m/%Y %H:%M'",
        config=MAPPED_CSV_CONFIG,
    ),
    Case(
        "csv_mapped_column_missing.csv",
        65,
        "bad.csv:1:",
        "column 'Subjekt' (mapped to title) is not in the header (did you mean 'Subject'?)",
        config="timezone: Europe/Athens\ncommitments:\n  - path: {file}\n"
        "    columns: {{title: Subjekt, when: Due Date}}\n",
    ),
    Case("csv_latin1_bytes.csv", 65, "bad.csv:3:", "byte 0xe9 at column 9 is not valid utf-8"),
    Case(
        "csv_latin1_bytes.csv",
        0,
        None,
        "ok: 1 file, 2 commitments",
        config="timezone: Europe/Athens\ncommitments:\n  - {{path: {file}, encoding: latin-1}}\n",
        name="csv_latin1_bytes_with_encoding_ok",
    ),
    Case("csv_cr_line_endings_latin1.csv", 65, "bad.csv:3:", "byte 0xe9 at column 9"),
    Case(
        "csv_mapping_without_when.csv",
        78,
        "config.yaml:4:",
        "'when'",
        config="timezone: Europe/Athens\ncommitments:\n  - path: {file}\n"
        "    columns: {{title: Subject}}\n",
    ),
    Case("csv_newline_in_bad_cell.csv", 65, "bad.csv:2:", "bad offset 'soon"),
    Case("csv_utf8_bom_ok.csv", 0, None, "ok: 1 file, 1 commitment"),
    Case("csv_nul_byte.csv", 65, "bad.csv:3:", "contains a NUL byte"),
    Case("csv_bad_phone_row.csv", 65, "bad.csv:3:", "phone '+30 12' is not"),
    Case("csv_bad_offset_cell.csv", 65, "bad.csv:3:", "alarms: bad offset 'soon'"),
    Case("csv_dst_gap_athens.csv", 65, "bad.csv:2:", "(DST gap)"),
    Case("csv_semicolon_without_delimiter.csv", 65, "bad.csv:1:", "unknown column 'id;title;when'"),
    Case(
        "csv_tab_delimiter_ok.csv",
        0,
        None,
        "ok: 1 file, 1 commitment",
        config='timezone: Europe/Athens\ncommitments:\n  - path: {file}\n    delimiter: "\\t"\n',
    ),
    # a CRM's own words for channel and status, through `values:` (matched in any case)
    Case(
        "csv_crm_values_mapped_ok.csv",
        0,
        None,
        "ok: 1 file, 4 commitments (2 open)",
        config=CRM_VALUES_CONFIG,
    ),
    Case(
        "csv_crm_value_not_mapped.csv",
        65,
        "bad.csv:3:",
        "channel 'Phone Call' must be one of call, visit, video, email, other; map the export's "
        'own words in the config, e.g. values: {channel: {"Phone Call": call}}',
        config=CRM_VALUES_CONFIG,
        real_process=True,
    ),
    Case(
        "csv_crm_value_not_mapped.csv",
        65,
        "bad.csv:4:",
        "status 'Waiting' must be one of open, done, cancelled; map the export's own words "
        'in the config, e.g. values: {status: {"Waiting": open}}',
        config=CRM_VALUES_CONFIG,
        name="csv_crm_value_not_mapped_status",
    ),
    # --- the config file itself (exit 78), and missing files (exit 66) ------------------
    cfg(
        "config_unknown_key_timezon.yaml",
        78,
        "config.yaml:1:",
        "unknown key 'timezon' in the config (did you mean 'timezone'?)",
        real_process=True,
    ),
    cfg(
        "config_unknown_key_sms_form.yaml",
        78,
        "config.yaml:6:",
        "unknown key 'form' in 'sms' (did you mean 'from'?)",
    ),
    cfg(
        "config_bad_timezone.yaml",
        78,
        "config.yaml:1:",
        "timezone: unknown time zone 'Europe/Athen' (did you mean 'Europe/Athens'?)",
    ),
    cfg(
        "config_sms_bad_to.yaml",
        78,
        "config.yaml:6:",
        "sms.to: phone '6912345' has no country code",
    ),
    cfg(
        "config_sms_twilio_without_from.yaml",
        78,
        "config.yaml:4:",
        "sms needs 'from' (a number) or 'messaging_service_sid'",
    ),
    cfg(
        "config_sms_provider_twillio.yaml",
        78,
        "config.yaml:5:",
        "sms.provider: 'twillio' must be one of twilio, log (did you mean 'twilio'?)",
    ),
    cfg(
        "config_quiet_hours_no_dash.yaml",
        78,
        "config.yaml:7:",
        "sms.quiet_hours: '22:00' must be a window like 21:30-07:30",
    ),
    cfg(
        "config_quiet_hours_25h.yaml",
        78,
        "config.yaml:7:",
        "quiet_hours start '25:00' must be a time of day",
    ),
    cfg(
        "config_two_secret_ways.yaml",
        78,
        "config.yaml:8:",
        "calendar.password: give only one of password_env, password_file",
    ),
    cfg(
        "config_columns_unknown_key.yaml",
        78,
        "config.yaml:5:",
        "unknown key 'titel' in columns (did you mean 'title'?)",
    ),
    cfg("config_syntax_error.yaml", 78, "config.yaml:4:", "YAML syntax error"),
    cfg("config_is_a_list.yaml", 78, "config.yaml:1:", "the config must be a mapping of options"),
    cfg(
        "config_calendar_bad_url.yaml",
        78,
        "config.yaml:5:",
        "calendar.url: 'dav.example.com/dav/' must start with http:// or https://",
    ),
    cfg(
        "config_commitments_wrong_suffix.yaml",
        78,
        "config.yaml:3:",
        "'commitments.txt': use a .yaml, .yml or .csv file",
    ),
    cfg(
        "config_encoding_undefined.yaml",
        78,
        "config.yaml:4:",
        "unknown or unusable encoding 'undefined'",
    ),
    cfg(
        "config_missing_commitments_file.yaml",
        66,
        "reminderd: not-there.yaml:",
        "file not found",
        real_process=True,
    ),
    # every missing file is named, not only the first
    # (the second one's own line; test_inputs_files checks the whole output)
    cfg(
        "config_two_missing_commitments_files.yaml",
        66,
        "reminderd: also-not-there.csv:",
        "file not found",
        real_process=True,
    ),
    cfg(
        "config_values_unknown_key_chanel.yaml",
        78,
        "config.yaml:5:",
        "unknown key 'chanel' in values (did you mean 'channel'?); only channel and status can be mapped",
    ),
    cfg(
        "config_values_not_an_enum_field.yaml",
        78,
        "config.yaml:6:",
        "values: 'title' has no fixed values to map; only channel and status can be mapped",
    ),
    cfg(
        "config_values_bad_target.yaml",
        78,
        "config.yaml:7:",
        "values.status: 'Completed' maps to 'finished'; use one of open, done, cancelled",
    ),
    cfg(
        "config_values_on_yaml_file.yaml",
        78,
        "config.yaml:3:",
        "'commitments.yaml': values applies to CSV files only",
    ),
    # found when the config is read, not as an internal error when the secret is first used
    cfg(
        "config_command_unclosed_quote.yaml",
        78,
        "config.yaml:6:",
        "calendar.password_command: the command has an unclosed quote",
        real_process=True,
    ),
    Case(
        None,
        66,
        "reminderd: config.yaml:",
        "config file not found",
        name="config_missing",
        real_process=True,
    ),
]


def _setup(case: Case, root: Path) -> None:
    for name, text in HELPERS.items():
        (root / name).write_text(text, encoding="utf-8")
    if case.corpus is None:
        return
    source = CORPUS / case.corpus
    target = case.target or "bad" + source.suffix
    shutil.copyfile(source, root / target)
    for corpus, name in case.extra:
        shutil.copyfile(CORPUS / corpus, root / name)
    if not case.is_config_case:
        text = (case.config or YAML_CONFIG).format(file=target)
        (root / "config.yaml").write_text(text, encoding="utf-8")


def _check(case: Case, code: int, out: str, err: str) -> None:
    both = out + err
    assert "Traceback (most recent call last)" not in both, both
    assert "reminderd: internal error" not in both, both
    assert code == case.exit, f"exit {code}, expected {case.exit}\nstdout:\n{out}\nstderr:\n{err}"
    if case.exit == 0:
        assert case.fragment in out, out
        return
    assert case.prefix is not None
    # commitment problems go to stdout (validate's report); config problems and missing
    # files are errors of the command and may go to stderr
    where = out if case.exit == 65 else both
    lines = where.splitlines()
    hits = [ln for ln in lines if ln.startswith(case.prefix + " ") or ln == case.prefix]
    assert hits, f"no line starts with {case.prefix!r}\noutput:\n{both}"
    good = [ln for ln in hits if case.fragment in ln]
    assert good, (
        f"no line starting with {case.prefix!r} contains {case.fragment!r}\noutput:\n{both}"
    )
    assert any(all(text not in ln for text in case.absent) for ln in good), (
        f"none of {case.absent} should be in {good}"
    )
    if case.exit == 65:
        assert lines and SUMMARY_RE.match(lines[-1]), f"no summary line last:\n{out}"
        # one problem per line: a value echoed in a message must not break the format
        for ln in lines[:-1]:
            assert PROBLEM_RE.match(ln), f"not a 'path:line: message' line: {ln!r}\n{out}"
        count = int(lines[-1].split()[0])
        assert len(lines) - 1 == count, f"the summary counts {count} errors:\n{out}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_case_in_process(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _setup(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["--config", "config.yaml", "validate"])
    captured = capsys.readouterr()
    _check(case, code, captured.out, captured.err)


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        cwd=root,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.real_process])
def test_case_in_a_real_process(case: Case, tmp_path: Path) -> None:
    _setup(case, tmp_path)
    done = _run(tmp_path, "validate", "--config", "config.yaml")  # --config after the command
    _check(case, done.returncode, done.stdout, done.stderr)


# --- cases built by the test (too big, or too dangerous, to keep in the corpus)


def test_corpus_is_complete() -> None:
    """Every corpus file is used by a case, and every case's files exist."""
    used = {c.corpus for c in CASES} | {name for c in CASES for name, _ in c.extra}
    present = {p.name for p in CORPUS.iterdir()}
    assert used - {None} <= present
    assert present <= used, f"corpus files without a case: {sorted(present - used)}"
    assert len(present) >= 45


def test_file_of_50_mb_is_refused_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = (
        "  - title: Call number {n}\n    when: 2026-11-30 10:00\n    purpose: " + "x" * 200 + "\n"
    )
    chunk = "".join(entry.format(n=n) for n in range(1000)).encode()
    with open(tmp_path / "bad.yaml", "wb") as handle:
        handle.write(b"commitments:\n")
        while handle.tell() < 50 * 1024 * 1024:
            handle.write(chunk)
    (tmp_path / "config.yaml").write_text(YAML_CONFIG.format(file="bad.yaml"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main(["--config", "config.yaml", "validate"])
    out = capsys.readouterr().out
    assert code == 65
    assert "Traceback" not in out
    first = out.splitlines()[0]
    assert first.startswith("bad.yaml:1: ")
    assert "MB, over the 20 MB limit" in first


@pytest.mark.parametrize("where", ["commitments", "config"])
def test_very_deep_nesting_does_not_crash_the_process(tmp_path: Path, where: str) -> None:
    # In a real process: before 988f582 libyaml's recursive composer died here with SIGSEGV
    # (exit -11) from about 40,000 levels, so an in-process run would kill pytest itself.
    depth = 100_000
    bomb = "[" * depth + "]" * depth
    if where == "commitments":
        (tmp_path / "bad.yaml").write_text(f"commitments: {bomb}\n", encoding="utf-8")
        (tmp_path / "config.yaml").write_text(YAML_CONFIG.format(file="bad.yaml"), encoding="utf-8")
        expected_exit, prefix = 65, "bad.yaml:1: "
    else:
        (tmp_path / "commitments.yaml").write_text("commitments: []\n", encoding="utf-8")
        (tmp_path / "config.yaml").write_text(
            f"timezone: Europe/Athens\ncommitments: [commitments.yaml]\ncalendar: {bomb}\n",
            encoding="utf-8",
        )
        expected_exit, prefix = 78, "config.yaml:3: "
    done = _run(tmp_path, "--config", "config.yaml", "validate")
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == expected_exit, (done.returncode, done.stdout, done.stderr)
    assert any(
        ln == prefix + "nested more than 32 levels deep"
        for ln in (done.stdout + done.stderr).splitlines()
    ), done.stdout + done.stderr
