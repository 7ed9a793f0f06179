"""lead-backfill under the Prefect test harness: windows, resume, Dask vs threads, a crash and its resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flows.backfill import lead_backfill
from leadflow.crm.backfill import LEDGER
from leadflow.crm.schema import Lead, LeadSubmission, QuarantineRecord
from tests.helpers import VOLATILE, lead, snapshot, write_csv

ROOT = Path(__file__).resolve().parents[2]
# When a run did its work, not what the history says: a second run sets them to its own time.
RUN_TIMES = frozenset({"generated_at", "qualified_at", "completed_at"})


def history_rows(n_per_month: int = 6) -> list[dict]:
    """Leads over Jan-Mar 2024, a person who comes back, rows outside the dates and rows without a date."""
    rows = []
    for month in (1, 2, 3):
        for i in range(n_per_month):
            rows.append(lead(f"p{month}-{i}@acme{i % 3}.com", f"2024-{month:02d}-{10 + i:02d}T09:00:00Z",
                             first_name=f"P{i}", company=f"Acme {i % 3}"))
    rows.append(lead("returning@beta.io", "2024-01-05T08:00:00Z", source="webinar"))
    rows.append(lead("returning@beta.io", "2024-02-20T08:00:00Z", source="google_ads"))
    rows.append(lead("early@gamma.io", "2023-12-31T23:00:00Z"))
    rows.append(lead("late@gamma.io", "2024-04-01T00:00:00Z"))
    rows.append(lead("nodate@gamma.io", ""))
    rows.append(lead("baddate@gamma.io", "not a date"))
    return rows


@pytest.fixture
def history(tmp_path) -> str:
    folder = tmp_path / "exports"
    folder.mkdir()
    rows = history_rows()
    write_csv(folder / "part1.csv", rows[: len(rows) // 2])
    write_csv(folder / "part2.csv", rows[len(rows) // 2 :])
    return str(folder)


def _count(crm, column) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(column.table)).scalar_one()


def test_backfill_imports_each_window_once_and_resumes_to_nothing(crm, history, tmp_path):
    result = lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), window="month",
                           work_dir=str(tmp_path / "work"))
    # Three months plus the undated window; the two rows outside the dates are counted, not imported.
    assert result["windows_total"] == 4 and result["windows_imported"] == 4
    assert result["rows_outside_range"] == 2 and result["rows_undated"] == 2
    assert _count(crm, LeadSubmission.__table__.c.id) == 3 * 6 + 2
    with crm.engine.connect() as conn:
        reasons = sorted(conn.execute(select(QuarantineRecord.__table__.c.reason_codes)).scalars())
        ledger = {r.window_id: r.status for r in conn.execute(select(LEDGER))}
    assert reasons == ["invalid_submitted_at", "missing_submitted_at"]
    assert ledger == {"2024-01-01_2024-02-01": "completed", "2024-02-01_2024-03-01": "completed",
                      "2024-03-01_2024-04-01": "completed", "undated": "completed"}
    before = snapshot(crm)
    again = lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), window="month",
                          work_dir=str(tmp_path / "work"))
    assert again["windows_done_before"] == 4 and again["windows_imported"] == 0
    assert snapshot(crm) == before


def test_a_failed_window_is_retried_alone(crm, history, tmp_path, monkeypatch):
    work = tmp_path / "work"
    # The February window's input is broken on purpose; the others import.
    from leadflow.io import backfill_files

    real = backfill_files.split_by_window

    def split_then_break(*args, **kwargs):
        manifest = real(*args, **kwargs)
        Path(manifest.parts["2024-02-01_2024-03-01"]).write_text("{not json\n" * 30, encoding="utf-8")
        return manifest

    monkeypatch.setattr(backfill_files, "split_by_window", split_then_break)
    with pytest.raises(Exception, match="2024-02-01_2024-03-01"):
        lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), work_dir=str(work))
    with crm.engine.connect() as conn:
        ledger = {r.window_id: r.status for r in conn.execute(select(LEDGER))}
    assert ledger["2024-02-01_2024-03-01"] == "failed"
    assert sum(s == "completed" for s in ledger.values()) == 3
    monkeypatch.setattr(backfill_files, "split_by_window", real)
    # Repair the input (a fresh split) and re-run: only the failed window is imported.
    (work.glob("*/*/manifest.json").__next__()).unlink()
    result = lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), work_dir=str(work))
    assert result["windows_done_before"] == 3 and result["windows_imported"] == 1
    assert _count(crm, LeadSubmission.__table__.c.id) == 3 * 6 + 2


@pytest.mark.parametrize("bad", [{"window": "year"}, {"end": date(2023, 1, 1)}])
def test_bad_backfill_arguments_fail_with_a_clear_error(crm, history, tmp_path, bad):
    kwargs = {"path": history, "start": date(2024, 1, 1), "end": date(2024, 3, 31), "work_dir": str(tmp_path)}
    with pytest.raises(Exception, match=r"window|before start"):
        lead_backfill(**{**kwargs, **bad})


def _wipe(crm) -> None:
    """Empty every table and restart ids (leads and tasks name account ids, so both runs must count alike)."""
    from sqlalchemy import text

    from leadflow.crm.schema import Base

    with crm.begin() as conn:
        if crm.dialect == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} "
                              "RESTART IDENTITY CASCADE"))
            return
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _state(crm) -> tuple[dict, dict, list]:
    from leadflow.crm.schema import LeadEvent

    events = LeadEvent.__table__
    with crm.engine.connect() as conn:
        by_type = dict(conn.execute(select(events.c.event_type, func.count()).group_by(events.c.event_type)).all())
        ledger = sorted(conn.execute(select(LEDGER.c.window_id, LEDGER.c.status, LEDGER.c.rows)).all())
    tables = snapshot(crm, skip=("intake_batches", "lead_events", "backfill_ledger"),
                      ignore=VOLATILE | RUN_TIMES)
    return tables, by_type, ledger


@pytest.mark.slow
# Dask in production writes to PostgreSQL from several processes at once; one database keeps this test's cluster
# start-up (the slowest fixture of the suite) to one run.
@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_dask_local_cluster_gives_the_same_database_as_threads(crm, tmp_path):
    # Without the person who comes back in another month: windows replayed side by side touch that lead in an
    # order that depends on timing (which window creates the lead and its account first, whether the later one
    # sees it as changed), on threads as on Dask, so only windows with disjoint leads can be compared exactly.
    folder = tmp_path / "exports"
    folder.mkdir()
    write_csv(folder / "part1.csv", [r for r in history_rows() if r["email"] != "returning@beta.io"])
    kwargs = {"path": str(folder), "start": date(2024, 1, 1), "end": date(2024, 3, 31), "window": "month"}
    # One staging folder for both: the split is reused, so both runs import the very same window inputs.
    kwargs["work_dir"] = str(tmp_path / "work")
    threads = lead_backfill(**kwargs, runner="threads")
    by_threads = _state(crm)
    _wipe(crm)
    dask = lead_backfill(**kwargs, runner="dask", max_parallel=2)
    assert dask["windows_imported"] == threads["windows_imported"] == 4
    assert _state(crm) == by_threads
    assert by_threads[0]["lead_submissions"] and by_threads[0]["leads"]


CHILD = """
import sys
from datetime import date
from flows.backfill import lead_backfill
# Every window alone (group_rows=0): the kill lands between windows' ledger rows, as it did before grouping.
lead_backfill(path=sys.argv[1], start=date(2024, 1, 1), end=date(2024, 3, 31), window="week", max_parallel=1,
              work_dir=sys.argv[2], recompute_reports=False, group_rows=0)
"""


@pytest.mark.slow
def test_a_killed_backfill_resumes_without_duplicates(crm, history, tmp_path):
    from prefect.settings import PREFECT_API_URL

    work = str(tmp_path / "work")
    env = {**os.environ, "LEADFLOW_DATABASE_URL": crm.url, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, history, work], cwd=ROOT, env=env,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        done = 0
        while time.monotonic() < deadline and child.poll() is None:
            with crm.engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(LEDGER).where(LEDGER.c.status == "completed")
                                    ).scalar_one()
            if done >= 3:
                break
            time.sleep(0.2)
        assert child.poll() is None, f"the backfill ended before it could be killed: {child.stderr.read()[-2000:]}"
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    with crm.engine.connect() as conn:
        completed_at_kill = conn.execute(select(func.count()).select_from(LEDGER)
                                         .where(LEDGER.c.status == "completed")).scalar_one()
    # ISO weeks holding rows: Jan 1-7, 8-14, 15-21; Feb 5-11, 12-18, 19-25; Mar 4-10, 11-17; and undated.
    windows_with_rows = 3 + 3 + 2 + 1
    assert 3 <= completed_at_kill < windows_with_rows
    # The window the dead run was importing is taken over at once (timeout 0), the completed ones are skipped.
    result = lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), window="week",
                           max_parallel=2, work_dir=work, window_timeout_minutes=0, recompute_reports=False)
    assert result["windows_done_before"] == completed_at_kill
    assert result["windows_done_before"] + result["windows_imported"] == result["windows_total"] == windows_with_rows
    with crm.engine.connect() as conn:
        keys = conn.execute(select(LeadSubmission.__table__.c.idempotency_key)).scalars().all()
        quarantined = conn.execute(select(func.count()).select_from(QuarantineRecord.__table__)).scalar_one()
    assert len(keys) == len(set(keys)) == 3 * 6 + 2
    assert quarantined == 2


def test_undated_rows_are_quarantined_by_the_backfill_itself(crm, tmp_path):
    # 50 undated rows make chunks that are mostly undated: intake's batch check would stop on them.
    rows = [lead(f"dated{i}@acme.com", f"2024-01-{10 + i:02d}T09:00:00Z") for i in range(5)]
    rows += [lead(f"nodate{i}@acme.com", "", first_name=f"N{i}") for i in range(30)]
    rows += [lead(f"baddate{i}@acme.com", f"someday {i}") for i in range(20)]
    history = write_csv(tmp_path / "history.csv", rows)
    kwargs = {"path": history, "start": date(2024, 1, 1), "end": date(2024, 1, 31), "window": "month",
              "work_dir": str(tmp_path / "work"), "chunk_size": 40, "recompute_reports": False}
    result = lead_backfill(**kwargs)
    assert result["rows_undated"] == 50 and result["windows_failed"] == []
    assert result["windows_imported"] == 2 and result["rows_imported"] == 55
    quarantine = QuarantineRecord.__table__
    with crm.engine.connect() as conn:
        stored = conn.execute(select(quarantine.c.reason_codes, quarantine.c.raw_payload, quarantine.c.origin)).all()
        undated = conn.execute(select(LEDGER.c.status, LEDGER.c.summary).where(LEDGER.c.window_id == "undated")).one()
    assert sorted(r[0] for r in stored) == ["invalid_submitted_at"] * 20 + ["missing_submitted_at"] * 30
    payloads = {r[1]["email"]: r[1] for r in stored}
    assert payloads["nodate7@acme.com"]["first_name"] == "N7" and "submitted_at" not in payloads["nodate7@acme.com"]
    assert payloads["baddate3@acme.com"]["submitted_at"] == "someday 3"
    assert {r[2] for r in stored} == {str(Path(history).resolve())}
    assert undated.status == "completed"
    assert undated.summary["quarantined"] == undated.summary["quarantined_new"] == 50
    assert undated.summary["quarantined_by_reason"] == {"invalid_submitted_at": 20, "missing_submitted_at": 30}
    assert _count(crm, LeadSubmission.__table__.c.id) == 5
    before = snapshot(crm)
    # Forget the ledger: the rows are quarantined again by key, and nothing is added.
    with crm.begin() as conn:
        conn.execute(LEDGER.delete())
    again = lead_backfill(**kwargs)
    assert again["windows_imported"] == 2
    with crm.engine.connect() as conn:
        summary = conn.execute(select(LEDGER.c.summary).where(LEDGER.c.window_id == "undated")).scalar_one()
    assert summary["quarantined"] == 50 and summary["quarantined_new"] == 0
    assert snapshot(crm, skip=("intake_batches", "backfill_ledger")) == {
        k: v for k, v in before.items() if k != "backfill_ledger"}


def _ledger(crm) -> dict[str, dict]:
    with crm.engine.connect() as conn:
        return {r.window_id: {"status": r.status, "rows": r.rows, "attempts": r.attempts, "summary": r.summary}
                for r in conn.execute(select(LEDGER))}


def test_grouped_windows_give_the_same_crm_as_windows_alone(crm, history, tmp_path):
    kwargs = {"path": history, "start": date(2024, 1, 1), "end": date(2024, 3, 31), "window": "month",
              "work_dir": str(tmp_path / "work"), "recompute_reports": False,
              # One window at a time: windows side by side meet on shared companies in an order set by timing.
              "max_parallel": 1}
    # The person who comes back in February is, in one pass, one lead with both submissions as intake over one
    # file makes it: no lead_updated or lead_source_updated event for the February row, and their match evidence
    # and task from that one pass ("new company", where February alone finds January's account by domain).
    returning = frozenset({"match_details"})
    alone = lead_backfill(**kwargs, group_rows=0)
    by_window, ledger_alone = _state(crm), _ledger(crm)
    tables_alone = snapshot(crm, skip=("intake_batches", "lead_events", "backfill_ledger", "crm_tasks"),
                            ignore=VOLATILE | RUN_TIMES | returning)
    _wipe(crm)
    grouped = lead_backfill(**kwargs, group_rows=100)
    ledger, state = _ledger(crm), _state(crm)
    assert snapshot(crm, skip=("intake_batches", "lead_events", "backfill_ledger", "crm_tasks"),
                    ignore=VOLATILE | RUN_TIMES | returning) == tables_alone
    assert len(state[0]["crm_tasks"]) == len(by_window[0]["crm_tasks"])
    second_pass = {"lead_source_updated", "lead_updated"}
    assert {k: v for k, v in state[1].items() if k not in second_pass} == {
        k: v for k, v in by_window[1].items() if k not in second_pass}
    assert by_window[1]["lead_updated"] == 1 and "lead_updated" not in state[1]
    # One ledger row per window, each with its own rows; the group's counts once, in its first window's row.
    assert set(ledger) == set(ledger_alone) == {"2024-01-01_2024-02-01", "2024-02-01_2024-03-01",
                                                 "2024-03-01_2024-04-01", "undated"}
    assert {w: (r["status"], r["rows"]) for w, r in ledger.items()} == {
        w: (r["status"], r["rows"]) for w, r in ledger_alone.items()}
    dated = sorted(w for w in ledger if w != "undated")
    assert all(ledger[w]["summary"]["group"] == dated for w in dated)
    assert ledger[dated[0]]["summary"]["group_rows_read"] == sum(ledger[w]["rows"] for w in dated)
    assert "submissions_new" not in ledger[dated[1]]["summary"]
    for key in ("windows_imported", "rows_imported", "submissions_new"):
        assert grouped[key] == alone[key], key
    assert grouped["submissions_new"] == 3 * 6 + 2
    # The group's joined input lived only as long as its pass.
    assert not list((tmp_path / "work").rglob("group-*")) and len(list((tmp_path / "work").rglob("*.jsonl"))) == 4
    # A re-run finds every window of the group done.
    again = lead_backfill(**kwargs, group_rows=100)
    assert again["windows_done_before"] == 4 and again["windows_imported"] == 0


def _evidence_apart(crm) -> tuple[dict, list]:
    """The CRM's tables without match evidence (leads' match_details, the match band in task details)."""
    from leadflow.crm.schema import CrmTask

    tasks = CrmTask.__table__
    with crm.engine.connect() as conn:
        details = sorted(json.dumps({k: v for k, v in d.items() if k != "match_band"}, sort_keys=True)
                         for d in conn.execute(select(tasks.c.details)).scalars())
    tables = snapshot(crm, skip=("intake_batches", "lead_events", "backfill_ledger"),
                      ignore=VOLATILE | RUN_TIMES | {"match_details", "details"})
    return tables, details


def test_grouped_windows_of_distinct_people_give_the_same_crm(crm, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    # People qualification works on (history_rows' names are flagged as gibberish), sharing three companies.
    names = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing"), ("Edsger", "Dijkstra"),
             ("Barbara", "Liskov"), ("Donald", "Knuth")]
    rows = [lead(f"{first.lower()}.{month}@acme{i % 3}.com", f"2024-{month:02d}-{10 + i:02d}T09:00:00Z",
                 first_name=first, last_name=last, company=f"Acme {i % 3}", job_title="VP Sales",
                 company_size="51-200", message="We need a demo for our sales team this quarter")
            for month in (1, 2, 3) for i, (first, last) in enumerate(names)]
    write_csv(folder / "part1.csv", rows)
    kwargs = {"path": str(folder), "start": date(2024, 1, 1), "end": date(2024, 3, 31), "window": "month",
              "work_dir": str(tmp_path / "work"), "recompute_reports": False, "max_parallel": 1}
    lead_backfill(**kwargs, group_rows=0)
    by_window, apart = _state(crm), _evidence_apart(crm)
    _wipe(crm)
    lead_backfill(**kwargs, group_rows=100)
    grouped = _state(crm)
    # Same leads, accounts and links, priorities, owners, tasks, events and ledger rows. Only the match evidence
    # differs: a company first seen in January is "new company" for its February and March leads too when the
    # three months are one pass (as in one intake run over the file), found by domain when they are windows apart.
    assert _evidence_apart(crm) == apart
    assert grouped[1:] == by_window[1:]
    assert by_window[1]["lead_qualified"] == 18 and len(by_window[0]["crm_tasks"]) >= 18
    assert len(by_window[0]["accounts"]) == 3
    with crm.engine.connect() as conn:
        evidence = conn.execute(select(Lead.__table__.c.match_details)).scalars().all()
    bands = {(json.loads(e) if isinstance(e, str) else e)["band"] for e in evidence}
    assert bands == {"new_company"}


def test_a_group_killed_mid_pass_is_taken_over_and_replayed_without_duplicates(crm, history, tmp_path):
    from datetime import UTC, datetime, timedelta

    from leadflow.crm.schema import LeadEvent
    from leadflow.steps import backfill as bf

    kwargs = {"path": history, "start": date(2024, 1, 1), "end": date(2024, 3, 31), "window": "month",
              "work_dir": str(tmp_path / "work"), "recompute_reports": False, "group_rows": 100}
    complete = lead_backfill(**kwargs)
    expected, expected_events = _state(crm), _count(crm, LeadEvent.__table__.c.id)
    _wipe(crm)
    # A run that took the group and wrote it all, then died before its ledger rows were recorded.
    plan = bf.plan_backfill(history, date(2024, 1, 1), date(2024, 3, 31), "month", str(tmp_path / "work"))
    manifest = bf.split_history(plan, None, 50_000)
    dated = [w for w in plan.windows if w.id in manifest.windows]
    now = datetime.now(UTC)
    assert all(bf.take_window(crm, plan, w, timedelta(hours=1), flow_run_id=None, now=now) == 1 for w in dated)
    bf.replay_window(crm, bf.group_input(plan, dated, manifest.parts), source_name=None, chunk_size=None,
                     default_country=None, flow_run_id=None, clock=lambda: datetime.now(UTC))
    assert {r["status"] for w, r in _ledger(crm).items()} == {"running"}
    # Not yet abandoned: another run leaves the group alone.
    waiting = lead_backfill(**kwargs)
    assert waiting["windows_skipped"] == 3 and waiting["windows_imported"] == 1
    assert list((tmp_path / "work").rglob("group-*.jsonl"))
    resumed = lead_backfill(**kwargs, window_timeout_minutes=0)
    assert not list((tmp_path / "work").rglob("group-*"))
    assert resumed["windows_done_before"] == 1 and resumed["windows_imported"] == 3
    ledger = _ledger(crm)
    assert {w: (r["status"], r["attempts"]) for w, r in ledger.items() if w != "undated"} == {
        w.id: ("completed", 2) for w in dated}
    state = _state(crm)
    # The replay again adds nothing the first pass stored: same leads, submissions, tasks and accounts.
    assert state[0] == expected[0] and state[2] == expected[2]
    assert _count(crm, LeadSubmission.__table__.c.id) == complete["submissions_new"] == 3 * 6 + 2
    # Qualification's events of the replayed pass come on top of the first pass's (an audit log keeps both).
    assert _count(crm, LeadEvent.__table__.c.id) >= expected_events


def test_a_group_that_fails_is_replayed_window_by_window(crm, history, tmp_path, monkeypatch):
    from leadflow.io import backfill_files

    real = backfill_files.split_by_window

    def split_then_break(*args, **kwargs):
        manifest = real(*args, **kwargs)
        Path(manifest.parts["2024-02-01_2024-03-01"]).write_text("{not json\n" * 30, encoding="utf-8")
        return manifest

    monkeypatch.setattr(backfill_files, "split_by_window", split_then_break)
    with pytest.raises(Exception, match="2024-02-01_2024-03-01"):
        lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), work_dir=str(tmp_path / "w"),
                      group_rows=1000)
    ledger = _ledger(crm)
    assert ledger["2024-02-01_2024-03-01"]["status"] == "failed"
    assert {w: r["status"] for w, r in ledger.items() if w != "2024-02-01_2024-03-01"} == {
        "2024-01-01_2024-02-01": "completed", "2024-03-01_2024-04-01": "completed", "undated": "completed"}
    # Replayed alone after the group failed: no group in their rows.
    assert "group" not in ledger["2024-01-01_2024-02-01"]["summary"]


GROUP_CHILD = """
import sys
from datetime import date
from flows.backfill import lead_backfill
lead_backfill(path=sys.argv[1], start=date(2024, 1, 1), end=date(2024, 3, 31), window="month", max_parallel=1,
              work_dir=sys.argv[2], recompute_reports=False, group_rows=100)
"""


@pytest.mark.slow
def test_a_backfill_killed_inside_a_group_resumes_without_duplicates(crm, history, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from leadflow.steps.faults import CRASH_AFTER_ENV

    work = str(tmp_path / "work")
    # Killed once the group's one pass has qualified its leads, before any of its windows' ledger rows is written.
    env = {**os.environ, "LEADFLOW_DATABASE_URL": crm.url, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PYTHONPATH": str(ROOT), CRASH_AFTER_ENV: "Finish Lead Qualification:1"}
    child = subprocess.run([sys.executable, "-c", GROUP_CHILD, history, work], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=240)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with crm.engine.connect() as conn:
        at_kill = {r.window_id: r.status for r in conn.execute(select(LEDGER))}
        stored = conn.execute(select(func.count()).select_from(LeadSubmission.__table__)).scalar_one()
    dated = {"2024-01-01_2024-02-01", "2024-02-01_2024-03-01", "2024-03-01_2024-04-01"}
    assert at_kill == {**dict.fromkeys(dated, "running"), "undated": "completed"}
    assert stored == 3 * 6 + 2
    result = lead_backfill(path=history, start=date(2024, 1, 1), end=date(2024, 3, 31), window="month",
                           max_parallel=1, work_dir=work, window_timeout_minutes=0, recompute_reports=False,
                           group_rows=100)
    assert result["windows_done_before"] == 1 and result["windows_imported"] == 3
    assert result["submissions_new"] == 0 and result["rows_imported"] == 3 * 6 + 2
    ledger = _ledger(crm)
    assert {w: (r["status"], r["attempts"]) for w, r in ledger.items()} == {
        **{w: ("completed", 2) for w in dated}, "undated": ("completed", 1)}
    with crm.engine.connect() as conn:
        keys = conn.execute(select(LeadSubmission.__table__.c.idempotency_key)).scalars().all()
        incomplete = conn.execute(select(func.count()).select_from(Lead.__table__)
                                  .where(Lead.__table__.c.step_mark < 5)).scalar_one()
    assert len(keys) == len(set(keys)) == 3 * 6 + 2
    assert incomplete == 0
