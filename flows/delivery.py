"""outbox-delivery: send every pending outbox message; the run after a crash picks up what was left."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from flows.quiet import name_run_idle
from leadflow.steps.delivery import DeliveryFailing
from tasks.delivery import count_outbox_messages, deliver_outbox, watch_task_slas


def delivery_run_name() -> str:
    """Name runs by what they may send: a capped run says its limit."""
    limit = flow_run.parameters.get("limit")
    return f"outbox-delivery-up-to-{limit}" if limit else "outbox-delivery"


def is_idle(result: dict[str, Any]) -> bool:
    """Whether a delivery run found nothing to do: no message claimed or requeued, no SLA notice queued."""
    busy = ("claimed", "requeued_stale", "lost_claims", "sla_notices_queued", "sla_breaches_reported")
    return not any(result.get(key) for key in busy) and not result.get("breaker_open")


@flow(name="outbox-delivery", flow_run_name=delivery_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def outbox_delivery(limit: int | None = None, lease_minutes: float | None = None,
                    watch_slas: bool = True) -> dict[str, Any]:
    """Deliver pending outbox rows (prospect email, rep and manager alerts) exactly once.

    The run ends Failed (DeliveryFailing; the ops alert and Prefect notifications fire) when a channel's circuit
    breaker opened; its summary artifact is written first and names the channels.

    Args:
        limit: Most messages to claim in this run (default: all that are due).
        lease_minutes: How long a claim may stay in `sending` before it counts as left by a dead run (default 10).
        watch_slas: First queue a manager notice about open tasks newly past their SLA, sent in this same run.
    """
    watched = watch_task_slas().as_dict() if watch_slas else {}
    result = deliver_outbox(limit=limit, lease_minutes=lease_minutes).as_dict()
    result.update(watched)
    result["outbox"] = count_outbox_messages()
    if is_idle(result):
        # Event-triggered and on a safety schedule: an idle run says so by name and leaves no all-zero artifact.
        name_run_idle()
        return result
    lines = "\n".join(f"| {k} | {v} |" for k, v in result.items() if not isinstance(v, dict | list))
    by_status = "\n".join(f"| {k} | {v} |" for k, v in sorted(result["outbox"].items()))
    breaker = result["breaker_open"]
    waiting = result["outbox"].get("pending", 0)
    failing = (f"**Delivery is failing**: circuit breaker open for {', '.join(breaker)}; "
               f"{waiting} messages wait in the outbox for a later run.\n\n" if breaker else "")
    create_markdown_artifact(key="outbox-delivery-summary",
                             markdown=f"# Outbox delivery\n\n{failing}| count | n |\n|---|---:|\n{lines}\n"
                                      f"| breaker_open | {', '.join(breaker) or '-'} |\n\n"
                                      f"| outbox status | rows |\n|---|---:|\n{by_status}\n",
                             description="What the delivery run sent, retried and failed")
    if breaker:
        raise DeliveryFailing(f"delivery failing: circuit breaker open for {', '.join(breaker)}; "
                              f"{waiting} messages wait in the outbox")
    return result
