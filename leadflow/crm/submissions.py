"""Intake's tables: submissions, quarantine records, intake batches, lead touches and the leads intake creates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update

from leadflow.crm.schema import IntakeBatch, Lead, LeadSubmission, QuarantineRecord
from leadflow.crm.store import Store, read_in, utc

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
QUARANTINE = QuarantineRecord.__table__
BATCHES = IntakeBatch.__table__


def known_submission_keys(store: Store, conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of these submission idempotency keys are already stored."""
    return store.known_keys(conn, SUBMISSIONS, keys)


def lead_ids(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    """Id by email of the leads with these emails (answered from the unique email index alone)."""
    stmt = select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(bindparam("values", expanding=True)))
    return dict(read_in(conn, stmt, emails, raw=True))


def leads_created_at(conn: Connection, emails: Iterable[str], at: datetime) -> tuple[dict[str, int], set[str]]:
    """Id by email of these leads, and which of them were created at `at` (by this transaction's upsert).

    A concurrent run may have created a lead between our first look and our upsert (PostgreSQL's upsert then
    waits and updates): its created_at is that run's, so only our own inserts carry `at`.
    """
    stamp = pd.Timestamp(at)
    stamp = (stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")).floor("us")
    if conn.dialect.name == "postgresql":
        # The server compares (its times are microseconds, timestamptz): no time objects made and parsed per lead.
        stmt = select(LEADS.c.email, LEADS.c.id, LEADS.c.created_at == stamp.to_pydatetime()).where(
            LEADS.c.email.in_(bindparam("values", expanding=True)))
        rows = read_in(conn, stmt, emails, raw=True)
        return {email: id_ for email, id_, _ in rows}, {email for email, _, new in rows if new}
    stmt = select(LEADS.c.email, LEADS.c.id, LEADS.c.created_at).where(
        LEADS.c.email.in_(bindparam("values", expanding=True)))
    rows = read_in(conn, stmt, emails, raw=True)
    if not rows:
        return {}, set()
    created = (utc(pd.Series([row[2] for row in rows], dtype=object)).dt.floor("us") == stamp).to_numpy()
    return ({email: id_ for email, id_, _ in rows},
            {row[0] for row, new in zip(rows, created, strict=True) if new})


def lead_touches(conn: Connection, emails: Iterable[str]) -> pd.DataFrame:
    """Id and first/last touch of the leads with these emails (UTC datetimes)."""
    columns = [LEADS.c[name] for name in ("id", "email", "first_touch_at", "first_touch_source",
                                           "last_touch_at", "last_touch_source")]
    stmt = select(*columns).where(LEADS.c.email.in_(bindparam("values", expanding=True)))
    frame = pd.DataFrame(read_in(conn, stmt, emails, raw=True), columns=[c.name for c in columns])
    for name in ("first_touch_at", "last_touch_at"):
        frame[name] = utc(frame[name])
    return frame


def insert_submissions(store: Store, conn: Connection, subs: pd.DataFrame, batch_id: str,
                       received_at: datetime) -> int:
    """Store accepted rows as submissions; a key that is already stored is left alone. Returns the rows added.

    The rows' keys were found absent in this transaction (known_submission_keys), so they take the store's direct
    path (`Store.insert_new`'s `fresh`); a key another run stored since is skipped and not counted.
    """
    columns = ["idempotency_key", "lead_id", "source", "external_id", "submitted_at", "utm_source",
               "utm_medium", "utm_campaign", "message"]
    frame = subs[columns].assign(raw_payload=subs["_payload"], batch_id=batch_id, received_at=received_at)
    return store.insert_new(conn, SUBMISSIONS, frame, fresh=True)


def move_touches(store: Store, conn: Connection, changes: pd.DataFrame, now: datetime) -> None:
    """Move first touch earlier and last touch later; the guards keep a concurrent newer touch."""
    for which in ("first", "last"):
        moved = changes.loc[changes[f"{which}_touch_changed"]]
        if moved.empty:
            continue
        # The guard compares COALESCE(touch, new) (the stored touch: the column is never null), which no index
        # serves: PostgreSQL then finds each row by primary key. Compared bare, a table without statistics yet
        # (a backfill into a new CRM) got a plan that walked ix_leads_last_touch_at for every row.
        at = func.coalesce(LEADS.c[f"{which}_touch_at"], bindparam("b_at"))
        fields = ["at", "source", "utm_source", "utm_medium", "utm_campaign"]
        stmt = (
            update(LEADS)
            .where(LEADS.c.id == bindparam("b_id"), at > bindparam("b_at") if which == "first"
                   else at < bindparam("b_at"))
            .values({**{f"{which}_touch_{f}": bindparam(f"b_{f}") for f in fields},
                     "updated_at": bindparam("b_now")})
        )
        frame = pd.DataFrame({f"b_{f}": moved[f"{which}_touch_{f}"] for f in fields}).assign(
            b_id=moved["id"], b_now=now
        )
        store.bulk(conn, stmt, frame)


def insert_quarantine(store: Store, conn: Connection, rows: pd.DataFrame) -> int:
    """Keep rejected rows with their reasons; a row quarantined before is not stored twice. Returns new rows."""
    if rows.empty:
        return 0
    known = store.known_keys(conn, QUARANTINE, rows["idempotency_key"].tolist())
    fresh = rows.loc[~rows["idempotency_key"].isin(known)]
    store.insert_new(conn, QUARANTINE, fresh)
    return len(fresh)


def start_batch(store: Store, batch_id: str, origin: str, source_name: str | None, flow_run_id: str | None,
                now: datetime, owner: tuple[str, int, datetime | None] | None = None) -> None:
    """Record that an intake batch started, and the process that owns it (host, pid, start time), if known."""
    host, pid, started = owner or (None, None, None)
    with store.begin() as conn:
        conn.execute(BATCHES.insert().values(id=batch_id, origin=origin[:1000], source_name=source_name,
                                             flow_run_id=flow_run_id, started_at=now, status="running",
                                             summary={}, owner_host=host, owner_pid=pid, owner_started_at=started))


def running_batches(store: Store) -> list[dict[str, Any]]:
    """Every batch still marked `running`, with its owner: id, origin, flow_run_id, started_at, owner_*."""
    columns = [BATCHES.c[name] for name in ("id", "origin", "flow_run_id", "started_at", "owner_host", "owner_pid",
                                            "owner_started_at")]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns).where(BATCHES.c.status == "running").order_by(BATCHES.c.started_at))
        return [dict(row._mapping) for row in rows]


def mark_batch_crashed(store: Store, batch_id: str, reason: str, now: datetime) -> bool:
    """Mark a batch `crashed` if it is still `running`; whether this call changed it (so only one caller reports it)."""
    stmt = (update(BATCHES).where(BATCHES.c.id == batch_id, BATCHES.c.status == "running")
            .values(status="crashed", finished_at=now, summary={"crash_reason": reason, "crash_noticed_at":
                                                                 now.isoformat()}))
    with store.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def finish_batch(store: Store, batch_id: str, status: str, summary: dict[str, Any], now: datetime) -> None:
    """Record how an intake batch ended and what became of its rows."""
    with store.begin() as conn:
        conn.execute(update(BATCHES).where(BATCHES.c.id == batch_id)
                     .values(status=status, summary=summary, finished_at=now))


def lead_messages(conn: Connection, ids: Sequence[int]) -> pd.Series:
    """Every message a lead sent (oldest first, one per line) by lead id, for intent keywords."""
    stmt = (
        select(SUBMISSIONS.c.lead_id, SUBMISSIONS.c.message)
        .where(SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True)), SUBMISSIONS.c.message.is_not(None))
        .order_by(SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.id)
    )
    joined: dict[int, str] = {}
    # The rows come grouped by lead in time order: a plain loop joins them several times faster than groupby.
    for lead_id, message in read_in(conn, stmt, sorted(set(int(i) for i in ids)), raw=True):
        joined[lead_id] = joined[lead_id] + "\n" + message if lead_id in joined else message
    return pd.Series(joined, dtype="string", name="message")


def batch_summary(store: Store, flow_run_id: str) -> dict[str, Any]:
    """The summary an intake flow run recorded for its batch; empty when it recorded none."""
    with store.engine.connect() as conn:
        row = conn.execute(select(BATCHES.c.summary).where(BATCHES.c.flow_run_id == flow_run_id)).first()
    return dict(row[0]) if row else {}


def batch_origin(conn: Connection, batch_id: str) -> str | None:
    """The input an intake batch reads (None when no batch was recorded): origin of the rows it quarantines."""
    return conn.execute(select(BATCHES.c.origin).where(BATCHES.c.id == batch_id)).scalar_one_or_none()
