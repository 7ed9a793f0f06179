"""`leadflow firmographics load` and `leadflow rescore`: results, JSON and one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from deployments.cli import app
from leadflow.io.enrichment import SAMPLE_FIRMOGRAPHICS
from tests.helpers import lead, write_csv

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_firmographics_load_reports_written_and_rejected_rows(sqlite_crm, tmp_path):
    path = tmp_path / "firmographics.csv"
    path.write_text("domain,legal_name,industry\nacme.com,Acme Corporation,Manufacturing\nnot a domain,X,Y\n",
                    encoding="utf-8")
    result = runner.invoke(app, ["firmographics", "load", str(path)])
    assert result.exit_code == 0, result.output
    assert "Loaded 1 companies into firmographics; rejected 1 rows." in result.output
    assert "line 3: invalid_domain" in result.output
    again = runner.invoke(app, ["firmographics", "load", str(SAMPLE_FIRMOGRAPHICS), "--json"])
    assert again.exit_code == 0, again.output
    assert _json(again.stdout)["rejected"] == 0 and _json(again.stdout)["written"] > 100


def test_firmographics_load_errors_are_one_line(sqlite_crm, tmp_path):
    missing = runner.invoke(app, ["firmographics", "load", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "cannot load firmographics" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("name,industry\nAcme,Software\n", encoding="utf-8")
    result = runner.invoke(app, ["firmographics", "load", str(bad)])
    assert result.exit_code == 2 and "no domain column" in result.stderr
    assert "Traceback" not in result.output


def test_rescore_prints_the_tiers_and_is_repeatable(crm, tmp_path):
    runner.invoke(app, ["intake", write_csv(tmp_path / "l.csv", [lead("a@acme.com", job_title="CTO"),
                                                                  lead("b@gmail.com")])])
    first = runner.invoke(app, ["rescore", "--as-of", "2026-11-23T00:00:00+00:00", "--json"])
    assert first.exit_code == 0, first.output
    summary = _json(first.stdout)
    assert summary["leads_scored"] == 2 and summary["policy_version"] == "2026.11-1"
    again = runner.invoke(app, ["rescore", "--as-of", "2026-11-23T00:00:00+00:00"])
    assert again.exit_code == 0 and "2 leads with policy 2026.11-1: 0 changed" in again.output


def test_rescore_rejects_a_bad_policy_or_time(sqlite_crm, tmp_path):
    broken = tmp_path / "policy.json"
    broken.write_text('{"version": "x"}', encoding="utf-8")
    result = runner.invoke(app, ["rescore", "--policy", str(broken)])
    assert result.exit_code == 2 and "is invalid" in result.stderr
    naive = runner.invoke(app, ["rescore", "--as-of", "2026-11-23T00:00:00"])
    assert naive.exit_code == 2 and "time zone" in naive.stderr
