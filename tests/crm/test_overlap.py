"""Create Lead Entry of chunk N+1 beside chunk N's later steps (PostgreSQL): the same CRM as one chunk after another.

See `Hold` and `write_beside` in leadflow/steps/intake.py. The store decides: SQLite locks the whole file, so there
the chunks always go one after another.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from leadflow.config.settings import get_settings
from leadflow.crm.reference import SAMPLE_LEADS
from leadflow.domain.progress import LeadStep
from leadflow.steps import intake
from leadflow.steps.crm_state import CrmStateResult
from tests.helpers import VOLATILE, lead, run_intake, snapshot, write_csv

on_postgresql = pytest.mark.parametrize("crm", ["postgresql"], indirect=True)


def people(prefix: str, n: int, **extra) -> list[dict]:
    return [lead(f"{prefix}{i}@acme{i % 7}.io", first_name=f"P{i}", company=f"Acme {i % 7}", **extra)
            for i in range(n)]


def overlapping_file(tmp_path) -> str:
    """Three chunks of 100 rows: people in two neighbouring chunks, and one in all three with a newer title."""
    first = [*people("a", 95), lead("both@beta.io", job_title="Analyst", submitted_at="2025-03-01T10:00:00Z"),
             *people("s", 4)]
    second = [*people("b", 90), *people("s", 4, submitted_at="2025-03-05T10:00:00Z"),
              lead("both@beta.io", job_title="Director", submitted_at="2025-03-09T10:00:00Z"), *people("c", 5)]
    third = [*people("c", 5, submitted_at="2025-03-07T10:00:00Z"), *people("d", 10),
             lead("both@beta.io", job_title="VP", submitted_at="2025-03-10T10:00:00Z")]
    return write_csv(tmp_path / "overlap.csv", first + second + third)


def sequential(monkeypatch) -> None:
    monkeypatch.setenv("LEADFLOW_OVERLAP_CHUNKS", "false")
    get_settings.cache_clear()


def test_only_a_store_that_locks_rows_overlaps_chunks(crm, monkeypatch):
    assert intake.overlap_chunks(crm) is (crm.dialect == "postgresql")
    sequential(monkeypatch)
    assert intake.overlap_chunks(crm) is False


@on_postgresql
def test_overlapped_chunks_leave_the_crm_one_chunk_after_another_leaves(crm, tmp_path, monkeypatch):
    """Every table, the audit log included, as a run of one chunk after another leaves it."""
    path = overlapping_file(tmp_path)
    beside = []
    real = intake.write_beside

    def counted(*args, **kwargs):
        beside.append(args[6].subs["email"].nunique())
        return real(*args, **kwargs)

    monkeypatch.setattr(intake, "write_beside", counted)
    overlapped = run_intake(crm, path, chunk_size=100)
    assert len(beside) == 2, "chunks 2 and 3 were written beside the chunk before them"
    tables = snapshot(crm, ignore=VOLATILE)
    with crm.begin() as conn:
        conn.exec_driver_sql("TRUNCATE lead_events, lead_submissions, quarantine, leads, intake_batches CASCADE")
    sequential(monkeypatch)
    alone = run_intake(crm, path, chunk_size=100)
    assert len(beside) == 2
    assert snapshot(crm, ignore=VOLATILE) == tables
    keep = ("submissions_new", "leads_created", "leads_updated", "leads_scored", "spam_flagged", "sources_updated")
    assert {k: overlapped[k] for k in keep} == {k: alone[k] for k in keep}
    with crm.engine.connect() as conn:
        title = conn.execute(text("SELECT job_title, step_mark FROM leads WHERE email = 'both@beta.io'")).one()
    assert tuple(title) == ("VP", int(LeadStep.SCORED))


@on_postgresql
def test_the_chunk_beside_failed_later_steps_writes_nothing(crm, tmp_path, monkeypatch):
    """Chunk 1's scoring fails while chunk 2's entries are being written: chunk 2's transaction rolls back, the
    scoring error is the run's, and the re-run finishes both chunks."""
    path = overlapping_file(tmp_path)
    real = intake.plain_steps

    def broken(store, **kwargs):
        steps = real(store, **kwargs)

        def fail(*args):
            time.sleep(0.5)  # chunk 2's Create Lead Entry is well under way by now
            raise RuntimeError("scoring is down")

        return dataclasses.replace(steps, calculate_lead_score=fail)

    monkeypatch.setattr(intake, "plain_steps", broken)
    with pytest.raises(RuntimeError, match="scoring is down"):
        run_intake(crm, path, chunk_size=100)
    with crm.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM lead_submissions")).scalar_one()
        marks = Counter(conn.execute(text("SELECT step_mark FROM leads")).scalars())
    assert stored == 100, "only chunk 1's submissions were stored"
    assert marks == {int(LeadStep.SPAM_CHECKED): 100}
    monkeypatch.setattr(intake, "plain_steps", real)
    summary = run_intake(crm, path, chunk_size=100)
    assert summary["submissions_new"] == 216 - 100
    with crm.engine.connect() as conn:
        assert set(conn.execute(text("SELECT step_mark FROM leads")).scalars()) == {int(LeadStep.SCORED)}


@on_postgresql
def test_a_chunk_waiting_beside_gives_way_to_a_session_it_blocks(crm, tmp_path, monkeypatch):
    """Another session updates a lead that chunk 2 wrote while chunk 2 waits for chunk 1: chunk 2 rolls back at
    once instead of holding that session until chunk 1 is done, and is written whole afterwards."""
    run_intake(crm, write_csv(tmp_path / "known.csv", [lead("known@gamma.io", job_title="Engineer")]))
    path = write_csv(tmp_path / "two.csv", [*people("a", 100), lead("known@gamma.io", submitted_at="2025-04-01"),
                                            *people("b", 20)])
    url = crm.engine.url.render_as_string(hide_password=False)
    other = create_engine(url)
    blocked_for: list[float] = []
    gave_way = []
    real_wait = intake.Hold.wait

    def watched(self, store=None, conn=None):
        if conn is None:
            return real_wait(self)
        try:
            return real_wait(self, store, conn)
        except intake.HoldConflict:
            gave_way.append(True)
            raise

    def update_known(lead_ids):
        # Chunk 1's later steps are done; chunk 2's transaction has written known@gamma.io and waits.
        deadline = time.monotonic() + 20
        with crm.engine.connect() as conn:
            while time.monotonic() < deadline and not conn.execute(text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.datname = current_database() AND l.relation = 'leads'::regclass "
                    "AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()")).scalar_one():
                conn.rollback()
                time.sleep(0.05)
        tick = time.perf_counter()
        with other.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '15s'"))
            conn.execute(text("UPDATE leads SET job_title = 'CTO' WHERE email = 'known@gamma.io'"))
        blocked_for.append(time.perf_counter() - tick)

    monkeypatch.setattr(intake.Hold, "wait", watched)
    from leadflow.domain.summary import IntakeSummary
    from leadflow.io.sources import iter_lead_chunks

    plan = intake.plan_intake(path, None, None)
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=path)
    intake.intake_chunks(intake.plain_steps(crm), iter_lead_chunks(plan.lead_file, 100), plan, summary,
                         after_chunk=lambda ids: update_known(ids) if not blocked_for else None, overlap=True)
    other.dispose()
    assert gave_way == [True] and blocked_for and blocked_for[0] < 5
    assert summary.submissions_new == 121 and summary.leads_created == 120
    with crm.engine.connect() as conn:
        known = conn.execute(text("SELECT job_title, step_mark FROM leads WHERE email = 'known@gamma.io'")).one()
        count = conn.execute(text("SELECT count(*) FROM lead_submissions")).scalar_one()
    # The other session's title stands: chunk 2's row had none, and was written after it.
    assert tuple(known) == ("CTO", int(LeadStep.SCORED)) and count == 122


def test_a_hold_says_why_it_ends():
    hold = intake.Hold({"a@x.io"})
    threading.Timer(0.3, hold.release).start()
    hold.wait()
    assert hold.waited >= 0.25
    failed = intake.Hold(set())
    failed.abandon()
    with pytest.raises(intake.HoldAbandoned):
        failed.wait()


class Blocking:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers

    def blocks_others(self, conn) -> bool:
        return self.answers.pop(0)


def test_a_waiting_hold_gives_way_as_soon_as_it_blocks_someone():
    hold = intake.Hold(set())
    with pytest.raises(intake.HoldConflict):
        hold.wait(Blocking([False, True]), conn=object())
    threading.Timer(0.1, hold.release).start()
    hold.wait(Blocking([False] * 50), conn=object())


def test_parts_of_a_chunk_merge_into_one_result():
    first = intake.LeadWriteResult(submissions_new=2, leads_created=2, lead_ids=[1, 2],
                                   steps={1: int(LeadStep.CREATED), 2: int(LeadStep.DETAILED)}, spam_waiting=[1],
                                   crm_state=CrmStateResult(opted_out=1, statuses_not_applied=Counter(x=1)))
    second = intake.LeadWriteResult(submissions_new=1, leads_updated=1, lead_ids=[3], steps={3: int(LeadStep.CREATED)},
                                    spam_waiting=[3], crm_state=CrmStateResult(opted_out=2, do_not_contact=1,
                                                                               statuses_not_applied=Counter(x=2)))
    merged = intake._merge_writes([first, second])
    assert merged.lead_ids == [1, 2, 3] and merged.submissions_new == 3
    assert merged.steps == {1: int(LeadStep.CREATED), 2: int(LeadStep.DETAILED), 3: int(LeadStep.CREATED)}
    assert merged.spam_waiting == [1, 3] and merged.needing(LeadStep.CREATED) == [1, 3]
    assert merged.crm_state.as_dict() == {"opted_out": 3, "do_not_contact": 1, "statuses_not_applied": {"x": 3}}


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_sample_file_in_small_chunks_on_sqlite_never_overlaps(crm, monkeypatch):
    called = []
    monkeypatch.setattr(intake, "write_beside", lambda *a, **k: called.append(1))
    run_intake(crm, str(SAMPLE_LEADS), chunk_size=100)
    assert called == []


def external_ids(crm) -> tuple[list[tuple], list[str]]:
    with crm.engine.connect() as conn:
        subs = conn.execute(text("SELECT s.external_id, l.email FROM lead_submissions s JOIN leads l ON l.id = "
                                 "s.lead_id WHERE s.external_id IS NOT NULL ORDER BY 1")).all()
        leads = conn.execute(text("SELECT email FROM leads ORDER BY 1")).scalars().all()
    return [tuple(r) for r in subs], leads


@on_postgresql
def test_a_source_id_shared_by_two_people_goes_to_the_chunk_s_first_row_as_without_overlap(crm, tmp_path, monkeypatch):
    """A submission's key is the source's own id, not the person: the chunk's first row with it wins, even when
    that row's person is held for the previous chunk and the other is not."""
    first = [*people("a", 99), lead("shared@beta.io")]
    second = [lead("shared@beta.io", external_id="X1", submitted_at="2025-03-02T10:00:00Z"),
              lead("xnew@gamma.io", external_id="X1", submitted_at="2025-03-02T10:00:00Z"), *people("b", 98)]
    path = write_csv(tmp_path / "f.csv", first + second)
    run_intake(crm, path, chunk_size=100)
    overlapped = external_ids(crm)
    with crm.begin() as conn:
        conn.exec_driver_sql("TRUNCATE lead_events, lead_submissions, quarantine, leads, intake_batches CASCADE")
    sequential(monkeypatch)
    run_intake(crm, path, chunk_size=100)
    assert external_ids(crm) == overlapped
    assert ("X1", "shared@beta.io") in overlapped[0] and "xnew@gamma.io" not in overlapped[1]


def test_held_rows_are_whole_people_of_the_previous_chunk_with_crm_state_or_a_shared_key():
    import pandas as pd

    subs = pd.DataFrame({
        "email": ["a@x.io", "b@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io", "f@x.io", "f@x.io"],
        "idempotency_key": ["k1", "k2", "k3", "k3", "k4", "k5", "k6", "k7"],
        "crm_status": [None, None, None, None, None, "Qualified", None, None],
        "do_not_contact": [False, False, False, False, False, False, False, True],
    })
    held = intake.held_rows(subs, {"b@x.io"})
    # b is held; c shares b's key k3; e has a status, f a do-not-contact flag on one of its rows.
    assert held.tolist() == [False, True, True, True, False, True, True, True]
    assert intake.held_rows(subs.drop(columns=["crm_status", "do_not_contact"]), set()).tolist() == [False] * 8
