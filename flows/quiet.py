"""Quiet runs: the event that wakes outbox-delivery when messages are queued, and idle runs that say so by name."""

from __future__ import annotations

import logging

# prefect.yaml's outbox-delivery trigger expects this event on this resource (tests/cli/test_prefect_yaml.py).
MESSAGES_QUEUED_EVENT = "leadflow.outbox.queued"
OUTBOX_RESOURCE_ID = "leadflow.outbox"
IDLE_SUFFIX = "idle"

logger = logging.getLogger("leadflow.runs")


def announce_queued_messages(count: int) -> None:
    """Emit `leadflow.outbox.queued` so the outbox-delivery deployment sends `count` new messages now."""
    if count <= 0:
        return
    from prefect.events import emit_event

    try:
        emit_event(event=MESSAGES_QUEUED_EVENT, resource={"prefect.resource.id": OUTBOX_RESOURCE_ID},
                   payload={"messages": int(count)})
    except Exception as exc:
        # The messages are safe in the outbox; the safety schedule sends them if the event is lost.
        logger.warning("Could not emit %s: %s", MESSAGES_QUEUED_EVENT, type(exc).__name__)


def idle_run_name(name: str) -> str:
    """The name a run with nothing to do ends with: its own name and `-idle`, once."""
    return name if name.endswith(f"-{IDLE_SUFFIX}") else f"{name}-{IDLE_SUFFIX}"


def name_run_idle() -> str | None:
    """Rename the current flow run to say it had nothing to do; returns the new name (None outside a run)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id, name = flow_run.id, flow_run.name
    if not run_id or not name:
        return None
    new_name = idle_run_name(name)
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=new_name)
    except Exception as exc:
        # A name is cosmetic: the run's own outcome must not depend on it.
        logger.warning("Could not rename idle run %s: %s", run_id, type(exc).__name__)
        return None
    return new_name
