"""`leadflow reps`, `leadflow quarantine` and the per-CRM output folders through the real command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from deployments.cli import _demo_report, app
from leadflow.config.settings import get_settings
from leadflow.crm.schema import LeadSubmission, QuarantineRecord
from tests.helpers import lead, run_intake, snapshot, write_csv

runner = CliRunner()


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """Run from a temporary folder with no explicit output folders: files go where a user's would."""
    monkeypatch.chdir(tmp_path)
    for name in ("REPORT_DIR", "OUTBOX_DIR", "BACKFILL_DIR", "OUTPUT_DIR", "CRM_NAME"):
        monkeypatch.delenv(f"LEADFLOW_{name}", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _error(args: list[str], message: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    return lines[0]


def test_reps_commands(crm, tmp_path):
    assert "No sales reps yet" in _ok(["reps", "list"])
    reps_csv = tmp_path / "reps.csv"
    pd.DataFrame({"email": ["ava@x.com", "liam@x.com"], "name": ["Ava Moreno", "Liam Becker"],
                  "territories": ["US|CA", "DE"], "segments": ["enterprise", ""], "max_open_leads": ["10", "20"],
                  "alert_url": ["json://hooks.example/token-123", ""]}).to_csv(reps_csv, index=False)
    assert _ok(["reps", "import", str(reps_csv)]).strip() == "Imported 2 reps: 2 added, 0 updated."
    assert json.loads(_ok(["reps", "import", str(reps_csv), "--json"])) == {"added": 0, "updated": 2}
    # The id is the database's (PostgreSQL's sequence also moves on the import's upserts).
    assert re.fullmatch(r"Added rep \d+ Mia Patel \(capacity 5, out of office\)\.\n", _ok(
        ["reps", "add", "mia@x.com", "--name", "Mia Patel", "--territories", "GB,IE", "--capacity", "5",
         "--out-of-office"]))
    assert "available" in _ok(["reps", "set", "MIA@x.com", "--back", "--capacity", "7"])
    listed = json.loads(_ok(["reps", "list", "--json"]))
    assert [(r["name"], r["max_open_leads"], r["out_of_office"], r["has_alert_url"]) for r in listed] == [
        ("Ava Moreno", 10, False, True), ("Liam Becker", 20, False, False), ("Mia Patel", 7, False, False)]
    text = _ok(["reps", "list"])
    assert "token-123" not in text and "Mia Patel" in text and "37 open-lead slots free" in text
    _error(["reps", "set", "nobody@x.com", "--capacity", "3"], "rep not changed: no sales rep has this email")
    _error(["reps", "set", "ava@x.com", "--capacity", "-2"], "capacity must be a whole number")
    _error(["reps", "set", "ava@x.com"], "nothing to change")
    _error(["reps", "add", "ava@x.com", "--name", "Ava"], "a rep with this email exists already")
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,max_open_leads\nzoe@x.com,Zoe,5\nmax@x.com,Max,lots\n", encoding="utf-8")
    _error(["reps", "import", str(bad)], "line 3: capacity must be a whole number")
    _error(["reps", "import", str(tmp_path / "missing.csv")], "cannot import reps from")
    assert len(json.loads(_ok(["reps", "list", "--json"]))) == 3  # all or nothing: Zoe was not added


def _count(crm, table) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_quarantine_list_show_export_and_retry_once(sqlite_crm, here):
    crm = sqlite_crm
    # An export whose real date column is `Created`: intake read `submitted_at`, empty on one row.
    good = [lead(f"good{i}@acme.com", f"2025-03-0{i + 1}T10:00:00Z", first_name=f"G{i}",
                 Created=f"2025-03-0{i + 1}T10:00:00Z") for i in range(5)]
    late = lead("late@acme.com", "", first_name="Late", Created="2025-03-09T10:00:00Z")
    nosource = lead("nosource@acme.com", "2025-03-10T10:00:00Z", source="", Created="2025-03-10T10:00:00Z")
    broken = lead("not-an-email", "2025-03-11T10:00:00Z", phone="=1+2", Created="2025-03-11T10:00:00Z")
    run_intake(crm, write_csv(here / "export.csv", [*good, late, nosource, broken]))
    listed = json.loads(_ok(["quarantine", "list", "--json"]))
    # A row without a channel is imported with channel `unknown`, never quarantined for that alone.
    assert listed["matching"] == 2 and listed["by_reason"] == {"missing_submitted_at": 1, "invalid_email": 1}
    assert "@" not in json.dumps(listed["records"])  # payloads stay out of the listing
    by_reason = {r["reason_codes"]: r["id"] for r in listed["records"]}
    shown = json.loads(_ok(["quarantine", "show", str(by_reason["invalid_email"])]))
    assert shown["raw_payload"]["email"] == "not-an-email" and shown["row_number"] == 8
    _error(["quarantine", "show", "999"], "no quarantine record has id 999")
    assert json.loads(_ok(["quarantine", "list", "--reason", "invalid_email", "--json"]))["matching"] == 1
    _error(["quarantine", "list", "--since", "last week"], "--since is not an ISO date or time")
    _ok(["quarantine", "export", str(here / "q.csv")])
    exported = pd.read_csv(here / "q.csv", dtype="string", keep_default_na=False)
    assert len(exported) == 2 and exported.loc[exported["email"] == "not-an-email", "phone"].item() == "'=1+2"
    assert list(exported.columns[:2]) == ["quarantine_id", "quarantine_created_at"]

    column_map = here / "map.json"
    column_map.write_text(json.dumps({"Created": "submitted_at"}), encoding="utf-8")
    subs_before = _count(crm, LeadSubmission.__table__)
    outcome = json.loads(_ok(["quarantine", "retry", "--column-map", str(column_map), "--source-name", "event",
                              "--json"]))
    assert (outcome["retried"], outcome["recovered"], outcome["superseded"], outcome["unchanged"]) == (2, 1, 0, 1)
    assert outcome["recovered_ids"] == [by_reason["missing_submitted_at"]]
    assert _count(crm, LeadSubmission.__table__) == subs_before + 1 == outcome["submissions_new"] + subs_before
    assert _count(crm, QuarantineRecord.__table__) == 2  # the row still broken matched its own record
    assert not list((here / "leadflow-output" / "crm" / "quarantine-retry").glob("*.jsonl"))  # staged rows gone
    remaining = json.loads(_ok(["quarantine", "list", "--json"]))
    assert [r["reason_codes"] for r in remaining["records"]] == ["invalid_email"]
    assert json.loads(_ok(["quarantine", "list", "--all", "--json"]))["matching"] == 2

    # A second retry re-runs only the row still open, and stores nothing twice.
    before = snapshot(crm)
    again = json.loads(_ok(["quarantine", "retry", "--column-map", str(column_map), "--json"]))
    assert (again["retried"], again["recovered"], again["unchanged"], again["submissions_new"]) == (1, 0, 1, 0)
    assert snapshot(crm) == before
    _error(["quarantine", "retry", "--reason", "missing_submitted_at"], "no quarantined records to retry match")


def test_demo_report_and_report_files_live_in_the_crms_folder(sqlite_crm, here, capsys):
    run_intake(sqlite_crm, write_csv(here / "leads.csv", [lead(f"p{i}@acme.com", f"2025-0{m}-1{i}T10:00:00Z")
                                                          for i, m in ((0, 2), (1, 3), (2, 3))]))
    _demo_report(sqlite_crm)
    printed = capsys.readouterr().out
    # The demo's newest month, not last month (which holds no demo lead).
    assert "# Monthly lead report 2025-03" in printed and "**New leads:** 2" in printed
    crm_folder = Path("leadflow-output") / "crm"  # the CRM file is crm.db
    assert (here / crm_folder / "reports" / "2025-03" / "monthly-report-2025-03.md").is_file()
    assert get_settings().outbox_dir == crm_folder / "outbox"


def test_the_nightly_flow_publishes_the_daily_health(sqlite_crm, here):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    result = json.loads(_ok(["spam-cleanup", "--dry-run", "--json"]))
    assert set(result["health"]) >= {"day", "submissions", "speed", "sla", "unassigned", "outbox",
                                     "quarantine_by_reason"}
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-health"])))
    assert artifacts and f"# Pipeline health {result['health']['day']}" in max(artifacts,
                                                                              key=lambda a: a.created).data
