"""Intake batches: what a recorded intake run did, read back by the runs that started it elsewhere."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from leadflow.crm.store import BATCHES, Store


def batch_summary(store: Store, flow_run_id: str) -> dict[str, Any]:
    """The summary an intake flow run recorded for its batch; empty when it recorded none."""
    with store.engine.connect() as conn:
        row = conn.execute(select(BATCHES.c.summary).where(BATCHES.c.flow_run_id == flow_run_id)).first()
    return dict(row[0]) if row else {}
