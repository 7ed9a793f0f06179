"""A generated CRM whose outcomes depend on known features, for the scoring review and model tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leadflow.crm.status import apply_status_changes
from leadflow.crm.store import Store
from tests.helpers import run_intake

FIRST = ("anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas", "karla", "lukas")
LAST = ("meyer", "schmidt", "garcia", "rossi", "novak", "dubois", "smith", "jones", "silva", "berg")
TITLES = ("CEO", "VP Sales", "Head of Marketing", "Marketing Manager", "Software Engineer", "Analyst", "Intern")
INDUSTRIES = ("Software", "Manufacturing", "Retail", "Healthcare", "Education")
SIZES = ("11-50", "51-200", "201-1000", "1001-5000")


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """First submissions, later ones (after the scoring cutoff), and the converted flag of each lead.

    Conversion follows a form field the rule policy does not know (`budget`) and pricing visits; a demo request,
    which the rules reward, does not matter. Converted leads come back later with a demo request and many page
    views: a leak of later touches into training would make those features look decisive.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    budget = rng.choice(["none", "small", "large"], n, p=[0.4, 0.35, 0.25])
    pricing = rng.poisson(1.0, n)
    demo = rng.random(n) < 0.4
    logit = -2.2 + np.select([budget == "large", budget == "small"], [2.8, 1.0], 0.0) + 0.45 * pricing
    converted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    start = pd.Timestamp("2025-01-06T09:00:00Z")
    when = start + pd.to_timedelta(i * (200 * 86_400 // n), unit="s")
    first = pd.DataFrame({
        "email": [f"{FIRST[k % len(FIRST)]}.{LAST[k // len(FIRST) % len(LAST)]}{k}@company{k % 97}.com" for k in i],
        "submitted_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": rng.choice(["web_form", "paid_search", "webinar"], n),
        "first_name": [FIRST[k % len(FIRST)].title() for k in i],
        "last_name": [LAST[k // len(FIRST) % len(LAST)].title() for k in i],
        "company": [f"Company {k % 97}" for k in i],
        "job_title": rng.choice(TITLES, n), "industry": rng.choice(INDUSTRIES, n), "company_size": rng.choice(SIZES, n),
        "country": rng.choice(["DE", "US", "FR"], n), "page_views": rng.integers(1, 20, n),
        "pricing_page_visits": pricing, "demo_requested": np.where(demo, "true", "false"),
        "content_downloads": rng.integers(0, 3, n), "budget": budget,
    })
    late = first.loc[converted == 1].copy()
    late["submitted_at"] = (when[converted == 1] + pd.Timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    late["demo_requested"] = "true"
    late["page_views"] = 500
    late["job_title"] = "CEO"
    return first, late, converted


def build(store: Store, folder: Path, n: int = 600, seed: int = 7) -> dict[str, object]:
    """Run the generated leads through intake (first and later submissions, one file) and record outcomes."""
    first, late, converted = generate(n, seed)
    path = folder / "leads.csv"
    pd.concat([first, late], ignore_index=True).to_csv(path, index=False)
    run_intake(store, str(path))
    touched = pd.to_datetime(first["submitted_at"], utc=True)
    rows = []
    for k, (email, at, won) in enumerate(zip(first["email"], touched, converted, strict=True)):
        if won:
            rows.append((email, "qualified", None, at + pd.Timedelta(days=10)))
            rows.append((email, "converted", None, at + pd.Timedelta(days=30)))
        elif k % 2 == 0:
            rows.append((email, "disqualified", "no_budget", at + pd.Timedelta(days=15)))
    changes = pd.DataFrame(rows, columns=["email", "status", "reason", "changed_at"])
    changes.insert(0, "row", range(1, len(changes) + 1))
    applied = apply_status_changes(store, changes, "test", datetime.now(UTC))
    assert not applied.rejected, applied.rejected[:3]
    return {"first": first, "late": late, "converted": converted}
