"""Several qualification runs at once over overlapping companies and one rep pool (PostgreSQL and SQLite).

Each run is the production sequence (leadflow.steps.qualification.qualify, data check included) with the plain
steps in place of the flow's tasks.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import func, select

from leadflow.crm.schema import Account, Lead, SalesRep
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.steps.qualification import local_steps, qualify

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
COMPANIES = [("Acme Widgets", "acmewidgets.com"), ("ACME WIDGETS, Inc.", None), ("Globex Systems", "globex.io"),
             ("globex systems gmbh", "https://www.globex.io/"), ("Initrode", None), ("Initrode LLC", "initrode.net"),
             ("Vandelay Industries", "vandelay.com"), ("Vandelay Industries Ltd", None), ("Hooli", "hooli.xyz"),
             ("Pied Piper", None), ("pied piper inc", None), ("Massive Dynamic", "massivedynamic.com")]


def seed(crm, runs: int, per_run: int, capacity: int, companies: bool = True) -> list[list[int]]:
    """Leads for each run, every run touching the same companies; four US reps of equal capacity."""
    ts = pd.Timestamp(NOW) - pd.Timedelta(hours=1)  # fresh: within the policy's message window
    rows = []
    for i in range(runs * per_run):
        name, site = COMPANIES[i % len(COMPANIES)] if companies else (None, None)
        rows.append({"email": f"lead{i}@mail{i}.example", "company": name, "company_domain": site,
                     "country": "US", "company_size": "201-1000", "first_touch_at": ts, "last_touch_at": ts,
                     "first_touch_source": "web_form", "last_touch_source": "web_form"})
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame(rows), NOW)
        conn.execute(SalesRep.__table__.insert(), [
            {"email": f"rep{r}@x.io", "name": f"Rep {r}", "territories": ["US"], "segments": ["mid_market"],
             "max_open_leads": capacity} for r in range(4)])
        ids = sorted(conn.execute(select(Lead.id)).scalars())
    return [ids[r::runs] for r in range(runs)]


def run_all(crm, groups: list[list[int]]) -> list:
    policy = load_qualification_policy()
    barrier = threading.Barrier(len(groups))
    results, errors = [], []

    def work(ids: list[int]) -> None:
        barrier.wait()
        try:
            results.append(qualify(local_steps(crm), ids, policy, QualificationSummary(policy_version=policy.version),
                                   replay=False, timezone="UTC", clock=lambda: NOW, chunk_size=50_000))
        except Exception as exc:  # collected so the test reports it instead of losing it in a thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


@pytest.mark.parametrize(("capacity", "expected_each"), [(15, 15), (100, None)])
def test_concurrent_runs_share_accounts_and_never_exceed_capacity(crm, capacity, expected_each):
    groups = seed(crm, runs=4, per_run=30, capacity=capacity)
    results = run_all(crm, groups)
    with crm.engine.connect() as conn:
        accounts = conn.execute(select(Account.id, Account.name_key, Account.domain, Account.owner_id)).all()
        leads = conn.execute(select(Lead.id, Lead.company, Lead.account_id, Lead.owner_id)).all()
        reps = conn.execute(select(SalesRep.id, SalesRep.open_leads, SalesRep.max_open_leads)).all()
        owned = dict(conn.execute(select(Lead.owner_id, func.count()).where(Lead.owner_id.is_not(None))
                                  .group_by(Lead.owner_id)).all())
    # No duplicate accounts: one per company however it was spelled, whichever run created it.
    assert len(accounts) == 7, sorted(a.name_key for a in accounts)
    by_company: dict[str, set[int]] = {}
    for lead in leads:
        by_company.setdefault(lead.company.lower().split()[0], set()).add(lead.account_id)
    assert all(len(ids) == 1 and None not in ids for ids in by_company.values())
    assert sum(r.accounts_created for r in results) == 7
    # No rep over capacity, and the counter agrees with the leads actually owned.
    assert all(r.open_leads <= r.max_open_leads for r in reps)
    assert {r.id: r.open_leads for r in reps} == {r.id: owned.get(r.id, 0) for r in reps}
    if expected_each is not None:
        assert {r.open_leads for r in reps} == {expected_each}
        assert sum(r.newly_queued for r in results) == 120 - 4 * expected_each
    else:
        assert sum(r.open_leads for r in reps) == 120
        # Every lead of an account went to that account's one rep, whichever run routed it.
        owner_of = {a.id: a.owner_id for a in accounts}
        assert all(lead.owner_id == owner_of[lead.account_id] for lead in leads)
        assert len({a.owner_id for a in accounts}) == 4


def test_concurrent_round_robin_stays_fair(crm):
    groups = seed(crm, runs=4, per_run=30, capacity=100, companies=False)
    run_all(crm, groups)
    with crm.engine.connect() as conn:
        spread = Counter(dict(conn.execute(select(SalesRep.id, SalesRep.open_leads)).all()))
    assert sorted(spread.values()) == [30, 30, 30, 30]
