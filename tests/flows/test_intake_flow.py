"""lead-intake under the Prefect test harness, on real SQLite and real PostgreSQL: a few whole runs.

Behaviours of single steps are tested through the plain sequence in tests/unit/test_intake_sequence.py.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from data_checks.runner import DataCheckError
from flows.intake import lead_intake
from leadflow.crm.reference import SAMPLE_LEADS
from leadflow.crm.schema import IntakeBatch
from tests.helpers import lead, snapshot, write_csv


def test_sample_file_every_row_is_accounted_for_and_a_rerun_changes_nothing(crm):
    summary = lead_intake(path=str(SAMPLE_LEADS))
    rows = len(pd.read_csv(SAMPLE_LEADS, dtype="string", keep_default_na=False))
    assert summary["rows_read"] == rows
    assert summary["submissions_new"] + summary["submissions_duplicate"] + summary["quarantined"] + summary[
        "blank_rows"] == rows
    counts = crm.table_counts()
    assert counts["lead_submissions"] == summary["submissions_new"]
    assert counts["quarantine"] == summary["quarantined_new"] > 0
    assert counts["leads"] == summary["leads_created"] > 0
    assert counts["lead_events"] >= counts["leads"]
    before = snapshot(crm)
    second = lead_intake(path=str(SAMPLE_LEADS))
    assert snapshot(crm) == before
    assert second["submissions_new"] == 0 and second["leads_created"] == 0 and second["quarantined_new"] == 0
    assert second["submissions_duplicate"] == summary["submissions_new"] + summary["submissions_duplicate"]


def test_a_broken_later_chunk_stops_the_run_from_the_check_worker(crm, tmp_path):
    # The second chunk onwards is checked in the helper process: its batch failure must still stop the run.
    good = [lead(f"person{i}@example.com", first_name=f"P{i}") for i in range(100)]
    broken = [lead(f"person number {i}") for i in range(100)]
    with pytest.raises(DataCheckError, match=r"expect_column_values_to_be_between\(_email_valid\)"):
        lead_intake(path=write_csv(tmp_path / "later.csv", good + broken), chunk_size=100, qualify=False)
    counts = crm.table_counts()
    assert counts["leads"] == 100 and counts["quarantine"] == 0
    with crm.engine.connect() as conn:
        assert conn.execute(select(IntakeBatch.status)).scalars().all() == ["failed"]


def test_summary_and_validation_artifacts_use_stable_keys(crm, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = lead_intake(path=write_csv(tmp_path / "a.csv", [lead("a@b.com"), lead("broken")]), return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        artifacts = client.read_artifacts(artifact_filter=this_run)
    kinds = {a.key: a.type for a in artifacts}
    assert kinds == {"lead-intake-summary": "markdown", "lead-intake-validation": "table"}
    summary = next(a for a in artifacts if a.key == "lead-intake-summary")
    assert "invalid_email" in summary.data and "broken" not in summary.data
