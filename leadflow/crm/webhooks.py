"""Webhook deliveries: a verified vendor lead goes into lead_inbox once per (vendor, delivery id), however often sent.

The delivery row and the inbox row are written in one transaction. A redelivery's insert of the delivery row does
nothing (ON CONFLICT DO NOTHING; on PostgreSQL a concurrent twin waits for the first to commit, on SQLite every write
transaction is BEGIN IMMEDIATE), so the answer names the inbox row the first delivery made and nothing new is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from leadflow.crm.inbox import INBOX
from leadflow.crm.schema import WebhookDelivery
from leadflow.crm.store import Store

DELIVERIES = WebhookDelivery.__table__


@dataclass(frozen=True)
class StoredDelivery:
    """Where a webhook lead went: its inbox row, and whether this request stored it (False: a redelivery)."""

    inbox_id: int | None
    created: bool


def store_delivery(store: Store, vendor: str, delivery_id: str, payload: dict[str, Any]) -> StoredDelivery:
    """Put one webhook lead into lead_inbox unless this vendor's delivery id is already there."""
    claim = (store.insert(DELIVERIES).values(vendor=vendor, delivery_id=delivery_id)
             .on_conflict_do_nothing(index_elements=["vendor", "delivery_id"]).returning(DELIVERIES.c.id))
    with store.begin() as conn:
        delivery = conn.execute(claim).scalar_one_or_none()
        if delivery is None:
            earlier = conn.execute(select(DELIVERIES.c.inbox_id).where(
                DELIVERIES.c.vendor == vendor, DELIVERIES.c.delivery_id == delivery_id)).scalar_one_or_none()
            return StoredDelivery(earlier, False)
        inbox_id = int(conn.execute(INBOX.insert().values(payload=payload).returning(INBOX.c.id)).scalar_one())
        conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery).values(inbox_id=inbox_id))
    return StoredDelivery(inbox_id, True)


def delivery_count(store: Store, vendor: str | None = None) -> int:
    """How many webhook deliveries are recorded (for one vendor, or all)."""
    stmt = select(func.count()).select_from(DELIVERIES)
    if vendor:
        stmt = stmt.where(DELIVERIES.c.vendor == vendor)
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
