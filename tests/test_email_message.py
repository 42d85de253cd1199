"""The email alert and digest as MIME: headers, structure, the .ics, links, line lengths.

Pure code, fixed times: no server, no clock. What a mail client would see
is checked by parsing the bytes back (`email.policy.default` and `SMTP`),
and the attachment with `icalendar`.
"""

from __future__ import annotations

import email
import json
import re
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reminderd.email.message import (
    build_alert,
    build_digest,
    email_payload,
    message_id,
    touch_from_payload,
)
from reminderd.ical import content_hash, description, render, uid_for
from reminderd.model import Commitment, Contact, FollowUp, SourceRef, Touch, touches

ATHENS = ZoneInfo("Europe/Athens")
START = datetime(2026, 11, 30, 10, 0, tzinfo=ATHENS)  # a Monday
BEFORE = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)  # the day before, 10:00 Athens
AFTER = datetime(2026, 11, 30, 8, 20, tzinfo=UTC)  # 10:20 Athens: 20 min late
KEY = "acme#0@-1d@20261130T080000Z"
SENDER = "Υπενθύμιση Ρένας <reminderd@example.com>"
TO = "Ρένα Παπαδοπούλου <rena@example.com>"


def commitment(**overrides: Any) -> Commitment:
    values: dict[str, Any] = {
        "id": "acme",
        "title": "Call Alex at ACME",
        "start": START,
        "duration": timedelta(minutes=30),
        "contact": Contact("Ζωή Αλεξίου", "ACME Ελλάς", "+306912345678", "zoe@acme.example"),
        "purpose": "Close the <Q4> deal & agree on price",
        "bring": ("signed NDA", "price list"),
        "questions": ("Budget approved?",),
        "agenda": ("intro", "pricing", "next steps"),
        "next_step": "Send the offer by Friday",
        "alarms": (timedelta(minutes=-15),),
        "email": (timedelta(days=-1),),
        "tags": ("q4", "hot"),
        "source": SourceRef("crm/deals.yaml", 12),
        "follow_ups": (FollowUp(timedelta(days=7), "Check the offer arrived"),),
    }
    values.update(overrides)
    return Commitment(**values)


def payload_of(touch: Touch) -> dict[str, Any]:
    """Through JSON, as the outbox stores it."""
    loaded: dict[str, Any] = json.loads(json.dumps(email_payload(touch)))
    return loaded


def first_touch(**overrides: Any) -> Touch:
    return touches(commitment(**overrides))[0]


def alert(touch: Touch | None = None, *, now: datetime = BEFORE, key: str = KEY) -> EmailMessage:
    return build_alert(
        payload_of(touch or first_touch()),
        sender=SENDER,
        to=TO,
        key=key,
        now=now,
        domain="example.com",
    )


def reparse(msg: EmailMessage, pol: Any = policy.default) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=pol)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_wire_ok(msg: EmailMessage) -> bytes:
    """Serialises under policy.SMTP, CRLF only, no line over 998 octets, 7-bit, no defects."""
    raw = msg.as_bytes(policy=policy.SMTP)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    for pol in (policy.SMTP, policy.default):
        for part in reparse(msg, pol).walk():
            assert not part.defects, part.defects
    return raw


def parts(msg: EmailMessage) -> tuple[str, str, EmailMessage]:
    """(plain text, html, the calendar part) of a parsed alert."""
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    (ics,) = list(msg.iter_attachments())
    assert isinstance(ics, EmailMessage)
    return _lf(plain.get_content()), _lf(html.get_content()), ics


def _lf(text: str) -> str:
    """Text parts come back with the wire's CRLF."""
    return text.replace("\r\n", "\n")


# -- headers


def test_headers_name_the_title_and_the_local_time() -> None:
    msg = reparse(alert())
    assert msg["Subject"] == "Follow-up: Call Alex at ACME — Mon 30 Nov 10:00"
    assert msg["Date"] == format_datetime(BEFORE)
    assert msg["To"].addresses[0].addr_spec == "rena@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_subject_says_late_after_the_start() -> None:
    assert reparse(alert(now=AFTER))["Subject"] == (
        "Late follow-up: Call Alex at ACME — Mon 30 Nov 10:00"
    )
    plain, html, _ = parts(reparse(alert(now=AFTER)))
    assert "late" in plain and "Late" in html


def test_subject_of_a_follow_up_uses_its_own_time() -> None:
    second = touches(commitment())[1]
    msg = reparse(alert(second, key="acme#1@-1d@x"))
    assert msg["Subject"] == "Follow-up: Call Alex at ACME (follow-up 1) — Mon 07 Dec 10:00"
    plain, _, _ = parts(msg)
    assert "Why: Check the offer arrived" in plain


def test_non_ascii_names_are_encoded_words_and_read_back() -> None:
    msg = alert(first_touch(title="Κλήση στη Ζωή"))
    raw = assert_wire_ok(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    from_line = re.search(rb"^From: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
    assert from_line is not None and b"<reminderd@example.com>" in from_line.group(1)
    back = reparse(msg)
    (sender,) = back["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Υπενθύμιση Ρένας", "reminderd@example.com")
    assert back["To"].addresses[0].display_name == "Ρένα Παπαδοπούλου"
    assert back["Subject"] == "Follow-up: Κλήση στη Ζωή — Mon 30 Nov 10:00"


def test_a_newline_in_the_title_cannot_forge_a_header() -> None:
    msg = reparse(alert(first_touch(title="Call\r\nBcc: victim@example.org\nnow")))
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Follow-up: Call Bcc: victim@example.org now — Mon 30 Nov 10:00"


def test_message_id_is_stable_per_send_key() -> None:
    first, again = alert(now=BEFORE), alert(now=AFTER)
    other = alert(key="acme#0@-2h@20261130T080000Z")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", first["Message-ID"])
    assert first["Message-ID"] == again["Message-ID"] == message_id(KEY, "example.com")
    assert other["Message-ID"] != first["Message-ID"]


def test_same_inputs_give_the_same_bytes() -> None:
    assert alert().as_bytes(policy=policy.SMTP) == alert().as_bytes(policy=policy.SMTP)


# -- structure and content


def test_structure_is_alternative_text_and_html_plus_the_ics() -> None:
    msg = reparse(alert())
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "PUBLISH"
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_filename() == "follow-up.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert_wire_ok(alert())
    assert_wire_ok(alert(now=AFTER))


def test_text_carries_the_full_follow_up() -> None:
    touch = first_touch()
    plain, html, _ = parts(reparse(alert(touch)))
    assert description(touch) in plain  # the one layout of a touch's content
    for text in ("Mon 30 Nov 10:00 (Europe/Athens), 30 min, call", "Tags: q4, hot"):
        assert text in plain
    for expected in (
        "Close the &lt;Q4&gt; deal &amp; agree on price",
        "<li>signed NDA</li>",
        "<li>price list</li>",
        "<li>Budget approved?</li>",
        "<li>pricing</li>",
        "Send the offer by Friday",
        "Ζωή Αλεξίου (ACME Ελλάς)",
    ):
        assert expected in html
    assert "<Q4>" not in html


def test_contact_links() -> None:
    plain, html, _ = parts(reparse(alert()))
    assert "tel:+306912345678" in plain
    assert "mailto:zoe@acme.example" in plain
    assert '<a href="tel:+306912345678">+306912345678</a>' in html
    assert '<a href="mailto:zoe@acme.example">zoe@acme.example</a>' in html


def test_html_escapes_what_could_break_out_of_an_attribute() -> None:
    contact = Contact('Eve "x" <script>', None, "+306912345678", 'e"><script>@evil.example')
    _, html, _ = parts(reparse(alert(first_touch(contact=contact, title="<b>bold</b>"))))
    assert "<script>" not in html and "<b>bold" not in html
    assert 'href="mailto:e%22%3E%3Cscript%3E@evil.example"' in html


def test_ics_parses_with_method_publish_and_the_right_start() -> None:
    touch = first_touch()
    _, _, part = parts(reparse(alert(touch)))
    data = part.get_payload(decode=True)
    assert data == render(touch, stamp=BEFORE, method="PUBLISH")  # the one renderer
    cal = icalendar.Calendar.from_ical(data)
    assert str(cal["METHOD"]) == "PUBLISH"
    (event,) = cal.walk("VEVENT")
    assert event.decoded("DTSTART") == START
    assert event["DTSTART"].params["TZID"] == "Europe/Athens"
    assert str(event["UID"]) == uid_for("acme#0")
    assert event.decoded("DTEND") == START + timedelta(minutes=30)
    (alarm,) = event.walk("VALARM")
    assert alarm.decoded("TRIGGER") == timedelta(minutes=-15)


# -- the payload


def test_payload_is_json_and_rebuilds_the_touch() -> None:
    for touch in touches(commitment()):
        payload = payload_of(touch)
        again = touch_from_payload(payload)
        assert content_hash(again) == content_hash(touch)
        assert description(again) == description(touch)
        assert again.start == touch.start and again.key == touch.key
        assert payload["start"] == touch.start.isoformat()
        assert payload["zone"] == "Europe/Athens"
        assert payload["alarms"] == ["-15m"]
        assert payload["contact"]["phone"] == "+306912345678"


def test_payload_keeps_the_second_pass_of_a_repeated_hour() -> None:
    # 03:30 on 25 Oct 2026 happens twice in Athens; the second one is 01:30 UTC
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC).astimezone(ATHENS)
    assert second.fold == 1
    touch = first_touch(start=second, follow_ups=())
    again = touch_from_payload(payload_of(touch))
    assert again.start.astimezone(UTC) == second.astimezone(UTC)
    assert content_hash(again) == content_hash(touch)


# -- the digest


def digest(payloads: list[dict[str, Any]], now: datetime = BEFORE) -> EmailMessage:
    return build_digest(
        payloads,
        day=date(2026, 11, 30),
        zone=ATHENS,
        sender=SENDER,
        to=TO,
        key="digest@2026-11-30",
        now=now,
        domain="example.com",
    )


def test_digest_lists_the_day_in_time_order_with_full_content() -> None:
    early = first_touch(
        id="beta",
        title="Visit Beta Ltd",
        start=START.replace(hour=9),
        purpose="Demo the app",
        bring=("laptop",),
        contact=Contact("Nikos", None, "+306900000001", None),
    )
    late = first_touch()
    msg = digest([payload_of(late), payload_of(early)])
    raw = assert_wire_ok(msg)
    assert b"multipart/alternative" in raw
    back = reparse(msg)
    assert back["Subject"] == "Today Mon 30 Nov: 2 follow-ups"
    assert back["Message-ID"] == message_id("digest@2026-11-30", "example.com")
    plain = back.get_body(("plain",))
    html = back.get_body(("html",))
    assert plain is not None and html is not None
    text, page = _lf(plain.get_content()), _lf(html.get_content())
    assert text.index("09:00 Visit Beta Ltd (Nikos)") < text.index("10:00 Call Alex at ACME")
    for touch in (early, late):
        assert description(touch) in text
    for expected in ("Demo the app", "<li>laptop</li>", 'href="tel:+306900000001"', "Budget"):
        assert expected in page


def test_an_empty_digest_says_so() -> None:
    back = reparse(digest([]))
    assert back["Subject"] == "Today Mon 30 Nov: no follow-ups"
    assert_wire_ok(digest([]))


# -- any text at all


def _text(min_size: int = 0, max_size: int = 300) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size)


_long_word = st.integers(1, 2500).map(lambda n: "x" * n)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.one_of(_text(1), _long_word),
    name=st.one_of(st.none(), _text(1, 80)),
    company=st.one_of(st.none(), _text(1, 80)),
    why=st.one_of(st.none(), _text(), _long_word),
    items=st.lists(_text(0, 200), max_size=4),
    sender_name=_text(0, 60),
    now=st.sampled_from([BEFORE, AFTER]),
)
def test_any_text_serialises_and_keeps_line_lengths(
    title: str,
    name: str | None,
    company: str | None,
    why: str | None,
    items: list[str],
    sender_name: str,
    now: datetime,
) -> None:
    touch = first_touch(
        title=title,
        contact=Contact(name, company, "+306912345678", "zoe@acme.example"),
        purpose=why,
        bring=tuple(items),
        agenda=tuple(reversed(items)),
        next_step=why,
        follow_ups=(),
    )
    msg = build_alert(
        payload_of(touch),
        sender=f'"{_quote(sender_name)}" <reminderd@example.com>',
        to=TO,
        key=f"{title}@-1d",
        now=now,
        domain="example.com",
    )
    assert_wire_ok(msg)
    back = reparse(msg)
    subject = back["Subject"]
    assert "\n" not in subject and "\r" not in subject
    assert subject.endswith(" — Mon 30 Nov 10:00")
    assert back["From"].addresses[0].addr_spec == "reminderd@example.com"
    # the name as a client reads it (RFC 2047: no space between adjacent encoded words;
    # Python's address parser adds one, so the header is decoded as a whole here)
    raw_from = email.message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=policy.compat32)
    decoded = str(make_header(decode_header(raw_from["From"])))
    assert decoded.endswith(
        "reminderd@example.com" + (">" if _printable(sender_name).strip() else "")
    )
    if not set(sender_name) & set('"\\'):
        assert "".join(_printable(sender_name).split()) in "".join(decoded.split())
    _, _, part = parts(back)
    assert part.get_payload(decode=True) == render(touch, stamp=now, method="PUBLISH")
    digest_msg = digest([payload_of(touch)], now)
    assert_wire_ok(digest_msg)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
