"""Benchmark `leadflow scoring train` and `leadflow scoring review` on SQLite over 1M leads with outcomes.

Usage: python bench/scoring_bench.py [--leads 1000000] [--algorithm logistic_regression] [--db PATH] [--repeat 1]

The CRM is generated once (leads scored by the current policy, one submission each with its raw payload and a
later one for a tenth of them, status changes to converted or disqualified; bulk inserts through
leadflow.crm.scoring_data.fill_scoring_bench_crm) and kept at --db, so repeated runs measure only training and
the review. Each is a fresh subprocess (peak RSS belongs to that run) calling the step functions without Prefect:
`train` fits and writes the model; `review` reviews every policy version in use and compares the rules with
that model on its holdout.
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
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.report_bench import peak_rss_mb  # noqa: E402

AS_OF = "2026-01-01T00:00:00+00:00"
INDUSTRIES = np.array(["Software", "Manufacturing", "Retail", "Healthcare", "Education", "Media", "Logistics"])
TITLES = np.array(["CEO", "VP Sales", "Head of Marketing", "Marketing Manager", "Software Engineer", "Analyst",
                   "Intern"])
COUNTRIES = np.array(["US", "DE", "GB", "FR", "NL"])
SOURCES = np.array(["web_form", "paid_search", "webinar", "event", "referral"])
BUDGETS = np.array(["none", "small", "large"])


def _text(times: pd.DatetimeIndex) -> np.ndarray:
    """UTC times as SQLAlchemy's SQLite DATETIME text."""
    return times.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f").to_numpy()


def generate(path: Path, n: int, seed: int = 9) -> dict:
    """Write a migrated SQLite CRM of n scored leads with outcomes that follow their features."""
    from leadflow.crm.scoring_data import fill_scoring_bench_crm
    from leadflow.crm.store import Store
    from leadflow.domain.scoring import score_leads
    from leadflow.steps.scoring import scoring_policy

    Store(f"sqlite:///{path}").upgrade()
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    first = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 540 * 86_400, n), unit="s")
    first = pd.DatetimeIndex(first)
    industry, title = INDUSTRIES[rng.integers(0, len(INDUSTRIES), n)], TITLES[rng.integers(0, len(TITLES), n)]
    country, source = COUNTRIES[rng.integers(0, len(COUNTRIES), n)], SOURCES[rng.integers(0, len(SOURCES), n)]
    budget = BUDGETS[rng.choice(3, n, p=[0.4, 0.35, 0.25])]
    employees = rng.lognormal(4.5, 1.5, n).astype(int) + 1
    free = rng.random(n) < 0.2
    domain = np.where(free, "gmail.com", np.char.add("company", (ids % 50_000).astype(str)) + ".com")
    pricing, views, downloads = rng.poisson(1.0, n), rng.integers(1, 30, n), rng.integers(0, 4, n)
    demo = rng.random(n) < 0.35
    logit = (-2.4 + np.select([budget == "large", budget == "small"], [2.5, 1.0], 0.0) + 0.4 * pricing
             + 0.5 * (industry == "Software") - 0.6 * free)
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    disqualified = ~converted & (rng.random(n) < 0.5)
    emails = np.char.add(np.char.add("lead", ids.astype(str)), np.char.add("@", domain))
    frame = pd.DataFrame({"email": emails, "email_domain": domain, "industry": industry, "employee_count": employees,
                          "country": country, "job_title": title, "demo_requested": demo,
                          "pricing_page_visits": pricing, "page_views": views, "content_downloads": downloads,
                          "last_touch_at": first})
    scored = score_leads(frame, scoring_policy(), pd.Timestamp(AS_OF))
    scored_at = first + pd.Timedelta(minutes=5)
    touched = _text(first)
    leads = zip(ids.tolist(), emails.tolist(), domain.tolist(), industry.tolist(), employees.tolist(),
                country.tolist(), np.where(converted, "converted", np.where(disqualified, "disqualified", "working"))
                .tolist(), scored["score"].tolist(), scored["tier"].tolist(), scored["policy_version"].tolist(),
                scored["explanation"].tolist(), _text(scored_at).tolist(), touched.tolist(), source.tolist(),
                touched.tolist(), source.tolist(), touched.tolist(), touched.tolist(), strict=True)
    payload = ('{"email":"' + pd.Series(emails) + '","job_title":"' + title + '","industry":"' + industry
               + '","country":"' + country + '","page_views":"' + views.astype(str) + '","pricing_page_visits":"'
               + pricing.astype(str) + '","content_downloads":"' + downloads.astype(str) + '","demo_requested":"'
               + np.where(demo, "true", "false") + '","budget":"' + budget + '"}')
    late = np.flatnonzero(rng.random(n) < 0.1)
    late_at = _text(first[late] + pd.Timedelta(days=20))
    late_payload = '{"email":"' + pd.Series(emails[late]) + '","page_views":"400","demo_requested":"true"}'
    subs = [zip([f"s{i}" for i in ids.tolist()], ids.tolist(), source.tolist(), touched.tolist(), touched.tolist(),
                np.where(pricing > 1, "What does it cost?", None).tolist(), payload.tolist(), strict=True),
            zip([f"l{i}" for i in ids[late].tolist()], ids[late].tolist(), source[late].tolist(), late_at.tolist(),
                late_at.tolist(), [None] * len(late), late_payload.tolist(), strict=True)]
    done = np.flatnonzero(converted | disqualified)
    when = _text(first[done] + pd.to_timedelta(rng.integers(5, 60, len(done)), unit="D"))
    details = np.where(converted[done], '{"from": "qualified", "to": "converted", "by": "bench"}',
                       '{"from": "working", "to": "disqualified", "reason": "no_budget", "by": "bench"}')
    counts = fill_scoring_bench_crm(str(path), {"leads": leads, "lead_submissions": (r for z in subs for r in z),
                                                "status_changed": zip(ids[done].tolist(), when.tolist(),
                                                                      details.tolist(), strict=True)})
    return {**counts, "converted": int(converted.sum()), "disqualified": int(disqualified.sum())}


def _config(algorithm: str):
    from leadflow.steps import scoring_models

    config = scoring_models.model_config()
    return config.model_copy(update={"algorithm": algorithm, "extra_features": ["budget"]})


def child(mode: str, algorithm: str) -> None:
    """One measured run; prints a JSON line."""
    from leadflow.crm.store import get_store
    from leadflow.steps import scoring_models
    from leadflow.steps.scoring import scoring_policy

    as_of = pd.Timestamp(AS_OF).to_pydatetime()
    started = time.perf_counter()
    if mode == "train":
        path, model = scoring_models.train_model(get_store(), scoring_policy(), _config(algorithm), as_of=as_of)
        result = {k: model.metrics[k] for k in ("model_auc", "rule_auc", "training_leads", "holdout_leads")}
        result["file"] = str(path)
    else:
        model = sorted(scoring_models.models_dir().glob("*.joblib"))[-1]
        review = scoring_models.scoring_review(get_store(), scoring_policy(), _config(algorithm), as_of=as_of,
                                               challenger=scoring_models.contender(str(model)))
        result = {"leads_mature": review["leads_mature"], "verdict": review["comparison"]["verdict"],
                  "champion_auc": review["comparison"]["champion_auc"],
                  "challenger_auc": review["comparison"]["challenger_auc"]}
    used = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time beside wall time: on a machine shared with other work, wall time mostly measures the queue.
    print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 2),
                      "cpu_seconds": round(used.ru_utime + used.ru_stime, 1), "peak_rss_mb": peak_rss_mb()}))


def measure(mode: str, algorithm: str, db: Path, workdir: Path) -> dict:
    """Run one step in a fresh subprocess and read its JSON line."""
    env = dict(os.environ, LEADFLOW_DATABASE_URL=f"sqlite:///{db}", LEADFLOW_OUTPUT_DIR=str(workdir))
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--algorithm", algorithm], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Generate the CRM once, then time training and the review."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--algorithm", default="logistic_regression",
                        choices=["logistic_regression", "gradient_boosting"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.algorithm)
        return
    workdir = Path(tempfile.mkdtemp(prefix="scoring-bench-"))
    db = args.db or Path(tempfile.gettempdir()) / f"scoring-bench-{args.leads}.db"
    if not db.exists():
        print(f"generating {args.leads:,} scored leads with outcomes into {db} ...", flush=True)
        started = time.perf_counter()
        print(json.dumps({**generate(db, args.leads), "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    for mode in ("train", "review"):
        runs = [measure(mode, args.algorithm, db, workdir) for _ in range(args.repeat)]
        print(json.dumps({"mode": mode, "algorithm": args.algorithm,
                          "median_seconds": statistics.median(r["seconds"] for r in runs),
                          "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": runs}), flush=True)


if __name__ == "__main__":
    main()
