"""The lead-follow-up flow's tasks: thin shells over steps/followup, each over every lead it concerns, in batches."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from leadflow.config.settings import get_settings
from leadflow.domain.followup import CadencePolicy, load_cadence_policy
from leadflow.steps import followup as steps
from leadflow.steps.followup import FollowupResult, Reengaged
from tasks.common import DB_TASK, current_flow_run_id, store

__all__ = ["FollowupResult", "alert_returning_leads", "cadence_policy", "create_due_steps", "enroll_leads",
           "escalate_overdue_steps", "reengage_recycled", "schedule_recycled", "stop_finished_sequences"]


def cadence_policy(name: str | None = None) -> CadencePolicy:
    """The cadence policy by name or path (default: cadence)."""
    return load_cadence_policy(name or "cadence")


@task(name="Stop Finished Sequences", **DB_TASK)
def stop_finished_sequences(policy: CadencePolicy, now: datetime, result: FollowupResult) -> int:
    """Stop sequences whose lead changed status, turned spam or lost its owner; cancel their open step tasks."""
    return steps.stop_finished_sequences(store(), policy, now, result)


@task(name="Re-engage Recycled Leads", **DB_TASK)
def reengage_recycled(policy: CadencePolicy, now: datetime, result: FollowupResult) -> Reengaged:
    """Bring recycled leads whose date has come back to working, to their previous owner when active."""
    found = steps.reengage_recycled(store(), policy, now, get_settings().timezone, result, current_flow_run_id())
    if found.to_owner or found.to_route:
        get_run_logger().info("Re-engaged %d recycled leads: %d to their previous owner, %d to routing",
                              len(found.to_owner) + len(found.to_route), len(found.to_owner), len(found.to_route))
    return found


@task(name="Schedule Recycled Leads", **DB_TASK)
def schedule_recycled(policy: CadencePolicy, now: datetime, result: FollowupResult) -> int:
    """Give recycled leads without a re-engage date the date of their reason (else the policy's default delay)."""
    return steps.schedule_recycled(store(), policy, now, get_settings().timezone, result)


@task(name="Enroll Leads In Cadence", **DB_TASK)
def enroll_leads(policy: CadencePolicy, now: datetime, result: FollowupResult) -> int:
    """Start a sequence for each owned working lead that never had one."""
    return steps.enroll_leads(store(), policy, now, get_settings().timezone, result)


@task(name="Create Follow-Up Tasks", **DB_TASK)
def create_due_steps(policy: CadencePolicy, now: datetime, result: FollowupResult) -> int:
    """Create every due step's task (and email, with consent) and move each sequence on."""
    created = steps.create_due_steps(store(), policy, now, get_settings().timezone, result,
                                     batch_size=get_settings().chunk_size)
    get_run_logger().info("Created %d follow-up step tasks (%s); %d emails queued", created,
                          result.steps_created, result.emails_queued)
    return created


@task(name="Alert Sales Rep", **DB_TASK)
def alert_returning_leads(lead_ids: list[int], now: datetime) -> int:
    """Queue an alert with its history to the owner of each re-engaged lead."""
    return steps.alert_returning_leads(store(), lead_ids, "reengaged", now)


@task(name="Escalate Overdue Steps", **DB_TASK)
def escalate_overdue_steps(now: datetime, result: FollowupResult) -> int:
    """Report open step tasks past their deadline to the manager, once each."""
    settings = get_settings()
    urls = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else None
    return steps.escalate_overdue_steps(store(), urls, settings.sender_email, now, result)
