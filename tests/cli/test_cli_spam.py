"""`leadflow spam-cleanup` and `leadflow spam restore`: summaries, JSON, dry runs and one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.config.settings import get_settings
from leadflow.crm.schema import Lead
from tests.helpers import lead, lenient_spam_policy, write_csv

runner = CliRunner()
RECENT = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()


def status(store, email: str) -> str:
    with store.engine.connect() as conn:
        return conn.execute(select(Lead.status).where(Lead.email == email)).scalar_one()


def payload(result) -> dict:
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture
def loaded(crm, tmp_path, monkeypatch):
    """Leads taken in before today's spam lists (intake flagged none of them); the sweep then uses today's."""
    rows = [lead("bot@mailinator.com", RECENT), lead("ann@acme.example", RECENT, first_name="Ann")]
    monkeypatch.setenv("LEADFLOW_SPAM_POLICY", lenient_spam_policy(tmp_path))
    get_settings.cache_clear()
    assert runner.invoke(app, ["intake", write_csv(tmp_path / "leads.csv", rows)]).exit_code == 0
    monkeypatch.delenv("LEADFLOW_SPAM_POLICY")
    get_settings.cache_clear()
    return crm


def test_spam_cleanup_dry_run_then_run_then_restore(loaded):
    dry = runner.invoke(app, ["spam-cleanup", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would flag           1" in dry.output and "disposable_domain  1" in dry.output
    assert status(loaded, "bot@mailinator.com") == "new"

    real = runner.invoke(app, ["spam-cleanup", "--json", "--since", "2000-01-01"])
    assert real.exit_code == 0, real.output
    summary = payload(real)
    assert summary["flagged"]["flagged"] == 1 and summary["flagged"]["by_reason"] == {"disposable_domain": 1}
    assert "bot@mailinator.com" not in real.output
    assert status(loaded, "bot@mailinator.com") == "spam"

    restored = runner.invoke(app, ["spam", "restore", "--reason", "disposable_domain", "--json"])
    assert restored.exit_code == 0, restored.output
    assert payload(restored)["restored"] == 1 and status(loaded, "bot@mailinator.com") == "new"

    human = runner.invoke(app, ["spam-cleanup"])
    assert human.exit_code == 0 and "flagged              0" in human.output


def test_restore_by_email(loaded):
    runner.invoke(app, ["spam-cleanup"])
    result = runner.invoke(app, ["spam", "restore", "BOT@mailinator.com"])
    assert result.exit_code == 0, result.output
    assert "Restored 1 leads" in result.output and "b***@m***.com" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["spam-cleanup", "--since", "someday"], "ISO date"),
        (["spam-cleanup", "--since", "2999-01-01"], "in the future"),
        (["spam", "restore"], "exactly one"),
        (["spam", "restore", "--reason", "ugly"], "unknown spam reason"),
        (["spam", "restore", "nobody@acme.example"], "no flagged lead"),
    ],
)
def test_errors_are_one_line_and_exit_2(sqlite_crm, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
