"""SMS text: short, exact, useful on a lock screen; GSM-7 / UCS-2 aware.

Pure. A message is built from parts with a priority; when it would exceed
the segment budget, the least important parts are shortened, then dropped
(what to bring first, then why, then the contact's phone), never the time
or the name.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime

from ..errors import InvalidValue

# GSM 03.38 basic set, and the extension set whose characters cost two septets.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€\f")
DEFAULT_TEMPLATE = "{late}{when} {title}{who}{phone}.{why}{bring}"
"""Fields carry their own leading separator (` - Alex (ACME)`, ` Why: ...`), so an
empty one leaves no stray punctuation behind."""
FIELDS = ("late", "when", "title", "who", "phone", "why", "bring")


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXT for ch in text)


def segments(text: str) -> int:
    """How many SMS segments `text` costs (GSM-7: 160/153; UCS-2: 70/67 per part)."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXT else 1 for ch in text)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)  # UTF-16 code units
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def check_template(template: str) -> str:
    """A template may use only our fields; raises InvalidValue naming the bad one."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise InvalidValue(f"template is not valid: {exc}") from None
    for name in names:
        if name not in FIELDS:
            raise InvalidValue(
                f"template uses {{{name}}}; allowed: " + ", ".join(f"{{{f}}}" for f in FIELDS)
            )
    if "when" not in names or not ({"who", "title"} & set(names)):
        raise InvalidValue("template must contain {when} and {who} or {title}")
    return template


@dataclass(frozen=True, slots=True)
class Parts:
    late: str
    when: str
    title: str
    who: str
    phone: str
    why: str
    bring: str


def clock_label(moment: datetime, now: datetime) -> str:
    """`10:00` on the same local day as `now`, else `Mon 30 Nov 10:00` (in `moment`'s zone)."""
    same_day = moment.date() == now.astimezone(moment.tzinfo).date()
    return moment.strftime("%H:%M") if same_day else moment.strftime("%a %d %b %H:%M")


def compose(parts: Parts, template: str = DEFAULT_TEMPLATE, max_segments: int = 2) -> str:
    """The message within `max_segments`, trimming least important parts first."""
    values = {f: getattr(parts, f) for f in FIELDS}
    text = _render(template, values)
    # shorten then drop, in this order; the time and the name are never touched
    for field_name in ("bring", "why", "phone", "title"):
        if segments(text) <= max_segments:
            break
        values[field_name] = _shorten(template, values, field_name, max_segments)
        text = _render(template, values)
    return text


def _render(template: str, values: dict[str, str]) -> str:
    text = template.format(**values)
    return " ".join(text.split()) if "\n" not in template else text


def _shorten(template: str, values: dict[str, str], name: str, max_segments: int) -> str:
    """The longest prefix of one field (with an ellipsis) that fits; empty if none does."""
    original = values[name]
    low, high, best = 0, len(original), ""
    while low <= high:
        mid = (low + high) // 2
        candidate = original[:mid].rstrip(" ,.") + "..." if mid < len(original) else original
        trial = dict(values, **{name: candidate if mid else ""})
        if segments(_render(template, trial)) <= max_segments:
            best, low = trial[name], mid + 1
        else:
            high = mid - 1
    if name in ("why", "bring") and best and len(best) < 12:
        return ""  # a stub like " Why: a..." helps nobody
    return best
