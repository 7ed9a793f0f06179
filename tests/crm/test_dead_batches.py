"""Find Dead Batches on SQLite and PostgreSQL: a batch left running by a process that is gone (or whose flow run has
ended) is marked crashed and reported to ops once; a batch whose owner lives is left alone."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from leadflow.crm import submissions
from leadflow.crm.schema import IntakeBatch, OutboxMessage
from leadflow.io.processes import host_name, owner_alive, start_time, this_process
from leadflow.steps.batches import find_dead_batches
from leadflow.steps.delivery import queue_ops_alert

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RUN_ID = "3f2b0c1e-0000-4000-8000-0000000000aa"


@pytest.fixture
def child():
    """A live process of this host (its pid and start time), stopped after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process.pid, start_time(process.pid)
    finally:
        process.kill()
        process.wait()


def dead_owner() -> tuple[str, int, datetime]:
    """The owner record of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = start_time(process.pid)
    process.kill()
    process.wait()
    return host_name(), process.pid, started


def status(crm, batch_id: str) -> tuple[str, dict]:
    with crm.engine.connect() as conn:
        row = conn.execute(select(IntakeBatch.status, IntakeBatch.summary).where(IntakeBatch.id == batch_id)).one()
    return row.status, row.summary


def alerts(crm) -> list:
    with crm.engine.connect() as conn:
        return conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.subject, OutboxMessage.body)
                            .where(OutboxMessage.kind == "ops_alert")).all()


def test_a_batch_whose_process_died_is_crashed_and_reported_once(crm, child):
    pid, started = child
    submissions.start_batch(crm, "dead", "/data/exports/leads-may.csv", None, RUN_ID, NOW, owner=dead_owner())
    submissions.start_batch(crm, "alive", "/data/b.csv", None, None, NOW, owner=(host_name(), pid, started))
    me = this_process()
    submissions.start_batch(crm, "mine", "/data/c.csv", None, None, NOW, owner=(me.host, me.pid, me.started_at))
    submissions.start_batch(crm, "done", "/data/d.csv", None, None, NOW, owner=dead_owner())
    submissions.finish_batch(crm, "done", "completed", {"rows_read": 1}, NOW)

    summary = find_dead_batches(crm, now=NOW)

    assert summary.as_dict()["batch_ids"] == ["dead"] and summary.checked == 3
    assert summary.by_reason == {"owner_process_gone": 1} and summary.alerts_queued == 1
    assert status(crm, "dead") == ("crashed", {"crash_reason": "owner_process_gone",
                                               "crash_noticed_at": NOW.isoformat()})
    assert [status(crm, b)[0] for b in ("alive", "mine", "done")] == ["running", "running", "completed"]
    [(key, subject, body)] = alerts(crm)
    assert key == f"ops_alert:{RUN_ID}" and "crashed" in subject
    assert "batch dead of leads-may.csv" in body and "leadflow repair" in body

    again = find_dead_batches(crm, now=NOW + timedelta(minutes=5))
    assert again.crashed == [] and len(alerts(crm)) == 1


def test_a_reused_pid_is_not_the_owner(crm, child):
    pid, started = child
    submissions.start_batch(crm, "b1", "a.csv", None, None, NOW,
                            owner=(host_name(), pid, started - timedelta(hours=1)))
    assert owner_alive(pid, started) and not owner_alive(pid, started - timedelta(hours=1))
    assert find_dead_batches(crm, now=NOW).by_reason == {"owner_process_gone": 1}
    assert status(crm, "b1")[0] == "crashed"


STATES = {"CRASHED": True, "FAILED": True, "CANCELLED": True, "COMPLETED": True, "RUNNING": False, "PENDING": False,
          None: False}


def test_a_batch_of_another_host_is_judged_by_its_flow_run(crm):
    runs = {f"3f2b0c1e-0000-4000-8000-00000000000{i}": state for i, state in enumerate(STATES)}
    for run_id in runs:
        submissions.start_batch(crm, run_id[-1], "a.csv", None, run_id, NOW, owner=("worker-7", 4242, NOW))
    asked = []
    summary = find_dead_batches(crm, run_state=lambda run_id: asked.append(run_id) or runs[run_id], now=NOW)
    assert sorted(asked) == sorted(runs)
    for run_id, state in runs.items():
        assert status(crm, run_id[-1])[0] == ("crashed" if STATES[state] else "running"), state
    assert summary.by_reason == {f"flow_run_{s.lower()}": 1 for s, crashed in STATES.items() if crashed}
    assert len(alerts(crm)) == 4


def test_without_an_owner_or_an_answer_nothing_is_judged(crm):
    submissions.start_batch(crm, "old", "a.csv", None, None, NOW)  # recorded before batches named owners
    submissions.start_batch(crm, "far", "b.csv", None, RUN_ID, NOW, owner=("worker-7", 4242, NOW))
    assert find_dead_batches(crm, now=NOW).crashed == []
    assert status(crm, "old")[0] == status(crm, "far")[0] == "running"


def test_a_dry_run_and_an_alert_already_queued_add_nothing(crm):
    submissions.start_batch(crm, "dead", "a.csv", None, RUN_ID, NOW, owner=dead_owner())
    assert find_dead_batches(crm, now=NOW, dry_run=True).as_dict()["batch_ids"] == ["dead"]
    assert status(crm, "dead")[0] == "running" and alerts(crm) == []
    # Prefect's own crash hook (a worker or `leadflow serve` ran it) reported this run already.
    queue_ops_alert("lead-intake", "brave-otter", RUN_ID, "Crashed", "Execution was cancelled", store=crm)
    assert find_dead_batches(crm, now=NOW).alerts_queued == 1
    assert status(crm, "dead")[0] == "crashed"
    [(_, subject, _)] = alerts(crm)
    assert "brave-otter" in subject
