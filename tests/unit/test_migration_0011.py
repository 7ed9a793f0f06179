"""Migration 0011 on a populated CRM: which existing leads it marks as holding their owner's slot, and the counters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import make_url

from leadflow.crm.store import Store, database_url

BEFORE = "0010_task_sla_watch"
REVISION = "0011_rep_capacity_holds"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# Each lead: its owner (a rep's key or None) and its tasks as (kind, status, task owner); optional lead columns.
LEADS: dict[str, tuple[str | None, list[tuple[str, str, str | None]]]] = {
    "held@example.com": ("ann", [("qualification", "open", "ann")]),
    "held-among-others@example.com": ("bob", [("qualification", "cancelled", "bob"), ("follow_up", "open", "bob"),
                                              ("qualification", "open", "bob")]),
    # The rep did the task, the lead is still being worked: the slot stays taken.
    "worked@example.com": ("ann", [("qualification", "done", "ann")]),
    # Replays record their task as cancelled: they never reserved a slot.
    "replayed@example.com": ("ann", [("qualification", "cancelled", "ann")]),
    # Closed or flagged before this revision: the slot should have been given back then.
    "converted@example.com": ("ann", [("qualification", "done", "ann")]),
    "disqualified@example.com": ("bob", [("qualification", "open", "bob")]),
    "spam@example.com": ("bob", [("qualification", "open", "bob")]),
    "other-kind@example.com": ("ann", [("follow_up", "open", "ann")]),
    # Reassigned by hand after qualification: the task's owner is not the lead's owner.
    "reassigned@example.com": ("ann", [("qualification", "open", "bob")]),
    "unowned-task@example.com": ("ann", [("qualification", "open", None)]),
    "no-owner@example.com": (None, [("qualification", "open", "ann")]),
    "no-owner-no-task@example.com": (None, []),
    # Other leads' open tasks must not count for a lead without any.
    "no-task@example.com": ("bob", []),
}
LEAD_COLUMNS: dict[str, dict] = {
    "worked@example.com": {"status": "working"},
    "converted@example.com": {"status": "converted"},
    "disqualified@example.com": {"status": "disqualified"},
    "spam@example.com": {"is_spam": True, "spam_flagged_at": NOW},
}
HOLDING = {"held@example.com", "held-among-others@example.com", "worked@example.com"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path) -> Iterator[Store]:
    """A store on a brand-new, unmigrated database (the session's PostgreSQL database is already at head)."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'crm.db'}")
        yield store
        store.dispose()
        return
    # Requesting the session database brings its skip (no LEADFLOW_TEST_PG_URL) or failure (unreachable).
    server_url = request.getfixturevalue("pg_database_url")
    admin = create_engine(database_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"leadflow_mig_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _populate(store: Store) -> dict[str, int]:
    """Insert reps, leads and tasks as the 0010 schema has them; returns the reps' ids by key."""
    # Reflected, not the models: the models already carry holds_capacity, which 0010 has not.
    meta = MetaData()
    meta.reflect(store.engine, only=["sales_reps", "leads", "crm_tasks"])
    reps, leads, tasks = (meta.tables[t] for t in ("sales_reps", "leads", "crm_tasks"))
    with store.begin() as conn:
        rep_ids = {key: conn.execute(reps.insert().values(
            email=f"{key}@sales.example.com", name=key.title(), territories=[], segments=[], open_leads=3,
        ).returning(reps.c.id)).scalar_one() for key in ("ann", "bob")}
        for email, (owner, lead_tasks) in LEADS.items():
            lead_id = conn.execute(leads.insert().values(
                email=email, first_touch_at=NOW, first_touch_source="web_form", last_touch_at=NOW,
                last_touch_source="web_form", created_at=NOW, updated_at=NOW,
                owner_id=rep_ids[owner] if owner else None, **LEAD_COLUMNS.get(email, {}),
            ).returning(leads.c.id)).scalar_one()
            for i, (kind, status, task_owner) in enumerate(lead_tasks):
                conn.execute(tasks.insert().values(
                    idempotency_key=f"{kind}:{email}:{i}", lead_id=lead_id, kind=kind, status=status,
                    owner_id=rep_ids[task_owner] if task_owner else None, details={},
                ))
    return rep_ids


def test_0011_marks_live_assigned_open_leads_and_recounts_the_reps_slots(empty_db):
    empty_db.upgrade(BEFORE)
    assert empty_db.revision() == BEFORE
    rep_ids = _populate(empty_db)

    empty_db.upgrade(REVISION)

    assert empty_db.revision() == REVISION
    meta = MetaData()
    meta.reflect(empty_db.engine, only=["sales_reps", "leads"])
    leads, reps = meta.tables["leads"], meta.tables["sales_reps"]
    with empty_db.engine.connect() as conn:
        holds = dict(conn.execute(select(leads.c.email, leads.c.holds_capacity)).all())
        open_leads = dict(conn.execute(select(reps.c.id, reps.c.open_leads)).all())
    assert holds == {email: email in HOLDING for email in LEADS}
    # Counters recounted from the marks (both reps had 3, closed and flagged leads included).
    assert open_leads == {rep_ids["ann"]: 2, rep_ids["bob"]: 1}
