"""Leads' step marks on SQLite and PostgreSQL: a mark never skips a step, and what is unfinished is readable."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update

from leadflow.crm import progress, submissions
from leadflow.crm.leads import resolve_lead_ids
from leadflow.crm.schema import Lead, SalesRep
from leadflow.crm.store import utc
from leadflow.domain.progress import LeadStep, pending_step
from leadflow.steps.faults import CRASH_AFTER_ENV, with_crash_points
from leadflow.steps.qualification import load_leads_to_qualify
from tests.helpers import lead, run_intake, write_csv

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LEADS = Lead.__table__
ROOT = Path(__file__).resolve().parents[2]


def lead_row(email: str, at: str = "2025-05-01") -> dict:
    ts = pd.Timestamp(at, tz="UTC")
    return {"email": email, "first_touch_at": ts, "last_touch_at": ts, "first_touch_source": "web_form",
            "last_touch_source": "web_form"}


def leads_at(crm, marks: dict[str, int], spam: frozenset[str] = frozenset()) -> dict[str, int]:
    """Leads with these step marks (and spam flags); their ids by email."""
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row(e) for e in marks]), NOW)
        ids = dict(conn.execute(select(LEADS.c.email, LEADS.c.id)).all())
        for email, mark in marks.items():
            conn.execute(update(LEADS).where(LEADS.c.id == ids[email])
                         .values(step_mark=mark, step_marked_at=NOW, is_spam=email in spam))
    return ids


def marks_of(crm) -> dict[str, int]:
    with crm.engine.connect() as conn:
        return dict(conn.execute(select(LEADS.c.email, LEADS.c.step_mark)).all())


def test_leads_stored_without_marks_are_complete(crm):
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("old@x.com")]), NOW)
    assert marks_of(crm) == {"old@x.com": LeadStep.COMPLETE}


def test_a_mark_moves_only_the_leads_at_the_step_before(crm):
    ids = leads_at(crm, {"new@x.com": 0, "checked@x.com": 1, "scored@x.com": 3})
    with crm.begin() as conn:
        # Details done for all three: only the spam-checked lead may move; the new one still needs its spam check.
        assert progress.mark_step(conn, ids.values(), LeadStep.DETAILED, NOW) == 1
        assert progress.mark_step(conn, [], LeadStep.SCORED, NOW) == 0
    assert marks_of(crm) == {"new@x.com": 0, "checked@x.com": 2, "scored@x.com": 3}


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["staged", "row-by-row"])
def test_a_step_s_own_update_moves_the_marks_of_the_leads_it_writes_by_the_same_rule(crm, copy_min_rows):
    crm.copy_min_rows = copy_min_rows  # PostgreSQL: COPY + UPDATE ... FROM, or executemany (SQLite: the same)
    ids = leads_at(crm, {"behind@x.com": 0, "before@x.com": 1, "ahead@x.com": 3, "still@x.com": 1,
                         "still-behind@x.com": 0, "other@x.com": 1})
    later = NOW + timedelta(hours=1)
    written = ["behind@x.com", "before@x.com", "ahead@x.com"]
    changed = pd.DataFrame({"id": [ids[e] for e in written], "company": ["Acme", "Bolt", "Core"]})
    marked = [ids[e] for e in [*written, "still@x.com", "still-behind@x.com"]]
    with crm.begin() as conn:
        progress.update_and_mark(crm, conn, changed, marked, LeadStep.DETAILED, later)
    with crm.engine.connect() as conn:
        rows = conn.execute(select(LEADS.c.email, LEADS.c.company, LEADS.c.step_mark, LEADS.c.step_marked_at)).all()
    times = utc(pd.Series([row[3] for row in rows]))
    found = {email: (company, mark, at) for (email, company, mark, _), at in zip(rows, times, strict=True)}
    plain, moved = pd.Timestamp(NOW), pd.Timestamp(later)
    # Written leads get their columns whatever their mark; only those at the step before move (and get the time).
    assert found == {"behind@x.com": ("Acme", 0, plain), "before@x.com": ("Bolt", 2, moved),
                     "ahead@x.com": ("Core", 3, plain), "still@x.com": (None, 2, moved),
                     "still-behind@x.com": (None, 0, plain), "other@x.com": (None, 1, plain)}


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["staged", "row-by-row"])
def test_qualified_leads_move_to_assigned_in_their_own_update_by_the_same_rule(crm, copy_min_rows):
    import numpy as np

    from leadflow.crm.leads import update_qualified_leads
    from leadflow.domain.accounts import LeadLinks

    crm.copy_min_rows = copy_min_rows
    ids = leads_at(crm, {"scored@x.com": 3, "owned@x.com": 3, "resumed@x.com": 4, "behind@x.com": 2,
                         "unchanged@x.com": 3})
    written = ["scored@x.com", "owned@x.com", "resumed@x.com", "behind@x.com"]
    frame = pd.DataFrame({"lead_id": [ids[e] for e in written], "account_id": [None] * 4})
    links = LeadLinks(account=pd.Series([pd.NA] * 4, dtype="Int64"), write=np.zeros(4, dtype=bool),
                      details=pd.Series([None] * 4, dtype=object))
    checks = pd.DataFrame({"checklist": ['{"passes": true}'] * 4})
    priority = pd.DataFrame({"priority": ["P1", "P2", "P3", "P4"], "priority_reason": ["r"] * 4,
                             "changed": [True, False, True, True]})
    with crm.begin() as conn:
        rep = conn.execute(SalesRep.__table__.insert().values(email="rep@x.io", name="Rep", territories=["US"],
                                                             segments=["smb"], max_open_leads=5)
                           .returning(SalesRep.__table__.c.id)).scalar_one()
    owners = pd.Series([None, rep, None, None], dtype="Int64")
    assigned = np.array([False, True, False, False])
    later = NOW + timedelta(hours=1)
    with crm.begin() as conn:
        done = update_qualified_leads(conn, crm, frame, links, checks, priority, owners, assigned, later,
                                      holds_capacity=False, mark=LeadStep.ASSIGNED)
    assert done == {ids[e] for e in written}
    with crm.engine.connect() as conn:
        rows = conn.execute(select(LEADS.c.email, LEADS.c.priority, LEADS.c.step_mark, LEADS.c.step_marked_at)).all()
    times = utc(pd.Series([row[3] for row in rows]))
    found = {email: (prio, mark, at) for (email, prio, mark, _), at in zip(rows, times, strict=True)}
    plain, moved = pd.Timestamp(NOW), pd.Timestamp(later)
    # Only leads at SCORED move (with the time); an ASSIGNED one (a resumed run's) and one behind keep theirs, and a
    # lead the statements do not write is the caller's to mark.
    assert found == {"scored@x.com": ("P1", 4, moved), "owned@x.com": (None, 4, moved),
                     "resumed@x.com": ("P3", 4, plain), "behind@x.com": ("P4", 2, plain),
                     "unchanged@x.com": (None, 3, plain)}


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["staged", "row-by-row"])
def test_leads_named_with_an_earlier_step_move_from_it_and_no_other(crm, copy_min_rows):
    """`since`: the score's write carries details' marks (PendingWrite), and may move leads from an earlier step."""
    crm.copy_min_rows = copy_min_rows
    ids = leads_at(crm, {"skipped@x.com": 0, "skipped-still@x.com": 0, "skipped-ahead@x.com": 3,
                         "skipped-checked@x.com": 1, "behind@x.com": 0, "still-behind@x.com": 0,
                         "before@x.com": 1})
    later = NOW + timedelta(hours=1)
    written = ["skipped@x.com", "skipped-ahead@x.com", "behind@x.com", "before@x.com"]
    changed = pd.DataFrame({"id": [ids[e] for e in written], "company": ["Acme", "Bolt", "Core", "Dash"]})
    since = {ids[e]: LeadStep.CREATED for e in ["skipped@x.com", "skipped-still@x.com", "skipped-ahead@x.com",
                                                "skipped-checked@x.com"]}
    with crm.begin() as conn:
        progress.update_and_mark(crm, conn, changed, ids.values(), LeadStep.DETAILED, later, since=since)
    with crm.engine.connect() as conn:
        rows = conn.execute(select(LEADS.c.email, LEADS.c.company, LEADS.c.step_mark, LEADS.c.step_marked_at)).all()
    times = utc(pd.Series([row[3] for row in rows]))
    found = {email: (company, mark, at) for (email, company, mark, _), at in zip(rows, times, strict=True)}
    plain, moved = pd.Timestamp(NOW), pd.Timestamp(later)
    # Skipped leads move from CREATED or SPAM_CHECKED, written or not; a lead ahead keeps its mark, and a lead at
    # CREATED that the caller did not name (its spam check has not run) stays behind, written or not.
    assert found == {"skipped@x.com": ("Acme", 2, moved), "skipped-still@x.com": (None, 2, moved),
                     "skipped-ahead@x.com": ("Bolt", 3, plain), "skipped-checked@x.com": (None, 2, moved),
                     "behind@x.com": ("Core", 0, plain), "still-behind@x.com": (None, 0, plain),
                     "before@x.com": ("Dash", 2, moved)}


def test_a_written_lead_the_step_does_not_mark_keeps_its_mark(crm):
    ids = leads_at(crm, {"marked@x.com": 1, "unmarked@x.com": 1})
    changed = pd.DataFrame({"id": [ids["marked@x.com"], ids["unmarked@x.com"]], "company": ["Acme", "Bolt"]})
    with crm.begin() as conn:
        progress.update_and_mark(crm, conn, changed, [ids["marked@x.com"]], LeadStep.DETAILED, NOW)
    with crm.engine.connect() as conn:
        rows = dict(conn.execute(select(LEADS.c.email, LEADS.c.company)).all())
    assert marks_of(crm) == {"marked@x.com": 2, "unmarked@x.com": 1}
    assert rows == {"marked@x.com": "Acme", "unmarked@x.com": "Bolt"}


def test_new_submissions_send_a_complete_lead_through_the_steps_again(crm):
    leads_at(crm, {"a@x.com": LeadStep.COMPLETE})
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@x.com", "2025-05-09")]).assign(
            step_mark=int(LeadStep.CREATED), step_marked_at=NOW + timedelta(hours=1)), NOW)
        assert progress.steps_by_email(conn, ["a@x.com", "b@x.com"])["a@x.com"][1] == LeadStep.CREATED


def test_qualification_finishes_routed_leads_and_scored_spam_only(crm):
    ids = leads_at(crm, {"routed@x.com": 4, "scored@x.com": 3, "spam@x.com": 3, "raw-spam@x.com": 0},
                   spam=frozenset({"spam@x.com", "raw-spam@x.com"}))
    with crm.begin() as conn:
        assert progress.finish_qualification(conn, ids.values(), NOW) == 2
    assert marks_of(crm) == {"routed@x.com": 5, "scored@x.com": 3, "spam@x.com": 5, "raw-spam@x.com": 0}


def test_qualification_never_takes_an_unscored_lead(crm):
    ids = leads_at(crm, {"new@x.com": 0, "detailed@x.com": 2, "scored@x.com": 3, "spam@x.com": 3},
                   spam=frozenset({"spam@x.com"}))
    leads, spam, unscored = load_leads_to_qualify(crm, list(ids.values()))
    assert (leads["email"].tolist(), spam, unscored) == (["scored@x.com"], 1, 2)


def test_all_unqualified_means_scored_or_cut_off_after_routing_never_spam_or_unscored(crm):
    ids = leads_at(crm, {"new@x.com": 0, "scored@x.com": 3, "routed@x.com": 4, "spam@x.com": 3, "done@x.com": 5},
                   spam=frozenset({"spam@x.com"}))
    with crm.begin() as conn:
        conn.execute(update(LEADS).where(LEADS.c.email.in_(["routed@x.com", "done@x.com"])).values(qualified_at=NOW))
    assert resolve_lead_ids(crm, all_unqualified=True) == sorted([ids["scored@x.com"], ids["routed@x.com"]])


def test_unfinished_leads_are_listed_with_their_chunk_after_the_grace_period(crm):
    ids = leads_at(crm, {"new@x.com": 0, "routed@x.com": 4, "done@x.com": 5})
    with crm.engine.connect() as conn:
        assert progress.incomplete_leads(conn, NOW).empty  # marked at NOW: maybe a live run's
        found = progress.incomplete_leads(conn, NOW + timedelta(minutes=1))
    assert sorted(zip(found["lead_id"], found["step_mark"], strict=True)) == sorted(
        [(ids["new@x.com"], 0), (ids["routed@x.com"], 4)])
    assert [pending_step(m) for m in (0, 1, 2, 3, 4, 5)] == [
        "spam_check", "details", "score", "qualification", "tasks_and_messages", "none"]


def test_a_killed_batch_s_submissions_still_wait_for_their_spam_check(crm):
    ids = leads_at(crm, {"new@x.com": 0, "done@x.com": 5})
    subs = pd.DataFrame({"idempotency_key": ["k1", "k2", "k3"],
                         "lead_id": [ids["new@x.com"], ids["new@x.com"], ids["done@x.com"]],
                         "source": "web_form", "external_id": None, "utm_source": None, "utm_medium": None,
                         "utm_campaign": None, "submitted_at": pd.to_datetime(["2025-05-01"] * 3, utc=True),
                         "message": None, "_payload": "{}"})
    with crm.begin() as conn:
        submissions.insert_submissions(crm, conn, subs.iloc[:1], "old-batch", NOW - timedelta(days=1))
        submissions.insert_submissions(crm, conn, subs.iloc[1:], "killed-batch", NOW)
    with crm.engine.connect() as conn:
        waiting = progress.waiting_submissions(conn, list(ids.values()), except_batch="this-batch")
        assert progress.waiting_submissions(conn, list(ids.values()), except_batch="killed-batch").empty
    # Only the killed batch's row of the unchecked lead: the older one was judged, the complete lead needs nothing.
    assert waiting["lead_id"].tolist() == [ids["new@x.com"]] and len(waiting) == 1


def run_with_a_failing_step(crm, path: str, monkeypatch, step: str) -> None:
    """Run intake over the file with one of its steps failing, then put the real steps back."""
    from leadflow.steps import intake

    real = intake.plain_steps

    def broken(store, **kwargs):
        def fail(*args):
            raise RuntimeError(f"{step} is down")
        return dataclasses.replace(real(store, **kwargs), **{step: fail})

    monkeypatch.setattr(intake, "plain_steps", broken)
    with pytest.raises(RuntimeError, match=f"{step} is down"):
        run_intake(crm, path)
    monkeypatch.setattr(intake, "plain_steps", real)


def test_a_failed_step_leaves_marks_that_the_re_run_finishes(crm, tmp_path, monkeypatch):
    """Scoring fails in the first run: its leads stay unqualifiable, spam-checked and undetailed (details are
    written with the scores, so neither is stored); the re-run of the file finishes them."""
    path = write_csv(tmp_path / "leads.csv", [lead("ann@acme.io"), lead("bob@beta.io", submitted_at="2025-03-02")])
    run_with_a_failing_step(crm, path, monkeypatch, "calculate_lead_score")
    assert set(marks_of(crm).values()) == {LeadStep.SPAM_CHECKED}
    with crm.engine.connect() as conn:
        assert set(conn.execute(select(LEADS.c.enrichment_status)).scalars()) == {None}
    assert resolve_lead_ids(crm, all_unqualified=True) == []
    summary = run_intake(crm, path)
    assert summary["submissions_new"] == 0 and summary["leads_scored"] == 2
    assert set(marks_of(crm).values()) == {LeadStep.SCORED}
    with crm.engine.connect() as conn:
        assert all(score is not None for score in conn.execute(select(LEADS.c.score)).scalars())


def test_a_failed_details_step_leaves_the_leads_checked_and_the_re_run_finishes_them(crm, tmp_path, monkeypatch):
    """Details fail after Check Spam marked its leads (flagged or not) in its own transaction: the re-run does not
    judge them again, and details and scores everyone once."""
    from leadflow.crm.schema import LeadEvent

    path = write_csv(tmp_path / "leads.csv", [lead("ann@acme.io"), lead("bot@mailinator.com"),
                                              lead("bob@beta.io", submitted_at="2025-03-02")])
    run_with_a_failing_step(crm, path, monkeypatch, "retrieve_lead_details")
    assert set(marks_of(crm).values()) == {LeadStep.SPAM_CHECKED}
    assert resolve_lead_ids(crm, all_unqualified=True) == []
    summary = run_intake(crm, path)
    assert summary["submissions_new"] == 0 and summary["leads_scored"] == 3 and summary["spam_flagged"] == 0
    assert set(marks_of(crm).values()) == {LeadStep.SCORED}
    with crm.engine.connect() as conn:
        flags = conn.execute(select(LeadEvent.__table__.c.event_type)
                             .where(LeadEvent.__table__.c.event_type == "spam_flagged")).all()
        spam = dict(conn.execute(select(LEADS.c.email, LEADS.c.is_spam)).all())
    assert len(flags) == 1 and spam == {"ann@acme.io": False, "bob@beta.io": False, "bot@mailinator.com": True}


@pytest.fixture
def count_lead_updates(crm):
    """A trigger that logs the id of every UPDATE of a lead row (one row per new row version), dropped after the
    test: the PostgreSQL database is the worker's for the whole session, and the fixture only empties its tables."""
    from sqlalchemy import text

    with crm.begin() as conn:
        conn.execute(text("CREATE TABLE lf_test_updates (lead_id BIGINT)"))
        if crm.dialect == "postgresql":
            conn.execute(text("CREATE FUNCTION lf_test_log() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN INSERT INTO lf_test_updates VALUES (NEW.id); RETURN NEW; END $$"))
            conn.execute(text("CREATE TRIGGER lf_test_log AFTER UPDATE ON leads FOR EACH ROW "
                              "EXECUTE FUNCTION lf_test_log()"))
        else:
            conn.execute(text("CREATE TRIGGER lf_test_log AFTER UPDATE ON leads "
                              "BEGIN INSERT INTO lf_test_updates VALUES (NEW.id); END"))
    yield
    with crm.begin() as conn:
        conn.execute(text("DROP TRIGGER lf_test_log" + (" ON leads" if crm.dialect == "postgresql" else "")))
        if crm.dialect == "postgresql":
            conn.execute(text("DROP FUNCTION lf_test_log()"))
        conn.execute(text("DROP TABLE lf_test_updates"))


def lead_updates(crm) -> dict[str, int]:
    from sqlalchemy import text

    with crm.engine.connect() as conn:
        rows = conn.execute(text("SELECT l.email, count(u.lead_id) FROM leads l LEFT JOIN lf_test_updates u "
                                 "ON u.lead_id = l.id GROUP BY l.email")).all()
    return {email: int(n) for email, n in rows}


def test_a_first_intake_writes_each_clean_lead_twice_after_creating_it(crm, tmp_path, count_lead_updates):
    """Create Lead Entry inserts the lead; Check Spam marks it; its details go with the score's write: two UPDATEs
    per lead (a new row version on PostgreSQL each; three before); a flagged lead gets its flag, mark and score."""
    path = write_csv(tmp_path / "leads.csv", [lead("ann@acme.io", company="Acme", website="acme.io"),
                                              lead("bob@beta.io", company="Beta"), lead("bot@mailinator.com"),
                                              lead("cy@gmail.com", submitted_at="2025-03-02")])
    summary = run_intake(crm, path)
    assert summary["leads_scored"] == 4 and summary["spam_flagged"] == 1
    assert set(marks_of(crm).values()) == {LeadStep.SCORED}
    assert lead_updates(crm) == {"ann@acme.io": 2, "bob@beta.io": 2, "cy@gmail.com": 2, "bot@mailinator.com": 3}
    with crm.engine.connect() as conn:
        stored = conn.execute(select(LEADS.c.email, LEADS.c.enrichment_status, LEADS.c.score)).all()
    assert all(status is not None and score is not None for _, status, score in stored)


def test_the_crash_hook_kills_only_at_its_point_and_costs_nothing_unset(monkeypatch):
    steps = object()
    monkeypatch.delenv(CRASH_AFTER_ENV, raising=False)
    assert with_crash_points(steps, {}) is steps
    script = ("from leadflow.steps.faults import crash_after\n"
              "crash_after('Check Spam'); crash_after('Calculate Lead Score'); print('alive', flush=True)\n"
              "crash_after('Check Spam')\nprint('survived')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), CRASH_AFTER_ENV: "Check Spam:2"})
    assert (done.returncode, done.stdout.split()) == (-9, ["alive"])


def test_a_run_killed_before_its_spam_check_still_has_it_done_when_another_run_writes_the_lead_meanwhile(
        crm, tmp_path, monkeypatch):
    """Run A has judged a person; run B stores a spammy submission of theirs and is killed before its spam check;
    A's details and score write must leave the lead at CREATED, so that B's re-run judges (and flags) it."""
    from leadflow.steps import intake

    a = write_csv(tmp_path / "a.csv", [lead("pat@acme.io")])
    b = write_csv(tmp_path / "b.csv", [lead("pat@acme.io", submitted_at="2025-03-05T10:00:00Z", honeypot="filled")])
    real = intake.plain_steps

    def killed_b(store, **kw):
        def die(*args, **kwargs):
            raise RuntimeError("B killed")
        return dataclasses.replace(real(store, **kw), check_spam=die)

    def a_steps(store, **kw):
        steps = real(store, **kw)

        def details(*args, **kwargs):
            monkeypatch.setattr(intake, "plain_steps", killed_b)
            with pytest.raises(RuntimeError, match="B killed"):
                run_intake(crm, b)
            monkeypatch.setattr(intake, "plain_steps", a_steps)
            return steps.retrieve_lead_details(*args, **kwargs)

        return dataclasses.replace(steps, retrieve_lead_details=details)

    monkeypatch.setattr(intake, "plain_steps", a_steps)
    run_intake(crm, a)
    assert marks_of(crm) == {"pat@acme.io": LeadStep.CREATED}
    monkeypatch.setattr(intake, "plain_steps", real)
    assert run_intake(crm, b)["spam_flagged"] == 1
    with crm.engine.connect() as conn:
        assert conn.execute(select(LEADS.c.is_spam)).scalar_one() is True
