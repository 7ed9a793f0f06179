"""outbox-delivery: send every pending outbox message; the run after a crash picks up what was left."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks.delivery import count_outbox_messages, deliver_outbox, watch_task_slas


@flow(name="outbox-delivery", log_prints=False)
def outbox_delivery(limit: int | None = None, lease_minutes: float | None = None,
                    watch_slas: bool = True) -> dict[str, Any]:
    """Deliver pending outbox rows (prospect email, rep and manager alerts) exactly once.

    Args:
        limit: Most messages to claim in this run (default: all that are due).
        lease_minutes: How long a claim may stay in `sending` before it counts as left by a dead run (default 10).
        watch_slas: First queue a manager notice about open tasks newly past their SLA, sent in this same run.
    """
    watched = watch_task_slas().as_dict() if watch_slas else {}
    result = deliver_outbox(limit=limit, lease_minutes=lease_minutes).as_dict()
    result.update(watched)
    result["outbox"] = count_outbox_messages()
    lines = "\n".join(f"| {k} | {v} |" for k, v in result.items() if not isinstance(v, dict))
    by_status = "\n".join(f"| {k} | {v} |" for k, v in sorted(result["outbox"].items()))
    create_markdown_artifact(key="outbox-delivery-summary",
                             markdown=f"# Outbox delivery\n\n| count | n |\n|---|---:|\n{lines}\n\n"
                                      f"| outbox status | rows |\n|---|---:|\n{by_status}\n",
                             description="What the delivery run sent, retried and failed")
    return result
