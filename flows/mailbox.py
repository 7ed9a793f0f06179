"""lead-mailbox: the sales mailbox as a lead source, polled every minute."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.hooks import notify_ops_on_failure
from flows.quiet import name_run_idle
from tasks.mailbox import fetch_mailbox, mark_taken_messages, store_mailbox_messages

SUMMARY_KEY = "lead-mailbox-summary"


def _summary(result: dict[str, Any]) -> str:
    """The run's counts as a markdown table: every skipped message counted under its reason."""
    rows = [("fetched", result["fetched"]), ("new inquiries (to lead_inbox)", result["inquiries"]),
            ("touches of known leads", result["touches"]), ("of which replies to our mail", result["replies"]),
            ("follow-up sequences stopped by a reply", result["sequences_stopped"]),
            ("owners alerted", result["rep_alerts"]),
            ("already taken before", result["already_taken"]), ("moved or flagged", result["marked"])]
    rows += [(f"skipped: {reason}", n) for reason, n in sorted(result["skipped"].items())]
    lines = "\n".join(f"| {name} | {n} |" for name, n in rows)
    return f"# Sales mailbox\n\n| messages | n |\n|---|---:|\n{lines}\n"


@flow(name="lead-mailbox", flow_run_name="mailbox", on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def lead_mailbox(limit: int | None = None) -> dict[str, Any]:
    """Turn new mail of the sales mailbox into leads: inquiries through lead_inbox, known leads' mail as touches
    that stop their follow-up sequence and alert their owner.

    Auto-replies, bounces and mailing-list mail are skipped and counted by reason. Every message is stored before it
    is moved or flagged, keyed by its Message-ID, so a re-run never stores one twice.

    Args:
        limit: Most messages to take in this run (default: the mailbox_batch_size setting).
    """
    fetched = fetch_mailbox(limit)
    if fetched is None or not fetched.messages:
        # Polled every minute: a run with no mail says so by name and leaves no all-zero artifact.
        name_run_idle()
        return {"configured": fetched is not None, "fetched": 0}
    take = store_mailbox_messages(fetched)
    # The messages are stored by now: a failed move still gets its summary, then fails the run (ops are told).
    marking = mark_taken_messages(fetched, take, return_state=True)
    marked = marking.result(raise_on_failure=False) if marking.is_completed() else 0
    result = {"configured": True, **take.as_dict(), "marked": marked}
    create_markdown_artifact(key=SUMMARY_KEY, markdown=_summary(result),
                             description="What the mailbox run took: inquiries, touches and skips by reason")
    if not marking.is_completed():
        marking.result()
    return result
