"""`leadflow report` and `leadflow lead status|import-status` through the real command, on both databases."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.crm.schema import Lead, LeadEvent
from tests.helpers import lead, write_csv

runner = CliRunner()


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """Report files go to a temporary folder."""
    from leadflow.config.settings import get_settings

    monkeypatch.setenv("LEADFLOW_REPORT_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield tmp_path / "reports"
    get_settings.cache_clear()


def _intake(tmp_path, rows) -> None:
    result = runner.invoke(app, ["intake", write_csv(tmp_path / "leads.csv", rows)])
    assert result.exit_code == 0, result.output


def _events(crm) -> list[dict]:
    with crm.engine.connect() as conn:
        rows = conn.execute(select(LeadEvent.__table__).where(LeadEvent.__table__.c.event_type == "status_changed")
                            .order_by(LeadEvent.__table__.c.id)).mappings().all()
    return [dict(r["details"]) for r in rows]


def test_report_json_carries_new_leads(crm, tmp_path, reports):
    _intake(tmp_path, [lead("a@b.com"), lead("c@d.com"), lead("a@b.com", submitted_at="2025-03-02T10:00:00Z")])
    # The leads count in the month of their first touch (March 2025), not the month they were imported in.
    result = runner.invoke(app, ["report", "--month", "2025-03", "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["new_leads"] == 2 and payload["month"] == "2025-03"
    assert payload["counted_by"] == "first_touch" and payload["data_as_of"]
    assert "a@b.com" not in result.stdout


@pytest.mark.parametrize(("fmt", "marker"), [("md", "# Monthly lead report"), ("csv", "dimension,value,new_leads"),
                                             ("html", "<svg")])
def test_report_formats(sqlite_crm, reports, fmt, marker):
    result = runner.invoke(app, ["report", "--month", "2024-05", "--format", fmt])
    assert result.exit_code == 0, result.output
    assert marker in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["report", "--month", "2025-13"], "YYYY-MM"),
    (["report", "--month", "2025-01", "--format", "pdf"], "unknown format"),
])
def test_report_errors_are_one_line(sqlite_crm, reports, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_lead_status_records_an_event_and_updates_the_lead(crm, tmp_path):
    _intake(tmp_path, [lead("a@b.com")])
    assert runner.invoke(app, ["lead", "status", "A@B.com", "working"]).exit_code == 0
    result = runner.invoke(app, ["lead", "status", "a@b.com", "disqualified", "--reason", "No Budget", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"] == 1
    assert [(e["from"], e["to"], e["reason"], e["by"]) for e in _events(crm)] == [
        ("new", "working", None, "cli"), ("working", "disqualified", "no_budget", "cli")]
    with crm.engine.connect() as conn:
        row = conn.execute(select(Lead.__table__.c.status, Lead.__table__.c.status_reason)).one()
    assert tuple(row) == ("disqualified", "no_budget")


@pytest.mark.parametrize(("args", "message"), [
    (["nobody@b.com", "working"], "unknown_lead"),
    (["a@b.com", "won-ish"], "unknown_status"),
    (["a@b.com", "disqualified"], "missing_reason"),
    (["a@b.com", "converted"], "invalid_transition:new->converted"),
    (["a@b.com", "spam"], "spam_managed_by_spam_cleanup"),
])
def test_lead_status_refusals_exit_2(crm, tmp_path, args, message):
    _intake(tmp_path, [lead("a@b.com")])
    result = runner.invoke(app, ["lead", "status", *args])
    assert result.exit_code == 2 and message in result.stderr
    assert _events(crm) == []


def test_import_status_applies_rows_in_time_order_lists_rejects_and_is_idempotent(crm, tmp_path):
    _intake(tmp_path, [lead("a@b.com"), lead("c@d.com")])
    export = tmp_path / "status.csv"
    export.write_text(
        "Email Address,Lead Status,Disqualification Reason,Last Modified\n"
        "a@b.com,Qualified,,2025-03-02 10:00\n"
        "a@b.com,In progress,,2025-03-01 10:00\n"
        "c@d.com,Closed Lost,No Budget,2025-03-03T09:00:00Z\n"
        "x@y.com,Working,,2025-03-01\n"
        "not-an-email,Working,,2025-03-01\n"
        "c@d.com,Pending,,2025-03-04\n"
        "a@b.com,Working,,yesterday-ish\n"
    )
    result = runner.invoke(app, ["lead", "import-status", str(export), "--json", "--rejects",
                                 str(tmp_path / "rejects.csv")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["applied"], summary["rejected"]) == (7, 3, 4)
    assert [(r["row"], r["reason"]) for r in summary["rejects"]] == [
        (4, "unknown_lead"), (5, "invalid_email"), (6, "unknown_status"), (7, "invalid_changed_at")]
    assert "x@y.com" not in result.stdout  # masked
    assert pd.read_csv(tmp_path / "rejects.csv")["row"].tolist() == [4, 5, 6, 7]
    assert [(e["from"], e["to"]) for e in _events(crm)] == [("new", "working"), ("working", "qualified"),
                                                            ("new", "disqualified")]
    again = json.loads(runner.invoke(app, ["lead", "import-status", str(export), "--json"]).stdout)
    assert (again["applied"], again["already_recorded"]) == (0, 3)
    assert len(_events(crm)) == 3


def test_import_status_rejects_stale_rows(crm, tmp_path):
    _intake(tmp_path, [lead("a@b.com")])
    newer = write_csv(tmp_path / "new.csv", [{"email": "a@b.com", "status": "working", "changed_at": "2025-05-01"}])
    older = write_csv(tmp_path / "old.csv", [{"email": "a@b.com", "status": "recycled", "changed_at": "2025-04-01"}])
    assert json.loads(runner.invoke(app, ["lead", "import-status", newer, "--json"]).stdout)["applied"] == 1
    stale = json.loads(runner.invoke(app, ["lead", "import-status", older, "--json"]).stdout)
    assert stale["rejected_by_reason"] == {"stale_update": 1}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("email,status\na@b.com,working\n", "no column for changed_at"),
])
def test_import_status_file_errors_are_one_line(sqlite_crm, tmp_path, content, message):
    path = tmp_path / "status.csv"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["lead", "import-status", str(path)])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
