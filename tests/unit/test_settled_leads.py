"""Update Lead Source skips the leads a batch created from fresh rows alone, and only those."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select

from leadflow.crm.store import LEADS
from leadflow.domain.contract import resolve_columns
from leadflow.domain.submissions import normalize_batch, prepare_batch
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN
from leadflow.steps import intake as leads

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def subs(rows: list[dict]) -> pd.DataFrame:
    raw = pd.DataFrame(rows).astype("string")
    raw[ROW_COLUMN] = range(1, len(raw) + 1)
    raw[MALFORMED_COLUMN] = pd.Series(pd.NA, index=raw.index, dtype="string")
    return normalize_batch(prepare_batch(raw, resolve_columns([c for c in raw.columns if not c.startswith("_")])))


def touches(crm) -> dict[str, tuple]:
    columns = (LEADS.c.email, LEADS.c.first_touch_at, LEADS.c.first_touch_source, LEADS.c.last_touch_at,
               LEADS.c.last_touch_source)
    with crm.begin() as conn:
        rows = conn.execute(select(*columns)).all()
    # Both databases alike: times as UTC ISO text (SQLite hands them back naive).
    return {row[0]: tuple(_text(v) for v in row[1:]) for row in rows}


def _text(value) -> str:
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()
    return str(value)


FIRST = [{"email": "old@x.com", "submitted_at": "2025-05-10", "source": "web", "external_id": "x1"}]
SECOND = [
    # Stored before under another person: a known key, yet it is one of new@x.com's touches in this file.
    {"email": "new@x.com", "submitted_at": "2025-05-01", "source": "web", "external_id": "x1"},
    {"email": "new@x.com", "submitted_at": "2025-05-20", "source": "event"},
    {"email": "fresh@x.com", "submitted_at": "2025-05-03", "source": "chat"},
    {"email": "fresh@x.com", "submitted_at": "2025-05-04", "source": "web"},
    {"email": "old@x.com", "submitted_at": "2025-05-30", "source": "ads"},
]


def run(crm, settle: bool) -> tuple[leads.LeadWriteResult, int]:
    leads.create_lead_entries(crm, subs(FIRST), batch_id="b1", flow_run_id=None, now=NOW)
    second = subs(SECOND)
    written = leads.create_lead_entries(crm, second, batch_id="b2", flow_run_id=None, now=NOW)
    moved = leads.update_lead_sources(crm, second, batch_id="b2", flow_run_id=None, now=NOW,
                                      settled=written.settled_emails if settle else frozenset())
    return written, moved


def test_only_leads_made_of_fresh_rows_alone_are_settled(crm):
    written, moved = run(crm, settle=True)
    # new@x.com was created, but a known row of the file is one of its touches: it is not settled.
    assert written.settled_emails == {"fresh@x.com"}
    assert moved == 2
    stored = touches(crm)
    assert stored["new@x.com"][0].startswith("2025-05-01")
    assert stored["old@x.com"][2].startswith("2025-05-30")
    assert stored["fresh@x.com"][0].startswith("2025-05-03") and stored["fresh@x.com"][2].startswith("2025-05-04")


def test_skipping_settled_leads_stores_the_same_touches(crm, tmp_path):
    run(crm, settle=True)
    with_settled = touches(crm)
    from leadflow.crm.store import Store

    other = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    other.upgrade()
    run(other, settle=False)
    assert touches(other) == with_settled
    other.dispose()
