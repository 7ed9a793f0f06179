"""Task shells for outbox-delivery: send what is pending (with retries) and watch task SLAs."""

from __future__ import annotations

from prefect import get_run_logger, task

from leadflow.config.settings import get_settings
from leadflow.crm.outbox import outbox_counts
from leadflow.steps import delivery, sla
from leadflow.steps.delivery import DeliveryResult
from leadflow.steps.sla import SlaWatchResult
from tasks.common import DB_TASK, store, utc_now


@task(name="Deliver Outbox", **DB_TASK)
def deliver_outbox(limit: int | None = None, lease_minutes: float | None = None) -> DeliveryResult:
    """Claim and send pending outbox rows: prospect email over SMTP or as .eml files, alerts through Apprise."""
    result = delivery.deliver_outbox(store(), delivery.delivery_config(lease_minutes), now=utc_now, limit=limit)
    logger = get_run_logger()
    logger.info("Outbox: %d claimed, %d sent, %d to retry later, %d failed; %d stale rows requeued, %d of unknown "
                "outcome", result.claimed, result.sent, result.retry_later, result.failed, result.requeued_stale,
                result.unknown_outcome)
    if result.unknown_outcome:
        logger.warning("%d outbox rows were interrupted mid-send by a dead run: marked failed, not resent",
                       result.unknown_outcome)
    if result.lost_claims:
        logger.info("%d claimed rows were taken over by another delivery run after this run's lease lapsed: "
                    "not sent here", result.lost_claims)
    if result.breaker_open:
        # Channel names and counts only: no address, no server reply.
        logger.warning("Delivery is failing: circuit breaker open for %s after %d consecutive transient failures; "
                       "its messages stay pending for a later run (%d claimed ones given back untried)",
                       ", ".join(result.breaker_open), get_settings().delivery_breaker_after, result.left_pending)
    return result


@task(name="Watch Task SLAs", **DB_TASK)
def watch_task_slas() -> SlaWatchResult:
    """Queue one manager notice about open tasks newly past their SLA due time (each breach reported once)."""
    settings = get_settings()
    urls = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else None
    result = sla.watch_task_slas(store(), urls, settings.sender_email, utc_now())
    if result.breaches:
        get_run_logger().warning("%d open tasks are past their SLA: the sales manager is notified", result.breaches)
    return result


@task(name="Count Outbox Messages", **DB_TASK)
def count_outbox_messages() -> dict[str, int]:
    """Outbox rows by status, for the delivery summary."""
    return outbox_counts(store())
