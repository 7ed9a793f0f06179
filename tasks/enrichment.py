"""Retrieve Lead Details: the task over a batch of lead ids, and the retried Prefect calls to a provider."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task

from leadflow.config.settings import get_settings
from leadflow.io import enrichment as en
from leadflow.steps import enrichment as steps
from tasks.common import DB_TASK, PRIVATE, store


def _retry_enrichment(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a lookup only when trying again may help: 429, 5xx, timeouts, refused connections, DB contention."""
    from leadflow.crm.store import is_transient_db_error

    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return False
    return bool(getattr(error, "retryable", False)) or is_transient_db_error(error)


@task(name="Call Enrichment API", task_run_name="call-enrichment-{provider_name}-{size}", **PRIVATE)
def call_enrichment_api(domains: list[str], provider_name: str, size: int) -> dict[str, dict[str, Any] | None]:
    """Look up one batch of company domains with the configured provider (retried by Prefect when worth it)."""
    chosen = steps.provider()
    if chosen is None:
        return {}
    return chosen.fetch(domains)


def _lookup(chosen: en.Provider, domains: list[str], results: en.DomainResults) -> None:
    """Answer these domains into the run's cache: batches in parallel, failures kept as failed, never raised."""
    settings = get_settings()
    attempts = settings.enrichment_max_attempts if chosen.retryable else 1
    call = call_enrichment_api.with_options(
        retries=attempts - 1,
        retry_delay_seconds=en.jittered_backoff(settings.enrichment_backoff_seconds, attempts, jitter=0),
        retry_jitter_factor=0.5,
        retry_condition_fn=_retry_enrichment,
    )
    pending = list(chosen.batches(domains))
    # Batches go out in waves as wide as the concurrency limit, so an outage is noticed before every batch queues.
    width = settings.enrichment_max_concurrency if chosen.retryable else 1
    logger = get_run_logger()
    while pending:
        if results.outage:
            skipped = [d for batch in pending for d in batch]
            results.add_failed(skipped, called=False)
            logger.warning("Enrichment provider looks down: %d domains left unenriched in this run", len(skipped))
            return
        wave, pending = pending[:width], pending[width:]
        futures = [call.submit(batch, chosen.name, len(batch)) for batch in wave]
        for batch, future in zip(wave, futures, strict=True):
            future.wait()
            state = future.state
            if state.is_completed():
                results.add(future.result())
            else:
                error = state.result(raise_on_failure=False)
                logger.warning("Enrichment of %d domains failed: %s", len(batch), str(error)[:200])
                results.add_failed(batch)


@task(name="Retrieve Lead Details", **DB_TASK)
def retrieve_lead_details(lead_ids: list[int], results: en.DomainResults, now: datetime,
                          defer_write: bool = False) -> steps.DetailsOutput:
    """Fill the leads' empty firmographic fields by company domain; a provider outage only lowers the hit rate.

    With `defer_write` (intake) the write is Calculate Lead Score's, with the scores (`DetailsOutput.pending`).
    """
    done = steps.retrieve_lead_details(store(), lead_ids, results, now, steps.provider(), lookup=_lookup, mark=True,
                                       defer_write=defer_write)
    get_run_logger().info(
        "Details of %d leads: %s; fields filled %s", len(done.leads), dict(done.result.by_status),
        dict(done.result.fields_filled),
    )
    return done
