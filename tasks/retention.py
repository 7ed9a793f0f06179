"""Task shell for retention: age out personal data past its retention periods, and publish the counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from leadflow.steps import retention
from tasks.common import DB_TASK, store


def retention_markdown(summary: dict[str, Any]) -> str:
    """The pass's counts per store as Markdown for the Prefect UI (counts and periods only)."""
    verb = "would remove" if summary["dry_run"] else "removed"
    lines = [f"# Retention{' (dry run: nothing changed)' if summary['dry_run'] else ''}", "",
             f"| store | kept (days) | {verb} |", "|---|---:|---:|"]
    lines += [f"| {name} | {summary['days'][name] or 'forever'} | {count} |"
              for name, count in summary["counts"].items()]
    return "\n".join(lines)


@task(name="Apply Retention", **DB_TASK)
def apply_retention(now: datetime, dry_run: bool) -> dict[str, Any]:
    """Strip raw payloads and delete quarantine rows, inbox rows, .eml and backfill window files past retention."""
    summary = retention.run_retention(store(), now=now, dry_run=dry_run).as_dict()
    get_run_logger().info("Retention%s: %s", " (dry run)" if dry_run else "", summary["counts"])
    create_markdown_artifact(key="retention-summary", markdown=retention_markdown(summary),
                             description="What retention removed, per store")
    return summary
