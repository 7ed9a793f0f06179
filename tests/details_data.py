"""Shared inputs of the Retrieve Lead Details / Calculate Lead Score tests: four leads and the Acme record."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select

from leadflow.config.settings import get_settings
from leadflow.crm.schema import Lead
from tests.helpers import lead, write_csv

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACME = {"legal_name": "Acme Corporation", "industry": "Manufacturing", "employee_count": 1200,
        "revenue_band": "250M-1B", "country": "US"}


def leads_frame(crm) -> pd.DataFrame:
    with crm.engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(Lead.__table__)).mappings().all()).set_index("email")


def use_settings(monkeypatch, **env) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"LEADFLOW_{key.upper()}", str(value))
    get_settings.cache_clear()


def detail_rows(tmp_path) -> str:
    return write_csv(tmp_path / "leads.csv", [
        lead("pat@acme.com", job_title="VP Engineering", industry="Retail", demo_requested="yes"),
        lead("sam@acme.com", job_title="Intern", website="https://www.acme.com/"),
        lead("kim@gmail.com", company="Kim's Bakery", message="What is your pricing?"),
        lead("lee@unknown-company.example", page_views="12"),
    ])
