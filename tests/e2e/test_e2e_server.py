"""End to end on a real Prefect server: work pool, `prefect deploy --all`, a worker, intake, backfill, schedules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from leadflow.crm.backfill import LEDGER
from leadflow.crm.reference import SAMPLE_LEADS
from leadflow.crm.schema import LeadSubmission
from leadflow.crm.store import Store
from tests.helpers import lead, write_csv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Prefect's own client retries these: the server answers 503 for retryable errors such as a locked SQLite database.
RETRY_CODES = {429, 502, 503}


class RetryingTransport(httpx.HTTPTransport):
    """An httpx transport that retries the status codes Prefect's client retries, with exponential backoff."""

    def __init__(self, attempts: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attempts = attempts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.attempts):
            response = super().handle_request(request)
            if response.status_code not in RETRY_CODES or attempt == self.attempts - 1:
                return response
            response.read()
            response.close()
            time.sleep(min(0.5 * 2**attempt, 8))
        raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A Prefect server, a process work pool and a worker, each process in its own session so all can be killed."""

    def __init__(self, home: Path, crm_url: str) -> None:
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": self.api,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false",
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5", "PREFECT_LOGGING_LEVEL": "INFO",
                    "LEADFLOW_DATABASE_URL": crm_url, "PYTHONPATH": str(ROOT)}
        self.logs = home / "logs"
        self.logs.mkdir()
        self.processes: list[subprocess.Popen] = []
        self.http = httpx.Client(base_url=self.api, timeout=30, transport=RetryingTransport())

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen([str(BIN / "prefect"), *args], cwd=ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self) -> None:
        self.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the Prefect server did not start:\n{self.log('server')}")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def deployment(self, name: str) -> dict:
        response = self.http.get(f"/deployments/name/{name}")
        assert response.status_code == 200, f"{name}: {response.text}"
        return response.json()

    def run_deployment(self, name: str, parameters: dict) -> str:
        deployment = self.deployment(name)
        response = self.http.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    def wait(self, run_id: str, timeout: float = 420) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/flow_runs/{run_id}").json()
            if run["state"] and run["state"]["type"] in TERMINAL:
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} did not finish:\n{self.log('worker')}")

    def artifact(self, key: str) -> dict:
        response = self.http.post("/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}})
        assert response.status_code == 200, response.text
        found = response.json()
        assert found, f"no artifact {key}"
        return found[0]


@contextmanager
def started_server(tmp_path: Path) -> Iterator[Server]:
    """A real Prefect server on a free port over a new migrated CRM in `tmp_path`; every process it spawned is gone
    after it."""
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    Store(crm_url).upgrade()
    home = tmp_path / "prefect-home"
    home.mkdir()
    running = Server(home, crm_url)
    try:
        running.start()
        running.crm = Store(crm_url)
        yield running
    finally:
        running.stop()
        assert all(p.poll() is not None for p in running.processes), "a process outlived the test"


@pytest.fixture
def server(tmp_path):
    with started_server(tmp_path) as running:
        yield running


def test_deploy_all_then_a_worker_runs_intake_and_a_two_month_backfill(server, tmp_path):
    server.run("work-pool", "create", "leadflow", "--type", "process")
    server.run("--no-prompt", "deploy", "--all")
    server.spawn("worker", "worker", "start", "--pool", "leadflow", "--type", "process")

    intake_run = server.run_deployment("lead-intake/file-import", {"path": str(SAMPLE_LEADS)})
    history = write_csv(tmp_path / "history.csv", [
        lead(f"h{i}@acme{i % 4}.com", f"2024-{1 + i % 2:02d}-{3 + i:02d}T10:00:00Z") for i in range(12)
    ])
    backfill_run = server.run_deployment("lead-backfill/ad-hoc", {
        "path": history, "start": "2024-01-01", "end": "2024-02-29", "window": "month", "runner": "deployment",
        "work_dir": str(tmp_path / "backfill"),
    })
    for run_id in (intake_run, backfill_run):
        run = server.wait(run_id)
        assert run["state"]["type"] == "COMPLETED", f"{run['name']}: {run['state']}\n{server.log('worker')}"

    with server.crm.engine.connect() as conn:
        ledger = {r.window_id: (r.status, r.rows) for r in conn.execute(select(LEDGER))}
        submissions = conn.execute(select(func.count()).select_from(LeadSubmission.__table__)).scalar_one()
    assert ledger == {"2024-01-01_2024-02-01": ("completed", 6), "2024-02-01_2024-03-01": ("completed", 6)}
    assert submissions > 12
    # The windows ran as runs of the file-import deployment, one per window.
    file_import = server.deployment("lead-intake/file-import")
    runs = server.http.post("/flow_runs/filter", json={
        "flow_runs": {"deployment_id": {"any_": [file_import["id"]]}}}).json()
    assert sorted(r["name"] for r in runs) == ["intake-2024-01-01_2024-02-01.jsonl",
                                               "intake-2024-02-01_2024-03-01.jsonl", f"intake-{SAMPLE_LEADS.name}"]
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}
    assert sum(r["parent_task_run_id"] is not None for r in runs) == 2
    assert server.artifact("lead-backfill-progress")["data"] == 100
    assert server.artifact("lead-intake-summary")["type"] == "markdown"

    # The scheduler service turns the cron and interval schedules into scheduled runs on this server.
    expected = {"spam-cleanup/nightly": "0 2 * * *", "monthly-report/monthly": "0 6 1 * *"}
    deadline = time.monotonic() + 120
    scheduled: dict[str, list[dict]] = {}
    while time.monotonic() < deadline:
        for name in [*expected, "lead-intake/continuous", "outbox-delivery/queued"]:
            deployment = server.deployment(name)
            scheduled[name] = server.http.post("/flow_runs/filter", json={
                "flow_runs": {"deployment_id": {"any_": [deployment["id"]]},
                              "state": {"type": {"any_": ["SCHEDULED"]}}},
            }).json()
        if all(scheduled.values()):
            break
        time.sleep(2)
    assert all(scheduled.values()), {k: len(v) for k, v in scheduled.items()}
    for name, cron in expected.items():
        (schedule,) = server.deployment(name)["schedules"]
        assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == (cron, "UTC")
        assert all(r["auto_scheduled"] for r in scheduled[name])
    nightly_hours = {r["expected_start_time"][11:16] for r in scheduled["spam-cleanup/nightly"]}
    assert nightly_hours == {"02:00"}
