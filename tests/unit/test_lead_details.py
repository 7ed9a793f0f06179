"""Retrieve Lead Details and Calculate Lead Score in intake's sequence, without Prefect, on SQLite and PostgreSQL.

Prefect's retries of the enrichment calls and the lead-rescore flow are tested in tests/flows/test_details_flow.py.
"""

from __future__ import annotations

import json

import pytest

from leadflow.domain.scoring import TIERS
from leadflow.io.enrichment import SAMPLE_FIRMOGRAPHICS
from leadflow.steps.enrichment import load_firmographics
from tests.details_data import ACME, NOW
from tests.details_data import detail_rows as _rows
from tests.details_data import leads_frame as _leads
from tests.details_data import use_settings as _use
from tests.enrichment_server import EnrichmentApi, enrichment_server
from tests.helpers import lead, run_intake, write_csv


def test_intake_fills_gaps_from_the_reference_table_and_scores_every_lead(crm, tmp_path):
    loaded = load_firmographics(crm, str(SAMPLE_FIRMOGRAPHICS), NOW)
    assert loaded.written > 100 and loaded.rejected.empty
    summary = run_intake(crm, _rows(tmp_path))
    leads = _leads(crm)

    pat = leads.loc["pat@acme.com"]
    assert pat["enrichment_status"] == "enriched"
    assert pat["industry"] == "Retail"  # typed by the person: wins over the reference table
    assert pat["employee_count"] == 1200 and pat["company_legal_name"] == "Acme Corporation"
    sources = pat["enrichment_sources"]
    sources = json.loads(sources) if isinstance(sources, str) else sources
    assert "industry" not in sources and sources["employee_count"] == {"from": "reference", "value": 1200}
    assert leads.loc["kim@gmail.com", "enrichment_status"] == "free_mail"
    assert leads.loc["lee@unknown-company.example", "enrichment_status"] == "not_found"

    assert leads["score"].notna().all() and leads["tier"].isin(TIERS).all()
    assert (leads["score"] == leads["fit_score"] + leads["intent_score"]).all()
    assert set(leads["score_policy_version"]) == {"2026.11-1"}
    assert pat["seniority"] == "vp" and "demo request" in pat["score_explanation"]
    assert leads.loc["kim@gmail.com", "score_explanation"].count("pricing") >= 1

    assert summary["enrichment"] == {"enriched": 2, "free_mail": 1, "not_found": 1}
    assert summary["enrichment_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["leads_scored"] == 4 and sum(summary["tiers"].values()) == 4
    assert sum(summary["score_bands"].values()) == 4


def test_enrichment_switched_off_marks_leads_disabled_and_still_scores(crm, tmp_path, monkeypatch):
    _use(monkeypatch, enrichment_provider="none")
    run_intake(crm, _rows(tmp_path))
    leads = _leads(crm)
    assert set(leads["enrichment_status"]) == {"disabled"}
    assert leads["score"].notna().all()


def test_one_lookup_per_company_however_many_leads_and_chunks(crm, tmp_path, monkeypatch):
    api = EnrichmentApi({"acme.com": ACME})
    rows = [lead(f"person{i}@acme.com") for i in range(1000)] + [lead("a@beta.example"), lead("b@gmail.com")]
    with enrichment_server(api) as url:
        _use(monkeypatch, enrichment_provider="http", enrichment_url=url, enrichment_backoff_seconds=0.05)
        summary = run_intake(crm, write_csv(tmp_path / "many.csv", rows), chunk_size=400)
    looked_up = [domain for call in api.calls for domain in call]
    assert sorted(looked_up) == ["acme.com", "beta.example"]  # once each, across three chunks; gmail never
    assert summary["chunks"] == 3 and summary["enrichment"]["enriched"] == 1000


def test_failed_enrichment_is_tried_again_by_the_next_run(crm, tmp_path, monkeypatch):
    with enrichment_server(EnrichmentApi({})) as url:
        pass
    _use(monkeypatch, enrichment_provider="http", enrichment_url=url, enrichment_backoff_seconds=0.05,
         enrichment_max_attempts=1)
    run_intake(crm, _rows(tmp_path))
    assert _leads(crm).loc["pat@acme.com", "enrichment_status"] == "failed"
    _use(monkeypatch, enrichment_provider="reference")
    load_firmographics(crm, str(SAMPLE_FIRMOGRAPHICS), NOW)
    # The same people write again: their leads are looked up once more and now enriched.
    run_intake(crm, write_csv(tmp_path / "again.csv", [lead("pat@acme.com", "2025-04-01T10:00:00Z")]))
    assert _leads(crm).loc["pat@acme.com", "enrichment_status"] == "enriched"
