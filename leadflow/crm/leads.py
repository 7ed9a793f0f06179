"""The leads table as qualification reads and writes it: which leads to qualify, their columns, their decisions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, SmallInteger, and_, bindparam, case, func, literal_column, or_, select, update

from leadflow.crm.schema import Lead, LeadSubmission
from leadflow.crm.store import Store, select_in, utc
from leadflow.domain.accounts import LeadLinks
from leadflow.domain.progress import LeadStep

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__

LEAD_COLUMNS = (
    "id", "email", "first_name", "last_name", "job_title", "country", "company", "company_key", "company_domain",
    "email_domain", "company_size", "industry", "employee_count", "revenue_band", "seniority", "page_views",
    "pricing_page_visits", "demo_requested", "intent_score", "score", "tier", "priority", "priority_reason",
    "checklist", "match_details", "account_id", "owner_id", "do_not_contact", "email_opt_in", "is_spam", "status",
    "last_touch_at",
    "step_mark",
)


def resolve_lead_ids(store: Store, lead_ids: Sequence[int] | None = None, emails: Sequence[str] | None = None,
                     all_unqualified: bool = False) -> list[int]:
    """Ids of the leads to qualify: given ids, leads with these emails, or every lead never qualified.

    "Never qualified" is a scored lead without a qualification, or one whose qualification stopped before its
    tasks and messages; a lead still waiting for its spam check, details or score is not ready (step marks).
    """
    ids = {int(i) for i in (lead_ids or [])}
    with store.engine.connect() as conn:
        if emails:
            wanted = [e.strip().lower() for e in emails if e and e.strip()]
            ids.update(int(r[0]) for r in select_in(conn, [LEADS.c.id], LEADS.c.email, wanted))
        if all_unqualified:
            stmt = select(LEADS.c.id).where(
                LEADS.c.is_spam.is_(False),
                or_(and_(LEADS.c.qualified_at.is_(None), LEADS.c.step_mark >= int(LeadStep.SCORED)),
                    LEADS.c.step_mark == int(LeadStep.ASSIGNED)))
            ids.update(conn.execute(stmt).scalars())
    return sorted(ids)


def load_leads(store: Store, lead_ids: Sequence[int]) -> pd.DataFrame:
    """The leads to qualify with every column qualification reads, and all their messages (oldest first)."""
    with store.engine.connect() as conn:
        rows = select_in(conn, [LEADS.c[c] for c in LEAD_COLUMNS], LEADS.c.id, [int(i) for i in lead_ids], raw=True)
        # Column lists, not row tuples: pandas builds the same frame from them in half the time.
        columns = zip(*rows, strict=True) if rows else ([] for _ in LEAD_COLUMNS)
        frame = pd.DataFrame(dict(zip(LEAD_COLUMNS, map(list, columns), strict=True))).rename(
            columns={"id": "lead_id"})
        texts = select_in(conn, [SUBMISSIONS.c.lead_id, SUBMISSIONS.c.message], SUBMISSIONS.c.lead_id,
                          frame["lead_id"].tolist(), SUBMISSIONS.c.message.is_not(None), raw=True)
    frame = frame.sort_values("lead_id", kind="stable").reset_index(drop=True)
    if texts:
        table = pd.DataFrame(texts, columns=["lead_id", "message"])
        # Most leads have one message: only the others are joined (a Python join per group is the slow part).
        several = table["lead_id"].duplicated(keep=False).to_numpy()
        msgs = pd.concat([table.loc[~several].set_index("lead_id")["message"],
                          table.loc[several].groupby("lead_id", sort=False)["message"].agg("\n".join)])
        frame["message"] = frame["lead_id"].map(msgs).astype("string")
    else:
        frame["message"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["step_mark"] = pd.to_numeric(frame["step_mark"]).astype("int64")
    for name in ("do_not_contact", "is_spam"):
        frame[name] = frame[name].astype("boolean").fillna(False)
    for name in ("demo_requested", "email_opt_in"):  # raw rows: SQLite hands booleans back as 0/1
        frame[name] = frame[name].astype("boolean")
    frame["last_touch_at"] = utc(frame["last_touch_at"])  # raw rows: SQLite hands times back as text
    return frame


def current_owners(conn: Connection, lead_ids: Sequence[int]) -> dict[int, int]:
    """The owner of each of these leads that has one, read inside the caller's (assignment) transaction."""
    return dict(select_in(conn, [LEADS.c.id, LEADS.c.owner_id], LEADS.c.id, lead_ids, LEADS.c.owner_id.is_not(None),
                          raw=True))


def _lead_updates(leads: pd.DataFrame, links: LeadLinks, checks: pd.DataFrame, priority: pd.DataFrame,
                  owners: pd.Series, assigned: np.ndarray, now: datetime,
                  holds_capacity: bool = True, mark: LeadStep | None = None) -> list[tuple[Any, pd.DataFrame]]:
    """The UPDATEs that store each changed lead's new account, match evidence, checklist and priority, and owner.

    One row per changed lead, grouped by which of these parts changed so that each statement sets only those
    columns: an unchanged account or owner costs no foreign key check and no index update. qualified_at moves
    with the priority, and a lead that has an owner keeps it (COALESCE: a concurrent run may have just set one).
    """
    stored = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    parts = {
        "account": (links.account.fillna(-1) != stored.fillna(-1)).to_numpy(dtype=bool),
        "evidence": links.write,
        "priority": priority["changed"].to_numpy(dtype=bool),
        "owner": assigned,
    }
    values = {
        "account": {"account_id": bindparam("b_account_id")},
        "evidence": {"match_details": bindparam("b_match_details")},
        "priority": {"checklist": bindparam("b_checklist"), "priority": bindparam("b_priority"),
                     "priority_reason": bindparam("b_reason"), "qualified_at": bindparam("b_now")},
        # A live assignment holds one of the rep's open-lead slots until the lead closes (leadflow/crm/assignments.py).
        "owner": {"owner_id": func.coalesce(LEADS.c.owner_id, bindparam("b_owner")),
                  "holds_capacity": bindparam("b_holds")},
    }
    frame = pd.DataFrame({
        "b_id": leads["lead_id"].to_numpy(), "b_account_id": links.account.astype("Int64").to_numpy(),
        "b_match_details": links.details.to_numpy(), "b_checklist": checks["checklist"].to_numpy(),
        "b_priority": priority["priority"].to_numpy(), "b_reason": priority["priority_reason"].to_numpy(),
        "b_owner": owners.astype("Int64").to_numpy(), "b_now": now, "b_holds": holds_capacity,
    })
    pattern = sum(mask.astype(np.int64) << bit for bit, mask in enumerate(parts.values()))
    marks: dict[str, Any] = {}
    if mark is not None:
        # The step mark moves in the same UPDATE (one row version on PostgreSQL instead of two), by mark_step's rule:
        # only a lead at the step right before moves. Literal steps: a bulk statement binds only frame columns.
        moves = LEADS.c.step_mark == literal_column(str(int(mark) - 1), SmallInteger)
        marks = {"step_mark": case((moves, literal_column(str(int(mark)), SmallInteger)), else_=LEADS.c.step_mark),
                 "step_marked_at": case((moves, bindparam("b_now", type_=LEADS.c.step_marked_at.type)),
                                         else_=LEADS.c.step_marked_at)}
    updates = []
    for code in sorted(set(np.unique(pattern).tolist()) - {0}):
        chosen = [name for bit, name in enumerate(parts) if code >> bit & 1]
        stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"))
                .values(**{k: v for name in chosen for k, v in values[name].items()}, **marks,
                        updated_at=bindparam("b_now")))
        updates.append((stmt, frame.loc[pattern == code]))
    return updates


def update_qualified_leads(conn: Connection, store: Store, leads: pd.DataFrame, links: LeadLinks,
                           checks: pd.DataFrame, priority: pd.DataFrame, owners: pd.Series, assigned: np.ndarray,
                           now: datetime, holds_capacity: bool = True, mark: LeadStep | None = None) -> set[int]:
    """Store what qualification decided for the changed leads (link, evidence, checklist, priority, owner).

    `mark`: the same UPDATEs move the changed leads' step mark to this step (those at the step before it); returns
    the ids written, so that the caller marks the others separately.
    """
    written: set[int] = set()
    for stmt, changes in _lead_updates(leads, links, checks, priority, owners, assigned, now,
                                       holds_capacity=holds_capacity, mark=mark):
        store.bulk(conn, stmt, changes)
        written.update(int(i) for i in changes["b_id"].tolist())
    return written


def record_new_company_evidence(store: Store, lead_ids: Sequence[int], details: Sequence[str]) -> None:
    """Store the "new company" match evidence of leads not linked yet, as their accounts are created.

    Assign Lead Owner links them later; should a kill come in between, the next run still knows these accounts
    were new to these leads (it would otherwise find them by domain).
    """
    frame = pd.DataFrame({"b_id": [int(i) for i in lead_ids], "b_details": list(details)})
    if frame.empty:
        return
    stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.account_id.is_(None))
            .values(match_details=bindparam("b_details")))
    with store.begin() as conn:
        store.bulk(conn, stmt, frame)


def insert_events(conn: Connection, store: Store, events: pd.DataFrame) -> None:
    """Append qualification's events to the audit log inside the caller's transaction."""
    store.insert_events(conn, events)
