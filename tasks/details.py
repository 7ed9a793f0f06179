"""Retrieve Lead Details and Calculate Lead Score: tasks over a batch of lead ids, thin shells over leadflow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from data_checks.scoring import guard_scores
from leadflow.config.policy import load_policy
from leadflow.config.settings import get_settings
from leadflow.domain.scoring import ScoringPolicy
from leadflow.io import enrichment as en
from leadflow.steps import intake as leads
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, store


@lru_cache(maxsize=4)
def scoring_policy(name_or_path: str | None = None) -> ScoringPolicy:
    """The scoring policy the settings name (validated once per process)."""
    return load_policy(ScoringPolicy, name_or_path or get_settings().scoring_policy)


@lru_cache(maxsize=1)
def _provider(settings_key: str) -> en.Provider | None:
    # One provider per process and settings, so its rate limiter and connection pool are shared by every thread.
    return en.provider_from_settings(get_settings(), store())


def provider() -> en.Provider | None:
    """The enrichment provider chosen by the settings."""
    settings = get_settings()
    return _provider(settings.model_dump_json(include={"database_url", "enrichment_provider"}) + str(id(settings)))


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
    chosen = provider()
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


@dataclass
class DetailsOutput:
    """Retrieve Lead Details' counts, and the batch's leads as now stored (input for scoring)."""

    result: leads.DetailsResult
    leads: pd.DataFrame
    seconds: float


@task(name="Retrieve Lead Details", **DB_TASK)
def retrieve_lead_details(lead_ids: list[int], results: en.DomainResults, now: datetime) -> DetailsOutput:
    """Fill the leads' empty firmographic fields by company domain; a provider outage only lowers the hit rate."""
    started = time.perf_counter()
    crm = store()
    plan = leads.plan_lead_details(crm, lead_ids, results)
    chosen = provider()
    if chosen is not None and plan.domains:
        _lookup(chosen, plan.domains, results)
    outcome, current = leads.write_lead_details(crm, plan, results, chosen.name if chosen else None, now)
    get_run_logger().info(
        "Details of %d leads: %s; fields filled %s", len(plan.leads), dict(outcome.by_status),
        dict(outcome.fields_filled),
    )
    return DetailsOutput(outcome, current, time.perf_counter() - started)


@task(name="Calculate Lead Score", **DB_TASK)
def calculate_lead_score(
    frame: pd.DataFrame, as_of: datetime, batch_id: str | None, policy: str | None = None
) -> leads.ScoreResult:
    """Score fit and intent under the versioned policy, store changed scores and log every re-score."""
    chosen = scoring_policy(policy)
    result = leads.calculate_lead_scores(
        store(), frame, chosen, as_of=as_of, batch_id=batch_id, flow_run_id=current_flow_run_id(),
        guard=guard_scores,
    )
    get_run_logger().info(
        "Scored %d leads with policy %s (%d changed): tiers %s", result.scored, chosen.version, result.changed,
        dict(sorted(result.by_tier.items())),
    )
    return result


@task(name="Load Leads to Score", **DB_TASK)
def load_leads_to_score(lead_ids: list[int]) -> pd.DataFrame:
    """The stored fields scoring reads, with every message each lead sent."""
    return leads.load_leads(store(), lead_ids, [*leads.SCORE_INPUTS, *leads.SCORE_COLUMNS])
