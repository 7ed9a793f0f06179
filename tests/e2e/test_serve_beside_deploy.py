"""`leadflow serve` beside `prefect deploy --all` on a real server: the work-pool deployments stay as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from leadflow.crm.store import Store
from tests.e2e.test_e2e_server import ROOT, Server

pytestmark = pytest.mark.slow

DEPLOYED = ["lead-intake/continuous", "lead-intake/file-import", "spam-cleanup/nightly", "monthly-report/monthly",
            "outbox-delivery/queued", "lead-backfill/ad-hoc"]


@pytest.fixture
def server(tmp_path):
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    Store(crm_url).upgrade()
    home = tmp_path / "prefect-home"
    home.mkdir()
    running = Server(home, crm_url)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        assert all(p.poll() is not None for p in running.processes), "a process outlived the test"


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
    # The runner pauses the deployments it served, and only those.
    _wait_for(lambda: all(server.deployment(f"{n}-served")["paused"] for n in DEPLOYED),
              "the served deployments were not paused at shutdown", server, timeout=30)
    after = {name: server.deployment(name) for name in DEPLOYED}
    assert {n: _view(d) for n, d in after.items()} == {n: _view(d) for n, d in before.items()}
    assert {n: d["updated"] for n, d in after.items()} == {n: d["updated"] for n, d in before.items()}

