"""Acting on one inbound SMS: exactly once, through the one outcome path.

The record that a message was seen (its MessageSid), the outcome it makes
and the confirmation SMS it earns land in one transaction: a crash before
it leaves nothing (the next poll, or Twilio's retry of the webhook, brings
the message again), a crash after it leaves everything, and a message seen
again is dropped by its MessageSid. The confirmation goes out through the
outbox like every send.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..errors import OutcomeRefused
from ..model import Commitment, upcoming
from ..outcomes.apply import Request, confirmation, decide, record
from ..outcomes.model import Outcome
from ..phone import mask
from ..sms import refs
from ..sms.outbox import Outbox, iso
from ..sms.text import segments
from ..store.protocol import StateStore, Tx
from .grammar import HELP_TEXT, Command, ReplyError, parse_reply, resolve_when
from .webhook import InboundMessage

log = logging.getLogger(__name__)
REPLY_DEADLINE = timedelta(hours=1)  # a confirmation later than this helps nobody


@dataclass(frozen=True, slots=True)
class View:
    """The commitments a reply acts on: with outcomes laid over, and as the files say."""

    effective: Mapping[str, Commitment]
    parsed: Mapping[str, Commitment]


class _Seen(Exception):
    """The MessageSid is already recorded: roll back, act on nothing."""


class ReplyHandler:
    def __init__(
        self,
        db: StateStore,
        user: str | Mapping[str, str],
        zone: ZoneInfo,
        clock: Callable[[], datetime],
        view: Callable[[], View | None],
        on_outcome: Callable[[], None] = lambda: None,
        on_reply: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        # whose replies are commands: sms.to, or a team's phones -> each person's name
        self.users: Mapping[str, str | None] = {user: None} if isinstance(user, str) else user
        self.zone = zone
        self.clock = clock
        self.view = view
        self.on_outcome = on_outcome  # lay the outcome over and replan (the daemon's reload)
        self.on_reply = on_reply  # wake the SMS scheduler: a confirmation is queued
        self.outbox = Outbox(db)

    def seen(self, sid: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM inbound WHERE sid = ?", (sid,)))

    def handle(self, msg: InboundMessage) -> str:
        """Act on one message; returns what was made of it (also kept for `log`)."""
        if self.seen(msg.sid):
            return "seen"
        now = self.clock()
        if msg.sender not in self.users:
            log.info("SMS from %s ignored: not sms.to (nor a person's phone)", mask(msg.sender))
            return self._finish(msg, now, "ignored: another number", None, None)
        whose = self.users[msg.sender]
        try:
            command = parse_reply(msg.body)
        except ReplyError as exc:
            return self._finish(msg, now, f"not understood: {exc}", _help(str(exc)), None)
        if command.verb == "help":
            return self._finish(msg, now, "help", HELP_TEXT, None)
        view = _theirs(self.view(), whose)
        if view is None:  # no good load yet: nothing to act on; ask again later
            text = "Not now: reminderd has no good commitments loaded. Try again later."
            return self._finish(msg, now, "no commitments loaded", text, None)
        if command.verb == "agenda":
            return self._finish(msg, now, "agenda", self._agenda(view, now), None)
        try:
            outcome, text = self._outcome(command, view, now, msg.sender)
        except (OutcomeRefused, ReplyError) as exc:
            return self._finish(msg, now, f"refused: {exc}", _help(str(exc)), None)
        return self._finish(
            msg, now, f"{outcome.kind} {outcome.commitment}#{outcome.touch}", text, outcome
        )

    # -- the parts

    def _outcome(
        self, command: Command, view: View, now: datetime, sender: str
    ) -> tuple[Outcome, str]:
        commitment, index = self._target(command, sender)
        c = view.effective.get(commitment)
        if c is None:
            raise OutcomeRefused(f"no commitment '{commitment}'")
        local_now = now.astimezone(c.start.tzinfo)
        start = resolve_when(command.when_text, local_now) if command.when_text else None
        request = Request(
            commitment,
            command.verb,
            "sms",
            index,
            note=command.text if command.verb == "done" else None,
            start=start,
            snooze=command.duration,
            purpose=command.text if command.verb == "next" else None,
        )
        outcome, touch = decide(request, view.effective, view.parsed, now)
        return outcome, confirmation(outcome, touch)

    def _target(self, command: Command, sender: str) -> tuple[str, int | None]:
        """(commitment id, touch index or None for "the next one") a command names;
        "the last one" is the last backup sent to this number."""
        if command.target is not None and command.target_is_ref:
            key = refs.touch_of(self.db, command.target)
            if key is None:
                raise OutcomeRefused(f"no reminder #{command.target}")
            return _split(key)
        if command.target is not None:
            return command.target, None
        rows = self.db.query(
            "SELECT payload FROM sms_outbox WHERE kind = 'backup' AND status = 'sent' "
            "ORDER BY updated_at DESC LIMIT 200"
        )
        team = self.users[sender] is not None
        for (payload,) in rows:
            sent = json.loads(payload)
            if not team or sent.get("to") == sender:
                return _split(str(sent["touch"]))
        raise OutcomeRefused("which one? start the reply with the #ref of its reminder")

    def _agenda(self, view: View, now: datetime) -> str:
        local = now.astimezone(self.zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        found = upcoming(view.effective.values(), now, (start + timedelta(days=2)).astimezone(UTC))
        if not found:
            return "Nothing today or tomorrow."
        lines = []
        given = refs.assign(self.db, [t.key for t in found if t.commitment.sms])  # one look
        for t in found:
            when = t.start.astimezone(self.zone)
            day = "Today" if when.date() == local.date() else "Tmrw"
            ref = given.get(t.key)
            lines.append(f"{day} {when:%H:%M} {t.commitment.title}" + (f" #{ref}" if ref else ""))
        text = "\n".join(lines)
        while segments(text) > 4 and len(lines) > 1:
            lines.pop()
            text = "\n".join(lines) + "\n..."
        return text

    def _finish(
        self,
        msg: InboundMessage,
        now: datetime,
        result: str,
        reply: str | None,
        outcome: Outcome | None,
    ) -> str:
        """Record the message, its outcome and its reply together; drop it if seen."""

        def together(tx: Tx) -> None:
            cur = tx.execute(
                "INSERT INTO inbound (sid, received, result) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (msg.sid, iso(now), result),
            )
            if cur.rowcount != 1:
                raise _Seen
            if reply is not None:
                team = self.users.get(msg.sender) is not None
                self.outbox.add_in(
                    tx,
                    f"reply@{msg.sid}",
                    "reply",
                    now,
                    now + REPLY_DEADLINE,
                    {"text": reply, "to": msg.sender} if team else {"text": reply},
                    now,
                )

        try:
            if outcome is not None:
                record(self.db, outcome, also=together)
            else:
                with self.db.transaction() as tx:
                    together(tx)
        except _Seen:
            return "seen"
        log.info("SMS reply %s: %s", msg.sid, result)
        if outcome is not None:
            self.on_outcome()
        if reply is not None:
            self.on_reply()
        return result


def _theirs(view: View | None, whose: str | None) -> View | None:
    """A team member acts on their own follow-ups only (None: the one user's, all)."""
    if view is None or whose is None:
        return view
    return View(
        {k: c for k, c in view.effective.items() if c.owner == whose},
        {k: c for k, c in view.parsed.items() if c.owner == whose},
    )


def _split(key: str) -> tuple[str, int]:
    commitment, _, index = key.rpartition("#")
    return commitment, int(index)


def _help(problem: str) -> str:
    """The problem, then the help text, cut to fit two SMS segments."""
    text = f"{problem.rstrip('.')}. {HELP_TEXT}"
    return text if segments(text) <= 2 else HELP_TEXT
