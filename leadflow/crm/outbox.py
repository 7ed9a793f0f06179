"""The outbox table: the only module that writes outbox rows (queue, refresh, claim, mark, recover) or reads them."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update

from leadflow.crm.schema import OutboxMessage
from leadflow.crm.store import Store, utc

OUTBOX = OutboxMessage.__table__
UNKNOWN_OUTCOME = "outcome unknown: delivery was interrupted after the send began; not resent automatically"
# What a claimed row carries to its sender. An apprise row's recipient is its alert channel (manager, ops, rep:<id>),
# which Deliver Outbox resolves to the secret URL right before the send; no URL is written here.
CLAIMED_COLUMNS = ("id", "idempotency_key", "lead_id", "kind", "channel", "recipient", "subject", "body", "attempts",
                   "created_at")


def queue(conn: Connection, store: Store, frame: pd.DataFrame) -> int:
    """Queue messages inside the caller's transaction; a key already queued is left alone. Returns the rows added."""
    if frame.empty:
        return 0
    return store.insert_new(conn, OUTBOX, frame)


def queue_messages(store: Store, frame: pd.DataFrame) -> int:
    """Queue messages in a transaction of their own; a key already queued is left alone. Returns the rows added."""
    if frame.empty:
        return 0
    with store.begin() as conn:
        return queue(conn, store, frame)


def queue_row(store: Store, row: dict[str, Any]) -> None:
    """Queue one message (an ops alert); a key already queued is left alone."""
    with store.begin() as conn:
        conn.execute(store.insert(OUTBOX).values(row).on_conflict_do_nothing(index_elements=["idempotency_key"]))


def queue_or_refresh(store: Store, row: dict[str, Any]) -> None:
    """Queue one message, or refresh its recipient, subject and body while it is still pending (a report re-run)."""
    stmt = store.insert(OUTBOX).values(idempotency_key=bindparam("k"), kind=bindparam("kind"),
                                       channel=bindparam("channel"), recipient=bindparam("r"),
                                       subject=bindparam("s"), body=bindparam("b"), status="pending")
    stmt = stmt.on_conflict_do_update(
        index_elements=["idempotency_key"],
        set_={"recipient": stmt.excluded.recipient, "subject": stmt.excluded.subject, "body": stmt.excluded.body},
        where=OUTBOX.c.status == "pending",
    )
    with store.begin() as conn:
        conn.execute(stmt, {"k": row["idempotency_key"], "kind": row["kind"], "channel": row["channel"],
                            "r": row["recipient"][:500], "s": row["subject"], "b": row["body"]})


# --- delivery state: claim, confirm, extend, mark, release, recover ------------------------------------------------
#
# A claim is a token on `sending` rows plus a lease: `claimed_at` older than the lease means its run is gone. The
# live run renews `claimed_at` (extend_lease, confirm_claim) and confirms each row right before its send with one
# conditional UPDATE (the fencing check), so a row another run took over after a lapsed lease is never sent twice.


def _lock_ids(conn: Connection, store: Store, condition: Any) -> list[int]:
    """Ids of the rows matching condition, locked in id order on PostgreSQL.

    Every transaction that updates several outbox rows takes their locks in id order (claim_batch skips locked
    rows and never waits), so two overlapping runs cannot each hold a row the other waits for: no deadlock.
    """
    stmt = select(OUTBOX.c.id).where(condition).order_by(OUTBOX.c.id)
    if store.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return [int(i) for i in conn.execute(stmt).scalars()]


def recover_stale(store: Store, now: datetime, lease: timedelta,
                  idempotent_channels: Collection[str] = ()) -> tuple[int, int]:
    """Settle rows whose claim outlived its lease: back to pending when safe, else failed as outcome unknown.

    Safe means the send never began, or the row's channel is idempotent (a resend changes nothing). An unknown
    outcome keeps its claim token, so a run that was only slow, not dead, still records what its send did.
    Returns (requeued, unknown outcome).
    """
    cutoff = now - lease
    stale = (OUTBOX.c.status == "sending") & (OUTBOX.c.claimed_at <= cutoff)
    safe = OUTBOX.c.send_started_at.is_(None)
    if idempotent_channels:
        safe = safe | OUTBOX.c.channel.in_(sorted(idempotent_channels))
    with store.begin() as conn:
        ids = _lock_ids(conn, store, stale)
        if not ids:
            return 0, 0
        mine = OUTBOX.c.id.in_(ids)
        requeued = conn.execute(
            update(OUTBOX).where(mine, stale, safe).values(status="pending", claim_token=None, claimed_at=None,
                                                           send_started_at=None)
        ).rowcount
        unknown = conn.execute(
            update(OUTBOX).where(mine, stale, ~safe).values(status="failed", last_error=UNKNOWN_OUTCOME)
        ).rowcount
    return int(requeued or 0), int(unknown or 0)


def claim_batch(store: Store, now: datetime, limit: int,
                exclude_channels: Collection[str] = ()) -> tuple[str, list[dict[str, Any]]]:
    """Claim up to `limit` due pending rows for this run (pending -> sending) and return them in id order.

    Rows of `exclude_channels` (a channel whose circuit breaker opened in this run) stay pending.
    """
    token = str(uuid.uuid4())
    due = (OUTBOX.c.status == "pending") & (OUTBOX.c.next_attempt_at.is_(None) | (OUTBOX.c.next_attempt_at <= now))
    if exclude_channels:
        due = due & OUTBOX.c.channel.not_in(sorted(exclude_channels))
    ids = select(OUTBOX.c.id).where(due).order_by(OUTBOX.c.id).limit(limit)
    if store.dialect == "postgresql":
        # Two runs at once skip each other's rows instead of waiting for them (SQLite serializes writers).
        ids = ids.with_for_update(skip_locked=True)
    columns = [OUTBOX.c[c] for c in CLAIMED_COLUMNS]
    with store.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids.scalar_subquery()))
                     .values(status="sending", claim_token=token, claimed_at=now, send_started_at=None))
        rows = [dict(r._mapping) for r in conn.execute(select(*columns).where(OUTBOX.c.claim_token == token)
                                                       .order_by(OUTBOX.c.id))]
    return token, rows


def _claimed_by(token: str) -> Any:
    return (OUTBOX.c.claim_token == token) & (OUTBOX.c.status == "sending")


def confirm_claim(store: Store, row_id: int, token: str, now: datetime, *, started: bool = True) -> bool:
    """The fencing check right before a send: True when this claim still owns the row (and its lease is renewed).

    One conditional UPDATE (row id, claim token, still `sending`); with `started` it also commits that the send
    is about to begin, so a crash after it is never resent blindly. False means another run took the row over
    after this claim's lease lapsed: the caller must not send it.
    """
    values: dict[str, Any] = {"claimed_at": now}
    if started:
        values["send_started_at"] = now
    with store.begin() as conn:
        updated = conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id, _claimed_by(token)).values(**values))
    return updated.rowcount == 1


def extend_lease(store: Store, token: str, now: datetime) -> set[int]:
    """Renew the lease of every row this claim still holds; returns their ids (rows taken over are not among them)."""
    with store.begin() as conn:
        ids = _lock_ids(conn, store, _claimed_by(token))
        if not ids:
            return set()
        held = conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids), _claimed_by(token)).values(claimed_at=now)
                            .returning(OUTBOX.c.id)).scalars().all()
    return {int(i) for i in held}


def release_claims(store: Store, ids: list[int], token: str) -> int:
    """Give rows of this claim back unsent (pending, due now, no attempt counted); returns the rows released."""
    if not ids:
        return 0
    with store.begin() as conn:
        ids = _lock_ids(conn, store, OUTBOX.c.id.in_(ids) & _claimed_by(token))
        released = conn.execute(
            update(OUTBOX).where(OUTBOX.c.id.in_(ids), _claimed_by(token), OUTBOX.c.send_started_at.is_(None))
            .values(status="pending", claim_token=None, claimed_at=None)
        ).rowcount
    return int(released or 0)


def mark_sent(store: Store, ids: list[int], tries: dict[int, int], token: str, now: datetime) -> None:
    """Record rows of this claim as sent, adding each row's tries in this run to its attempts."""
    if not ids:
        return
    stmt = (update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id"), OUTBOX.c.claim_token == bindparam("b_token"))
            .values(status=bindparam("b_status"), sent_at=bindparam("b_now"),
                    attempts=OUTBOX.c.attempts + bindparam("b_tries"), claim_token=bindparam("b_none"),
                    last_error=bindparam("b_none")))
    ids = sorted(ids)  # one lock order for every multi-row write (see _lock_ids)
    frame = pd.DataFrame({"b_id": ids, "b_token": token, "b_now": now, "b_tries": [tries.get(i, 1) for i in ids],
                          "b_status": "sent", "b_none": None})
    with store.begin() as conn:
        store.bulk(conn, stmt, frame)


def mark_failed(store: Store, row_id: int, token: str, attempts: int, error: str,
                retry_at: datetime | None) -> None:
    """Record a failed send of this claim: back to pending until `retry_at`, or failed for good when it is None."""
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:1000], "claim_token": None,
                              "send_started_at": None}
    if retry_at is None:
        values["status"] = "failed"
    else:
        values.update(status="pending", next_attempt_at=retry_at, claimed_at=None)
    with store.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id, OUTBOX.c.claim_token == token).values(**values))


def outbox_counts(store: Store) -> dict[str, int]:
    """Outbox rows by status."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)).all()
    return {status: int(n) for status, n in rows}


def outbox_frame(store: Store) -> pd.DataFrame:
    """Every outbox row (for tests and checks)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(OUTBOX)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows])
    for name in ("created_at", "sent_at", "claimed_at", "send_started_at", "next_attempt_at"):
        if name in frame:
            frame[name] = utc(frame[name])
    return frame


def recent_bodies(store: Store, kind: str, since: datetime, statuses: Collection[str]) -> list[str]:
    """Bodies of this kind's messages created since then in these statuses (ops alerts: to spot a repeat)."""
    stmt = (select(OUTBOX.c.body).where(OUTBOX.c.kind == kind, OUTBOX.c.created_at >= since,
                                        OUTBOX.c.status.in_(sorted(statuses)))
            .order_by(OUTBOX.c.id.desc()).limit(1000))
    with store.engine.connect() as conn:
        return [str(b) for (b,) in conn.execute(stmt)]
