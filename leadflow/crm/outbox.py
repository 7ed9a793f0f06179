"""The outbox table: the only module that writes outbox rows (queue, refresh, claim, mark) or reads them."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam

from leadflow.crm.schema import OutboxMessage
from leadflow.crm.store import Store

OUTBOX = OutboxMessage.__table__


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
