"""Prefect's retries of enrichment calls inside lead-intake, and lead-rescore, on SQLite and PostgreSQL.

The steps themselves are tested through the plain sequence in tests/unit/test_lead_details.py.
"""

from __future__ import annotations

import json

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import select

from flows.intake import lead_intake
from flows.rescore import lead_rescore
from leadflow.config.policy import POLICY_DIR
from leadflow.crm.schema import LeadEvent
from tests.details_data import ACME, NOW
from tests.details_data import detail_rows as _rows
from tests.details_data import leads_frame as _leads
from tests.details_data import use_settings as _use
from tests.enrichment_server import EnrichmentApi, enrichment_server
from tests.helpers import run_flow, run_intake


def _task_runs(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_flaky_enrichment_api_is_retried_and_nothing_is_lost(crm, tmp_path, monkeypatch):
    # One failure of each kind before the API answers: 500, 429 with Retry-After, then a too-slow answer.
    api = EnrichmentApi({"acme.com": ACME}, script=[("status", 500), ("status", 429, "1"), ("slow", 1.5)])
    with enrichment_server(api) as url:
        _use(monkeypatch, enrichment_provider="http", enrichment_url=url, enrichment_backoff_seconds=0.05,
             enrichment_timeout_seconds=0.5, enrichment_max_attempts=5)
        summary, run_id = run_flow(lead_intake, path=_rows(tmp_path))
    assert len(api.calls) == 4
    leads = _leads(crm)
    assert leads.loc["pat@acme.com", "enrichment_status"] == "enriched"
    assert leads.loc["lee@unknown-company.example", "enrichment_status"] == "not_found"
    assert summary["leads_scored"] == 4 and summary["enrichment_failed_calls"] == 0
    calls = [run for run in _task_runs(run_id) if run.name.startswith("call-enrichment-http")]
    assert len(calls) == 1 and calls[0].run_count == 4  # the retries are in the task run's history
    assert calls[0].state.is_completed()


def test_enrichment_api_down_for_the_whole_run_marks_leads_not_enriched(crm, tmp_path, monkeypatch):
    with enrichment_server(EnrichmentApi({})) as url:
        pass  # gone: every call is refused
    _use(monkeypatch, enrichment_provider="http", enrichment_url=url, enrichment_backoff_seconds=0.05,
         enrichment_max_attempts=2)
    summary, run_id = run_flow(lead_intake, path=_rows(tmp_path))
    leads = _leads(crm)
    assert leads.loc["pat@acme.com", "enrichment_status"] == "failed"
    assert leads.loc["lee@unknown-company.example", "enrichment_status"] == "failed"
    assert leads.loc["kim@gmail.com", "enrichment_status"] == "free_mail"
    assert summary["enrichment_rate"] == 0.0 and summary["enrichment_failed_calls"] >= 1
    assert leads["score"].notna().all()  # scoring goes on without firmographics
    calls = [run for run in _task_runs(run_id) if run.name.startswith("call-enrichment-http")]
    assert calls and all(run.state.is_failed() and run.run_count == 2 for run in calls)


def _policy(tmp_path, version: str, high_fit: float) -> str:
    data = json.loads((POLICY_DIR / "scoring.json").read_text(encoding="utf-8"))
    data.update(version=version, high_fit=high_fit)
    path = tmp_path / f"scoring-{version}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_rescore_with_a_new_policy_logs_old_and_new_values_once(crm, tmp_path):
    run_intake(crm, _rows(tmp_path))
    before = _leads(crm)
    result = lead_rescore(policy=_policy(tmp_path, "2026.12-1", high_fit=1), as_of=NOW)
    after = _leads(crm)
    assert result["leads_scored"] == 4 and result["scores_changed"] == 4
    assert set(after["score_policy_version"]) == {"2026.12-1"}
    high_fit = after["fit_score"] >= 1
    assert high_fit.sum() >= 3 and after.loc[high_fit, "tier"].isin(["tier_1", "tier_2"]).all()
    with crm.engine.connect() as conn:
        events = conn.execute(
            select(LeadEvent.__table__).where(LeadEvent.event_type == "lead_rescored")
        ).mappings().all()
    assert len(events) == 4
    details = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]) for e in events]
    assert {d["old"]["policy_version"] for d in details} == {"2026.11-1"}
    assert {d["new"]["policy_version"] for d in details} == {"2026.12-1"}
    olds = {d["old"]["tier"] for d in details}
    assert olds <= set(before["tier"])

    again = lead_rescore(policy=_policy(tmp_path, "2026.12-1", high_fit=1), as_of=NOW)
    assert again["scores_changed"] == 0  # deterministic: same leads, policy and time give the same scores
    with crm.engine.connect() as conn:
        count = len(conn.execute(select(LeadEvent.id).where(LeadEvent.event_type == "lead_rescored")).all())
    assert count == 4
