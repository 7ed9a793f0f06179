"""The spam-cleanup flow end to end on SQLite and PostgreSQL: flag, dry run, idempotency, restore, purge.

The steps' rules and SQL are tested directly in tests/unit/test_cleanup.py and tests/crm/test_spam_store.py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from prefect import flow
from sqlalchemy import insert, select, update

from data_checks.runner import DataCheckError
from data_checks.spam import check_spam_flags, guard_spam_flags
from flows.intake import lead_intake
from flows.spam_cleanup import spam_cleanup
from leadflow.config.settings import get_settings
from leadflow.crm.schema import CrmTask, IntakeBatch, Lead, LeadEvent, LeadSubmission, OutboxMessage, SpamTombstone
from leadflow.domain.spam import email_hash
from leadflow.steps import spam as cleanup
from tasks.spam import check_spam_at_intake
from tests.helpers import lead, lenient_spam_policy, snapshot, write_csv

RECENT = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)


def recent(minutes: int = 0) -> str:
    return (RECENT + timedelta(minutes=minutes)).isoformat()


ROWS = [
    lead("ann@acme.example", recent(), first_name="Ann", last_name="Test", company="Acme GmbH"),
    lead("bob@gmail.com", recent(1), first_name="Bob", message="Please call me about pricing"),
    lead("bot@mailinator.com", recent(2), first_name="Win", message="best online casino, visit now"),
    lead("pot@acme.example", recent(3), honeypot="I am a bot", first_name="Pat"),
]


def load(crm, tmp_path, rows=ROWS, name="leads.csv") -> None:
    """Take leads in as they came before today's lists and rules: intake's own spam check flags none of them."""
    os.environ["LEADFLOW_SPAM_POLICY"] = lenient_spam_policy(tmp_path)
    get_settings.cache_clear()
    try:
        # Qualification is left out: work_on() below gives leads the tasks and messages it would.
        lead_intake(path=write_csv(tmp_path / name, rows), qualify=False)
    finally:
        os.environ.pop("LEADFLOW_SPAM_POLICY", None)
        get_settings.cache_clear()


def one(crm, model, *where):
    with crm.engine.connect() as conn:
        return conn.execute(select(model).where(*where)).one_or_none()


def work_on(crm, email: str) -> int:
    """Give a lead an open task and a pending auto-response, as qualification would."""
    lead_id = one(crm, Lead, Lead.email == email).id
    with crm.begin() as conn:
        conn.execute(insert(CrmTask).values(idempotency_key=f"t{lead_id}", lead_id=lead_id, kind="qualification",
                                            status="open"))
        conn.execute(insert(OutboxMessage).values(idempotency_key=f"o{lead_id}", lead_id=lead_id,
                                                  kind="auto_response", channel="email", recipient=email,
                                                  subject="Thanks", body="We will be in touch", status="pending"))
    return lead_id


def pipeline_state(crm, lead_id: int) -> dict:
    """What the working pipeline sees of a lead: its row (minus update time) and its tasks and messages."""
    with crm.engine.connect() as conn:
        row = conn.execute(select(Lead).where(Lead.id == lead_id)).mappings().one()
        tasks = conn.execute(select(CrmTask.id, CrmTask.status).where(CrmTask.lead_id == lead_id)).all()
        outbox = conn.execute(select(OutboxMessage.id, OutboxMessage.status)
                              .where(OutboxMessage.lead_id == lead_id)).all()
    lead_row = dict(row)
    lead_row.pop("updated_at")
    return {"lead": lead_row, "tasks": tasks, "outbox": outbox}


def test_flag_restore_purge_and_idempotency(crm, tmp_path):
    load(crm, tmp_path)
    bot_id = work_on(crm, "bot@mailinator.com")
    before_flag = pipeline_state(crm, bot_id)
    untouched = snapshot(crm)

    preview = spam_cleanup(dry_run=True)
    assert preview["dry_run"] and preview["flagged"]["flagged"] == 2
    assert snapshot(crm) == untouched

    result = spam_cleanup()
    flagged = result["flagged"]
    assert flagged["leads_checked"] == 4 and flagged["flagged"] == 2
    assert flagged["by_reason"] == {"disposable_domain": 1, "honeypot_filled": 1, "spam_message": 1}
    assert flagged["tasks_cancelled"] == 1 and flagged["outbox_withdrawn"] == 1
    assert {row["email"] for row in flagged["sample"]} == {"b***@m***.com", "p***@a***.example"}
    assert "@mailinator.com" not in str(result)
    assert one(crm, Lead, Lead.email == "ann@acme.example").status == "new"
    assert one(crm, Lead, Lead.email == "bob@gmail.com").status == "new"

    after_first = snapshot(crm)
    again = spam_cleanup()
    assert again["flagged"]["flagged"] == 0 and again["purged"]["purged"] == 0
    assert snapshot(crm) == after_first

    restored = cleanup.restore_spam(crm, email="bot@mailinator.com", now=datetime.now(UTC), by="ops")
    assert restored.restored == 1
    assert pipeline_state(crm, bot_id) == before_flag
    assert spam_cleanup()["flagged"]["flagged"] == 0
    assert spam_cleanup()["restored"] == 1

    # Time passes: the honeypot lead's quarantine expires and it is purged, leaving only its tombstone.
    pot = one(crm, Lead, Lead.email == "pot@acme.example")
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.id == pot.id)
                     .values(spam_flagged_at=datetime.now(UTC) - timedelta(days=31)))
    purged = spam_cleanup()["purged"]
    assert purged["purged"] == 1 and purged["by_reason"] == {"honeypot_filled": 1}
    with crm.engine.connect() as conn:
        assert conn.execute(select(LeadSubmission).where(LeadSubmission.lead_id == pot.id)).all() == []
        assert conn.execute(select(LeadEvent).where(LeadEvent.lead_id == pot.id)).all() == []
        stones = conn.execute(select(SpamTombstone.email_hash, SpamTombstone.reasons)).all()
    assert one(crm, Lead, Lead.id == pot.id) is None
    assert stones == [(email_hash(pd.Series(["pot@acme.example"])).iloc[0], "honeypot_filled")]

    # The address comes back clean-looking: the tombstone flags it at intake (lead-intake's Check Spam task).
    load(crm, tmp_path, [lead("pot@acme.example", recent(30), first_name="Pat")], name="back.csv")
    with crm.engine.connect() as conn:
        batch = conn.execute(select(IntakeBatch.id).order_by(IntakeBatch.started_at.desc())).scalars().first()
    back = one(crm, Lead, Lead.email == "pot@acme.example")
    assert back.status == "spam" and back.spam_reasons == "known_bad_address"

    @flow
    def intake_seam() -> dict:
        return check_spam_at_intake([back.id], batch, datetime.now(UTC))

    again = intake_seam()  # the task on its own: an already flagged lead is not flagged twice
    assert again["flagged"] == 0 and one(crm, Lead, Lead.id == back.id).status == "spam"


def test_bad_since_fails_the_run_with_a_clear_error():
    # The flow's body checks `since` before it reads or writes anything: no harness run needed to see it refuse.
    with pytest.raises(cleanup.SpamCleanupError, match="ISO date"):
        spam_cleanup.fn(since="last tuesday")


def test_the_guard_passes_clean_plans_and_stops_converted_ones():
    clean = pd.DataFrame({"lead_id": [1, 2], "previous_status": ["new", "working"]})
    assert check_spam_flags(clean).success
    guard_spam_flags(clean)
    bad = pd.DataFrame({"lead_id": [1, 2, 3], "previous_status": ["new", "converted", "won"]})
    outcome = check_spam_flags(bad)
    assert not outcome.success and outcome.failures[0].unexpected_count == 2
    with pytest.raises(DataCheckError, match="converted or won"):
        guard_spam_flags(bad)
