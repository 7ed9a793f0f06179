"""Flow state hooks: a failed flow run tells ops through the alert channel (an outbox row) and the log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flows.quiet import announce_queued_messages

logger = logging.getLogger("leadflow.ops")
DELIVERY_FLOW = "outbox-delivery"


def notify_ops_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure / on_crashed hook: log the failure and queue an ops alert in the outbox (idempotent per run)."""
    from leadflow.domain.messages import ops_alert
    from leadflow.steps.delivery import queue_ops_alert

    args = (flow.name, flow_run.name, str(flow_run.id), state.name or "Failed", state.message)
    logger.error("ALERT %s", ops_alert(*args, recipient=None, now=datetime.now(UTC))["body"])
    try:
        queue_ops_alert(*args)
    except Exception as exc:
        # The hook must not hide the run's own failure; the log line above already carries the alert.
        logger.error("ALERT could not be queued in the outbox: %s", type(exc).__name__)
        return
    if flow.name != DELIVERY_FLOW:
        # A failing delivery run woken by its own alert would fail again at once, in a loop; its safety schedule
        # (and Prefect's failure automation, `leadflow ops install`) carries that alert instead.
        announce_queued_messages(1)


def notify_ops_unless_subflow(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure / on_crashed hook of a flow also run inside others: only a top-level run alerts.

    lead-intake calls lead-qualification per chunk and fails with it; its own hook sends the one alert.
    """
    if getattr(flow_run, "parent_task_run_id", None):
        logger.info("Subflow run %s ended %s; its parent run reports it", flow_run.id, state.name)
        return
    notify_ops_on_failure(flow, flow_run, state)


def release_inbox_claims(flow: Any, flow_run: Any, state: Any) -> None:
    """on_crashed / on_cancellation hook: give the run's claimed, unprocessed lead_inbox rows back at once.

    A run that dies (killed, out of memory) cannot release its claims itself; `leadflow serve` and workers run
    this hook for it, so its leads are taken by the next run instead of waiting out the 15-minute claim timeout.
    """
    try:
        from leadflow.steps.intake import release_run_claims

        released = release_run_claims(str(flow_run.id))
    except Exception as exc:
        # The claim timeout still hands the rows out again; the run's own end is what ops must see.
        logger.error("Could not release the inbox claims of run %s: %s", flow_run.id, type(exc).__name__)
        return
    if released:
        logger.warning("Gave %d lead_inbox rows claimed by run %s back to the inbox", released, flow_run.id)
