"""Reference data the CRM needs before leads arrive: sales reps, known accounts and firmographics by domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import bindparam, select

from leadflow.crm.schema import Account, Firmographic, SalesRep
from leadflow.crm.store import Store, read_in, records
from leadflow.domain import normalize as nz

DATA_DIR = Path(__file__).parents[1] / "data"
SAMPLE_LEADS = DATA_DIR / "sample_leads.csv"
SAMPLE_CRM_EXPORT = DATA_DIR / "sample_crm_export.csv"
SAMPLE_CRM_EXPORT_MAP = DATA_DIR / "sample_crm_export.columns.json"
FIRMOGRAPHICS = Firmographic.__table__


def _list(value: object) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return []
    return [part.strip() for part in value.split("|") if part.strip()]


def load_sales_reps(store: Store, path: str | Path) -> int:
    """Upsert sales reps from a CSV (email, name, `|`-separated territories and segments, capacity, alert_url)."""
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    frame["email"] = nz.normalize_email(frame["email"])
    rows = [
        {
            "email": row["email"],
            "name": row["name"],
            "active": str(row.get("active", "true")).lower() in {"true", "1", "yes"},
            "out_of_office": str(row.get("out_of_office", "false")).lower() in {"true", "1", "yes"},
            "territories": _list(row.get("territories")),
            "segments": _list(row.get("segments")),
            "max_open_leads": int(row.get("max_open_leads") or 50),
            # Apprise URL(s) for new-lead alerts; without one a rep is alerted by email.
            "alert_url": (row.get("alert_url") or "").strip() or None,
            # IANA zone of the rep's business hours (follow-up steps); blank means LEADFLOW_TIMEZONE.
            "timezone": (row.get("timezone") or "").strip() or None,
        }
        for row in records(frame)
    ]
    table = SalesRep.__table__
    stmt = store.insert(table)
    update = {name: stmt.excluded[name] for name in ("name", "active", "out_of_office", "territories", "segments",
                                                       "max_open_leads", "alert_url", "timezone")}
    with store.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["email"], set_=update), rows)
    return len(rows)


def load_accounts(store: Store, path: str | Path) -> int:
    """Insert or update known accounts from a CSV (name, website or domain, industry, employees, country)."""
    frame = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
    frame["domain"] = nz.website_to_domain(frame["domain"])
    frame["name_key"] = nz.clean_company_name(frame["name"])
    frame["country"] = nz.normalize_country(frame["country"])
    frame["employee_count"] = nz.parse_count(frame["employee_count"])
    frame = frame.loc[frame["name_key"].notna()].drop_duplicates("name_key")
    rows = records(frame, ["name", "name_key", "domain", "industry", "employee_count", "country"])
    table = Account.__table__
    stmt = store.insert(table)
    update = {name: stmt.excluded[name] for name in ("name", "domain", "industry", "employee_count", "country")}
    with store.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["name_key"], set_=update), rows)
    return len(rows)


def firmographics_for(store: Store, domains: Sequence[str]) -> pd.DataFrame:
    """Reference firmographics of these domains (one row per domain found)."""
    columns = [c.name for c in FIRMOGRAPHICS.columns if c.name != "updated_at"]
    stmt = select(*(FIRMOGRAPHICS.c[n] for n in columns)).where(
        FIRMOGRAPHICS.c.domain.in_(bindparam("values", expanding=True))
    )
    with store.begin() as conn:
        return pd.DataFrame(read_in(conn, stmt, sorted(set(domains))), columns=columns)


def upsert_firmographics(store: Store, frame: pd.DataFrame, now: datetime) -> int:
    """Insert or replace reference firmographics by domain; returns the rows written."""
    if frame.empty:
        return 0
    columns = [c.name for c in FIRMOGRAPHICS.columns if c.name != "updated_at"]
    rows = frame.loc[:, columns].assign(updated_at=now)
    stmt = store.insert(FIRMOGRAPHICS).values({name: bindparam(name) for name in [*columns, "updated_at"]})
    stmt = stmt.on_conflict_do_update(
        index_elements=["domain"],
        set_={name: stmt.excluded[name] for name in [*columns, "updated_at"] if name != "domain"},
    )
    with store.begin() as conn:
        store.bulk(conn, stmt, rows)
    return len(rows)
