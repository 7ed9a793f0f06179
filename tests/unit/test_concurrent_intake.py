"""Two intake runs at once over the same rows: the CRM ends up exactly as after one run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pandas as pd

from data_checks.intake import check_intake_rows
from leadflow.crm import submissions
from leadflow.crm.reference import SAMPLE_LEADS
from leadflow.domain import submissions as intake
from leadflow.domain.contract import resolve_columns
from leadflow.io.sources import ROW_COLUMN, inspect_lead_file, iter_lead_chunks
from leadflow.steps import intake as leads

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def accepted_submissions() -> pd.DataFrame:
    lead_file = inspect_lead_file(SAMPLE_LEADS)
    raw = next(iter_lead_chunks(lead_file, 10_000))
    prepared = intake.prepare_batch(raw, resolve_columns(lead_file.headers))
    rejected = check_intake_rows(prepared, NOW, pd.Timedelta(0)).row_reasons
    return intake.normalize_batch(prepared.loc[~prepared[ROW_COLUMN].isin(list(rejected))])


def test_overlapping_runs_never_duplicate_leads_or_submissions(crm):
    subs = accepted_submissions()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(batch: str) -> None:
        try:
            start.wait()
            leads.create_lead_entries(crm, subs, batch_id=batch, flow_run_id=None, now=NOW)
            leads.update_lead_sources(crm, subs, batch_id=batch, flow_run_id=None, now=NOW)
        except BaseException as exc:  # a failure in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"batch-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    counts = crm.table_counts()
    assert counts["leads"] == subs["email"].nunique()
    assert counts["lead_submissions"] == subs["idempotency_key"].nunique()


def test_a_lead_another_run_created_after_our_first_look_counts_as_updated(crm, monkeypatch):
    # Run A stores the leads; run B's first look (lead_ids) happened before A committed, so it saw none of them.
    subs = accepted_submissions()
    first = leads.create_lead_entries(crm, subs.iloc[:5], batch_id="run-a", flow_run_id=None, now=NOW)
    assert first.leads_created == subs.iloc[:5]["email"].nunique()
    monkeypatch.setattr(submissions, "lead_ids", lambda conn, emails: {})
    later = datetime(2025, 6, 1, 0, 5, tzinfo=UTC)
    # B's rows are new submissions (other keys) of the same people, plus five new people.
    rows = subs.iloc[:10].copy()
    rows["idempotency_key"] = rows["idempotency_key"].str.slice(0, 62) + "zz"
    second = leads.create_lead_entries(crm, rows, batch_id="run-b", flow_run_id=None, now=later)
    overlap = set(subs.iloc[:5]["email"])
    assert second.leads_created == len(set(subs.iloc[:10]["email"]) - overlap)
    assert second.leads_updated == len(overlap)
    with crm.engine.connect() as conn:
        created = conn.exec_driver_sql("SELECT count(*) FROM lead_events WHERE event_type = 'lead_created'").scalar()
    assert created == subs.iloc[:10]["email"].nunique()
