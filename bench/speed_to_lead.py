"""Speed to lead: seconds from a row landing in lead_inbox (with its event) to the rep alert in the outbox.

Starts a real Prefect server (temporary PREFECT_HOME, free port) and `leadflow serve` against it, loads the demo
sales reps, then submits leads one at a time like a form handler would and waits for each one's rep alert.

    .venv/bin/python bench/speed_to_lead.py --leads 20
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    """Measure the median time to rep alert over `--leads` submissions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one alert")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="lf-stl-"))
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "LEADFLOW_DATABASE_URL": f"sqlite:///{home / 'crm.db'}", "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import httpx
    from sqlalchemy import select

    from leadflow import inbox, reference
    from leadflow.schema import Lead, OutboxMessage
    from leadflow.store import get_store

    crm = get_store()
    crm.upgrade()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    processes = []
    try:
        for name, cmd in (("server", [str(BIN / "prefect"), "server", "start", "--port", str(port)]),
                          ("serve", [str(BIN / "leadflow"), "serve"])):
            log = (home / f"{name}.log").open("w")
            processes.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            if name == "server":
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.5)
        time.sleep(15)  # the served deployments and their trigger automation register
        from prefect.events import emit_event

        latencies = []
        leads, outbox = Lead.__table__, OutboxMessage.__table__
        for i in range(args.leads):
            email = f"vp.sales{i}@bigcorp{i}.com"
            started = time.perf_counter()
            inbox.submit_lead(crm, {"email": email, "source": "web_form", "first_name": "Pat", "last_name": "Lee",
                                    "job_title": "VP Sales", "company": f"BigCorp {i}", "demo_requested": "yes",
                                    "company_size": "1000-5000", "country": "US", "page_views": "12",
                                    "pricing_page_visits": "3"})
            emit_event(event=inbox.SUBMITTED_EVENT, resource={"prefect.resource.id": inbox.INBOX_RESOURCE_ID})
            query = (select(outbox.c.id).join(leads, leads.c.id == outbox.c.lead_id)
                     .where(leads.c.email == email, outbox.c.kind == "rep_alert"))
            found = False
            while time.perf_counter() - started < args.timeout:
                with crm.engine.connect() as conn:
                    if conn.execute(query).first():
                        found = True
                        break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            latencies.append(elapsed if found else float("inf"))
            print(f"lead {i + 1}: {f'{elapsed:.2f} s' if found else 'no rep alert within the timeout'}", flush=True)
        finite = [x for x in latencies if x != float("inf")]
        median = statistics.median(latencies)
        print(f"median {median:.2f} s over {len(latencies)} leads ({len(finite)} alerted); target < 10 s")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
