"""Task shells for spam: the intake-time check, the nightly sweep, the purge and the run's artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from data_checks.spam import guard_spam_flags
from leadflow.domain.spam import SpamPolicy
from leadflow.steps import spam as cleanup
from tasks.common import DB_TASK, current_flow_run_id, store


@task(name="Check Spam", **DB_TASK)
def check_spam_at_intake(lead_ids: list[int], batch_id: str, now: datetime,
                         subs: pd.DataFrame | None = None, waiting: list[int] | None = None) -> dict[str, Any]:
    """Flag the spam among an intake batch's leads before qualification sees them; returns counts by reason.

    `subs` is the chunk's normalized submissions when the flow still holds them: then they are not read back.
    `waiting` leads still have another (killed) batch's submissions to judge. The leads are marked checked.
    """
    result = cleanup.check_spam_at_intake(store(), cleanup.load_spam_policy(), lead_ids, batch_id, now, subs=subs,
                                          flow_run_id=current_flow_run_id(), guard=guard_spam_flags,
                                          waiting=waiting or (), mark=True)
    if result.flagged:
        get_run_logger().warning("Flagged %d of %d leads as spam: %s", result.flagged, result.leads_checked,
                                 dict(result.by_reason))
    return result.as_dict()


@task(name="Cleanup Spam Leads", **DB_TASK)
def cleanup_spam_leads(policy: SpamPolicy, since: datetime, now: datetime, batch_size: int,
                       dry_run: bool) -> cleanup.FlagResult:
    """Re-check recent submissions with the latest lists and cross-batch bursts; flag spam reversibly."""
    result = cleanup.sweep_spam(store(), policy, since=since, now=now, batch_size=batch_size, dry_run=dry_run,
                                flow_run_id=current_flow_run_id(), guard=guard_spam_flags)
    verb = "Would flag" if dry_run else "Flagged"
    get_run_logger().info("%s %d of %d leads as spam (%d submissions in %d chunks): %s", verb, result.flagged,
                          result.leads_checked, result.submissions_checked, result.chunks, dict(result.by_reason))
    return result


@task(name="Purge Expired Spam", **DB_TASK)
def purge_expired_spam_leads(policy: SpamPolicy, now: datetime, batch_size: int,
                             dry_run: bool) -> cleanup.PurgeResult:
    """Delete spam leads past retention, keeping tombstones; report worked leads for review instead."""
    result = cleanup.purge_expired_spam(store(), policy, now=now, batch_size=batch_size, dry_run=dry_run)
    logger = get_run_logger()
    logger.info("%s %d expired spam leads", "Would purge" if dry_run else "Purged", result.purged)
    if result.review:
        logger.warning("%d expired spam leads were worked by a rep: held for review", result.review)
    return result


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run summary as Markdown for the Prefect UI (emails masked)."""
    flagged, purged = summary["flagged"], summary["purged"]
    lines = [
        f"# Spam cleanup{' (dry run: nothing changed)' if summary['dry_run'] else ''}",
        "",
        f"Policy {summary['policy_version']}, submissions since {summary['since']}.",
        "",
        "| what | count |",
        "|---|---|",
        f"| leads checked | {flagged['leads_checked']} |",
        f"| submissions checked | {flagged['submissions_checked']} |",
        f"| flagged | {flagged['flagged']} |",
        f"| skipped (restored before) | {flagged['exempt']} |",
        f"| tasks cancelled | {flagged['tasks_cancelled']} |",
        f"| outbox messages withdrawn | {flagged['outbox_withdrawn']} |",
        f"| restored since the window start | {summary['restored']} |",
        f"| purged (tombstone kept) | {purged['purged']} |",
        f"| held for review | {purged['review']} |",
        "",
        "## Flagged by reason",
        "",
        "| reason | leads |",
        "|---|---|",
        *[f"| {reason} | {count} |" for reason, count in flagged["by_reason"].items()],
    ]
    repaired = summary.get("repaired")
    if repaired:
        lines += ["", f"## Unfinished leads (repair): {repaired['total']} found", "", "| step still needed | leads |",
                  "|---|---|", *[f"| {step} | {n} |" for step, n in sorted(repaired["found"].items())]]
    if purged["review_sample"]:
        lines += ["", "## Held for review", "", "| lead | email | reasons | why |", "|---|---|---|---|"]
        lines += [f"| {r['lead_id']} | {r['email']} | {r['reasons']} | {r['why']} |" for r in purged["review_sample"]]
    return "\n".join(lines)


@task(name="Count Spam Restores", **DB_TASK)
def count_spam_restores(since: datetime) -> int:
    """Leads restored from spam by a person since this time (the summary reports them beside the flags)."""
    return cleanup.restored_since(store(), since)


@task(name="Publish Spam Cleanup Summary")
def publish_spam_summary(summary: dict[str, Any]) -> None:
    """Publish the run's counts and a masked sample of flagged leads under stable artifact keys."""
    create_markdown_artifact(key="spam-cleanup-summary", markdown=summary_markdown(summary),
                             description="Nightly spam cleanup")
    sample = summary["flagged"]["sample"] or [{"lead_id": None, "email": None, "reasons": "none flagged",
                                                "previous_status": None}]
    create_table_artifact(key="spam-cleanup-flagged", table=sample,
                          description="A sample of the leads flagged as spam (emails masked)")
