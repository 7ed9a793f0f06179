"""Retrieve Lead Details: firmographics by company domain from a reference table or an HTTP API, filling only gaps."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pandas as pd

from leadflow.config.settings import Settings, secret_value
from leadflow.domain import normalize as nz

# Firmographic field -> the lead column it may fill. What the person typed always wins.
FILLS: dict[str, str] = {
    "legal_name": "company_legal_name",
    "industry": "industry",
    "employee_count": "employee_count",
    "revenue_band": "revenue_band",
    "country": "country",
}
FIRMOGRAPHIC_FIELDS: tuple[str, ...] = tuple(FILLS)
ENRICHED, NOT_FOUND, FAILED, FREE_MAIL, NO_DOMAIN, DISABLED = (
    "enriched", "not_found", "failed", "free_mail", "no_domain", "disabled",
)
STATUSES: tuple[str, ...] = (ENRICHED, NOT_FOUND, FAILED, FREE_MAIL, NO_DOMAIN, DISABLED)
# Key in `enrichment_sources` that remembers which domain was looked up, so a changed domain is looked up again.
DOMAIN_KEY = "_domain"
# Retry-After values above this are not waited for inside one attempt; the next retry's backoff takes over.
MAX_RETRY_AFTER_SECONDS = 60.0
OUTAGE_AFTER = 3
DETAIL_OUTPUT = ("id", "enrichment_status", "enrichment_sources", "enriched_at", "company", *FILLS.values())


class EnrichmentError(RuntimeError):
    """A lookup that failed; `retryable` says whether trying again may help (429, 5xx, timeouts, refused)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    """Where firmographics come from: `batches` splits the domains into calls, `fetch` makes one call."""

    name: str
    retryable: bool

    def batches(self, domains: Sequence[str]) -> list[list[str]]: ...

    def fetch(self, domains: Sequence[str]) -> dict[str, dict[str, Any] | None]: ...


@lru_cache(maxsize=4096)
def _country_code(text: str) -> str | None:
    """ISO-2 code of a country as a provider spells it (cached: providers repeat a handful of countries)."""
    code = nz.normalize_country(pd.Series([text], dtype="string")).iloc[0]
    return None if pd.isna(code) else str(code)


def _firmographic(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Keep only known, non-empty firmographic fields, with employee_count as an int and country as ISO-2."""
    if not isinstance(record, dict):
        return None
    out: dict[str, Any] = {}
    for name in FIRMOGRAPHIC_FIELDS:
        value = record.get(name)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if name == "employee_count":
            try:
                count = int(float(value))
            except (TypeError, ValueError):
                continue
            if 0 < count < 10_000_000:
                out[name] = count
            continue
        text = str(value).strip()
        if not text:
            continue
        if name == "country":
            code = _country_code(text)
            if code is None:
                continue
            text = code
        out[name] = text[:300] if name == "legal_name" else text[:100]
    return out or None


# --- providers ----------------------------------------------------------------------------------------------


class ReferenceTableProvider:
    """Firmographics from the `firmographics` table that `leadflow firmographics load` fills."""

    name = "reference"
    retryable = False

    def __init__(self, rows_for: Callable[[Sequence[str]], pd.DataFrame]) -> None:
        # The reader of the reference table (crm.reference.firmographics_for over a store): io runs no SQL itself.
        self.rows_for = rows_for

    def batches(self, domains: Sequence[str]) -> list[list[str]]:
        """One call: the store splits long IN lists itself."""
        return [list(domains)] if domains else []

    def fetch(self, domains: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Each domain's row of the reference table, or None when it has none."""
        found = self.rows_for(domains)
        rows = {row["domain"]: _firmographic(row) for row in found.to_dict("records")}
        return {domain: rows.get(domain) for domain in domains}


class RateLimiter:
    """At most `rate` acquisitions per second across threads (a token bucket of depth one)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until the next call may start."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpProvider:
    """Firmographics from an enrichment API: POST {"domains": [...]} -> {"results": {domain: {...} | null}}."""

    name = "http"
    retryable = True

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        if not settings.enrichment_url:
            raise ValueError("LEADFLOW_ENRICHMENT_URL must be set for the http enrichment provider")
        self.url = settings.enrichment_url
        self.batch_size = settings.enrichment_batch_size
        headers = {"Accept": "application/json", "User-Agent": "leadflow-enrichment"}
        token = secret_value(settings.enrichment_api_key)  # a prefect-secret:// reference is read here
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = client or httpx.Client(timeout=settings.enrichment_timeout_seconds, headers=headers)
        self.limiter = RateLimiter(settings.enrichment_rate_per_second)
        self.slots = threading.BoundedSemaphore(settings.enrichment_max_concurrency)

    def batches(self, domains: Sequence[str]) -> list[list[str]]:
        """Calls of at most `enrichment_batch_size` domains each."""
        return [list(domains[i : i + self.batch_size]) for i in range(0, len(domains), self.batch_size)]

    def fetch(self, domains: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """One API call; raises EnrichmentError (retryable for 429, 5xx, timeouts and connection errors)."""
        with self.slots:
            self.limiter.acquire()
            try:
                response = self.client.post(self.url, json={"domains": list(domains)})
            except httpx.TimeoutException as exc:
                raise EnrichmentError(f"enrichment API timed out: {type(exc).__name__}", retryable=True) from exc
            except httpx.TransportError as exc:
                raise EnrichmentError(f"enrichment API unreachable: {type(exc).__name__}", retryable=True) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                # Honour the server: the next attempt must not start before Retry-After has passed.
                time.sleep(min(retry_after, MAX_RETRY_AFTER_SECONDS))
            raise EnrichmentError(f"enrichment API answered {status}", retryable=True, retry_after=retry_after)
        if status >= 400:
            raise EnrichmentError(f"enrichment API refused the call with {status}", retryable=False)
        try:
            results = response.json()["results"]
            if not isinstance(results, dict):
                raise TypeError("results is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise EnrichmentError(f"enrichment API sent an unreadable answer: {exc}", retryable=True) from exc
        return {domain: _firmographic(results.get(domain)) for domain in domains}


def provider_from_settings(settings: Settings,
                           reference_rows: Callable[[Sequence[str]], pd.DataFrame]) -> Provider | None:
    """The provider the settings choose, or None when enrichment is switched off.

    `reference_rows` reads the reference table by domain, for the default provider.
    """
    if settings.enrichment_provider == "none":
        return None
    if settings.enrichment_provider == "http":
        return HttpProvider(settings)
    return ReferenceTableProvider(reference_rows)


# --- planning and applying ----------------------------------------------------------------------------------


def _sources(values: pd.Series) -> list[dict[str, Any]]:
    out = []
    for value in values.tolist():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        out.append(dict(value) if isinstance(value, dict) else {})
    return out


def lookup_domains(leads: pd.DataFrame) -> pd.Series:
    """The company domain to look up for each lead: its company domain unless that is a free-mail domain."""
    domain = leads["company_domain"].astype("string").str.strip().str.lower()
    return domain.mask(nz.is_free_mail(domain.fillna("")).to_numpy())


def needs_lookup(leads: pd.DataFrame, domains: pd.Series) -> np.ndarray:
    """Leads to look up: never tried, failed last time, or whose domain changed since the last lookup."""
    status = leads["enrichment_status"].astype("string")
    previous = pd.Series([s.get(DOMAIN_KEY) for s in _sources(leads["enrichment_sources"])], index=leads.index,
                         dtype="string")
    changed = (previous.fillna("") != domains.fillna("")).to_numpy(dtype=bool)
    retry = status.isna().to_numpy(dtype=bool) | status.eq(FAILED).fillna(False).to_numpy(dtype=bool)
    return retry | changed


@dataclass
class DomainResults:
    """Lookups of one run by domain: found records, misses and failures (a run-level cache)."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    calls: int = 0
    failed_calls: int = 0
    # Calls that failed for good one after another; past OUTAGE_AFTER the run stops calling (a provider outage).
    failures_in_a_row: int = 0

    @property
    def outage(self) -> bool:
        """Whether the provider looks down for the rest of this run."""
        return self.failures_in_a_row >= OUTAGE_AFTER

    def known(self) -> set[str]:
        """Domains already answered (found, missing or failed) in this run."""
        return set(self.found) | self.missing | self.failed

    def add(self, answers: dict[str, dict[str, Any] | None]) -> None:
        """Fold the answers of one call in."""
        self.calls += 1
        self.failures_in_a_row = 0
        for domain, record in answers.items():
            if record:
                self.found[domain] = record
            else:
                self.missing.add(domain)

    def add_failed(self, domains: Iterable[str], *, called: bool = True) -> None:
        """Remember domains whose call failed for good (or was skipped during an outage) in this run."""
        if called:
            self.calls += 1
            self.failed_calls += 1
            self.failures_in_a_row += 1
        self.failed.update(domains)


def _same(recorded: Any, current: Any) -> bool:
    """Whether a lead's current value is still the one a provider filled in (1200 and 1200.0 are the same)."""
    if current is None or (isinstance(current, float) and np.isnan(current)) or current is pd.NA:
        return False
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        try:
            return float(recorded) == float(current)
        except (TypeError, ValueError):
            return False
    return str(recorded) == str(current)


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and np.isnan(value)) and bool(
        str(value).strip())


def apply_details(leads: pd.DataFrame, results: DomainResults, provider: str | None, now: datetime) -> pd.DataFrame:
    """Enrichment status, filled gaps and their sources; returns only the rows that change, with those columns.

    `enrichment_sources` names the provider and value of every field a provider filled, plus the domain looked
    up; a field not named there was typed by the person (or is empty). A provider value that a later submission
    replaced is dropped from the sources, so they stay true however the submissions were batched.
    """
    domains = lookup_domains(leads)
    todo = needs_lookup(leads, domains)
    free = nz.is_free_mail(leads["email_domain"].astype("string").fillna("")).to_numpy(dtype=bool)
    names = [*FIRMOGRAPHIC_FIELDS, "company"]
    lead_column = {**FILLS, "company": "company"}
    values = {name: leads[lead_column[name]].astype(object).where(leads[lead_column[name]].notna(), None).tolist()
              for name in names}
    old_sources = _sources(leads["enrichment_sources"])
    old_status = leads["enrichment_status"].astype(object).where(leads["enrichment_status"].notna(), None).tolist()
    status: list[str | None] = []
    sources_out: list[str] = []
    keep = np.zeros(len(leads), dtype=bool)
    # Leads with no sources yet (every new lead) get theirs from the domain and the fields filled alone: encode
    # each such combination once (json.dumps per lead was a fifth of this step).
    encoded: dict[tuple[str | None, tuple[str, ...]], str] = {}
    for i, domain in enumerate(domains.astype(object).where(domains.notna(), None).tolist()):
        old = old_sources[i]
        sources = {k: v for k, v in old.items()
                   if k == DOMAIN_KEY or (isinstance(v, dict) and _same(v.get("value"), values[k][i] if k in values
                                                                         else None))}
        if not todo[i]:
            status.append(old_status[i])
            keep[i] = sources != old
            sources_out.append(json.dumps(sources, sort_keys=True))
            continue
        keep[i] = True
        if provider is None:
            status.append(DISABLED)
        elif domain is None:
            status.append(FREE_MAIL if free[i] else NO_DOMAIN)
        elif domain in results.found:
            status.append(ENRICHED)
        elif domain in results.failed:
            status.append(FAILED)
        else:
            status.append(NOT_FOUND)
        record = results.found.get(domain) if status[-1] == ENRICHED else None
        filled: list[str] = []
        if record:
            for name in names:
                value = record.get("legal_name" if name == "company" else name)
                if value is not None and not _present(values[name][i]):
                    values[name][i] = value
                    sources[name] = {"from": provider, "value": value}
                    filled.append(name)
        if domain is None:
            sources.pop(DOMAIN_KEY, None)
        else:
            sources[DOMAIN_KEY] = domain
        if old:
            sources_out.append(json.dumps(sources, sort_keys=True))
            continue
        key = (domain, tuple(filled))
        if key not in encoded:
            encoded[key] = json.dumps(sources, sort_keys=True)
        sources_out.append(encoded[key])
    part = leads.loc[keep, ["id"]].copy()
    part["enrichment_status"] = pd.array([s for s, k in zip(status, keep, strict=True) if k], dtype="string")
    part["enrichment_sources"] = [s for s, k in zip(sources_out, keep, strict=True) if k]
    if "enriched_at" in leads.columns:
        earlier = pd.to_datetime(leads.loc[keep, "enriched_at"], utc=True).astype("datetime64[us, UTC]")
    else:
        earlier = pd.Series(pd.NaT, index=part.index, dtype="datetime64[us, UTC]")
    part["enriched_at"] = earlier.mask(todo[keep], pd.Timestamp(now).tz_convert("UTC"))
    for name in names:
        column = lead_column[name]
        dtype = "Int64" if name == "employee_count" else "string"
        part[column] = pd.array([v for v, k in zip(values[name], keep, strict=True) if k], dtype=dtype)
    return part.loc[:, list(DETAIL_OUTPUT)]


def _same_kind(stored: pd.Series, changed: pd.Series) -> Any:
    """The dtype both columns can share without losing a value, or None: equal dtypes, texts, or UTC times."""
    if stored.dtype == changed.dtype:
        return stored.dtype
    if isinstance(stored.dtype, pd.StringDtype) and isinstance(changed.dtype, pd.StringDtype):
        # The stored column's flavour of missing value (NaN for "str", NA for "string") is what readers expect.
        return stored.dtype
    if isinstance(stored.dtype, pd.DatetimeTZDtype) and isinstance(changed.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeTZDtype(unit="us", tz="UTC")
    return None


def merge_details(leads: pd.DataFrame, changed: pd.DataFrame) -> pd.DataFrame:
    """The leads with the rows `apply_details` changed swapped in (by id), whatever dtypes the database gave."""
    if changed.empty:
        return leads
    out = leads.set_index("id")
    update = changed.set_index("id")
    for column in update.columns:
        kind = _same_kind(out[column], update[column]) if column in out.columns else None
        if kind is not None:
            # No detour through objects, which costs a Python object (a Timestamp, say) per lead.
            values = out[column].astype(kind)
            values.loc[update.index] = update[column].astype(kind)
        else:
            # Object columns take any value: a float64 column of NULLs and counts must accept an Int64 answer.
            values = out[column].astype(object) if column in out.columns else pd.Series(None, index=out.index,
                                                                                         dtype=object)
            values.loc[update.index] = update[column].astype(object).where(update[column].notna(), None)
        out[column] = values
    return out.reset_index()


def jittered_backoff(base: float, attempts: int, jitter: float = 0.5, seed: int | None = None) -> list[float]:
    """Exponential retry delays (base, 2*base, 4*base, ...) each stretched by up to `jitter` at random."""
    rng = random.Random(seed)
    return [round(base * 2**i * (1 + rng.uniform(0, jitter)), 3) for i in range(max(0, attempts - 1))]


def read_firmographics(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A firmographics CSV as clean rows by domain, and the rejected rows with a reason each."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    aliases = {"company_domain": "domain", "website": "domain", "name": "legal_name", "company": "legal_name",
               "employees": "employee_count", "revenue": "revenue_band"}
    frame = frame.rename(columns={k: v for k, v in aliases.items() if k in frame.columns and v not in frame.columns})
    if "domain" not in frame.columns:
        raise ValueError(f"{path}: no domain column (found {', '.join(frame.columns) or 'no columns'})")
    domain = nz.website_to_domain(frame["domain"].astype("string"))
    rows = []
    for i, (raw, clean) in enumerate(zip(frame.to_dict("records"), domain.tolist(), strict=True)):
        record = _firmographic(raw)
        rows.append({"_row": i + 2, "domain": None if pd.isna(clean) else clean, **(record or {})})
    out = pd.DataFrame(rows, columns=["_row", "domain", *FIRMOGRAPHIC_FIELDS])
    reason = np.select(
        [out["domain"].isna().to_numpy(), out[list(FIRMOGRAPHIC_FIELDS)].isna().all(axis=1).to_numpy()],
        ["invalid_domain", "no_firmographics"], "",
    )
    rejected = out.loc[reason != "", ["_row", "domain"]].assign(reason=reason[reason != ""])
    good = out.loc[reason == ""]
    duplicate = good["domain"].duplicated(keep="last")
    rejected = pd.concat([rejected, good.loc[duplicate, ["_row", "domain"]].assign(reason="duplicate_domain")])
    good = good.loc[~duplicate].drop(columns="_row").reset_index(drop=True)
    good["employee_count"] = good["employee_count"].astype("Int64")
    return good, rejected.sort_values("_row").reset_index(drop=True)


SAMPLE_FIRMOGRAPHICS = Path(__file__).parents[1] / "data" / "firmographics.csv"
