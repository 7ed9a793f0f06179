"""`leadflow qualify` and `leadflow outbox deliver`: JSON output, one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from deployments.cli import app
from flows.intake import lead_intake
from leadflow.config.settings import get_settings
from leadflow.crm import reference
from tests.helpers import lead, write_csv

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_qualify_by_email_then_deliver(crm, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    just_now = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()  # fresh: auto-responses are for fresh leads
    path = write_csv(tmp_path / "l.csv", [lead("cto@acme.com", just_now, job_title="CTO", demo_requested="yes",
                                               country="US", company="Acme"), lead("b@acme.com", just_now)])
    lead_intake(path=path, qualify=False)
    result = runner.invoke(app, ["qualify", "CTO@acme.com", "--no-deliver", "--json"])
    assert result.exit_code == 0, result.output
    summary = _json(result.stdout)
    assert summary["leads"] == 1 and summary["messages_queued"]["auto_response"] == 1
    result = runner.invoke(app, ["qualify", "--all-unqualified", "--no-deliver"])
    assert result.exit_code == 0 and "Qualified 1 leads" in result.output
    result = runner.invoke(app, ["outbox", "deliver", "--json"])
    assert result.exit_code == 0, result.output
    delivered = _json(result.stdout)
    assert delivered["sent"] == delivered["claimed"] >= 3 and delivered["outbox"] == {"sent": delivered["sent"]}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == delivered["sent"]


def test_qualify_errors_are_one_line(sqlite_crm, tmp_path):
    for args, message in ((["qualify"], "--all-unqualified"), (["qualify", "nobody@x.io"], "no lead has"),
                          (["qualify", "--all-unqualified", "--policy", str(tmp_path / "nope.json")],
                           "cannot read policy")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
