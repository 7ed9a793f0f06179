"""Task shell for Repair Unfinished Leads: finish the leads a killed run left half processed."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from leadflow.config.settings import get_settings
from leadflow.domain.qualification import load_qualification_policy
from leadflow.steps import repair as steps
from leadflow.steps.intake import plain_steps
from leadflow.steps.qualification import local_steps
from tasks.common import DB_TASK, current_flow_run_id, store, utc_now


@task(name="Repair Unfinished Leads", **DB_TASK)
def repair_unfinished_leads(now: datetime, dry_run: bool = False,
                            grace_minutes: float = steps.DEFAULT_GRACE_MINUTES) -> steps.RepairSummary:
    """Find leads whose spam check, details, score, qualification or tasks and messages are missing; finish them."""
    result = run_repair(now, dry_run=dry_run, grace_minutes=grace_minutes, flow_run_id=current_flow_run_id())
    logger = get_run_logger()
    if result.total:
        logger.warning("Found %d unfinished leads (%s)%s", result.total, result.found,
                       " (dry run)" if dry_run else f"; finished them in {result.chunks} chunks")
    else:
        logger.info("No unfinished leads")
    return result


def run_repair(now: datetime, *, dry_run: bool = False, grace_minutes: float = steps.DEFAULT_GRACE_MINUTES,
               flow_run_id: str | None = None, messages: str = "auto") -> steps.RepairSummary:
    """The repair step over the configured CRM with the plain intake and qualification steps (also the CLI's)."""
    settings = get_settings()
    crm = store()
    urls = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else None
    return steps.repair_leads(
        crm, plain_steps(crm, flow_run_id=flow_run_id),
        local_steps(crm, manager_urls=urls, sales_inbox=settings.sender_email, flow_run_id=flow_run_id),
        load_qualification_policy("qualification"), now=now, timezone=settings.timezone, clock=utc_now,
        chunk_size=settings.chunk_size, dry_run=dry_run, grace_minutes=grace_minutes, messages=messages)
