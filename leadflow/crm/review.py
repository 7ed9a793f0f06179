"""The company-match review queue: leads whose company resembles an account too loosely to be linked unseen.

Check Company Existence keeps such leads unlinked with band `needs_review`, the best candidate and its score in
`leads.match_details`. A person then links the lead to the candidate (or another account) or says it is a new
company; the decision is stored in `match_details["review"]` and as a `match_reviewed` event, and later
qualification runs keep a reviewed link instead of matching the lead again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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


class ReviewError(ValueError):
    """A review decision that cannot be applied; the message says why in one line."""


@dataclass
class Resolution:
    """What one review decision did."""

    lead_id: int
    decision: str
    account_id: int
    account_created: bool = False
    changed: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)


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


def resolve_match(store: Store, lead_id: int, *, now: datetime, account_id: int | None = None,
                  new_account: bool = False, reviewer: str | None = None, policy: str | None = None) -> Resolution:
    """Apply a person's decision on a needs_review lead: link it to an account (default: the candidate) or to a new one.

    Deciding the same again changes nothing; a lead linked otherwise, or not waiting for a review, is refused.
    """
    decision = "new_account" if new_account else "link"
    if new_account and account_id is not None:
        raise ReviewError("give an account to link to or ask for a new account, not both")
    with store.engine.connect() as conn:
        row = conn.execute(select(LEADS.c.account_id, LEADS.c.match_details, LEADS.c.is_spam)
                           .where(LEADS.c.id == lead_id)).first()
    if row is None:
        raise ReviewError(f"no lead with id {lead_id}")
    details = _details(row.match_details)
    review = details.get("review")
    if row.account_id is not None:
        if review and review.get("decision") == decision and (account_id is None or account_id == row.account_id):
            return Resolution(lead_id, decision, int(row.account_id), changed=False)
        raise ReviewError(f"lead {lead_id} is already linked to account {row.account_id}; "
                          "the review queue holds unlinked leads only")
    if row.is_spam:
        raise ReviewError(f"lead {lead_id} is flagged as spam")
    if details.get("band") != REVIEW_BAND:
        raise ReviewError(f"lead {lead_id}'s company match is {details.get('band') or 'missing'}, not {REVIEW_BAND}")
    created = False
    if new_account:
        account_id, created = _new_account(store, lead_id, policy)
    else:
        account_id = account_id if account_id is not None else details.get("candidate_account_id")
        if account_id is None:
            raise ReviewError(f"lead {lead_id} has no candidate account: give one, or ask for a new account")
        with store.engine.connect() as conn:
            if conn.execute(select(ACCOUNTS.c.id).where(ACCOUNTS.c.id == account_id)).first() is None:
                raise ReviewError(f"no account with id {account_id}")
    account_id = int(account_id)
    record = {"decision": decision, "account_id": account_id, "reviewer": reviewer, "reviewed_at": now.isoformat()}
    with store.begin() as conn:
        # Guarded by "still unlinked": two people deciding at once, the first decision stands.
        done = conn.execute(update(LEADS).where(LEADS.c.id == lead_id, LEADS.c.account_id.is_(None))
                            .values(account_id=account_id, match_details={**details, "review": record},
                                    updated_at=now)).rowcount
        if done:
            conn.execute(EVENTS.insert().values(
                lead_id=lead_id, event_type=REVIEWED_EVENT, occurred_at=now, batch_id=None, flow_run_id=None,
                details={**record, "band": details.get("band"), "score": details.get("score"),
                         "candidate_account_id": details.get("candidate_account_id"), "account_created": created}))
    if not done:
        raise ReviewError(f"lead {lead_id} was linked by someone else meanwhile")
    return Resolution(lead_id, decision, account_id, account_created=created)


def _new_account(store: Store, lead_id: int, policy: str | None) -> tuple[int, bool]:
    """Create (or find) the account of the lead's own company, as Create Account Entry would have."""
    from leadflow.crm.accounts import ACCOUNT_COLUMNS, create_accounts
    from leadflow.crm.leads import load_leads
    from leadflow.domain import accounts as matching
    from leadflow.domain.qualification import load_qualification_policy

    leads = load_leads(store, [lead_id])
    # No accounts at all (what load_accounts gives on an empty CRM), without reading every account for one lead.
    none = pd.DataFrame(columns=list(ACCOUNT_COLUMNS))
    # Matched against no accounts, the lead's company comes out as a new company with its cleaned name and domain.
    match = matching.match_companies(leads, none, load_qualification_policy(policy or "qualification").matching)
    if match["match_band"].iloc[0] != "new_company":
        raise ReviewError(f"lead {lead_id} has no company name to create an account from")
    result = create_accounts(store, leads, match)
    account = result.account_ids.iloc[0]
    if pd.isna(account):
        raise ReviewError(f"no account could be created for lead {lead_id}")
    return int(account), result.created > 0
