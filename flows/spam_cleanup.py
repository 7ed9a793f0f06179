"""spam-cleanup: re-check recent leads, flag spam reversibly, purge expired spam keeping tombstones."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from leadflow.steps import spam as cleanup
from tasks.batches import find_dead_batches
from tasks.common import utc_now
from tasks.health import publish_daily_health
from tasks.repair import repair_unfinished_leads
from tasks.retention import apply_retention
from tasks.spam import cleanup_spam_leads, count_spam_restores, publish_spam_summary, purge_expired_spam_leads


def spam_cleanup_run_name() -> str:
    """Dry runs say so in the run list."""
    return "spam-cleanup-dry-run" if flow_run.parameters.get("dry_run") else "spam-cleanup"


@flow(name="spam-cleanup", flow_run_name=spam_cleanup_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def spam_cleanup(since: str | None = None, dry_run: bool = False, batch_size: int = 50_000,
                 health: bool = True, retention: bool = True, repair: bool = True) -> dict[str, Any]:
    """Flag spam among recent leads (status spam, tasks cancelled, messages withdrawn) and purge expired spam.

    Args:
        since: ISO date or time of the oldest submission to re-check (default: the policy's recheck_days ago).
        dry_run: Report what would be flagged and purged, and change nothing.
        batch_size: Submissions (and leads to purge) per chunk; memory follows this, not the table size.
        health: Publish the daily health artifact (`daily-health`: yesterday's volume, speed to lead, SLA
            breaches, unassigned leads, outbox and quarantine); it only reads, so dry runs publish it too.
        retention: Also apply the retention periods (LEADFLOW_RETENTION_*_DAYS) to payloads, quarantine, inbox,
            .eml and backfill window files (a dry run only counts).
        repair: Also finish leads a killed run left half processed (`leadflow repair`); first, so the spam
            re-check and purge see them complete.
    """
    started = time.perf_counter()
    policy = cleanup.load_spam_policy()
    now = utc_now()
    start = cleanup.parse_since(since, now, policy)
    repaired = None
    if repair:
        # Nightly reconcile: leads whose spam check, score, qualification or tasks and messages a crash cut off.
        repaired = repair_unfinished_leads(now, dry_run)
    flagged = cleanup_spam_leads(policy, start, now, batch_size, dry_run)
    purged = purge_expired_spam_leads(policy, now, batch_size, dry_run)

    # Intake batches whose run died since (killed, out of memory) are marked crashed and reported, once each.
    dead_batches = find_dead_batches(dry_run)

    summary = {
        "dry_run": dry_run,
        "policy_version": policy.version,
        "since": start.isoformat(),
        "run_at": now.isoformat(),
        "flagged": flagged.as_dict(),
        "restored": count_spam_restores(start),
        "purged": purged.as_dict(),
        "dead_batches": dead_batches,
        "repaired": repaired.as_dict() if repaired is not None else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    publish_spam_summary(summary)

    # The nightly run is the maintenance slot: the day's pipeline health, read-only, in a block of its own.
    if health:
        summary["health"] = publish_daily_health(now)

    # Nightly maintenance: retention of personal data.
    if retention:
        summary["retention"] = apply_retention(now, dry_run)
    get_run_logger().info(
        "Checked %d leads: %d flagged, %d purged, %d held for review%s", flagged.leads_checked, flagged.flagged,
        purged.purged, purged.review, " (dry run)" if dry_run else "",
    )
    return summary
