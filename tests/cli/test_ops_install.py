"""`leadflow ops install` against the test Prefect API: one automation per name however often it runs, right content."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.blocks.notifications import SlackWebhook
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from typer.testing import CliRunner

from deployments.cli import app
from deployments.cli_ops import OPS_BLOCK_NAME, load_automations
from leadflow.config.settings import get_settings

runner = CliRunner()
NAMES = {"leadflow-failed-or-crashed-runs", "leadflow-crash-zombie-flow-runs"}


@pytest.fixture
def alert_env(monkeypatch, tmp_path):
    # No CRM: the command must not need the database (this URL points at nothing).
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'absent' / 'crm.db'}")
    monkeypatch.setenv("LEADFLOW_OPS_ALERT_URLS", "json://127.0.0.1:9/ops")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _installed() -> dict[str, list]:
    with get_client(sync_client=True) as client:
        return {name: client.read_automations_by_name(name) for name in NAMES}


@pytest.mark.usefixtures("prefect_api", "alert_env")
def test_install_twice_leaves_one_of_each_automation_with_the_alert_block(monkeypatch, tmp_path):
    first = runner.invoke(app, ["ops", "install", "--json"])
    assert first.exit_code == 0, first.output
    assert {a["action"] for a in json.loads(first.stdout)["automations"]} == {"created"}
    monkeypatch.setenv("LEADFLOW_OPS_ALERT_URLS", "json://127.0.0.1:9/ops-new")
    get_settings.cache_clear()
    second = runner.invoke(app, ["ops", "install", "--json"])
    assert second.exit_code == 0, second.output
    assert {a["action"] for a in json.loads(second.stdout)["automations"]} == {"updated"}
    assert ({a["id"] for a in json.loads(first.stdout)["automations"]}
            == {a["id"] for a in json.loads(second.stdout)["automations"]})
    assert all(len(found) == 1 for found in _installed().values())
    # A stray copy (a hand-made duplicate) is folded into the one the command keeps.
    with get_client(sync_client=True) as client:
        (spare,) = [a for a in load_automations(block_id=str(uuid.uuid4()))
                    if a.name == "leadflow-crash-zombie-flow-runs"]
        client.create_automation(AutomationCore(**spare.model_dump(exclude={"id"})))
    third = runner.invoke(app, ["ops", "install"])
    assert third.exit_code == 0, third.output
    assert "Automation leadflow-crash-zombie-flow-runs updated" in third.stdout

    installed = _installed()
    assert all(len(found) == 1 for found in installed.values()), installed
    (failed,), (zombie,) = installed["leadflow-failed-or-crashed-runs"], installed["leadflow-crash-zombie-flow-runs"]
    block = SlackWebhook.load(OPS_BLOCK_NAME)
    assert block.url.get_secret_value() == "json://127.0.0.1:9/ops-new"
    with get_client(sync_client=True) as client:
        block_id = client.read_block_document_by_name(OPS_BLOCK_NAME, "slack-webhook").id

    assert failed.enabled and failed.trigger.posture == "Reactive"
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed.trigger.match_related.model_dump() == {"prefect.resource.role": "tag",
                                                        "prefect.resource.id": "prefect.tag.leadflow"}
    (notify,) = failed.actions
    assert notify.type == "send-notification" and notify.block_document_id == block_id
    assert "{{ flow_run.name }}" in notify.subject and "{{ flow_run.state.name }}" in notify.body

    # Prefect's documented zombie-run automation: heartbeats stop for 90 s -> the run is marked Crashed.
    assert zombie.trigger.posture == "Proactive" and zombie.trigger.within.total_seconds() == 90
    assert zombie.trigger.after == {"prefect.flow-run.heartbeat"}
    assert "prefect.flow-run.heartbeat" in zombie.trigger.expect
    assert zombie.trigger.for_each == {"prefect.resource.id"}
    (crash,) = zombie.actions
    assert crash.type == "change-flow-run-state" and crash.state.value == "CRASHED"


@pytest.mark.usefixtures("alert_env")
def test_install_without_alert_urls_fails_in_one_line(monkeypatch):
    monkeypatch.delenv("LEADFLOW_OPS_ALERT_URLS")
    get_settings.cache_clear()
    result = runner.invoke(app, ["ops", "install"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "leadflow: error: LEADFLOW_OPS_ALERT_URLS is not set: set it to the Apprise URL(s) ops are alerted on"]


@pytest.mark.usefixtures("alert_env")
def test_a_broken_automations_file_fails_before_anything_is_saved(tmp_path):
    broken = tmp_path / "automations.yaml"
    broken.write_text("automations:\n  - name: x\n    trigger: {type: nonsense}\n")
    result = runner.invoke(app, ["ops", "install", "--file", str(broken)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
