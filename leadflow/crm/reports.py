"""Reads for the monthly report (filtered and flattened in SQL) and its idempotent per-month writes.

A lead belongs to the month of its first touch (``leads.first_touch_at``, which intake keeps at the earliest
submission's ``submitted_at``), so imported history lands in its own months rather than the month of the import.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, String, and_, delete, false, func, select, type_coerce

from leadflow.crm.schema import (
    CrmTask,
    Lead,
    LeadEvent,
    LeadSubmission,
    ReportDisqualificationReason,
    ReportFunnel,
    ReportLeadVolume,
    ReportRun,
    SalesRep,
)
from leadflow.crm.store import Store, records, utc
from leadflow.domain.reports import MonthlyReport, month_bounds, previous_month, same_month_last_year

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
EVENTS = LeadEvent.__table__
TASKS = CrmTask.__table__
REPS = SalesRep.__table__
RUNS = ReportRun.__table__
VOLUME = ReportLeadVolume.__table__
FUNNEL = ReportFunnel.__table__
REASONS = ReportDisqualificationReason.__table__
REPORT_TABLES = (VOLUME, FUNNEL, REASONS, RUNS)

LEAD_COLUMNS = ("id", "first_touch_at", "is_spam", "first_touch_source", "first_touch_utm_medium",
                "first_touch_utm_source", "country", "tier", "owner_id", "priority")
VOLUME_COLUMNS = ("dimension", "value", "new_leads", "submissions", "repeat_submissions", "spam_leads",
                  "spam_submissions", "new_leads_prev", "new_leads_mom_pct", "new_leads_last_year",
                  "new_leads_yoy_pct")


@dataclass(frozen=True)
class VolumeInputs:
    """What the volume part of the report reads: the month's leads and touches, and the comparison months' leads."""

    leads: pd.DataFrame  # the leads of the month's touches (every lead first touched in the month is one)
    submissions: pd.DataFrame  # id, lead_id, submitted_at of the month's touches
    previous_leads: pd.DataFrame  # leads first touched in the month before
    last_year_leads: pd.DataFrame  # leads first touched in the same month a year before


@dataclass(frozen=True)
class ConversionInputs:
    """What the conversion part reads: cohort leads, their status changes before as_of, and their tasks."""

    leads: pd.DataFrame  # leads first touched from the oldest cohort month to the report month's end
    events: pd.DataFrame  # id, lead_id, event_type, occurred_at, to_status, reason (non-spam leads only)
    tasks: pd.DataFrame  # lead_id, kind, due_at, completed_at of the report month's non-spam leads


def _time(store: Store, column):
    # SQLite hands DATETIME text to a slow per-row parser; reading the text and parsing it once in pandas is far faster.
    return type_coerce(column, String()).label(column.name) if store.dialect == "sqlite" else column


def _frame(conn: Connection, stmt, times: Sequence[str] = ()) -> pd.DataFrame:
    result = conn.execute(stmt)
    columns = list(result.keys())
    # Plain tuples: handed Row objects, pandas probes each for attributes, which costs SQLAlchemy an exception apiece.
    frame = pd.DataFrame([tuple(row) for row in result], columns=columns)
    for name in times:
        frame[name] = utc(frame[name]) if len(frame) else pd.Series(dtype="datetime64[us, UTC]")
    return frame


def _lead_select(store: Store):
    columns = [_time(store, LEADS.c[name]) if name == "first_touch_at" else LEADS.c[name] for name in LEAD_COLUMNS]
    return select(*columns, REPS.c.name.label("owner_name")).select_from(
        LEADS.outerjoin(REPS, REPS.c.id == LEADS.c.owner_id)
    )


def _typed_leads(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        frame = pd.DataFrame({name: pd.Series(dtype="object") for name in [*LEAD_COLUMNS, "owner_name"]})
        frame["first_touch_at"] = pd.Series(dtype="datetime64[us, UTC]")
    return frame.astype({"id": "int64", "is_spam": "bool", "owner_id": "Int64"}).drop_duplicates("id")


def _touched(start: datetime, end: datetime):
    """Ids of the leads with a submission in [start, end) (the submitted_at index does the filtering)."""
    submitted = SUBMISSIONS.c.submitted_at
    return select(SUBMISSIONS.c.lead_id).where(submitted >= start, submitted < end)


def _first_touched(start: datetime, end: datetime):
    """The condition "first touched in [start, end)" on leads.

    A lead first touched in the window has its earliest submission there, so it is among the window's touched
    leads: that subquery runs on the submitted_at index and keeps the planner off a scan of every lead
    (first_touch_at has no index of its own).
    """
    first = LEADS.c.first_touch_at
    return and_(LEADS.c.id.in_(_touched(start, end)), first >= start, first < end)


def load_leads(conn: Connection, store: Store, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Leads first touched in [start, end), with the owner's name."""
    stmt = _lead_select(store).where(_first_touched(start.to_pydatetime(), end.to_pydatetime()))
    return _typed_leads(_frame(conn, stmt, ["first_touch_at"]))


def load_volume_inputs(store: Store, month: str) -> VolumeInputs:
    """Read the month's leads and submissions and the comparison months' leads in one snapshot."""
    start, end = (t.to_pydatetime() for t in month_bounds(month))
    submitted = SUBMISSIONS.c.submitted_at
    with store.engine.connect() as conn, conn.begin():
        # The leads first touched this month and those touching again this month: both have a touch this month.
        leads = _typed_leads(_frame(conn, _lead_select(store).where(LEADS.c.id.in_(_touched(start, end))),
                                    ["first_touch_at"]))
        sub_columns = [SUBMISSIONS.c.id, SUBMISSIONS.c.lead_id, _time(store, submitted)]
        submissions = _frame(conn, select(*sub_columns).where(submitted >= start, submitted < end), ["submitted_at"])
        previous = load_leads(conn, store, *month_bounds(previous_month(month)))
        last_year = load_leads(conn, store, *month_bounds(same_month_last_year(month)))
    submissions = submissions.astype({"id": "int64", "lead_id": "int64"}) if len(submissions) else submissions
    return VolumeInputs(leads=leads, submissions=submissions, previous_leads=previous, last_year_leads=last_year)


def load_conversion_inputs(store: Store, month: str, cohorts: Sequence[str], as_of: pd.Timestamp
                           ) -> ConversionInputs:
    """Read the first-touch cohorts' leads, their status changes before as_of and the month's tasks in one snapshot."""
    start, end = (t.to_pydatetime() for t in month_bounds(month))
    oldest = min(month_bounds(c)[0] for c in [month, *cohorts])
    with store.engine.connect() as conn, conn.begin():
        leads = load_leads(conn, store, oldest, month_bounds(month)[1])
        events = load_status_events(conn, store, oldest.to_pydatetime(), end, as_of)
        tasks = load_tasks(conn, store, start, end)
    return ConversionInputs(leads=leads, events=events, tasks=tasks)


def _cohort_join(table, start: datetime, end: datetime):
    """The table joined to non-spam leads first touched in [start, end): the window's touches drive the lookup."""
    return table.join(LEADS, and_(LEADS.c.id == table.c.lead_id, _first_touched(start, end),
                                  LEADS.c.is_spam == false()))


def load_status_events(conn: Connection, store: Store, start: datetime, end: datetime,
                       as_of: pd.Timestamp) -> pd.DataFrame:
    """Status changes (before as_of) of non-spam leads first touched in [start, end), details flattened in SQL."""
    details = EVENTS.c.details
    # Without statistics SQLite would walk every status change through the event_type index; `event_type || ''`
    # hides that index, so it starts from the cohort's leads (found through the window's touches) and reads their
    # events by lead_id.
    kind = EVENTS.c.event_type.concat("") if store.dialect == "sqlite" else EVENTS.c.event_type
    stmt = (
        select(EVENTS.c.id, EVENTS.c.lead_id, EVENTS.c.event_type, _time(store, EVENTS.c.occurred_at),
               details["to"].as_string().label("to_status"), details["reason"].as_string().label("reason"))
        .select_from(_cohort_join(EVENTS, start, end))
        .where(kind == "status_changed", EVENTS.c.occurred_at < as_of.to_pydatetime())
    )
    frame = _frame(conn, stmt, ["occurred_at"])
    return frame.astype({"id": "int64", "lead_id": "int64"}) if len(frame) else frame


def load_tasks(conn: Connection, store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """crm_tasks of non-spam leads first touched in [start, end), for the SLA."""
    stmt = (
        select(TASKS.c.lead_id, TASKS.c.kind, _time(store, TASKS.c.due_at), _time(store, TASKS.c.completed_at))
        .select_from(_cohort_join(TASKS, start, end))
    )
    return _frame(conn, stmt, ["due_at", "completed_at"])


def count_leads(store: Store, month: str) -> dict[str, int]:
    """A direct count of the leads first touched in a month, spam apart: the report must agree with it."""
    start, end = (t.to_pydatetime() for t in month_bounds(month))
    stmt = select(LEADS.c.is_spam, func.count()).where(_first_touched(start, end)).group_by(LEADS.c.is_spam)
    with store.engine.connect() as conn:
        counts = {bool(spam): int(n) for spam, n in conn.execute(stmt)}
    return {"new_leads": counts.get(False, 0), "spam_leads": counts.get(True, 0)}


def volume_history(store: Store, months: Sequence[str]) -> pd.DataFrame:
    """New leads (spam excluded, by first touch) by first-touch source for each month, counted in SQL month by month."""
    rows: list[tuple[str, str, int]] = []
    with store.engine.connect() as conn:
        for month in months:
            start, end = (t.to_pydatetime() for t in month_bounds(month))
            stmt = (select(LEADS.c.first_touch_source, func.count())
                    .where(_first_touched(start, end), LEADS.c.is_spam == false())
                    .group_by(LEADS.c.first_touch_source))
            rows.extend((month, str(source), int(n)) for source, n in conn.execute(stmt))
    frame = pd.DataFrame(rows, columns=["month", "source", "new_leads"])
    return frame.astype({"month": "str", "source": "str", "new_leads": "int64"}).sort_values(
        ["month", "source"], kind="stable").reset_index(drop=True)


# --- writes --------------------------------------------------------------------------------------------------


def _rows(frame: pd.DataFrame, month: str, rename: dict[str, str] | None = None) -> pd.DataFrame:
    out = frame.rename(columns=rename or {}).assign(month=month)
    return out


def write_report(store: Store, report: MonthlyReport, flow_run_id: str | None = None) -> dict[str, int]:
    """Replace the month's report rows in one transaction: delete what the month had, insert the new rows."""
    month = report.month
    volume = _rows(report.volume[list(VOLUME_COLUMNS)], month)
    funnel = _rows(report.funnel, month, {"group": "group_value"})
    reasons = _rows(report.reasons, month, {"group": "group_value"})
    run = {
        "month": month, "generated_at": report.generated_at.to_pydatetime(), "as_of": report.as_of.to_pydatetime(),
        "new_leads": report.total("new_leads"), "spam_leads": report.total("spam_leads"),
        "submissions": report.total("submissions"), "repeat_submissions": report.total("repeat_submissions"),
        "sla_eligible": int(report.sla["eligible"]), "sla_met": int(report.sla["met"]),
        "sla_rate": report.sla["rate"], "flow_run_id": flow_run_id, "summary": _json_safe(report.headline()),
    }
    with store.begin() as conn:
        for table in REPORT_TABLES:
            conn.execute(delete(table).where(table.c.month == month))
        for table, frame in ((VOLUME, volume), (FUNNEL, funnel), (REASONS, reasons)):
            if len(frame):
                columns = [c.name for c in table.columns if c.name != "id"]
                conn.execute(table.insert(), records(frame, columns))
        conn.execute(RUNS.insert(), [run])
    return {"report_lead_volume": len(volume), "report_funnel": len(funnel), "report_dq_reasons": len(reasons)}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_report_tables(store: Store, month: str) -> dict[str, pd.DataFrame]:
    """The stored report rows of a month (without row ids and run times), sorted, for comparing re-runs."""
    out: dict[str, pd.DataFrame] = {}
    with store.engine.connect() as conn:
        for table in REPORT_TABLES:
            columns = [c for c in table.columns if c.name not in ("id", "generated_at", "flow_run_id")]
            frame = _frame(conn, select(*columns).where(table.c.month == month))
            keys = [c.name for c in columns if c.name not in ("summary",)]
            out[table.name] = frame.sort_values(keys, kind="stable").reset_index(drop=True) if len(frame) else frame
    return out


# The report benchmark's CRM: the driver's executemany over fixed statements, a million leads in about a minute.
BENCH_INSERTS = {
    "sales_reps": "INSERT INTO sales_reps (id, email, name, territories, segments) VALUES (?, ?, ?, '[]', '[]')",
    "leads": "INSERT INTO leads (id, email, first_touch_at, first_touch_source, last_touch_at, last_touch_source, "
             "first_touch_utm_medium, first_touch_utm_source, country, tier, owner_id, priority, is_spam, status, "
             "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?)",
    "lead_submissions": "INSERT INTO lead_submissions (idempotency_key, lead_id, batch_id, source, submitted_at, "
                        "received_at, raw_payload) VALUES (?, ?, 'bench', ?, ?, ?, '{}')",
    "lead_created": "INSERT INTO lead_events (lead_id, event_type, occurred_at, batch_id, details) "
                    "VALUES (?, 'lead_created', ?, 'bench', '{}')",
    "status_changed": "INSERT INTO lead_events (lead_id, event_type, occurred_at, details) "
                      "VALUES (?, 'status_changed', ?, ?)",
    "crm_tasks": "INSERT INTO crm_tasks (idempotency_key, lead_id, owner_id, kind, status, due_at, details, "
                 "created_at, completed_at) VALUES (?, ?, ?, 'qualification', ?, ?, '{}', ?, ?)",
}


def fill_bench_crm(path: str | Path, rows: dict[str, Iterable[tuple]]) -> dict[str, int]:
    """Bulk-insert the report benchmark's rows (BENCH_INSERTS' parameter order) into a migrated SQLite file.

    Returns the row count of leads, lead_submissions, lead_events and crm_tasks afterwards.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        for name, statement in BENCH_INSERTS.items():
            if name in rows:
                conn.executemany(statement, rows[name])
        conn.commit()
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("leads", "lead_submissions", "lead_events", "crm_tasks")}
    finally:
        conn.close()


def latest_first_touch_month(store: Store) -> str | None:
    """The UTC month (YYYY-MM) of the newest first touch among non-spam leads, None without leads.

    `leadflow demo` reports on it: the demo's history ends months before today, so last month's report is empty.
    """
    stmt = select(func.max(LEADS.c.first_touch_at)).where(LEADS.c.is_spam.is_(False))
    with store.engine.connect() as conn:
        latest = conn.execute(stmt).scalar_one_or_none()
    if latest is None:
        return None
    return pd.Timestamp(latest).tz_localize("UTC").strftime("%Y-%m") if pd.Timestamp(latest).tzinfo is None \
        else pd.Timestamp(latest).tz_convert("UTC").strftime("%Y-%m")
