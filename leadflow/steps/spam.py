"""Spam cleanup in the CRM: sweep recent submissions, flag spam leads reversibly, restore them, purge expired ones."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table, bindparam, delete, false, func, null, select, true, tuple_, update

from leadflow.config.policy import load_policy
from leadflow.crm import assignments as capacity
from leadflow.crm.schema import Base, CrmTask, OutboxMessage, SpamExemption, SpamTombstone
from leadflow.crm.store import EVENTS, LEADS, SUBMISSIONS, Store, chunked, read_in, utc
from leadflow.domain.contract import CANONICAL_COLUMNS, COLUMN_ALIASES, fold_header
from leadflow.domain.normalize import EMAIL_PATTERN, normalize_email
from leadflow.domain.spam import REASON_CODES, RULE_COLUMNS, SpamPolicy, detect_spam, email_hash, mask_emails
from leadflow.domain.submissions import PAYLOAD_COLUMN

TASKS = CrmTask.__table__
OUTBOX = OutboxMessage.__table__
TOMBSTONES = SpamTombstone.__table__
EXEMPTIONS = SpamExemption.__table__

SPAM_STATUS = "spam"
# A won deal is never spam, whatever its submissions look like: these leads are never flagged.
NEVER_FLAGGED = ("converted", "won")
# A rep worked these leads: flagged ones are reported for review instead of being purged.
INTERACTION_STATUSES = ("converted", "won", "qualified", "discovery_call_booked")
FLAGGED_EVENT = "spam_flagged"
RESTORED_EVENT = "spam_restored"
STATUS_EVENT = "status_changed"
SIGNAL_COLUMNS = ("ip_address", "honeypot", "form_fill_seconds")
SAMPLE_SIZE = 20

Guard = Callable[[pd.DataFrame], None]


class SpamCleanupError(ValueError):
    """Bad input to a spam command (an unknown reason, an unreadable date, nothing to restore)."""


def load_spam_policy(name_or_path: str | Path | None = None) -> SpamPolicy:
    """The spam policy named by the settings (default `leadflow/config/policies/spam.json`), or this name or path."""
    if name_or_path is None:
        from leadflow.config.settings import get_settings

        name_or_path = get_settings().spam_policy
    return load_policy(SpamPolicy, name_or_path)


def parse_since(text: str | None, now: datetime, policy: SpamPolicy) -> datetime:
    """Start of the sweep window: an ISO date or time (naive means UTC), else `recheck_days` before now."""
    if text is None or not str(text).strip():
        return now - timedelta(days=policy.recheck_days)
    try:
        when = pd.Timestamp(str(text).strip())
    except ValueError as exc:
        raise SpamCleanupError(f"--since must be an ISO date or time, got {text!r}") from exc
    if pd.isna(when):
        raise SpamCleanupError(f"--since must be an ISO date or time, got {text!r}")
    when = when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)
    if when > pd.Timestamp(now):
        raise SpamCleanupError(f"--since {text} is in the future")
    return when.to_pydatetime()



def _in(column, values: Iterable[Any]) -> Iterator[Any]:
    """`column IN (...)` conditions over bounded parts of a long value list."""
    values = list(values)
    for part in chunked(values):
        yield column.in_(list(part))


def _sample(frame: pd.DataFrame, columns: Sequence[str], limit: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """A few rows for artifacts, with the email masked and no other personal data."""
    head = frame.head(limit)
    out = pd.DataFrame({"lead_id": head["lead_id"].astype("int64"), "email": mask_emails(head["email"])})
    for column in columns:
        out[column] = head[column]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in out.astype(object).to_dict("records")]


# --- results --------------------------------------------------------------------------------------------------


@dataclass
class FlagResult:
    """What a spam check (nightly sweep or intake batch) found and did; in a dry run, what it would do."""

    dry_run: bool = False
    submissions_checked: int = 0
    leads_checked: int = 0
    flagged: int = 0
    by_reason: Counter = field(default_factory=Counter)
    exempt: int = 0
    tasks_cancelled: int = 0
    outbox_withdrawn: int = 0
    chunks: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    # The leads of one flag_leads call, for callers that track them; never summed or published.
    lead_ids: list[int] = field(default_factory=list, repr=False)

    def add(self, other: FlagResult) -> None:
        """Fold the result of one chunk into this one."""
        for name in ("flagged", "exempt", "tasks_cancelled", "outbox_withdrawn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_reason.update(other.by_reason)
        self.sample.extend(other.sample[: max(0, SAMPLE_SIZE - len(self.sample))])

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the sample are masked)."""
        data = asdict(self)
        data.pop("lead_ids")
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


@dataclass
class PurgeResult:
    """Expired spam leads: purged (tombstone kept) or held for review because a rep worked them."""

    dry_run: bool = False
    expired: int = 0
    purged: int = 0
    by_reason: Counter = field(default_factory=Counter)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    review: int = 0
    review_sample: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the review sample are masked)."""
        data = asdict(self)
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


@dataclass
class RestoreResult:
    """Leads brought back from spam, with their tasks and messages, and tombstones cleared."""

    dry_run: bool = False
    restored: int = 0
    by_reason: Counter = field(default_factory=Counter)
    tasks_reopened: int = 0
    outbox_restored: int = 0
    tombstones_cleared: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the sample are masked)."""
        data = asdict(self)
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


# --- reading submissions with their anti-spam signals -----------------------------------------------------------


def _canonical(header: str) -> str | None:
    folded = fold_header(header)
    return folded if folded in CANONICAL_COLUMNS else COLUMN_ALIASES.get(folded)


def _signal_value(column: str, value: Any) -> Any:
    """A payload value as the spam rules read it; a JSON `false` honeypot means the field was left alone."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if column == "honeypot" and isinstance(value, bool):
        return "true" if value else None
    return value if column == "form_fill_seconds" else str(value)


def payload_signals(payloads: Sequence[Any]) -> pd.DataFrame:
    """ip_address, honeypot and form_fill_seconds out of raw payloads, under canonical names or known aliases."""
    parsed = [json.loads(p) if isinstance(p, str) else (p or {}) for p in payloads]
    keys: set[str] = set()
    for payload in parsed:
        keys.update(payload)
    headers: dict[str, list[str]] = {column: [] for column in SIGNAL_COLUMNS}
    # Exact canonical names first, then aliases, as intake resolves them.
    for key in sorted(keys, key=lambda k: fold_header(k) not in CANONICAL_COLUMNS):
        target = _canonical(key)
        if target in headers:
            headers[target].append(key)
    columns: dict[str, list[Any]] = {}
    for column, names in headers.items():
        values: list[Any] = [None] * len(parsed)
        if names:
            for i, payload in enumerate(parsed):
                for name in names:
                    value = _signal_value(column, payload.get(name))
                    if value is not None:
                        values[i] = value
                        break
        columns[column] = values
    frame = pd.DataFrame({c: pd.Series(v, dtype="object") for c, v in columns.items()})
    frame["ip_address"] = frame["ip_address"].astype("string")
    frame["honeypot"] = frame["honeypot"].astype("string")
    frame["form_fill_seconds"] = pd.to_numeric(frame["form_fill_seconds"], errors="coerce").astype("float64")
    return frame


_READ_COLUMNS = (
    SUBMISSIONS.c.id.label("submission_id"), SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at,
    SUBMISSIONS.c.source, SUBMISSIONS.c.message, SUBMISSIONS.c.raw_payload, LEADS.c.email, LEADS.c.email_domain,
    LEADS.c.first_name, LEADS.c.last_name, LEADS.c.status, LEADS.c.is_spam,
)


def _submissions_query():
    return select(*_READ_COLUMNS).join_from(SUBMISSIONS, LEADS, SUBMISSIONS.c.lead_id == LEADS.c.id)


def _typed_submissions(frame: pd.DataFrame) -> pd.DataFrame:
    """Submission columns of a judged frame in the types the spam rules expect."""
    for column in ("source", "message", "ip_address", "honeypot"):
        frame[column] = frame[column].astype("string")
    # Microseconds, as both databases store them (a chunk in memory may hold finer times).
    frame["submitted_at"] = utc(frame["submitted_at"]).dt.as_unit("us")
    frame["form_fill_seconds"] = pd.to_numeric(frame["form_fill_seconds"], errors="coerce").astype("float64")
    return frame


def _typed_leads(frame: pd.DataFrame) -> pd.DataFrame:
    """Lead columns of a judged frame in the types the spam rules expect, with each email's hash."""
    for column in ("email", "email_domain", "first_name", "last_name", "status"):
        frame[column] = frame[column].astype("string")
    frame["is_spam"] = frame["is_spam"].astype(bool)
    # One hash per distinct email (a lead's submissions share it), spread back by position.
    codes, emails = pd.factorize(frame["email"])
    hashes = email_hash(pd.Series(emails, dtype="string")).to_numpy(dtype=object, na_value=None)
    frame["email_hash"] = pd.Series(np.append(hashes, None)[codes], index=frame.index, dtype="string")
    return frame


def _with_signals(frame: pd.DataFrame, payloads: Sequence[Any]) -> pd.DataFrame:
    """The frame with the anti-spam signals of each row's raw payload."""
    signals = payload_signals(payloads)
    for column in SIGNAL_COLUMNS:
        frame[column] = signals[column].to_numpy()
    return frame


def _submission_frame(rows: list[Any]) -> pd.DataFrame:
    """Rows of the submissions query as the frame the spam rules judge (one row per submission)."""
    names = [c.name for c in _READ_COLUMNS]
    raw = pd.DataFrame.from_records([tuple(r) for r in rows], columns=names)
    return _typed_leads(_typed_submissions(_with_signals(raw.drop(columns=["raw_payload"]),
                                                         raw["raw_payload"].tolist())))


# An intake batch's check reads single tables by index and joins in pandas: joined in SQL, PostgreSQL without
# statistics on a freshly loaded table (a backfill into a new CRM) planned a nested loop over every lead.
_STORED_KEYS = (SUBMISSIONS.c.id, SUBMISSIONS.c.idempotency_key, SUBMISSIONS.c.lead_id)
_STORED_ROWS = (SUBMISSIONS.c.id, SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.source,
                SUBMISSIONS.c.message, SUBMISSIONS.c.raw_payload)
_LEAD_COLUMNS = (LEADS.c.id, LEADS.c.email, LEADS.c.email_domain, LEADS.c.first_name, LEADS.c.last_name,
                 LEADS.c.status, LEADS.c.is_spam)
_FROM_CHUNK = ("submitted_at", "source", "message", *SIGNAL_COLUMNS)


def _stored_rows(conn: Connection, condition, values: list[Any]) -> pd.DataFrame:
    """Stored submissions matching a condition on an IN-list, with the anti-spam signals of their raw payloads."""
    names = ["submission_id", *(c.name for c in _STORED_ROWS[1:])]
    raw = pd.DataFrame(read_in(conn, select(*_STORED_ROWS).where(condition), values), columns=names)
    return _typed_submissions(_with_signals(raw.drop(columns=["raw_payload"]), raw["raw_payload"].tolist()))


def _from_chunk(stored: pd.DataFrame, subs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The stored submissions that are rows of the chunk, with their fields from it; and which stored rows they are."""
    # The first row of each key is the one that was stored (later repeats in the chunk added nothing).
    keys = subs["idempotency_key"]
    firsts = np.flatnonzero(~keys.duplicated().to_numpy())
    found = pd.Index(keys.to_numpy(dtype=object)[firsts]).get_indexer(stored["idempotency_key"].to_numpy(dtype=object))
    mine = found >= 0
    rows = firsts[found[mine]]
    here = stored.loc[mine, ["submission_id", "lead_id"]].reset_index(drop=True)
    for column in _FROM_CHUNK:
        here[column] = subs[column].iloc[rows].reset_index(drop=True)
    filled = here["honeypot"].notna().to_numpy()
    if filled.any():
        # The payload decides a filled honeypot: a typed `false` reads "False" in the chunk but was left alone.
        payloads = subs[PAYLOAD_COLUMN].iloc[rows[filled]].tolist()
        here.loc[filled, "honeypot"] = payload_signals(payloads)["honeypot"].to_numpy()
    return _typed_submissions(here), mine


def _batch_frame(conn: Connection, lead_ids: list[int], batch_id: str, subs: pd.DataFrame | None) -> pd.DataFrame:
    """An intake batch's stored submissions of these leads, with the leads as they are now, as the rules judge them.

    With the chunk in memory (`subs`), its rows are taken from it: only their keys are read back (which of them
    this batch stored), not their raw payloads. Submissions of these leads stored by an earlier chunk of the same
    batch are judged with them, read from the database.
    """
    values = bindparam("values", expanding=True)
    in_batch = (SUBMISSIONS.c.batch_id == batch_id) & SUBMISSIONS.c.lead_id.in_(values)
    if subs is None:
        parts = [_stored_rows(conn, in_batch, lead_ids)]
    else:
        stored = pd.DataFrame(read_in(conn, select(*_STORED_KEYS).where(in_batch), lead_ids, raw=True),
                              columns=["submission_id", "idempotency_key", "lead_id"])
        here, mine = _from_chunk(stored, subs)
        parts = [here]
        earlier = stored.loc[~mine, "submission_id"].tolist()
        if earlier:
            parts.append(_stored_rows(conn, SUBMISSIONS.c.id.in_(values), earlier))
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if frame.empty:
        return frame
    # Raw rows: _typed_leads gives every column its type (is_spam may come as 0/1).
    leads = pd.DataFrame(read_in(conn, select(*_LEAD_COLUMNS).where(LEADS.c.id.in_(values)),
                                  sorted(frame["lead_id"].astype("int64").unique().tolist()), raw=True),
                         columns=["lead_id", *(c.name for c in _LEAD_COLUMNS[1:])])
    frame = frame.merge(_typed_leads(leads), on="lead_id", how="inner")
    return frame.sort_values("submission_id", kind="stable", ignore_index=True)


def _hashes_in(conn: Connection, table: Table, hashes: Iterable[str]) -> set[str]:
    """Which of these email hashes the table (tombstones or exemptions) holds."""
    wanted = set(hashes.unique().tolist() if isinstance(hashes, pd.Series) else hashes)
    if not wanted:
        return set()
    # These tables stay small (purged or restored addresses): when one holds no more rows than there are hashes
    # to look up, reading it whole is cheaper than thousands of bound IN-list values, and reads no more rows.
    few = conn.execute(select(table.c.email_hash).limit(len(wanted) + 1)).scalars().all()
    if len(few) <= len(wanted):
        return wanted.intersection(few)
    stmt = select(table.c.email_hash).where(table.c.email_hash.in_(bindparam("values", expanding=True)))
    return {row[0] for row in read_in(conn, stmt, sorted(wanted), raw=True)}


# --- judging and flagging ---------------------------------------------------------------------------------------


def judge_submissions(frame: pd.DataFrame, policy: SpamPolicy, known_bad: set[str]) -> pd.DataFrame:
    """Spam verdict per lead from its submissions in the frame: lead_id, email, email_hash, status, reasons."""
    verdict = detect_spam(frame, policy, known_bad)
    spam = verdict.loc[verdict["is_spam"]]
    if spam.empty:
        return pd.DataFrame(columns=["lead_id", "email", "email_hash", "status", "is_spam", "reasons"])
    fired = spam[list(RULE_COLUMNS)].groupby(frame.loc[spam.index, "lead_id"]).any()
    # Each lead's rules as bits: one label per distinct combination instead of one string join per lead.
    bits = np.zeros(len(fired), dtype=np.int64)
    for k, rule in enumerate(RULE_COLUMNS):
        bits |= fired[rule].to_numpy(dtype=bool).astype(np.int64) << k
    labels = {int(b): ",".join(sorted(c for k, c in enumerate(REASON_CODES) if int(b) >> k & 1))
              for b in np.unique(bits)}
    reasons = pd.Series([labels[int(b)] for b in bits], index=fired.index, dtype=object)
    leads = frame.loc[spam.index].drop_duplicates("lead_id").set_index("lead_id")
    out = leads.loc[reasons.index, ["email", "email_hash", "status", "is_spam"]].assign(reasons=reasons)
    return out.reset_index()


def _lock_leads(conn: Connection, store: Store, ids: list[int]) -> pd.DataFrame:
    """Current status of these leads, locked for the rest of the transaction (PostgreSQL; SQLite locks it all)."""
    rows: list[Any] = []
    columns = (LEADS.c.id, LEADS.c.status, LEADS.c.status_reason, LEADS.c.is_spam)
    for condition in _in(LEADS.c.id, ids):
        stmt = select(*columns).where(condition)
        if store.dialect == "postgresql":
            stmt = stmt.with_for_update()
        rows.extend(tuple(r) for r in conn.execute(stmt))
    return pd.DataFrame(rows, columns=["lead_id", "current_status", "current_reason", "current_is_spam"])


def _ids_by_lead(conn: Connection, table: Table, lead_ids: list[int], status: str) -> dict[int, list[int]]:
    """Ids of the rows of a lead-owned table (tasks, outbox) in one status, by lead."""
    found: dict[int, list[int]] = {}
    for condition in _in(table.c.lead_id, lead_ids):
        stmt = select(table.c.id, table.c.lead_id).where(condition, table.c.status == status).order_by(table.c.id)
        for row_id, lead_id in conn.execute(stmt):
            found.setdefault(int(lead_id), []).append(int(row_id))
    return found


def _set_status(conn: Connection, table: Table, ids: list[int], old: str, new: str) -> int:
    """Move rows from one status to another; rows no longer in the old status are left alone."""
    changed = 0
    for condition in _in(table.c.id, ids):
        changed += conn.execute(update(table).where(condition, table.c.status == old).values(status=new)).rowcount
    return changed


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
) -> FlagResult:
    """Move spam leads out of the pipeline: status spam, open tasks cancelled, pending outbox withdrawn, events."""
    result = FlagResult(dry_run=dry_run)
    flaggable = ~verdicts["is_spam"].astype(bool) & ~verdicts["status"].isin([*NEVER_FLAGGED, SPAM_STATUS])
    candidates = verdicts.loc[flaggable]
    if candidates.empty:
        return result
    with store.begin() as conn:
        exempt = _hashes_in(conn, EXEMPTIONS, candidates["email_hash"].dropna())
        is_exempt = candidates["email_hash"].isin(list(exempt))
        result.exempt = int(is_exempt.sum())
        candidates = candidates.loc[~is_exempt]
        current = _lock_leads(conn, store, candidates["lead_id"].astype("int64").tolist())
        plan = candidates.merge(current, on="lead_id")
        # Another run (or a rep) may have changed the lead since it was read: judge what it is now.
        plan = plan.loc[~plan["current_is_spam"].astype(bool)
                        & ~plan["current_status"].isin([*NEVER_FLAGGED, SPAM_STATUS])]
        plan = plan.rename(columns={"current_status": "previous_status", "current_reason": "previous_reason"})
        if plan.empty:
            return result
        if guard is not None:
            guard(plan)
        ids = plan["lead_id"].astype("int64").tolist()
        result.lead_ids = ids
        tasks = _ids_by_lead(conn, TASKS, ids, "open")
        outbox = _ids_by_lead(conn, OUTBOX, ids, "pending")
        result.flagged = len(plan)
        result.by_reason.update(code for reasons in plan["reasons"] for code in reasons.split(","))
        result.tasks_cancelled = sum(len(v) for v in tasks.values())
        result.outbox_withdrawn = sum(len(v) for v in outbox.values())
        result.sample = _sample(plan, ["reasons", "previous_status"])
        if dry_run:
            conn.rollback()
            return result
        # IS NOT DISTINCT FROM is `=` for these non-null statuses, but no index serves it: PostgreSQL finds each
        # row by primary key. With `=`, a table without statistics yet (a backfill into a new CRM) got a plan that
        # walked ix_leads_status through every new lead for each flagged one.
        stmt = (
            update(LEADS)
            .where(LEADS.c.id == bindparam("b_id"), LEADS.c.is_spam == false(),
                   LEADS.c.status.is_not_distinct_from(bindparam("b_old")))
            .values(status=bindparam("b_status"), status_reason=bindparam("b_status_reason"), is_spam=true(),
                    spam_reasons=bindparam("b_reasons"), spam_flagged_at=bindparam("b_now"),
                    updated_at=bindparam("b_now"))
        )
        store.bulk(conn, stmt, pd.DataFrame({
            "b_id": plan["lead_id"].to_numpy(), "b_old": plan["previous_status"].to_numpy(), "b_status": SPAM_STATUS,
            "b_status_reason": "spam", "b_reasons": plan["reasons"].to_numpy(), "b_now": pd.Timestamp(now),
        }))
        _set_status(conn, TASKS, [i for v in tasks.values() for i in v], "open", "cancelled")
        _set_status(conn, OUTBOX, [i for v in outbox.values() for i in v], "pending", "withdrawn")
        # Spam is no work for its rep: the slot it held goes back (a restore takes it again).
        capacity.release_capacity(conn, ids)
        status_details = [
            json.dumps({"from": old, "to": SPAM_STATUS, "reason": "spam", "by": by}) for old in plan["previous_status"]
        ]
        flag_details = [
            json.dumps({
                "reasons": reasons.split(","), "policy_version": policy.version, "by": by,
                "from_status": old, "from_reason": None if pd.isna(old_reason) else old_reason,
                "cancelled_tasks": tasks.get(int(lead_id), []), "withdrawn_outbox": outbox.get(int(lead_id), []),
            })
            for lead_id, reasons, old, old_reason in zip(plan["lead_id"], plan["reasons"], plan["previous_status"],
                                                         plan["previous_reason"], strict=True)
        ]
        events = pd.DataFrame({
            "lead_id": [*ids, *ids],
            "event_type": [STATUS_EVENT] * len(ids) + [FLAGGED_EVENT] * len(ids),
            "occurred_at": now,
            "batch_id": batch_id,
            "flow_run_id": flow_run_id,
            "details": status_details + flag_details,
        })
        store.insert_events(conn, events)
    return result


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
) -> FlagResult:
    """Judge an intake batch's new submissions (per-batch rules plus tombstoned addresses) and flag its spam.

    `subs` is the normalized chunk the batch just stored, when the caller still holds it: the submissions are
    then not read back and their raw payloads not parsed again (the same rows and verdicts, much cheaper).
    """
    result = FlagResult()
    ids = sorted({int(i) for i in lead_ids})
    with store.engine.connect() as conn:
        frame = _batch_frame(conn, ids, batch_id, subs)
        if frame.empty:
            return result
        known_bad = _hashes_in(conn, TOMBSTONES, frame["email_hash"].dropna())
    result.submissions_checked = len(frame)
    result.leads_checked = int(frame["lead_id"].nunique())
    result.chunks = 1
    verdicts = judge_submissions(frame, policy, known_bad)
    result.add(flag_leads(store, verdicts, policy=policy, now=now, by="intake", flow_run_id=flow_run_id,
                          batch_id=batch_id, guard=guard))
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
    start = since - window
    since_ts = pd.Timestamp(since)
    tail = pd.DataFrame()
    after: tuple[datetime, int] | None = None
    # In a dry run nothing is written, so leads judged again (window tail, later submissions) must be remembered.
    would_flag: set[int] = set()
    with store.engine.connect() as conn:
        result.leads_checked = conn.execute(
            select(func.count(func.distinct(SUBMISSIONS.c.lead_id))).where(SUBMISSIONS.c.submitted_at >= since)
        ).scalar_one()
    while True:
        stmt = _submissions_query().where(SUBMISSIONS.c.submitted_at >= start)
        if after is not None:
            stmt = stmt.where(tuple_(SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.id) > tuple_(*after))
        stmt = stmt.order_by(SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.id).limit(batch_size)
        with store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            if not rows:
                break
            after = (rows[-1].submitted_at, rows[-1].submission_id)
            chunk = _submission_frame(rows)
            frame = pd.concat([tail, chunk], ignore_index=True) if len(tail) else chunk
            known_bad = _hashes_in(conn, TOMBSTONES, frame["email_hash"].dropna())
        del rows
        result.chunks += 1
        result.submissions_checked += int((chunk["submitted_at"] >= since_ts).sum())
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
    return result


# --- restore --------------------------------------------------------------------------------------------------


def _latest_flag_details(conn: Connection, lead_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Details of each lead's latest spam_flagged event (what to put back on restore)."""
    found: dict[int, dict[str, Any]] = {}
    for condition in _in(EVENTS.c.lead_id, lead_ids):
        stmt = (select(EVENTS.c.lead_id, EVENTS.c.details)
                .where(condition, EVENTS.c.event_type == FLAGGED_EVENT).order_by(EVENTS.c.id))
        for lead_id, details in conn.execute(stmt):
            found[int(lead_id)] = json.loads(details) if isinstance(details, str) else dict(details or {})
    return found


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
    if (email is None) == (reason is None):
        raise SpamCleanupError("give exactly one of an email or --reason")
    if reason is not None and reason not in REASON_CODES:
        raise SpamCleanupError(f"unknown spam reason {reason!r}; known: {', '.join(REASON_CODES)}")
    result = RestoreResult(dry_run=dry_run)
    condition = LEADS.c.is_spam == true()
    target_hash: str | None = None
    if email is not None:
        normalized = normalize_email(pd.Series([email], dtype="string")).iloc[0]
        if pd.isna(normalized) or not re.fullmatch(EMAIL_PATTERN, normalized):
            raise SpamCleanupError("that is not an email address")
        target_hash = str(email_hash(pd.Series([normalized], dtype="string")).iloc[0])
        condition = condition & (LEADS.c.email == normalized)
    else:
        padded = "," + LEADS.c.spam_reasons + ","
        condition = condition & padded.like(f"%,{reason},%")
    with store.begin() as conn:
        stmt = select(LEADS.c.id, LEADS.c.email, LEADS.c.status, LEADS.c.spam_reasons).where(condition)
        if store.dialect == "postgresql":
            stmt = stmt.with_for_update()
        leads = pd.DataFrame([tuple(r) for r in conn.execute(stmt.order_by(LEADS.c.id))],
                             columns=["lead_id", "email", "status", "reasons"])
        if target_hash is not None and leads.empty:
            # The lead may already be purged: clearing its tombstone lets the address back in.
            tombstoned = _hashes_in(conn, TOMBSTONES, [target_hash])
            result.tombstones_cleared = len(tombstoned)
            if not tombstoned:
                raise SpamCleanupError("no flagged lead or tombstone has that email")
            if not dry_run:
                conn.execute(delete(TOMBSTONES).where(TOMBSTONES.c.email_hash == target_hash))
                _exempt(conn, store, pd.DataFrame({"email_hash": [target_hash], "lead_id": [None],
                                                   "reasons": [None]}), now, by)
            return result
        if leads.empty:
            return result
        ids = leads["lead_id"].astype("int64").tolist()
        flags = _latest_flag_details(conn, ids)
        leads["hash"] = email_hash(leads["email"].astype("string"))
        back = [flags.get(i, {}) for i in ids]
        leads["to_status"] = [(d.get("from_status") or "new") if s == SPAM_STATUS else s
                              for d, s in zip(back, leads["status"], strict=True)]
        leads["to_reason"] = [d.get("from_reason") for d in back]
        tasks = [t for d in back for t in d.get("cancelled_tasks", [])]
        outbox = [o for d in back for o in d.get("withdrawn_outbox", [])]
        result.restored = len(leads)
        result.by_reason.update(code for reasons in leads["reasons"].dropna() for code in reasons.split(","))
        result.sample = _sample(leads, ["reasons", "to_status"])
        if dry_run:
            result.tasks_reopened = _count_in_status(conn, TASKS, tasks, "cancelled")
            result.outbox_restored = _count_in_status(conn, OUTBOX, outbox, "withdrawn")
            result.tombstones_cleared = len(_hashes_in(conn, TOMBSTONES, leads["hash"]))
            conn.rollback()
            return result
        stmt = (
            update(LEADS)
            .where(LEADS.c.id == bindparam("b_id"), LEADS.c.is_spam == true())
            .values(status=bindparam("b_status"), status_reason=bindparam("b_reason"), is_spam=false(),
                    spam_reasons=null(), spam_flagged_at=null(), updated_at=bindparam("b_now"))
        )
        store.bulk(conn, stmt, pd.DataFrame({"b_id": ids, "b_status": leads["to_status"].to_numpy(),
                                             "b_reason": leads["to_reason"].to_numpy(), "b_now": pd.Timestamp(now)}))
        result.tasks_reopened = _set_status(conn, TASKS, tasks, "cancelled", "open")
        capacity.follow_status_changes(conn, list(zip(ids, leads["status"], leads["to_status"], strict=True)))
        result.outbox_restored = _set_status(conn, OUTBOX, outbox, "withdrawn", "pending")
        for condition in _in(TOMBSTONES.c.email_hash, leads["hash"].tolist()):
            result.tombstones_cleared += conn.execute(delete(TOMBSTONES).where(condition)).rowcount
        _exempt(conn, store, pd.DataFrame({"email_hash": leads["hash"], "lead_id": leads["lead_id"],
                                           "reasons": leads["reasons"]}), now, by)
        events = pd.DataFrame({
            "lead_id": [*ids, *ids],
            "event_type": [STATUS_EVENT] * len(ids) + [RESTORED_EVENT] * len(ids),
            "occurred_at": now,
            "batch_id": None,
            "flow_run_id": None,
            "details": [json.dumps({"from": old, "to": new, "reason": "spam_restored", "by": by})
                        for old, new in zip(leads["status"], leads["to_status"], strict=True)]
            + [json.dumps({"reasons": (r or "").split(",") if r else [], "by": by}) for r in leads["reasons"]],
        })
        store.insert_events(conn, events)
    return result


def _count_in_status(conn: Connection, table: Table, ids: list[int], status: str) -> int:
    count = 0
    for condition in _in(table.c.id, ids):
        count += conn.execute(select(func.count()).where(condition, table.c.status == status)).scalar_one()
    return count


def _exempt(conn: Connection, store: Store, rows: pd.DataFrame, now: datetime, by: str) -> None:
    """Remember restored addresses so that no later run flags them again (upsert by email hash)."""
    frame = rows.assign(restored_at=pd.Timestamp(now), restored_by=by[:200])
    stmt = store.insert(EXEMPTIONS).values({c: bindparam(c) for c in frame.columns})
    stmt = stmt.on_conflict_do_update(
        index_elements=["email_hash"],
        set_={"lead_id": stmt.excluded.lead_id, "reasons": stmt.excluded.reasons,
              "restored_at": stmt.excluded.restored_at, "restored_by": stmt.excluded.restored_by},
    )
    store.bulk(conn, stmt, frame)


def restored_since(store: Store, since: datetime) -> int:
    """How many restores were recorded since a time (for the nightly summary)."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(EVENTS).where(
            EVENTS.c.event_type == RESTORED_EVENT, EVENTS.c.occurred_at >= since)).scalar_one()


# --- purge ----------------------------------------------------------------------------------------------------


def _children(table: Table) -> list[tuple[Table, Any]]:
    """Tables with a foreign key to this table's id, and that key column (found in the schema, so new ones count)."""
    found = []
    for child in Base.metadata.sorted_tables:
        if child is table:
            continue
        for fk in child.foreign_keys:
            if fk.column.table is table:
                found.append((child, fk.parent))
    return found


def _delete_rows(conn: Connection, table: Table, ids: list[int], deleted: Counter) -> None:
    """Delete rows by id after every row that references them, depth first."""
    for child, column in _children(table):
        child_ids: list[int] = []
        for condition in _in(column, ids):
            child_ids.extend(conn.execute(select(child.c.id).where(condition)).scalars())
        if child_ids:
            _delete_rows(conn, child, child_ids, deleted)
    for condition in _in(table.c.id, ids):
        deleted[table.name] += conn.execute(delete(table).where(condition)).rowcount


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
            stmt = (
                select(LEADS.c.id, LEADS.c.email, LEADS.c.status, LEADS.c.spam_reasons, LEADS.c.spam_flagged_at)
                .where(LEADS.c.is_spam == true(), LEADS.c.spam_flagged_at < cutoff, LEADS.c.id > after)
                .order_by(LEADS.c.id).limit(batch_size)
            )
            if store.dialect == "postgresql":
                stmt = stmt.with_for_update()
            leads = pd.DataFrame([tuple(r) for r in conn.execute(stmt)],
                                 columns=["lead_id", "email", "status", "reasons", "flagged_at"])
            if leads.empty:
                break
            after = int(leads["lead_id"].iloc[-1])
            ids = leads["lead_id"].astype("int64").tolist()
            result.expired += len(ids)
            worked = {lead_id for cond in _in(TASKS.c.lead_id, ids)
                      for lead_id in conn.execute(select(TASKS.c.lead_id).where(cond, TASKS.c.status == "done"))
                      .scalars()}
            before = {i: d.get("from_status") for i, d in _latest_flag_details(conn, ids).items()}
            leads["why"] = [
                "task_done" if i in worked
                else f"status:{before.get(i) or s}" if (before.get(i) or s) in INTERACTION_STATUSES else None
                for i, s in zip(ids, leads["status"], strict=True)
            ]
            review = leads.loc[leads["why"].notna()]
            result.review += len(review)
            room = SAMPLE_SIZE - len(result.review_sample) if review_limit is None else review_limit
            if room > 0 and len(review):
                result.review_sample.extend(_sample(review, ["reasons", "why"], limit=room))
            doomed = leads.loc[leads["why"].isna()]
            result.purged += len(doomed)
            result.by_reason.update(c for reasons in doomed["reasons"].dropna() for c in reasons.split(","))
            if dry_run or doomed.empty:
                conn.rollback()
                continue
            tombstones = pd.DataFrame({
                "email_hash": email_hash(doomed["email"].astype("string")).to_numpy(),
                "reasons": doomed["reasons"].fillna("").to_numpy(),
                "policy_version": policy.version,
                "flagged_at": utc(doomed["flagged_at"]).to_numpy(),
                "purged_at": pd.Timestamp(now),
            })
            tombstones["flagged_at"] = utc(tombstones["flagged_at"])
            ins = store.insert(TOMBSTONES).values({c: bindparam(c) for c in tombstones.columns})
            ins = ins.on_conflict_do_update(
                index_elements=["email_hash"],
                set_={"reasons": ins.excluded.reasons, "policy_version": ins.excluded.policy_version,
                      "flagged_at": ins.excluded.flagged_at, "purged_at": ins.excluded.purged_at},
            )
            store.bulk(conn, ins, tombstones)
            _delete_rows(conn, LEADS, doomed["lead_id"].astype("int64").tolist(), deleted)
    result.rows_deleted = dict(sorted(deleted.items()))
    return result


def spam_review_list(store: Store, policy: SpamPolicy, now: datetime) -> list[dict[str, Any]]:
    """Every expired spam lead a rep worked on, which a person must decide about (emails masked)."""
    result = purge_expired_spam(store, policy, now=now, dry_run=True, review_limit=10**9)
    return result.review_sample
