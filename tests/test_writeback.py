"""Outcomes written back into YAML commitment files: only the edited values change."""

from __future__ import annotations

import difflib
import errno
import os
import stat
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reminderd.sources.files as files
from reminderd.model import Commitment, Contact, SourceRef, Status
from reminderd.outcomes import writeback
from reminderd.outcomes.writeback import (
    FileEdit,
    NotWritable,
    WriteConflict,
    WriteFailed,
    edited_text,
    write_back,
)
from reminderd.sources.entries import FileContext, derive_id
from reminderd.sources.files import text_digest
from reminderd.sources.yamlfile import commitments_from_yaml

ROOT = Path(__file__).resolve().parent.parent
ATHENS = ZoneInfo("Europe/Athens")

FILE = """\
# My promises. Keep this comment.
timezone: Europe/Athens   # the file's zone
defaults:
  alarms: [-1h]
commitments:
  - id: acme
    title: "Call Alex at ACME"     # quoted on purpose
    when: 2026-11-30 10:00         # first call
    contact: {name: Alex, phone: "+30 21 0123 4567"}
    status: open   # still open
    follow_ups:
      - after: 2d
        purpose: Send the case study   # the PDF
      - 5d   # bare duration
      # a comment after the last follow-up

  # Globex, a derived id: no id key
  - title: Café με τη Ζωή
    when: '2026-12-02 15:30'
    contact: {name: Zoë, company: Globex}
    purpose: Show the reporting module
    tags: [hot, "q4"]

  - id: hooli
    title: Renewal call
    when: 2027-01-12T11:00+02:00
    follow_ups: [{after: 7d, purpose: Chase the signature}, 3d]
"""


def put(tmp_path: Path, text: str = FILE, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def apply(path: Path, *edits: FileEdit) -> str:
    return write_back(path, text_digest(path.read_text(encoding="utf-8-sig")), edits)


def diff(old: str, new: str) -> tuple[list[str], list[str]]:
    """(lines removed, lines added), with their line endings."""
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(True), new.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def load(text: str, zone: str = "Europe/Athens") -> dict[str, Commitment]:
    ctx = FileContext("c.yaml", zone)
    found = commitments_from_yaml(text, ctx)
    assert ctx.problems == []
    return {c.id: c for c in found}


def _unplaced(found: dict[str, Commitment], but: str) -> dict[str, Commitment]:
    """The commitments other than `but`, without their lines (an added line moves those below)."""
    return {k: replace(v, source=SourceRef("c.yaml", 0)) for k, v in found.items() if k != but}


GLOBEX = derive_id("Café με τη Ζωή", Contact(name="Zoë", company="Globex"))


# -- each kind of edit changes exactly its lines


def test_status_changes_one_line_and_keeps_its_comment(tmp_path: Path) -> None:
    path = put(tmp_path)
    digest = apply(path, FileEdit("acme", status="done"))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == (
        ["    status: open   # still open\n"],
        ["    status: done   # still open\n"],
    )
    assert digest == text_digest(new)
    assert load(new)["acme"].status is Status.DONE


def test_status_added_after_the_last_value_not_after_the_blank_line(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit(GLOBEX, status="done"))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == ([], ["    status: done\n"])
    assert '    tags: [hot, "q4"]\n    status: done\n\n  - id: hooli\n' in new
    assert load(new)[GLOBEX].status is Status.DONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03 15:00", datetime(2026, 12, 3, 15, 0, tzinfo=ATHENS)),
        ("2026-12-03T15:00:00+02:00", datetime(2026, 12, 3, 13, 0, tzinfo=ZoneInfo("UTC"))),
        ("2026-12-03 15:00:00", datetime(2026, 12, 3, 15, 0, tzinfo=ATHENS)),
    ],
)
def test_first_touch_moved_reads_back_as_that_time(
    tmp_path: Path, text: str, expected: datetime
) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("acme", when=(0, text)))
    new = path.read_text(encoding="utf-8")
    removed, added = diff(FILE, new)
    assert removed == ["    when: 2026-11-30 10:00         # first call\n"]
    assert len(added) == 1 and added[0].startswith("    when: ") and "# first call" in added[0]
    assert load(new)["acme"].start == expected
    # a YAML 1.1 reader (PyYAML) sees text, not a timestamp that would lose the zone
    assert yaml.safe_load(new)["commitments"][0]["when"] == text


def test_quoted_when_keeps_its_quotes(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit(GLOBEX, when=(0, "2026-12-04 09:00")))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == (
        ["    when: '2026-12-02 15:30'\n"],
        ["    when: '2026-12-04 09:00'\n"],
    )


def test_follow_up_when_on_a_mapping(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("acme", when=(1, "2026-12-03 15:00")))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == ([], ["        when: 2026-12-03 15:00\n"])
    steps = load(new)["acme"].follow_ups
    assert steps[0].at == datetime(2026, 12, 3, 15, 0, tzinfo=ATHENS)
    assert steps[0].purpose == "Send the case study" and steps[1].after == timedelta(days=5)


def test_follow_up_when_on_a_bare_duration(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("acme", when=(2, "2026-12-09 10:00")))
    new = path.read_text(encoding="utf-8")
    removed, added = diff(FILE, new)
    assert removed == ["      - 5d   # bare duration\n"]
    assert added == ["      - after: 5d   # bare duration\n", "        when: 2026-12-09 10:00\n"]
    assert load(new)["acme"].follow_ups[1].at == datetime(2026, 12, 9, 10, 0, tzinfo=ATHENS)


def test_follow_up_when_in_a_flow_list(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("hooli", when=(2, "2027-01-20 10:00")))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == (
        ["    follow_ups: [{after: 7d, purpose: Chase the signature}, 3d]\n"],
        [
            "    follow_ups: [{after: 7d, purpose: Chase the signature}, "
            "{after: 3d, when: 2027-01-20 10:00}]\n"
        ],
    )
    steps = load(new)["hooli"].follow_ups
    assert steps[1].at == datetime(2027, 1, 20, 10, 0, tzinfo=ATHENS)


def test_append_creates_follow_ups(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit(GLOBEX, append=("2026-12-05 11:00", "Send the quote")))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == (
        [],
        [
            "    follow_ups:\n",
            "      - when: 2026-12-05 11:00\n",
            "        purpose: Send the quote\n",
        ],
    )
    (step,) = load(new)[GLOBEX].follow_ups
    assert (
        step.at == datetime(2026, 12, 5, 11, 0, tzinfo=ATHENS) and step.purpose == "Send the quote"
    )


def test_append_to_a_block_list_goes_before_its_trailing_comment(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("acme", append=("2026-12-20 09:00", None)))
    new = path.read_text(encoding="utf-8")
    assert diff(FILE, new) == ([], ["      - when: 2026-12-20 09:00\n"])
    assert (
        "      - 5d   # bare duration\n      - when: 2026-12-20 09:00\n"
        "      # a comment after the last follow-up\n" in new
    )
    assert load(new)["acme"].follow_ups[-1].at == datetime(2026, 12, 20, 9, 0, tzinfo=ATHENS)


def test_append_to_a_flow_list(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("hooli", append=("2027-01-30 10:00", "Last call: yes or no")))
    new = path.read_text(encoding="utf-8")
    removed, added = diff(FILE, new)
    assert len(removed) == 1 and len(added) == 1
    assert load(new)["hooli"].follow_ups[-1].purpose == "Last call: yes or no"


def test_several_edits_at_once(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(
        path,
        FileEdit("acme", status="done"),
        FileEdit("hooli", when=(0, "2027-01-13 11:00"), append=("2027-01-20 11:00", "Chase")),
        FileEdit(GLOBEX, status="cancelled"),
    )
    found = load(path.read_text(encoding="utf-8"))
    assert found["acme"].status is Status.DONE and found[GLOBEX].status is Status.CANCELLED
    assert found["hooli"].start == datetime(2027, 1, 13, 11, 0, tzinfo=ATHENS)
    assert found["hooli"].follow_ups[-1].purpose == "Chase"


def test_derived_id_uses_the_normalised_phone(tmp_path: Path) -> None:
    text = "commitments:\n  - title: Call Bob\n    when: 2026-12-01 10:00\n    contact: {phone: 210 123 4567}\n"
    path = put(tmp_path, text)
    ident = derive_id("Call Bob", Contact(phone="+302101234567"))
    with pytest.raises(NotWritable):
        apply(path, FileEdit(ident, status="done"))  # no region: this id is not derivable
    digest = write_back(
        path, text_digest(text), [FileEdit(ident, status="done")], phone_region="GR"
    )
    assert path.read_text(encoding="utf-8") == text + "    status: done\n"
    assert digest == text_digest(text + "    status: done\n")


# -- the examples shipped with the project


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_change_only_the_edited_lines(tmp_path: Path, example: Path) -> None:
    text = example.read_text(encoding="utf-8")
    found = load(text)
    for ident, commitment in found.items():
        path = put(tmp_path, text)
        edits = [FileEdit(ident, when=(0, "2026-12-24 09:30"))]
        if commitment.status is Status.OPEN:
            edits.append(FileEdit(ident, status="done"))
        apply(path, *edits)
        new = path.read_text(encoding="utf-8")
        removed, added = diff(text, new)
        assert len(removed) == 1 and "when:" in removed[0] and "2026-12-24 09:30" in "".join(added)
        assert len(added) == len(edits)
        after = load(new)
        assert after[ident].start == datetime(2026, 12, 24, 9, 30, tzinfo=after[ident].start.tzinfo)
        assert after[ident].status is (
            Status.DONE if commitment.status is Status.OPEN else commitment.status
        )
        assert _unplaced(after, ident) == _unplaced(found, ident)


# -- layout kept: line endings, BOM, no final newline


def test_crlf_bom_and_no_final_newline_are_kept(tmp_path: Path) -> None:
    text = FILE.rstrip("\n").replace("\n", "\r\n")
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    digest = write_back(
        path, text_digest(text), [FileEdit("acme", status="done"), FileEdit("hooli", status="done")]
    )
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and not raw.endswith(b"\n")
    new = raw[3:].decode("utf-8")
    assert "\n" not in new.replace("\r\n", "")
    assert diff(text, new) == (
        [
            "    status: open   # still open\r\n",
            "    follow_ups: [{after: 7d, purpose: Chase the signature}, 3d]",
        ],
        [
            "    status: done   # still open\r\n",
            "    follow_ups: [{after: 7d, purpose: Chase the signature}, 3d]\r\n",
            "    status: done",
        ],
    )
    assert digest == text_digest(new)


def test_mixed_indentation(tmp_path: Path) -> None:
    # the list of commitments at offset 0, follow_ups at offset 4: ruamel has one setting,
    # but only the lines around each change need to be as ruamel would write them
    text = (
        "commitments:\n- id: a\n  title: A\n  when: 2026-12-01 10:00\n"
        "  follow_ups:\n      - 2d\n      - 3d\n"
    )
    path = put(tmp_path, text)
    apply(path, FileEdit("a", status="done", when=(2, "2026-12-09 10:00")))
    assert path.read_text(encoding="utf-8") == text.replace(
        "      - 3d\n", "      - after: 3d\n        when: 2026-12-09 10:00\n  status: done\n"
    )


# -- idempotence


def test_second_application_writes_nothing(tmp_path: Path) -> None:
    path = put(tmp_path)
    edits = (
        FileEdit("acme", status="done", when=(2, "2026-12-09 10:00")),
        FileEdit(GLOBEX, append=("2026-12-05 11:00", "Send the quote")),
        FileEdit("hooli", when=(0, "2027-01-13 11:00")),
    )
    digest = apply(path, *edits)
    before = path.stat()
    assert apply(path, *edits) == digest
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_edit_already_in_the_file_writes_nothing(tmp_path: Path) -> None:
    text = FILE.replace("status: open", "status: Done").replace(
        "3d]", "{when: '2027-01-20 10:00', purpose: Chase}]"
    )
    path = put(tmp_path, text)
    before = path.stat()
    edits = [
        FileEdit("acme", status="done", when=(0, "2026-11-30 10:00")),
        FileEdit(GLOBEX, when=(0, "2026-12-02 15:30")),
        FileEdit("hooli", append=("2027-01-20 10:00", "Chase"), when=(2, "2027-01-20 10:00")),
    ]
    assert write_back(path, text_digest(text), edits) == text_digest(text)
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.read_text() == text


# -- refusals: nothing written, messages without the file's content


def test_conflict_when_the_file_changed(tmp_path: Path) -> None:
    path = put(tmp_path)
    old = text_digest(FILE)
    path.write_text(FILE.replace("Renewal call", "Renewal call!"), encoding="utf-8")
    with pytest.raises(WriteConflict) as caught:
        write_back(path, old, [FileEdit("acme", status="done")])
    assert str(caught.value).startswith(f"{path}: ")
    assert "changed since reminderd read it" in str(caught.value)
    assert "outcome stays in the state" in str(caught.value)
    assert "Renewal" not in str(caught.value)
    assert path.read_text(encoding="utf-8") == FILE.replace("Renewal call", "Renewal call!")


def test_conflict_when_the_user_saves_during_the_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(tmp_path)
    real = writeback.edited_text

    def user_saves_meanwhile(*args: object, **kwargs: object) -> str:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        path.write_text(FILE + "# mine\n", encoding="utf-8")
        return result

    monkeypatch.setattr(writeback, "edited_text", user_saves_meanwhile)
    with pytest.raises(WriteConflict):
        apply(path, FileEdit("acme", status="done"))
    assert path.read_text(encoding="utf-8") == FILE + "# mine\n"
    assert os.listdir(tmp_path) == ["c.yaml"]


def test_conflict_when_the_file_is_gone(tmp_path: Path) -> None:
    with pytest.raises(WriteConflict):
        write_back(tmp_path / "gone.yaml", text_digest(FILE), [FileEdit("acme", status="done")])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (FileEdit("nobody", status="done"), "no commitment 'nobody'"),
        (FileEdit(GLOBEX, append=("2026-12-05 11:00", None), inherited_follow_ups=2), "defaults"),
        (FileEdit(GLOBEX, when=(1, "2026-12-05 11:00"), inherited_follow_ups=1), "defaults"),
        (FileEdit(GLOBEX, when=(1, "2026-12-05 11:00")), "has no touch 1"),
        (FileEdit("acme", when=(3, "2026-12-05 11:00")), "has no touch 3"),
    ],
)
def test_not_writable(tmp_path: Path, edit: FileEdit, match: str) -> None:
    path = put(tmp_path)
    with pytest.raises(NotWritable, match=match) as caught:
        apply(path, edit)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "Zoë" not in message and "Alex" not in message
    assert path.read_text(encoding="utf-8") == FILE


def test_own_follow_ups_override_inherited_ones(tmp_path: Path) -> None:
    path = put(tmp_path)
    apply(path, FileEdit("acme", append=("2026-12-20 09:00", None), inherited_follow_ups=3))
    assert load(path.read_text(encoding="utf-8"))["acme"].follow_ups[-1].at is not None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "x: &a [1]\ncommitments:\n  - id: a\n    title: A\n    when: 2026-12-01 10:00\n"
            "    tags: *a\n",
            "anchor or alias",
        ),
        (
            "commitments:\n  - &one\n    id: a\n    title: A\n    when: 2026-12-01 10:00\n",
            "anchor or alias",
        ),
        (
            "commitments:\n  - id: a\n    title: A\n    when: 2026-12-01 10:00\n---\nx: 1\n",
            "one YAML",
        ),
        ("commitments:\n  - id: a\n    title: A\n  when: [\n", "one YAML"),
        (
            "commitments:\n  - id: a\n    title: A\n    when: 2026-12-01 10:00\n    id: b\n",
            "one YAML",
        ),
    ],
    ids=["alias", "anchor", "two-documents", "syntax", "duplicate-key"],
)
def test_not_writable_files(tmp_path: Path, text: str, match: str) -> None:
    path = put(tmp_path, text)
    with pytest.raises(NotWritable, match=match):
        apply(path, FileEdit("a", status="done"))
    assert path.read_text(encoding="utf-8") == text


def test_anchors_elsewhere_do_not_stop_other_items(tmp_path: Path) -> None:
    text = (
        "defaults: &d\n  duration: 15m\ncommitments:\n  - id: a\n    title: A\n"
        "    when: 2026-12-01 10:00\n    alarms: &al [-1h]\n  - id: b\n    title: B\n"
        "    when: 2026-12-01 10:00\n"
    )
    path = put(tmp_path, text)
    apply(path, FileEdit("b", status="done"))
    assert path.read_text(encoding="utf-8") == text + "    status: done\n"


def test_duplicate_ids_are_not_guessed_between(tmp_path: Path) -> None:
    text = "commitments:\n  - {id: a, title: A, when: 2026-12-01 10:00}\n  - {id: a, title: B, when: 2026-12-01 10:00}\n"
    path = put(tmp_path, text)
    with pytest.raises(NotWritable, match="more than one"):
        apply(path, FileEdit("a", status="done"))


def test_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    with pytest.raises(NotWritable, match="not a regular file"):
        write_back(fifo, "x", [FileEdit("a", status="done")])


def test_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = put(tmp_path)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(NotWritable, match="limit"):
        apply(path, FileEdit("acme", status="done"))
    assert path.read_text(encoding="utf-8") == FILE


# -- atomic replace


def test_failed_rename_leaves_the_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(tmp_path)

    def broken(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(WriteFailed, match="No space left") as caught:
        apply(path, FileEdit("acme", status="done"))
    assert isinstance(caught.value, NotWritable)
    assert path.read_text(encoding="utf-8") == FILE
    assert os.listdir(tmp_path) == ["c.yaml"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_a_file_reminderd_may_not_write_is_refused_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Root's file under a service's dynamic user, or a read-only mount: not a passing
    failure to retry at every read, but an outcome that stays in the state."""
    path = put(tmp_path)

    def refused(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(NotWritable, match="the outcome is kept in the state") as caught:
        apply(path, FileEdit("acme", status="done"))
    assert not isinstance(caught.value, WriteFailed)
    assert path.read_text(encoding="utf-8") == FILE
    assert os.listdir(tmp_path) == ["c.yaml"]


def test_symlink_kept_and_target_written_with_its_mode(tmp_path: Path) -> None:
    real = put(tmp_path, name="real.yaml")
    real.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(real.name)
    apply(link, FileEdit("acme", status="done"))
    assert link.is_symlink() and os.readlink(link) == "real.yaml"
    assert load(real.read_text(encoding="utf-8"))["acme"].status is Status.DONE
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link.yaml", "real.yaml"]


# -- property: comments and blank lines anywhere around items stay where they are

_FILLER = st.lists(
    st.sampled_from(["", "# note", "  # indented note", "    # deep note", "#"]), max_size=3
)
_ITEM = [
    "  - id: {ident}",
    "    title: Item {ident}",
    "    when: 2026-12-01 10:00",
    "    channel: call",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fillers=st.lists(_FILLER, min_size=13, max_size=13),
    target=st.integers(0, 2),
    kind=st.sampled_from(["status", "when", "append"]),
)
def test_comments_and_blank_lines_stay_put(
    fillers: list[list[str]], target: int, kind: str
) -> None:
    lines = ["commitments:"]
    for n, ident in enumerate("abc"):
        for k, template in enumerate(_ITEM):
            lines += fillers[n * 4 + k] if k else []  # not between `- id` and its dash's item
            lines.append(template.format(ident=ident))
    lines += fillers[12]
    text = "\n".join(lines) + "\n"
    ident = "abc"[target]
    edit = {
        "status": FileEdit(ident, status="done"),
        "when": FileEdit(ident, when=(0, "2026-12-24 09:30")),
        "append": FileEdit(ident, append=("2026-12-24 09:30", "Again")),
    }[kind]
    new = edited_text(text, [edit], "c.yaml")
    removed, added = diff(text, new)
    if kind == "when":
        assert removed == ["    when: 2026-12-01 10:00\n"]
        assert added == ["    when: 2026-12-24 09:30\n"]
    else:
        assert removed == []
        assert added == (
            ["    status: done\n"]
            if kind == "status"
            else [
                "    follow_ups:\n",
                "      - when: 2026-12-24 09:30\n",
                "        purpose: Again\n",
            ]
        )
    found = load(new, "UTC")
    assert found[ident].status is (Status.DONE if kind == "status" else Status.OPEN)


# -- other shapes of file


def test_null_follow_ups_key_and_keys_after_an_indentless_list(tmp_path: Path) -> None:
    text = (
        "commitments:\n"
        "- id: a\n"
        "  title: A\n"
        "  when: 2026-11-30 10:00\n"
        "  follow_ups:   # none yet\n"
        "  status:\n"
        "timezone: UTC  # after the list\n"
    )
    path = put(tmp_path, text)
    apply(path, FileEdit("a", status="done", append=("2026-12-01 10:00", "Call")))
    new = path.read_text(encoding="utf-8")
    assert diff(text, new) == (
        ["  status:\n"],
        ["  - when: 2026-12-01 10:00\n", "    purpose: Call\n", "  status: done\n"],
    )
    (step,) = load(new, "UTC")["a"].follow_ups
    assert step.at == datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("UTC"))


def test_flow_list_of_entries(tmp_path: Path) -> None:
    text = (
        "commitments: [{id: a, title: A, when: 2026-11-30 10:00},"
        " {id: b, title: B, when: 2026-11-30 10:00}]\n# the end\n"
    )
    path = put(tmp_path, text)
    apply(path, FileEdit("b", status="done", append=("2026-12-01 10:00", None)))
    new = path.read_text(encoding="utf-8")
    assert new == (
        "commitments: [{id: a, title: A, when: 2026-11-30 10:00},"
        " {id: b, title: B, when: 2026-11-30 10:00, status: done,"
        " follow_ups: [{when: 2026-12-01 10:00}]}]\n# the end\n"
    )
    assert load(new, "UTC")["b"].status is Status.DONE


def test_a_dash_on_its_own_line_and_a_wide_indent(tmp_path: Path) -> None:
    text = (
        "commitments:\n    -\n        id: a\n        title: A\n        when: 2026-11-30 10:00\n"
        "        contact:\n            name: X\n    -   id: b\n        title: B\n"
        "        when: 2026-11-30 10:00\n"
    )
    path = put(tmp_path, text)
    apply(path, FileEdit("a", append=("2026-12-01 10:00", "p")))
    new = path.read_text(encoding="utf-8")
    assert diff(text, new) == (
        [],
        [
            "        follow_ups:\n",
            "            -   when: 2026-12-01 10:00\n",
            "                purpose: p\n",
        ],
    )


def test_a_tab_before_a_comment_is_refused_not_mangled(tmp_path: Path) -> None:
    # PyYAML reads it, ruamel.yaml does not: say so rather than guess
    text = "commitments:\n  - id: a\n    title: A\n    when: 2026-11-30 10:00\t# tab\n"
    path = put(tmp_path, text)
    with pytest.raises(NotWritable, match=r"ruamel\.yaml cannot edit"):
        apply(path, FileEdit("a", status="done"))
    assert path.read_text(encoding="utf-8") == text


_PURPOSE = (
    st.lists(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029")
        | st.sampled_from(
            ["\n", "\t", "#", ": ", "- ", "'", '"', "{", "[", "*", "&", "!", "%", "@"]
        ),
        min_size=1,
        max_size=30,
    )
    .map("".join)
    .filter(lambda s: s.strip() != "")
)


@settings(max_examples=150, deadline=None)
@given(purpose=_PURPOSE | st.sampled_from(["no", "yes", "~", "null", "1e3", "0o17", "2026-12-01"]))
def test_any_purpose_reads_back_as_written(purpose: str) -> None:
    text = "commitments:\n  - id: a\n    title: A\n    when: 2026-11-30 10:00\n"
    new = edited_text(text, [FileEdit("a", append=("2026-12-01 10:00", purpose))], "c.yaml")
    assert new.startswith(text)
    (step,) = load(new, "UTC")["a"].follow_ups
    assert step.purpose == purpose.strip()
    assert yaml.safe_load(new)["commitments"][0]["follow_ups"][0]["purpose"] == purpose
    # applying it again changes nothing
    assert edited_text(new, [FileEdit("a", append=("2026-12-01 10:00", purpose))], "c.yaml") == new


def test_trailing_blanks_on_the_edited_line(tmp_path: Path) -> None:
    # ruamel drops trailing blanks; the line is still found, and only it changes
    text = "commitments:\n  - id: a   \n    title: A\n    when: 2026-11-30 10:00   \n"
    path = put(tmp_path, text)
    apply(path, FileEdit("a", when=(0, "2026-12-01 09:00")))
    assert path.read_text(encoding="utf-8") == text.replace(
        "2026-11-30 10:00   \n", "2026-12-01 09:00\n"
    )
