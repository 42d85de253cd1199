"""Replies in a team: each person's phone acts on their own follow-ups only.

The handler is driven directly over a SQLite state (no server): a person's DONE
records an outcome for their commitment and a confirmation to their own phone; a
reference or an id of someone else's follow-up is refused like an unknown one; a
number that is nobody's is ignored. Time is injected.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminderd.model import Commitment, Contact
from reminderd.replies.handler import ReplyHandler, View
from reminderd.replies.webhook import InboundMessage
from reminderd.sms import refs
from reminderd.store.sqlite import StateDB

ZONE = ZoneInfo("Europe/Athens")
NOW = datetime(2031, 3, 4, 8, 0, tzinfo=UTC)  # an injected now; nothing here reads the clock
ANA, BEN = "+306910000001", "+306910000002"


def commitment(ident: str, owner: str) -> Commitment:
    return Commitment(
        id=ident,
        title=f"Call {ident}",
        start=(NOW + timedelta(hours=3)).astimezone(ZONE),
        duration=timedelta(minutes=15),
        contact=Contact(name="Alex"),
        sms=(timedelta(minutes=-30),),
        owner=owner,
    )


@pytest.fixture
def handler(tmp_path: Path) -> tuple[ReplyHandler, StateDB]:
    db = StateDB(tmp_path / "state.sqlite3")
    mine = {c.id: c for c in (commitment("acme", "Ana"), commitment("globex", "Ben"))}
    return (
        ReplyHandler(db, {ANA: "Ana", BEN: "Ben"}, ZONE, lambda: NOW, lambda: View(mine, mine)),
        db,
    )


def reply(db: StateDB, sid: str) -> tuple[str, dict[str, str]]:
    (body,) = db.query("SELECT payload FROM sms_outbox WHERE key = ?", (f"reply@{sid}",))[0]
    payload = json.loads(body)
    return payload["text"], payload


def test_a_persons_done_acts_on_their_follow_up_and_is_confirmed_to_them(
    handler: tuple[ReplyHandler, StateDB],
) -> None:
    h, db = handler
    assert h.handle(InboundMessage("SM1", ANA, "+15017122661", "acme done", NOW)) == "done acme#0"
    assert db.query("SELECT commitment, kind, source FROM outcomes") == [("acme", "done", "sms")]
    text, payload = reply(db, "SM1")
    assert payload["to"] == ANA and "Call acme" in text


def test_someone_elses_follow_up_is_refused_by_id_and_by_reference(
    handler: tuple[ReplyHandler, StateDB],
) -> None:
    h, db = handler
    result = h.handle(InboundMessage("SM2", ANA, "+15017122661", "globex done", NOW))
    assert result == "refused: no commitment 'globex'"
    ref = refs.assign(db, ["globex#0"])["globex#0"]
    result = h.handle(InboundMessage("SM3", ANA, "+15017122661", f"#{ref} done", NOW))
    assert result == "refused: no commitment 'globex'"
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(0,)]
    assert reply(db, "SM3")[1]["to"] == ANA  # the refusal goes to who asked
    assert h.handle(InboundMessage("SM4", BEN, "+15017122661", f"#{ref} done", NOW)) == (
        "done globex#0"
    )


def test_a_number_that_is_nobodys_is_ignored(handler: tuple[ReplyHandler, StateDB]) -> None:
    h, db = handler
    result = h.handle(InboundMessage("SM5", "+306999999999", "+15017122661", "acme done", NOW))
    assert result == "ignored: another number"
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(0,)]


def test_a_bare_done_names_the_last_backup_sent_to_that_person(
    handler: tuple[ReplyHandler, StateDB],
) -> None:
    h, db = handler
    with db.transaction() as tx:
        for key, to, stamp in (("acme", ANA, "08:00"), ("globex", BEN, "08:01")):
            tx.execute(
                "INSERT INTO sms_outbox (key, kind, due, send_at, next_try, deadline, payload, "
                "status, attempts, ambiguous, updated_at) VALUES (?, 'backup', ?, ?, ?, ?, ?, "
                "'sent', 1, 0, ?)",
                (
                    f"{key}#0@-30m",
                    "2031-03-04T10:30:00.000+00:00",
                    "2031-03-04T10:30:00.000+00:00",
                    "2031-03-04T10:30:00.000+00:00",
                    "2031-03-04T11:00:00.000+00:00",
                    json.dumps({"touch": f"{key}#0", "to": to}),
                    f"2031-03-04T{stamp}:00.000+00:00",
                ),
            )
    # Ben's was sent last, but Ana's bare "done" is about the last one *she* got
    assert h.handle(InboundMessage("SM6", ANA, "+15017122661", "done", NOW)) == "done acme#0"
