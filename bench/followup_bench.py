"""Benchmark one lead-follow-up run over many leads with active sequences: wall time and peak memory.

Usage: python bench/followup_bench.py [--leads 1000000] [--due-share 0.1] [--db-url URL] [--repeat N]

A database (a temporary SQLite file unless --db-url names an empty, migrated one) is filled with the demo reps and
`--leads` working leads, each owned and in an active sequence of the cadence policy, `--due-share` of them with a
step due at the measured hour (others later). The fill is set-based SQL and not timed. Each measurement copies the
SQLite file (or re-fills the --db-url database) and runs the follow-up steps (`steps.followup.follow_up`, what the
flow's tasks run) in a fresh subprocess, so peak RSS is that run's alone; a second run at the same hour follows,
which must find nothing due.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
NOW = datetime(2026, 12, 1, 15, tzinfo=UTC)  # a Tuesday, 10:00 in New York


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def fill(url: str, leads: int, due_share: float) -> dict:
    """Reps, leads and their active sequences, set-based (not timed)."""
    from leadflow.crm import reference
    from leadflow.crm.followup import fill_bench_crm
    from leadflow.crm.store import Store
    from leadflow.domain.followup import load_cadence_policy

    store = Store(url)
    store.upgrade()
    reps = reference.load_sales_reps(store, reference.DATA_DIR / "sales_reps.csv")
    tick = time.perf_counter()
    fill_bench_crm(store, leads, reps, due_share, datetime(2026, 11, 30, 9, tzinfo=UTC), NOW,
                   load_cadence_policy().version)
    store.refresh_statistics(["leads", "lead_followups"])
    counts = store.table_counts()
    store.dispose()
    return {"fill_seconds": round(time.perf_counter() - tick, 1), "leads": counts["leads"],
            "sequences": counts["lead_followups"]}


def run_once(url: str) -> dict:
    """One follow-up run at NOW and a re-run of the same hour, in this (fresh) process."""
    from leadflow.crm.store import Store
    from leadflow.domain.followup import load_cadence_policy
    from leadflow.steps.followup import follow_up

    store = Store(url)
    policy = load_cadence_policy()
    tick, cpu = time.perf_counter(), time.process_time()
    result, _ = follow_up(store, policy, NOW, "UTC", batch_size=50_000)
    seconds, cpu_seconds = time.perf_counter() - tick, time.process_time() - cpu
    tick, cpu = time.perf_counter(), time.process_time()
    again, _ = follow_up(store, policy, NOW, "UTC", batch_size=50_000)
    rerun, rerun_cpu = time.perf_counter() - tick, time.process_time() - cpu
    if sum(again.steps_created.values()) or again.emails_queued:
        raise SystemExit("the re-run of the same hour created steps: not idempotent")
    # CPU seconds beside wall seconds: on a box shared with other work, wall time mostly measures the queue.
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "rerun_seconds": round(rerun, 2),
            "rerun_cpu_seconds": round(rerun_cpu, 2), "peak_rss_mb": peak_rss_mb(),
            "steps_created": dict(sorted(result.steps_created.items())), "emails_queued": result.emails_queued,
            "steps_skipped": sum(result.steps_skipped.values()), "stopped": sum(result.stopped.values()),
            "completed": result.sequences_completed, "overdue_escalated": result.overdue_escalated}


def main() -> None:
    """Fill once, then measure --repeat runs, each on a fresh copy, in its own subprocess."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--due-share", type=float, default=0.1, help="Share of sequences with a step due now.")
    parser.add_argument("--db-url", help="An empty database to fill (default: a temporary SQLite file).")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: measure one run against this URL
    args = parser.parse_args()
    os.environ.setdefault("LEADFLOW_HASH_KEY", "bench-only-email-hash-key-0123456789")
    if args.run:
        print(json.dumps(run_once(args.run)))
        return
    folder = Path(tempfile.mkdtemp(prefix="followup-bench-"))
    try:
        template = folder / "template.db"
        url = args.db_url or f"sqlite:///{template}"
        filled = fill(url, args.leads, args.due_share)
        print(json.dumps({"filled": filled}), flush=True)
        for i in range(args.repeat):
            target = url
            if not args.db_url:
                copy = folder / f"run{i}.db"
                shutil.copyfile(template, copy)
                target = f"sqlite:///{copy}"
            elif i:
                raise SystemExit("--repeat above 1 needs the SQLite default (a --db-url database is filled once)")
            out = subprocess.run([sys.executable, __file__, "--run", target], capture_output=True, text=True,
                                 check=False, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            print(json.dumps({"leads": args.leads, "due_share": args.due_share, **json.loads(out.stdout)}),
                  flush=True)
            if not args.db_url:
                Path(target.removeprefix("sqlite:///")).unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
