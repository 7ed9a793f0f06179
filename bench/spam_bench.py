"""Benchmark the nightly spam sweep and purge over many leads on SQLite: seconds and peak memory per batch size.

Usage: python bench/spam_bench.py --leads 1000000 --batch-sizes 10000 50000 [--workdir DIR]

The CRM is filled once with bulk SQL (a recursive CTE: seconds, not the hours intake would take): `--leads`
leads with one submission each in the last 7 days, raw payloads with IP, honeypot and fill time, and a mix of
spam (disposable domains, honeypots, fast fills, gibberish names, casino messages, IP bursts of 8 rows), plus
1% of leads flagged 40 days ago so the purge has work. Each measurement runs in a fresh subprocess on its own
copy of that database, so peak RSS belongs to that run alone; the core functions the flow's tasks call are
timed (sweep_spam, then purge_expired_spam), without Prefect.
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

FILL = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :n)
INSERT INTO leads (id, email, email_domain, first_name, last_name, company, first_touch_at, first_touch_source,
                   last_touch_at, last_touch_source, status, is_spam, spam_reasons, spam_flagged_at, created_at,
                   updated_at)
SELECT n, 'person' || n || '@' || dom, dom,
       CASE WHEN n % 211 = 0 THEN 'xkqzvbw' ELSE 'Ann' END, 'Lee', 'Company ' || (n % 5000),
       ts, 'web_form', ts, 'web_form',
       CASE WHEN n % 100 = 1 THEN 'spam' ELSE 'new' END,
       CASE WHEN n % 100 = 1 THEN 1 ELSE 0 END,
       CASE WHEN n % 100 = 1 THEN 'disposable_domain' END,
       CASE WHEN n % 100 = 1 THEN strftime('%Y-%m-%d %H:%M:%S', 'now', '-40 days') || '.000000' END,
       ts, ts
FROM (SELECT n,
             CASE WHEN n % 53 = 0 THEN 'mailinator.com' ELSE 'acme' || (n % 20000) || '.example' END AS dom,
             strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (n % 600000) || ' seconds') || '.000000' AS ts
      FROM seq)
"""
SUBMISSIONS = """
INSERT INTO lead_submissions (id, idempotency_key, lead_id, batch_id, source, submitted_at, received_at, message,
                              raw_payload)
SELECT id, printf('%064d', id), id, 'bench', 'web_form', first_touch_at, first_touch_at,
       CASE WHEN id % 307 = 0 THEN 'best online casino bonus' ELSE 'Please send pricing' END,
       json_object('email', email, 'submitted_at', first_touch_at, 'source', 'web_form',
                   'ip_address', CASE WHEN id % 10000 < 8 THEN '66.6.' || (id / 10000) || '.1'
                                      ELSE '10.' || (id % 250) || '.' || (id / 250 % 250) || '.' || (id % 7) END,
                   'honeypot', CASE WHEN id % 401 = 0 THEN 'filled' END,
                   'form_fill_seconds', CASE WHEN id % 503 = 0 THEN 0.4 ELSE 25 + id % 60 END)
FROM leads
"""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build(path: Path, leads: int) -> float:
    """Create and fill the benchmark CRM; returns seconds."""
    from sqlalchemy import text

    from leadflow.crm.store import Store

    started = time.perf_counter()
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    with store.begin() as conn:
        conn.execute(text(FILL), {"n": leads})
        conn.execute(text(SUBMISSIONS))
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
