"""Benchmark the nightly spam sweep and purge over many leads on SQLite and PostgreSQL: seconds and peak memory.

Usage: python bench/spam_bench.py --leads 1000000 --dbs sqlite postgresql \
           --db-url postgresql://postgres@127.0.0.1:5432/postgres [--batch-sizes 50000] [--repeat 2] \
           [--checkouts . /path/to/older/checkout] [--workdir DIR] [--profile DIR]

The CRM is filled once per database with bulk SQL (leadflow.crm.spam.fill_bench_crm: a recursive CTE on SQLite,
generate_series on PostgreSQL; seconds, not the hours intake would take): `--leads` leads with one submission
each in the last 7 days, raw payloads with IP, honeypot and fill time, and a mix of spam (disposable domains,
honeypots, fast fills, gibberish names, casino messages, IP bursts of 8 rows), plus 1% of leads flagged 40 days
ago so the purge has work. Each measurement runs in a fresh subprocess on its own copy of that database (a file
copy; on PostgreSQL a database made from the filled one as its template, on the server of `--db-url`, dropped
after), so peak RSS belongs to that run alone; the step functions the flow's tasks call are timed in the flow's
order (sweep_spam, then purge_expired_spam), without Prefect. `--checkouts` runs the children with each
checkout's leadflow (the data is filled with this one's), alternating, so an older commit is measured side by
side; the spam leads after each run are printed as a digest so that equal decisions show. `--profile` writes a
cProfile (CPU time) of each sweep.
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
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Email hashes are keyed; PostgreSQL needs the key set (a SQLite file would otherwise get a key file beside it).
BENCH_ENV = {"LEADFLOW_HASH_KEY": os.environ.get("LEADFLOW_HASH_KEY", "spam-bench-email-hash-key-0123456789")}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build(url: str, leads: int) -> float:
    """Create and fill the benchmark CRM at this URL; returns seconds."""
    os.environ.update(BENCH_ENV)
    sys.path.insert(0, str(ROOT))
    from leadflow.crm.spam import fill_bench_crm
    from leadflow.crm.store import Store

    started = time.perf_counter()
    store = Store(url)
    store.upgrade()
    fill_bench_crm(store, leads)
    # On SQLite, closing the last connection checkpoints the WAL into the file that is copied for each run.
    store.dispose()
    return round(time.perf_counter() - started, 1)


def spam_digest(url: str) -> str:
    """The run copy's digest of spam leads (this checkout's crm), read after the measured child ended."""
    sys.path.insert(0, str(ROOT))
    from leadflow.crm.spam import spam_digest as digest
    from leadflow.crm.store import Store

    store = Store(url)
    try:
        return digest(store)
    finally:
        store.dispose()


def child(url: str, batch_size: int, profile: str | None) -> None:
    """One measured run: import, sweep, purge; prints JSON."""
    from datetime import UTC, datetime, timedelta

    from leadflow.crm.store import Store
    from leadflow.steps import spam as cleanup

    store = Store(url)
    policy = cleanup.load_spam_policy()
    baseline = peak_rss_mb()
    now = datetime.now(UTC)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    started, cpu = time.perf_counter(), time.process_time()
    swept = cleanup.sweep_spam(store, policy, since=now - timedelta(days=7), now=now, batch_size=batch_size)
    sweep_seconds, sweep_cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    tick = time.perf_counter()
    purged = cleanup.purge_expired_spam(store, policy, now=now, batch_size=batch_size)
    purge_seconds = time.perf_counter() - tick
    print(json.dumps({
        "batch_size": batch_size,
        "submissions": swept.submissions_checked,
        "leads_checked": swept.leads_checked,
        "flagged": swept.flagged,
        "by_reason": dict(sorted(swept.by_reason.items())),
        "purged": purged.purged,
        "sweep_seconds": round(sweep_seconds, 1),
        "sweep_cpu_seconds": round(sweep_cpu, 1),
        "submissions_per_second": round(swept.submissions_checked / sweep_seconds),
        "purge_seconds": round(purge_seconds, 1),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }))


class SqliteCopies:
    """The filled SQLite file and a fresh copy of it per run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.source = workdir / "crm.db"
        for stale in workdir.glob("crm*.db*"):
            stale.unlink()

    def fill(self, leads: int) -> float:
        return build(f"sqlite:///{self.source}", leads)

    def copy(self) -> str:
        target = self.workdir / "crm-run.db"
        for stale in self.workdir.glob("crm-run.db*"):
            stale.unlink()
        shutil.copyfile(self.source, target)
        return f"sqlite:///{target}"

    def drop(self, url: str) -> None:
        for stale in self.workdir.glob("crm-run.db*"):
            stale.unlink()

    def close(self) -> None:
        self.source.unlink(missing_ok=True)


class PostgresCopies:
    """A filled database on the server of `--db-url`, and a database made from it (its template) per run."""

    def __init__(self, server_url: str) -> None:
        sys.path.insert(0, str(ROOT))
        from leadflow.crm.spam import bench_postgres_database

        self.server_url = server_url
        self.name = f"spam_bench_{uuid.uuid4().hex[:8]}"
        self.source, self.drop_source = bench_postgres_database(server_url, self.name)
        self.drop_run = None

    def fill(self, leads: int) -> float:
        return build(self.source, leads)

    def copy(self) -> str:
        from leadflow.crm.spam import bench_postgres_database

        url, self.drop_run = bench_postgres_database(self.server_url, f"{self.name}_run", template=self.name)
        return url

    def drop(self, url: str) -> None:
        if self.drop_run is not None:
            self.drop_run()
            self.drop_run = None

    def close(self) -> None:
        self.drop(self.source)
        self.drop_source()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--dbs", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--db-url", default=os.environ.get("LEADFLOW_TEST_PG_URL"),
                        help="a PostgreSQL server URL (its database is used to create and drop the bench databases)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[50_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--checkouts", type=Path, nargs="+", default=[ROOT],
                        help="checkouts whose leadflow the measured runs import (default: this one)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None, help="write a CPU-time cProfile of each sweep here")
    parser.add_argument("--child", nargs=3, metavar=("URL", "BATCH", "PROFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ.update(BENCH_ENV)
        child(args.child[0], int(args.child[1]), args.child[2] or None)
        return
    if "postgresql" in args.dbs and not args.db_url:
        parser.error("--dbs postgresql needs --db-url (or LEADFLOW_TEST_PG_URL)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="spam-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for db in args.dbs:
        copies = SqliteCopies(workdir) if db == "sqlite" else PostgresCopies(args.db_url)
        try:
            print(f"{db}: filling {args.leads} leads: {copies.fill(args.leads)} s", flush=True)
            for repeat in range(args.repeat):
                for batch_size in args.batch_sizes:
                    for k, checkout in enumerate(args.checkouts):
                        url = copies.copy()
                        profile = ""
                        if args.profile:
                            profile = str(args.profile / f"{db}-{batch_size}-{k}-{repeat}.prof")
                        env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(checkout.resolve())}
                        completed = subprocess.run(
                            [sys.executable, __file__, "--child", url, str(batch_size), profile],
                            capture_output=True, text=True, env=env, cwd=checkout,
                        )
                        if completed.returncode:
                            copies.drop(url)
                            print(completed.stderr[-3000:], file=sys.stderr, flush=True)
                            raise SystemExit(f"{db} run with {checkout} failed")
                        line = json.loads(completed.stdout.strip().splitlines()[-1])
                        # After the purge too: it deletes the same long-flagged leads whichever checkout ran.
                        line["spam_digest"] = spam_digest(url)
                        copies.drop(url)
                        print(json.dumps({"db": db, "checkout": str(checkout), **line}), flush=True)
        finally:
            copies.close()


if __name__ == "__main__":
    main()
