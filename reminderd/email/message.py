"""An email alert or digest as a MIME message: pure, no I/O, `now` passed in.

The outbox stores a payload (JSON, from `email_payload`) when the send is
planned, so it can still be sent after the commitments file breaks; the
message is built from that payload at send time. The `.ics` attachment is
rendered from a model `Touch` rebuilt from the payload by `ical.render`,
the one renderer, and the plain text body is `ical.description`, the one
layout of a touch's content; only the HTML is laid out here.

Every message is built under `email.policy.SMTP`: headers are folded and
non-ASCII words encoded (RFC 2047), and every body part is quoted-printable
or base64, so no line is longer than 78 octets and no server needs 8BITMIME.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..ical import description, render, summary_line
from ..model import Commitment, Contact, SourceRef, Status, Touch, TouchState
from ..timeparse import format_offset, parse_offset

PAYLOAD_VERSION = 1
ATTACHMENT_NAME = "follow-up.ics"
SUBJECT_TITLE_MAX = 200  # characters of the title in a Subject; the body has all of it
_NAMED = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$", re.S)
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# -- the payload: what the outbox keeps


def email_payload(touch: Touch) -> dict[str, Any]:
    """Everything an alert about `touch` needs, JSON-serialisable (str, int, list, None)."""
    c = touch.commitment
    return {
        "v": PAYLOAD_VERSION,
        "commitment": c.id,
        "touch": touch.key,
        "index": touch.index,
        "title": c.title,
        "start": touch.start.isoformat(),
        "zone": c.zone_name,
        "duration": int(c.duration.total_seconds()),
        "channel": c.channel,
        "why": touch.purpose,
        "bring": list(c.bring),
        "questions": list(c.questions),
        "agenda": list(c.agenda),
        "next_step": c.next_step,
        "contact": {
            "name": c.contact.name,
            "company": c.contact.company,
            "phone": c.contact.phone,
            "email": c.contact.email,
        },
        "tags": list(c.tags),
        "status": c.status.value,
        "state": touch.state.value,
        "alarms": [format_offset(a) for a in c.alarms],
        "source": c.source.path,
        "line": c.source.line,
    }


def touch_from_payload(payload: dict[str, Any]) -> Touch:
    """The model touch a payload was made from, as far as rendering it goes.

    Its commitment starts at the touch's own start and has no cadence, SMS
    or email offsets: only what `ical.render` and `ical.description` read
    (`ical.content_hash` of the result equals the original's).
    """
    p = payload
    start = _start(p)
    contact = p.get("contact") or {}
    commitment = Commitment(
        id=str(p["commitment"]),
        title=str(p["title"]),
        start=start,
        duration=timedelta(seconds=int(p["duration"])),
        channel=str(p["channel"]),
        contact=Contact(
            name=contact.get("name"),
            company=contact.get("company"),
            phone=contact.get("phone"),
            email=contact.get("email"),
        ),
        purpose=p.get("why"),
        agenda=tuple(p.get("agenda") or ()),
        questions=tuple(p.get("questions") or ()),
        bring=tuple(p.get("bring") or ()),
        next_step=p.get("next_step"),
        alarms=tuple(parse_offset(a) for a in p.get("alarms") or ()),
        status=Status(p.get("status", Status.OPEN.value)),
        tags=tuple(p.get("tags") or ()),
        source=SourceRef(str(p.get("source", "-")), int(p.get("line", 0))),
    )
    state = TouchState(p.get("state", TouchState.OPEN.value))
    return Touch(commitment, int(p["index"]), start, p.get("why"), state)


def _start(payload: dict[str, Any]) -> datetime:
    """The start in its zone; a zone this system does not know keeps the stored offset."""
    start = datetime.fromisoformat(str(payload["start"]))
    try:
        zone = ZoneInfo(str(payload["zone"]))
    except (ZoneInfoNotFoundError, ValueError):
        return start
    return start.astimezone(zone)  # from an instant: right also inside a DST fold


# -- headers


def message_id(key: str, domain: str) -> str:
    """`<sha256(key)[:32]@domain>`: the same for every try of one send, so a repeat
    after a crash threads with (and is deduplicated against) the first."""
    if not _DOMAIN.match(domain):
        raise ValueError(f"not a domain for a Message-ID: {domain!r}")
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def address(text: str) -> Address:
    """`a@example.com`, `Name <a@example.com>` or `"Name" <a@example.com>` as an Address.

    Read with a pattern rather than `parseaddr`, which gives up on some names
    (a quoted line break); the name is put on one line, and the policy
    encodes it when it is not ASCII.
    """
    found = _NAMED.match(text)
    name, addr = (found.group(1), found.group(2)) if found else ("", text.strip())
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1], flags=re.S)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() or c in "<>" for c in addr):
        raise ValueError(f"not an e-mail address: {text!r}")
    return Address(display_name=_one_line(name), username=local, domain=domain)


def _one_line(text: str) -> str:
    """Header text on one line: a title with a newline must not forge a header."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _new_message(
    subject: str, *, sender: str, to: str, key: str, now: datetime, domain: str
) -> EmailMessage:
    if now.tzinfo is None:
        raise ValueError("the message time must be aware")
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = address(sender)
    msg["To"] = address(to)
    _set_text(msg, "Subject", subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(key, domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a reminder
    msg["X-Auto-Response-Suppress"] = "All"
    return msg


def _fix_boundaries(msg: EmailMessage, key: str) -> None:
    """Boundaries from the key instead of random ones: the same inputs give the same bytes.

    `=_` never occurs in quoted-printable or base64 text, so no part can contain one.
    """
    stem = hashlib.sha256(key.encode()).hexdigest()[:24]
    for n, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"=_{stem}_{n}")


def _set_text(msg: EmailMessage, name: str, text: str) -> None:
    """An unstructured header, encoded and folded by `email.header.Header`.

    The policy's own folder drops the space between two encoded words when
    it breaks the line there (`Ζωή — Mon` read back as `Ζωή— Mon`); Header
    keeps spaces inside the encoded words, and its lines fit in 78 octets,
    so the policy writes them as they are.
    """
    plain = text.isascii() and max(map(len, text.split()), default=0) <= 60
    value = Header(text, "us-ascii" if plain else "utf-8", header_name=name)
    msg.set_raw(name, value.encode(linesep=msg.policy.linesep))


def day_label(day: date) -> str:
    """`Mon 30 Nov` (of a datetime: in its own zone), in English whatever the locale."""
    return f"{_DAYS[day.weekday()]} {day.day:02d} {_MONTHS[day.month - 1]}"


def time_label(moment: datetime) -> str:
    """`Mon 30 Nov 10:00`."""
    return f"{day_label(moment)} {moment:%H:%M}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def duration_label(seconds: int) -> str:
    hours, minutes = divmod(max(seconds, 0) // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


# -- the alert


def build_alert(
    payload: dict[str, Any],
    *,
    sender: str,
    to: str,
    key: str,
    now: datetime,
    domain: str,
) -> EmailMessage:
    """One follow-up: text and HTML alternatives, and the touch as an `.ics` (METHOD:PUBLISH).

    The subject names the title and the local time, and says "late" when
    `now` is past the touch's start. `key` is the outbox's send key.
    """
    touch = touch_from_payload(payload)
    start = touch.start
    late = now > start
    title = _short(_one_line(summary_line(touch)), SUBJECT_TITLE_MAX)
    subject = f"{'Late follow-up' if late else 'Follow-up'}: {title} — {time_label(start)}"
    msg = _new_message(subject, sender=sender, to=to, key=key, now=now, domain=domain)
    lead = _lead(touch, late)
    msg.set_content(lead + "\n\n" + description(touch) + "\n", cte="quoted-printable")
    page = _page(_one_line(summary_line(touch)), _html_touch(touch, late, heading="h1"))
    msg.add_alternative(page, subtype="html", cte="quoted-printable")
    ics = render(touch, stamp=now, method="PUBLISH").decode("utf-8")
    msg.add_attachment(
        ics,
        subtype="calendar",
        charset="utf-8",
        cte="base64",  # keeps the CRLF and folding of the iCalendar lines byte for byte
        filename=ATTACHMENT_NAME,
        params={"method": "PUBLISH"},
    )
    _fix_boundaries(msg, key)
    return msg


def _lead(touch: Touch, late: bool) -> str:
    """`Call Alex at ACME` / `Mon 30 Nov 10:00 (Europe/Athens), 30 min, call`."""
    c = touch.commitment
    duration = duration_label(int(c.duration.total_seconds()))
    lines = [
        summary_line(touch),
        f"{time_label(touch.start)} ({c.zone_name}), {duration}, {c.channel}",
    ]
    if late:
        lines.append("This reminder is late: the follow-up has already started.")
    if c.tags:
        lines.append("Tags: " + ", ".join(c.tags))
    return "\n".join(lines)


# -- the digest


def build_digest(
    payloads: list[dict[str, Any]],
    *,
    day: date,
    zone: tzinfo,
    sender: str,
    to: str,
    key: str,
    now: datetime,
    domain: str,
) -> EmailMessage:
    """The day's touches in time order, each with its full content (text and HTML)."""
    # by instant: two times of one zone compare by wall clock, wrong inside a DST fold
    touches = sorted(
        (touch_from_payload(p) for p in payloads), key=lambda t: (t.start.astimezone(UTC), t.key)
    )
    count = len(touches)
    plural = "s" if count != 1 else ""
    subject = f"Today {day_label(day)}: {count or 'no'} follow-up{plural}"
    msg = _new_message(subject, sender=sender, to=to, key=key, now=now, domain=domain)
    text = [subject + "."]
    blocks = []
    for t in touches:
        head = _digest_head(t, zone)
        text += ["", head, "-" * min(len(head), 72), _lead(t, late=False), "", description(t)]
        blocks.append(_html_touch(t, late=False, heading="h2", head=head))
    msg.set_content("\n".join(text) + "\n", cte="quoted-printable")
    body = "".join(blocks) if blocks else "<p>Nothing planned.</p>\n"
    msg.add_alternative(
        _page(subject, f"<h1>{_h(subject)}</h1>\n{body}"), subtype="html", cte="quoted-printable"
    )
    _fix_boundaries(msg, key)
    return msg


def _digest_head(touch: Touch, zone: tzinfo) -> str:
    who = touch.commitment.contact.label()
    local = touch.start.astimezone(zone)
    return f"{local:%H:%M} {summary_line(touch)}" + (f" ({who})" if who else "")


# -- HTML


def _h(text: str) -> str:
    """Escaped for HTML text and attributes; a newline stays a line break."""
    return html.escape(text, quote=True).replace("\r\n", "\n").replace("\n", "<br>\n")


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{_h(title)}</title></head>\n<body>\n{body}</body></html>\n"
    )


def _items(label: str, items: Iterable[str]) -> str:
    entries = "".join(f"<li>{_h(item)}</li>\n" for item in items)
    return f"<p><strong>{label}:</strong></p>\n<ul>\n{entries}</ul>\n" if entries else ""


def tel_href(phone: str) -> str:
    """`tel:+306912345678`: only the digits and the plus of the number."""
    return "tel:" + re.sub(r"[^0-9+]", "", phone)


def mailto_href(addr: str) -> str:
    return "mailto:" + quote(addr, safe="@+._-")


def _html_touch(touch: Touch, late: bool, heading: str, head: str | None = None) -> str:
    """One touch's content, laid out like `ical.description` (why first, then what to have)."""
    c = touch.commitment
    duration = duration_label(int(c.duration.total_seconds()))
    parts = [
        f"<{heading}>{_h(head or summary_line(touch))}</{heading}>\n",
        f"<p>{_h(time_label(touch.start))} ({_h(c.zone_name)}), {duration}, {_h(c.channel)}</p>\n",
    ]
    if late:
        parts.append("<p><strong>Late:</strong> the follow-up has already started.</p>\n")
    if touch.purpose:
        parts.append(f"<p><strong>Why:</strong> {_h(touch.purpose)}</p>\n")
    parts += [_items("Bring", c.bring), _items("Ask", c.questions), _items("Agenda", c.agenda)]
    if c.next_step:
        parts.append(f"<p><strong>Next step:</strong> {_h(c.next_step)}</p>\n")
    contact = []
    if c.contact.label():
        contact.append(f"<strong>Contact:</strong> {_h(c.contact.label() or '')}")
    if c.contact.phone:
        phone = c.contact.phone
        contact.append(f'Phone: <a href="{_h(tel_href(phone))}">{_h(phone)}</a>')
    if c.contact.email:
        mail = c.contact.email
        contact.append(f'Email: <a href="{_h(mailto_href(mail))}">{_h(mail)}</a>')
    if contact:
        parts.append("<p>" + "<br>\n".join(contact) + "</p>\n")
    if c.tags:
        parts.append(f"<p>Tags: {_h(', '.join(c.tags))}</p>\n")
    parts.append(f"<p><small>{_h(c.source.path)} ({_h(touch.key)})</small></p>\n")
    return "".join(parts)
