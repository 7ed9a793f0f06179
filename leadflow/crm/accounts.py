"""The accounts table: every account for matching, race-safe creation of new companies' accounts, their owners."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from leadflow.crm.schema import Account
from leadflow.crm.store import Store, is_transient_db_error, records, select_in
from leadflow.domain import accounts as matching

ACCOUNTS = Account.__table__
ACCOUNT_COLUMNS = ("id", "name_key", "domain", "owner_id")


def load_accounts(store: Store) -> pd.DataFrame:
    """Every account's id, name key, domain and owner, for matching (a few columns: cheap even for many rows)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(*(ACCOUNTS.c[c] for c in ACCOUNT_COLUMNS))).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(ACCOUNT_COLUMNS))


@dataclass
class AccountResult:
    """Accounts proposed and created by one run, and the account id each new-company lead belongs to."""

    proposed: int = 0
    created: int = 0
    account_ids: pd.Series = field(default_factory=lambda: pd.Series(dtype="Int64"))


def create_accounts(store: Store, leads: pd.DataFrame, match: pd.DataFrame) -> AccountResult:
    """Insert one account per new company, race-safe: a concurrent insert of the same domain or name wins quietly.

    INSERT ... ON CONFLICT DO NOTHING covers both unique keys (domain and name_key) on SQLite and PostgreSQL; the
    ids are then read back by domain, else by name key, so every run links to the one account that exists.
    """
    result = AccountResult()
    is_new = match["match_band"].eq("new_company").to_numpy(dtype=bool, na_value=False)
    if not is_new.any():
        return result
    for attempt in range(4):
        try:
            return _create_accounts(store, leads, match, is_new, result)
        except Exception as exc:
            # Two runs inserting the same new companies in another order can deadlock on PostgreSQL: the loser
            # retries, and then finds the winner's rows.
            if attempt == 3 or not is_transient_db_error(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    return result


def _create_accounts(store: Store, leads: pd.DataFrame, match: pd.DataFrame, is_new: np.ndarray,
                     result: AccountResult) -> AccountResult:
    domains = match["new_domain"][is_new].dropna().unique().tolist()
    keys = match["new_name_key"][is_new].dropna().unique().tolist()
    by_domain: dict[str, int] = {}
    by_key: dict[str, int] = {}
    result.proposed = result.created = 0
    pending = pd.Series(is_new, index=match.index)
    with store.begin() as conn:
        # A proposal can lose on one key to a proposal that won on the other (same name, other domain): the leads
        # left without an account get a second round of proposals, until every new-company lead has one.
        for _ in range(4):
            proposals = matching.new_accounts(leads.loc[pending], match.loc[pending])
            if proposals.empty:
                break
            result.proposed += len(proposals)
            # Multi-row VALUES with RETURNING: only rows this run really inserted come back, even when a concurrent
            # run commits the same companies at the same moment. Sorted keys keep lock order alike across runs.
            stmt = store.insert(ACCOUNTS).on_conflict_do_nothing().returning(ACCOUNTS.c.id)
            result.created += len(conn.execute(stmt, records(proposals.sort_values("name_key"))).all())
            by_domain = dict(select_in(conn, [ACCOUNTS.c.domain, ACCOUNTS.c.id], ACCOUNTS.c.domain, domains))
            by_key = dict(select_in(conn, [ACCOUNTS.c.name_key, ACCOUNTS.c.id], ACCOUNTS.c.name_key, keys))
            found = match["new_domain"].map(by_domain).notna() | match["new_name_key"].map(by_key).notna()
            pending = pending & ~found
            if not pending.any():
                break
    ids = match["new_domain"].map(by_domain)
    ids = ids.where(ids.notna(), match["new_name_key"].map(by_key))
    result.account_ids = ids.where(pd.Series(is_new, index=match.index)).astype("Int64")
    return result


def account_owners(conn: Connection, account_ids: Sequence[int]) -> dict[int, int]:
    """The owner of each of these accounts that has one, read inside the caller's (assignment) transaction."""
    return dict(select_in(conn, [ACCOUNTS.c.id, ACCOUNTS.c.owner_id], ACCOUNTS.c.id, account_ids,
                          ACCOUNTS.c.owner_id.is_not(None), raw=True))


def claim_account_owners(conn: Connection, store: Store, owners: dict[int, int], now: datetime) -> None:
    """Make routing's rep the owner of each account that has none yet (a concurrent owner stands)."""
    if not owners:
        return
    # In account order: two runs claiming overlapping accounts lock them in the same order (no deadlock).
    ordered = sorted(owners.items())
    owned = pd.DataFrame({"b_id": [a for a, _ in ordered], "b_rep": [r for _, r in ordered], "b_now": now})
    store.bulk(conn, update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id"), ACCOUNTS.c.owner_id.is_(None))
               .values(owner_id=bindparam("b_rep"), updated_at=bindparam("b_now")), owned)
