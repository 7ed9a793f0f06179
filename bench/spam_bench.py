"""Benchmark the nightly spam sweep and purge over many leads on SQLite: seconds and peak memory per batch size.

Usage: python bench/spam_bench.py --leads 1000000 --batch-sizes 10000 50000 [--workdir DIR]

The CRM is filled once with bulk SQL (leadflow.crm.spam.fill_bench_crm, a recursive CTE: seconds, not the hours
intake would take): `--leads` leads with one submission each in the last 7 days, raw payloads with IP, honeypot
and fill time, and a mix of spam (disposable domains, honeypots, fast fills, gibberish names, casino messages, IP
bursts of 8 rows), plus 1% of leads flagged 40 days ago so the purge has work. Each measurement runs in a fresh
subprocess on its own copy of that database, so peak RSS belongs to that run alone; the step functions the flow's
tasks call are timed in the flow's order (sweep_spam, then purge_expired_spam), without Prefect.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build(path: Path, leads: int) -> float:
    """Create and fill the benchmark CRM; returns seconds."""
    from leadflow.crm.spam import fill_bench_crm
    from leadflow.crm.store import Store

    started = time.perf_counter()
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    fill_bench_crm(store, leads)
    # Closing the last connection checkpoints the WAL into the file that is copied for each run.
    store.dispose()
    return round(time.perf_counter() - started, 1)


def child(path: str, batch_size: int) -> None:
    """One measured run: import, sweep, purge; prints JSON."""
    from datetime import UTC, datetime, timedelta

    from leadflow.crm.store import Store
    from leadflow.steps import spam as cleanup

    store = Store(f"sqlite:///{path}")
    policy = cleanup.load_spam_policy()
    baseline = peak_rss_mb()
    now = datetime.now(UTC)
    started = time.perf_counter()
    swept = cleanup.sweep_spam(store, policy, since=now - timedelta(days=7), now=now, batch_size=batch_size)
    sweep_seconds = time.perf_counter() - started
    tick = time.perf_counter()
    purged = cleanup.purge_expired_spam(store, policy, now=now, batch_size=batch_size)
    purge_seconds = time.perf_counter() - tick
    print(json.dumps({
        "batch_size": batch_size,
        "submissions": swept.submissions_checked,
        "leads_checked": swept.leads_checked,
        "flagged": swept.flagged,
        "by_reason": dict(swept.by_reason),
        "purged": purged.purged,
        "sweep_seconds": round(sweep_seconds, 1),
        "submissions_per_second": round(swept.submissions_checked / sweep_seconds),
        "purge_seconds": round(purge_seconds, 1),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("DB", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="spam-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "crm.db"
    for stale in workdir.glob("crm*.db*"):
        stale.unlink()
    print(f"filling {args.leads} leads: {build(source, args.leads)} s", flush=True)
    for batch_size in args.batch_sizes:
        copy = workdir / f"crm-{batch_size}.db"
        shutil.copyfile(source, copy)
        completed = subprocess.run([sys.executable, __file__, "--child", str(copy), str(batch_size)],
                                   capture_output=True, text=True, check=True)
        print(completed.stdout.strip().splitlines()[-1], flush=True)
        copy.unlink()


if __name__ == "__main__":
    main()
