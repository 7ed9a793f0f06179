"""lead-qualification under the Prefect test harness, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select, update

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


def _intake(tmp_path, rows, name="leads.csv") -> list[int]:
    path = write_csv(tmp_path / name, rows)
    # Intake would qualify its leads itself; these tests run qualification on their own terms.
    lead_intake(path=path, qualify=False)
    from leadflow.crm.store import get_store

    with get_store().engine.connect() as conn:
        return sorted(conn.execute(select(Lead.id)).scalars())


def _rows(crm, model, *where):
    with crm.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(model.__table__).where(*where))]


HOT = {"job_title": "CTO", "company_size": "1200", "demo_requested": "yes", "country": "US",
       "message": "We need a replacement asap, budget approved"}


def test_sample_leads_are_qualified_and_a_rerun_changes_nothing(crm_q):
    lead_intake(path=str(reference.SAMPLE_LEADS), qualify=False)
    with crm_q.engine.connect() as conn:
        ids = sorted(conn.execute(select(Lead.id)).scalars())
    first = lead_qualification(lead_ids=ids, deliver=False)
    assert first["leads"] + first["skipped_spam"] == len(ids)
    assert sum(first["by_priority"].values()) == first["leads"]
    assert first["tasks_created"]["qualification"] == first["leads"]
    leads = _rows(crm_q, Lead, Lead.is_spam.is_(False))
    assert all(row["priority"] in {"P1", "P2", "P3", "P4"} and row["checklist"]["version"] for row in leads)
    assert all(set(row["checklist"]) >= {"budget", "authority", "need", "timeline"} for row in leads)
    assert sum(1 for row in leads if row["account_id"]) == first["leads_linked"]
    before = snapshot(crm_q)
    second = lead_qualification(lead_ids=ids, deliver=False)
    assert snapshot(crm_q) == before
    assert second["accounts_created"] == 0 and second["newly_assigned"] == 0 and second["priorities_changed"] == 0
    assert sum(second["messages_queued"].values()) == 0 and sum(second["tasks_created"].values()) == 0


def test_hot_lead_gets_owner_tasks_alert_and_auto_response_delivered_as_eml(crm_q, tmp_path):
    ids = _intake(tmp_path, [lead("cto@acme.com", first_name="Ada", company="ACME Corp.", **HOT)])
    summary = lead_qualification(lead_ids=ids)
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
    outbox = {m["kind"]: m for m in _rows(crm_q, OutboxMessage)}
    assert set(outbox) == {"auto_response", "rep_alert"}
    assert all(m["status"] == "sent" for m in outbox.values()) and summary["delivered"] == 2
    files = sorted(p.name for p in (tmp_path / "outbox").glob("*.eml"))
    assert files == sorted(f"{m['idempotency_key'].replace(':', '_')}.eml" for m in outbox.values())
    events = [e for e in _rows(crm_q, LeadEvent, LeadEvent.lead_id == row["id"]) if e["event_type"] == "lead_qualified"]
    assert len(events) == 1
    details = events[0]["details"]
    assert details["account"] == {"account_id": acme["id"], "band": "domain", "method": "domain", "score": 100.0}
    assert details["priority"]["priority"] == "P1" and details["priority"]["from"] is None
    assert details["assignment"]["owner_id"] == rep["id"] and rep["id"] in details["assignment"]["candidates"]
    # The live assignment holds the rep's slot until the lead closes; closing it frees the slot.
    assert row["holds_capacity"] is True
    from datetime import UTC, datetime

    from leadflow.crm.status import set_status

    assert set_status(crm_q, "cto@acme.com", "disqualified", "no_budget", datetime.now(UTC)).applied == 1
    assert _rows(crm_q, SalesRep, SalesRep.id == rep["id"])[0]["open_leads"] == 0
    assert _rows(crm_q, Lead)[0]["holds_capacity"] is False


def test_replay_sends_nothing_and_records_history(crm_q, tmp_path):
    ids = _intake(tmp_path, [lead("cto@acme.com", **HOT), lead("x@newco.io", company="NewCo", country="DE")])
    summary = lead_qualification(lead_ids=ids, replay=True)
    assert crm_q.table_counts()["outbox"] == 0 and summary["messages_queued"] == {}
    tasks = _rows(crm_q, CrmTask)
    assert tasks and all(t["status"] == "cancelled" and t["details"]["historical"] and t["due_at"] is None
                         for t in tasks)
    assert all(r["open_leads"] == 0 for r in _rows(crm_q, SalesRep))
    assert all(r["owner_id"] and r["holds_capacity"] is False for r in _rows(crm_q, Lead))
    decisions = [e["details"] for e in _rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")]
    assert len(decisions) == 2 and all(d["historical"] and d["assignment"]["owner_id"] for d in decisions)


def test_spam_do_not_contact_and_opted_out_leads(crm_q, tmp_path):
    ids = _intake(tmp_path, [lead("spam@junk.io", company="Junk"), lead("dnc@acme.com", **HOT),
                             lead("out@initech.com", email_opt_in="no", **HOT), lead("ok@globex.de")])
    with crm_q.begin() as conn:
        conn.execute(update(Lead).where(Lead.email == "spam@junk.io").values(is_spam=True))
        conn.execute(update(Lead).where(Lead.email == "dnc@acme.com").values(do_not_contact=True))
    summary = lead_qualification(lead_ids=ids, deliver=False)
    assert summary["skipped_spam"] == 1 and summary["leads"] == 3
    responses = _rows(crm_q, OutboxMessage, OutboxMessage.kind == "auto_response")
    assert [m["recipient"] for m in responses] == ["ok@globex.de"]
    spam = _rows(crm_q, Lead, Lead.email == "spam@junk.io")[0]
    assert spam["priority"] is None and spam["owner_id"] is None


def test_markup_in_lead_fields_is_escaped(crm_q, tmp_path):
    ids = _intake(tmp_path, [lead("cto@acme.com", first_name="<script>alert(1)</script>",
                                  company="<img src=x onerror=alert(1)>", **HOT)])
    # Intake flags markup in names as spam; a person restored this one, so it is qualified and answered.
    with crm_q.begin() as conn:
        conn.execute(update(Lead).values(is_spam=False, status="new"))
    lead_qualification(lead_ids=ids, deliver=False)
    bodies = [m["body"] for m in _rows(crm_q, OutboxMessage)]
    assert len(bodies) == 2
    assert all("<script>" not in b.lower() and "<img" not in b for b in bodies)
    assert all("&lt;img src=x onerror=alert(1)&gt;" in b for b in bodies)
    assert any("&lt;Script&gt;" in b for b in bodies)


def test_no_eligible_rep_goes_to_fallback_queue_with_one_manager_notice(crm_q, tmp_path):
    ids = _intake(tmp_path, [lead("a@brasil-co.com.br", company="Brasil Co", country="BR", **{"job_title": "CEO"}),
                             lead("b@other-br.com.br", company="Outra", country="BR")])
    summary = lead_qualification(lead_ids=ids, deliver=False)
    assert summary["assignments_by_rule"] == {"fallback_queue": 2} and summary["newly_queued"] == 2
    tasks = _rows(crm_q, CrmTask, CrmTask.kind == "qualification")
    assert all(t["owner_id"] is None and t["details"]["queue"] == "unassigned-leads" for t in tasks)
    notices = _rows(crm_q, OutboxMessage, OutboxMessage.kind == "manager_notice")
    assert len(notices) == 1 and "2 leads" in notices[0]["subject"]
    events = [e["details"]["assignment"] for e in _rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")]
    assert {e["reason"] for e in events} == {"no_eligible_rep"} and all(e["candidates"] == [] for e in events)
    assert {e["queue"] for e in events} == {"unassigned-leads"}
    lead_qualification(lead_ids=ids, deliver=False)
    assert len(_rows(crm_q, OutboxMessage, OutboxMessage.kind == "manager_notice")) == 1


def test_fuzzy_bands_link_review_and_create(crm_q, tmp_path):
    ids = _intake(tmp_path, [
        lead("a@gmail.com", company="The Initech, Inc"),          # free mail: by name, exact after cleaning
        lead("b@yahoo.com", company="Globex Gmbh & Co"),           # 'globex and' vs 'globex': review band
        lead("c@hotmail.com", company="Brand New Widgets Ltd"),     # nothing like it: new account
        lead("d@outlook.com", company="brand new widgets"),         # same new company in the same batch
    ])
    summary = lead_qualification(lead_ids=ids, deliver=False)
    rows = {r["email"]: r for r in _rows(crm_q, Lead)}
    assert rows["a@gmail.com"]["match_details"]["band"] == "auto_link"
    assert rows["a@gmail.com"]["match_details"]["free_mail_ignored"] is False
    assert rows["c@hotmail.com"]["account_id"] == rows["d@outlook.com"]["account_id"] is not None
    assert summary["accounts_created"] == 1
    assert summary["matches_by_band"]["new_company"] == 2


def test_emails_parameter_selects_leads(crm_q, tmp_path):
    _intake(tmp_path, [lead("one@acme.com"), lead("two@acme.com")])
    summary = lead_qualification(emails=[" ONE@acme.com "], deliver=False)
    assert summary["leads"] == 1
    assert json.dumps(summary)  # the summary is JSON-ready


def test_lead_in_fallback_queue_gets_owner_when_capacity_frees(crm_q, tmp_path):
    with crm_q.begin() as conn:
        conn.execute(update(SalesRep).values(open_leads=SalesRep.max_open_leads))
    ids = _intake(tmp_path, [lead("cto@acme.com", **HOT)])
    first = lead_qualification(lead_ids=ids, deliver=False)
    assert first["assignments_by_rule"] == {"fallback_queue": 1}
    decision = _rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")[0]["details"]["assignment"]
    assert decision["reason"] == "eligible_reps_at_capacity" and len(decision["candidates"]) >= 1
    with crm_q.begin() as conn:
        conn.execute(update(SalesRep).values(open_leads=0))
    second = lead_qualification(lead_ids=ids, deliver=False)
    assert second["newly_assigned"] == 1
    task = _rows(crm_q, CrmTask, CrmTask.kind == "qualification")[0]
    assert task["owner_id"] == _rows(crm_q, Lead)[0]["owner_id"] is not None
    assert pd.notna(task["due_at"])


def test_intake_runs_qualification_as_a_subflow(crm_q, tmp_path):
    summary = lead_intake(path=write_csv(tmp_path / "l.csv", [lead("cto@acme.com", **HOT)]))
    row = _rows(crm_q, Lead)[0]
    assert row["priority"] == "P1" and row["owner_id"] is not None and summary["leads_created"] == 1


@pytest.mark.parametrize(("max_leads", "sent_by_intake"), [(5000, True), (1, False)])
def test_intake_delivers_small_chunks_itself_and_leaves_bulk_imports_to_outbox_delivery(
        crm_q, tmp_path, monkeypatch, max_leads, sent_by_intake):
    from flows.delivery import outbox_delivery
    from leadflow.domain.summary import IntakeSummary

    monkeypatch.setenv("LEADFLOW_INLINE_DELIVERY_MAX_LEADS", str(max_leads))
    get_settings.cache_clear()
    path = write_csv(tmp_path / "l.csv", [lead("cto@acme.com", **HOT), lead("vp@globex.de", job_title="VP Sales",
                                                                          country="DE", demo_requested="yes")])
    summary = lead_intake(path=path)
    queued = sum(summary["qualification"]["messages_queued"].values())
    assert queued >= 3
    statuses = {m["status"] for m in _rows(crm_q, OutboxMessage)}
    text = IntakeSummary.from_dict(summary).to_text()
    if sent_by_intake:
        assert statuses == {"sent"} and summary["qualification"]["delivered"] == queued
        assert "waiting in outbox" not in text
    else:
        assert statuses == {"pending"} and summary["qualification"]["delivered"] == 0
        assert f"waiting in outbox    {queued}:" in text
        # Nothing is lost: the next outbox-delivery run sends them all.
        outbox_delivery()
        assert {m["status"] for m in _rows(crm_q, OutboxMessage)} == {"sent"}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == queued
