"""Every flow reaches ops when it fails or crashes and names its runs; quiet runs and the queued-messages event."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

import prefect.events
import pytest
from prefect import Flow

import flows
from flows import hooks, quiet
from flows.delivery import is_idle


def _all_flows() -> dict[str, Flow]:
    found = {}
    for module in pkgutil.iter_modules(flows.__path__):
        for value in vars(importlib.import_module(f"flows.{module.name}")).values():
            if isinstance(value, Flow):
                found[value.name] = value
    return found


def test_every_flow_alerts_ops_on_failure_and_crash_and_names_its_runs():
    found = _all_flows()
    assert {"lead-intake", "lead-qualification", "outbox-delivery", "spam-cleanup", "monthly-report",
            "lead-rescore", "lead-backfill"} <= set(found)
    alerts = {hooks.notify_ops_on_failure, hooks.notify_ops_unless_subflow}
    for name, flow in found.items():
        assert alerts & set(flow.on_failure_hooks), f"{name} has no failure hook"
        assert alerts & set(flow.on_crashed_hooks), f"{name} has no crash hook"
        assert callable(flow.flow_run_name) or flow.flow_run_name, f"{name} has no run name"


@pytest.fixture
def recorded(monkeypatch):
    calls: dict[str, list] = {"alerts": [], "events": []}
    monkeypatch.setattr("leadflow.steps.delivery.queue_ops_alert", lambda *args: calls["alerts"].append(args))
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: calls["events"].append(kwargs))
    return calls


def _run(parent: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="run-1", id="00000000-0000-0000-0000-000000000001", parent_task_run_id=parent)


STATE = SimpleNamespace(name="Failed", message="boom")


def test_a_failure_queues_an_alert_and_wakes_the_delivery_deployment(recorded):
    hooks.notify_ops_on_failure(SimpleNamespace(name="lead-intake"), _run(), STATE)
    assert [a[:4] for a in recorded["alerts"]] == [("lead-intake", "run-1", _run().id, "Failed")]
    (event,) = recorded["events"]
    assert event["event"] == quiet.MESSAGES_QUEUED_EVENT
    assert event["resource"] == {"prefect.resource.id": quiet.OUTBOX_RESOURCE_ID}


def test_a_failing_delivery_run_does_not_wake_itself_in_a_loop(recorded):
    hooks.notify_ops_on_failure(SimpleNamespace(name="outbox-delivery"), _run(), STATE)
    assert len(recorded["alerts"]) == 1 and recorded["events"] == []


def test_qualification_alerts_only_when_it_is_not_inside_intake(recorded):
    flow = SimpleNamespace(name="lead-qualification")
    hooks.notify_ops_unless_subflow(flow, _run(parent="00000000-0000-0000-0000-0000000000aa"), STATE)
    assert recorded["alerts"] == []
    hooks.notify_ops_unless_subflow(flow, _run(), STATE)
    assert len(recorded["alerts"]) == 1


def test_no_event_for_no_messages(recorded):
    quiet.announce_queued_messages(0)
    quiet.announce_queued_messages(3)
    assert [e["payload"] for e in recorded["events"]] == [{"messages": 3}]


@pytest.mark.parametrize(("result", "idle"), [
    ({"claimed": 0, "requeued_stale": 0, "lost_claims": 0, "breaker_open": []}, True),
    ({"claimed": 0, "breaker_open": [], "sla_breaches_reported": 0, "sla_notices_queued": 0}, True),
    ({"claimed": 2, "breaker_open": []}, False),
    ({"claimed": 0, "requeued_stale": 1, "breaker_open": []}, False),
    ({"claimed": 0, "breaker_open": [], "sla_notices_queued": 1}, False),
    ({"claimed": 0, "breaker_open": ["email"]}, False),
])
def test_a_delivery_run_is_idle_only_when_it_did_nothing(result, idle):
    assert is_idle(result) is idle


def test_idle_names_say_so_once():
    assert quiet.idle_run_name("intake-lead_inbox") == "intake-lead_inbox-idle"
    assert quiet.idle_run_name("outbox-delivery-idle") == "outbox-delivery-idle"
