"""lead-qualification: checklist -> company match -> account -> link -> priority -> owner -> tasks -> messages."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.hooks import notify_ops_unless_subflow
from flows.quiet import announce_queued_messages
from leadflow.config.settings import get_settings
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.steps.qualification import qualify
from tasks.common import utc_now
from tasks.delivery import deliver_outbox
from tasks.qualification import (
    QUALIFICATION_TASKS,
    finish_lead_qualification,
    load_leads_to_qualify,
    publish_qualification_summary,
    resolve_leads_to_qualify,
)


def _load_leads_to_qualify(ids: list[int]) -> tuple[Any, int, int]:
    """Load Leads To Qualify with its ids passed as they are."""
    # quote(): Prefect would otherwise visit each of the 50,000 ids looking for futures, twice per task run.
    return load_leads_to_qualify(quote(ids))


def _finish_lead_qualification(ids: list[int], now: Any, left_out: list[int] | None = None) -> int:
    """Finish Lead Qualification with its ids passed as they are."""
    return finish_lead_qualification(quote(ids), now, quote(list(left_out or [])))


TASKS = replace(QUALIFICATION_TASKS, load_leads_to_qualify=_load_leads_to_qualify,
                finish_lead_qualification=_finish_lead_qualification)


def qualification_run_name() -> str:
    """Name runs by what they qualify, so the UI's run list tells them apart."""
    params = flow_run.parameters
    what = (f"{len(params.get('lead_ids') or [])}-leads" if params.get("lead_ids")
            else f"{len(params.get('emails') or [])}-emails" if params.get("emails") else "nothing")
    return f"qualify-{what}{'-replay' if params.get('replay') else ''}"


@flow(name="lead-qualification", flow_run_name=qualification_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=2), on_failure=[notify_ops_unless_subflow],
      on_crashed=[notify_ops_unless_subflow], log_prints=False)
def lead_qualification(
    lead_ids: list[int] | None = None,
    emails: list[str] | None = None,
    replay: bool = False,
    deliver: bool = True,
    policy: str | None = None,
    messages: Literal["auto", "none", "all"] = "auto",
) -> dict[str, Any]:
    """Qualify leads: checklist, account match and link, priority, owner, tasks, auto-response and alerts.

    Args:
        lead_ids: Leads to qualify (lead-intake passes the leads each run created or changed).
        emails: Leads to qualify, by email (for example to requalify some after a policy change).
        replay: History being replayed: no messages at all; assignments and tasks are recorded as historical.
        deliver: Send the queued messages at the end of the run (else the next outbox-delivery run does).
        policy: Qualification policy name in leadflow/config/policies/ or a JSON path (default: qualification).
        messages: auto: only leads whose latest submission is within the policy's freshness window are worked live
            and messaged, older ones are recorded as history (no messages, no SLA tasks); none: nobody is messaged;
            all: every lead is treated as fresh.
    """
    started = time.perf_counter()
    rules = load_qualification_policy(policy or "qualification")
    summary = QualificationSummary(replay=replay, policy_version=rules.version)
    # Ids alone need no lookup (lead-intake's per-chunk call); emails are looked up in the CRM by a task.
    ids = resolve_leads_to_qualify(lead_ids, emails) if emails else sorted({int(i) for i in lead_ids or []})
    settings = get_settings()
    qualify(TASKS, ids, rules, summary, replay=replay, timezone=settings.timezone, clock=utc_now,
            chunk_size=settings.chunk_size, messages=messages)
    queued = sum(summary.messages_queued.values())
    sent_inline = False
    if deliver and not replay and queued:
        tick = time.perf_counter()
        try:
            delivered = deliver_outbox()
            summary.delivered, summary.delivery_failed = delivered.sent, delivered.failed + delivered.unknown_outcome
            if delivered.retry_later:
                summary.failures.append(f"{delivered.retry_later} messages will be retried by outbox-delivery")
            sent_inline = not (delivered.retry_later or delivered.left_pending or delivered.breaker_open)
        except Exception as exc:  # the messages are safe in the outbox: the next outbox-delivery run sends them
            summary.failures.append(f"delivery failed, messages stay pending: {type(exc).__name__}")
        summary.add_time("deliver_outbox", time.perf_counter() - tick)
    elif queued and not replay:
        get_run_logger().info("%d messages wait in the outbox for the outbox-delivery run", queued)
    if queued and not replay and not sent_inline:
        # Wakes the outbox-delivery deployment now instead of at its safety schedule.
        announce_queued_messages(queued)
    summary.seconds = round(time.perf_counter() - started, 3)
    publish_qualification_summary(summary)
    get_run_logger().info("Qualified %d leads (%d spam skipped): %s; %d accounts created; messages queued %s",
                          summary.leads, summary.skipped_spam, summary.by_priority, summary.accounts_created,
                          summary.messages_queued)
    return summary.as_dict()

