"""The ops controls' SQL on SQLite and PostgreSQL: reps, quarantine reads and retry stamps, health inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from leadflow.crm import health, reps, submissions, tasks
from leadflow.crm import quarantine as store_q
from leadflow.crm.reports import latest_first_touch_month
from leadflow.crm.schema import CrmTask, Lead, LeadSubmission, OutboxMessage, QuarantineRecord, SalesRep
from leadflow.domain.reps import RepError, rep_input
from leadflow.steps.health import daily_pipeline_health

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 23, tzinfo=UTC)


def test_reps_add_import_set_and_list_without_alert_urls(crm):
    rep_id = reps.add_rep(crm, rep_input("ava@x.com", "Ava", territories="US", capacity=5,
                                         alert_url="json://hooks.example/secret-token"))
    with pytest.raises(RepError, match="exists already"):
        reps.add_rep(crm, rep_input("ava@x.com", "Ava again"))
    with crm.begin() as conn:
        conn.execute(update(SalesRep).values(open_leads=4, last_assigned_seq=9))
    result = reps.import_reps(crm, [rep_input("ava@x.com", "Ava Moreno", capacity=8),
                                    rep_input("liam@x.com", "Liam", segments="smb")])
    assert (result.added, result.updated) == (1, 1)
    listed = reps.list_reps(crm)
    assert listed["name"].tolist() == ["Ava Moreno", "Liam"]
    assert "alert_url" not in listed.columns and listed["has_alert_url"].tolist() == [False, False]
    ava = listed.iloc[0]
    # An import edits what a person decides, never the routing state.
    assert (ava["max_open_leads"], ava["open_leads"], ava["id"]) == (8, 4, rep_id)
    changed = reps.set_rep(crm, "liam@x.com", capacity=0, out_of_office=True)
    assert (changed["max_open_leads"], changed["out_of_office"], changed["active"]) == (0, True, True)
    assert reps.set_rep(crm, "liam@x.com", out_of_office=False, active=False)["active"] is False
    with pytest.raises(reps.UnknownRep, match="no sales rep has this email"):
        reps.set_rep(crm, "nobody@x.com", capacity=3)
    assert reps.rep_names(crm, [rep_id, 999]) == {rep_id: "Ava Moreno"}


def _quarantine(crm, rows: list[dict]) -> None:
    frame = pd.DataFrame([{"batch_id": "b1", "origin": "f.csv", "source": None, "flow_run_id": None,
                           "created_at": DAY, **r} for r in rows])
    frame["raw_payload"] = frame["raw_payload"].map(lambda p: __import__("json").dumps(p))
    with crm.begin() as conn:
        submissions.insert_quarantine(crm, conn, frame)


def test_quarantine_filters_record_and_retry_stamps(crm):
    _quarantine(crm, [
        {"idempotency_key": "q1", "row_number": 1, "reason_codes": "invalid_email", "raw_payload": {"Email": "x"}},
        {"idempotency_key": "q2", "row_number": 2, "reason_codes": "invalid_email,missing_source",
         "raw_payload": {"Email": "y"}},
        {"idempotency_key": "q3", "row_number": 3, "reason_codes": "field_too_long:message", "batch_id": "b2",
         "created_at": DAY - timedelta(days=3), "raw_payload": {"Email": "z@x.com", "Note": "%_"}},
    ])
    total, listed = store_q.list_records(crm, store_q.QuarantineFilter(reason="invalid_email"))
    assert total == 2 and listed["row_number"].tolist() == [2, 1] and "raw_payload" not in listed.columns
    # A code is matched whole: missing_source does not match missing_source_x, _ and % are no wildcards.
    assert store_q.list_records(crm, store_q.QuarantineFilter(reason="missing_source"))[0] == 1
    assert store_q.list_records(crm, store_q.QuarantineFilter(reason="invalid"))[0] == 0
    assert store_q.list_records(crm, store_q.QuarantineFilter(reason="%"))[0] == 0
    assert store_q.list_records(crm, store_q.QuarantineFilter(batch_id="b2"))[0] == 1
    assert store_q.list_records(crm, store_q.QuarantineFilter(since=DAY - timedelta(hours=1)))[0] == 2
    assert store_q.count_by_reason(crm, store_q.QuarantineFilter()) == {
        "invalid_email": 1, "invalid_email,missing_source": 1, "field_too_long:message": 1}
    ids = sorted(listed["id"].tolist())
    record = store_q.get_record(crm, ids[0])
    assert record["raw_payload"] == {"Email": "x"} and record["created_at"].startswith("2026-11-23T00:00:00")
    assert store_q.get_record(crm, 99_999) is None
    assert store_q.mark_retried(crm, {ids[0]: "recovered", ids[1]: "superseded"}, "retry-1", NOW) == 2
    assert store_q.mark_retried(crm, {ids[0]: "superseded"}, "retry-2", NOW) == 0  # the first outcome stays
    assert store_q.retried_ids(crm, ids) == {ids[0]: "recovered", ids[1]: "superseded"}
    assert store_q.list_records(crm, store_q.QuarantineFilter())[0] == 1
    assert store_q.list_records(crm, store_q.QuarantineFilter(include_retried=True))[0] == 3
    payloads = store_q.records_with_payload(crm, store_q.QuarantineFilter(include_retried=True))
    assert payloads["raw_payload"].tolist() == [{"Email": "x"}, {"Email": "y"}, {"Email": "z@x.com", "Note": "%_"}]
    assert store_q.batch_row_numbers(crm, "b1") == {1, 2}


def _lead(crm, email: str, first_touch: datetime, **values) -> int:
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([{"email": email, "first_touch_at": first_touch,
                                              "last_touch_at": first_touch, "first_touch_source": "web_form",
                                              "last_touch_source": "web_form"}]), NOW)
        lead_id = conn.execute(select(Lead.id).where(Lead.email == email)).scalar_one()
        if values:
            conn.execute(update(Lead).where(Lead.id == lead_id).values(**values))
    return lead_id


def test_health_inputs_count_the_day_and_the_queues(crm):
    rep_id = reps.add_rep(crm, rep_input("mia@x.com", "Mia Patel"))
    touch = DAY + timedelta(hours=9)
    a = _lead(crm, "a@x.com", touch, owner_id=rep_id, qualified_at=touch, priority="P1")
    b = _lead(crm, "b@x.com", touch + timedelta(hours=1), qualified_at=touch, priority="P2")
    old = _lead(crm, "old@x.com", DAY - timedelta(days=40), qualified_at=touch, status="converted")
    spam = _lead(crm, "s@x.com", touch, is_spam=True, status="spam")
    subs = [(a, "web_form", touch), (b, "event", touch + timedelta(hours=1)), (old, "web_form", touch),
            (spam, "web_form", touch), (old, "web_form", DAY - timedelta(hours=1))]
    with crm.begin() as conn:
        conn.execute(insert(LeadSubmission), [
            {"idempotency_key": f"s{i}", "lead_id": lead, "batch_id": "b", "source": source, "submitted_at": at,
             "received_at": at, "raw_payload": {}} for i, (lead, source, at) in enumerate(subs)])
        conn.execute(insert(OutboxMessage), [
            {"idempotency_key": "alert-a", "lead_id": a, "kind": "rep_alert", "channel": "email", "recipient": "m",
             "subject": "s", "body": "b", "status": "sent", "created_at": touch + timedelta(seconds=40),
             "sent_at": touch + timedelta(seconds=90)},
            {"idempotency_key": "auto-b", "lead_id": b, "kind": "auto_response", "channel": "email",
             "recipient": "b", "subject": "s", "body": "b", "status": "pending", "created_at": NOW - timedelta(hours=2),
             "sent_at": None},
            {"idempotency_key": "auto-old", "lead_id": old, "kind": "auto_response", "channel": "email",
             "recipient": "o", "subject": "s", "body": "b", "status": "failed", "created_at": touch,
             "sent_at": None},
        ])
        conn.execute(insert(CrmTask), [
            {"idempotency_key": "t1", "lead_id": a, "owner_id": rep_id, "kind": "qualification", "status": "done",
             "due_at": touch + timedelta(minutes=5), "completed_at": touch + timedelta(minutes=30)},
            {"idempotency_key": "t2", "lead_id": b, "owner_id": None, "kind": "qualification", "status": "open",
             "due_at": touch + timedelta(hours=2), "completed_at": None},
            {"idempotency_key": "t3", "lead_id": old, "owner_id": None, "kind": "qualification",
             "status": "cancelled", "due_at": touch, "completed_at": None},
        ])
    _quarantine(crm, [{"idempotency_key": "q1", "row_number": 1, "reason_codes": "invalid_email",
                       "raw_payload": {}, "created_at": touch},
                      {"idempotency_key": "q2", "row_number": 2, "reason_codes": "missing_email",
                       "raw_payload": {}, "created_at": DAY - timedelta(hours=2)}])
    report = daily_pipeline_health(crm, NOW, "UTC")
    assert report.day == "2026-11-23"
    assert (report.submissions, report.spam_submissions, report.new_leads) == (4, 1, 2)
    assert report.by_channel == {"web_form": 2, "event": 1}
    assert (report.speed.alerts, report.speed.queued_median_s, report.speed.sent_median_s) == (1, 40.0, 90.0)
    assert (report.sla.due, report.sla.met, report.sla.breached) == (2, 0, 2)
    assert (report.unassigned, report.unassigned_by_priority) == (1, {"P2": 1})
    assert (report.outbox.pending, report.outbox.failed, report.outbox.failed_in_day) == (1, 1, 1)
    assert report.outbox.oldest_pending_s == 7200.0
    assert report.quarantine_by_reason == {"invalid_email": 1}
    text = report.markdown() + repr(report.table())
    assert "@" not in text and "Mia" not in text
    assert latest_first_touch_month(crm) == "2026-11"


def test_sla_breaches_carry_the_owner_name_and_the_lead_email(crm):
    rep_id = reps.add_rep(crm, rep_input("mia@x.com", "Mia Patel"))
    lead_id = _lead(crm, "a@x.com", DAY, owner_id=rep_id)
    with crm.begin() as conn:
        conn.execute(insert(CrmTask), [{"idempotency_key": "t1", "lead_id": lead_id, "owner_id": rep_id,
                                        "kind": "qualification", "status": "open", "due_at": DAY}])
        breaches = tasks.sla_breaches(conn, NOW)
    assert breaches[["lead_email", "owner_name"]].to_dict("records") == [{"lead_email": "a@x.com",
                                                                          "owner_name": "Mia Patel"}]
    assert health.HealthInputs.__doc__ and QuarantineRecord.__table__.c.retry_outcome is not None


def test_the_qualification_summary_names_reps(crm):
    from leadflow.crm import reference
    from tests.unit.test_qualification_steps import HOT, run, seed

    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    summary = run(crm, seed(crm, [{"email": "cto@acme.com", **HOT},
                                  {"email": "a@brasil-co.com.br", "company": "Brasil Co", "country": "BR"}]))
    assert summary["assignments_by_rep"] == {"Ava Moreno": 1, "none": 1}
