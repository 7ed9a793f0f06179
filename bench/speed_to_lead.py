"""Speed to lead: seconds from a row landing in lead_inbox (with its event) to the rep alert in the outbox.

Starts a real Prefect server (temporary PREFECT_HOME, free port) and `leadflow serve` against it (its own poll
interval and warm start, as shipped), loads the demo sales reps, then submits leads one at a time like a form
handler would and waits for each one's rep alert. `--breakdown` then says where each lead's seconds went, from
the Prefect API (event received, automation, runner poll, process start, each task).

    .venv/bin/python bench/speed_to_lead.py --leads 20 --breakdown
    .venv/bin/python bench/speed_to_lead.py --leads 20 --gap 10   # every lead through its own triggered run
    .venv/bin/python bench/speed_to_lead.py --leads 20 --via-api   # posted over HTTP to `leadflow serve --api`
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _breakdown(api: Any, crm: Any, inbox_id: int, event_id: str | None, submitted_at: datetime,
               elapsed: float) -> dict[str, float]:
    """Where one lead's seconds went, from its inbox row's batch and that flow run's states and task runs.

    event: submitted -> the server received the lead's event; trigger: submitted -> the flow run that handled the
    lead was due (created by the automation, or its scheduled time; negative: a run that started earlier took the
    lead); pickup: due -> Pending (the runner's poll); start: Pending -> Running (process start, engine setup);
    then seconds in each task (the qualification subflow counted as one step), and `other` for the rest of the
    flow until the alert was seen (setup between tasks, the benchmark's own 0.2 s polling).
    """
    from leadflow.crm.inbox import processing_run

    run_id = processing_run(crm, inbox_id)
    if run_id is None:
        return {}
    run = api.get(f"/flow_runs/{run_id}").json()
    states = {s["type"]: _stamp(s["timestamp"]) for s in api.get("/flow_run_states/", params={"flow_run_id": run_id})
              .json()}
    due = max(_stamp(run["created"]), _stamp(run["expected_start_time"]) or _stamp(run["created"]))
    pending, running = states.get("PENDING") or due, states.get("RUNNING") or due
    phases = {"event": float("nan"), "trigger": (due - submitted_at).total_seconds(),
              "pickup": (pending - due).total_seconds(), "start": (running - pending).total_seconds()}
    if event_id:
        events = api.post("/events/filter", json={"filter": {"id": {"id": [event_id]},
                                                              "occurred": {"since": submitted_at.isoformat()}}})
        received = [_stamp(e["received"]) for e in events.json().get("events", [])]
        if received:
            phases["event"] = (received[0] - submitted_at).total_seconds()
    tasks = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}},
                                                "sort": "EXPECTED_START_TIME_ASC"}).json()
    for task in tasks:
        began, ended = _stamp(task.get("start_time")), _stamp(task.get("end_time"))
        if began and ended and ended > submitted_at and (began - submitted_at).total_seconds() < elapsed:
            # Task run names are the task's name plus "-" and a short key ("Check Lead Batch-0").
            base, _, key = task["name"].rpartition("-")
            name = base if base and len(key) <= 3 else task["name"]
            # Only while this lead waited: the qualification subflow goes on after queueing the alert, and a run
            # that claimed the lead at its end was still finishing the previous one.
            seconds = (min(ended, submitted_at + timedelta(seconds=elapsed)) - max(began, submitted_at)).total_seconds()
            phases[name] = phases.get(name, 0.0) + seconds
    # The rest: flow code between tasks, task run bookkeeping, the benchmark's own 0.2 s polling.
    tasks_seconds = sum(v for k, v in phases.items() if k not in ("event", "trigger", "pickup", "start"))
    phases["other"] = elapsed - max(0.0, (running - submitted_at).total_seconds()) - tasks_seconds
    return phases


def _why_no_alert(api: Any, crm: Any, inbox_id: int, email: str) -> str:
    """What the CRM and the Prefect API say about a lead that got no rep alert in time."""
    from leadflow.crm.inbox import row_trace

    trace = row_trace(crm, inbox_id, email)
    deployment = api.get("/deployments/name/lead-intake/continuous-served").json()
    runs = api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment["id"]]}},
                                               "sort": "EXPECTED_START_TIME_DESC", "limit": 8}).json()
    recent = "; ".join(f"{r['name']} {r['state_type']} {r['expected_start_time'][11:19]}" for r in runs)
    return (f"inbox row {trace['row']}; lead {trace['lead']}; outbox {trace['outbox']}; "
            f"tasks {trace['tasks']}; processed by run {trace['run_id']}; latest continuous runs: {recent}")


def _cancelled_runs(api: Any) -> int:
    """How many runs of lead-intake/continuous the concurrency limit cancelled during the benchmark."""
    deployment = api.get("/deployments/name/lead-intake/continuous-served").json()
    return int(api.post("/flow_runs/count", json={"deployments": {"id": {"any_": [deployment["id"]]}},
                                                  "flow_runs": {"state": {"type": {"any_": ["CANCELLED"]}}}}).json())


def main(argv: list[str] | None = None) -> int:
    """Measure the median time to rep alert over `--leads` submissions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one alert")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between one lead's alert and the next submission (0: at once, so a run still "
                             "finishing the previous lead takes it; 10: each lead's own event-triggered run does)")
    parser.add_argument("--baseline", action="store_true",
                        help="serve as before the warm start, for an A/B on the same machine: prefect.serve over the "
                             "same deployments (runs start as `python -m prefect.engine`), polling every second")
    parser.add_argument("--via-api", action="store_true",
                        help="post each lead over HTTP to `leadflow api` (started by `leadflow serve --api`), which "
                             "stores it and emits the event, instead of inserting it and emitting here")
    parser.add_argument("--breakdown", action="store_true",
                        help="per lead, where the seconds went (from the Prefect API's state and task run times)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="lf-stl-"))
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "LEADFLOW_DATABASE_URL": f"sqlite:///{home / 'crm.db'}", "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import httpx

    from leadflow.crm import inbox, reference
    from leadflow.crm.store import get_store

    crm = get_store()
    crm.upgrade()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    processes = []
    keep = False
    try:
        api_port = _free_port()
        serve_cmd = [str(BIN / "leadflow"), "serve", *(["--api", "--api-port", str(api_port)] if args.via_api else [])]
        if args.baseline:
            serve_cmd = [sys.executable, "-c", "from prefect import serve; from deployments.serve import "
                         "build_deployments, SERVED_SUFFIX; serve(*build_deployments(suffix=SERVED_SUFFIX))"]
        for name, cmd in (("server", [str(BIN / "prefect"), "server", "start", "--port", str(port)]),
                          ("serve", serve_cmd)):
            log = (home / f"{name}.log").open("w")
            run_env = {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"} if name == "serve" and args.baseline else env
            processes.append(subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            if name == "server":
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.5)
        # Ready when the runner has polled (deployment READY: `leadflow serve` polls once its fork server is warm),
        # plus a few seconds for the trigger automation to reach the server's trigger service.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                deployment = httpx.get(f"http://127.0.0.1:{port}/api/deployments/name/lead-intake/continuous-served")
                if deployment.status_code == 200 and deployment.json().get("status") == "READY":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(5)
        print(f"load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
        from prefect.events import emit_event

        poster = None
        if args.via_api:
            from leadflow.crm.api_keys import create_key

            token = create_key(crm, f"speed-to-lead-{os.getpid()}", default_channel="web_form")[0].token
            poster = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"X-API-Key": token}, timeout=30)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if poster.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)

        latencies: list[float] = []
        breakdowns: list[dict[str, float]] = []
        alerted: list[tuple[int, int, str | None, datetime, float]] = []
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30)
        keep = False
        for i in range(args.leads):
            email = f"vp.sales{i}@bigcorp{i}.com"
            started, submitted_at = time.perf_counter(), datetime.now(UTC)
            lead = {"email": email, "source": "web_form", "first_name": "Pat", "last_name": "Lee",
                    "job_title": "VP Sales", "company": f"BigCorp {i}", "demo_requested": "yes",
                    "company_size": "1000-5000", "country": "US", "page_views": "12", "pricing_page_visits": "3"}
            if poster is not None:
                answer = poster.post("/v1/leads", json=lead)
                answer.raise_for_status()
                inbox_id, event = answer.json()["submission_id"], None
            else:
                inbox_id = inbox.submit_lead(crm, lead)
                event = emit_event(event=inbox.SUBMITTED_EVENT,
                                   resource={"prefect.resource.id": inbox.INBOX_RESOURCE_ID})
            found = False
            while time.perf_counter() - started < args.timeout:
                if inbox.rep_alert_queued(crm, email):
                    found = True
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            latencies.append(elapsed if found else float("inf"))
            print(f"lead {i + 1}: {f'{elapsed:.2f} s' if found else 'no rep alert within the timeout'}", flush=True)
            if not found:
                keep = True
                print(f"  why: {_why_no_alert(api, crm, inbox_id, email)}", flush=True)
            time.sleep(args.gap)
            if found:
                alerted.append((i, inbox_id, str(event.id) if event else None, submitted_at, elapsed))
        finite = [x for x in latencies if x != float("inf")]
        median = statistics.median(latencies)
        print(f"median {median:.2f} s over {len(latencies)} leads ({len(finite)} alerted); target < 10 s")
        if finite:
            print(f"fastest {min(finite):.2f} s, slowest {max(finite):.2f} s")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}; {_cancelled_runs(api)} continuous intake runs "
              "were refused a slot (the deployment's concurrency limit, CANCEL_NEW)")
        if args.breakdown:
            # After the last lead: a run marks its inbox rows (with their batch) only after qualification.
            time.sleep(5)
            for i, inbox_id, event_id, submitted_at, elapsed in alerted:
                phases = _breakdown(api, crm, inbox_id, event_id, submitted_at, elapsed)
                if phases:
                    breakdowns.append(phases)
                print(f"lead {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()), flush=True)
        if breakdowns:
            names = list(dict.fromkeys(k for b in breakdowns for k in b))
            # A run's start phases count for the leads it was started for, not for those it took while running.
            own = [b for b in breakdowns if b["trigger"] >= 0] or breakdowns
            medians = {k: statistics.median(v for b in (own if k in ("trigger", "pickup", "start") else breakdowns)
                                            if (v := b.get(k, 0.0)) == v) for k in names}
            print(f"{len(own)} of {len(breakdowns)} leads were taken by a run started after they were posted")
            print("median seconds per phase: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if keep:
            print(f"kept for a look: {home} (server.log, serve.log, crm.db)")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
