"""Task shells for erasure requests: read a request file, erase each person, publish counts (never an address)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from leadflow.config.settings import email_hash_key, get_settings
from leadflow.io.privacy_files import read_erasure_requests as read_requests
from leadflow.steps import people
from tasks.common import DB_TASK, PRIVATE, store


@task(name="Read Erasure Requests", **PRIVATE)
def read_erasure_requests(path: str) -> list[str]:
    """The addresses of a request file (one per line, or a CSV with an email column); not persisted or logged."""
    emails = read_requests(path)
    get_run_logger().info("Read %d erasure requests", len(emails))
    return emails


@task(name="Erase People", **DB_TASK)
def erase_people(emails: list[str], reason: str | None, dry_run: bool) -> dict[str, Any]:
    """Erase each requested person everywhere (rows, .eml files, backfill window rows); returns counts only."""
    settings = get_settings()
    crm = store()
    key = email_hash_key(settings, crm.url).decode()
    summary = people.erase_people(crm, emails, hash_key=key, outbox_dir=settings.outbox_dir,
                                  backfill_dir=settings.backfill_dir, reason=reason, dry_run=dry_run)
    get_run_logger().info("%s %d of %d people (%d with nothing stored, %d malformed requests)",
                          "Would erase" if dry_run else "Erased", summary.erased, summary.requests,
                          summary.not_found, len(summary.invalid))
    return summary.as_dict()


def erasure_markdown(summary: dict[str, Any]) -> str:
    """The batch's counts as Markdown for the Prefect UI: per store, no address."""
    lines = [f"# Person erasure{' (dry run: nothing changed)' if summary['dry_run'] else ''}", "",
             "| what | count |", "|---|---:|",
             f"| requests | {summary['requests']} |", f"| people erased | {summary['erased']} |",
             f"| people with nothing stored (recorded) | {summary['not_found']} |",
             f"| malformed requests | {len(summary['invalid'])} |",
             f"| .eml files | {summary['eml_files']} |", f"| backfill window rows | {summary['backfill_rows']} |",
             "", "| store | rows |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in summary["removed"].items()]
    if summary["invalid"]:
        lines += ["", f"Malformed requests at positions {', '.join(map(str, summary['invalid']))}."]
    return "\n".join(lines)


@task(name="Publish Erasure Summary")
def publish_erasure_summary(summary: dict[str, Any]) -> None:
    """Publish the batch's counts under a stable artifact key."""
    create_markdown_artifact(key="person-erasure-summary", markdown=erasure_markdown(summary),
                             description="What a batch of erasure requests removed, per store (no addresses)")
