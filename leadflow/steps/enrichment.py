"""Retrieve Lead Details: fill a batch's empty firmographic fields by company domain, and load reference data."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial

import pandas as pd

from leadflow.config.settings import get_settings
from leadflow.crm import progress, reference
from leadflow.crm.store import Store, get_store
from leadflow.domain.progress import LeadStep
from leadflow.io import enrichment as en
from leadflow.steps.scoring import SCORE_COLUMNS, SCORE_INPUTS, PendingWrite, load_leads

DETAIL_COLUMNS = ("email", "email_domain", "company", "company_domain", "enrichment_status", "enrichment_sources",
                  "enriched_at", *en.FILLS.values())
# How a step answers domains into the run's cache: (provider, domains, results) -> None.
Lookup = Callable[[en.Provider, list[str], en.DomainResults], None]


@lru_cache(maxsize=1)
def _provider(settings_key: str) -> en.Provider | None:
    # One provider per process and settings, so its rate limiter and connection pool are shared by every thread.
    return en.provider_from_settings(get_settings(), partial(reference.firmographics_for, get_store()))


def provider() -> en.Provider | None:
    """The enrichment provider chosen by the settings."""
    settings = get_settings()
    return _provider(settings.model_dump_json(include={"database_url", "enrichment_provider"}) + str(id(settings)))


@dataclass
class DetailsPlan:
    """The leads of a batch with their current details, and the domains a provider still has to answer."""

    leads: pd.DataFrame
    domains: list[str]


@dataclass
class DetailsResult:
    """What Retrieve Lead Details did: leads (re)considered by enrichment status, and fields filled."""

    by_status: Counter = field(default_factory=Counter)
    fields_filled: Counter = field(default_factory=Counter)


def plan_lead_details(store: Store, lead_ids: list[int], results: en.DomainResults) -> DetailsPlan:
    """Load the leads' details and list the domains to look up (not yet answered in this run)."""
    frame = load_leads(store, lead_ids, [*DETAIL_COLUMNS, *SCORE_INPUTS, *SCORE_COLUMNS])
    domains = en.lookup_domains(frame)
    todo = en.needs_lookup(frame, domains)
    known = results.known()
    wanted = sorted({d for d in domains[todo].dropna().tolist() if d not in known})
    return DetailsPlan(leads=frame, domains=wanted)


def write_lead_details(
    store: Store, plan: DetailsPlan, results: en.DomainResults, provider: str | None, now: datetime,
    mark: bool = False, defer: bool = False,
) -> tuple[DetailsResult, pd.DataFrame, PendingWrite | None]:
    """Fill empty fields from the lookups, record status and sources; returns counts and the leads as now stored.

    With `mark` the batch's leads are marked detailed in the same transaction (leadflow/domain/progress.py). With
    `defer` nothing is written: the write and the marks come back as a PendingWrite for Calculate Lead Score's
    write, which moves the leads on from their spam check's mark (SPAM_CHECKED) or a killed run's DETAILED.
    """
    changed = en.apply_details(plan.leads, results, provider, now)
    outcome = DetailsResult(by_status=Counter(changed["enrichment_status"].dropna().tolist()))
    ids = plan.leads["id"].astype("int64").tolist()
    current = plan.leads
    if not changed.empty:
        before = plan.leads.set_index("id").loc[changed["id"]]
        for column in [*en.FILLS.values(), "company"]:
            filled = before[column].isna().to_numpy() & changed[column].notna().to_numpy()
            if filled.any():
                outcome.fields_filled[column] = int(filled.sum())
        current = en.merge_details(plan.leads, changed)
    if defer:
        return outcome, current, PendingWrite(changed=changed, since=dict.fromkeys(ids, int(LeadStep.SPAM_CHECKED)))
    if changed.empty and not (mark and ids):
        return outcome, current, None
    with store.begin() as conn:
        if mark:
            progress.update_and_mark(store, conn, changed, ids, LeadStep.DETAILED, now)
        else:
            store.update_leads(conn, changed)
    return outcome, current, None


@dataclass
class DetailsOutput:
    """Retrieve Lead Details' counts, and the batch's leads as now stored (input for scoring).

    `pending`: the details' write and marks, when the step left them to Calculate Lead Score's write.
    """

    result: DetailsResult
    leads: pd.DataFrame
    seconds: float
    pending: PendingWrite | None = None


def lookup_in_turn(chosen: en.Provider, domains: list[str], results: en.DomainResults) -> None:
    """Answer these domains into the run's cache one batch after another, without retries (no Prefect)."""
    for batch in chosen.batches(domains):
        try:
            results.add(chosen.fetch(batch))
        except en.EnrichmentError:
            results.add_failed(batch)


def retrieve_lead_details(store: Store, lead_ids: list[int], results: en.DomainResults, now: datetime,
                          chosen: en.Provider | None, lookup: Lookup = lookup_in_turn,
                          mark: bool = False, defer_write: bool = False) -> DetailsOutput:
    """Fill the leads' empty firmographic fields by company domain; a provider outage only lowers the hit rate.

    `lookup` answers the domains the run has not asked yet (the task passes parallel, retried Prefect calls);
    `mark` marks the leads detailed with the writes (intake). With `defer_write` (intake) the write and marks are
    handed to Calculate Lead Score (`DetailsOutput.pending`), which writes them with the scores: one row version per
    lead instead of two on PostgreSQL; a kill in between leaves the leads undetailed, and the re-run looks them up
    again.
    """
    started = time.perf_counter()
    plan = plan_lead_details(store, lead_ids, results)
    if chosen is not None and plan.domains:
        lookup(chosen, plan.domains, results)
    outcome, current, pending = write_lead_details(store, plan, results, chosen.name if chosen else None, now,
                                                   mark=mark, defer=defer_write)
    return DetailsOutput(outcome, current, time.perf_counter() - started, pending)


@dataclass
class FirmographicsLoad:
    """What loading a firmographics file did: rows written and rows rejected with a reason each."""

    written: int
    rejected: pd.DataFrame


def load_firmographics(store: Store, path: str, now: datetime) -> FirmographicsLoad:
    """(Re)load reference firmographics from a CSV: upsert by domain, report rejected rows."""
    good, rejected = en.read_firmographics(path)
    return FirmographicsLoad(reference.upsert_firmographics(store, good, now), rejected)
