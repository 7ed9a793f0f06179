"""`leadflow serve` beside `prefect deploy --all` on a real server: the work-pool deployments stay as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.test_e2e_server import ROOT, Server, started_server

pytestmark = pytest.mark.slow

DEPLOYED = ["lead-intake/continuous", "lead-intake/file-import", "spam-cleanup/nightly", "monthly-report/monthly",
            "outbox-delivery/queued", "lead-backfill/ad-hoc"]


@pytest.fixture
def server(tmp_path):
    with started_server(tmp_path) as running:
        yield running


def _view(deployment: dict) -> tuple:
    """What serving must not change: identity, pool, pause state and schedules (with their active flags)."""
    schedules = sorted((str(s["schedule"]), s["active"]) for s in deployment["schedules"])
    return deployment["id"], deployment["work_pool_name"], deployment["paused"], schedules


def _serve(server: Server) -> subprocess.Popen:
    log = (server.logs / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "deployments.cli", "serve"], cwd=ROOT, env=server.env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server.processes.append(process)
    return process


def _wait_for(condition, what: str, server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}:\n{server.log('serve')}")


def test_serve_beside_work_pool_deployments_leaves_them_untouched_and_unpaused(server):
    server.run("work-pool", "create", "leadflow", "--type", "process")
    server.run("--no-prompt", "deploy", "--all")
    before = {name: server.deployment(name) for name in DEPLOYED}
    assert all(d["work_pool_name"] == "leadflow" and not d["paused"] for d in before.values())

    serving = _serve(server)
    _wait_for(lambda: "Polling for runs" in server.log("serve") or serving.poll() is not None,
              "leadflow serve did not start", server)
    assert serving.poll() is None, server.log("serve")
    assert "Work-pool deployments of the same flows stay as they are" in server.log("serve")
    served = {name: server.deployment(f"{name}-served") for name in DEPLOYED}
    assert all(d["work_pool_name"] is None and not d["paused"] for d in served.values())

    os.killpg(serving.pid, signal.SIGINT)
    serving.wait(timeout=60)
    # Prefect's runner pauses what it served on the way out, when it gets that far (under load it may not): what
    # matters here is that the work-pool deployments were never re-registered, changed or paused.
    after = {name: server.deployment(name) for name in DEPLOYED}
    assert {n: _view(d) for n, d in after.items()} == {n: _view(d) for n, d in before.items()}
    assert {n: d["updated"] for n, d in after.items()} == {n: d["updated"] for n, d in before.items()}

