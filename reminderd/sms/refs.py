"""The short reference a backup SMS ends with (` #k3`), so a reply can name its touch.

A reference is given to a touch once and kept (the table `sms_refs`), so
every SMS of a touch, and a look-up of an interrupted send, has the same
text. Candidates come from a hash of the touch key: 2 characters, then 3,
then 4, the first one no other touch holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..store.protocol import StateStore

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/1, o/0: read off a phone screen


def candidates(touch_key: str) -> list[str]:
    number = int.from_bytes(hashlib.blake2b(touch_key.encode(), digest_size=8).digest(), "big")
    digits = []
    for _ in range(4):
        number, rest = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[rest])
    first = "".join(digits)
    found = [first[:2], first[:3], first]
    # a crowded table: more 4-character candidates, still from the same key
    for salt in range(1, 64):
        n = int.from_bytes(
            hashlib.blake2b(f"{salt}:{touch_key}".encode(), digest_size=8).digest(), "big"
        )
        found.append("".join(ALPHABET[(n >> (5 * i)) % len(ALPHABET)] for i in range(4)))
    return found


def assign(db: StateStore, touch_keys: Iterable[str]) -> dict[str, str]:
    """The reference of each touch, giving one to those that have none yet."""
    wanted = set(touch_keys)
    if not wanted:
        return {}
    rows = db.query("SELECT touch, ref FROM sms_refs")
    refs = {touch: ref for touch, ref in rows if touch in wanted}
    missing = sorted(wanted - set(refs))
    if missing:
        taken = {ref for _, ref in rows}
        with db.transaction() as tx:
            for key in missing:
                ref = next((c for c in candidates(key) if c not in taken), None)
                if ref is None:
                    continue  # 4-character space exhausted: this touch's SMS carry no ref
                tx.execute(
                    "INSERT INTO sms_refs (ref, touch) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (ref, key),
                )
                taken.add(ref)
        rows = db.query("SELECT touch, ref FROM sms_refs")  # what landed, if another raced us
        refs = {touch: ref for touch, ref in rows if touch in wanted}
    return refs


def touch_of(db: StateStore, ref: str) -> str | None:
    """The touch key a reference names, or None."""
    rows = db.query("SELECT touch FROM sms_refs WHERE ref = ?", (ref.lower(),))
    return str(rows[0][0]) if rows else None
