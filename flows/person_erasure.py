"""person-erasure: erase a batch of people on request (GDPR art. 17, CCPA), counts only in logs and artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from tasks.people import erase_people, publish_erasure_summary, read_erasure_requests


def erasure_run_name() -> str:
    """Dry runs say so in the run list; the name never carries an address."""
    return "person-erasure-dry-run" if flow_run.parameters.get("dry_run") else "person-erasure"


@flow(name="person-erasure", flow_run_name=erasure_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def person_erasure(path: str | None = None, emails: list[str] | None = None, reason: str | None = None,
                   dry_run: bool = False) -> dict[str, Any]:
    """Erase every person of a request file (or list) everywhere, keeping only keyed-hash erasure records.

    Args:
        path: A request file on the worker: one address per line, or a CSV with an `email` column. Preferred:
            Prefect keeps a run's parameters, so addresses given in `emails` stay in the run's record.
        emails: The addresses themselves (for small batches; see `path`).
        reason: Why (kept in each erasure record, e.g. a ticket id; never an address).
        dry_run: Count what would be removed per store, and change nothing.
    """
    if not path and not emails:
        raise ValueError("person-erasure needs a request file (path) or a list of emails")
    requests = list(emails or [])
    if path:
        requests += read_erasure_requests(path)
    summary = erase_people(requests, reason, dry_run)
    publish_erasure_summary(summary)
    get_run_logger().info("%d requests: %d people erased, %d with nothing stored, %d malformed%s",
                          summary["requests"], summary["erased"], summary["not_found"], len(summary["invalid"]),
                          " (dry run)" if dry_run else "")
    return summary
