"""`reminderd init`: a starter config and commitments file dated from now.

The demo must never be stale, so the follow-ups are written relative to the
clock: the first one within the hour (an SMS log line and a calendar alarm
show up while the user watches), the rest on the next working days. The
config keeps its own state dir beside it, so the demo never shares state
with the user's real config. Nothing is overwritten without `force`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import WouldOverwrite
from .timeparse import get_zone, next_weekday, system_zone_name


@dataclass(frozen=True, slots=True)
class Written:
    config: Path
    commitments: Path


CONFIG = """\
# reminderd starter config, written by `reminderd init` on {today}.
# Runs as it is: no account anywhere. Reference: README, "Config".
timezone: {zone}
commitments:
  - commitments.yaml            # relative to this file
state_dir: state                # this demo's own state, beside this file
calendar:                       # no url: reminderd serves its own CalDAV calendar
  name: Follow-ups
  listen: 127.0.0.1:5232
sms:
  provider: log                 # SMS backups are written to the log; see README for Twilio
  to: "+30 691 234 5678"        # your mobile number (E.164)
  quiet_hours: "21:30-07:30"
  late_grace: 30m
"""

COMMITMENTS = """\
# Your follow-up commitments, one entry per promise (README: "What a commitment looks like").
# Written by `reminderd init` on {today}, dated from then on: edit freely.
timezone: {zone}
defaults:
  duration: 15m
  alarms: [-1d, -1h, -10m]      # calendar alarms, before the start
  sms: [-30m]                   # SMS backups, before the start
commitments:
  - id: demo-acme-call
    title: Call Alex at ACME about the contract
    when: {first}
    channel: call
    contact:
      name: Alex Valassidis
      company: ACME
      phone: "+30 21 0123 4567"
      email: alex@acme.example
    purpose: He asked me to call back today to settle the payment terms
    bring: [Contract PDF, Payment schedule]
    questions: [Who signs on their side?]
    next_step: Send the contract for signature
    alarms: [-10m, 0m]
    sms: [-15m]
    follow_ups:
      - after: 2d
        purpose: Check the contract came back signed

  - id: demo-globex-demo
    title: Video demo for Globex purchasing
    when: {second}
    channel: video
    contact: {{name: Maria Chen, company: Globex, email: maria.chen@globex.example}}
    purpose: Show the reporting module she asked about
    bring: [Demo account with sample data, Price list]
    questions: [Who else signs off?, Budget cycle?]
    next_step: Send a quote the same day

  - id: demo-initech-visit
    title: Visit Initech warehouse
    when: {third}
    duration: 1h
    channel: visit
    contact: {{name: Peter Gibbons, company: Initech, phone: "+49 30 901820"}}
    purpose: Walk the site before the rollout
    bring: [Site survey checklist]
    skip_weekends: true
"""


def default_dir() -> Path:
    """SPEC: `$XDG_CONFIG_HOME/reminderd/`."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg, "reminderd")


def _wall(moment: datetime) -> str:
    """Local wall time as the file writes it; with the offset where the wall time is ambiguous."""
    naive = moment.replace(tzinfo=None)
    other = naive.replace(tzinfo=moment.tzinfo, fold=1 - moment.fold)
    if other.utcoffset() != moment.utcoffset():  # a DST fold: say which one
        return moment.isoformat(timespec="minutes")
    return moment.strftime("%Y-%m-%d %H:%M")


def _at_working_hour(day: datetime, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    """`hour:minute` on `day`, or on the Monday after if `day` is a weekend."""
    workday = next_weekday(day.date())
    local = datetime(workday.year, workday.month, workday.day, hour, minute, tzinfo=zone)
    return local.astimezone(UTC).astimezone(zone)  # normalises a wall time that DST skips


def plan_dates(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    """The three starter touches: within the hour, the next working day, two working days on."""
    local = now.astimezone(zone)
    # rounded up to 5 minutes in UTC (aware arithmetic in a zone would lose a DST fold)
    first = (now.astimezone(UTC) + timedelta(minutes=45)).replace(second=0, microsecond=0)
    first = (first + timedelta(minutes=(5 - first.minute % 5) % 5)).astimezone(zone)
    second = _at_working_hour(local + timedelta(days=1), 15, 30, zone)
    third = _at_working_hour(second + timedelta(days=1), 9, 0, zone)
    return first, second, third


def write_starter(
    directory: Path, now: datetime, *, force: bool = False, zone_name: str | None = None
) -> Written:
    """Write config.yaml and commitments.yaml into `directory`; WouldOverwrite unless `force`."""
    zone_name = zone_name or system_zone_name()
    zone = get_zone(zone_name)
    config, commitments = directory / "config.yaml", directory / "commitments.yaml"
    existing = [p for p in (config, commitments) if p.exists()]
    if existing and not force:
        names = " and ".join(str(p) for p in existing)
        raise WouldOverwrite(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; "
            "nothing written (use --force to replace them)"
        )
    first, second, third = plan_dates(now, zone)
    today = now.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    values = {
        "today": today,
        "zone": zone_name,
        "first": _wall(first),
        "second": _wall(second),
        "third": _wall(third),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for path, template in ((commitments, COMMITMENTS), (config, CONFIG)):
        _write_atomic(path, template.format(**values))
    return Written(config, commitments)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
