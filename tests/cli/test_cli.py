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
