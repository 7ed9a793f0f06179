"""Dead runs are noticed by the flows: lead-intake looks for them before its own batch, the nightly spam-cleanup run
too; a batch of a killed CLI run is marked crashed, its flow run (left RUNNING) is set Crashed, ops hear once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running
from sqlalchemy import select

from flows.intake import lead_intake
from flows.spam_cleanup import spam_cleanup
from leadflow.crm import submissions
from leadflow.crm.schema import IntakeBatch, OutboxMessage
from leadflow.io.processes import host_name, start_time
from tests.helpers import lead, write_csv


@flow(name="lead-intake")
def _killed_intake() -> None:
    """Stands for the intake run a SIGKILL ended: only its flow run record is used."""


def _killed_run() -> str:
    """A flow run left RUNNING, as a killed `leadflow intake` leaves it."""
    with get_client(sync_client=True) as client:
        return str(client.create_flow_run(_killed_intake, state=Running()).id)


def _dead_owner() -> tuple[str, int, datetime]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = start_time(process.pid)
    process.kill()
    process.wait()
    return host_name(), process.pid, started


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_the_next_intake_and_the_nightly_run_mark_dead_batches_crashed(crm, tmp_path):
    now = datetime.now(UTC)
    killed, forgotten = _killed_run(), _killed_run()
    submissions.start_batch(crm, "killed", str(tmp_path / "big.csv"), None, killed, now, owner=_dead_owner())

    summary = lead_intake(path=write_csv(tmp_path / "small.csv", [lead("ann@acme.example")]), qualify=False)

    assert summary["submissions_new"] == 1
    with crm.engine.connect() as conn:
        batches = dict(conn.execute(select(IntakeBatch.id, IntakeBatch.status)).all())
        own = conn.execute(select(IntakeBatch.owner_host, IntakeBatch.owner_pid, IntakeBatch.owner_started_at)
                           .where(IntakeBatch.id == summary["batch_id"])).one()
        keys = conn.execute(select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "ops_alert")).scalars()
        keys = list(keys)
    assert batches == {"killed": "crashed", summary["batch_id"]: "completed"}
    assert own.owner_host == host_name() and own.owner_pid > 0 and own.owner_started_at is not None
    assert keys == [f"ops_alert:{killed}"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(killed).state_type.value == "CRASHED"

    submissions.start_batch(crm, "forgotten", "old.csv", None, forgotten, now, owner=_dead_owner())
    nightly = spam_cleanup()
    assert nightly["dead_batches"]["batch_ids"] == ["forgotten"]
    assert nightly["dead_batches"]["flow_runs_marked"] == 1
    with crm.engine.connect() as conn:
        assert conn.execute(select(IntakeBatch.status).where(IntakeBatch.id == "forgotten")).scalar_one() == "crashed"
