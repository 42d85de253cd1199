"""What each CalDAV provider allows, so a user learns it from `validate`, not from a 412.

Pure. A profile is chosen by `calendar.profile`, else from the calendar URL
(`detect`). The rules come from each provider's documentation; none of them
has been tried against the real service from here (no network to it), only
against a local server behind a proxy that enforces the same rules (see
tests/test_profiles.py). The README says the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from ..model import Commitment


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    max_alarms: int | None = None  # the provider keeps at most this many reminders per event
    create_precondition: bool = True  # `If-None-Match: *` on create is honoured
    make_calendar: bool = True  # a client may create a calendar (MKCALENDAR)
    reuse_uids: bool = True  # a deleted UID may be written again (no trash bin keeps it)
    account_wide_uids: bool = False  # a UID is unique across all of an account's calendars
    min_interval: float = 0.0  # seconds between two requests (the provider rate-limits)
    oauth2: bool = False  # OAuth2 bearer tokens only, no passwords
    note: str = ""


PROFILES: dict[str, Profile] = {
    "generic": Profile("generic"),
    "google": Profile(
        "google",
        max_alarms=5,
        create_precondition=False,
        make_calendar=False,
        min_interval=0.1,
        oauth2=True,
        note="OAuth2 only; If-Match is its only conditional header; no MKCALENDAR; "
        "at most 5 reminders per event",
    ),
    "icloud": Profile(
        "icloud",
        note="app-specific passwords; EMAIL alarms are dropped (reminderd writes DISPLAY ones)",
    ),
    "fastmail": Profile(
        "fastmail",
        account_wide_uids=True,
        note="Cyrus: UIDs are unique across all of an account's calendars",
    ),
    "nextcloud": Profile(
        "nextcloud",
        reuse_uids=False,
        min_interval=0.05,
        note="a deleted UID goes to the trash bin and cannot be written again; rate limits",
    ),
}


def uid_salt(rules: Profile, calendar_path: str) -> str:
    """What makes our UIDs unique on this calendar's account: `~` and a short hash of the
    calendar's path where UIDs are unique per account (Cyrus), else nothing."""
    if not rules.account_wide_uids:
        return ""
    import hashlib

    return "~" + hashlib.blake2b(calendar_path.encode(), digest_size=4).hexdigest()


def detect(url: str | None) -> str:
    """The profile a calendar URL implies; `generic` when nothing tells."""
    if not url:
        return "generic"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.endswith(("googleusercontent.com", "google.com", "googleapis.com")):
        return "google"
    if host.endswith("icloud.com"):
        return "icloud"
    if host.endswith(("fastmail.com", "messagingengine.com")) or parts.path.startswith(
        "/dav/calendars/"
    ):
        return "fastmail"  # Fastmail, or any Cyrus (its DAV paths)
    if "/remote.php/dav" in parts.path:
        return "nextcloud"
    return "generic"


def nearest_alarms(alarms: tuple[timedelta, ...], cap: int | None) -> tuple[timedelta, ...]:
    """The `cap` alarms closest to the start (the last warnings matter most), in file order."""
    if cap is None or len(alarms) <= cap:
        return alarms
    kept = set(sorted(range(len(alarms)), key=lambda i: (abs(alarms[i]), i))[:cap])
    return tuple(a for i, a in enumerate(alarms) if i in kept)


def capped(commitments: tuple[Commitment, ...], profile: Profile) -> tuple[Commitment, ...]:
    """The commitments as this provider will keep them (alarms beyond its cap dropped)."""
    if profile.max_alarms is None:
        return commitments
    from dataclasses import replace

    return tuple(
        replace(c, alarms=nearest_alarms(c.alarms, profile.max_alarms))
        if len(c.alarms) > profile.max_alarms
        else c
        for c in commitments
    )


def cap_notes(commitments: tuple[Commitment, ...], profile: Profile) -> list[str]:
    """What `validate` says about alarms this provider will not keep."""
    from ..timeparse import format_offset

    cap = profile.max_alarms
    notes = []
    for c in commitments:
        if cap is not None and len(c.alarms) > cap:
            kept = nearest_alarms(c.alarms, cap)
            dropped = [format_offset(a) for a in c.alarms if a not in kept]
            notes.append(
                f"{c.source}: {c.id} has {len(c.alarms)} alarms; calendar.profile "
                f"{profile.name} keeps {cap} per event, so the nearest {cap} are written "
                f"({', '.join(dropped)} left out)"
            )
    return notes
