"""Benchmark lead-qualification alone: leads/s and peak memory, bare core and Prefect flow, on SQLite.

Usage: python bench/qualification_bench.py --sizes 10000 100000 [--modes core flow flow-deliver] [--repeat N]

For each size, generated messy leads (bench/generate.py) go through the intake core once into a template SQLite
database with the demo reps and accounts (plus --reps extra reps so round robin has capacity to hand out); every
measurement then copies that database and qualifies all its leads in a fresh subprocess, so peak RSS belongs to
that run alone. `flow` runs lead-qualification with deliver=False, `flow-deliver` also writes every queued
message as an .eml file (the embedded default without SMTP).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Generated leads span past months: `all` keeps measuring live routing and messages, as the recorded figures did.
MESSAGES = "all"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def prepare(csv: Path, db: Path, extra_reps: int) -> dict:
    """Load reference data and run the intake core on the generated file (not timed)."""
    os.environ["LEADFLOW_DATABASE_URL"] = f"sqlite:///{db}"
    from intake_bench import run_core

    from leadflow.crm import reference
    from leadflow.crm.store import get_store

    store = get_store()
    store.upgrade()
    reference.load_sales_reps(store, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(store, reference.DATA_DIR / "accounts.csv")
    if extra_reps:
        import pandas as pd

        regions = ["US|CA", "DE|AT|CH", "GB|IE", "FR|BE|NL", "ES|IT|PT", "JP|AU|SG|IN", "BR|MX|AR", ""]
        reps = pd.DataFrame({
            "email": [f"bench.rep{i}@leadflow.example" for i in range(extra_reps)],
            "name": [f"Bench Rep {i}" for i in range(extra_reps)],
            "territories": [regions[i % len(regions)] for i in range(extra_reps)],
            "segments": ["enterprise|mid_market|smb"] * extra_reps,
            "max_open_leads": [500 + 100 * (i % 5) for i in range(extra_reps)],
            "active": ["true"] * extra_reps,
            "out_of_office": ["true" if i % 13 == 0 else "false" for i in range(extra_reps)],
        })
        path = db.with_suffix(".reps.csv")
        reps.to_csv(path, index=False)
        reference.load_sales_reps(store, path)
    return run_core(str(csv), 50_000)


def child(mode: str) -> None:
    """One measurement in a fresh process: qualify every lead of the database."""
    from datetime import UTC, datetime

    from leadflow.config.settings import get_settings
    from leadflow.crm.leads import resolve_lead_ids
    from leadflow.crm.store import get_store
    from leadflow.domain.qualification import load_qualification_policy
    from leadflow.domain.summary import QualificationSummary
    from leadflow.steps.qualification import local_steps, qualify

    store = get_store()
    ids = resolve_lead_ids(store, all_unqualified=True)
    if mode == "core":
        # The flow's sequence with the plain steps in place of its tasks (no delivery, as flow with deliver=False).
        policy, settings = load_qualification_policy(), get_settings()
        started, cpu = time.perf_counter(), time.process_time()
        summary = qualify(local_steps(store), ids, policy, QualificationSummary(policy_version=policy.version),
                          replay=False, timezone=settings.timezone, clock=lambda: datetime.now(UTC),
                          chunk_size=settings.chunk_size, messages=MESSAGES).as_dict()
    else:
        from prefect import flow

        from flows.qualification import lead_qualification

        @flow(name="bench-warmup")
        def warmup() -> int:
            return 1

        warmup()
        started, cpu = time.perf_counter(), time.process_time()
        summary = lead_qualification(lead_ids=ids, deliver=mode == "flow-deliver", messages=MESSAGES)
    seconds = time.perf_counter() - started
    # CPU seconds of all the process's threads: steadier than wall time on a box shared with other benchmarks.
    cpu_seconds = time.process_time() - cpu
    print("RESULT " + json.dumps({"leads": len(ids), "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
                                  "peak_rss_mb": peak_rss_mb(),
                                  "queued": summary["messages_queued"], "delivered": summary["delivered"],
                                  "rules": summary["assignments_by_rule"], "accounts": summary["accounts_created"],
                                  "steps": summary.get("step_seconds", {})}))


def measure(mode: str, template: Path, workdir: Path) -> dict:
    """Copy the template database and run one measurement in a subprocess."""
    db = workdir / f"{mode}-{time.time_ns()}.db"
    shutil.copy(template, db)
    env = dict(os.environ, LEADFLOW_DATABASE_URL=f"sqlite:///{db}", LEADFLOW_OUTBOX_DIR=str(workdir / "outbox"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    env.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    # On a busy machine the ephemeral API can take longer than Prefect's default 20 s to come up.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    out = subprocess.run([sys.executable, __file__, "--child", mode], env=env, capture_output=True, text=True,
                         check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    shutil.rmtree(workdir / "outbox", ignore_errors=True)
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=["core", "flow", "flow-deliver"], default=["core", "flow"])
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is reported")
    parser.add_argument("--reps", type=int, default=40, help="extra sales reps with capacity (0: demo reps only)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from generate import generate_leads

    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    print("| leads | mode | seconds | CPU s | leads/s | peak RSS MiB | intake core s "
          "| intake + qualification leads/s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="leadflow-qbench-") as tmp:
        workdir = Path(tmp)
        for size in args.sizes:
            csv = out_dir / f"leads-{size}.csv"
            if not csv.exists():
                generate_leads(size).to_csv(csv, index=False)
            template = workdir / f"template-{size}.db"
            env = dict(os.environ, PREFECT_LOGGING_LEVEL="WARNING")
            prep = subprocess.run([sys.executable, "-c", "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
                                   " import qualification_bench as q;"
                                   " print('PREP ' + json.dumps(q.prepare(__import__('pathlib').Path(sys.argv[3]),"
                                   " __import__('pathlib').Path(sys.argv[4]), int(sys.argv[5]))))",
                                   str(HERE.parent), str(HERE), str(csv), str(template), str(args.reps)],
                                  env=env, capture_output=True, text=True, check=False)
            line = next((ln for ln in prep.stdout.splitlines() if ln.startswith("PREP ")), None)
            if prep.returncode != 0 or line is None:
                raise SystemExit(f"preparing {size} failed:\n{prep.stderr[-3000:]}")
            intake = json.loads(line[5:])
            for mode in args.modes:
                runs = sorted((measure(mode, template, workdir) for _ in range(args.repeat)),
                              key=lambda r: r["seconds"])
                r = runs[len(runs) // 2]
                both = intake["rows"] / (intake["seconds"] + r["seconds"])
                print(f"| {size:,} | {mode} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                      f"{r['leads'] / r['seconds']:,.0f} | {r['peak_rss_mb']} | {intake['seconds']:.2f} | "
                      f"{both:,.0f} |", flush=True)
                print(f"<!-- {mode} at {size}: {json.dumps(r)} -->", flush=True)


if __name__ == "__main__":
    main()
