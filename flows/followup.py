"""lead-follow-up: stop finished sequences, re-engage recycled leads, enroll, create due steps, escalate overdue."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from flows.quiet import announce_queued_messages
from tasks.common import utc_now
from tasks.followup import (
    FollowupResult,
    alert_returning_leads,
    cadence_policy,
    create_due_steps,
    enroll_leads,
    escalate_overdue_steps,
    reengage_recycled,
    schedule_recycled,
    stop_finished_sequences,
)


def followup_run_name() -> str:
    """Name runs by the hour they work (the `now` parameter when given) and the policy."""
    now = flow_run.parameters.get("now")
    stamp = (now if isinstance(now, datetime) else utc_now()).strftime("%Y%m%d-%H%M") if not isinstance(now, str) \
        else now[:16].replace(":", "").replace("-", "").replace("T", "-")
    return f"followup-{stamp}-{flow_run.parameters.get('policy') or 'cadence'}"


def _markdown(version: str, now: datetime, summary: dict[str, Any]) -> str:
    rows = "".join(f"| {k} | {v} |\n" for k, v in summary.items() if not isinstance(v, dict))
    parts = "".join(f"| {name}: {k} | {v} |\n" for name, v0 in summary.items() if isinstance(v0, dict)
                    for k, v in v0.items())
    return (f"# Follow-up run at {now:%Y-%m-%d %H:%M} UTC, cadence policy {version}\n\n"
            f"| figure | count |\n|---|---|\n{rows}{parts}")


@flow(name="lead-follow-up", flow_run_name=followup_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def lead_follow_up(now: datetime | None = None, policy: str | None = None, deliver: bool = False) -> dict[str, Any]:
    """Work the follow-up cadences: every step due by `now` becomes one task (emails go through the outbox).

    Args:
        now: The hour to work (default: now); a re-run for the same hour changes nothing.
        policy: Cadence policy name in leadflow/config/policies/ or a JSON file path (default: cadence).
        deliver: Send the queued emails and alerts at the end of the run (else outbox-delivery does).
    """
    started = time.perf_counter()
    rules = cadence_policy(policy)
    moment = now or utc_now()
    result = FollowupResult()
    stop_finished_sequences(rules, moment, result)
    schedule_recycled(rules, moment, result)
    back = reengage_recycled(rules, moment, result)
    if back.to_route:
        from flows.qualification import lead_qualification

        # Routed as any lead is: their previous owner left or is away.
        lead_qualification(lead_ids=back.to_route, deliver=False, messages="all")
    if back.to_owner or back.to_route:
        result.alerts_queued += alert_returning_leads(back.to_owner + back.to_route, moment)
    enroll_leads(rules, moment, result)
    create_due_steps(rules, moment, result)
    escalate_overdue_steps(moment, result)
    summary = {"policy_version": rules.version, "now": moment.isoformat(), **result.as_dict(),
               "seconds": round(time.perf_counter() - started, 3)}
    queued = result.emails_queued + result.alerts_queued + result.manager_notices
    if queued:
        if deliver:
            from tasks.delivery import deliver_outbox

            deliver_outbox()
        else:
            announce_queued_messages(queued)
    create_markdown_artifact(key="lead-follow-up-summary", markdown=_markdown(rules.version, moment, summary),
                             description="Follow-up steps created, sequences stopped and completed, leads re-engaged.")
    get_run_logger().info("Follow-up at %s: %d enrolled, steps %s, %d emails, %d re-engaged, %d overdue escalated",
                          moment.isoformat(), result.enrolled, result.steps_created, result.emails_queued,
                          result.reengaged, result.overdue_escalated)
    return summary
