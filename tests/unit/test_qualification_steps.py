"""The qualification sequence with the plain steps (what the flow runs with its tasks), on SQLite and PostgreSQL.

Leads are written as intake leaves them (derived columns set, messages as submissions), so each case runs the
steps alone; tests/flows/test_qualification_flow.py keeps the few runs that need Prefect.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, update

from data_checks.runner import DataCheckError
from leadflow.crm import reference
from leadflow.crm.schema import Account, CrmTask, Lead, LeadEvent, LeadSubmission, OutboxMessage, SalesRep
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.steps.qualification import QualificationSteps, local_steps, qualify
from tests.helpers import snapshot

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
HOT = {"job_title": "CTO", "seniority": "c_level", "employee_count": 1200, "company_size": "1001-5000",
       "demo_requested": True, "country": "US", "message": "We need a replacement asap, budget approved"}


@pytest.fixture
def crm_q(crm):
    """A CRM with the demo reps and accounts."""
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    return crm


def seed(crm, rows: list[dict[str, Any]]) -> list[int]:
    """Leads as intake leaves them (a work email's domain is the company domain); returns their ids."""
    ts = pd.Timestamp(NOW) - pd.Timedelta(hours=1)  # fresh: within the policy's message window
    leads = []
    for row in rows:
        row = dict(row)
        row.pop("message", None)
        domain = row["email"].split("@")[1]
        free = domain.split(".")[0] in {"gmail", "yahoo", "hotmail", "outlook"}
        leads.append({"email_domain": domain, "company_domain": None if free else domain, "status": "new",
                      "is_spam": False, "do_not_contact": False,
                      "first_touch_at": ts, "last_touch_at": ts, "first_touch_source": "web_form",
                      "last_touch_source": "web_form", **row})
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame(leads), NOW)
        ids = dict(conn.execute(select(Lead.email, Lead.id)).tuples().all())
        subs = [{"idempotency_key": f"test:{r['email']}", "lead_id": ids[r["email"]], "batch_id": "test",
                 "source": "web_form", "submitted_at": ts, "received_at": ts, "message": r["message"],
                 "raw_payload": {}} for r in rows if r.get("message")]
        if subs:
            conn.execute(LeadSubmission.__table__.insert(), subs)
    return sorted(ids.values())


def run(crm, ids: list[int], replay: bool = False, policy=None, steps: QualificationSteps | None = None,
        ) -> dict[str, Any]:
    """One qualification run over these leads, as the flow runs it (without delivery)."""
    policy = policy or load_qualification_policy()
    summary = QualificationSummary(replay=replay, policy_version=policy.version)
    return qualify(steps or local_steps(crm), ids, policy, summary, replay=replay, timezone="UTC",
                   clock=lambda: NOW, chunk_size=50_000).as_dict()


def rows(crm, model, *where) -> list[dict[str, Any]]:
    with crm.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(model.__table__).where(*where))]


def test_the_flow_passes_the_same_steps():
    from tasks.qualification import QUALIFICATION_TASKS

    names = [f.name for f in dataclasses.fields(QualificationSteps)]
    assert all(getattr(QUALIFICATION_TASKS, n).fn.__name__ == n for n in names)
    assert all(getattr(QUALIFICATION_TASKS, n).fn.__doc__ for n in names)


def test_varied_leads_are_qualified_and_a_rerun_changes_nothing(crm_q):
    companies = [("Acme Corporation", "acme.com"), ("Globex", "globex.de"), ("Initech", "initech.com"),
                 ("Brand New Widgets", "widgets.example"), ("Pied Piper", "gmail.com"), (None, "yahoo.com")]
    countries = ["US", "DE", "GB", "BR", "FR"]
    ids = seed(crm_q, [
        {"email": f"p{i}@{companies[i % 6][1]}", "company": companies[i % 6][0], "country": countries[i % 5],
         "job_title": ["CTO", "Engineer", None][i % 3], "employee_count": [1200, 40, None][i % 3],
         "tier": ["tier_1", "tier_2", "tier_3", None][i % 4], "score": float(20 + 7 * i % 80),
         "demo_requested": i % 4 == 0, "message": ["need it asap, budget approved", None, "just browsing"][i % 3],
         "is_spam": i == 7}
        for i in range(30)])
    first = run(crm_q, ids)
    assert first["leads"] + first["skipped_spam"] == len(ids) and first["skipped_spam"] == 1
    assert first["accounts_created"] >= 1 and len(first["by_priority"]) >= 3 and first["newly_assigned"] >= 1
    assert sum(first["by_priority"].values()) == first["leads"]
    assert first["tasks_created"]["qualification"] == first["leads"]
    leads = rows(crm_q, Lead, Lead.is_spam.is_(False))
    assert all(row["priority"] in {"P1", "P2", "P3", "P4"} and row["checklist"]["version"] for row in leads)
    assert all(set(row["checklist"]) >= {"budget", "authority", "need", "timeline"} for row in leads)
    assert sum(1 for row in leads if row["account_id"]) == first["leads_linked"]
    before = snapshot(crm_q)
    second = run(crm_q, ids)
    assert snapshot(crm_q) == before
    assert second["accounts_created"] == 0 and second["newly_assigned"] == 0 and second["priorities_changed"] == 0
    assert sum(second["messages_queued"].values()) == 0 and sum(second["tasks_created"].values()) == 0


def test_the_sequence_runs_the_data_check_before_writing(crm_q):
    ids = seed(crm_q, [{"email": "cto@acme.com", "company": "ACME Corp.", **HOT}])
    policy = load_qualification_policy()
    steps = local_steps(crm_q)
    # A checklist step that produces a status no policy can give: the check stops the batch before any write.
    broken = dataclasses.replace(steps, qualification_checklist=lambda leads, p: steps.qualification_checklist(
        leads, p).assign(budget="maybe"))
    with pytest.raises(DataCheckError):
        run(crm_q, ids, policy=policy, steps=broken)
    assert rows(crm_q, Lead)[0]["priority"] is None
    assert crm_q.table_counts()["outbox"] == 0 and not rows(crm_q, CrmTask)


def test_hot_lead_gets_owner_tasks_alert_and_auto_response(crm_q):
    ids = seed(crm_q, [{"email": "cto@acme.com", "first_name": "Ada", "company": "ACME Corp.", **HOT}])
    run(crm_q, ids)
    row = rows(crm_q, Lead)[0]
    acme = rows(crm_q, Account, Account.domain == "acme.com")[0]
    assert row["account_id"] == acme["id"] and row["match_details"]["band"] == "domain"
    assert row["priority"] == "P1" and row["priority_reason"].split(":")[0] in {"hot_fit_and_intent",
                                                                                 "demo_request_passing"}
    rep = rows(crm_q, SalesRep, SalesRep.id == row["owner_id"])[0]
    assert "US" in rep["territories"] and "enterprise" in rep["segments"] and rep["open_leads"] == 1
    tasks = {t["kind"]: t for t in rows(crm_q, CrmTask)}
    assert set(tasks) == {"qualification", "discovery_call"}
    assert all(t["owner_id"] == rep["id"] and t["status"] == "open" and t["due_at"] for t in tasks.values())
    outbox = {m["kind"]: m for m in rows(crm_q, OutboxMessage)}
    assert set(outbox) == {"auto_response", "rep_alert"} and all(m["status"] == "pending" for m in outbox.values())
    events = [e for e in rows(crm_q, LeadEvent, LeadEvent.lead_id == row["id"]) if e["event_type"] == "lead_qualified"]
    assert len(events) == 1
    details = events[0]["details"]
    assert details["account"] == {"account_id": acme["id"], "band": "domain", "method": "domain", "score": 100.0}
    assert details["priority"]["priority"] == "P1" and details["priority"]["from"] is None
    assert details["assignment"]["owner_id"] == rep["id"] and rep["id"] in details["assignment"]["candidates"]
    # The live assignment holds the rep's slot until the lead closes; closing it frees the slot.
    assert row["holds_capacity"] is True
    from leadflow.steps.status import set_status

    assert set_status(crm_q, "cto@acme.com", "disqualified", "no_budget", datetime.now(UTC)).applied == 1
    assert rows(crm_q, SalesRep, SalesRep.id == rep["id"])[0]["open_leads"] == 0
    assert rows(crm_q, Lead)[0]["holds_capacity"] is False


def test_replay_sends_nothing_and_records_history(crm_q):
    ids = seed(crm_q, [{"email": "cto@acme.com", **HOT},
                       {"email": "x@newco.io", "company": "NewCo", "country": "DE"}])
    summary = run(crm_q, ids, replay=True)
    assert crm_q.table_counts()["outbox"] == 0 and summary["messages_queued"] == {}
    tasks = rows(crm_q, CrmTask)
    assert tasks and all(t["status"] == "cancelled" and t["details"]["historical"] and t["due_at"] is None
                         for t in tasks)
    assert all(r["open_leads"] == 0 for r in rows(crm_q, SalesRep))
    assert all(r["owner_id"] and r["holds_capacity"] is False for r in rows(crm_q, Lead))
    decisions = [e["details"] for e in rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")]
    assert len(decisions) == 2 and all(d["historical"] and d["assignment"]["owner_id"] for d in decisions)


def test_spam_do_not_contact_and_opted_out_leads(crm_q):
    ids = seed(crm_q, [{"email": "spam@junk.io", "company": "Junk", "is_spam": True},
                       {"email": "dnc@acme.com", "do_not_contact": True, **HOT},
                       {"email": "out@initech.com", "email_opt_in": False, **HOT}, {"email": "ok@globex.de"}])
    summary = run(crm_q, ids)
    assert summary["skipped_spam"] == 1 and summary["leads"] == 3
    responses = rows(crm_q, OutboxMessage, OutboxMessage.kind == "auto_response")
    assert [m["recipient"] for m in responses] == ["ok@globex.de"]
    spam = rows(crm_q, Lead, Lead.email == "spam@junk.io")[0]
    assert spam["priority"] is None and spam["owner_id"] is None


def test_markup_in_lead_fields_is_escaped(crm_q):
    ids = seed(crm_q, [{"email": "cto@acme.com", "first_name": "<Script>alert(1)</Script>",
                        "company": "<img src=x onerror=alert(1)>", **HOT}])
    run(crm_q, ids)
    bodies = [m["body"] for m in rows(crm_q, OutboxMessage)]
    assert len(bodies) == 2
    assert all("<script>" not in b.lower() and "<img" not in b for b in bodies)
    assert all("&lt;img src=x onerror=alert(1)&gt;" in b for b in bodies)
    assert any("&lt;Script&gt;" in b for b in bodies)


def test_no_eligible_rep_goes_to_fallback_queue_with_one_manager_notice(crm_q):
    ids = seed(crm_q, [{"email": "a@brasil-co.com.br", "company": "Brasil Co", "country": "BR", "job_title": "CEO"},
                       {"email": "b@other-br.com.br", "company": "Outra", "country": "BR"}])
    summary = run(crm_q, ids)
    assert summary["assignments_by_rule"] == {"fallback_queue": 2} and summary["newly_queued"] == 2
    tasks = rows(crm_q, CrmTask, CrmTask.kind == "qualification")
    assert all(t["owner_id"] is None and t["details"]["queue"] == "unassigned-leads" for t in tasks)
    notices = rows(crm_q, OutboxMessage, OutboxMessage.kind == "manager_notice")
    assert len(notices) == 1 and "2 leads" in notices[0]["subject"]
    events = [e["details"]["assignment"] for e in rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")]
    assert {e["reason"] for e in events} == {"no_eligible_rep"} and all(e["candidates"] == [] for e in events)
    assert {e["queue"] for e in events} == {"unassigned-leads"}
    run(crm_q, ids)
    assert len(rows(crm_q, OutboxMessage, OutboxMessage.kind == "manager_notice")) == 1


def test_fuzzy_bands_link_review_and_create(crm_q):
    ids = seed(crm_q, [
        {"email": "a@gmail.com", "company": "The Initech, Inc"},          # free mail: by name, exact after cleaning
        {"email": "b@yahoo.com", "company": "Globex Gmbh & Co"},           # 'globex and' vs 'globex': review band
        {"email": "c@hotmail.com", "company": "Brand New Widgets Ltd"},     # nothing like it: new account
        {"email": "d@outlook.com", "company": "brand new widgets"},         # same new company in the same batch
    ])
    summary = run(crm_q, ids)
    by_email = {r["email"]: r for r in rows(crm_q, Lead)}
    assert by_email["a@gmail.com"]["match_details"]["band"] == "auto_link"
    assert by_email["a@gmail.com"]["match_details"]["free_mail_ignored"] is False
    assert by_email["c@hotmail.com"]["account_id"] == by_email["d@outlook.com"]["account_id"] is not None
    assert summary["accounts_created"] == 1
    assert summary["matches_by_band"]["new_company"] == 2


def test_lead_in_fallback_queue_gets_owner_when_capacity_frees(crm_q):
    with crm_q.begin() as conn:
        conn.execute(update(SalesRep).values(open_leads=SalesRep.max_open_leads))
    ids = seed(crm_q, [{"email": "cto@acme.com", **HOT}])
    first = run(crm_q, ids)
    assert first["assignments_by_rule"] == {"fallback_queue": 1}
    decision = rows(crm_q, LeadEvent, LeadEvent.event_type == "lead_qualified")[0]["details"]["assignment"]
    assert decision["reason"] == "eligible_reps_at_capacity" and len(decision["candidates"]) >= 1
    with crm_q.begin() as conn:
        conn.execute(update(SalesRep).values(open_leads=0))
    second = run(crm_q, ids)
    assert second["newly_assigned"] == 1
    task = rows(crm_q, CrmTask, CrmTask.kind == "qualification")[0]
    assert task["owner_id"] == rows(crm_q, Lead)[0]["owner_id"] is not None
    assert pd.notna(task["due_at"])


def test_batches_share_one_summary(crm_q):
    ids = seed(crm_q, [{"email": f"p{i}@acme.com", "company": "Acme"} for i in range(5)])
    policy = load_qualification_policy()
    summary = qualify(local_steps(crm_q), ids, policy, QualificationSummary(policy_version=policy.version),
                      replay=False, timezone="UTC", clock=lambda: NOW, chunk_size=2)
    assert summary.leads == 5 and summary.tasks_created == {"qualification": 5, "discovery_call": 0}
    assert summary.step_seconds["load"] >= 0 and "notify_sales_manager" in summary.step_seconds
