"""`leadflow submit`, `leadflow backfill` and `leadflow serve --check`: what lands, JSON output, one-line errors."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.config.settings import crm_name_of
from leadflow.crm.backfill import LEDGER
from leadflow.crm.inbox import INBOX
from leadflow.crm.schema import LeadSubmission
from tests.helpers import lead, snapshot, write_csv

runner = CliRunner()


def _json(result) -> dict:
    return json.loads(result.stdout[result.stdout.index("{"):])


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr


def _inbox(crm) -> list:
    with crm.engine.connect() as conn:
        return conn.execute(select(INBOX.c.id, INBOX.c.payload, INBOX.c.processed_at)).all()


def test_submit_puts_the_lead_in_the_inbox(crm, tmp_path):
    result = runner.invoke(app, ["submit", '{"email": "jane@acme.com", "source": "web_form", "first_name": "Jane"}'])
    assert result.exit_code == 0, result.output
    first = _json(result)["inbox_id"]
    (tmp_path / "lead.json").write_text('{"Email Address": "Bob <bob@beta.io>", "Lead Source": "webinar"}')
    result = runner.invoke(app, ["submit", "--file", str(tmp_path / "lead.json"), "--no-event"])
    assert result.exit_code == 0, result.output
    rows = _inbox(crm)
    assert [r[0] for r in rows] == [first, _json(result)["inbox_id"]]
    assert rows[0][1] == {"email": "jane@acme.com", "source": "web_form", "first_name": "Jane"}
    assert rows[1][1]["Email Address"] == "Bob <bob@beta.io>"
    assert all(r[2] is None for r in rows)


@pytest.mark.parametrize(
    ("lead_json", "message"),
    [
        ('{"email": "jane.at.acme.com", "source": "web_form"}', "not a valid address"),
        ('{"first_name": "Jane"}', "has no email"),
        ('{"email": ""}', "has no email"),
        ('["jane@acme.com"]', "non-empty JSON object"),
        ("{email: jane@acme.com}", "cannot submit the lead"),
        ("", "give the lead"),
    ],
)
def test_submit_refuses_a_bad_lead_in_one_line(crm, lead_json, message):
    result = runner.invoke(app, ["submit", lead_json])
    _one_line_error(result, message)
    # The address never reaches the terminal (it may end up in a log) and nothing is inserted.
    assert "jane.at.acme.com" not in result.stderr
    assert _inbox(crm) == []


def _two_months(tmp_path) -> str:
    rows = [lead(f"jan{i}@acme.com", f"2024-01-{10 + i:02d}T09:00:00Z", first_name=f"J{i}") for i in range(4)]
    rows += [lead(f"feb{i}@beta.io", f"2024-02-{10 + i:02d}T09:00:00Z", source="webinar") for i in range(3)]
    rows += [lead("jan0@acme.com", "2024-02-20T09:00:00Z", source="google_ads"), lead("nodate@acme.com", "")]
    return write_csv(tmp_path / "history.csv", rows)


def test_backfill_json_outcome_and_a_rerun_changes_nothing(crm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default staging folder is relative to the working directory
    path = _two_months(tmp_path)
    args = ["backfill", path, "--start", "2024-01-01", "--end", "2024-02-29", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    outcome = _json(result)
    assert (outcome["windows_total"], outcome["windows_imported"], outcome["windows_failed"]) == (3, 3, [])
    assert (outcome["rows_read"], outcome["rows_undated"], outcome["submissions_new"]) == (9, 1, 8)
    assert outcome["months_reported"] == ["2024-01", "2024-02"]
    # The CRM's own folder: crm.db's stem on SQLite, the test database's name on PostgreSQL.
    assert (tmp_path / "leadflow-output" / crm_name_of(crm.url) / "backfill").is_dir()
    with crm.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LeadSubmission.__table__)).scalar_one() == 8
        assert conn.execute(select(func.count()).select_from(LEDGER).where(LEDGER.c.status == "completed")
                            ).scalar_one() == 3
    before = snapshot(crm)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    rerun = _json(again)
    assert (rerun["windows_done_before"], rerun["windows_imported"], rerun["months_reported"]) == (3, 0, [])
    assert snapshot(crm) == before
    human = runner.invoke(app, args[:-1])
    assert human.exit_code == 0 and "0 windows imported, 3 already done" in human.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--start": "2024-13-01"}, "month must be in 1..12"),
        ({"--window": "year"}, "unknown window"),
        ({"--end": "2023-01-01"}, "before start"),
        ({"--runner": "cluster"}, "unknown runner"),
        ({"path": "nowhere"}, "no such file or folder"),
    ],
)
def test_backfill_arguments_fail_in_one_line(sqlite_crm, tmp_path, change, message):
    options = {"--start": "2024-01-01", "--end": "2024-02-29", "--window": "month", "--runner": "threads"}
    path = change.pop("path", None) or _two_months(tmp_path)
    options.update(change)
    result = runner.invoke(app, ["backfill", str(tmp_path / path), *[x for kv in options.items() for x in kv]])
    _one_line_error(result, message)


def test_serve_check_builds_every_deployment_without_serving():
    result = runner.invoke(app, ["serve", "--check"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    # Served under their own names, beside the work-pool deployments of the same prefect.yaml.
    assert set(lines) == {"lead-intake/continuous-served", "lead-intake/file-import-served",
                          "spam-cleanup/nightly-served", "monthly-report/monthly-served",
                          "scoring-review/monthly-served", "lead-mailbox/every-minute-served",
                          "outbox-delivery/queued-served", "lead-backfill/ad-hoc-served",
                          "person-erasure/on-request-served", "lead-follow-up/hourly-served"}
    assert lines["lead-intake/continuous-served"].startswith("every 600s; on leadflow.lead.submitted")
    assert lines["outbox-delivery/queued-served"].startswith("every 600s; on leadflow.outbox.queued")
    assert lines["spam-cleanup/nightly-served"].startswith("cron '0 2 * * *'")
    assert lines["lead-backfill/ad-hoc-served"].startswith("no schedule")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments:\n  - name: x\n    entrypoint: flows/nope.py:nope\n", "flows/nope.py:nope"),
        ("deployments: [\n", "not valid YAML"),
        ("name: leadflow\n", "no list of deployments"),
    ],
)
def test_serve_rejects_a_broken_project_file_in_one_line(tmp_path, text, message):
    project = tmp_path / "prefect.yaml"
    project.write_text(text)
    result = runner.invoke(app, ["serve", "--check", "--project", str(project)])
    _one_line_error(result, message)
    assert runner.invoke(app, ["serve", "--project", str(tmp_path / "missing.yaml")]).exit_code == 2
