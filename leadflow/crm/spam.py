"""Spam handling's SQL: reading submissions to judge, flag and restore writes, exemptions, tombstones, the purge.

The decisions (what is spam, what a flag or a restore puts where, what is purged) are in leadflow/domain/spam.py;
leadflow/steps/spam.py runs them in order. Functions that take a `conn` run inside the caller's transaction, so
one step's reads and writes commit together; on PostgreSQL the leads a write will change are locked when read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any

import pandas as pd
from sqlalchemy import (
    Connection,
    Select,
    String,
    Table,
    bindparam,
    delete,
    false,
    func,
    null,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url

from leadflow.crm import assignments as capacity
from leadflow.crm.schema import Base, CrmTask, OutboxMessage, SpamExemption, SpamTombstone
from leadflow.crm.store import (
    EVENTS,
    LEADS,
    SUBMISSIONS,
    DatabaseError,
    Store,
    chunked,
    database_url,
    make_engine,
    read_in,
)
from leadflow.domain.spam import (
    FLAGGED_EVENT,
    JSON_FALSE,
    JSON_NULL,
    JSON_NUMBER,
    JSON_OTHER,
    JSON_TEXT,
    JSON_TRUE,
    RESTORED_EVENT,
    SPAM_STATUS,
)

TASKS = CrmTask.__table__
OUTBOX = OutboxMessage.__table__
TOMBSTONES = SpamTombstone.__table__
EXEMPTIONS = SpamExemption.__table__


def _in(column, values: Iterable[Any]) -> Iterator[Any]:
    """`column IN (...)` conditions over bounded parts of a long value list."""
    values = list(values)
    for part in chunked(values):
        yield column.in_(list(part))


def _locked(conn: Connection, stmt: Select) -> Select:
    """The statement locking its rows for the rest of the transaction (PostgreSQL; SQLite locks it all)."""
    return stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt


# --- reading submissions to judge -------------------------------------------------------------------------------

_READ_COLUMNS = (
    SUBMISSIONS.c.id.label("submission_id"), SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at,
    SUBMISSIONS.c.source, SUBMISSIONS.c.message, SUBMISSIONS.c.raw_payload, LEADS.c.email, LEADS.c.email_domain,
    LEADS.c.first_name, LEADS.c.last_name, LEADS.c.status, LEADS.c.is_spam,
)


# --- the nightly sweep's read: signals extracted in SQL ---------------------------------------------------------

# PostgreSQL's jsonb_typeof in the words leadflow/domain/spam.py reads (booleans: by their text).
_JSON_TYPES = {"string": JSON_TEXT, "number": JSON_NUMBER, "null": JSON_NULL, "array": JSON_OTHER,
               "object": JSON_OTHER}
_SWEEP_COLUMNS = ("submission_id", "lead_id", "submitted_at", "source", "message", "email", "email_domain",
                  "first_name", "last_name", "status", "is_spam")


@dataclass(frozen=True)
class SweepScope:
    """What one sweep reads: submissions from `start` up to id `last_id` (those stored when it began), and the
    top-level keys their raw payloads have (None: a payload SQLite cannot parse, so payloads are read whole)."""

    start: datetime
    last_id: int
    keys: tuple[str, ...] | None


def sweep_scope(conn: Connection, start: datetime) -> SweepScope:
    """The submissions a sweep from `start` reads, and the keys of their payloads (the headers of their files)."""
    last_id = conn.execute(select(func.coalesce(func.max(SUBMISSIONS.c.id), 0))).scalar_one()
    if conn.dialect.name == "postgresql":
        sql = ("SELECT DISTINCT jsonb_object_keys(raw_payload) FROM lead_submissions "
               "WHERE submitted_at >= :start AND id <= :last")
    else:
        sql = ("SELECT DISTINCT j.key FROM lead_submissions AS s, json_each(s.raw_payload) AS j "
               "WHERE s.submitted_at >= :start AND s.id <= :last")
    stmt = text(sql).bindparams(bindparam("start", type_=SUBMISSIONS.c.submitted_at.type), bindparam("last"))
    try:
        keys: tuple[str, ...] | None = tuple(sorted(str(k) for k in conn.execute(stmt, {"start": start,
                                                                                        "last": last_id}).scalars()))
    except DatabaseError:
        if conn.dialect.name == "postgresql":
            raise
        # Only SQLite can hold text that is not JSON (PostgreSQL's JSONB refuses it): read such payloads whole.
        keys = None
    return SweepScope(start, int(last_id), keys)


def _extracts(dialect: str, keys: Sequence[str]) -> list[Any]:
    """Each payload key's value (and on PostgreSQL its JSON type) as SQL columns; the payload is parsed once a row."""
    payload = SUBMISSIONS.c.raw_payload
    columns: list[Any] = []
    for i, key in enumerate(keys):
        if dialect == "postgresql":
            field = bindparam(f"k{i}", key, type_=String)
            value = payload.op("->>")(field)
            kind = func.jsonb_typeof(payload.op("->")(field))
            columns += [value.label(f"v{i}"), kind.label(f"t{i}")]
        else:
            # A quoted label takes any key but one with a double quote, which SQLite's paths cannot spell. The
            # value's Python type tells its JSON type (json_type would cost a fifth of the read): see _sqlite_kinds.
            path = bindparam(f"k{i}", f'$."{key}"', type_=String)
            columns.append(func.json_extract(payload, path).label(f"v{i}"))
    return columns


def _sqlite_kinds(values: Sequence[Any]) -> list[str | None]:
    """JSON types of SQLite json_extract values: text, a number, or (a list or object as JSON text) other.

    true and false come as 1 and 0, so they read as numbers: a fill time takes them as 1.0 and 0.0 either way,
    and a number as IP or honeypot is rendered by Python from the parsed payload. Text that starts like a list or
    an object goes to Python too. None is a null or a missing key: both mean the next key is tried.
    """
    return [None if v is None else JSON_NUMBER if not isinstance(v, str)
            else JSON_OTHER if v[:1] in ("[", "{") else JSON_TEXT for v in values]


def sweep_chunk(conn: Connection, scope: SweepScope, keys: Sequence[str] | None, after: tuple[Any, int] | None,
                limit: int) -> tuple[pd.DataFrame, dict[str, tuple[list[Any], list[Any]]] | None,
                                     tuple[Any, int] | None]:
    """The next `limit` submissions of a sweep in time order (after the key `after`), joined with their leads.

    Returns the rows (raw: SQLite's times as text, its booleans as 0/1), each of `keys`' (values, JSON types)
    extracted from the payloads in SQL (`keys` None, or a key with a double quote that SQLite's paths cannot
    spell: a raw_payload column instead), and the key to read on from, None when nothing was left.
    """
    if keys is not None and conn.dialect.name == "sqlite" and any('"' in key for key in keys):
        keys = None
    extracts = _extracts(conn.dialect.name, keys) if keys is not None else [SUBMISSIONS.c.raw_payload]
    stmt = (select(*_READ_COLUMNS[:5], *_READ_COLUMNS[6:], *extracts)
            .join_from(SUBMISSIONS, LEADS, SUBMISSIONS.c.lead_id == LEADS.c.id)
            .where(SUBMISSIONS.c.submitted_at >= scope.start, SUBMISSIONS.c.id <= scope.last_id))
    if after is not None:
        # The last time read, as the driver gave it: SQLite compares its stored text with that very text.
        at = bindparam("after_at", type_=String if isinstance(after[0], str) else SUBMISSIONS.c.submitted_at.type)
        # The plain bound on the time lets an index on submitted_at serve the row comparison on PostgreSQL.
        stmt = stmt.where(SUBMISSIONS.c.submitted_at >= at,
                          tuple_(SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.id) > tuple_(at, bindparam("after_id")))
    stmt = stmt.order_by(SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.id).limit(limit)
    params = {} if after is None else {"after_at": after[0], "after_id": after[1]}
    result = conn.execute(stmt, params)
    # The driver's rows: SQLAlchemy's per-row processing (JSON decoding above all) was most of the old read.
    rows = result.cursor.fetchall()
    result.close()
    if not rows:
        return pd.DataFrame(columns=list(_SWEEP_COLUMNS)), None, None
    columns = list(zip(*rows, strict=True))
    frame = pd.DataFrame({name: pd.Series(columns[i], dtype=object) for i, name in enumerate(_SWEEP_COLUMNS)})
    base = len(_SWEEP_COLUMNS)
    last = rows[-1]
    after_at = last[2]
    if keys is None:
        frame["raw_payload"] = pd.Series(columns[base], dtype=object)
        return frame, None, (after_at, int(last[0]))
    extracted: dict[str, tuple[list[Any], list[Any]]] = {}
    for i, key in enumerate(keys):
        if conn.dialect.name == "postgresql":
            values, kinds = columns[base + 2 * i], columns[base + 2 * i + 1]
            # jsonb_typeof says boolean; the value's text says which.
            kinds = [JSON_TRUE if k == "boolean" and v == "true" else JSON_FALSE if k == "boolean"
                     else _JSON_TYPES.get(k) for k, v in zip(kinds, values, strict=True)]
        else:
            values = columns[base + i]
            kinds = _sqlite_kinds(values)
        extracted[key] = (list(values), kinds)
    return frame, extracted, (after_at, int(last[0]))


def payloads_by_id(conn: Connection, ids: list[int]) -> list[Any]:
    """Raw payloads of these submissions in the order of `ids` (JSON text on SQLite, dicts on PostgreSQL)."""
    found = dict(read_in(conn, select(SUBMISSIONS.c.id, SUBMISSIONS.c.raw_payload)
                         .where(SUBMISSIONS.c.id.in_(bindparam("values", expanding=True))), ids, raw=True))
    return [found.get(i) for i in ids]


# An intake batch's check reads single tables by index and joins in pandas: joined in SQL, PostgreSQL without
# statistics on a freshly loaded table (a backfill into a new CRM) planned a nested loop over every lead.
_STORED_KEYS = (SUBMISSIONS.c.id, SUBMISSIONS.c.idempotency_key, SUBMISSIONS.c.lead_id)
_STORED_ROWS = (SUBMISSIONS.c.id, SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.source,
                SUBMISSIONS.c.message, SUBMISSIONS.c.raw_payload)
_LEAD_COLUMNS = (LEADS.c.id, LEADS.c.email, LEADS.c.email_domain, LEADS.c.first_name, LEADS.c.last_name,
                 LEADS.c.status, LEADS.c.is_spam)


def _in_batch(batch_id: str):
    return (SUBMISSIONS.c.batch_id == batch_id) & SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True))


def _stored_rows(conn: Connection, condition, values: list[Any]) -> pd.DataFrame:
    names = ["submission_id", *(c.name for c in _STORED_ROWS[1:])]
    return pd.DataFrame(read_in(conn, select(*_STORED_ROWS).where(condition), values), columns=names)


def batch_submissions(conn: Connection, batch_id: str, lead_ids: list[int]) -> pd.DataFrame:
    """An intake batch's stored submissions of these leads (submission_id, ..., raw_payload), as stored."""
    return _stored_rows(conn, _in_batch(batch_id), lead_ids)


def batch_submission_keys(conn: Connection, batch_id: str, lead_ids: list[int]) -> pd.DataFrame:
    """Which submissions of these leads an intake batch stored: submission_id, idempotency_key, lead_id."""
    rows = read_in(conn, select(*_STORED_KEYS).where(_in_batch(batch_id)), lead_ids, raw=True)
    return pd.DataFrame(rows, columns=["submission_id", "idempotency_key", "lead_id"])


def submissions_by_id(conn: Connection, ids: list[int]) -> pd.DataFrame:
    """Stored submissions by id (submission_id, ..., raw_payload), as stored."""
    return _stored_rows(conn, SUBMISSIONS.c.id.in_(bindparam("values", expanding=True)), ids)


def leads_to_judge(conn: Connection, lead_ids: list[int]) -> pd.DataFrame:
    """These leads as the spam rules see them now (lead_id, email, email_domain, names, status, is_spam), raw."""
    # Raw rows: is_spam may come as 0/1; the domain gives every column its type.
    rows = read_in(conn, select(*_LEAD_COLUMNS).where(LEADS.c.id.in_(bindparam("values", expanding=True))),
                   lead_ids, raw=True)
    return pd.DataFrame(rows, columns=["lead_id", *(c.name for c in _LEAD_COLUMNS[1:])])


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


def tombstoned(conn: Connection, hashes: Iterable[str]) -> set[str]:
    """Which of these email hashes belong to purged spam leads."""
    return _hashes_in(conn, TOMBSTONES, hashes)


def exempted(conn: Connection, hashes: Iterable[str]) -> set[str]:
    """Which of these email hashes were restored from spam (never flagged again)."""
    return _hashes_in(conn, EXEMPTIONS, hashes)


# --- flagging ---------------------------------------------------------------------------------------------------


def lock_leads(conn: Connection, ids: list[int]) -> pd.DataFrame:
    """Current status of these leads, locked for the rest of the transaction (PostgreSQL; SQLite locks it all)."""
    rows: list[Any] = []
    columns = (LEADS.c.id, LEADS.c.status, LEADS.c.status_reason, LEADS.c.is_spam)
    for condition in _in(LEADS.c.id, ids):
        rows.extend(tuple(r) for r in conn.execute(_locked(conn, select(*columns).where(condition))))
    return pd.DataFrame(rows, columns=["lead_id", "current_status", "current_reason", "current_is_spam"])


def _ids_by_lead(conn: Connection, table: Table, lead_ids: list[int], status: str) -> dict[int, list[int]]:
    """Ids of the rows of a lead-owned table (tasks, outbox) in one status, by lead."""
    found: dict[int, list[int]] = {}
    for condition in _in(table.c.lead_id, lead_ids):
        stmt = select(table.c.id, table.c.lead_id).where(condition, table.c.status == status).order_by(table.c.id)
        for row_id, lead_id in conn.execute(stmt):
            found.setdefault(int(lead_id), []).append(int(row_id))
    return found


def open_tasks_by_lead(conn: Connection, lead_ids: list[int]) -> dict[int, list[int]]:
    """Ids of these leads' open CRM tasks, by lead."""
    return _ids_by_lead(conn, TASKS, lead_ids, "open")


def pending_outbox_by_lead(conn: Connection, lead_ids: list[int]) -> dict[int, list[int]]:
    """Ids of these leads' pending outbox messages, by lead."""
    return _ids_by_lead(conn, OUTBOX, lead_ids, "pending")


def _set_status(conn: Connection, table: Table, ids: list[int], old: str, new: str) -> int:
    """Move rows from one status to another; rows no longer in the old status are left alone."""
    changed = 0
    for condition in _in(table.c.id, ids):
        changed += conn.execute(update(table).where(condition, table.c.status == old).values(status=new)).rowcount
    return changed


def _count_in_status(conn: Connection, table: Table, ids: list[int], status: str) -> int:
    count = 0
    for condition in _in(table.c.id, ids):
        count += conn.execute(select(func.count()).where(condition, table.c.status == status)).scalar_one()
    return count


def flag(store: Store, conn: Connection, plan: pd.DataFrame, task_ids: list[int], outbox_ids: list[int],
         now: datetime) -> None:
    """Write a flag plan: leads to spam (only if unchanged since locked), tasks cancelled, outbox withdrawn.

    `plan` holds lead_id, previous_status and reasons. The owners' capacity slots go back too.
    """
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
    _set_status(conn, TASKS, task_ids, "open", "cancelled")
    _set_status(conn, OUTBOX, outbox_ids, "pending", "withdrawn")
    # Spam is no work for its rep: the slot it held goes back (a restore takes it again).
    capacity.release_capacity(conn, plan["lead_id"].astype("int64").tolist())


# --- restoring --------------------------------------------------------------------------------------------------


def lock_flagged(conn: Connection, *, email: str | None = None, reason: str | None = None) -> pd.DataFrame:
    """Flagged leads with this (normalized) email or flagged for this reason, locked: lead_id, email, status,
    reasons."""
    condition = LEADS.c.is_spam == true()
    if email is not None:
        condition = condition & (LEADS.c.email == email)
    else:
        padded = "," + LEADS.c.spam_reasons + ","
        condition = condition & padded.like(f"%,{reason},%")
    stmt = select(LEADS.c.id, LEADS.c.email, LEADS.c.status, LEADS.c.spam_reasons).where(condition)
    return pd.DataFrame([tuple(r) for r in conn.execute(_locked(conn, stmt).order_by(LEADS.c.id))],
                        columns=["lead_id", "email", "status", "reasons"])


def latest_flag_details(conn: Connection, lead_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Details of each lead's latest spam_flagged event (what to put back on restore)."""
    found: dict[int, dict[str, Any]] = {}
    for condition in _in(EVENTS.c.lead_id, lead_ids):
        stmt = (select(EVENTS.c.lead_id, EVENTS.c.details)
                .where(condition, EVENTS.c.event_type == FLAGGED_EVENT).order_by(EVENTS.c.id))
        for lead_id, details in conn.execute(stmt):
            found[int(lead_id)] = json.loads(details) if isinstance(details, str) else dict(details or {})
    return found


def cancelled_tasks(conn: Connection, ids: list[int]) -> int:
    """How many of these CRM tasks are cancelled (what a restore would reopen)."""
    return _count_in_status(conn, TASKS, ids, "cancelled")


def withdrawn_outbox(conn: Connection, ids: list[int]) -> int:
    """How many of these outbox messages are withdrawn (what a restore would put back to pending)."""
    return _count_in_status(conn, OUTBOX, ids, "withdrawn")


def unflag(store: Store, conn: Connection, leads: pd.DataFrame, task_ids: list[int], outbox_ids: list[int],
           now: datetime) -> tuple[int, int]:
    """Write a restore plan: leads back to to_status and to_reason, tasks reopened, messages pending again.

    `leads` holds lead_id, status (now) and to_status, to_reason. Owners take their capacity slots again.
    Returns (tasks reopened, messages restored).
    """
    ids = leads["lead_id"].astype("int64").tolist()
    stmt = (
        update(LEADS)
        .where(LEADS.c.id == bindparam("b_id"), LEADS.c.is_spam == true())
        .values(status=bindparam("b_status"), status_reason=bindparam("b_reason"), is_spam=false(),
                spam_reasons=null(), spam_flagged_at=null(), updated_at=bindparam("b_now"))
    )
    store.bulk(conn, stmt, pd.DataFrame({"b_id": ids, "b_status": leads["to_status"].to_numpy(),
                                         "b_reason": leads["to_reason"].to_numpy(), "b_now": pd.Timestamp(now)}))
    reopened = _set_status(conn, TASKS, task_ids, "cancelled", "open")
    capacity.follow_status_changes(conn, list(zip(ids, leads["status"], leads["to_status"], strict=True)))
    restored = _set_status(conn, OUTBOX, outbox_ids, "withdrawn", "pending")
    return reopened, restored


def clear_tombstones(conn: Connection, hashes: Iterable[str]) -> int:
    """Delete the tombstones of these email hashes (the addresses may come back); returns how many went."""
    cleared = 0
    for condition in _in(TOMBSTONES.c.email_hash, hashes):
        cleared += conn.execute(delete(TOMBSTONES).where(condition)).rowcount
    return cleared


def exempt(store: Store, conn: Connection, rows: pd.DataFrame, now: datetime, by: str) -> None:
    """Remember restored addresses so that no later run flags them again (upsert by email hash).

    `rows` holds email_hash, lead_id and reasons.
    """
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


# --- purging ----------------------------------------------------------------------------------------------------


def lock_expired(conn: Connection, cutoff: datetime, after: int, limit: int) -> pd.DataFrame:
    """The next `limit` leads (by id, after `after`) flagged before `cutoff`, locked: lead_id, email, status,
    reasons, flagged_at."""
    stmt = (
        select(LEADS.c.id, LEADS.c.email, LEADS.c.status, LEADS.c.spam_reasons, LEADS.c.spam_flagged_at)
        .where(LEADS.c.is_spam == true(), LEADS.c.spam_flagged_at < cutoff, LEADS.c.id > after)
        .order_by(LEADS.c.id).limit(limit)
    )
    return pd.DataFrame([tuple(r) for r in conn.execute(_locked(conn, stmt))],
                        columns=["lead_id", "email", "status", "reasons", "flagged_at"])


def leads_with_done_tasks(conn: Connection, lead_ids: list[int]) -> set[int]:
    """Which of these leads have a CRM task a rep finished."""
    return {lead_id for cond in _in(TASKS.c.lead_id, lead_ids)
            for lead_id in conn.execute(select(TASKS.c.lead_id).where(cond, TASKS.c.status == "done")).scalars()}


def add_tombstones(store: Store, conn: Connection, tombstones: pd.DataFrame) -> None:
    """Keep the tombstones of purged leads (upsert by email hash: a later purge of the address wins)."""
    ins = store.insert(TOMBSTONES).values({c: bindparam(c) for c in tombstones.columns})
    ins = ins.on_conflict_do_update(
        index_elements=["email_hash"],
        set_={"reasons": ins.excluded.reasons, "policy_version": ins.excluded.policy_version,
              "flagged_at": ins.excluded.flagged_at, "purged_at": ins.excluded.purged_at},
    )
    store.bulk(conn, ins, tombstones)


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


def _key(table: Table) -> Any:
    """The table's single-column primary key (`id`, or e.g. `lead_id` for a one-row-per-lead side table)."""
    (column,) = table.primary_key.columns
    return column


def _delete_rows(conn: Connection, table: Table, ids: list[int], deleted: Counter) -> None:
    """Delete rows by primary key after every row that references them, depth first."""
    for child, column in _children(table):
        child_ids: list[int] = []
        for condition in _in(column, ids):
            child_ids.extend(conn.execute(select(_key(child)).where(condition)).scalars())
        if child_ids:
            _delete_rows(conn, child, child_ids, deleted)
    for condition in _in(_key(table), ids):
        deleted[table.name] += conn.execute(delete(table).where(condition)).rowcount


def delete_leads(conn: Connection, lead_ids: list[int], deleted: Counter) -> None:
    """Delete leads with every row that references them; counts deleted rows by table into `deleted`."""
    _delete_rows(conn, LEADS, lead_ids, deleted)


# --- benchmark data ---------------------------------------------------------------------------------------------

_BENCH_LEADS = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :n)
INSERT INTO leads (id, email, email_domain, first_name, last_name, company, first_touch_at, first_touch_source,
                   last_touch_at, last_touch_source, status, is_spam, spam_reasons, spam_flagged_at, created_at,
                   updated_at)
SELECT n, 'person' || n || '@' || dom, dom,
       CASE WHEN n % 211 = 0 THEN 'xkqzvbw' ELSE 'Ann' END, 'Lee', 'Company ' || (n % 5000),
       ts, 'web_form', ts, 'web_form',
       CASE WHEN n % 100 = 1 THEN 'spam' ELSE 'new' END,
       CASE WHEN n % 100 = 1 THEN 1 ELSE 0 END,
       CASE WHEN n % 100 = 1 THEN 'disposable_domain' END,
       CASE WHEN n % 100 = 1 THEN strftime('%Y-%m-%d %H:%M:%S', 'now', '-40 days') || '.000000' END,
       ts, ts
FROM (SELECT n,
             CASE WHEN n % 53 = 0 THEN 'mailinator.com' ELSE 'acme' || (n % 20000) || '.example' END AS dom,
             strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (n % 600000) || ' seconds') || '.000000' AS ts
      FROM seq)
"""
_BENCH_SUBMISSIONS = """
INSERT INTO lead_submissions (id, idempotency_key, lead_id, batch_id, source, submitted_at, received_at, message,
                              raw_payload)
SELECT id, printf('%064d', id), id, 'bench', 'web_form', first_touch_at, first_touch_at,
       CASE WHEN id % 307 = 0 THEN 'best online casino bonus' ELSE 'Please send pricing' END,
       json_object('email', email, 'submitted_at', first_touch_at, 'source', 'web_form',
                   'ip_address', CASE WHEN id % 10000 < 8 THEN '66.6.' || (id / 10000) || '.1'
                                      ELSE '10.' || (id % 250) || '.' || (id / 250 % 250) || '.' || (id % 7) END,
                   'honeypot', CASE WHEN id % 401 = 0 THEN 'filled' END,
                   'form_fill_seconds', CASE WHEN id % 503 = 0 THEN 0.4 ELSE 25 + id % 60 END)
FROM leads
"""


# The same data on PostgreSQL: generate_series for the sequence, the same arithmetic for every value.
_PG_BENCH_LEADS = """
INSERT INTO leads (id, email, email_domain, first_name, last_name, company, first_touch_at, first_touch_source,
                   last_touch_at, last_touch_source, status, is_spam, spam_reasons, spam_flagged_at, created_at,
                   updated_at)
SELECT n, 'person' || n || '@' || dom, dom,
       CASE WHEN n % 211 = 0 THEN 'xkqzvbw' ELSE 'Ann' END, 'Lee', 'Company ' || (n % 5000),
       ts, 'web_form', ts, 'web_form',
       CASE WHEN n % 100 = 1 THEN 'spam' ELSE 'new' END,
       n % 100 = 1,
       CASE WHEN n % 100 = 1 THEN 'disposable_domain' END,
       CASE WHEN n % 100 = 1 THEN date_trunc('second', now()) - interval '40 days' END,
       ts, ts
FROM (SELECT n,
             CASE WHEN n % 53 = 0 THEN 'mailinator.com' ELSE 'acme' || (n % 20000) || '.example' END AS dom,
             date_trunc('second', now()) - make_interval(secs => n % 600000) AS ts
      FROM generate_series(1, :n) AS n) AS seq
"""
_PG_BENCH_SUBMISSIONS = """
INSERT INTO lead_submissions (id, idempotency_key, lead_id, batch_id, source, submitted_at, received_at, message,
                              raw_payload)
SELECT id, lpad(id::text, 64, '0'), id, 'bench', 'web_form', first_touch_at, first_touch_at,
       CASE WHEN id % 307 = 0 THEN 'best online casino bonus' ELSE 'Please send pricing' END,
       jsonb_build_object('email', email, 'submitted_at', first_touch_at, 'source', 'web_form',
                   'ip_address', CASE WHEN id % 10000 < 8 THEN '66.6.' || (id / 10000) || '.1'
                                      ELSE '10.' || (id % 250) || '.' || (id / 250 % 250) || '.' || (id % 7) END,
                   'honeypot', CASE WHEN id % 401 = 0 THEN 'filled' END,
                   'form_fill_seconds', CASE WHEN id % 503 = 0 THEN 0.4 ELSE 25 + id % 60 END)
FROM leads
"""


def fill_bench_crm(store: Store, leads: int) -> None:
    """Fill an empty CRM for bench/spam_bench.py with bulk SQL (SQLite: a recursive CTE; PostgreSQL:
    generate_series; seconds, not hours).

    `leads` leads with one submission each in the last 7 days, raw payloads with IP, honeypot and fill time, and a
    mix of spam (disposable domains, honeypots, fast fills, gibberish names, casino messages, IP bursts of 8
    rows), plus 1% of leads flagged 40 days ago so the purge has work.
    """
    postgres = store.dialect == "postgresql"
    with store.begin() as conn:
        conn.execute(text(_PG_BENCH_LEADS if postgres else _BENCH_LEADS), {"n": leads})
        conn.execute(text(_PG_BENCH_SUBMISSIONS if postgres else _BENCH_SUBMISSIONS))
        if postgres:
            # Rows came with their ids: the sequences go on after them.
            for table in ("leads", "lead_submissions"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    store.refresh_statistics(["leads", "lead_submissions"])


def bench_postgres_database(server_url: str, name: str, template: str | None = None) -> tuple[str, Callable[[], None]]:
    """Create a PostgreSQL database for bench/spam_bench.py (empty, or a copy of `template`): its URL and a drop."""
    admin = make_engine(database_url(server_url), isolation_level="AUTOCOMMIT")
    # The names are the caller's own (a fixed prefix and hex digits): CREATE DATABASE takes no bound parameter.
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop


def spam_digest(store: Store) -> str:
    """A digest of which leads are spam, with which reasons and status: equal decisions give equal digests."""
    digest = sha256()
    stmt = (select(LEADS.c.id, LEADS.c.status, LEADS.c.spam_reasons).where(LEADS.c.is_spam == true())
            .order_by(LEADS.c.id))
    with store.engine.connect() as conn:
        for row in conn.execute(stmt):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]
