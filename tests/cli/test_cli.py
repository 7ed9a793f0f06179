"""The `leadflow` command: one-line errors, JSON output, migrations."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from tests.helpers import lead, write_csv

runner = CliRunner()


def test_db_upgrade_reports_the_revision(sqlite_crm):
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"revision {sqlite_crm.revision()} (sqlite)" in result.output


def test_intake_json_summary(crm, tmp_path):
    path = write_csv(tmp_path / "leads.csv", [lead("a@b.com"), lead("bad"), lead("c@d.com", source="Web Form")])
    result = runner.invoke(app, ["intake", path, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["rows_read"] == 3 and summary["submissions_new"] == 2 and summary["quarantined"] == 1
    assert summary["quarantined_by_reason"] == {"invalid_email": 1}


def test_intake_human_summary_with_source_name(crm, tmp_path):
    path = write_csv(tmp_path / "booth.csv", [{"email": "a@b.com", "submitted_at": "2025-01-01T10:00:00Z"}])
    result = runner.invoke(app, ["intake", path, "--source-name", "event"])
    assert result.exit_code == 0, result.output
    assert "leads created        1" in result.output


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: str(tmp / "nope.csv"), "no such file"),
        (lambda tmp: write_csv(tmp / "x.csv", [{"email": "a@b.com", "source": "web"}]), "submitted_at"),
        (lambda tmp: (tmp / "x.xlsx").write_text("x") and str(tmp / "x.xlsx"), "unknown file type"),
    ],
)
def test_intake_errors_are_one_line_and_exit_2(sqlite_crm, tmp_path, make_input, message):
    result = runner.invoke(app, ["intake", make_input(tmp_path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_column_map_is_a_one_line_error(sqlite_crm, tmp_path):
    path = write_csv(tmp_path / "leads.csv", [lead("a@b.com")])
    (tmp_path / "map.json").write_text('{"Mail": "nonsense"}')
    result = runner.invoke(app, ["intake", path, "--column-map", str(tmp_path / "map.json")])
    assert result.exit_code == 2 and "unknown canonical columns" in result.stderr


def test_console_script_is_installed():
    completed = subprocess.run([sys.executable, "-m", "deployments.cli", "--help"], capture_output=True, text=True,
                               check=False)
    assert completed.returncode == 0 and "intake" in completed.stdout


@pytest.fixture
def missing_crm(tmp_path, monkeypatch):
    """LEADFLOW_DATABASE_URL naming a SQLite file (in a folder) that does not exist: a mistyped URL."""
    from leadflow.config.settings import get_settings
    from leadflow.crm import store as store_module

    path = tmp_path / "typo" / "crm.db"
    url = f"sqlite:///{path}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()
    if url in store_module._stores:
        store_module._stores.pop(url).dispose()


@pytest.mark.parametrize("command", [["report"], ["outbox", "deliver"], ["matches", "review"],
                                     ["lead", "status", "a@b.com", "working"], ["person", "export", "a@b.com"],
                                     ["submit", '{"email": "a@b.com"}', "--no-event"], ["intake", "LEADS"]])
def test_commands_refuse_a_missing_crm_and_create_nothing(missing_crm, tmp_path, command):
    command = [write_csv(tmp_path / "leads.csv", [lead("a@b.com")]) if c == "LEADS" else c for c in command]
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"leadflow: error: no CRM database at sqlite:///{missing_crm}; create it with "
                    "`leadflow db upgrade` (or set LEADFLOW_DATABASE_URL to the CRM you meant)")
    assert not missing_crm.parent.exists()


def test_db_upgrade_creates_the_crm_the_other_commands_then_use(missing_crm):
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0 and missing_crm.is_file()
    result = runner.invoke(app, ["matches", "review", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["waiting"] == 0


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"leadflow {version('leadflow')}\n"


def test_file_import_without_a_path_fails_and_leaves_the_inbox_alone(crm):
    from flows.intake import lead_intake
    from leadflow.crm.inbox import pending_count, submit_lead

    submit_lead(crm, {"email": "jane@acme.com", "source": "web_form"})
    # What the file-import deployment runs when started without `path` (prefect.yaml sets from_inbox: false).
    state = lead_intake(from_inbox=False, return_state=True)
    assert state.is_failed()
    assert "needs the `path` parameter" in state.message and "\n" not in state.message
    assert pending_count(crm) == 1


def test_intake_without_an_email_column_says_why_in_one_line_and_verbose_shows_the_traceback(sqlite_crm, tmp_path):
    path = write_csv(tmp_path / "people.csv", [{"Name": "Ann", "Company": "Acme", "Created": "2025-01-01"}])
    result = runner.invoke(app, ["intake", path])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.output
    assert "leadflow keys people by email" in line and "'Name', 'Company', 'Created'" in line
    verbose = runner.invoke(app, ["intake", path, "--verbose"])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == line


def test_intake_submitted_at_dates_a_file_without_times_and_a_second_import_adds_nothing(sqlite_crm, tmp_path):
    path = write_csv(tmp_path / "booth.csv", [{"Email Address": "a@b.example", "Name": "Ann Lee"},
                                              {"Email Address": "c@d.example", "Name": "Cy Dee"}])
    missing = runner.invoke(app, ["intake", path])
    assert missing.exit_code == 2 and "--submitted-at now|ISO-TIME" in missing.stderr
    bad = runner.invoke(app, ["intake", path, "--submitted-at", "last tuesday"])
    assert bad.exit_code == 2 and "takes now or an ISO time" in bad.stderr
    first = runner.invoke(app, ["intake", path, "--submitted-at", "now", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout[first.stdout.index("{"):])
    assert summary["submissions_new"] == 2 and summary["quarantined"] == 0
    assert summary["profile"] == "generic" and summary["submitted_at"]
    assert summary["channel_filled"] == {"unknown": 2}
    again = runner.invoke(app, ["intake", path, "--submitted-at", "2025-01-01T00:00:00+00:00", "--json"])
    assert again.exit_code == 0, again.output
    repeat = json.loads(again.stdout[again.stdout.index("{"):])
    assert repeat["submissions_new"] == 0 and repeat["submissions_duplicate"] == 2
