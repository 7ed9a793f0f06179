"""monthly-report on SQLite and PostgreSQL: reconciled, idempotent per month, honest when empty.

Three tests run the flow in the Prefect harness (a month published, an empty month, bad arguments); the others call
the step functions its tasks call, in the flow's order (`run_steps`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, insert, select, update

from data_checks.runner import DataCheckError
from flows.monthly_report import default_month, monthly_report
from leadflow.crm import reports as report_store
from leadflow.crm.schema import CrmTask, Lead, LeadEvent, LeadSubmission, OutboxMessage, SalesRep
from leadflow.domain import reports as rpt
from leadflow.domain.reports import ReconciliationError
from leadflow.steps import reports as report_steps
from leadflow.steps.delivery import queue_monthly_report_notice

MONTH = "2025-03"


def ts(text: str) -> pd.Timestamp:
    """A UTC timestamp from short ISO text."""
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


# id, created_at, spam, source, country, owner, priority
LEADS = [
    (1, "2025-03-03", False, "web_form", "US", 1, "P1"),
    (2, "2025-03-05", False, "linkedin_ads", "DE", None, "P2"),
    (3, "2025-03-10", False, "web_form", "US", 1, "P3"),
    (4, "2025-03-12", False, "linkedin_ads", None, 2, "P1"),
    (5, "2025-02-27", False, "web_form", "US", 1, "P1"),
    (6, "2025-03-15", True, "web_form", "US", None, None),
    (7, "2024-03-20", False, "event", "FR", 2, None),
]
STATUS = [  # lead, at, from, to, reason
    (1, "2025-03-03 02:00", "new", "working", None),
    (1, "2025-03-03 06:00", "working", "qualified", None),
    (1, "2025-03-03 10:00", "qualified", "discovery_call_booked", None),
    (1, "2025-03-03 20:00", "discovery_call_booked", "converted", None),
    (2, "2025-03-05 04:00", "new", "working", None),
    (2, "2025-03-05 10:00", "working", "discovery_call_booked", None),  # skips qualified
    (3, "2025-03-10 06:00", "new", "working", None),
    (3, "2025-03-11 12:00", "working", "recycled", "bad_timing"),
    (3, "2025-04-20 00:00", "recycled", "working", None),  # after the month: not in the March report
    (4, "2025-03-12 08:00", "new", "working", None),
    (4, "2025-03-12 20:00", "working", "disqualified", "no_budget"),
]
SUBS = [(1, "2025-03-03"), (1, "2025-03-20"), (2, "2025-03-05"), (3, "2025-03-10"), (4, "2025-03-12"),
        (5, "2025-02-27"), (5, "2025-03-02"), (6, "2025-03-15"), (7, "2024-03-20")]


def seed(crm) -> None:
    """A small CRM with known answers for March 2025."""
    with crm.begin() as conn:
        conn.execute(insert(SalesRep.__table__), [{"id": 1, "email": "ann@x.com", "name": "Ann", "territories": [],
                                                   "segments": []},
                                                  {"id": 2, "email": "bo@x.com", "name": "Bo", "territories": [],
                                                   "segments": []}])
        conn.execute(insert(Lead.__table__), [
            {"id": i, "email": f"lead{i}@example.com", "created_at": ts(at), "updated_at": ts(at), "is_spam": spam,
             "first_touch_at": ts(at), "last_touch_at": ts(at), "first_touch_source": source,
             "last_touch_source": source, "country": country, "owner_id": owner, "priority": priority}
            for i, at, spam, source, country, owner, priority in LEADS])
        conn.execute(insert(LeadSubmission.__table__), [
            {"idempotency_key": f"s{n}", "lead_id": lead, "batch_id": "b", "source": "web_form",
             "submitted_at": ts(at), "received_at": ts(at), "raw_payload": {}} for n, (lead, at) in enumerate(SUBS)])
        conn.execute(insert(LeadEvent.__table__), [
            {"lead_id": lead, "event_type": "status_changed", "occurred_at": ts(at),
             "details": {"from": old, "to": new, "reason": reason, "by": "test"}}
            for lead, at, old, new, reason in STATUS])
        conn.execute(insert(CrmTask.__table__), [
            {"idempotency_key": "t1", "lead_id": 1, "kind": "qualification", "status": "done",
             "due_at": ts("2025-03-03 04:00"), "details": {}},
            {"idempotency_key": "t2", "lead_id": 2, "kind": "qualification", "status": "open",
             "due_at": ts("2025-03-05 02:00"), "details": {}},
            {"idempotency_key": "t4", "lead_id": 4, "kind": "qualification", "status": "open",
             "due_at": ts("2025-03-12 09:00"), "details": {}}])


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """Report files go to a temporary folder."""
    from leadflow.config.settings import get_settings

    monkeypatch.setenv("LEADFLOW_REPORT_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield tmp_path / "reports"
    get_settings.cache_clear()


def run_steps(crm, month: str, formats: list[str], report_dir: Path) -> dict:
    """The monthly report without Prefect: the steps the flow's tasks call, in the flow's order."""
    as_of = rpt.month_bounds(month)[1]
    volume = report_steps.aggregate_monthly_lead_volume(crm, month)
    conversion = report_steps.lead_conversion_report(crm, month, 3, as_of)
    report = report_steps.assemble_report(month, as_of, volume, conversion)
    checks = report_steps.check_report(report)
    published = report_steps.publish_monthly_report(crm, report, formats, checks, report_dir)
    queue_monthly_report_notice(crm, report, published["files"])
    return published


def test_report_of_a_month_publishes_tables_files_and_a_notice(crm, reports, monkeypatch):
    import prefect.events

    from flows.quiet import MESSAGES_QUEUED_EVENT

    events: list[str] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **event: events.append(event["event"]))
    seed(crm)
    result = monthly_report(month=MONTH)
    assert events == [MESSAGES_QUEUED_EVENT]  # the notice wakes outbox-delivery
    assert result["new_leads"] == 4 and result["spam_leads"] == 1
    assert result["submissions"] == 6 and result["repeat_submissions"] == 2
    assert result["new_leads_prev"] == 1 and result["new_leads_last_year"] == 1
    assert result["sla"] == {"eligible": 3, "met": 2, "rate": 2 / 3, "no_deadline": 0}
    tables = report_store.read_report_tables(crm, MONTH)
    funnel = tables["report_funnel"]
    main = funnel.loc[(funnel["cohort"] == MONTH) & (funnel["breakdown"] == "all")].set_index("stage")
    assert main["reached"].to_dict() == {"new": 4, "working": 4, "qualified": 1, "discovery_call_booked": 2,
                                         "converted": 1, "disqualified": 1, "recycled": 1}
    assert main.loc["qualified", "passed"] == 2  # lead 2 skipped it
    assert set(funnel["cohort"]) == {"2025-03", "2025-02", "2025-01"}
    reasons = tables["report_dq_reasons"]
    assert reasons.loc[reasons["breakdown"] == "all", ["cohort", "reason", "leads"]].values.tolist() == [
        ["2025-03", "no_budget", 1]]
    run = tables["report_runs"].iloc[0]
    assert (run["new_leads"], run["spam_leads"], run["sla_eligible"], run["sla_met"]) == (4, 1, 3, 2)
    files = result["files"]
    assert sorted(files) == ["csv", "html", "json", "md"]
    payload = json.loads(Path(files["json"][0]).read_text(encoding="utf-8"))
    assert payload["new_leads"] == 4 and payload["month"] == MONTH
    html = Path(files["html"][0]).read_text(encoding="utf-8")
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    with crm.engine.connect() as conn:
        notice = conn.execute(select(OutboxMessage.__table__)).mappings().one()
    assert (notice["kind"], notice["channel"], notice["recipient"]) == ("monthly_report", "apprise", "unconfigured")
    assert notice["idempotency_key"] == "monthly_report:2025-03" and "New leads: 4" in notice["body"]
    assert "example.com" not in notice["body"]


def test_rerunning_a_month_gives_identical_tables_and_one_notice(crm, reports):
    seed(crm)
    run_steps(crm, MONTH, ["json"], reports)
    first = report_store.read_report_tables(crm, MONTH)
    # A change after the month's end must not alter the March report: the funnel is as of the month's end.
    with crm.begin() as conn:
        conn.execute(insert(LeadEvent.__table__), [{"lead_id": 2, "event_type": "status_changed",
                                                    "occurred_at": ts("2025-04-02"),
                                                    "details": {"from": "discovery_call_booked", "to": "converted"}}])
    run_steps(crm, MONTH, ["json"], reports)
    second = report_store.read_report_tables(crm, MONTH)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], check_dtype=False)
    counts = crm.table_counts()
    assert counts["report_runs"] == 1 and counts["outbox"] == 1
    assert counts["report_lead_volume"] == len(first["report_lead_volume"]) > 1


def test_a_sent_notice_is_not_rewritten_by_a_rerun(crm, reports):
    seed(crm)
    run_steps(crm, MONTH, ["md"], reports)
    with crm.begin() as conn:
        conn.execute(update(OutboxMessage.__table__).values(status="sent", body="delivered text"))
    run_steps(crm, MONTH, ["md"], reports)
    with crm.engine.connect() as conn:
        assert conn.execute(select(OutboxMessage.__table__.c.body)).scalar_one() == "delivered text"


def test_reconciliation_failure_fails_the_run_and_publishes_nothing(crm, reports, monkeypatch):
    seed(crm)
    run_steps(crm, MONTH, ["json"], reports)
    before = report_store.read_report_tables(crm, MONTH)
    real = report_store.load_volume_inputs

    def losing_one_lead(store, month):
        # A loader that loses a lead (the kind of bug the check exists for): the totals no longer agree.
        inputs = real(store, month)
        kept = inputs.leads.loc[inputs.leads["id"] != 3]
        return report_store.VolumeInputs(kept, inputs.submissions.loc[inputs.submissions["lead_id"] != 3],
                                         inputs.previous_leads, inputs.last_year_leads)

    monkeypatch.setattr(report_store, "load_volume_inputs", losing_one_lead)
    with pytest.raises(DataCheckError, match="expect_column_pair_values_to_be_equal"):
        run_steps(crm, MONTH, ["json"], reports)
    after = report_store.read_report_tables(crm, MONTH)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], check_dtype=False)


def test_breakdowns_that_do_not_add_up_fail_the_run(crm, reports, monkeypatch):
    seed(crm)
    real = rpt.monthly_volume

    def inflated(*args, **kwargs):
        volume = real(*args, **kwargs)
        volume.loc[volume["dimension"] == "country", "new_leads"] += 1
        return volume

    monkeypatch.setattr(rpt, "monthly_volume", inflated)
    with pytest.raises(ReconciliationError, match="breakdowns do not add up"):
        run_steps(crm, MONTH, ["json"], reports)
    assert crm.table_counts()["report_runs"] == 0


def test_a_month_without_leads_is_an_honest_empty_report(crm, reports):
    result = monthly_report(month="2031-01")
    assert result["new_leads"] == 0 and result["sla"]["eligible"] == 0 and result["sla"]["rate"] is None
    md = Path(result["files"]["md"][0]).read_text(encoding="utf-8")
    assert "No leads were first touched this month." in md
    with crm.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxMessage.__table__)).scalar_one() == 1


def test_bad_month_or_format_is_refused(crm, reports):
    with pytest.raises(ValueError, match="YYYY-MM"):
        monthly_report(month="2025-13")
    with pytest.raises(ValueError, match="unknown report format"):
        monthly_report(month=MONTH, formats=["pdf"])


@pytest.mark.parametrize(("now", "zone", "expected"), [
    ("2025-04-01T00:30:00+00:00", "UTC", "2025-03"),
    ("2025-04-01T00:30:00+00:00", "America/New_York", "2025-02"),  # still March 31 in New York
    ("2025-01-15T12:00:00+00:00", "Europe/Berlin", "2024-12"),
])
def test_default_month_is_the_month_before_today_in_the_configured_zone(now, zone, expected):
    from datetime import datetime

    assert default_month(datetime.fromisoformat(now), zone) == expected
