"""Backfill benchmark: generated lead history over two years in monthly windows, threads vs Dask, SQLite vs PostgreSQL.

Each case runs in a fresh child process on a new, empty CRM database against a throwaway Prefect API, and reports
leads per second and the peak resident memory of the process and its children (Dask workers). Default sizes are
small; the issue's 1M-lead run is `--sizes 1000000`.

    .venv/bin/python bench/backfill_bench.py --sizes 20000 --runners threads dask
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

CHILD = """
import json, resource, sys, time
from datetime import date
from prefect.testing.utilities import prefect_test_harness
from leadflow.crm.store import get_store
get_store().upgrade()
from flows.backfill import lead_backfill
from leadflow.crm.backfill import ledger_rows
with prefect_test_harness(server_startup_timeout=120):
    t0 = time.perf_counter()
    try:
        result = lead_backfill(path=sys.argv[1], start=date(2024, 1, 1), end=date(2025, 12, 31), window="month",
                               runner=sys.argv[2], max_parallel=2, work_dir=sys.argv[3], recompute_reports=False)
    except Exception:
        # Every failed window's error in full, from the ledger, as the last line the parent reads.
        failed = [r for r in ledger_rows(get_store()) if r["status"] != "completed"]
        print(json.dumps({"failed_windows": [{"window": r["window_id"], "attempts": r["attempts"],
                                              "error": (r["summary"] or {}).get("error")} for r in failed]}))
        raise
    seconds = time.perf_counter() - t0
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
# Where the time went, summed over the windows' intake runs (seconds of work, which overlap across windows).
steps = {}
for row in ledger_rows(get_store()):
    for step, spent in ((row["summary"] or {}).get("step_seconds") or {}).items():
        steps[step] = steps.get(step, 0.0) + spent
top = dict(sorted(((k, round(v, 1)) for k, v in steps.items()), key=lambda kv: -kv[1])[:8])
print(json.dumps({"seconds": seconds, "rows": result["rows_read"], "windows": result["windows_imported"],
                  "peak_rss_mb": round(own / 1024), "peak_child_rss_mb": round(kids / 1024), "steps": top}))
"""


def _database(kind: str, pg_url: str | None) -> tuple[str, callable]:
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="lf-bench-")
        return f"sqlite:///{folder}/crm.db", lambda: None
    from leadflow.crm.backfill import scratch_postgres_database

    return scratch_postgres_database(pg_url, f"lf_bench_{uuid.uuid4().hex[:8]}")


def _failure_report(done: subprocess.CompletedProcess) -> str:
    """Why a case failed: each failed window's error in full when the backfill got that far, else stderr's tail."""
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith('{"failed_windows"'):
            failed = json.loads(line)["failed_windows"]
            listed = "\n".join(f"- window {f['window']} (attempts {f['attempts']}): {f['error']}" for f in failed)
            return f"{len(failed)} window(s) failed:\n{listed}\n--- stderr tail ---\n{done.stderr[-3000:]}"
    return done.stderr[-6000:]


def run_case(history: Path, size: int, db: str, runner: str, pg_url: str | None) -> dict:
    """One backfill in a child process; its timing and memory."""
    url, drop = _database(db, pg_url)
    env = {**os.environ, "LEADFLOW_DATABASE_URL": url, "PREFECT_HOME": tempfile.mkdtemp(prefix="lf-bench-prefect-"),
           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(history), runner, tempfile.mkdtemp()], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{db}/{runner} failed:\n{_failure_report(done)}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        drop()
    measured.update(size=size, db=db, runner=runner, leads_per_second=round(measured["rows"] / measured["seconds"]))
    return measured


def main(argv: list[str] | None = None) -> int:
    """Generate the history once per size, then time every database x runner case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--dbs", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--runners", nargs="+", default=["threads", "dask"], choices=["threads", "dask"])
    args = parser.parse_args(argv)
    pg_url = os.environ.get("LEADFLOW_TEST_PG_URL")
    dbs = [d for d in args.dbs if d == "sqlite" or pg_url]
    from generate import generate_leads

    print("| leads | database | runner | windows | seconds | leads/s | peak RSS main (MB) | peak RSS child (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        history = Path(tempfile.mkdtemp(prefix="lf-bench-history-")) / f"history_{size}.csv"
        generate_leads(size, start="2024-01-01", end="2025-12-31").to_csv(history, index=False)
        for db in dbs:
            for runner in args.runners:
                r = run_case(history, size, db, runner, pg_url)
                print(f"| {size:,} | {db} | {runner} | {r['windows']} | {r['seconds']:.1f} | {r['leads_per_second']:,}"
                      f" | {r['peak_rss_mb']} | {r['peak_child_rss_mb']} |", flush=True)
                print(f"<!-- step seconds summed over windows: {r['steps']} -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
