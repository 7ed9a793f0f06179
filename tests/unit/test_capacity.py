"""Rep capacity follows lead statuses: a closed lead gives its slot back once, a reopened one takes it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from leadflow.crm import assignments as capacity
from leadflow.crm.schema import Lead, SalesRep
from leadflow.steps import status

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _rep(crm, email: str, open_leads: int) -> int:
    with crm.begin() as conn:
        return conn.execute(insert(SalesRep).values(email=email, name=email, territories=[], segments=[],
                                                    max_open_leads=10, open_leads=open_leads)
                            .returning(SalesRep.id)).scalar_one()


def _lead(crm, email: str, owner: int | None, holds: bool, lead_status: str = "new") -> int:
    with crm.begin() as conn:
        return conn.execute(insert(Lead).values(
            email=email, first_touch_at=NOW, first_touch_source="web_form", last_touch_at=NOW,
            last_touch_source="web_form", status=lead_status, created_at=NOW, updated_at=NOW, owner_id=owner,
            holds_capacity=holds).returning(Lead.id)).scalar_one()


def _open_leads(crm, rep: int) -> int:
    with crm.begin() as conn:
        return conn.execute(select(SalesRep.open_leads).where(SalesRep.id == rep)).scalar_one()


def _holds(crm, lead: int) -> bool:
    with crm.begin() as conn:
        return bool(conn.execute(select(Lead.holds_capacity).where(Lead.id == lead)).scalar_one())


def test_closing_gives_the_slot_back_once_and_reopening_takes_it_again(crm):
    rep = _rep(crm, "rep@example.com", open_leads=3)
    lead = _lead(crm, "a@example.com", rep, holds=True)
    assert status.set_status(crm, "a@example.com", "disqualified", "no_budget", NOW).applied == 1
    assert _open_leads(crm, rep) == 2 and not _holds(crm, lead)
    # disqualified -> recycled keeps it closed: nothing more to give back.
    status.set_status(crm, "a@example.com", "recycled", None, NOW + timedelta(minutes=1))
    assert _open_leads(crm, rep) == 2
    status.set_status(crm, "a@example.com", "working", None, NOW + timedelta(minutes=2))
    assert _open_leads(crm, rep) == 3 and _holds(crm, lead)
    # Moving between open statuses changes nothing.
    status.set_status(crm, "a@example.com", "qualified", None, NOW + timedelta(minutes=3))
    assert _open_leads(crm, rep) == 3


def test_leads_that_hold_no_slot_change_no_counter(crm):
    rep = _rep(crm, "rep@example.com", open_leads=1)
    # A replayed (historical) assignment holds no slot; an unowned lead has no rep to give one back to.
    _lead(crm, "replayed@example.com", rep, holds=False)
    _lead(crm, "unowned@example.com", None, holds=False)
    status.set_status(crm, "replayed@example.com", "converted", None, NOW)
    status.set_status(crm, "unowned@example.com", "disqualified", "no_fit", NOW)
    assert _open_leads(crm, rep) == 1


def test_release_never_goes_below_zero_and_counts_once(crm):
    rep = _rep(crm, "rep@example.com", open_leads=0)
    lead = _lead(crm, "a@example.com", rep, holds=True)
    with crm.begin() as conn:
        assert capacity.release_capacity(conn, [lead, lead]) == 1
    with crm.begin() as conn:
        assert capacity.release_capacity(conn, [lead]) == 0
    assert _open_leads(crm, rep) == 0


@pytest.mark.parametrize(("old", "new", "released", "held"), [
    ("new", "converted", 1, 0), ("working", "disqualified", 1, 0), ("qualified", "recycled", 1, 0),
    ("discovery_call_booked", "spam", 1, 0), ("new", "working", 0, 0), ("converted", "recycled", 0, 0),
    ("disqualified", "working", 0, 1), ("recycled", "qualified", 0, 1),
])
def test_which_status_changes_move_capacity(crm, old, new, released, held):
    rep = _rep(crm, "rep@example.com", open_leads=5)
    lead = _lead(crm, "a@example.com", rep, holds=old in capacity.OPEN_STATUSES, lead_status=old)
    with crm.begin() as conn:
        assert capacity.follow_status_changes(conn, [(lead, old, new)]) == (released, held)
    assert _open_leads(crm, rep) == 5 - released + held
