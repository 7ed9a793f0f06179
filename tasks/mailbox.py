"""Task shells for lead-mailbox: fetch the sales mailbox, store what it holds, move or flag what was taken."""

from __future__ import annotations

from prefect import get_run_logger, task

from leadflow.crm import inbox
from leadflow.io.mailbox import Fetched, MailboxError
from leadflow.steps import mailbox
from leadflow.steps.mailbox import MailboxTake
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, store, utc_now


def retry_on_network(task: object, task_run: object, state: object) -> bool:
    """Retry an IMAP call only when it failed on the connection or the server: never a refused login or bad setting."""
    try:
        error = state.result(raise_on_failure=False)  # type: ignore[attr-defined]
    except Exception:
        return False
    return (isinstance(error, MailboxError) and error.transient) or isinstance(error, OSError)


# Raw messages hold personal data: PRIVATE keeps them out of Prefect's result store.
IMAP_TASK = {**PRIVATE, "retries": 2, "retry_delay_seconds": [2, 10], "retry_jitter_factor": 0.5,
             "retry_condition_fn": retry_on_network}


@task(name="Fetch Sales Mailbox", **IMAP_TASK)
def fetch_mailbox(limit: int | None = None) -> Fetched | None:
    """New messages of the configured mailbox folder, read without marking them seen; None without a mailbox."""
    config = mailbox.mailbox_config()
    logger = get_run_logger()
    if config is None:
        logger.info("No sales mailbox is configured (LEADFLOW_MAILBOX_HOST): nothing to read")
        return None
    fetched = mailbox.fetch_messages(config, limit)
    logger.info("Fetched %d messages from folder %s", len(fetched.messages), config.folder)
    return fetched


@task(name="Store Mailbox Messages", **DB_TASK)
def store_mailbox_messages(fetched: Fetched) -> MailboxTake:
    """Inquiries into lead_inbox (the submitted event wakes intake), known leads' mail as touches, skips counted."""
    take = mailbox.take_messages(store(), fetched.messages, utc_now(), current_flow_run_id())
    logger = get_run_logger()
    logger.info("Mailbox: %d new inquiries, %d touches of known leads (%d replies to our mail), %d already taken",
                take.inquiries, take.touches, take.replies, take.already_taken)
    if take.skipped:
        logger.info("Skipped: %s", ", ".join(f"{n} {reason}" for reason, n in sorted(take.skipped.items())))
    if take.inquiries:
        announce_inbox_leads(take.inquiries)
    return take


def announce_inbox_leads(count: int) -> None:
    """Emit `leadflow.lead.submitted` so the continuous intake deployment takes the new inbox rows now."""
    from prefect.events import emit_event

    try:
        emit_event(event=inbox.SUBMITTED_EVENT, resource={"prefect.resource.id": inbox.INBOX_RESOURCE_ID},
                   payload={"leads": int(count), "source": "mailbox"})
    except Exception as exc:
        # The rows are safe in the inbox; the intake's safety schedule takes them if the event is lost.
        get_run_logger().warning("Could not emit %s: %s", inbox.SUBMITTED_EVENT, type(exc).__name__)


@task(name="Mark Taken Messages", **IMAP_TASK)
def mark_taken_messages(fetched: Fetched, take: MailboxTake) -> int:
    """Move the taken messages to the processed folder (or flag them), then note it in the ledger."""
    config = mailbox.mailbox_config()
    if config is None:
        return 0
    marked = mailbox.mark_messages(store(), config, fetched.uidvalidity, take, utc_now())
    if take.uids and not marked:
        get_run_logger().warning("Folder %s changed its UIDVALIDITY: nothing marked; the next run marks the "
                                 "messages it finds already taken", config.folder)
    return marked
