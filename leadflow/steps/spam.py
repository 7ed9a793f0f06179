"""Spam steps: check an intake batch, sweep recent submissions, restore flagged leads, purge expired ones.

Each step reads through leadflow/crm/spam.py, decides with leadflow/domain/spam.py and writes through crm again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadflow.config.policy import load_policy
from leadflow.crm import progress
from leadflow.crm import spam as crm
from leadflow.crm.store import Store
from leadflow.domain import spam as rules
from leadflow.domain.progress import LeadStep
from leadflow.domain.spam import (
    SAMPLE_SIZE,
    FlagResult,
    PurgeResult,
    RestoreResult,
    SpamCleanupError,
    SpamPolicy,
    judge_submissions,
    parse_since,
    reason_counts,
    sample_rows,
)

# The results, the error and parse_since are the domain's; tasks, flows and the CLI take them from here.
__all__ = [
    "FlagResult", "Guard", "PurgeResult", "RestoreResult", "SpamCleanupError", "batch_frame", "check_spam_at_intake",
    "flag_leads", "load_spam_policy", "parse_since", "purge_expired_spam", "restore_spam", "restored_since",
    "spam_review_list", "sweep_spam",
]

Guard = Callable[[pd.DataFrame], None]


def load_spam_policy(name_or_path: str | Path | None = None) -> SpamPolicy:
    """The spam policy named by the settings (default `leadflow/config/policies/spam.json`), or this name or path."""
    if name_or_path is None:
        from leadflow.config.settings import get_settings

        name_or_path = get_settings().spam_policy
    return load_policy(SpamPolicy, name_or_path)


def restored_since(store: Store, since: datetime) -> int:
    """How many restores were recorded since a time (for the nightly summary)."""
    return crm.restored_since(store, since)


# --- flagging -------------------------------------------------------------------------------------------------


def flag_leads(
    store: Store,
    verdicts: pd.DataFrame,
    *,
    policy: SpamPolicy,
    now: datetime,
    by: str,
    flow_run_id: str | None = None,
    batch_id: str | None = None,
    dry_run: bool = False,
    guard: Guard | None = None,
    mark: Sequence[int] = (),
) -> FlagResult:
    """Move spam leads out of the pipeline: status spam, open tasks cancelled, pending outbox withdrawn, events.

    `mark`: leads whose spam check this is (intake), marked checked in the same transaction as the flags.
    """
    result = FlagResult(dry_run=dry_run)
    candidates = rules.flag_candidates(verdicts)
    if candidates.empty:
        if mark and not dry_run:
            with store.begin() as conn:
                progress.mark_step(conn, mark, LeadStep.SPAM_CHECKED, now)
        return result
    with store.begin() as conn:
        if mark and not dry_run:
            progress.mark_step(conn, mark, LeadStep.SPAM_CHECKED, now)
        exempt = crm.exempted(conn, candidates["email_hash"].dropna())
        is_exempt = candidates["email_hash"].isin(list(exempt))
        result.exempt = int(is_exempt.sum())
        candidates = candidates.loc[~is_exempt]
        current = crm.lock_leads(conn, candidates["lead_id"].astype("int64").tolist())
        plan = rules.flag_plan(candidates, current)
        if plan.empty:
            return result
        if guard is not None:
            guard(plan)
        ids = plan["lead_id"].astype("int64").tolist()
        result.lead_ids = ids
        tasks = crm.open_tasks_by_lead(conn, ids)
        outbox = crm.pending_outbox_by_lead(conn, ids)
        result.flagged = len(plan)
        result.by_reason.update(reason_counts(plan["reasons"]))
        result.tasks_cancelled = sum(len(v) for v in tasks.values())
        result.outbox_withdrawn = sum(len(v) for v in outbox.values())
        result.sample = sample_rows(plan, ["reasons", "previous_status"])
        if dry_run:
            conn.rollback()
            return result
        crm.flag(store, conn, plan, [i for v in tasks.values() for i in v], [i for v in outbox.values() for i in v],
                 now)
        store.insert_events(conn, rules.flag_events(plan, tasks, outbox, policy=policy, now=now, by=by,
                                                    batch_id=batch_id, flow_run_id=flow_run_id))
    return result


def batch_frame(conn: Any, lead_ids: list[int], batch_id: str, subs: pd.DataFrame | None,
                waiting: Sequence[int] = ()) -> pd.DataFrame:
    """An intake batch's stored submissions of these leads, with the leads as they are now, as the rules judge them.

    With the chunk in memory (`subs`), its rows are taken from it: only their keys are read back (which of them
    this batch stored), not their raw payloads. Submissions of these leads stored by an earlier chunk of the same
    batch are judged with them, read from the database. `waiting` leads also have submissions stored by another
    batch that never got their check (a killed run's): those are read back and judged too. `conn` is a connection
    of the store.
    """
    if subs is None:
        parts = [rules.stored_submissions(crm.batch_submissions(conn, batch_id, lead_ids))]
    else:
        stored = crm.batch_submission_keys(conn, batch_id, lead_ids)
        here, mine = rules.from_chunk(stored, subs)
        parts = [here]
        earlier = stored.loc[~mine, "submission_id"].tolist()
        if earlier:
            parts.append(rules.stored_submissions(crm.submissions_by_id(conn, earlier)))
    if waiting:
        left_over = progress.waiting_submissions(conn, waiting, except_batch=batch_id)
        if not left_over.empty:
            parts.append(rules.stored_submissions(left_over))
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if frame.empty:
        return frame
    leads = crm.leads_to_judge(conn, sorted(frame["lead_id"].astype("int64").unique().tolist()))
    return rules.with_leads(frame, leads)


def check_spam_at_intake(
    store: Store,
    policy: SpamPolicy,
    lead_ids: Sequence[int],
    batch_id: str,
    now: datetime,
    *,
    subs: pd.DataFrame | None = None,
    flow_run_id: str | None = None,
    guard: Guard | None = None,
    waiting: Sequence[int] = (),
    mark: bool = False,
) -> FlagResult:
    """Judge an intake batch's new submissions (per-batch rules plus tombstoned addresses) and flag its spam.

    `subs` is the normalized chunk the batch just stored, when the caller still holds it: the submissions are
    then not read back and their raw payloads not parsed again (the same rows and verdicts, much cheaper).
    `waiting` leads have submissions of another batch still unchecked (see `batch_frame`); with `mark` every
    lead is marked checked with the flags (leadflow/domain/progress.py).
    """
    result = FlagResult()
    ids = sorted({int(i) for i in lead_ids})
    marked = ids if mark else []
    with store.engine.connect() as conn:
        frame = batch_frame(conn, ids, batch_id, subs, waiting)
        if not frame.empty:
            known_bad = crm.tombstoned(conn, frame["email_hash"].dropna())
    if frame.empty:
        if marked:
            with store.begin() as conn:
                progress.mark_step(conn, marked, LeadStep.SPAM_CHECKED, now)
        return result
    result.submissions_checked = len(frame)
    result.leads_checked = int(frame["lead_id"].nunique())
    result.chunks = 1
    verdicts = judge_submissions(frame, policy, known_bad)
    result.add(flag_leads(store, verdicts, policy=policy, now=now, by="intake", flow_run_id=flow_run_id,
                          batch_id=batch_id, guard=guard, mark=marked))
    return result


def sweep_spam(
    store: Store,
    policy: SpamPolicy,
    *,
    since: datetime,
    now: datetime,
    batch_size: int = 50_000,
    dry_run: bool = False,
    flow_run_id: str | None = None,
    guard: Guard | None = None,
) -> FlagResult:
    """Re-check every submission since `since` with the latest lists, including bursts across intake batches.

    Submissions are read in time order, `batch_size` at a time; each chunk is judged together with the tail of
    the previous one that falls inside the burst window, so a burst that straddles two chunks is still seen
    whole. Memory follows the batch size (plus the rows of one burst window), not the table size.
    """
    if batch_size < 1:
        raise SpamCleanupError("batch_size must be at least 1")
    result = FlagResult(dry_run=dry_run)
    window = timedelta(minutes=policy.burst_window_minutes)
    since_ts = pd.Timestamp(since)
    tail = pd.DataFrame()
    after: tuple[Any, int] | None = None
    # In a dry run nothing is written, so leads judged again (window tail, later submissions) must be remembered.
    would_flag: set[int] = set()
    recent_leads: list[np.ndarray] = []
    with store.engine.connect() as conn:
        scope = crm.sweep_scope(conn, since - window)
    headers = rules.signal_headers(scope.keys) if scope.keys is not None else None
    keys = sorted({key for names in headers.values() for key in names}) if headers is not None else None
    while True:
        with store.engine.connect() as conn:
            chunk, after = _sweep_chunk(conn, scope, headers, keys, after, batch_size)
            if after is None:
                break
            frame = pd.concat([tail, chunk], ignore_index=True) if len(tail) else chunk
            known_bad = crm.tombstoned(conn, frame["email_hash"].dropna())
        result.chunks += 1
        is_recent = (chunk["submitted_at"] >= since_ts).to_numpy()
        result.submissions_checked += int(is_recent.sum())
        recent_leads.append(chunk["lead_id"].to_numpy(dtype="int64")[is_recent])
        verdicts = judge_submissions(frame, policy, known_bad)
        # Rows before `since` are context for bursts only; they judge nobody by themselves.
        recent = frame.loc[frame["submitted_at"] >= since_ts, "lead_id"].unique()
        verdicts = verdicts.loc[verdicts["lead_id"].isin(recent) & ~verdicts["lead_id"].isin(list(would_flag))]
        part = flag_leads(store, verdicts, policy=policy, now=now, by="spam-cleanup", flow_run_id=flow_run_id,
                          dry_run=dry_run, guard=guard)
        if dry_run:
            would_flag.update(part.lead_ids)
        result.add(part)
        last = frame["submitted_at"].iloc[-1]
        tail = frame.loc[frame["submitted_at"] > last - pd.Timedelta(window)]
    result.leads_checked = len(np.unique(np.concatenate(recent_leads))) if recent_leads else 0
    return result


def _sweep_chunk(conn: Any, scope: crm.SweepScope, headers: dict[str, list[str]] | None, keys: list[str] | None,
                 after: tuple[Any, int] | None, limit: int) -> tuple[pd.DataFrame, tuple[Any, int] | None]:
    """The next chunk of a sweep as the rules judge it, its signals extracted in SQL where the keys allow."""
    rows, extracted, after = crm.sweep_chunk(conn, scope, keys, after, limit)
    if after is None:
        return rows, None
    if extracted is None or headers is None:
        return rules.submission_frame(rows), after
    signals, needs = rules.extracted_signals(extracted, headers, len(rows))
    if needs.any():
        # A list, an object or a number where text is read: Python renders it, from the parsed payload.
        ids = rows["submission_id"].to_numpy(dtype="int64")[needs].tolist()
        parsed = rules.payload_signals(crm.payloads_by_id(conn, ids), headers)
        for column in parsed.columns:
            signals.loc[needs, column] = parsed[column].to_numpy()
    return rules.signal_rows(rows, signals), after


# --- restore --------------------------------------------------------------------------------------------------


def restore_spam(
    store: Store,
    *,
    email: str | None = None,
    reason: str | None = None,
    now: datetime,
    by: str = "cli",
    dry_run: bool = False,
) -> RestoreResult:
    """Bring flagged leads back (by email or by reason) with their status, tasks and messages; never flag again."""
    normalized, target_hash = rules.restore_target(email, reason)
    result = RestoreResult(dry_run=dry_run)
    with store.begin() as conn:
        leads = crm.lock_flagged(conn, email=normalized, reason=reason)
        if target_hash is not None and leads.empty:
            # The lead may already be purged: clearing its tombstone lets the address back in.
            tombstoned = crm.tombstoned(conn, [target_hash])
            result.tombstones_cleared = len(tombstoned)
            if not tombstoned:
                raise SpamCleanupError("no flagged lead or tombstone has that email")
            if not dry_run:
                crm.clear_tombstones(conn, [target_hash])
                crm.exempt(store, conn, pd.DataFrame({"email_hash": [target_hash], "lead_id": [None],
                                                      "reasons": [None]}), now, by)
            return result
        if leads.empty:
            return result
        flags = crm.latest_flag_details(conn, leads["lead_id"].astype("int64").tolist())
        leads, tasks, outbox = rules.restore_plan(leads, flags)
        result.restored = len(leads)
        result.by_reason.update(reason_counts(leads["reasons"]))
        result.sample = sample_rows(leads, ["reasons", "to_status"])
        if dry_run:
            result.tasks_reopened = crm.cancelled_tasks(conn, tasks)
            result.outbox_restored = crm.withdrawn_outbox(conn, outbox)
            result.tombstones_cleared = len(crm.tombstoned(conn, leads["hash"]))
            conn.rollback()
            return result
        result.tasks_reopened, result.outbox_restored = crm.unflag(store, conn, leads, tasks, outbox, now)
        result.tombstones_cleared += crm.clear_tombstones(conn, leads["hash"].tolist())
        crm.exempt(store, conn, pd.DataFrame({"email_hash": leads["hash"], "lead_id": leads["lead_id"],
                                              "reasons": leads["reasons"]}), now, by)
        store.insert_events(conn, rules.restore_events(leads, now, by))
    return result


# --- purge ----------------------------------------------------------------------------------------------------


def purge_expired_spam(
    store: Store,
    policy: SpamPolicy,
    *,
    now: datetime,
    batch_size: int = 50_000,
    dry_run: bool = False,
    review_limit: int | None = None,
) -> PurgeResult:
    """Delete leads flagged longer than the retention period, keeping a tombstone; hold worked leads for review."""
    result = PurgeResult(dry_run=dry_run)
    cutoff = now - timedelta(days=policy.retention_days)
    deleted: Counter = Counter()
    after = 0
    while True:
        with store.begin() as conn:
            leads = crm.lock_expired(conn, cutoff, after, batch_size)
            if leads.empty:
                break
            after = int(leads["lead_id"].iloc[-1])
            ids = leads["lead_id"].astype("int64").tolist()
            result.expired += len(ids)
            worked = crm.leads_with_done_tasks(conn, ids)
            before = {i: d.get("from_status") for i, d in crm.latest_flag_details(conn, ids).items()}
            leads["why"] = rules.review_reasons(leads, worked, before)
            review = leads.loc[leads["why"].notna()]
            result.review += len(review)
            room = SAMPLE_SIZE - len(result.review_sample) if review_limit is None else review_limit
            if room > 0 and len(review):
                result.review_sample.extend(sample_rows(review, ["reasons", "why"], limit=room))
            doomed = leads.loc[leads["why"].isna()]
            result.purged += len(doomed)
            result.by_reason.update(reason_counts(doomed["reasons"]))
            if dry_run or doomed.empty:
                conn.rollback()
                continue
            crm.add_tombstones(store, conn, rules.tombstone_rows(doomed, policy, now))
            crm.delete_leads(conn, doomed["lead_id"].astype("int64").tolist(), deleted)
    result.rows_deleted = dict(sorted(deleted.items()))
    return result


def spam_review_list(store: Store, policy: SpamPolicy, now: datetime) -> list[dict[str, Any]]:
    """Every expired spam lead a rep worked on, which a person must decide about (emails masked)."""
    result = purge_expired_spam(store, policy, now=now, dry_run=True, review_limit=10**9)
    return result.review_sample
