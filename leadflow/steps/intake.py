"""Lead intake's steps and its one sequence: check, normalize, quarantine, create lead entries, update sources.

Each step is a plain function named like its task in tasks/intake.py. `intake_chunks` runs them chunk by chunk
(with Check Spam, Retrieve Lead Details and Calculate Lead Score after them) for every caller: the lead-intake
flow passes its Prefect tasks, benchmarks and scripts pass `plain_steps(store)`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from data_checks.intake import check_intake_columns
from data_checks.runner import CheckOutcome, gx_context, raise_for_failures
from leadflow.config.settings import email_hash_key, get_settings
from leadflow.crm import people, progress, submissions
from leadflow.crm.store import Store, is_transient_db_error, refused_value_code
from leadflow.domain import submissions as intake
from leadflow.domain.channels import unknown_channels
from leadflow.domain.contract import (
    CANONICAL_COLUMNS,
    SUBMITTED_AT_OPTION_FIELD,
    ReasonCode,
    load_column_map,
    missing_columns_message,
    resolve_columns,
    resolve_submitted_at,
)
from leadflow.domain.crm_state import STATE_COLUMNS as CRM_STATE_COLUMNS
from leadflow.domain.inbox import INBOX_ORIGIN
from leadflow.domain.normalize import (
    DATE_ORDERS,
    FieldOptions,
    FieldOptionsError,
    date_evidence,
    normalize_country,
)
from leadflow.domain.privacy import erased_row_payload, keyed_hashes
from leadflow.domain.profiles import GENERIC, choose_profile, coalesce, with_fallbacks
from leadflow.domain.progress import LeadStep
from leadflow.domain.submissions import (
    EMAIL_COLUMN,
    PAYLOAD_COLUMN,
    ROW_COLUMN,
    SOURCE_COLUMN,
    SOURCE_FILLED_COLUMN,
    aggregate_leads,
    aggregate_touches,
    attribution_changes,
    field_warnings,
    in_set,
    split_duplicate_keys,
)
from leadflow.domain.summary import IntakeSummary
from leadflow.io.enrichment import DomainResults
from leadflow.io.sources import LeadFile, input_size, inspect_lead_file, scan_date_evidence
from leadflow.steps.chunk_worker import COLUMNS_FAILED, ChunkWorker, prepare_and_check, prepare_chunk
from leadflow.steps.crm_state import CrmStateResult, apply_crm_state
from leadflow.steps.enrichment import DetailsOutput
from leadflow.steps.faults import with_crash_points
from leadflow.steps.scoring import PendingWrite, ScoreResult

# A chunk that stored this many submissions changed the tables enough to refresh PostgreSQL's statistics.
BULK_LOAD_ROWS = 5_000
STATISTICS_TABLES = ("leads", "lead_submissions", "lead_events", "accounts", "crm_tasks", "outbox")
BROKEN_BATCH_HINT = "most rows are broken: check the column map and the file format"


# --- Inspect Lead File -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntakePlan:
    """How to read one input: the file, which header feeds which column, the default source and the export profile."""

    lead_file: LeadFile
    mapping: dict[str, str]
    default_source: str | None
    # False when the required-columns suite was left to the first chunk's check (in the check worker).
    columns_checked: bool = True
    # The export profile recognised from the headers (or forced by `--profile`); `generic` when none fits.
    profile: str = GENERIC
    # ISO time that `--submitted-at` gives every row (the file's own time column is then left unmapped).
    submitted_at: str | None = None
    # Coalesced fields the profile adds to each chunk (a column whose header may be empty, and its fallbacks).
    fallbacks: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # The default phone region and the date order (settled on the first chunk by `settle_date_order`).
    fields: FieldOptions = field(default_factory=FieldOptions)

    @property
    def columns(self) -> list[str]:
        """The canonical columns this input provides (a default source provides `source`)."""
        return sorted(set(self.mapping.values()) | ({"source"} if self.default_source else set()))

    def missing_hint(self) -> str:
        """What to tell the user when required columns are missing: headers, near misses and the fixing option."""
        return missing_columns_message(self.lead_file.headers, self.mapping, self.default_source)

    def stamp(self, raw: pd.DataFrame) -> pd.DataFrame:
        """A raw chunk with the profile's coalesced fields and the `--submitted-at` time (kept in its raw payload)."""
        raw = coalesce(raw, self.fallbacks)
        if self.submitted_at is None or SUBMITTED_AT_OPTION_FIELD in raw.columns:
            return raw
        return raw.assign(**{SUBMITTED_AT_OPTION_FIELD: pd.Series(self.submitted_at, index=raw.index,
                                                                  dtype="string")})

    def describe(self) -> str:
        """One line for logs: format, profile and the mapped columns."""
        mapped = ", ".join(f"{h}->{c}" for h, c in self.mapping.items() if h != c)
        return (f"{self.lead_file.format} with {len(self.lead_file.headers)} columns, profile {self.profile}; "
                f"renamed: {mapped or 'none'}")


def field_options(default_country: str | None = None, date_order: str | None = None) -> FieldOptions:
    """The run's default phone region and fallback date order: as given, else LEADFLOW_DEFAULT_COUNTRY and
    LEADFLOW_DATE_ORDER; a value that names no country or order raises FieldOptionsError (one line)."""
    settings = get_settings()
    country = (default_country or settings.default_country or "").strip()
    code = None
    if country:
        code = normalize_country(pd.Series([country], dtype="string")).iloc[0]
        if pd.isna(code):
            raise FieldOptionsError(f"unknown default country {country!r}: give an ISO code such as US or DE")
    order = (date_order or settings.date_order).strip().lower()
    if order not in DATE_ORDERS:
        raise FieldOptionsError(f"unknown date order {order!r}: expected mdy (07/05/19 is 5 July) or dmy (7 May)")
    return FieldOptions(default_country=code, date_order=order)


def plan_intake(path: str, column_map: dict[str, str] | str | None, source_name: str | None,
                check_columns: bool = True, fields: FieldOptions | None = None, *, profile: str | None = None,
                submitted_at: str | None = None) -> IntakePlan:
    """Inspect an input and resolve its columns; raises when it cannot be read or lacks required columns.

    The export profile is the one named by `profile`, else the one whose distinctive headers the file has; its own
    header spellings come before the generic aliases and its default channel after `source_name`. `submitted_at`
    (now or an ISO time) dates every row instead of a time column.
    `check_columns=False` leaves the required-columns suite to the first chunk's check (see `IntakePlan`), unless
    a required column is plainly missing: then the suite runs here, so that such a file still fails before any read.
    `fields` defaults to `field_options()` (the settings).
    """
    lead_file = inspect_lead_file(path)
    explicit = load_column_map(column_map) if isinstance(column_map, str) else column_map
    match = choose_profile(lead_file.headers, profile)
    mapping = resolve_columns(lead_file.headers, explicit, match.aliases, match.ignored)
    mapping, fallbacks = with_fallbacks(mapping, lead_file.headers, match.fallbacks)
    given = resolve_submitted_at(submitted_at)
    if given is not None:
        mapping = {h: c for h, c in mapping.items() if c != "submitted_at"}
        mapping[SUBMITTED_AT_OPTION_FIELD] = "submitted_at"
    default_source = source_name or (match.profile.default_source if match.profile else None)
    plan = IntakePlan(lead_file=lead_file, mapping=mapping, default_source=default_source, profile=match.name,
                      submitted_at=given, fallbacks=fallbacks, fields=fields or field_options())
    hint = plan.missing_hint()
    if not check_columns and not hint:
        return dataclasses.replace(plan, columns_checked=False)
    raise_for_failures(check_intake_columns(plan.columns), hint=hint)
    return plan


def inbox_plan(source_name: str | None, fields: FieldOptions | None = None) -> IntakePlan:
    """The intake plan of inbox chunks: the reader already renamed known fields to canonical columns."""
    lead_file = LeadFile(url=INBOX_ORIGIN, format="inbox", headers=list(CANONICAL_COLUMNS))
    return IntakePlan(lead_file=lead_file, mapping={c: c for c in CANONICAL_COLUMNS}, default_source=source_name,
                      fields=fields or field_options())


class _PutBack(Iterator[pd.DataFrame]):
    """Chunks already taken from an input, then the input itself: asked anew on every call, so that an input which
    grows after its end (the inbox, read once more at the end of a run) is still read."""

    def __init__(self, taken: list[pd.DataFrame], rest: Iterator[pd.DataFrame]) -> None:
        self._taken, self._rest = taken, rest

    def __next__(self) -> pd.DataFrame:
        return self._taken.pop(0) if self._taken else next(self._rest)


def settle_date_order(chunks: Iterator[pd.DataFrame], plan: IntakePlan) -> tuple[Iterator[pd.DataFrame], IntakePlan]:
    """Decide the input's day/month order for its whole date column before any chunk is parsed; never per row.

    The first chunk's values usually decide it: a first part over 12 (13/05/19) makes the column day-first, a second
    part over 12 month-first. When they leave it open and the file has a second chunk, the rest of the column is
    read once more to look (an inbox run looks at its first chunk only). A column that the whole input leaves open
    follows the plan's fallback (--date-order, LEADFLOW_DATE_ORDER); one with both kinds of value ("conflict") too,
    and its values that do not fit are invalid dates. Later chunks are parsed in the same order. Returns the same
    chunks (those looked at are put back) and the plan with `fields.date_order` and `fields.date_basis` set.
    """
    header = next((h for h, c in plan.mapping.items() if c == "submitted_at"), None)
    first = next(chunks, None)
    if first is None:
        return _PutBack([], chunks), plan
    looked = [first]
    if header is None or header not in first.columns or plan.fields.date_order is None:
        return _PutBack(looked, chunks), plan
    evidence = date_evidence(first[header])
    if not evidence.settled and plan.lead_file.format != "inbox":
        second = next(chunks, None)
        if second is not None:
            looked.append(second)
            evidence = scan_date_evidence(plan.lead_file, header)
    order, basis = evidence.decide(plan.fields.date_order)
    fields = dataclasses.replace(plan.fields, date_order=order, date_basis=basis)
    return _PutBack(looked, chunks), dataclasses.replace(plan, fields=fields)


# --- Check Lead Batch and Normalize Leads ----------------------------------------------------------------------


@dataclass
class CheckedBatch:
    """A prepared chunk without its blank rows, and what the checks said about it.

    When a chunk worker checked it, `prepared` holds only the rejected rows and `token` names the accepted
    rows the worker kept for Normalize Leads.
    """

    prepared: pd.DataFrame
    outcome: CheckOutcome
    blank_rows: int
    seconds: float
    rows: int = 0
    token: str | None = None
    # Set when the chunk was normalized while the worker checked it: its accepted rows, already clean.
    subs: pd.DataFrame | None = None
    normalize_seconds: float = 0.0


@dataclass
class NormalizedBatch:
    """The accepted rows of a chunk as clean submissions, one per row."""

    subs: pd.DataFrame
    seconds: float


def _raise_check_failure(outcome: CheckOutcome, failed: str, plan: IntakePlan) -> None:
    hint = plan.missing_hint() if failed == COLUMNS_FAILED else BROKEN_BATCH_HINT
    raise_for_failures(outcome, hint=hint)


def _check_there_normalize_here(raw: pd.DataFrame, plan: IntakePlan, now: datetime, tolerance: pd.Timedelta,
                                worker: ChunkWorker) -> CheckedBatch:
    """Prepare a chunk here, check it in the worker and normalize it here meanwhile; keep the accepted rows.

    For a run's first chunk: the worker is still importing Great Expectations when it arrives, and the flow would
    otherwise wait idle. Each row's clean values depend on that row alone, so normalizing the rows the checks then
    reject changes nothing for the others; they are dropped here and quarantined from their prepared rows as usual.
    """
    started = time.perf_counter()
    prepared, blank_rows = prepare_chunk(raw, plan.mapping, plan.default_source, plan.fields)
    pending = worker.submit_check(prepared, now, tolerance, None if plan.columns_checked else plan.columns)
    tick = time.perf_counter()
    subs = intake.normalize_batch(prepared)
    normalize_seconds = time.perf_counter() - tick
    # This process needs Great Expectations too (the spam and score guards): the flow started importing it in a
    # thread; finishing that here, while the worker checks, fills a wait instead of delaying Check Spam.
    gx_context()
    outcome, failed = pending.result()
    if failed:
        _raise_check_failure(outcome, failed, plan)
    rejected = prepared[ROW_COLUMN].isin(list(outcome.row_reasons))
    return CheckedBatch(prepared=prepared.loc[rejected], outcome=outcome, blank_rows=blank_rows,
                        seconds=time.perf_counter() - started - normalize_seconds, rows=len(prepared),
                        subs=subs.loc[~rejected.to_numpy()], normalize_seconds=normalize_seconds)


def check_lead_batch(raw: pd.DataFrame, plan: IntakePlan, now: datetime, worker: ChunkWorker | None = None,
                     normalize_here: bool = False) -> CheckedBatch:
    """Prepare a raw chunk and validate it with the intake suites; stops on a batch-level failure.

    With a worker the suites run in its process; with `normalize_here` as well (a run's first chunk, while the
    worker warms up) this step normalizes the chunk meanwhile, and Normalize Leads then hands on the accepted rows.
    """
    started = time.perf_counter()
    tolerance = pd.Timedelta(minutes=get_settings().future_tolerance_minutes)
    raw = plan.stamp(raw)
    if worker is not None and normalize_here:
        return _check_there_normalize_here(raw, plan, now, tolerance, worker)
    if worker is not None:
        done = worker.check(raw, plan.mapping, plan.default_source, now, tolerance, plan.fields)
        if done.batch_failed:
            raise_for_failures(done.outcome, hint=BROKEN_BATCH_HINT)
        return CheckedBatch(prepared=done.rejected, outcome=done.outcome, blank_rows=done.blank_rows,
                            seconds=time.perf_counter() - started, rows=done.rows, token=done.token)
    here = prepare_and_check(raw, plan.mapping, plan.default_source, now, tolerance, plan.fields)
    if here.batch_failed:
        raise_for_failures(here.outcome, hint=BROKEN_BATCH_HINT)
    return CheckedBatch(prepared=here.prepared, outcome=here.outcome, blank_rows=here.blank_rows,
                        seconds=time.perf_counter() - started, rows=len(here.prepared))


def normalize_leads(checked: CheckedBatch, worker: ChunkWorker | None = None) -> NormalizedBatch:
    """Clean and type the accepted rows: emails, names, phones, domains, countries, consent, intent."""
    if checked.subs is not None:
        return NormalizedBatch(subs=checked.subs, seconds=checked.normalize_seconds)
    if checked.token is not None and worker is not None:
        subs, seconds = worker.normalize(checked.token)
        return NormalizedBatch(subs=subs, seconds=seconds)
    started = time.perf_counter()
    prepared = checked.prepared
    accepted = prepared.loc[~prepared[ROW_COLUMN].isin(list(checked.outcome.row_reasons))]
    return NormalizedBatch(subs=intake.normalize_batch(accepted), seconds=time.perf_counter() - started)


# --- Quarantine Rejected Rows, Create Lead Entry, Update Lead Source ---------------------------------------------


@dataclass
class QuarantineResult:
    """Rows a batch rejected: how many, how many were new to the quarantine table, and why."""

    rows: int = 0
    new_records: int = 0
    by_reason: Counter = field(default_factory=Counter)


@dataclass
class LeadWriteResult:
    """What creating lead entries did to the CRM for one batch."""

    submissions_new: int = 0
    submissions_duplicate: int = 0
    leads_created: int = 0
    leads_updated: int = 0
    lead_ids: list[int] = field(default_factory=list)
    # Leads this batch created from fresh submissions only: their stored touches are already the batch's own.
    settled_emails: set[str] = field(default_factory=set)
    # Accepted rows quarantined instead, their row numbers and the counts: rows of erased people (see `find_erased`)
    # and rows whose values the database refused (see `split_refused_rows`).
    erased_rows: list[int] = field(default_factory=list)
    quarantined: QuarantineResult = field(default_factory=QuarantineResult)
    # What the export's own CRM state (statuses, owners, opt-outs) did to these leads.
    crm_state: CrmStateResult = field(default_factory=CrmStateResult)
    # Each lead of `lead_ids` by its step mark now (leadflow/domain/progress.py): CREATED for leads with new
    # submissions; leads of rows stored before whose processing a killed run left unfinished keep theirs, and the
    # later steps finish exactly what they miss.
    steps: dict[int, int] = field(default_factory=dict)
    # Leads with submissions of another batch still waiting for their spam check (see steps/spam.py batch_frame).
    spam_waiting: list[int] = field(default_factory=list)

    def needing(self, step: LeadStep) -> list[int]:
        """The leads of `lead_ids` whose mark is at most `step`: those that still need the step after it."""
        return [i for i in self.lead_ids if self.steps.get(i, LeadStep.CREATED) <= step]


@dataclass(frozen=True)
class ErasedRows:
    """Rows whose address belongs to an erased person: their keyed hashes (NA for everyone else) and the key."""

    hashes: pd.Series
    key: bytes

    @property
    def mask(self) -> np.ndarray:
        """True for the erased people's rows."""
        return self.hashes.notna().to_numpy()


def find_erased(store: Store, conn: Any, emails: pd.Series) -> ErasedRows | None:
    """Which of these normalized emails belong to people erased on request; None when none do.

    One read of the small person_erasures table: with no erasure recorded that read is the whole cost, and the
    hash key is not even looked up (a PostgreSQL CRM without LEADFLOW_HASH_KEY imports as before).
    """
    erased = people.erased_hashes(conn)
    if not erased or emails.empty:
        return None
    key = email_hash_key(get_settings(), store.url)
    hashes = keyed_hashes(emails, key)
    hashes = hashes.where(hashes.isin(erased).fillna(False).to_numpy(dtype=bool))
    return ErasedRows(hashes=hashes, key=key) if hashes.notna().any() else None


def erased_quarantine(rows: pd.DataFrame, sources: pd.Series, erased: ErasedRows, *, batch_id: str,
                      origin: str | None, flow_run_id: str | None, now: datetime) -> pd.DataFrame:
    """Quarantine records of erased people's rows: reason, origin, row number and keyed hash, never the payload.

    Keyed by a keyed hash of payload and reason, so a re-import adds nothing and the key reveals nothing either.
    """
    mask = erased.mask
    reason = ReasonCode.ERASED_PERSON
    keys = keyed_hashes(rows.loc[mask, PAYLOAD_COLUMN].astype("string") + f"|{reason}", erased.key)
    return pd.DataFrame({
        "idempotency_key": keys.to_numpy(),
        "batch_id": batch_id,
        "origin": None if origin is None else origin[:1000],
        "row_number": rows.loc[mask, ROW_COLUMN].to_numpy(),
        "source": sources.loc[mask].to_numpy(),
        "reason_codes": reason,
        "raw_payload": [json.dumps(erased_row_payload(h)) for h in erased.hashes.loc[mask].tolist()],
        "created_at": now,
        "flow_run_id": flow_run_id,
    }).drop_duplicates("idempotency_key")


def quarantine_rows(
    store: Store,
    prepared: pd.DataFrame,
    row_reasons: dict[int, list[str]],
    *,
    batch_id: str,
    origin: str,
    flow_run_id: str | None,
    now: datetime,
) -> QuarantineResult:
    """Keep every rejected row with its raw payload and reason codes (idempotent by content).

    A row of a person erased on request is kept as `erased_person` with their keyed hash instead of its payload.
    """
    result = QuarantineResult()
    if not row_reasons:
        return result
    rejected = prepared.loc[prepared[ROW_COLUMN].isin(row_reasons.keys())]
    result.rows = len(rejected)
    with store.begin() as conn:
        erased = find_erased(store, conn, rejected[EMAIL_COLUMN])
        if erased is not None:
            set_aside = erased_quarantine(rejected, rejected[SOURCE_COLUMN], erased, batch_id=batch_id,
                                          origin=origin, flow_run_id=flow_run_id, now=now)
            result.new_records += submissions.insert_quarantine(store, conn, set_aside)
            erased_rows = set(rejected.loc[erased.mask, ROW_COLUMN].tolist())
            row_reasons = {row: ([ReasonCode.ERASED_PERSON] if row in erased_rows else codes)
                           for row, codes in row_reasons.items()}
            rejected = rejected.loc[~erased.mask]
        result.new_records += _quarantine_with_payload(store, conn, rejected, row_reasons, batch_id=batch_id,
                                                       origin=origin, flow_run_id=flow_run_id, now=now)
    for codes in row_reasons.values():
        result.by_reason.update(codes)
    return result


def _quarantine_with_payload(store: Store, conn: Any, rejected: pd.DataFrame, row_reasons: dict[int, list[str]], *,
                             batch_id: str, origin: str, flow_run_id: str | None, now: datetime) -> int:
    """Store rejected rows with their raw payload and reason codes; returns the rows new to the table."""
    if rejected.empty:
        return 0
    reasons = rejected[ROW_COLUMN].map(lambda row: ",".join(sorted(row_reasons[row])))
    keys = [
        hashlib.sha256(f"{payload}|{reason}".encode()).hexdigest()
        for payload, reason in zip(rejected[PAYLOAD_COLUMN], reasons, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "idempotency_key": keys,
            "batch_id": batch_id,
            "origin": origin[:1000],
            "row_number": rejected[ROW_COLUMN].to_numpy(),
            "source": rejected[SOURCE_COLUMN].to_numpy(),
            "reason_codes": reasons.to_numpy(),
            "raw_payload": rejected[PAYLOAD_COLUMN].to_numpy(),
            "created_at": now,
            "flow_run_id": flow_run_id,
        }
    ).drop_duplicates("idempotency_key")
    return submissions.insert_quarantine(store, conn, frame)


class HoldAbandoned(RuntimeError):
    """The previous chunk's later steps failed: the chunk that waited for them writes nothing."""


class Hold:
    """What Create Lead Entry of chunk N+1 waits for when it runs beside chunk N's later steps (PostgreSQL).

    Chunk N's Check Spam, Retrieve Lead Details, Calculate Lead Score and its `after_chunk` (qualification) write
    chunk N's leads. Chunk N+1's transaction first writes the rows of everyone else, then waits here until those
    steps are done, then writes the rows of the people in both chunks (`emails`) and commits: each lead row is
    written in the order a one-chunk-after-another run writes it, and no statement of either side waits for a row
    the other holds. Should one wait all the same (another run, a rule that reaches further), the waiting
    transaction gives way: it rolls back and writes the whole chunk after the wait (see `_write_held`).
    """

    POLL_SECONDS = 0.2

    def __init__(self, emails: Collection[str]) -> None:
        self.emails = frozenset(emails)
        self._done = threading.Event()
        self._abandoned = False
        # Seconds Create Lead Entry spent waiting here: the step's own time is its wall time less this.
        self.waited = 0.0

    def release(self) -> None:
        """Chunk N's later steps are done: the held rows may be written."""
        self._done.set()

    def abandon(self) -> None:
        """Chunk N's later steps failed: the waiting chunk rolls back and writes nothing."""
        self._abandoned = True
        self._done.set()

    def wait(self, store: Store | None = None, conn: Any = None) -> None:
        """Wait for `release`; with a connection, give way (HoldConflict) as soon as another session waits for it."""
        tick = time.perf_counter()
        try:
            while not self._done.wait(self.POLL_SECONDS):
                if conn is not None and store is not None and store.blocks_others(conn):
                    raise HoldConflict("another session waits for a row this chunk holds")
        finally:
            self.waited += time.perf_counter() - tick
        if self._abandoned:
            raise HoldAbandoned("the previous chunk's later steps failed; this chunk was not written")


class HoldConflict(RuntimeError):
    """A transaction waiting at its `Hold` blocks another session: it rolls back and writes after the wait."""


def create_lead_entries(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime,
    hold: Hold | None = None,
) -> LeadWriteResult:
    """Upsert one lead per email and store each new submission, in one transaction.

    Rows of people erased on request are quarantined instead, in the same transaction (see `find_erased`). A value
    the database refuses costs its row, never the chunk: the chunk is split until the refused rows are isolated,
    the rest is stored, and those rows are quarantined with the database's error code (`split_refused_rows`).
    `hold`: the previous chunk's later steps are still running beside this step (see `Hold`).
    """
    try:
        if hold is not None:
            return _write_held(store, subs, hold, batch_id=batch_id, flow_run_id=flow_run_id, now=now)
        return _write_lead_entries(store, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now)
    except Exception as exc:
        if refused_value_code(exc) is None:
            raise
    if hold is not None:
        hold.wait()
    return split_refused_rows(store, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now)


def held_rows(subs: pd.DataFrame, emails: Collection[str]) -> np.ndarray:
    """The rows Create Lead Entry writes only after the `Hold`: whole people, so that each part decides alone.

    The people of the previous chunk (`emails`); people with CRM state (statuses, owners and opt-outs move reps'
    capacity, whose rows qualification locks); and, with them, anyone sharing a submission key with a held row
    (a key names a source's own id, not the person: the first row of the chunk must win, as in one part).
    """
    held = in_set(subs["email"], emails)
    for name in (c for c in CRM_STATE_COLUMNS if c in subs.columns):
        values = subs[name]
        # A flag column says something only where it is set; the others wherever they have a value.
        said = values.fillna(False).astype(bool) if pd.api.types.is_bool_dtype(values.dtype) else values.notna()
        held |= said.to_numpy(dtype=bool)
    while True:
        keys = set(subs.loc[held, "idempotency_key"].tolist())
        grown = in_set(subs["email"], set(subs.loc[held | in_set(subs["idempotency_key"], keys), "email"].tolist()))
        if int(grown.sum()) == int(held.sum()):
            return held
        held = grown


def _write_held(store: Store, subs: pd.DataFrame, hold: Hold, *, batch_id: str, flow_run_id: str | None,
                now: datetime) -> LeadWriteResult:
    """Create Lead Entry's transaction beside the previous chunk's later steps: everyone else's rows, the wait, the
    shared people's rows, the commit (see `Hold`). After a conflict, the whole chunk after the wait instead."""
    held = held_rows(subs, hold.emails)
    try:
        with store.begin() as conn:
            parts = [_write_in(store, conn, subs.loc[~held], batch_id=batch_id, flow_run_id=flow_run_id, now=now)]
            hold.wait(store, conn)
            if held.any():
                parts.append(_write_in(store, conn, subs.loc[held], batch_id=batch_id, flow_run_id=flow_run_id,
                                       now=now))
    except Exception as exc:
        if not (isinstance(exc, HoldConflict) or is_transient_db_error(exc)):
            raise
        # It gave way, or met a deadlock or lock timeout beside the previous chunk's steps: written after them.
        hold.wait()
        return _write_lead_entries(store, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now)
    result = _merge_writes(parts) if len(parts) > 1 else parts[0]
    _after_write(store, result)
    return result


def _halves(subs: pd.DataFrame) -> list[pd.DataFrame]:
    """A part of a chunk in two: by whole leads (all rows of an email together) while it has several, else by rows."""
    emails = pd.unique(subs["email"].to_numpy(dtype=object))
    if len(emails) > 1:
        first = in_set(subs["email"], set(emails[: len(emails) // 2].tolist()))
        return [subs.loc[first], subs.loc[~first]]
    middle = len(subs) // 2
    return [subs.iloc[:middle], subs.iloc[middle:]]


def _merge_writes(results: list[LeadWriteResult]) -> LeadWriteResult:
    """One result for the parts of a split chunk; a lead written by several parts (its rows split) counts once."""
    merged = LeadWriteResult()
    seen: set[int] = set()
    for part in results:
        merged.submissions_new += part.submissions_new
        merged.submissions_duplicate += part.submissions_duplicate
        merged.leads_created += part.leads_created
        repeated = sum(1 for lead_id in part.lead_ids if lead_id in seen)
        merged.leads_updated += part.leads_updated - min(repeated, part.leads_updated)
        merged.lead_ids += [lead_id for lead_id in part.lead_ids if lead_id not in seen]
        seen.update(part.lead_ids)
        merged.settled_emails |= part.settled_emails
        for lead_id, step in part.steps.items():
            # A lead in several parts (one email's rows split) needs what its least advanced part needs.
            merged.steps[lead_id] = min(step, merged.steps.get(lead_id, step))
        waiting = set(merged.spam_waiting)
        merged.spam_waiting += [i for i in part.spam_waiting if i not in waiting]
        merged.crm_state.add(part.crm_state)
        merged.erased_rows += part.erased_rows
        merged.quarantined.rows += part.quarantined.rows
        merged.quarantined.new_records += part.quarantined.new_records
        merged.quarantined.by_reason.update(part.quarantined.by_reason)
    return merged


def split_refused_rows(store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None,
                       now: datetime) -> LeadWriteResult:
    """Write a chunk the database refused in ever smaller parts; quarantine the rows it still refuses alone.

    Each part is its own transaction (idempotent keys: a part written before a later failure is simply known the
    next time). A part of several leads splits by leads, one lead's rows split by rows; a single refused row is
    quarantined as `db_refused:<code>` (the SQLSTATE on PostgreSQL) with its raw payload. A failure that is not a
    refused value (a lock, a lost connection) still fails the step.
    """
    written: list[LeadWriteResult] = []
    refused: dict[int, list[str]] = {}
    # Leads whose rows were written by several parts: a later part may move their touches, so none is settled.
    split: set[str] = set()
    pending = _halves(subs)
    while pending:
        part = pending.pop(0)
        if part.empty:
            continue
        try:
            written.append(_write_lead_entries(store, part, batch_id=batch_id, flow_run_id=flow_run_id, now=now))
            continue
        except Exception as exc:
            code = refused_value_code(exc)
            if code is None:
                raise
        if len(part) > 1:
            halves = _halves(part)
            if part["email"].nunique() == 1:
                split.add(part["email"].iloc[0])
            pending[:0] = halves
        else:
            refused[int(part[ROW_COLUMN].iloc[0])] = [f"{ReasonCode.DB_REFUSED}:{code}"]
    result = _merge_writes(written)
    result.settled_emails -= split
    if refused:
        rows = subs.loc[subs[ROW_COLUMN].isin(list(refused))].rename(columns={"source": SOURCE_COLUMN})
        with store.begin() as conn:
            origin = submissions.batch_origin(conn, batch_id) or ""
            new_records = _quarantine_with_payload(store, conn, rows, refused, batch_id=batch_id, origin=origin,
                                                   flow_run_id=flow_run_id, now=now)
        result.erased_rows += list(refused)
        result.quarantined.rows += len(refused)
        result.quarantined.new_records += new_records
        result.quarantined.by_reason.update(code for codes in refused.values() for code in codes)
    return result


def _ids_of(emails: pd.Series, ids: dict[str, int]) -> np.ndarray:
    """The lead id of each email (every one of them has a lead by now)."""
    found = np.fromiter((ids.get(email, -1) for email in emails.tolist()), dtype=np.int64, count=len(emails))
    if (found < 0).any():
        # Without the address: error messages reach Prefect's states and logs.
        raise ValueError(f"{int((found < 0).sum())} submissions have no lead after the upsert")
    return found


def _write_lead_entries(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime
) -> LeadWriteResult:
    """Create Lead Entry's one transaction over a chunk (or a part of one)."""
    if subs.empty:
        return LeadWriteResult()
    with store.begin() as conn:
        result = _write_in(store, conn, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now)
    _after_write(store, result)
    return result


def _after_write(store: Store, result: LeadWriteResult) -> None:
    """After the commit: a bulk load leaves the planner fresh statistics for the rest of this run (and the next)."""
    if result.submissions_new >= BULK_LOAD_ROWS:
        store.refresh_statistics(STATISTICS_TABLES, added=result.submissions_new)


def _write_in(store: Store, conn: Any, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None,
              now: datetime) -> LeadWriteResult:
    """Create Lead Entry's writes of these rows inside the caller's transaction."""
    result = LeadWriteResult()
    if subs.empty:
        return result
    erased = find_erased(store, conn, subs["email"])
    if erased is not None:
        set_aside = erased_quarantine(subs, subs["source"], erased, batch_id=batch_id,
                                      origin=submissions.batch_origin(conn, batch_id), flow_run_id=flow_run_id,
                                      now=now)
        result.erased_rows = subs.loc[erased.mask, ROW_COLUMN].tolist()
        result.quarantined = QuarantineResult(
            rows=len(result.erased_rows), new_records=submissions.insert_quarantine(store, conn, set_aside),
            by_reason=Counter({ReasonCode.ERASED_PERSON: len(result.erased_rows)}))
        subs = subs.loc[~erased.mask]
        if subs.empty:
            return result
    unique, repeats = split_duplicate_keys(subs)
    known = submissions.known_submission_keys(store, conn, unique["idempotency_key"].tolist())
    fresh = unique.loc[~in_set(unique["idempotency_key"], known)]
    result.submissions_duplicate = len(repeats) + len(unique) - len(fresh)
    # Rows stored before (a re-run of a killed run's file): their leads go on from their step marks.
    unfinished = {} if len(fresh) == len(subs) else {
        email: found for email, found in progress.steps_by_email(
            conn, subs.loc[~subs.index.isin(fresh.index), "email"].unique().tolist()).items()
        if found[1] < LeadStep.COMPLETE}
    if fresh.empty:
        result.lead_ids = sorted(i for i, _ in unfinished.values())
        result.steps = dict(unfinished.values())
        result.spam_waiting = [i for i, step in unfinished.values() if step == LeadStep.CREATED]
        return result
    before = progress.steps_by_email(conn, fresh["email"].unique().tolist())
    existing = {email: found[0] for email, found in before.items()}
    leads = aggregate_leads(fresh).assign(step_mark=int(LeadStep.CREATED), step_marked_at=now)
    # An upsert keeps the id of a lead it updates, so only the leads it created need looking up.
    created_now = [e for e in leads["email"].tolist() if e not in existing]
    store.upsert_leads(conn, leads, now)
    new_ids, inserted = submissions.leads_created_at(conn, created_now, now)
    ids = {**existing, **new_ids}
    # A dict lookup per row: Series.map hashes the whole dict into an index first (0.3 s per 50,000 rows).
    fresh = fresh.assign(lead_id=_ids_of(fresh["email"], ids))
    added = submissions.insert_submissions(store, conn, fresh, batch_id, now)
    result.crm_state = apply_crm_state(store, conn, fresh, ids, now=now, flow_run_id=flow_run_id)
    # Not "absent when we looked": a run at the same time may have created the lead in between.
    created = in_set(leads["email"], inserted)
    # A batch has only a handful of distinct (count, source, new) triples: encode each once.
    sources = leads["first_touch_source"].to_numpy(dtype=object, na_value=None).tolist()
    triples = list(zip(leads["submissions"].tolist(), sources, created.tolist(), strict=True))
    encoded = {
        (n, source, new): json.dumps({"new_submissions": int(n), "source": source} if new
                                     else {"new_submissions": int(n)})
        for n, source, new in set(triples)
    }
    details = [encoded[triple] for triple in triples]
    events = pd.DataFrame({
        "lead_id": _ids_of(leads["email"], ids),
        "event_type": np.where(created, "lead_created", "lead_updated"),
        "occurred_at": now,
        "batch_id": batch_id,
        "flow_run_id": flow_run_id,
        "details": details,
    })
    store.insert_events(conn, events)
    # A key another run stored after our look is that run's submission: a duplicate here, as if seen before.
    result.submissions_new = added
    result.submissions_duplicate += len(fresh) - added
    result.leads_created = int(created.sum())
    result.leads_updated = len(leads) - result.leads_created
    result.lead_ids = [ids[email] for email in leads["email"].tolist()]
    result.steps = dict.fromkeys(result.lead_ids, int(LeadStep.CREATED))
    result.spam_waiting = [found[0] for found in before.values() if found[1] == LeadStep.CREATED]
    for lead_id, step in unfinished.values():
        if lead_id not in result.steps:
            result.lead_ids.append(lead_id)
            result.steps[lead_id] = step
            if step == LeadStep.CREATED:
                result.spam_waiting.append(lead_id)
    # A repeated or already stored row can still move a touch: only leads made of fresh rows alone are settled.
    stale = set(subs.loc[~subs.index.isin(fresh.index), "email"].tolist())
    result.settled_emails = {email for email in inserted if email not in stale}
    return result


def update_lead_sources(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime,
    settled: Collection[str] = frozenset(),
) -> int:
    """Keep first-touch attribution at the earliest touch and move last-touch to the latest; returns leads moved.

    `settled` leads (created by this batch from these rows alone, see LeadWriteResult) cannot move and are skipped:
    in a first import that is every lead, and reading their touches back was a third of this step.
    """
    if settled:
        subs = subs.loc[~in_set(subs["email"], settled)]
    if subs.empty:
        return 0
    touches = aggregate_touches(subs)
    with store.begin() as conn:
        current = submissions.lead_touches(conn, touches["email"].tolist())
        changes = attribution_changes(touches, current)
        if changes.empty:
            return 0
        submissions.move_touches(store, conn, changes, now)
        parts = []
        for which in ("first", "last"):
            moved = changes.loc[changes[f"{which}_touch_changed"]]
            details = [
                json.dumps({"touch": which, "from": old, "to": new, "at": at.isoformat()})
                for old, new, at in zip(moved[f"{which}_touch_source_current"], moved[f"{which}_touch_source"],
                                        moved[f"{which}_touch_at"], strict=True)
            ]
            parts.append(pd.DataFrame({"lead_id": moved["id"].to_numpy(), "details": details}))
        events = pd.concat(parts, ignore_index=True).assign(
            event_type="lead_source_updated", occurred_at=now, batch_id=batch_id, flow_run_id=flow_run_id
        )
        store.insert_events(conn, events)
    return len(changes)


# --- The sequence ---------------------------------------------------------------------------------------------


def early_worker(path: str) -> ChunkWorker | None:
    """A check worker started with the run, for a file whose first chunk takes longer to check than it to start."""
    settings = get_settings()
    if not settings.check_worker or not ChunkWorker.available():
        return None
    size = input_size(path)
    if size is None or size < settings.check_worker_min_bytes:
        return None
    return ChunkWorker()


def late_worker() -> ChunkWorker | None:
    """A check worker for a file that turned out to have a second chunk: it checks and normalizes on the other core."""
    if not get_settings().check_worker or not ChunkWorker.available():
        return None
    return ChunkWorker()


@dataclass(frozen=True)
class IntakeSteps:
    """Intake's steps by seed name, called as their tasks are: the Prefect tasks (the flow) or plain functions.

    `check_lead_batch` and `normalize_leads` start CPU-bound work and return a future (the flow's task runner
    checks and normalizes the next chunk while this one is written); `normalize_leads` takes check's future. The
    other steps run at once and return their result:
    check_lead_batch(raw, plan, now, worker, normalize_here), normalize_leads(checked, worker),
    quarantine_rejected_rows(prepared, outcome, batch_id, origin, now), create_lead_entries(subs, batch_id, now, hold),
    update_lead_sources(subs, batch_id, now, settled),
    check_spam(lead_ids, batch_id, now, subs, waiting) -> counts,
    retrieve_lead_details(lead_ids, lookups, now, defer_write),
    calculate_lead_score(leads, now, batch_id, pending).
    """

    check_lead_batch: Callable[..., Any]
    normalize_leads: Callable[..., Any]
    quarantine_rejected_rows: Callable[..., QuarantineResult]
    create_lead_entries: Callable[..., LeadWriteResult]
    update_lead_sources: Callable[..., int]
    check_spam: Callable[..., dict[str, Any]]
    retrieve_lead_details: Callable[..., DetailsOutput]
    calculate_lead_score: Callable[..., ScoreResult]


# Each step's task name (tasks/intake.py and friends): the names crash points and logs use for the plain steps too.
INTAKE_STEP_NAMES = {
    "check_lead_batch": "Check Lead Batch", "normalize_leads": "Normalize Leads",
    "quarantine_rejected_rows": "Quarantine Rejected Rows", "create_lead_entries": "Create Lead Entry",
    "update_lead_sources": "Update Lead Source", "check_spam": "Check Spam",
    "retrieve_lead_details": "Retrieve Lead Details", "calculate_lead_score": "Calculate Lead Score",
}


def _started(step: Callable[..., Any]) -> Callable[..., Future]:
    """Run a step at once and hand its outcome back as a finished future (a failure is raised by `result()`)."""
    def start(*args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(step(*(a.result() if isinstance(a, Future) else a for a in args)))
        except Exception as exc:  # raised where the flow's task future raises it: at result()
            future.set_exception(exc)
        return future

    return start


def plain_steps(store: Store, *, flow_run_id: str | None = None) -> IntakeSteps:
    """The intake steps as plain functions over one store, without Prefect (benchmarks, tests, scripts).

    The same step functions, policies and guards the tasks use; lookups go to the configured provider one batch
    after another, without Prefect's retries.
    """
    from functools import partial

    from data_checks.scoring import guard_scores
    from data_checks.spam import guard_spam_flags
    from leadflow.crm import reference
    from leadflow.io.enrichment import provider_from_settings
    from leadflow.steps import enrichment, scoring, spam

    policy = scoring.scoring_policy()
    spam_policy = spam.load_spam_policy()
    chosen = provider_from_settings(get_settings(), partial(reference.firmographics_for, store))

    def quarantine_rejected_rows(prepared: pd.DataFrame, outcome: CheckOutcome, batch_id: str, origin: str,
                                 now: datetime) -> QuarantineResult:
        return quarantine_rows(store, prepared, outcome.row_reasons, batch_id=batch_id, origin=origin,
                               flow_run_id=flow_run_id, now=now)

    def create(subs: pd.DataFrame, batch_id: str, now: datetime, hold: Hold | None = None) -> LeadWriteResult:
        return create_lead_entries(store, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now, hold=hold)

    def update(subs: pd.DataFrame, batch_id: str, now: datetime, settled: Collection[str] = frozenset()) -> int:
        return update_lead_sources(store, subs, batch_id=batch_id, flow_run_id=flow_run_id, now=now, settled=settled)

    def check_spam(lead_ids: list[int], batch_id: str, now: datetime, subs: pd.DataFrame | None = None,
                   waiting: list[int] | None = None) -> dict[str, Any]:
        return spam.check_spam_at_intake(store, spam_policy, lead_ids, batch_id, now, subs=subs,
                                         flow_run_id=flow_run_id, guard=guard_spam_flags, waiting=waiting or (),
                                         mark=True).as_dict()

    def retrieve(lead_ids: list[int], lookups: DomainResults, now: datetime,
                 defer_write: bool = False) -> DetailsOutput:
        return enrichment.retrieve_lead_details(store, lead_ids, lookups, now, chosen, mark=True,
                                                defer_write=defer_write)

    def score(leads: pd.DataFrame, as_of: datetime, batch_id: str | None,
              pending: PendingWrite | None = None) -> ScoreResult:
        return scoring.calculate_lead_scores(store, leads, policy, as_of=as_of, batch_id=batch_id,
                                             flow_run_id=flow_run_id, guard=guard_scores, mark=True, pending=pending)

    return with_crash_points(IntakeSteps(
        check_lead_batch=_started(check_lead_batch), normalize_leads=_started(normalize_leads),
        quarantine_rejected_rows=quarantine_rejected_rows, create_lead_entries=create, update_lead_sources=update,
        check_spam=check_spam, retrieve_lead_details=retrieve, calculate_lead_score=score,
    ), INTAKE_STEP_NAMES)


def _read(chunks: Iterator[pd.DataFrame], summary: IntakeSummary) -> pd.DataFrame | None:
    """The next raw chunk, or None at the end of the input."""
    tick = time.perf_counter()
    raw = next(chunks, None)
    summary.add_time("read", time.perf_counter() - tick)
    if raw is not None:
        summary.chunks += 1
        summary.rows_read += len(raw)
    return raw


def _start_chunk(steps: IntakeSteps, raw: pd.DataFrame | None, plan: IntakePlan, worker: ChunkWorker | None,
                 normalize_here: bool = False) -> tuple[datetime, Any, Any] | None:
    """Start the CPU-bound steps of a chunk: check, then normalize."""
    if raw is None:
        return None
    now = datetime.now(UTC)
    checked = steps.check_lead_batch(raw, plan, now, worker, normalize_here)
    return now, checked, steps.normalize_leads(checked, worker)


def _checked_subs(steps: IntakeSteps, now: datetime, checked_future: Any, normalized_future: Any,
                  summary: IntakeSummary) -> pd.DataFrame:
    """Wait for a chunk's check and normalization, quarantine its rejected rows; its clean submissions."""
    tick = time.perf_counter()
    checked = checked_future.result()
    normalized = normalized_future.result()
    summary.add_time("wait_for_check", time.perf_counter() - tick)
    summary.add_time("check", checked.seconds)
    summary.add_time("normalize", normalized.seconds)
    summary.add_counts("unknown_channels", unknown_channels(normalized.subs["source"]))
    summary.blank_rows += checked.blank_rows
    summary.add_check_results(checked.outcome.results)
    tick = time.perf_counter()
    quarantined = steps.quarantine_rejected_rows(checked.prepared, checked.outcome, summary.batch_id,
                                                 summary.origin, now)
    summary.add_time("quarantine", time.perf_counter() - tick)
    summary.quarantined += quarantined.rows
    summary.quarantined_new += quarantined.new_records
    summary.add_reasons(quarantined.by_reason)
    return normalized.subs


@dataclass
class WrittenChunk:
    """A chunk past Create Lead Entry and Update Lead Source: what its later steps need."""

    now: datetime
    subs: pd.DataFrame
    written: LeadWriteResult
    # Its later steps were started (with `overlap`, a failure before that still has them run, see intake_chunks).
    finishing: bool = False


def _enter_chunk(steps: IntakeSteps, now: datetime, checked_future: Any, normalized_future: Any,
                 summary: IntakeSummary) -> WrittenChunk:
    """A checked chunk through Quarantine Rejected Rows, Create Lead Entry and Update Lead Source."""
    subs = _checked_subs(steps, now, checked_future, normalized_future, summary)
    tick = time.perf_counter()
    written = steps.create_lead_entries(subs, summary.batch_id, now)
    summary.add_time("create_lead_entries", time.perf_counter() - tick)
    return _entered(steps, now, subs, written, summary)


def _entered(steps: IntakeSteps, now: datetime, subs: pd.DataFrame, written: LeadWriteResult,
             summary: IntakeSummary) -> WrittenChunk:
    """Fold Create Lead Entry's counts into the summary and run Update Lead Source."""
    if written.erased_rows:
        # Erased people's rows went to the quarantine instead: no later step may see them.
        subs = subs.loc[~subs[ROW_COLUMN].isin(written.erased_rows)]
        summary.quarantined += written.quarantined.rows
        summary.quarantined_new += written.quarantined.new_records
        summary.add_reasons(written.quarantined.by_reason)
    if SOURCE_FILLED_COLUMN in subs.columns and subs[SOURCE_FILLED_COLUMN].any():
        summary.add_counts("channel_filled", subs.loc[subs[SOURCE_FILLED_COLUMN].astype(bool), "source"]
                           .value_counts().to_dict())
    summary.add_counts("field_warnings", field_warnings(subs))
    summary.emails_smtputf8 += int(subs["email_smtputf8"].sum()) if "email_smtputf8" in subs.columns else 0
    summary.submissions_new += written.submissions_new
    summary.submissions_duplicate += written.submissions_duplicate
    summary.leads_created += written.leads_created
    summary.leads_updated += written.leads_updated
    summary.add_crm_state(written.crm_state.as_dict())
    tick = time.perf_counter()
    summary.sources_updated += steps.update_lead_sources(subs, summary.batch_id, now, written.settled_emails)
    summary.add_time("update_lead_sources", time.perf_counter() - tick)
    return WrittenChunk(now=now, subs=subs, written=written)


def _finish_chunk(steps: IntakeSteps, chunk: WrittenChunk, summary: IntakeSummary,
                  lookups: DomainResults) -> list[int]:
    """A written chunk's later steps (Check Spam, Retrieve Lead Details, Calculate Lead Score); its lead ids."""
    chunk.finishing = True
    now, subs, written = chunk.now, chunk.subs, chunk.written
    if written.lead_ids:
        # Each step gets the leads whose marks say they still need it (all of them, unless a killed run left
        # some half done): spam is flagged before anything downstream sees it, no task or message for it.
        tick = time.perf_counter()
        unchecked = written.needing(LeadStep.CREATED)
        if unchecked:
            # Marked in the check's own transaction: a mark left to a later write could be moved on by it after
            # another run's new submission had put the lead back to CREATED, and that submission never be judged.
            spam = steps.check_spam(unchecked, summary.batch_id, now, subs, written.spam_waiting)
            summary.spam_flagged += int(spam.get("flagged", 0))
            summary.add_counts("spam_by_reason", spam.get("by_reason", {}))
        summary.add_time("check_spam", time.perf_counter() - tick)
        # Leads already detailed come along unchanged (no lookup): scoring reads them from this step's frame.
        unscored = written.needing(LeadStep.DETAILED)
        if unscored:
            # Details are written with the scores, by one statement (one row version per lead on PostgreSQL).
            details = steps.retrieve_lead_details(unscored, lookups, now, True)
            summary.add_time("retrieve_lead_details", details.seconds)
            summary.add_counts("enrichment", details.result.by_status)
            summary.add_counts("fields_filled", details.result.fields_filled)
            tick = time.perf_counter()
            scored = steps.calculate_lead_score(details.leads, now, summary.batch_id, details.pending)
            summary.add_time("calculate_lead_score", time.perf_counter() - tick)
            summary.leads_scored += scored.scored
            summary.scores_changed += scored.changed
            summary.add_counts("tiers", scored.by_tier)
            summary.add_counts("score_bands", scored.by_band)
    return written.lead_ids


def _in_thread(call: Callable[..., Any], *args: Any) -> Future:
    """Run a step in a thread of its own, in a copy of this thread's context (a flow's task then stays its task)."""
    future: Future = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(call, *args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="leadflow-create-lead-entry", daemon=True).start()
    return future


def write_beside(steps: IntakeSteps, now: datetime, checked_future: Any, normalized_future: Any,
                 summary: IntakeSummary, lookups: DomainResults, previous: WrittenChunk,
                 after_chunk: Callable[[list[int]], None] | None) -> WrittenChunk:
    """Create Lead Entry of a chunk in a thread, beside the previous chunk's later steps and `after_chunk` here.

    Create Lead Entry is mostly the database server's work, the later steps mostly this process's: side by side
    they use both cores. The chunk's transaction writes the people not in the previous chunk first and the shared
    ones once the previous chunk is done (`Hold`), so every lead ends as a run of one chunk after another leaves
    it. If the previous chunk's steps fail, this chunk writes nothing and their error is raised; if this chunk's
    check fails first, intake_chunks still runs the previous chunk's steps before raising it.
    """
    subs = _checked_subs(steps, now, checked_future, normalized_future, summary)
    hold = Hold(set(subs["email"].tolist()) & set(previous.subs["email"].tolist()))
    tick = time.perf_counter()
    creating = _in_thread(steps.create_lead_entries, subs, summary.batch_id, now, hold)
    try:
        lead_ids = _finish_chunk(steps, previous, summary, lookups)
        if after_chunk is not None:
            after_chunk(lead_ids)
    except BaseException:
        hold.abandon()
        # Its transaction rolls back (HoldAbandoned) before this error goes on: nothing of it stays.
        wait([creating])
        raise
    hold.release()
    written = creating.result()
    summary.add_time("create_lead_entries", time.perf_counter() - tick - hold.waited)
    return _entered(steps, now, subs, written, summary)


def intake_chunks(
    steps: IntakeSteps,
    chunks: Iterator[pd.DataFrame],
    plan: IntakePlan,
    summary: IntakeSummary,
    *,
    worker: ChunkWorker | None = None,
    start_worker: Callable[[], ChunkWorker | None] | None = None,
    after_chunk: Callable[[list[int]], None] | None = None,
    read_again: bool = False,
    overlap: bool = False,
) -> IntakeSummary:
    """Run intake over the chunks: each is checked and normalized, then written; counts go into `summary`.

    Two stages: while chunk N is written, chunk N+1 is checked and normalized (when `steps` start those on a task
    runner) and chunk N+2 is read, so at most three chunks are in memory. `worker` (a check worker started with the
    run) checks every chunk, the first one while this process normalizes it; else `start_worker` may start one once
    a second chunk exists. The sequence closes the worker it ends with. `after_chunk` gets each written chunk's lead
    ids (the flow qualifies them and marks inbox rows); `read_again` asks the input once more after its last chunk
    (leads posted to the inbox while the run worked). `overlap` (a store that `overlaps_writes`): chunk N+1's Create
    Lead Entry runs beside chunk N's later steps and `after_chunk` (see `write_beside`): one chunk more in memory.
    """
    # With `overlap`: the chunk written last, whose later steps run beside the next chunk's Create Lead Entry.
    previous: WrittenChunk | None = None
    # Lookups answered once per run: a company with 1,000 leads across chunks costs one lookup.
    lookups = DomainResults()

    def finish(chunk: WrittenChunk) -> None:
        lead_ids = _finish_chunk(steps, chunk, summary, lookups)
        if after_chunk is not None:
            after_chunk(lead_ids)

    try:
        tick = time.perf_counter()
        chunks, plan = settle_date_order(chunks, plan)
        # reading: the first chunk (timed here, not in _read) and, rarely, one more pass over the date column
        summary.add_time("read", time.perf_counter() - tick)
        if plan.fields.date_basis:
            summary.date_order = {"column": "submitted_at", "order": plan.fields.date_order,
                                  "basis": plan.fields.date_basis}
        pending = _start_chunk(steps, _read(chunks, summary), plan, worker, normalize_here=worker is not None)
        while pending is not None:
            raw = _read(chunks, summary)
            if raw is not None and worker is None and start_worker is not None:
                # A second chunk exists: from now on a helper process may check and normalize on the other core.
                worker = start_worker()
            upcoming = _start_chunk(steps, raw, plan, worker)
            if not overlap:
                finish(_enter_chunk(steps, *pending, summary))
            elif previous is None:
                previous = _enter_chunk(steps, *pending, summary)
            else:
                previous = write_beside(steps, *pending, summary, lookups, previous, after_chunk)
            pending = upcoming
            if pending is None and read_again:
                if previous is not None:
                    # The input is asked again once every chunk so far is done (an inbox claims after its chunk).
                    finish(previous)
                    previous = None
                pending = _start_chunk(steps, _read(chunks, summary), plan, worker)
        if previous is not None:
            finish(previous)
        summary.enrichment_calls, summary.enrichment_failed_calls = lookups.calls, lookups.failed_calls
    except Exception:
        if previous is not None and not previous.finishing:
            # The next chunk failed (its reading, its check) before this one's later steps ran: one chunk after
            # another, they would have run before it, so they run now and the failure is raised after them.
            finish(previous)
        raise
    finally:
        if worker is not None:
            worker.close()
    return summary


def overlap_chunks(store: Store | None = None) -> bool:
    """Whether intake runs a chunk's Create Lead Entry beside the previous chunk's later steps (`write_beside`)."""
    from leadflow.crm.store import get_store

    return get_settings().overlap_chunks and (store or get_store()).overlaps_writes


def release_run_claims(flow_run_id: str, store: Store | None = None) -> int:
    """Give a dead run's claimed, unprocessed lead_inbox rows back to the inbox; how many."""
    from leadflow.crm import inbox
    from leadflow.crm.store import get_store

    return inbox.release_run_claims(store or get_store(), flow_run_id)


def wait_for_statistics(store: Store | None = None) -> None:
    """Wait for the ANALYZE a bulk load left running in the background (the end of an intake or backfill run)."""
    from leadflow.crm.store import get_store

    (store or get_store()).wait_for_statistics()
