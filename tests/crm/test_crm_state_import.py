"""A CRM export's own state through intake and qualification (the plain steps), on SQLite and PostgreSQL.

Converted and closed leads keep their status, are never flagged as spam and get no task or message; owners that
name a rep are kept; opt-outs and do-not-contact are set; rows older than the freshness window queue no message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from leadflow.crm import reference
from leadflow.crm.schema import CrmTask, Lead, LeadEvent, OutboxMessage
from leadflow.domain.progress import LeadStep
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import IntakeSummary, QualificationSummary
from leadflow.steps.qualification import local_steps, qualify
from leadflow.steps.repair import find_unfinished
from tests.helpers import lead, run_intake, write_csv

# A Salesforce-style export: its own headers, mapped onto the contract's CRM-state columns.
COLUMN_MAP = {"Lead Status": "lead_status", "Lifecycle Stage": "lifecycle_stage", "IsConverted": "converted",
              "Owner": "owner", "HasOptedOutOfEmail": "email_opt_out", "Do Not Call": "do_not_contact"}
# Reasons enough to flag any lead that is not converted or closed.
SPAMMY = {"honeypot": "filled", "message": "online casino bonus"}


def _rows(crm, model, *where) -> list[dict[str, Any]]:
    with crm.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(model.__table__).where(*where))]


def _qualify(crm, now: datetime, messages: str = "auto") -> dict[str, Any]:
    with crm.engine.connect() as conn:
        ids = sorted(conn.execute(select(Lead.id)).scalars())
    policy = load_qualification_policy()
    summary = QualificationSummary(policy_version=policy.version)
    return qualify(local_steps(crm), ids, policy, summary, replay=False, timezone="UTC", clock=lambda: now,
                   chunk_size=50_000, messages=messages).as_dict()


def test_an_export_keeps_its_crm_state_and_converted_leads_are_left_alone(crm, tmp_path):
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    now = datetime.now(UTC)
    at = (now - timedelta(hours=1)).isoformat()
    path = write_csv(tmp_path / "salesforce.csv", [
        lead("won@acme.com", at, **{"Lead Status": "Closed - Converted", "IsConverted": "true"}, **SPAMMY),
        lead("lost@acme.com", at, **{"Lead Status": "Closed - Not Converted", "IsConverted": "false"}, **SPAMMY),
        lead("customer@acme.com", at, **{"Lifecycle Stage": "customer"}, **SPAMMY),
        lead("bot@acme.com", at, **{"Lead Status": "Open - Not Contacted"}, **SPAMMY),
        lead("kept@globex.de", at, country="DE", **{"Lead Status": "Working - Contacted",
                                                     "Owner": "LIAM.BECKER@leadflow.example",
                                                     "HasOptedOutOfEmail": "1", "Do Not Call": "Yes"}),
        lead("fresh@initech.com", at, country="US", **{"Lead Status": "Purple", "Owner": "005xx000001Sv6dAAC",
                                                        "Lifecycle Stage": "marketingqualifiedlead"}),
    ])
    summary = run_intake(crm, path, column_map=COLUMN_MAP)
    leads = {r["email"]: r for r in _rows(crm, Lead)}
    assert {e: (r["status"], r["is_spam"]) for e, r in leads.items()} == {
        "won@acme.com": ("converted", False), "lost@acme.com": ("disqualified", False),
        "customer@acme.com": ("converted", False), "bot@acme.com": ("spam", True),
        "kept@globex.de": ("working", False), "fresh@initech.com": ("new", False)}
    assert leads["lost@acme.com"]["status_reason"] == "closed_not_converted"
    events = {(e["lead_id"], e["details"]["to"]): e["details"] for e in
              _rows(crm, LeadEvent, LeadEvent.event_type == "status_changed")}
    assert events[(leads["won@acme.com"]["id"], "converted")]["original"] == "Closed - Converted"
    assert events[(leads["customer@acme.com"]["id"], "converted")]["original"] == "customer"
    kept = leads["kept@globex.de"]
    assert kept["owner_id"] is not None and kept["email_opt_in"] is False and kept["do_not_contact"] is True
    assert leads["fresh@initech.com"]["owner_id"] is None
    state = summary["crm_state"]
    # "Open - Not Contacted" and an MQL are new already: four statuses change.
    assert state["statuses_imported"] == 4 and state["owners_kept"] == 1
    assert state["owners_unmatched_routed_as_usual"] == 1 and state["opted_out"] == 1 and state["do_not_contact"] == 1
    assert state["unmapped_values"] == {"lead_status:Purple": 1}
    assert "crm owners_kept" in IntakeSummary.from_dict(summary).to_text()

    result = _qualify(crm, now)
    assert result["skipped_closed"] == 3 and result["skipped_spam"] == 1 and result["leads"] == 2
    assert result["messages_held_back"] == {"converted_or_closed": 3}
    closed = {leads[e]["id"] for e in ("won@acme.com", "lost@acme.com", "customer@acme.com")}
    assert not [t for t in _rows(crm, CrmTask) if t["lead_id"] in closed]
    outbox = _rows(crm, OutboxMessage)
    assert not [m for m in outbox if m["lead_id"] in closed]
    # The fresh lead is answered; the one that opted out and must not be contacted is not.
    answered = {m["lead_id"] for m in outbox if m["kind"] == "auto_response"}
    assert answered == {leads["fresh@initech.com"]["id"]}
    assert _rows(crm, Lead, Lead.email == "kept@globex.de")[0]["owner_id"] == kept["owner_id"]
    # Left out on purpose, the closed leads are complete: `leadflow repair` must not take them for unfinished.
    assert {r["email"]: r["step_mark"] for r in _rows(crm, Lead)} == dict.fromkeys(leads, LeadStep.COMPLETE)
    assert find_unfinished(crm, now + timedelta(days=1)).empty


def test_an_old_file_queues_no_message_and_a_fresh_one_does(crm, tmp_path):
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    now = datetime.now(UTC)
    old = write_csv(tmp_path / "event-2023.csv", [
        lead(f"guest{i}@acme.com", f"2023-05-0{i + 1}T10:00:00Z", country="US", job_title="CTO",
             demo_requested="yes") for i in range(3)])
    run_intake(crm, old)
    result = _qualify(crm, now)
    assert result["leads"] == 3 and result["historical"] == 3
    assert result["messages_held_back"] == {"older_than_window": 3} and sum(result["messages_queued"].values()) == 0
    assert not _rows(crm, OutboxMessage)
    tasks = _rows(crm, CrmTask)
    # Recorded as history, the way backfill's replay records it: closed at once, no SLA due in the past.
    assert tasks and all(t["status"] == "cancelled" and t["due_at"] is None for t in tasks)

    fresh = write_csv(tmp_path / "today.csv", [lead("new@acme.com", (now - timedelta(minutes=5)).isoformat(),
                                                    country="US", job_title="CTO", demo_requested="yes")])
    run_intake(crm, fresh)
    result = _qualify(crm, now)
    assert result["messages_queued"]["auto_response"] == 1 and result["historical"] == 0
    new_id = _rows(crm, Lead, Lead.email == "new@acme.com")[0]["id"]
    assert {m["lead_id"] for m in _rows(crm, OutboxMessage)} == {new_id}
    assert {t["status"] for t in _rows(crm, CrmTask, CrmTask.lead_id == new_id)} == {"open"}


def test_messages_none_holds_back_even_fresh_leads_and_all_overrides_the_window(crm, tmp_path):
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    now = datetime.now(UTC)
    run_intake(crm, write_csv(tmp_path / "mixed.csv", [
        lead("today@acme.com", (now - timedelta(hours=2)).isoformat(), country="US"),
        lead("old@acme.com", "2023-05-01T10:00:00Z", country="US")]))
    result = _qualify(crm, now, messages="none")
    assert result["messages_held_back"] == {"older_than_window": 1, "messages_none": 1}
    assert not _rows(crm, OutboxMessage)
    # The fresh lead was worked live (an open task with its SLA), the old one recorded as history.
    tasks = {t["lead_id"]: t for t in _rows(crm, CrmTask, CrmTask.kind == "qualification")}
    by_email = {r["email"]: r["id"] for r in _rows(crm, Lead)}
    assert tasks[by_email["today@acme.com"]]["status"] == "open"
    assert tasks[by_email["old@acme.com"]]["status"] == "cancelled"
    result = _qualify(crm, now, messages="all")
    assert result["messages_queued"]["auto_response"] == 2 and result["messages_held_back"] == {}
