"""Benchmark lead-intake end to end (with details and scores): leads/s and peak memory, with and without Prefect.

Usage: python bench/intake_bench.py --sizes 10000 100000 [--modes core intake flow] [--db-url URL] [--chunk-size N]
       [--dbs sqlite postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Each measurement runs in a fresh subprocess so that peak RSS belongs to that run alone. The input is
generated (bench/generate.py) before timing starts; the database is new and empty for every run (with `--pg-url`,
a scratch PostgreSQL database is created per run and dropped after it). Besides wall seconds, each run reports the
CPU seconds of the benchmark process and, for a local PostgreSQL, of the server processes serving it: on a machine
shared with other work the CPU seconds say more than the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_core(path: str, chunk_size: int) -> dict:
    """The flow's intake sequence (steps/intake.py) over the plain step functions, without Prefect."""
    from leadflow.crm.store import get_store
    from leadflow.domain.summary import IntakeSummary
    from leadflow.io.sources import iter_lead_chunks
    from leadflow.steps.intake import intake_chunks, overlap_chunks, plain_steps, plan_intake

    store = get_store()
    steps = plain_steps(store)
    started = time.perf_counter()
    plan = plan_intake(path, None, None)
    summary = IntakeSummary(batch_id="bench", origin=path)
    intake_chunks(steps, iter_lead_chunks(plan.lead_file, chunk_size), plan, summary, overlap=overlap_chunks(store))
    return {"rows": summary.rows_read, "seconds": round(time.perf_counter() - started, 3),
            "steps": summary.step_seconds, "quarantined": summary.quarantined}


def run_flow(path: str, chunk_size: int, qualify: bool = True) -> dict:
    """The lead-intake flow, timed from the call to its return (the Prefect API is warmed up first)."""
    from prefect import flow

    from flows.intake import lead_intake

    @flow(name="bench-warmup")
    def warmup() -> int:
        return 1

    warmup()
    started = time.perf_counter()
    # Generated leads span past months: `all` keeps measuring live routing and messages, as recorded before.
    summary = lead_intake(path=path, chunk_size=chunk_size, qualify=qualify, messages="all")
    # The flow body's own time as well: the call returns up to a second after it (Prefect 3.8 joins the run's
    # heartbeat thread, which sleeps in whole seconds), which rounds every wall time to about a whole second.
    return {"rows": summary["rows_read"], "seconds": round(time.perf_counter() - started, 3),
            "body_seconds": summary["seconds"], "steps": summary["step_seconds"],
            "quarantined": summary["quarantined"]}


def load_reference_firmographics() -> int:
    """Reference data: demo reps and accounts, and firmographics for 70% of the generated market's companies."""
    from datetime import UTC, datetime

    from generate import market_firmographics

    from leadflow.crm import reference
    from leadflow.crm.store import get_store

    store = get_store()
    store.upgrade()
    # The demo's reps and accounts, so that qualification routes leads as it would in a real CRM.
    reference.load_sales_reps(store, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(store, reference.DATA_DIR / "accounts.csv")
    return reference.upsert_firmographics(store, market_firmographics(), datetime.now(UTC))


def cpu_seconds() -> float:
    """User and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds() -> dict[int, float]:
    """CPU seconds of each local PostgreSQL backend connected to the benchmark's database, by pid (empty: SQLite,
    or a server on another machine). Backends of connections the pool has closed are missed: a lower bound."""
    from leadflow.crm.store import get_store

    store = get_store()
    return store.backend_cpu_seconds() if hasattr(store, "backend_cpu_seconds") else {}  # absent before session 9


def child(mode: str, path: str, chunk_size: int) -> None:
    """Run one measurement inside a fresh process and print it as JSON."""
    from leadflow.crm.store import get_store

    get_store().upgrade()
    load_reference_firmographics()
    cpu_before, server_before = cpu_seconds(), server_cpu_seconds()
    result = run_core(path, chunk_size) if mode == "core" else run_flow(path, chunk_size, qualify=mode == "flow")
    result["cpu_s"] = round(cpu_seconds() - cpu_before, 2)
    server = server_cpu_seconds()
    result["server_cpu_s"] = round(sum(t - server_before.get(pid, 0.0) for pid, t in server.items()), 2) \
        if server else None
    result["peak_rss_mb"] = peak_rss_mb()
    # The check worker holds a chunk too (as does the ephemeral Prefect server in flow modes): the largest child.
    result["peak_child_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(result))


def measure(mode: str, path: str, chunk_size: int, db_url: str | None, workdir: Path,
            pg_url: str | None = None) -> dict:
    """Run one measurement in a subprocess against a new database (a scratch PostgreSQL one with `pg_url`)."""
    if pg_url:
        import uuid

        from leadflow.crm.backfill import scratch_postgres_database

        url, drop = scratch_postgres_database(pg_url, f"lf_bench_{uuid.uuid4().hex[:8]}")
        try:
            return measure(mode, path, chunk_size, url, workdir)
        finally:
            drop()
    env = dict(os.environ)
    env["LEADFLOW_DATABASE_URL"] = db_url or f"sqlite:///{workdir / f'{mode}-{time.time_ns()}.db'}"
    if db_url and not db_url.startswith("sqlite"):
        # PostgreSQL requires a key for the keyed email hashes (a SQLite file keeps one beside it).
        env.setdefault("LEADFLOW_HASH_KEY", "intake-bench-only-key")
    env.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    # On a busy machine the ephemeral API can take longer than Prefect's default 20 s to come up.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    out = subprocess.run([sys.executable, __file__, "--child", mode, path, "--chunk-size", str(chunk_size)],
                         env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--modes", nargs="+", choices=["core", "intake", "flow"],
                        default=["core", "intake", "flow"],
                        help="core: intake's functions without Prefect; intake: the flow without qualification; "
                        "flow: lead-intake with its lead-qualification subflow")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median run is reported")
    parser.add_argument("--db-url", default=None, help="PostgreSQL URL to use instead of a new SQLite file "
                        "(the database must be empty and migrated per run: use SQLite unless you know why)")
    parser.add_argument("--dbs", nargs="+", choices=["sqlite", "postgresql"], default=None,
                        help="measure each mode on these databases side by side (postgresql needs --pg-url)")
    parser.add_argument("--pg-url", default=os.environ.get("LEADFLOW_BENCH_PG_URL"),
                        help="PostgreSQL server URL where each run gets a scratch database (created, then dropped)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.chunk_size)
        return

    from generate import generate_leads

    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    if args.dbs and "postgresql" in args.dbs and not args.pg_url:
        parser.error("--dbs postgresql needs --pg-url (or LEADFLOW_BENCH_PG_URL)")
    # (label, --db-url, server URL for scratch databases) per database measured.
    targets = [(db, None, args.pg_url if db == "postgresql" else None) for db in args.dbs] if args.dbs else \
        [("postgresql" if args.db_url and not args.db_url.startswith("sqlite") else "sqlite", args.db_url, None)]
    print("| leads | db | mode | seconds | leads/s | CPU s | PG server CPU s | peak RSS MiB | largest child RSS MiB "
          "| overhead vs core |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        workdir = Path(tmp)
        for size in args.sizes:
            path = out_dir / f"leads-{size}.csv"
            if not path.exists():
                generate_leads(size).to_csv(path, index=False)
            for label, db_url, pg_url in targets:
                results = {}
                for mode in args.modes:
                    runs = sorted((measure(mode, str(path), args.chunk_size, db_url, workdir, pg_url)
                                   for _ in range(args.repeat)), key=lambda run: run["seconds"])
                    results[mode] = runs[len(runs) // 2]
                for name, result in results.items():
                    rate = result["rows"] / result["seconds"]
                    extra = ""
                    if name == "intake" and "core" in results:
                        core = results["core"]["seconds"]
                        extra = f"{(result['seconds'] - core) / core:+.1%}"
                    server = result.get("server_cpu_s")
                    print(f"| {size:,} | {label} | {name} | {result['seconds']:.2f} | {rate:,.0f} "
                          f"| {result.get('cpu_s', '-')} | {'-' if server is None else server} "
                          f"| {result['peak_rss_mb']} | {result.get('peak_child_rss_mb') or '-'} | {extra} |",
                          flush=True)
                for name in ("core", "intake", "flow"):
                    if name in results:
                        body = results[name].get("body_seconds")
                        within = f" (flow body {body:.2f} s)" if body is not None else ""
                        print(f"<!-- {label} {name} steps at {size}{within}: {json.dumps(results[name]['steps'])} -->",
                              flush=True)

if __name__ == "__main__":
    main()
