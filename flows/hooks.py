"""Flow state hooks: a failed flow run tells ops through the alert channel (an outbox row) and the log."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from leadflow.config.settings import get_settings
from leadflow.crm.schema import OutboxMessage

OUTBOX = OutboxMessage.__table__
# Error messages may quote an input row: never let an address reach an alert or a log.
_EMAIL = re.compile(r"[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+")
logger = logging.getLogger("leadflow.ops")


def mask_addresses(text: str) -> str:
    """The text with every e-mail address in it masked."""
    from leadflow.domain.spam import mask_email

    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


def ops_alert(flow_name: str, run_name: str, run_id: str, state_name: str, message: str | None) -> dict[str, Any]:
    """The ops alert of a failed run: one outbox row per flow run, whatever number of times the hook fires."""
    text = (message or "").strip()
    reason = mask_addresses(text.splitlines()[0] if text else "no message")
    urls = get_settings().ops_alert_urls
    return {
        "idempotency_key": f"ops_alert:{run_id}",
        "lead_id": None,
        "kind": "ops_alert",
        "channel": "apprise",
        "recipient": urls.get_secret_value() if urls else "",
        "subject": f"[leadflow] {flow_name} run {run_name} {state_name.lower()}"[:500],
        "body": f"Flow {flow_name}, run {run_name} ({run_id}) ended {state_name}: {reason}",
        "status": "pending" if urls else "withdrawn",
        "last_error": None if urls else "no ops_alert_urls configured",
        "created_at": datetime.now(UTC),
    }


def notify_ops_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure / on_crashed hook: log the failure and queue an ops alert in the outbox (idempotent per run)."""
    row = ops_alert(flow.name, flow_run.name, str(flow_run.id), state.name or "Failed", state.message)
    logger.error("ALERT %s", row["body"])
    try:
        from leadflow.crm.store import get_store

        crm = get_store()
        with crm.begin() as conn:
            conn.execute(crm.insert(OUTBOX).values(row).on_conflict_do_nothing(index_elements=["idempotency_key"]))
    except Exception as exc:
        # The hook must not hide the run's own failure; the log line above already carries the alert.
        logger.error("ALERT could not be queued in the outbox: %s", type(exc).__name__)


def release_inbox_claims(flow: Any, flow_run: Any, state: Any) -> None:
    """on_crashed / on_cancellation hook: give the run's claimed, unprocessed lead_inbox rows back at once.

    A run that dies (killed, out of memory) cannot release its claims itself; `leadflow serve` and workers run
    this hook for it, so its leads are taken by the next run instead of waiting out the 15-minute claim timeout.
    """
    try:
        from leadflow.crm.inbox import release_run_claims
        from leadflow.crm.store import get_store

        released = release_run_claims(get_store(), str(flow_run.id))
    except Exception as exc:
        # The claim timeout still hands the rows out again; the run's own end is what ops must see.
        logger.error("Could not release the inbox claims of run %s: %s", flow_run.id, type(exc).__name__)
        return
    if released:
        logger.warning("Gave %d lead_inbox rows claimed by run %s back to the inbox", released, flow_run.id)
