"""`leadflow api` as a real uvicorn server process on a free local port, for the API tests and the browser test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    """A running `leadflow api`: its base URL and its log file."""

    url: str
    log: Path

    def log_tail(self) -> str:
        """The end of the server's log (for a failing assertion's message)."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


@contextmanager
def running_api(database_url: str, folder: Path, env: dict[str, str] | None = None,
                timeout: float = 180.0) -> Iterator[ApiServer]:
    """Start `leadflow api` (the real command) against a migrated CRM; stop it when the block ends."""
    port = free_port()
    log = folder / f"api-{port}.log"
    run_env = {**os.environ, "LEADFLOW_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-c", "from deployments.cli import main; main()", "api", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=run_env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = ApiServer(url=f"http://127.0.0.1:{port}", log=log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"leadflow api exited with {process.returncode}: {server.log_tail()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"leadflow api did not answer /healthz in {timeout:.0f} s: {server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
