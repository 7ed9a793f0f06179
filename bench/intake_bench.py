"""Benchmark lead-intake end to end (with details and scores): leads/s and peak memory, with and without Prefect.

Usage: python bench/intake_bench.py --sizes 10000 100000 [--modes core intake flow] [--db-url URL] [--chunk-size N]

Each measurement runs in a fresh subprocess so that peak RSS belongs to that run alone. The input is
generated (bench/generate.py) before timing starts; the database is new and empty for every run.
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
    from leadflow.steps.intake import intake_chunks, plain_steps, plan_intake

    store = get_store()
    steps = plain_steps(store)
    started = time.perf_counter()
    plan = plan_intake(path, None, None)
    summary = IntakeSummary(batch_id="bench", origin=path)
    intake_chunks(steps, iter_lead_chunks(plan.lead_file, chunk_size), plan, summary)
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
    return {"rows": summary["rows_read"], "seconds": round(time.perf_counter() - started, 3),
            "steps": summary["step_seconds"], "quarantined": summary["quarantined"]}


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


def child(mode: str, path: str, chunk_size: int) -> None:
    """Run one measurement inside a fresh process and print it as JSON."""
    from leadflow.crm.store import get_store

    get_store().upgrade()
    load_reference_firmographics()
    result = run_core(path, chunk_size) if mode == "core" else run_flow(path, chunk_size, qualify=mode == "flow")
    result["peak_rss_mb"] = peak_rss_mb()
    # The check worker holds a chunk too (as does the ephemeral Prefect server in flow modes): the largest child.
    result["peak_child_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(result))


def measure(mode: str, path: str, chunk_size: int, db_url: str | None, workdir: Path) -> dict:
    """Run one measurement in a subprocess against a new database."""
    env = dict(os.environ)
    env["LEADFLOW_DATABASE_URL"] = db_url or f"sqlite:///{workdir / f'{mode}-{time.time_ns()}.db'}"
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
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.chunk_size)
        return

    from generate import generate_leads

    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    print("| leads | mode | seconds | leads/s | peak RSS MiB | largest child RSS MiB | overhead vs core |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        workdir = Path(tmp)
        for size in args.sizes:
            path = out_dir / f"leads-{size}.csv"
            if not path.exists():
                generate_leads(size).to_csv(path, index=False)
            results = {}
            for mode in args.modes:
                runs = sorted((measure(mode, str(path), args.chunk_size, args.db_url, workdir)
                               for _ in range(args.repeat)), key=lambda run: run["seconds"])
                results[mode] = runs[len(runs) // 2]
            for name, result in results.items():
                rate = result["rows"] / result["seconds"]
                extra = ""
                if name == "intake" and "core" in results:
                    extra = f"{(result['seconds'] - results['core']['seconds']) / results['core']['seconds']:+.1%}"
                print(f"| {size:,} | {name} | {result['seconds']:.2f} | {rate:,.0f} | {result['peak_rss_mb']} "
                      f"| {result.get('peak_child_rss_mb') or '-'} | {extra} |", flush=True)
            for name in ("core", "intake", "flow"):
                if name in results:
                    print(f"<!-- {name} steps at {size}: {json.dumps(results[name]['steps'])} -->", flush=True)


if __name__ == "__main__":
    main()
