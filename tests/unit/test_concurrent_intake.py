"""Two intake runs at once over the same rows: the CRM ends up exactly as after one run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pandas as pd

from data_checks.intake import check_intake_rows
from leadflow.crm import progress, submissions
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
    # Run A stores the leads; run B's first look (steps_by_email) happened before A committed, so it saw none of
    # them. B's upsert merges into A's leads.
    subs = accepted_submissions()
    first = leads.create_lead_entries(crm, subs.iloc[:5], batch_id="run-a", flow_run_id=None, now=NOW)
    assert first.leads_created == subs.iloc[:5]["email"].nunique()
    monkeypatch.setattr(crm, "copy_min_rows", 0)
    monkeypatch.setattr(progress, "steps_by_email", lambda conn, emails: {})
    later = datetime(2025, 6, 1, 0, 5, tzinfo=UTC)
    # B's rows are new submissions (other keys) of the same people, plus five new people.
    rows = subs.iloc[:10].copy()
    rows["idempotency_key"] = rows["idempotency_key"].str.slice(0, 62) + "zz"
    second = leads.create_lead_entries(crm, rows, batch_id="run-b", flow_run_id=None, now=later)
    overlap = set(subs.iloc[:5]["email"])
    assert second.leads_created == len(set(subs.iloc[:10]["email"]) - overlap)
    assert second.leads_updated == len(overlap)
    assert second.submissions_new == 10 and second.settled_emails == set(subs.iloc[:10]["email"]) - overlap
    with crm.engine.connect() as conn:
        created = conn.exec_driver_sql("SELECT count(*) FROM lead_events WHERE event_type = 'lead_created'").scalar()
    assert created == subs.iloc[:10]["email"].nunique()


def test_a_submission_another_run_stored_after_our_look_is_a_duplicate_not_new(crm, monkeypatch):
    # Run A stores five rows; run B's look at the keys happened before A committed, so it takes all ten for fresh.
    # On PostgreSQL B's direct COPY fails on A's keys and B inserts with ON CONFLICT DO NOTHING instead: on both
    # databases only B's own five rows count as new, A's five as duplicates, and nothing is stored twice.
    subs = accepted_submissions().iloc[:10]
    assert subs["idempotency_key"].is_unique
    leads.create_lead_entries(crm, subs.iloc[:5], batch_id="run-a", flow_run_id=None, now=NOW)
    monkeypatch.setattr(crm, "copy_min_rows", 0)
    copies: list[str] = []
    copy_into = crm._copy_into
    monkeypatch.setattr(crm, "_copy_into", lambda conn, table, *rest, **kw: (
        copies.append(table.name) if not kw.get("numbered") else None, copy_into(conn, table, *rest, **kw))[1])
    monkeypatch.setattr(submissions, "known_submission_keys", lambda store, conn, keys: set())
    later = datetime(2025, 6, 1, 0, 5, tzinfo=UTC)
    second = leads.create_lead_entries(crm, subs, batch_id="run-b", flow_run_id=None, now=later)
    assert (second.submissions_new, second.submissions_duplicate) == (5, 5)
    assert crm.table_counts()["lead_submissions"] == 10
    if crm.dialect == "postgresql":
        assert "lead_submissions" in copies  # the direct path was tried, and fell back
    with crm.engine.connect() as conn:
        batches = dict(conn.exec_driver_sql(
            "SELECT batch_id, count(*) FROM lead_submissions GROUP BY batch_id").all())
    assert batches == {"run-a": 5, "run-b": 5}
