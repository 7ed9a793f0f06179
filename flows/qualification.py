"""lead-qualification: checklist -> company match -> account -> link -> priority -> owner -> tasks -> messages."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from leadflow.config.settings import get_settings
from leadflow.domain.qualification import QualificationPolicy, load_qualification_policy
from leadflow.steps import qualification as qualify_store
from leadflow.steps.qualification import QualificationSummary, add, summary_of
from tasks.common import store, utc_now
from tasks.delivery import deliver_outbox
from tasks.qualification import (
    alert_sales_reps,
    assign_lead_owner,
    assign_qualification_tasks,
    check_company_existence,
    create_account_entries,
    create_discovery_call_tasks,
    determine_lead_priority,
    link_leads_to_accounts,
    load_leads_to_qualify,
    notify_sales_manager,
    publish_qualification_summary,
    qualification_checklist,
    qualified,
    send_auto_responses,
)


def qualification_run_name() -> str:
    """Name runs by what they qualify, so the UI's run list tells them apart."""
    params = flow_run.parameters
    what = (f"{len(params.get('lead_ids') or [])}-leads" if params.get("lead_ids")
            else f"{len(params.get('emails') or [])}-emails" if params.get("emails") else "nothing")
    return f"qualify-{what}{'-replay' if params.get('replay') else ''}"


@flow(name="lead-qualification", flow_run_name=qualification_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False)
def lead_qualification(
    lead_ids: list[int] | None = None,
    emails: list[str] | None = None,
    replay: bool = False,
    deliver: bool = True,
    policy: str | None = None,
) -> dict[str, Any]:
    """Qualify leads: checklist, account match and link, priority, owner, tasks, auto-response and alerts.

    Args:
        lead_ids: Leads to qualify (lead-intake passes the leads each run created or changed).
        emails: Leads to qualify, by email (for example to requalify some after a policy change).
        replay: History being replayed: no messages at all; assignments and tasks are recorded as historical.
        deliver: Send the queued messages at the end of the run (else the next outbox-delivery run does).
        policy: Qualification policy name in leadflow/config/policies/ or a JSON path (default: qualification).
    """
    started = time.perf_counter()
    rules = load_qualification_policy(policy or "qualification")
    summary = QualificationSummary(replay=replay, policy_version=rules.version)
    ids = qualify_store.resolve_lead_ids(store(), lead_ids, emails)
    size = get_settings().chunk_size
    for start in range(0, len(ids), size):
        _qualify_batch(ids[start:start + size], rules, replay, summary)
    queued = sum(summary.messages_queued.values())
    if deliver and not replay and queued:
        tick = time.perf_counter()
        try:
            delivered = deliver_outbox()
            summary.delivered, summary.delivery_failed = delivered.sent, delivered.failed + delivered.unknown_outcome
            if delivered.retry_later:
                summary.failures.append(f"{delivered.retry_later} messages will be retried by outbox-delivery")
        except Exception as exc:  # the messages are safe in the outbox: the next outbox-delivery run sends them
            summary.failures.append(f"delivery failed, messages stay pending: {type(exc).__name__}")
        summary.add_time("deliver_outbox", time.perf_counter() - tick)
    elif queued and not replay:
        get_run_logger().info("%d messages wait in the outbox for the outbox-delivery run", queued)
    summary.seconds = round(time.perf_counter() - started, 3)
    publish_qualification_summary(summary)
    get_run_logger().info("Qualified %d leads (%d spam skipped): %s; %d accounts created; messages queued %s",
                          summary.leads, summary.skipped_spam, summary.by_priority, summary.accounts_created,
                          summary.messages_queued)
    return summary.as_dict()


def _qualify_batch(ids: list[int], policy: QualificationPolicy, replay: bool, summary: QualificationSummary) -> None:
    """Every step over one batch of leads."""
    now = utc_now()
    tick = time.perf_counter()

    def timed(step: str) -> None:
        nonlocal tick
        summary.add_time(step, time.perf_counter() - tick)
        tick = time.perf_counter()

    # quote(): Prefect would otherwise visit each of the 50,000 ids looking for futures, twice per task run.
    leads, spam = load_leads_to_qualify(quote(ids))
    summary.skipped_spam += spam
    timed("load")
    if leads.empty:
        return
    checks_future = qualification_checklist.submit(leads, policy)
    match = check_company_existence(leads, policy)
    timed("check_company_existence")
    accounts = create_account_entries(leads, match)
    summary.accounts_created += accounts.created
    timed("create_account_entries")
    links = link_leads_to_accounts(leads, match, accounts)
    timed("link_leads_to_accounts")
    checks = checks_future.result()
    timed("wait_for_checklist")
    priority = determine_lead_priority(leads, checks, match, policy)
    timed("determine_lead_priority")
    assignment = assign_lead_owner(leads, links, priority, policy, replay, now, match, checks)
    timed("assign_lead_owner")
    q = qualified(leads, checks, match, links.account, priority, assignment, policy, now)
    summary_of(q, summary)
    add(summary.tasks_created, "qualification", assign_qualification_tasks(q, policy, replay, now))
    timed("assign_qualification_tasks")
    add(summary.tasks_created, "discovery_call", create_discovery_call_tasks(q, policy, replay, now))
    timed("create_discovery_call_tasks")
    if replay:
        return
    add(summary.messages_queued, "auto_response", send_auto_responses(q, policy, now))
    timed("send_auto_responses")
    add(summary.messages_queued, "rep_alert", alert_sales_reps(q, policy, now))
    timed("alert_sales_reps")
    add(summary.messages_queued, "manager_notice", notify_sales_manager(q, policy, now))
    timed("notify_sales_manager")
