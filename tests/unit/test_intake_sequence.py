"""lead-intake's sequence over the plain steps, without Prefect, on real SQLite and real PostgreSQL.

The flow runs this same sequence with its tasks (tests/flows/test_intake_flow.py runs it a few times under Prefect);
here each behaviour is checked through `run_intake`, which chooses check workers as the flow does.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select

from data_checks.runner import DataCheckError
from leadflow.crm.reference import SAMPLE_CRM_EXPORT, SAMPLE_CRM_EXPORT_MAP, SAMPLE_LEADS
from leadflow.crm.schema import Lead, LeadEvent, LeadSubmission, QuarantineRecord
from leadflow.io.sources import LeadFileError
from tests.helpers import VOLATILE, lead, run_intake, snapshot, write_csv


def test_chunking_does_not_change_the_result(crm, tmp_path):
    # Intake alone: qualification's round-robin assignment depends on which leads arrive first, by design.
    run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    chunked = snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE)
    with crm.begin() as conn:
        for table in ("lead_events", "lead_submissions", "quarantine", "leads"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    run_intake(crm, str(SAMPLE_LEADS))
    assert snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE) == chunked


def test_same_person_across_batches_is_one_lead_with_both_touches(crm, tmp_path):
    first = write_csv(tmp_path / "a.csv", [
        lead("jane.doe@example.com", "2025-01-10T09:00:00Z", "webinar", first_name="jane", utm_campaign="q1-webinar"),
    ])
    second = write_csv(tmp_path / "b.csv", [
        lead("  JANE.DOE@Example.COM ", "2025-02-01T12:30:00+01:00", "Web Form", company="Example Inc.",
             phone="+1 (415) 555-0100"),
    ])
    run_intake(crm, first)
    summary = run_intake(crm, second)
    assert summary["leads_created"] == 0 and summary["leads_updated"] == 1 and summary["sources_updated"] == 1
    with crm.engine.connect() as conn:
        person = conn.execute(select(Lead.__table__)).one()
        touches = conn.execute(select(LeadSubmission.source).order_by(LeadSubmission.submitted_at)).scalars().all()
        events = conn.execute(select(LeadEvent.event_type, LeadEvent.details)).all()
    assert person.email == "jane.doe@example.com"
    assert (person.first_touch_source, person.last_touch_source) == ("webinar", "web_form")
    assert person.first_touch_utm_campaign == "q1_webinar"  # UTM values are folded: separators become `_`
    assert person.first_name == "Jane" and person.company == "Example Inc." and person.phone == "+14155550100"
    assert touches == ["webinar", "web_form"]
    moved = [details for kind, details in events if kind == "lead_source_updated"]
    assert moved == [{"touch": "last", "from": "webinar", "to": "web_form", "at": "2025-02-01T11:30:00+00:00"}]


def test_a_late_backfilled_touch_becomes_first_touch_without_losing_newer_details(crm, tmp_path):
    run_intake(crm, write_csv(tmp_path / "now.csv", [
        lead("sam@acme.com", "2025-05-01T10:00:00Z", "google_ads", job_title="VP Sales"),
    ]))
    run_intake(crm, write_csv(tmp_path / "old.csv", [
        lead("sam@acme.com", "2024-01-01T10:00:00Z", "event", job_title="Sales Manager", last_name="Lee"),
    ]))
    with crm.engine.connect() as conn:
        person = conn.execute(select(Lead.__table__)).one()
    assert (person.first_touch_source, person.last_touch_source) == ("event", "paid_search")
    assert person.job_title == "VP Sales"
    assert person.last_name == "Lee"


def test_bad_rows_are_quarantined_with_reasons_and_raw_payload(crm, tmp_path):
    rows = [
        lead("ok@acme.com"),
        lead("", extra_column="kept"),
        lead("not-an-email"),
        lead("late@acme.com", "2099-01-01T00:00:00Z"),
        lead("when@acme.com", "yesterday-ish"),
        lead("nosource@acme.com", source=""),
        lead("long@acme.com", first_name="x" * 500),
    ]
    summary = run_intake(crm, write_csv(tmp_path / "bad.csv", rows))
    assert summary["rows_read"] == 7
    # A row without a channel is kept, with channel `unknown`: never quarantined for that alone.
    assert summary["submissions_new"] == 2 and summary["quarantined"] == 5
    assert summary["channel_filled"] == {"unknown": 1}
    with crm.engine.connect() as conn:
        kept = conn.execute(select(QuarantineRecord.__table__).order_by(QuarantineRecord.row_number)).all()
    reasons = {q.row_number: q.reason_codes for q in kept}
    assert reasons == {
        2: "missing_email",
        3: "invalid_email",
        4: "future_submitted_at",
        5: "invalid_submitted_at",
        7: "field_too_long:first_name",
    }
    assert kept[0].raw_payload["extra_column"] == "kept"
    assert summary["quarantined_by_reason"]["missing_email"] == 1


def test_column_map_export_with_semicolons_and_day_first_dates(crm):
    mapping = json.loads(SAMPLE_CRM_EXPORT_MAP.read_text())
    summary = run_intake(crm, str(SAMPLE_CRM_EXPORT), column_map=mapping, source_name="web_form")
    assert summary["submissions_new"] > 0
    assert summary["rows_read"] == summary["submissions_new"] + summary["submissions_duplicate"] + summary[
        "quarantined"] + summary["blank_rows"]


def _early_worker(monkeypatch, early: bool) -> None:
    """Make every file big enough for the check worker to start with the run (or never that early)."""
    from leadflow.config.settings import get_settings

    monkeypatch.setenv("LEADFLOW_CHECK_WORKER_MIN_BYTES", "0" if early else str(1 << 40))
    get_settings.cache_clear()


@pytest.mark.parametrize("early", [False, True], ids=["checked-here", "early-worker"])
def test_missing_required_column_stops_the_run_with_a_typed_error(crm, tmp_path, monkeypatch, early):
    # With an early worker the required-columns suite runs there, with the first chunk: same error, no lead.
    _early_worker(monkeypatch, early)
    path = write_csv(tmp_path / "nocol.csv", [{"email": "a@b.com", "source": "web_form"}])
    with pytest.raises(DataCheckError, match=r"lead_intake.columns.*submitted_at.*no column for submitted_at"):
        run_intake(crm, path)
    # It fails Inspect Lead File, before a batch is started or a row read.
    assert crm.table_counts()["leads"] == crm.table_counts()["intake_batches"] == 0


@pytest.mark.parametrize("early", [False, True], ids=["checked-here", "early-worker"])
def test_mostly_broken_batch_stops_instead_of_quarantining_everything(crm, tmp_path, monkeypatch, early):
    _early_worker(monkeypatch, early)
    rows = [lead(f"person number {i}") for i in range(30)]
    with pytest.raises(DataCheckError, match=r"expect_column_values_to_be_between\(_email_valid\)"):
        run_intake(crm, write_csv(tmp_path / "shifted.csv", rows))
    assert crm.table_counts()["quarantine"] == 0


def test_the_check_worker_gives_the_same_leads_as_checking_in_process(crm, monkeypatch):
    from leadflow.config.settings import get_settings
    from leadflow.steps.chunk_worker import ChunkWorker

    started = []
    original = ChunkWorker.__init__

    def counting(self):
        started.append(1)
        original(self)

    monkeypatch.setattr(ChunkWorker, "__init__", counting)
    monkeypatch.setenv("LEADFLOW_CHECK_WORKER", "false")
    get_settings.cache_clear()
    run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    in_process = snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE)
    assert started == []
    with crm.begin() as conn:
        for table in ("lead_events", "lead_submissions", "quarantine", "leads"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    monkeypatch.setenv("LEADFLOW_CHECK_WORKER", "true")
    get_settings.cache_clear()
    run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    assert started == [1]
    assert snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE) == in_process


def test_an_early_worker_gives_the_same_leads_as_checking_in_process(crm, monkeypatch):
    # A big file's first chunk is normalized here while the worker checks it; rejected rows are dropped after.
    import leadflow.steps.intake as intake_steps

    _early_worker(monkeypatch, False)
    monkeypatch.setenv("LEADFLOW_CHECK_WORKER", "false")
    run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    in_process = snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE)
    with crm.begin() as conn:
        for table in ("lead_events", "lead_submissions", "quarantine", "leads"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    split = []
    original = intake_steps._check_there_normalize_here
    monkeypatch.setattr(intake_steps, "_check_there_normalize_here",
                        lambda *args: split.append(1) or original(*args))
    monkeypatch.setenv("LEADFLOW_CHECK_WORKER", "true")
    _early_worker(monkeypatch, True)
    summary = run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    assert split == [1] and summary["quarantined"] > 0
    assert snapshot(crm, skip=("intake_batches", "lead_events"), ignore=VOLATILE) == in_process


def test_unreadable_input_fails_with_a_clear_error(crm, tmp_path):
    with pytest.raises(LeadFileError, match="no such file"):
        run_intake(crm, str(tmp_path / "missing.csv"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_exports_give_the_same_leads_as_csv(crm, tmp_path, fmt):
    rows = pd.read_csv(SAMPLE_LEADS, dtype="string", keep_default_na=False, na_values=[""]).head(60)
    path = tmp_path / f"leads.{fmt}"
    if fmt == "jsonl":
        rows.to_json(path, orient="records", lines=True)
    else:
        rows.to_parquet(path)
    summary = run_intake(crm, str(path))
    assert summary["rows_read"] == 60
    assert summary["rows_read"] == summary["submissions_new"] + summary["submissions_duplicate"] + summary[
        "quarantined"] + summary["blank_rows"]
    assert crm.table_counts()["leads"] == summary["leads_created"] > 0
