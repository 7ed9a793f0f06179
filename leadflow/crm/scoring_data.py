"""What the scoring review and model training read: scored leads, their early submissions, their status history."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Text, bindparam, cast, select

from leadflow.crm.schema import Lead, LeadEvent, LeadModelScore, LeadSubmission
from leadflow.crm.store import Store, read_in, utc

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
EVENTS = LeadEvent.__table__
MODEL_SCORES = LeadModelScore.__table__

# Company firmographics (enrichment) describe the company, not the lead's progress: taken as stored.
LEAD_COLUMNS = ("id", "email_domain", "industry", "employee_count", "revenue_band", "country", "status",
                "score", "tier", "score_policy_version", "score_explanation", "scored_at", "first_touch_at",
                "created_at")
TIME_COLUMNS = ("scored_at", "first_touch_at", "created_at")
READ_ROWS = 100_000


def _frame(rows: list[tuple], columns: Sequence[str]) -> pd.DataFrame:
    data = zip(*rows, strict=True) if rows else ([] for _ in columns)
    return pd.DataFrame(dict(zip(columns, map(list, data), strict=True)))


def review_leads(store: Store, lead_ids: Sequence[int] | None = None, since: datetime | None = None) -> pd.DataFrame:
    """Non-spam leads (these ids, or all first touched since `since`) with their stored score and firmographics."""
    stmt = select(*[LEADS.c[c] for c in LEAD_COLUMNS]).where(LEADS.c.is_spam.is_(False))
    if since is not None:
        stmt = stmt.where(LEADS.c.first_touch_at >= since)
    with store.engine.connect() as conn:
        if lead_ids is None:
            result = conn.execute(stmt.order_by(LEADS.c.id))
            rows = result.cursor.fetchall()
            result.close()
        else:
            rows = read_in(conn, stmt.where(LEADS.c.id.in_(bindparam("values", expanding=True))),
                           sorted({int(i) for i in lead_ids}), raw=True)
    frame = _frame(rows, LEAD_COLUMNS).sort_values("id", kind="stable").reset_index(drop=True)
    frame["id"] = pd.to_numeric(frame["id"]).astype("int64")
    for name in TIME_COLUMNS:
        frame[name] = utc(frame[name])
    for name in ("score", "employee_count"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Float64" if name == "score" else "Int64")
    return frame


def _field_name(key: str, key_of: dict[str, str]) -> str:
    name = key_of.get(key)
    if name is None:
        name = key_of[key] = "_".join("".join(c if c.isalnum() else " " for c in str(key).lower()).split())
    return name


def _as_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _payload_fields(texts: list[Any], wanted: frozenset[str], key_of: dict[str, str]) -> pd.DataFrame:
    """The wanted fields of each raw payload as text (JSON text on SQLite, already parsed by some drivers).

    Arrow's JSON reader parses a block of payloads in C++; a block it refuses (a field that is a number in one
    row and text in another, a nested value) is parsed row by row.
    """
    columns = sorted(wanted)
    if texts and all(isinstance(t, str) for t in texts):
        import pyarrow as pa
        import pyarrow.json as pj

        try:
            table = pj.read_json(io.BytesIO("\n".join(texts).encode("utf-8")),
                                 read_options=pj.ReadOptions(block_size=1 << 26))
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows == len(texts):
            out = pd.DataFrame(index=range(len(texts)), columns=columns, dtype=object)
            for key, column in zip(table.column_names, table.columns, strict=True):
                name = _field_name(key, key_of)
                if name not in wanted or pa.types.is_nested(column.type):
                    continue
                if pa.types.is_boolean(column.type):
                    values = pd.Series(column.to_pandas(), dtype="boolean").map({True: "true", False: "false"})
                else:
                    values = pd.Series(column.cast(pa.string()).to_pandas())
                out[name] = out[name].fillna(values.astype(object).where(values.notna(), None))
            return out
    rows = []
    for text in texts:
        payload = json.loads(text) if isinstance(text, str | bytes) else (text or {})
        fields: dict[str, Any] = {}
        for key, value in payload.items():
            name = _field_name(key, key_of)
            if name in wanted and value is not None and not isinstance(value, dict | list):
                fields.setdefault(name, _as_text(value))
        rows.append(fields)
    return pd.DataFrame(rows, index=range(len(texts)), columns=columns, dtype=object)


def early_submissions(store: Store, cutoffs: pd.Series, fields: Sequence[str]) -> pd.DataFrame:
    """Each lead's submissions made up to its cutoff (lead id -> UTC time), with the named raw-payload fields.

    Payload keys are matched by name in lower case with separators as '_' ("Page Views" is page_views). A
    submission after its lead's cutoff is never read into the frame: that is what keeps later touches out.
    """
    wanted = frozenset(fields)
    columns = ["lead_id", "submitted_at", "source", "message"]
    stmt = select(SUBMISSIONS.c.lead_id, SUBMISSIONS.c.submitted_at, SUBMISSIONS.c.source, SUBMISSIONS.c.message,
                  cast(SUBMISSIONS.c.raw_payload, Text))
    ids = cutoffs.index.to_numpy(dtype=np.int64)
    limit = np.full(int(ids.max()) + 1 if len(ids) else 1, np.iinfo(np.int64).min, dtype=np.int64)
    # Both sides in nanoseconds: parsed times may come in seconds or microseconds (pandas keeps the unit).
    limit[ids] = pd.to_datetime(cutoffs, utc=True).dt.as_unit("ns").array.asi8
    parts: list[pd.DataFrame] = []
    key_of: dict[str, str] = {}
    with store.engine.connect() as conn:
        selected = _ids_filter(conn, stmt, ids)
        for rows in selected:
            frame = _frame(rows, [*columns, "payload"])
            frame["lead_id"] = pd.to_numeric(frame["lead_id"]).astype("int64")
            frame["submitted_at"] = utc(frame["submitted_at"])
            known = frame["lead_id"].to_numpy() < len(limit)
            frame = frame.loc[known]
            keep = frame["submitted_at"].dt.as_unit("ns").array.asi8 <= limit[frame["lead_id"].to_numpy()]
            frame = frame.loc[keep].reset_index(drop=True)
            extracted = _payload_fields(frame.pop("payload").tolist(), wanted, key_of).set_axis(frame.index)
            parts.append(pd.concat([frame, extracted], axis=1))
    if not parts:
        return pd.DataFrame(columns=[*columns, *sorted(wanted)])
    return pd.concat(parts, ignore_index=True)


def _ids_filter(conn: Connection, stmt, ids: np.ndarray):
    """Row blocks of `stmt` for these leads: the whole table in id order when that is most of it, else IN-lists."""
    total = conn.execute(select(LEADS.c.id).order_by(LEADS.c.id.desc()).limit(1)).scalar() or 0
    if len(ids) > 10_000 or len(ids) * 4 > total:
        result = conn.execute(stmt)
        while rows := result.cursor.fetchmany(READ_ROWS):
            yield rows
        result.close()
        return
    yield read_in(conn, stmt.where(SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True))),
                  ids.tolist(), raw=True)


def status_history(store: Store, lead_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Status changes to converted or disqualified (lead id, time, status), oldest first."""
    to = EVENTS.c.details["to"].as_string()
    stmt = select(EVENTS.c.lead_id, EVENTS.c.occurred_at, to).where(
        EVENTS.c.event_type == "status_changed", to.in_(["converted", "disqualified"]))
    with store.engine.connect() as conn:
        if lead_ids is None:
            result = conn.execute(stmt)
            rows = result.cursor.fetchall()
            result.close()
        else:
            rows = read_in(conn, stmt.where(EVENTS.c.lead_id.in_(bindparam("values", expanding=True))),
                           sorted({int(i) for i in lead_ids}), raw=True)
    frame = _frame(rows, ["lead_id", "occurred_at", "status"])
    frame["lead_id"] = pd.to_numeric(frame["lead_id"]).astype("int64")
    frame["occurred_at"] = utc(frame["occurred_at"])
    return frame.sort_values(["occurred_at", "lead_id"], kind="stable").reset_index(drop=True)


def write_model_scores(store: Store, conn: Connection, scores: pd.DataFrame) -> None:
    """Store each lead's model probability, top features and model version, replacing its previous model score."""
    if scores.empty:
        return
    ids = [int(i) for i in scores["lead_id"]]
    conn.execute(MODEL_SCORES.delete().where(MODEL_SCORES.c.lead_id.in_(bindparam("ids", expanding=True))),
                 {"ids": ids})
    columns = ["lead_id", "model_version", "probability", "top_features", "scored_at"]
    store.bulk(conn, MODEL_SCORES.insert().values({c: bindparam(c) for c in columns}), scores[columns])


def model_scores(store: Store, lead_ids: Sequence[int]) -> pd.DataFrame:
    """The stored model scores of these leads."""
    columns = ["lead_id", "model_version", "probability", "top_features", "scored_at"]
    with store.engine.connect() as conn:
        rows = read_in(conn, select(*[MODEL_SCORES.c[c] for c in columns]).where(
            MODEL_SCORES.c.lead_id.in_(bindparam("values", expanding=True))), sorted({int(i) for i in lead_ids}))
    return _frame(rows, columns)


# The scoring benchmark's CRM: the driver's executemany over fixed statements (bench/scoring_bench.py).
BENCH_INSERTS = {
    "leads": "INSERT INTO leads (id, email, email_domain, industry, employee_count, country, status, score, tier, "
             "score_policy_version, score_explanation, scored_at, first_touch_at, first_touch_source, last_touch_at, "
             "last_touch_source, created_at, updated_at, is_spam) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
    "lead_submissions": "INSERT INTO lead_submissions (idempotency_key, lead_id, batch_id, source, submitted_at, "
                        "received_at, message, raw_payload) VALUES (?, ?, 'bench', ?, ?, ?, ?, ?)",
    "status_changed": "INSERT INTO lead_events (lead_id, event_type, occurred_at, details) "
                      "VALUES (?, 'status_changed', ?, ?)",
}


def fill_scoring_bench_crm(path: str, rows: dict[str, Any]) -> dict[str, int]:
    """Bulk-insert the scoring benchmark's rows (BENCH_INSERTS' parameter order) into a migrated SQLite file."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        for name, statement in BENCH_INSERTS.items():
            if name in rows:
                conn.executemany(statement, rows[name])
        conn.commit()
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("leads", "lead_submissions", "lead_events")}
    finally:
        conn.close()
