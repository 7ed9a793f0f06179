"""Qualification's reads and writes in leadflow/crm (leads, accounts, assignments, tasks), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select, update

from leadflow.crm import accounts, assignments, leads, tasks
from leadflow.crm.schema import Account, CrmTask, Lead, LeadSubmission, SalesRep
from leadflow.domain import accounts as matching
from leadflow.domain.qualification import load_qualification_policy

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TS = pd.Timestamp("2026-11-20", tz="UTC")


def seed_leads(crm, emails: list[str], **columns) -> dict[str, int]:
    """Leads with these emails (and columns); returns their ids by email."""
    frame = pd.DataFrame({"email": emails, "status": "new", "is_spam": False, "do_not_contact": False,
                          "first_touch_at": TS, "last_touch_at": TS, "first_touch_source": "web_form",
                          "last_touch_source": "web_form", **columns})
    with crm.begin() as conn:
        crm.upsert_leads(conn, frame, NOW)
        return dict(conn.execute(select(Lead.email, Lead.id)).tuples().all())


def seed_reps(crm, n: int, capacity: int = 2) -> list[int]:
    with crm.begin() as conn:
        conn.execute(SalesRep.__table__.insert(), [
            {"email": f"rep{r}@x.io", "name": f"Rep {r}", "territories": ["US"], "segments": ["smb"],
             "max_open_leads": capacity} for r in range(n)])
        return sorted(conn.execute(select(SalesRep.id)).scalars())


def test_resolve_lead_ids_by_id_email_and_never_qualified(crm):
    ids = seed_leads(crm, ["a@x.io", "b@x.io", "spam@x.io", "done@x.io"])
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.email == "spam@x.io").values(is_spam=True))
        conn.execute(update(Lead).where(Lead.email == "done@x.io").values(qualified_at=NOW))
    assert leads.resolve_lead_ids(crm, [ids["b@x.io"]]) == [ids["b@x.io"]]
    assert leads.resolve_lead_ids(crm, None, [" A@X.io ", "", "nobody@x.io"]) == [ids["a@x.io"]]
    assert leads.resolve_lead_ids(crm, [ids["a@x.io"]], ["a@x.io"]) == [ids["a@x.io"]]
    assert leads.resolve_lead_ids(crm, all_unqualified=True) == sorted([ids["a@x.io"], ids["b@x.io"]])


def test_load_leads_reads_every_column_with_all_messages(crm):
    ids = seed_leads(crm, ["a@x.io", "b@x.io", "c@x.io"], demo_requested=[True, False, None],
                     email_opt_in=[None, True, False])
    with crm.begin() as conn:
        conn.execute(LeadSubmission.__table__.insert(), [
            {"idempotency_key": f"k{i}", "lead_id": ids[email], "batch_id": "t", "source": "web_form",
             "submitted_at": TS, "received_at": TS, "message": text, "raw_payload": {}}
            for i, (email, text) in enumerate([("a@x.io", "first"), ("a@x.io", "second"), ("b@x.io", "only"),
                                               ("c@x.io", None)])])
    frame = leads.load_leads(crm, list(ids.values()))
    assert frame["lead_id"].tolist() == sorted(ids.values())
    assert set(frame.columns) >= {*(c for c in leads.LEAD_COLUMNS if c != "id"), "message"}
    by_email = frame.set_index("email")
    assert sorted(by_email.loc["a@x.io", "message"].split("\n")) == ["first", "second"]
    assert by_email.loc["b@x.io", "message"] == "only" and pd.isna(by_email.loc["c@x.io", "message"])
    # Booleans come back as booleans on both databases (SQLite's raw rows hold 0/1).
    assert str(frame["demo_requested"].dtype) == "boolean" and str(frame["is_spam"].dtype) == "boolean"
    assert by_email["demo_requested"].tolist()[:2] == [True, False] and pd.isna(by_email["demo_requested"].iloc[2])
    assert by_email["email_opt_in"].tolist()[1:] == [True, False]
    assert leads.load_leads(crm, []).empty


def test_create_accounts_once_per_company_and_find_them_again(crm):
    policy = load_qualification_policy()
    seed_leads(crm, ["a@x.io"])
    with crm.begin() as conn:
        conn.execute(Account.__table__.insert(), [{"name": "Globex", "name_key": "globex", "domain": "globex.io"}])
    frame = pd.DataFrame({"lead_id": [1, 2, 3], "company": ["Brand New Widgets", "brand new widgets", "Globex"],
                          "company_domain": [None, None, "globex.io"], "email_domain": [None, None, None]})
    match = matching.match_companies(frame, accounts.load_accounts(crm), policy.matching)
    assert match["match_band"].tolist() == ["new_company", "new_company", "domain"]
    first = accounts.create_accounts(crm, frame, match)
    assert (first.proposed, first.created) == (1, 1)
    assert first.account_ids.iloc[0] == first.account_ids.iloc[1] and pd.isna(first.account_ids.iloc[2])
    again = accounts.create_accounts(crm, frame, match)
    assert again.created == 0 and again.account_ids.tolist()[:2] == first.account_ids.tolist()[:2]
    assert len(accounts.load_accounts(crm)) == 2
    nothing_new = accounts.create_accounts(crm, frame.iloc[2:], match.iloc[2:])
    assert (nothing_new.proposed, nothing_new.created) == (0, 0)


def test_an_account_created_meanwhile_under_another_name_is_found_by_domain(crm):
    policy = load_qualification_policy()
    frame = pd.DataFrame({"lead_id": [1], "company": ["Initrode"], "company_domain": ["initrode.net"],
                          "email_domain": [None]})
    match = matching.match_companies(frame, accounts.load_accounts(crm), policy.matching)
    # Another run commits the same domain under another name between this run's match and its insert.
    with crm.begin() as conn:
        other = conn.execute(Account.__table__.insert().values(name="Initrode LLC", name_key="initrode llc",
                                                               domain="initrode.net").returning(Account.id)).scalar()
    result = accounts.create_accounts(crm, frame, match)
    assert result.created == 0 and result.account_ids.tolist() == [other]


def test_account_owners_are_claimed_only_where_none(crm):
    reps = seed_reps(crm, 2)
    with crm.begin() as conn:
        conn.execute(Account.__table__.insert(), [
            {"name": "A", "name_key": "a", "owner_id": reps[0]}, {"name": "B", "name_key": "b", "owner_id": None},
            {"name": "C", "name_key": "c", "owner_id": None}])
        ids = [conn.execute(select(Account.id).where(Account.name == n)).scalar_one() for n in "ABC"]
        assert accounts.account_owners(conn, ids) == {ids[0]: reps[0]}
        accounts.claim_account_owners(conn, crm, {ids[0]: reps[1], ids[1]: reps[1]}, NOW)
        accounts.claim_account_owners(conn, crm, {}, NOW)
        assert accounts.account_owners(conn, ids) == {ids[0]: reps[0], ids[1]: reps[1]}


def test_capacity_is_reserved_within_limits_and_rotation_recorded(crm):
    reps = seed_reps(crm, 2, capacity=2)
    with crm.begin() as conn:
        assignments.reserve_capacity(conn, {reps[0]: 1, reps[1]: 2})
        assignments.record_rotation(conn, {reps[1]: 7})
    with pytest.raises(assignments.CapacityConflict), crm.begin() as conn:
        assignments.reserve_capacity(conn, {reps[1]: 1, reps[0]: 1})
    frame = assignments.reps_frame(crm).set_index("id")
    # The failed reservation rolled back with its transaction: the first rep's slot taken in it is free again.
    assert frame["open_leads"].to_dict() == {reps[0]: 1, reps[1]: 2}
    assert frame.loc[reps[1], "last_assigned_seq"] == 7
    with crm.begin() as conn:
        locked = assignments.load_reps(conn, lock=True)
    assert locked["id"].tolist() == reps


def test_tasks_insert_once_wait_in_queue_and_hand_over(crm):
    ids = seed_leads(crm, ["a@x.io", "b@x.io"])
    rep = seed_reps(crm, 1)[0]
    a, b = ids["a@x.io"], ids["b@x.io"]
    frame = pd.DataFrame({"idempotency_key": [f"qualification:lead:{a}", f"qualification:lead:{b}",
                                              f"discovery_call:lead:{a}"],
                          "lead_id": [a, b, a], "owner_id": pd.array([None, rep, None], dtype="Int64"),
                          "kind": ["qualification", "qualification", "discovery_call"], "status": "open",
                          "due_at": NOW, "details": "{}", "created_at": NOW, "completed_at": None})
    assert tasks.insert_tasks(crm, frame) == 3
    assert tasks.insert_tasks(crm, frame) == 0 and tasks.insert_tasks(crm, frame.iloc[:0]) == 0
    with crm.begin() as conn:
        assert tasks.waiting_in_queue(conn, [a, b]) == {a}
        conn.execute(update(CrmTask).where(CrmTask.kind == "discovery_call").values(status="done"))
        tasks.hand_over_open_tasks(conn, crm, pd.DataFrame({"b_id": [a], "b_owner": [rep]}))
        assert tasks.waiting_in_queue(conn, [a, b]) == set()
    with crm.engine.connect() as conn:
        owners = dict(conn.execute(select(CrmTask.idempotency_key, CrmTask.owner_id)).tuples().all())
    # Only the open task moves to the new owner; a closed one stays as it was.
    assert owners == {f"qualification:lead:{a}": rep, f"qualification:lead:{b}": rep,
                      f"discovery_call:lead:{a}": None}


def test_sla_breaches_are_open_tasks_of_open_leads_reported_once(crm):
    ids = seed_leads(crm, ["open@x.io", "closed@x.io", "spam@x.io", "later@x.io"])
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.email == "closed@x.io").values(status="converted"))
        conn.execute(update(Lead).where(Lead.email == "spam@x.io").values(spam_flagged_at=NOW))
    due = {"open@x.io": NOW - timedelta(minutes=5), "closed@x.io": NOW - timedelta(minutes=5),
           "spam@x.io": NOW - timedelta(minutes=5), "later@x.io": NOW + timedelta(minutes=5)}
    tasks.insert_tasks(crm, pd.DataFrame({
        "idempotency_key": [f"qualification:lead:{ids[e]}" for e in due], "lead_id": [ids[e] for e in due],
        "kind": "qualification", "status": "open", "due_at": list(due.values()), "details": "{}",
        "created_at": NOW}))
    with crm.begin() as conn:
        found = tasks.sla_breaches(conn, NOW)
        assert found["lead_id"].tolist() == [ids["open@x.io"]]
        assert str(found["due_at"].dt.tz) == "UTC" and found["due_at"].iloc[0] == due["open@x.io"]
        tasks.mark_sla_notified(conn, found["id"].tolist(), NOW)
    with crm.begin() as conn:
        assert tasks.sla_breaches(conn, NOW).empty
        assert tasks.sla_breaches(conn, NOW + timedelta(minutes=10))["lead_id"].tolist() == [ids["later@x.io"]]
