"""`leadflow retention run [--dry-run] [--json]`, and CLI settings read from Prefect Secret blocks."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.config.settings import get_settings
from leadflow.crm import people
from leadflow.crm.inbox import submit_lead
from leadflow.domain.privacy import keyed_hash

runner = CliRunner()


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_retention_run_counts_first_then_removes(crm, tmp_path, monkeypatch):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    old = (datetime.now(UTC) - timedelta(days=31)).timestamp()
    for name in ("a.eml", "b.eml"):
        (outbox / name).write_text("To: x@acme.com\n\nhi")
        os.utime(outbox / name, (old, old))
    (outbox / "fresh.eml").write_text("To: y@acme.com\n\nhi")
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(outbox))
    monkeypatch.setenv("LEADFLOW_BACKFILL_DIR", str(tmp_path / "backfill"))
    monkeypatch.setenv("LEADFLOW_RETENTION_QUARANTINE_DAYS", "0")
    get_settings.cache_clear()

    dry = runner.invoke(app, ["retention", "run", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    summary = json.loads(dry.stdout)
    assert summary["dry_run"] and summary["counts"]["eml_files"] == 2 and len(list(outbox.iterdir())) == 3
    assert summary["days"]["quarantine"] == 0 and summary["cutoffs"]["quarantine"] is None
    done = runner.invoke(app, ["retention", "run"])
    assert done.exit_code == 0, done.output
    assert "eml_files: removed 2 (kept 30 days)" in done.stdout
    assert "quarantine: removed 0 (kept forever)" in done.stdout
    assert [p.name for p in outbox.iterdir()] == ["fresh.eml"]


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_the_hash_key_can_live_in_a_secret_block(crm, tmp_path, monkeypatch):
    submit_lead(crm, {"email": "ada@acme.com"})
    Secret(value="block-held-hash-key-0123456789abcdef").save("lf-cli-hash-key", overwrite=True, _sync=True)
    monkeypatch.setenv("LEADFLOW_HASH_KEY", "prefect-secret://lf-cli-hash-key")
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    erased = runner.invoke(app, ["person", "erase", "ada@acme.com"])
    assert erased.exit_code == 0, erased.output
    with crm.engine.connect() as conn:
        assert people.erasures(conn, keyed_hash("ada@acme.com", "block-held-hash-key-0123456789abcdef"))
        assert people.person_rows(conn, "ada@acme.com")["lead_inbox"] == []

    monkeypatch.setenv("LEADFLOW_HASH_KEY", "prefect-secret://lf-cli-no-such-block")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["person", "erase", "bob@acme.com"])
    assert refused.exit_code == 2 and "Secret block 'lf-cli-no-such-block'" in refused.stderr
