"""Task shells for the lead-qualification steps: each runs over the whole batch and calls its step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from leadflow.config.settings import get_settings
from leadflow.crm.accounts import AccountResult
from leadflow.crm.assignments import CapacityConflict
from leadflow.crm.leads import resolve_lead_ids
from leadflow.domain.accounts import LeadLinks
from leadflow.domain.qualification import QualificationPolicy
from leadflow.domain.summary import QualificationSummary, counts
from leadflow.steps import qualification as steps
from leadflow.steps.qualification import AssignmentResult, QualificationSteps, Qualified
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, retry_on_db_contention, store


def retry_on_contention_or_capacity(task: Any, task_run: Any, state: Any) -> bool:
    """Retry routing on lock errors and when a concurrent run took capacity first."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return False
    return isinstance(error, CapacityConflict) or retry_on_db_contention(task, task_run, state)


ROUTING_TASK = {**DB_TASK, "retry_condition_fn": retry_on_contention_or_capacity}


@task(name="Resolve Leads To Qualify", **DB_TASK)
def resolve_leads_to_qualify(lead_ids: list[int] | None, emails: list[str] | None,
                             all_unqualified: bool = False) -> list[int]:
    """The ids of the leads a run qualifies: given ids, leads found by email, or every unqualified lead."""
    return resolve_lead_ids(store(), lead_ids, emails, all_unqualified)


@task(name="Load Leads To Qualify", **DB_TASK)
def load_leads_to_qualify(lead_ids: list[int]) -> tuple[pd.DataFrame, int, int]:
    """Read the leads with what qualification needs; spam and not yet scored leads are left out and counted."""
    leads, spam, unscored = steps.load_leads_to_qualify(store(), lead_ids)
    if spam:
        get_run_logger().info("Skipping %d spam leads", spam)
    if unscored:
        get_run_logger().warning("Skipping %d leads whose spam check, details or score is still missing", unscored)
    return leads, spam, unscored


@task(name="Qualification Checklist", **PRIVATE)
def qualification_checklist(leads: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """BANT checklist per lead: budget, authority, need, timeline each met, not met or unknown, with why."""
    checks = steps.qualification_checklist(leads, policy)
    get_run_logger().info("Checklist: %d of %d leads pass", int(checks["passes"].sum()), len(checks))
    return checks


@task(name="Check Company Existence", **DB_TASK)
def check_company_existence(leads: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """Match each lead's company to accounts: domain first, then cleaned name, fuzzy within blocks."""
    match = steps.check_company_existence(store(), leads, policy)
    get_run_logger().info("Company matches by band: %s", counts(match["match_band"]))
    return match


@task(name="Create Account Entry", **DB_TASK)
def create_account_entries(leads: pd.DataFrame, match: pd.DataFrame) -> AccountResult:
    """Create one account per new company (race-safe on both unique keys)."""
    result = steps.create_account_entries(store(), leads, match)
    get_run_logger().info("Accounts: %d proposed, %d created", result.proposed, result.created)
    return result


@task(name="Link Lead to Account", **PRIVATE)
def link_leads_to_accounts(leads: pd.DataFrame, match: pd.DataFrame, accounts: AccountResult) -> LeadLinks:
    """Link leads to their matched or new account with the match evidence (stored by Assign Lead Owner)."""
    links = steps.link_leads_to_accounts(leads, match, accounts)
    get_run_logger().info("Links: %d leads linked, %d links or evidence changed", int(links.account.notna().sum()),
                          int(links.write.sum()))
    return links


@task(name="Determine Lead Priority", **PRIVATE)
def determine_lead_priority(leads: pd.DataFrame, checks: pd.DataFrame, match: pd.DataFrame,
                            policy: QualificationPolicy) -> pd.DataFrame:
    """P1..P4 from tier, score and checklist with the deciding rule, checked (GX); Assign Lead Owner stores them."""
    priority = steps.determine_lead_priority(leads, checks, match, policy)
    get_run_logger().info("Priorities: %s (%d changed)", counts(priority["priority"]), int(priority["changed"].sum()))
    return priority


@task(name="Assign Lead Owner", **ROUTING_TASK)
def assign_lead_owners(leads: pd.DataFrame, links: LeadLinks, priority: pd.DataFrame, policy: QualificationPolicy,
                       replay: bool, now: datetime, match: pd.DataFrame, checks: pd.DataFrame) -> AssignmentResult:
    """Route leads (account owner, territory and segment, round robin by capacity, else fallback); store changes."""
    result = steps.assign_lead_owners(store(), leads, links, priority, policy, replay, now, match, checks,
                                      flow_run_id=current_flow_run_id())
    get_run_logger().info("Assignments by rule: %s; %d newly assigned, %d newly in %s",
                          counts(result.decisions["assignment_rule"]), int(result.newly_assigned.sum()),
                          int(result.newly_queued.sum()), policy.routing.fallback_queue)
    return result


@task(name="Assign Qualification Task", **DB_TASK)
def assign_qualification_tasks(q: Qualified, policy: QualificationPolicy, replay: bool, now: datetime) -> int:
    """One qualification task per lead for its owner, due by the priority's SLA in business hours."""
    return steps.assign_qualification_tasks(store(), q, policy, replay, now)


@task(name="Create Discovery Call Task", **DB_TASK)
def create_discovery_call_tasks(q: Qualified, policy: QualificationPolicy, replay: bool, now: datetime) -> int:
    """A discovery call task for P1/P2 leads whose checklist passes."""
    return steps.create_discovery_call_tasks(store(), q, policy, replay, now)


@task(name="Send Auto-Response", **DB_TASK)
def send_auto_responses(q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue one auto-response per new prospect (none to do-not-contact or opted-out leads)."""
    return steps.send_auto_responses(store(), q, policy, now)


@task(name="Alert Sales Rep", **DB_TASK)
def alert_sales_reps(q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue an alert to the rep of each newly assigned P1/P2 lead."""
    return steps.alert_sales_reps(store(), q, policy, now)


@task(name="Notify Sales Manager", **DB_TASK)
def notify_sales_manager(q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue notices on leads newly in the fallback queue and on tasks past their SLA."""
    settings = get_settings()
    urls = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else None
    return steps.notify_sales_manager(store(), q, policy, now, manager_urls=urls, sales_inbox=settings.sender_email)


@task(name="Finish Lead Qualification", **DB_TASK)
def finish_lead_qualification(lead_ids: list[int], now: datetime, left_out: list[int] | None = None) -> int:
    """Mark the batch's leads complete: their tasks and messages are queued (leadflow/domain/progress.py)."""
    return steps.finish_lead_qualification(store(), lead_ids, now, left_out or [])


@task(name="Publish Qualification Summary")
def publish_qualification_summary(summary: QualificationSummary) -> None:
    """Publish the run summary under a stable key (counts only)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key="lead-qualification-summary", markdown=summary.to_markdown(),
                             description="Leads by priority and tier, matches, accounts, assignments, tasks, messages")


# The steps of the one qualification sequence (leadflow.steps.qualification.qualify), as tasks.
QUALIFICATION_TASKS = QualificationSteps(
    load_leads_to_qualify=load_leads_to_qualify,
    qualification_checklist=qualification_checklist,
    check_company_existence=check_company_existence,
    create_account_entries=create_account_entries,
    link_leads_to_accounts=link_leads_to_accounts,
    determine_lead_priority=determine_lead_priority,
    assign_lead_owners=assign_lead_owners,
    assign_qualification_tasks=assign_qualification_tasks,
    create_discovery_call_tasks=create_discovery_call_tasks,
    send_auto_responses=send_auto_responses,
    alert_sales_reps=alert_sales_reps,
    notify_sales_manager=notify_sales_manager,
    finish_lead_qualification=finish_lead_qualification,
)
