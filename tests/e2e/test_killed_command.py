"""A killed `leadflow intake` leaves no process behind: its chunk worker, the worker's resource tracker and the
temporary Prefect API server it started for itself are gone 5 seconds after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from leadflow.crm.store import Store
from tests.helpers import lead, write_csv

ROOT = Path(__file__).resolve().parents[2]
HELPERS = {"temporary Prefect API server": "deployments.ephemeral_server", "chunk worker": "spawn_main",
           "resource tracker": "resource_tracker"}


def _helpers(process: psutil.Process) -> dict[str, psutil.Process]:
    """The command's descendants by the helper they are, as far as they have started."""
    found = {}
    for child in process.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for name, marker in HELPERS.items():
            if marker in line:
                found[name] = child
    return found


def _alive(process: psutil.Process) -> bool:
    """Whether the very process (same pid and start time) still runs; a zombie has ended."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_helper_outlives_a_killed_intake_command(tmp_path):
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    store = Store(crm_url)
    store.upgrade()
    store.dispose()
    # Ten chunks: the run is still at work when its helpers have all started.
    path = write_csv(tmp_path / "leads.csv", [lead(f"person{i}@example.com", first_name=f"P{i}", company=f"Co {i % 97}")
                                              for i in range(20_000)])
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update({
        "LEADFLOW_DATABASE_URL": crm_url, "LEADFLOW_CHUNK_SIZE": "2000", "LEADFLOW_CHECK_WORKER_MIN_BYTES": "0",
        # Without PREFECT_API_URL the command starts its own temporary API server, on a Prefect database of its own.
        "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PYTHONPATH": str(ROOT),
    })
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        command = subprocess.Popen([sys.executable, "-m", "deployments.cli", "intake", str(path)], cwd=tmp_path,
                                   env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        parent = psutil.Process(command.pid)
        deadline = time.monotonic() + 300
        helpers: dict[str, psutil.Process] = {}
        while len(helpers) < len(HELPERS):
            assert command.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, f"helpers seen: {sorted(helpers)}"
            helpers = _helpers(parent)
            time.sleep(0.2)
        descendants = parent.children(recursive=True)
    finally:
        command.send_signal(signal.SIGKILL)
        command.wait()

    time.sleep(5)
    survivors = [" ".join(p.cmdline())[:120] for p in descendants if _alive(p)]
    assert survivors == []
    assert all(not _alive(p) for p in helpers.values())
