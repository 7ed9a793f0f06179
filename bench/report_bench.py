"""Benchmark the monthly report on SQLite over a generated CRM of 1M leads and 5M lead events.

Usage: python bench/report_bench.py [--leads 1000000] [--months 24] [--month 2025-06] [--repeat 3] [--db PATH]

The CRM is generated once (bulk inserts with the driver's executemany through leadflow.crm.reports.fill_bench_crm,
about a minute) and kept at --db, so
repeated runs measure only the report. Each report run is a fresh subprocess, so peak RSS belongs to that run:
`core` calls the functions the flow's tasks call, in order, without Prefect; `flow` runs the monthly-report flow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SOURCES = np.array(["web_form", "linkedin_ads", "google_ads", "organic_search", "event", "webinar", "referral",
                    "email_campaign", "partner", "live_chat"])
COUNTRIES = np.array(["US", "DE", "GB", "FR", "NL", "CA", "AU", "ES", "IT", "SE"])
# Status paths a lead takes (a stage skipped, a recycle, a disqualification); the weights average 4 changes a lead,
# so with the lead_created event each lead has 5 events: 1M leads -> 5M events.
PATHS = [
    (["working"], 0.05),
    (["working", "disqualified"], 0.10),
    (["working", "qualified"], 0.10),
    (["working", "qualified", "discovery_call_booked"], 0.10),
    (["working", "qualified", "discovery_call_booked", "converted"], 0.25),
    (["working", "recycled", "working", "qualified", "discovery_call_booked", "converted"], 0.20),
    (["working", "discovery_call_booked", "converted"], 0.05),
    (["working", "qualified", "disqualified", "recycled", "working", "qualified"], 0.15),
]
REASONS = ["no_budget", "no_need", "bad_timing", "competitor", "unresponsive"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec, so a child started by
    the process that generated the data would report the generator's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _text(times: np.ndarray) -> list[str]:
    """datetime64[us] as SQLAlchemy's SQLite DATETIME text."""
    return [t.replace("T", " ") for t in np.datetime_as_string(times, unit="us")]


def generate(path: Path, n_leads: int, months: int, last_month: str, seed: int = 6) -> dict:
    """Write a migrated SQLite CRM with n_leads leads spread over `months` months ending with last_month."""
    from leadflow.crm.reports import fill_bench_crm
    from leadflow.crm.store import Store

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    Store(f"sqlite:///{path}").upgrade()
    end = pd.Timestamp(f"{last_month}-01") + pd.offsets.MonthBegin(1)
    start = end - pd.DateOffset(months=months)
    span_us = int((end - start).value // 1000)
    created = np.sort(np.datetime64(start.to_datetime64(), "us")
                      + rng.integers(0, span_us, n_leads).astype("timedelta64[us]"))
    ids = np.arange(1, n_leads + 1)
    spam = rng.random(n_leads) < 0.04
    source = SOURCES[rng.integers(0, len(SOURCES), n_leads)]
    priority = np.array(["P1", "P2", "P3", "P4"])[rng.integers(0, 4, n_leads)]
    owner = rng.integers(1, 21, n_leads)
    country = COUNTRIES[rng.integers(0, len(COUNTRIES), n_leads)]
    tier = np.array(["A", "B", "C"])[rng.integers(0, 3, n_leads)]
    created_text = _text(created)
    rows: dict[str, Iterable[tuple]] = {}
    rows["sales_reps"] = [(i, f"rep{i}@bench.example", f"Rep {i:02d}") for i in range(1, 21)]
    rows["leads"] = zip(
        ids.tolist(), (f"lead{i}@bench.example" for i in ids), created_text, source.tolist(), created_text,
        source.tolist(), np.where(source == "google_ads", "cpc", None).tolist(),
        np.where(source == "google_ads", "google", None).tolist(), country.tolist(), tier.tolist(),
        owner.tolist(), priority.tolist(), spam.astype(int).tolist(), created_text, created_text, strict=True)
    # Submissions: every lead's first touch, and a repeat for about 30% of them a few days later.
    repeat = rng.random(n_leads) < 0.3
    sub_lead = np.concatenate([ids, ids[repeat]])
    sub_at = np.concatenate([created, created[repeat] + rng.integers(1, 20 * 86400, repeat.sum()).astype(
        "timedelta64[s]").astype("timedelta64[us]")])
    sub_text = _text(sub_at)
    rows["lead_submissions"] = zip((f"s{i}" for i in range(len(sub_lead))), sub_lead.tolist(),
                                   source[sub_lead - 1].tolist(), sub_text, sub_text, strict=True)
    # Events: lead_created, then each lead's status path, hours apart.
    weights = np.array([w for _, w in PATHS])
    path_of = rng.choice(len(PATHS), n_leads, p=weights / weights.sum())
    lengths = np.array([len(p) for p, _ in PATHS])[path_of]
    total = int(lengths.sum())
    ev_lead = np.repeat(ids, lengths)
    step = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    gaps = rng.integers(1, 72, total).astype("timedelta64[h]").astype("timedelta64[us]")
    # Cumulative gap per lead: cumsum over all events minus the lead's offset.
    cum = np.cumsum(gaps.astype(np.int64))
    offset = np.repeat(np.concatenate([[0], cum[np.cumsum(lengths)[:-1] - 1]]), lengths)
    ev_at = created[ev_lead - 1] + (cum - offset).astype("timedelta64[us]")
    details = {}
    for i, (p, _) in enumerate(PATHS):
        previous = "new"
        for k, to in enumerate(p):
            reason = REASONS[(i + k) % len(REASONS)] if to in ("disqualified", "recycled") else None
            details[(i, k)] = json.dumps({"from": previous, "to": to, "reason": reason, "by": "bench"})
            previous = to
    detail_text = [details[(p, s)] for p, s in zip(np.repeat(path_of, lengths).tolist(), step.tolist(), strict=True)]
    rows["lead_created"] = zip(ids.tolist(), created_text, strict=True)
    rows["status_changed"] = zip(ev_lead.tolist(), _text(ev_at), detail_text, strict=True)
    # Qualification tasks with a due time for P1/P2 leads; about 70% completed.
    p12 = np.flatnonzero(np.isin(priority, ["P1", "P2"]))
    due = created[p12] + np.where(priority[p12] == "P1", 4, 24).astype("timedelta64[h]").astype("timedelta64[us]")
    done = rng.random(len(p12)) < 0.7
    completed = created[p12] + rng.integers(1, 48, len(p12)).astype("timedelta64[h]").astype("timedelta64[us]")
    rows["crm_tasks"] = zip((f"q{i}" for i in ids[p12]), ids[p12].tolist(), owner[p12].tolist(),
                            np.where(done, "done", "open").tolist(), _text(due), [created_text[i] for i in p12],
                            [t if d else None for t, d in zip(_text(completed), done, strict=True)], strict=True)
    counts = fill_bench_crm(path, rows)
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


def run_core(month: str) -> dict:
    """The step functions the flow's tasks call, in the flow's order, without Prefect; seconds per step."""
    from leadflow.config.settings import get_settings
    from leadflow.crm.store import get_store
    from leadflow.domain import reports as rpt
    from leadflow.steps import reports as report_steps
    from leadflow.steps.delivery import queue_monthly_report_notice

    crm = get_store()
    steps: dict[str, float] = {}
    tick = time.perf_counter()
    as_of = rpt.month_bounds(month)[1]
    volume = report_steps.aggregate_monthly_lead_volume(crm, month)
    steps["aggregate_volume"] = time.perf_counter() - tick
    tick = time.perf_counter()
    conversion = report_steps.lead_conversion_report(crm, month, 3, as_of)
    steps["conversion_report"] = time.perf_counter() - tick
    report = report_steps.assemble_report(month, as_of, volume, conversion)
    tick = time.perf_counter()
    checks = report_steps.check_report(report)
    steps["check"] = time.perf_counter() - tick
    tick = time.perf_counter()
    published = report_steps.publish_monthly_report(crm, report, ["md", "csv", "html", "json"], checks,
                                                    get_settings().report_dir)
    steps["publish"] = time.perf_counter() - tick
    tick = time.perf_counter()
    queue_monthly_report_notice(crm, report, published["files"])
    steps["notify"] = time.perf_counter() - tick
    return {"steps": {k: round(v, 2) for k, v in steps.items()}, "new_leads": report.total("new_leads"),
            "funnel_rows": len(report.funnel)}


def run_flow(month: str) -> dict:
    """The monthly-report flow itself."""
    from flows.monthly_report import monthly_report

    result = monthly_report(month=month)
    return {"new_leads": result["new_leads"]}


def child(mode: str, month: str) -> None:
    """One measured run; prints a JSON line."""
    started = time.perf_counter()
    result = run_core(month) if mode == "core" else run_flow(month)
    print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": peak_rss_mb()}))


def measure(mode: str, month: str, db: Path, workdir: Path) -> dict:
    """Run one report in a fresh subprocess and read its JSON line."""
    env = dict(os.environ, LEADFLOW_DATABASE_URL=f"sqlite:///{db}", LEADFLOW_REPORT_DIR=str(workdir / "reports"),
               PREFECT_HOME=str(workdir / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--month", month], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Generate the CRM once, then time the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24, help="months the leads are spread over")
    parser.add_argument("--month", default="2025-06", help="the report month (the last generated month)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["core", "flow"])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.month)
        return
    workdir = Path(tempfile.mkdtemp(prefix="report-bench-"))
    db = args.db or Path(tempfile.gettempdir()) / f"report-bench-{args.leads}-{args.months}-{args.month}.db"
    if not db.exists():
        print(f"generating {args.leads:,} leads over {args.months} months into {db} ...", flush=True)
        print(json.dumps(generate(db, args.leads, args.months, args.month)), flush=True)
    for mode in args.modes:
        runs = [measure(mode, args.month, db, workdir) for _ in range(args.repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        print(json.dumps({"mode": mode, "median_seconds": seconds, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                          "runs": runs}), flush=True)


if __name__ == "__main__":
    main()
