"""The backfill ledger: which windows of which input were imported under which policy version, and how."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.engine import make_url

from leadflow.crm.schema import BackfillLedgerEntry
from leadflow.crm.store import Store, database_url, make_engine
from leadflow.domain.backfill import UNDATED, Window

LEDGER = BackfillLedgerEntry.__table__


def _key(source: str, window_id: str, policy: str):
    return and_(LEDGER.c.source_key == source, LEDGER.c.window_id == window_id, LEDGER.c.policy_version == policy)


def completed_windows(store: Store, source: str, policy: str) -> set[str]:
    """Windows of this source already imported under this policy version."""
    stmt = select(LEDGER.c.window_id).where(LEDGER.c.source_key == source, LEDGER.c.policy_version == policy,
                                            LEDGER.c.status == "completed")
    with store.engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def start_window(
    store: Store, *, source: str, origin: str, window: Window, policy: str, flow_run_id: str | None,
    now: datetime, timeout: timedelta = timedelta(hours=1),
) -> int | None:
    """Take a window for import: returns the attempt number, or None when it is done or another run has it.

    A window another run started less than `timeout` ago is left alone (two imports of one window must not
    overlap); one whose run died is taken over after the timeout.
    """
    row = {"source_key": source, "source": origin[:1000], "window_id": window.id, "window_start": window.start,
           "window_end": window.end, "policy_version": policy, "status": "pending", "rows": 0, "attempts": 0,
           "summary": {}}
    takeable = or_(LEDGER.c.status.in_(["pending", "failed"]),
                   and_(LEDGER.c.status == "running", LEDGER.c.started_at < now - timeout))
    claim = (
        update(LEDGER).where(_key(source, window.id, policy), takeable)
        .values(status="running", attempts=LEDGER.c.attempts + 1, started_at=now, finished_at=None,
                flow_run_id=flow_run_id)
        .returning(LEDGER.c.attempts)
    )
    with store.begin() as conn:
        conn.execute(store.insert(LEDGER).values(row).on_conflict_do_nothing(
            index_elements=["source_key", "window_id", "policy_version"]))
        attempt = conn.execute(claim).scalar_one_or_none()
    return None if attempt is None else int(attempt)


def finish_window(store: Store, *, source: str, window_id: str, policy: str, status: str, rows: int,
                  summary: dict[str, Any], now: datetime) -> None:
    """Record how a window's import ended (completed or failed) and what it did."""
    stmt = (update(LEDGER).where(_key(source, window_id, policy))
            .values(status=status, rows=rows, summary=summary, finished_at=now))
    with store.begin() as conn:
        conn.execute(stmt)


def ledger_rows(store: Store, source: str | None = None, policy: str | None = None) -> list[dict[str, Any]]:
    """The ledger of one source under one policy version (every row when not given), oldest window first."""
    stmt = select(LEDGER)
    if source is not None:
        stmt = stmt.where(LEDGER.c.source_key == source)
    if policy is not None:
        stmt = stmt.where(LEDGER.c.policy_version == policy)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    # Undated rows have no time: they sort last.
    return sorted(rows, key=lambda r: (r["window_id"] == UNDATED, r["window_id"]))


def scratch_postgres_database(server_url: str, name: str) -> tuple[str, Callable[[], None]]:
    """Create an empty PostgreSQL database for a backfill benchmark run: its URL, and a function that drops it."""
    admin = make_engine(database_url(server_url), isolation_level="AUTOCOMMIT")
    # The name is the caller's own (a fixed prefix and hex digits): CREATE DATABASE takes no bound parameter.
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop
