"""`leadflow person export` and `leadflow person erase`: JSON out, a dry run first, one-line errors without a key."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from deployments.cli import app
from leadflow.config.settings import get_settings
from leadflow.crm.inbox import submit_lead
from tests.helpers import lead, run_intake, snapshot, write_csv

runner = CliRunner()
EMAIL = "ada.quillfeather@acme.com"


def test_export_then_erase_one_person(crm, tmp_path, monkeypatch):
    run_intake(crm, write_csv(tmp_path / "leads.csv", [
        lead(EMAIL, last_name="Quillfeather", phone="+1 415 555 0142"),
        lead("bob@globex.de", last_name="Stone")]))
    submit_lead(crm, {"email": EMAIL.upper()})
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "unrelated.eml").write_text("kept")
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(outbox))
    monkeypatch.delenv("LEADFLOW_HASH_KEY", raising=False)
    get_settings.cache_clear()

    exported = runner.invoke(app, ["person", "export", EMAIL.upper()])
    assert exported.exit_code == 0, exported.output
    tables = json.loads(exported.stdout)["tables"]
    assert len(tables["leads"]) == 1 and tables["lead_submissions"][0]["raw_payload"]["last_name"] == "Quillfeather"
    assert len(tables["lead_inbox"]) == 1

    before = snapshot(crm)
    if crm.dialect == "postgresql":
        # A server database has no key file to fall back on (SQLite keeps one beside its file).
        refused = runner.invoke(app, ["person", "erase", EMAIL])
        assert refused.exit_code == 2 and "LEADFLOW_HASH_KEY must be set" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and EMAIL not in refused.stderr
        assert snapshot(crm) == before

    monkeypatch.setenv("LEADFLOW_HASH_KEY", "cli-test-key")
    get_settings.cache_clear()
    dry = runner.invoke(app, ["person", "erase", EMAIL, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["removed"]["leads"] == 1 and snapshot(crm) == before

    erased = runner.invoke(app, ["person", "erase", EMAIL, "--reason", "ticket-17"])
    assert erased.exit_code == 0, erased.output
    assert len(erased.stdout.strip().splitlines()) == 1 and EMAIL not in erased.stdout
    summary = json.loads(erased.stdout)
    assert summary["removed"] == json.loads(dry.stdout)["removed"] and summary["erasure_id"]
    left = runner.invoke(app, ["person", "export", EMAIL])
    assert all(rows == [] for rows in json.loads(left.stdout)["tables"].values())
    assert (outbox / "unrelated.eml").exists()
    bob = json.loads(runner.invoke(app, ["person", "export", "bob@globex.de"]).stdout)["tables"]
    assert len(bob["leads"]) == 1 and len(bob["lead_submissions"]) == 1
