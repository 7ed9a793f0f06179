"""Benchmark the store's bulk writes on PostgreSQL: executemany against COPY into a staging table, same frames.

Usage: python bench/pg_bulk_bench.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres [--rows 50000] [--repeat 3]

Each path writes into its own scratch database (created, then dropped): an upsert of new leads, the same upsert again
(every row a conflict that merges), submissions with ON CONFLICT DO NOTHING, an UPDATE of every lead, and a step
mark over all ids. Reports wall seconds and CPU seconds of this process and of the server backend (a local server);
on a shared machine compare the CPU seconds. On an older checkout without `copy_min_rows` both paths are executemany.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def frames(rows: int):
    """The frames one run writes: leads, their later touches, submissions and lead updates."""
    import numpy as np
    import pandas as pd

    now = datetime(2025, 6, 1, tzinfo=UTC)
    emails = [f"person{i}@example{i % 997}.com" for i in range(rows)]
    leads = pd.DataFrame({
        "email": emails, "first_touch_at": now, "last_touch_at": now, "first_touch_source": "web_form",
        "last_touch_source": "web_form", "company": [f"Company {i % 5000}" for i in range(rows)],
        "job_title": np.where(np.arange(rows) % 3 == 0, None, "Head of Ops"), "page_views": np.arange(rows) % 17,
        "step_mark": 0, "step_marked_at": now})
    later = leads.assign(last_touch_at=now + timedelta(days=1), company=None, page_views=np.arange(rows) % 23)
    return now, leads, later


def run(url: str, rows: int, copy: bool) -> dict[str, float]:
    """Write the frames once through one path; seconds per write and CPU seconds of client and server."""
    import pandas as pd

    from leadflow.crm import progress, submissions
    from leadflow.crm.store import Store
    from leadflow.domain.progress import LeadStep

    store = Store(url)
    store.upgrade()
    if hasattr(store, "copy_min_rows"):
        store.copy_min_rows = 0 if copy else 10**12
    now, leads, later = frames(rows)
    out: dict[str, float] = {}
    with store.engine.connect() as conn:
        server_cpu = getattr(store, "backend_cpu_seconds", lambda _conn: {})  # absent before session 9
        server_before = sum(server_cpu(conn).values())
        conn.commit()
        cpu_before = time.process_time()
        started = time.perf_counter()

        def step(name: str, write) -> None:
            tick = time.perf_counter()
            write()
            conn.commit()
            out[name] = round(time.perf_counter() - tick, 2)

        step("upsert new leads", lambda: store.upsert_leads(conn, leads, now))
        ids = dict(submissions.lead_ids(conn, leads["email"].tolist()))
        step("upsert known leads", lambda: store.upsert_leads(conn, later, now + timedelta(days=1)))
        subs = pd.DataFrame({"idempotency_key": [f"k{i}" for i in range(rows)], "lead_id": leads["email"].map(ids),
                             "source": "web_form", "external_id": None, "submitted_at": now, "utm_source": None,
                             "utm_medium": None, "utm_campaign": None, "message": "hello",
                             "_payload": '{"email": "x"}'})
        step("insert submissions", lambda: submissions.insert_submissions(store, conn, subs, "bench", now))
        update = pd.DataFrame({"id": list(ids.values()), "score": 0.5, "tier": "B", "scored_at": now})
        step("update leads", lambda: store.update_leads(conn, update))
        step("mark step", lambda: progress.mark_step(conn, list(ids.values()), LeadStep.SPAM_CHECKED, now))
        out["total"] = round(time.perf_counter() - started, 2)
        out["client CPU"] = round(time.process_time() - cpu_before, 2)
        out["server CPU"] = round(sum(server_cpu(conn).values()) - server_before, 2)
    store.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("LEADFLOW_BENCH_PG_URL"), required=False)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per path, alternating; the median is reported")
    args = parser.parse_args()
    if not args.pg_url:
        parser.error("--pg-url (or LEADFLOW_BENCH_PG_URL) is required")
    from leadflow.crm.backfill import scratch_postgres_database

    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for copy in (False, True):
            url, drop = scratch_postgres_database(args.pg_url, f"lf_bench_{uuid.uuid4().hex[:8]}")
            try:
                results[copy].append(run(url, args.rows, copy))
            finally:
                drop()
    names = list(results[False][0])
    print(f"| {args.rows:,} rows, seconds (median of {args.repeat}) | executemany | COPY + set-based |")
    print("|---|---:|---:|")
    for name in names:
        medians = [sorted(r[name] for r in results[copy])[len(results[copy]) // 2] for copy in (False, True)]
        print(f"| {name} | {medians[0]} | {medians[1]} |")


if __name__ == "__main__":
    main()
