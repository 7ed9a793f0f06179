"""lead-qualification under the Prefect test harness, on real SQLite and real PostgreSQL.

Three runs: as intake's subflow on the sample leads (delivery left to outbox-delivery) and a re-run on its own,
one hot lead through intake with the messages delivered in the run, and the emails parameter. Every other case
runs the same sequence with the plain steps (tests/unit/test_qualification_steps.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select

from flows.intake import lead_intake
from flows.qualification import lead_qualification
from leadflow.config.settings import get_settings
from leadflow.crm import reference
from leadflow.crm.schema import Account, CrmTask, Lead, LeadEvent, OutboxMessage, SalesRep
from tests.helpers import lead, snapshot, write_csv


@pytest.fixture
def crm_q(crm, tmp_path, monkeypatch):
    """A CRM with the demo reps and accounts, and an outbox folder of its own."""
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    yield crm
    get_settings.cache_clear()


def _rows(crm, model, *where):
    with crm.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(model.__table__).where(*where))]


HOT = {"job_title": "CTO", "company_size": "1200", "demo_requested": "yes", "country": "US",
       "message": "We need a replacement asap, budget approved"}


def test_sample_leads_through_intake_then_a_rerun_changes_nothing(crm_q, tmp_path, monkeypatch):
    import prefect.events

    from flows.delivery import outbox_delivery
    from flows.quiet import MESSAGES_QUEUED_EVENT
    from leadflow.domain.summary import IntakeSummary

    events: list[dict] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **event: events.append(event))

    # A bulk import: intake's qualification subflow leaves the messages to the outbox-delivery run.
    monkeypatch.setenv("LEADFLOW_INLINE_DELIVERY_MAX_LEADS", "1")
    get_settings.cache_clear()
    # The sample's rows are months old: `all` treats them as fresh, as this bulk-import-and-deliver case needs.
    summary = lead_intake(path=str(reference.SAMPLE_LEADS), messages="all")
    first = summary["qualification"]
    with crm_q.engine.connect() as conn:
        ids = sorted(conn.execute(select(Lead.id)).scalars())
    assert first["leads"] + first["skipped_spam"] == len(ids)
    assert sum(first["by_priority"].values()) == first["leads"]
    assert first["tasks_created"]["qualification"] == first["leads"]
    leads = _rows(crm_q, Lead, Lead.is_spam.is_(False))
    assert all(row["priority"] in {"P1", "P2", "P3", "P4"} and row["checklist"]["version"] for row in leads)
    assert all(set(row["checklist"]) >= {"budget", "authority", "need", "timeline"} for row in leads)
    assert sum(1 for row in leads if row["account_id"]) == first["leads_linked"]
    queued = sum(first["messages_queued"].values())
    assert queued >= 3 and first["delivered"] == 0
    # The messages left for outbox-delivery wake its deployment (prefect.yaml's trigger) instead of a schedule.
    assert sum(e["payload"]["messages"] for e in events if e["event"] == MESSAGES_QUEUED_EVENT) == queued
    assert {m["status"] for m in _rows(crm_q, OutboxMessage)} == {"pending"}
    assert f"waiting in outbox    {queued}:" in IntakeSummary.from_dict(summary).to_text()
    before = snapshot(crm_q)
    second = lead_qualification(lead_ids=ids, deliver=False)
    assert snapshot(crm_q) == before
    assert second["accounts_created"] == 0 and second["newly_assigned"] == 0 and second["priorities_changed"] == 0
    assert sum(second["messages_queued"].values()) == 0 and sum(second["tasks_created"].values()) == 0
    # Nothing is lost: the next outbox-delivery run sends them all.
    outbox_delivery()
    assert {m["status"] for m in _rows(crm_q, OutboxMessage)} == {"sent"}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == queued


def test_hot_lead_through_intake_gets_owner_tasks_and_messages_delivered_as_eml(crm_q, tmp_path):
    from leadflow.domain.summary import IntakeSummary

    just_now = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    summary = lead_intake(path=write_csv(tmp_path / "l.csv", [lead("cto@acme.com", just_now, first_name="Ada",
                                                                    company="ACME Corp.", **HOT)]))
    assert summary["leads_created"] == 1
    row = _rows(crm_q, Lead)[0]
    acme = _rows(crm_q, Account, Account.domain == "acme.com")[0]
    assert row["account_id"] == acme["id"] and row["match_details"]["band"] == "domain"
    assert row["priority"] == "P1" and row["priority_reason"].split(":")[0] in {"hot_fit_and_intent",
                                                                                 "demo_request_passing"}
    rep = _rows(crm_q, SalesRep, SalesRep.id == row["owner_id"])[0]
    assert "US" in rep["territories"] and "enterprise" in rep["segments"] and rep["open_leads"] == 1
    tasks = {t["kind"]: t for t in _rows(crm_q, CrmTask)}
    assert set(tasks) == {"qualification", "discovery_call"}
    assert all(t["owner_id"] == rep["id"] and t["status"] == "open" and t["due_at"] for t in tasks.values())
    # A small import: intake's qualification subflow delivers its messages itself.
    outbox = {m["kind"]: m for m in _rows(crm_q, OutboxMessage)}
    assert set(outbox) == {"auto_response", "rep_alert"}
    assert all(m["status"] == "sent" for m in outbox.values()) and summary["qualification"]["delivered"] == 2
    assert sum(summary["qualification"]["messages_queued"].values()) == 2
    assert "waiting in outbox" not in IntakeSummary.from_dict(summary).to_text()
    files = sorted(p.name for p in (tmp_path / "outbox").glob("*.eml"))
    assert files == sorted(f"{m['idempotency_key'].replace(':', '_')}.eml" for m in outbox.values())
    events = [e for e in _rows(crm_q, LeadEvent, LeadEvent.lead_id == row["id"]) if e["event_type"] == "lead_qualified"]
    assert len(events) == 1 and events[0]["flow_run_id"]
    assert events[0]["details"]["assignment"]["owner_id"] == rep["id"]


def test_emails_parameter_selects_leads(crm_q):
    ts = pd.Timestamp("2026-11-20", tz="UTC")
    with crm_q.begin() as conn:
        crm_q.upsert_leads(conn, pd.DataFrame([
            {"email": e, "email_domain": "acme.com", "company_domain": "acme.com", "status": "new", "is_spam": False,
             "do_not_contact": False, "first_touch_at": ts, "last_touch_at": ts, "first_touch_source": "web_form",
             "last_touch_source": "web_form"} for e in ("one@acme.com", "two@acme.com")]), ts)
    summary = lead_qualification(emails=[" ONE@acme.com "], deliver=False)
    assert summary["leads"] == 1
    assert json.dumps(summary)  # the summary is JSON-ready
    assert [r["email"] for r in _rows(crm_q, Lead, Lead.qualified_at.is_not(None))] == ["one@acme.com"]
