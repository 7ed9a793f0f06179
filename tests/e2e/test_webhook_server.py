"""Webhooks under a real `leadflow api` process on a local port: signed deliveries stored once, forgeries refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from leadflow.crm.inbox import INBOX
from leadflow.crm.webhooks import delivery_count
from tests.crm.test_webhook_router import FIXTURES, SETTINGS, signed
from tests.e2e.test_e2e_server import _free_port
from tests.unit.test_webhooks import SECRET, fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]



def test_signed_webhooks_under_a_real_server(sqlite_crm, tmp_path):
    port = _free_port()
    env = {**os.environ, "LEADFLOW_DATABASE_URL": sqlite_crm.url, "PYTHONPATH": str(ROOT),
           # Nothing listens there: the submitted events are sent in the background and never hold up an answer.
           "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
           **{name: SECRET for name in SETTINGS.values()}}
    log = (tmp_path / "server.log").open("w")
    command = [sys.executable, "-m", "deployments.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.3)
            body = json.dumps(fixture(FIXTURES["typeform"])).encode()
            first = client.post("/v1/webhooks/typeform", content=body, headers=signed("typeform", body))
            assert first.status_code == 200 and first.json()["stored"] == 1, first.text
            forged = client.post("/v1/webhooks/typeform", content=body.replace(b"Laura", b"Mallory"),
                                 headers=signed("typeform", body))
            assert forged.status_code == 401
            # HubSpot signs the URL it called: the real server's own URL here.
            hub = json.dumps(fixture(FIXTURES["hubspot"])).encode()
            signed_hub = signed("hubspot", hub, url=f"{base}/v1/webhooks/hubspot")
            assert client.post("/v1/webhooks/hubspot", content=hub, headers=signed_hub).json()["stored"] == 1
            stale = signed("hubspot", hub, url=f"{base}/v1/webhooks/hubspot",
                           at=datetime.now(UTC) - timedelta(minutes=6))
            assert client.post("/v1/webhooks/hubspot", content=hub, headers=stale).status_code == 401
        # Calendly delivers the same booking four times at once (retries crossing): one inbox row.
        cal = json.dumps(fixture(FIXTURES["calendly"])).encode()

        def deliver(_: int) -> dict:
            with httpx.Client(base_url=base, timeout=30) as one:
                answer = one.post("/v1/webhooks/calendly", content=cal, headers=signed("calendly", cal))
                assert answer.status_code == 200, answer.text
                return answer.json()

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(deliver, range(4)))
        assert sorted(a["stored"] for a in answers) == [0, 0, 0, 1]
        assert len({a["inbox_ids"][0] for a in answers}) == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    with sqlite_crm.engine.connect() as conn:
        vendors = [p["webhook_vendor"] for p in conn.execute(select(INBOX.c.payload).order_by(INBOX.c.id)).scalars()]
    assert vendors == ["typeform", "hubspot", "calendly"]
    assert delivery_count(sqlite_crm) == 3
    assert "Traceback" not in (tmp_path / "server.log").read_text()
