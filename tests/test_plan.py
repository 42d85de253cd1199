"""Sync planning (pure): desired + saved state + server view -> actions."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from reminderd.model import Commitment, touches
from reminderd.store.protocol import EventRow
from reminderd.sync.plan import Adopt, Create, Delete, Desired, Forget, Record, Update, plan_sync

T = touches(
    Commitment(
        id="x",
        title="t",
        start=datetime(2030, 1, 1, 10, tzinfo=ZoneInfo("UTC")),
        duration=timedelta(minutes=15),
    )
)[0]


def want(n: int, h: str = "h") -> Desired:
    return Desired(f"u{n}", f"/cal/reminderd-{n}.ics", h, T)


def row(n: int, etag: str | None = "e", h: str = "h") -> EventRow:
    return EventRow(f"u{n}", f"/cal/reminderd-{n}.ics", etag, h)


def test_nothing_changed_is_no_action() -> None:
    plan = plan_sync({"u1": want(1)}, {"u1": row(1)}, {"/cal/reminderd-1.ics": "e"})
    assert plan.actions == [] and plan.unchanged == 1


def test_new_changed_removed() -> None:
    plan = plan_sync(
        {"u1": want(1, "new"), "u2": want(2)},
        {"u1": row(1), "u3": row(3)},
        {"/cal/reminderd-1.ics": "e", "/cal/reminderd-3.ics": "e3", "/cal/other.ics": "x"},
    )
    kinds = sorted(type(a).__name__ for a in plan.actions)
    assert kinds == ["Create", "Delete", "Update"]
    (update,) = [a for a in plan.actions if isinstance(a, Update)]
    assert update.etag == "e" and not update.drift
    (delete,) = [a for a in plan.actions if isinstance(a, Delete)]
    assert delete.etag == "e3" and delete.uid == "u3"


def test_server_side_delete_and_edit() -> None:
    plan = plan_sync(
        {"u1": want(1), "u2": want(2)},
        {"u1": row(1), "u2": row(2)},
        {"/cal/reminderd-2.ics": "edited"},
    )
    create, update = sorted(plan.actions, key=lambda a: type(a).__name__)
    assert isinstance(create, Create) and create.recreate
    assert isinstance(update, Update) and update.drift and update.etag == "edited"


def test_gone_everywhere_is_forgotten_and_unknown_etag_recorded() -> None:
    plan = plan_sync(
        {"u1": want(1)}, {"u1": row(1, etag=None), "u9": row(9)}, {"/cal/reminderd-1.ics": "e"}
    )
    assert sorted(type(a).__name__ for a in plan.actions) == ["Forget", "Record"]
    assert isinstance(plan.actions[0], (Record, Forget))


def test_lost_state_adopts_and_finds_orphans_by_name_only() -> None:
    plan = plan_sync(
        {"u1": want(1)},
        {},
        {"/cal/reminderd-1.ics": "e", "/cal/reminderd-7.ics": "e7", "/cal/dentist.ics": "d"},
    )
    kinds = {type(a).__name__: a for a in plan.actions}
    assert isinstance(kinds["Adopt"], Adopt)
    assert (
        kinds["Delete"].uid is None and kinds["Delete"].href == "/cal/reminderd-7.ics"
    )  # verified before delete
    assert all(getattr(a, "href", "") != "/cal/dentist.ics" for a in plan.actions)


def test_mass_delete_guard() -> None:
    state = {f"u{i}": row(i) for i in range(4)}
    remote = {r.href: "e" for r in state.values()}
    assert plan_sync({}, state, remote).mass_delete()
    assert (
        plan_sync({"u0": want(0), "u1": want(1)}, state, remote).mass_delete() is False
    )  # half is not most
    assert (
        plan_sync(
            {f"u{i}": want(i) for i in (0, 1, 2)},
            {"u0": row(0), "u1": row(1), "u2": row(2), "u3": row(3)},
            remote,
        ).mass_delete()
        is False
    )
    one = {"u0": row(0)}
    assert (
        plan_sync({}, one, {"/cal/reminderd-0.ics": "e"}).mass_delete() is False
    )  # a single delete is fine
