"""The company-match review queue in the CRM: the leads waiting for a person, and recording a person's decision.

Check Company Existence keeps such leads unlinked with band `needs_review`, the best candidate and its score in
`leads.match_details`. steps/review.py decides what a person's answer means; this module reads the queue and the
lead, and records the decision in `match_details["review"]` and as a `match_reviewed` event.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, not_, select, update

from leadflow.crm.schema import Account, Lead, LeadEvent
from leadflow.crm.store import Store

LEADS = Lead.__table__
ACCOUNTS = Account.__table__
EVENTS = LeadEvent.__table__
REVIEW_BAND = "needs_review"
REVIEWED_EVENT = "match_reviewed"


def _band():
    return LEADS.c.match_details["band"].as_string()


def _waiting():
    """Leads still waiting for a person: unlinked, needs_review, not spam."""
    return (LEADS.c.account_id.is_(None), _band() == REVIEW_BAND, not_(LEADS.c.is_spam))


def review_queue(store: Store, limit: int = 50) -> tuple[int, pd.DataFrame]:
    """How many leads wait for a review, and the `limit` closest calls (highest score first) with their candidate."""
    score = LEADS.c.match_details["score"].as_float()
    candidate = LEADS.c.match_details["candidate_account_id"].as_integer()
    with store.engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(LEADS).where(*_waiting())).scalar_one())
        rows = conn.execute(
            select(LEADS.c.id, LEADS.c.email, LEADS.c.company, score.label("score"), candidate.label("candidate"),
                   ACCOUNTS.c.name.label("candidate_name"), ACCOUNTS.c.domain.label("candidate_domain"),
                   LEADS.c.created_at)
            .select_from(LEADS.outerjoin(ACCOUNTS, ACCOUNTS.c.id == candidate))
            .where(*_waiting())
            .order_by(score.desc(), LEADS.c.id)
            .limit(limit)
        ).all()
    columns = ["lead_id", "email", "company", "score", "candidate_account_id", "candidate_name", "candidate_domain",
               "created_at"]
    return total, pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _details(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def review_state(store: Store, lead_id: int) -> tuple[int | None, dict[str, Any], bool] | None:
    """A lead's account, match details and spam flag (None when there is no such lead)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(LEADS.c.account_id, LEADS.c.match_details, LEADS.c.is_spam)
                           .where(LEADS.c.id == lead_id)).first()
    if row is None:
        return None
    return (None if row.account_id is None else int(row.account_id)), _details(row.match_details), bool(row.is_spam)


def account_exists(store: Store, account_id: int) -> bool:
    """Whether an account with this id exists."""
    with store.engine.connect() as conn:
        return conn.execute(select(ACCOUNTS.c.id).where(ACCOUNTS.c.id == account_id)).first() is not None


def record_review(store: Store, lead_id: int, account_id: int, details: dict[str, Any], record: dict[str, Any],
                  account_created: bool, now: datetime) -> bool:
    """Link a still unlinked lead as a person decided, with a match_reviewed event; False if it was linked meanwhile."""
    with store.begin() as conn:
        # Guarded by "still unlinked": two people deciding at once, the first decision stands.
        done = conn.execute(update(LEADS).where(LEADS.c.id == lead_id, LEADS.c.account_id.is_(None))
                            .values(account_id=account_id, match_details={**details, "review": record},
                                    updated_at=now)).rowcount
        if done:
            conn.execute(EVENTS.insert().values(
                lead_id=lead_id, event_type=REVIEWED_EVENT, occurred_at=now, batch_id=None, flow_run_id=None,
                details={**record, "band": details.get("band"), "score": details.get("score"),
                         "candidate_account_id": details.get("candidate_account_id"),
                         "account_created": account_created}))
    return bool(done)
