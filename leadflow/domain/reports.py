"""Monthly report arithmetic: lead volume, month-over-month and year-over-year changes, funnel, SLA, reconciliation.

Pure pandas over frames read from the CRM tables (``leads``, ``lead_submissions``, ``crm_tasks``, ``lead_events``);
no Prefect and no database here. Months are ``'YYYY-MM'`` strings and every time is compared in UTC.

A lead is new in the month of its first touch (``first_touch_at``: its earliest submission's ``submitted_at``), not in
the month its row was written, so backfilled or later-imported history lands in its own months.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadflow.domain.channels import normalize_channels, normalize_utm

MAIN_STAGES: tuple[str, ...] = ("new", "working", "qualified", "discovery_call_booked", "converted")
EXIT_STAGES: tuple[str, ...] = ("disqualified", "recycled")
DIMENSIONS: tuple[str, ...] = ("source", "channel", "country", "tier", "owner")
COUNT_COLUMNS: tuple[str, ...] = ("new_leads", "submissions", "repeat_submissions", "spam_leads", "spam_submissions")
SLA_PRIORITIES: frozenset[str] = frozenset({"P1", "P2"})
QUALIFICATION_TASK_KINDS: frozenset[str] = frozenset({"qualification", "qualify"})
FIRST_TOUCH = "first_touch_at"  # the leads column a lead's month is read from

TOTAL = ("total", "all")
NONE_LABEL = "(none)"
UNKNOWN_LABEL = "(unknown)"
UNASSIGNED_LABEL = "(unassigned)"
STATUS_CHANGED = "status_changed"
NAT = np.iinfo(np.int64).min  # NaT seen as int64 microseconds
NEVER = np.iinfo(np.int64).max  # "no such time" when taking minimums
MICROS_PER_HOUR = 3_600_000_000

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_STAGE_RANK = {stage: rank for rank, stage in enumerate(MAIN_STAGES)}
_STATUS_CODE = {status: code for code, status in enumerate((*MAIN_STAGES, *EXIT_STAGES))}


class ReconciliationError(ValueError):
    """The report's totals disagree with an independent count, so it must not be published."""

    def __init__(self, message: str, *, report_total: int | None, direct_total: int) -> None:
        super().__init__(message)
        self.report_total = report_total
        self.direct_total = direct_total


@dataclass(frozen=True)
class FunnelReport:
    """The funnel of one first-touch cohort: stage counts and timings, and why leads were disqualified."""

    cohort_month: str
    by: str | None
    stages: pd.DataFrame  # group, stage, reached, passed, conversion_to_next, median_hours_to_next
    disqualification_reasons: pd.DataFrame  # group, reason, leads, share


# --- months --------------------------------------------------------------------------------------------------


def _parse_month(month: str) -> tuple[int, int]:
    match = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if match is None:
        raise ValueError(f"month must be a 'YYYY-MM' string such as '2025-01', got {month!r}")
    year, number = int(match[1]), int(match[2])
    if not 1 <= number <= 12:
        raise ValueError(f"month must be a 'YYYY-MM' string with a month from 01 to 12, got {month!r}")
    # Stay inside the range every datetime unit pandas may hand us can represent.
    if not 1970 <= year <= 2200:
        raise ValueError(f"month {month!r} has a year outside 1970..2200")
    return year, number


def _format_month(year: int, number: int) -> str:
    return f"{year:04d}-{number:02d}"


def month_bounds(month: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The half-open UTC interval [start, end) that a 'YYYY-MM' month covers."""
    year, number = _parse_month(month)
    start = pd.Timestamp(year=year, month=number, day=1, tz="UTC")
    end = pd.Timestamp(year=year + number // 12, month=number % 12 + 1, day=1, tz="UTC")
    return start, end


def previous_month(month: str) -> str:
    """The month before a 'YYYY-MM' month, for month-over-month changes."""
    year, number = _parse_month(month)
    return _format_month(year - 1, 12) if number == 1 else _format_month(year, number - 1)


def same_month_last_year(month: str) -> str:
    """The same month one year earlier, for year-over-year changes."""
    year, number = _parse_month(month)
    return _format_month(year - 1, number)


# --- shared helpers ------------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Collection[str], name: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{name} frame lacks column(s) {', '.join(missing)}")


def _utc(values: pd.Series) -> pd.Series:
    # SQLite hands datetimes back naive; they are stored as UTC, so naive means UTC.
    return pd.to_datetime(values, utc=True)


def _as_utc(moment: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _in_window(times: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return ((times >= start) & (times < end)).fillna(False).astype(bool)


def _flag(values: pd.Series) -> pd.Series:
    return values.astype("boolean").fillna(False).astype(bool)


def _text(values: pd.Series) -> pd.Series:
    """Trimmed strings with blanks as NA, so '' and None read the same."""
    text = values.astype("string").str.strip()
    return text.where(text.str.len().fillna(0) > 0)


def _positions(ids: pd.Index, values: pd.Series) -> np.ndarray:
    """Where each value sits in ids, -1 where absent: a dense lookup table when ids are a compact integer range."""
    if len(ids) and ids.dtype.kind in "iu" and values.dtype.kind in "iu":
        low, high = int(ids.min()), int(ids.max())
        # Leads of one month get neighbouring ids, so the table is about cohort-sized; fall back to hashing if not.
        if high - low <= 16 * len(ids) + 1_000_000:
            table = np.full(high - low + 1, -1, dtype=np.intp)
            table[ids.to_numpy(dtype="int64") - low] = np.arange(len(ids))
            raw = values.to_numpy(dtype="int64", na_value=low - 1)
            inside = (raw >= low) & (raw <= high)
            found = np.full(len(raw), -1, dtype=np.intp)
            found[inside] = table[raw[inside] - low]
            return found
    return ids.get_indexer(values)


def _micros(values: pd.Series) -> np.ndarray:
    """UTC times as int64 microseconds since the epoch, so the heavy lifting stays in numpy (NaT becomes NAT)."""
    return _utc(values).dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")


def _tiebreak(frame: pd.DataFrame) -> np.ndarray:
    """An int64 rank of each row's id (its row number without one), to order rows with equal times."""
    if "id" not in frame.columns:
        return np.arange(len(frame), dtype=np.int64)
    if frame["id"].dtype.kind in "iu":
        return frame["id"].to_numpy(dtype="int64", na_value=NEVER)
    return pd.factorize(frame["id"], sort=True)[0].astype(np.int64)


def _unique_ids(leads: pd.DataFrame) -> pd.Index:
    ids = pd.Index(leads["id"])
    if not ids.is_unique:
        raise ValueError("leads frame has duplicate ids")
    return ids


def _dimension_labels(leads: pd.DataFrame, dimension: str) -> pd.Series:
    """The value each lead reports under one dimension; never missing, so no lead drops out of a breakdown."""
    if dimension == "source":
        # Stored channels read through today's vocabulary: rows written under older names report with the new.
        return normalize_channels(_text(leads["first_touch_source"])).fillna(UNKNOWN_LABEL)
    if dimension == "channel":
        medium = normalize_utm(_text(leads["first_touch_utm_medium"]), "utm_medium")
        source = normalize_utm(_text(leads["first_touch_utm_source"]), "utm_source")
        both = medium.fillna(NONE_LABEL) + " / " + source.fillna(NONE_LABEL)
        return both.where(medium.notna() | source.notna(), NONE_LABEL)
    if dimension in ("country", "tier"):
        return _text(leads[dimension]).fillna(UNKNOWN_LABEL)
    if dimension == "owner":
        return _owner_labels(leads)
    raise ValueError(f"unknown dimension {dimension!r}; expected one of {', '.join(DIMENSIONS)}")


def history_by_channel(history: pd.DataFrame) -> pd.DataFrame:
    """Monthly new leads by first-touch source (month, source, new_leads) with stored channels read through the
    channel vocabulary, so a channel stored under a former name or spelling is one line of the chart."""
    if history.empty:
        return history
    source = normalize_channels(_text(history["source"])).fillna(UNKNOWN_LABEL).astype("str")
    merged = history.assign(source=source).groupby(["month", "source"], as_index=False, sort=True)["new_leads"].sum()
    return merged.astype({"new_leads": "int64"}).reset_index(drop=True)


def _dimension_columns(dimension: str, leads: pd.DataFrame) -> set[str]:
    if dimension == "source":
        return {"first_touch_source"}
    if dimension == "channel":
        return {"first_touch_utm_medium", "first_touch_utm_source"}
    if dimension == "owner":
        return set() if {"owner_name", "owner_id"} & set(leads.columns) else {"owner_id"}
    if dimension in DIMENSIONS:
        return {dimension}
    raise ValueError(f"unknown dimension {dimension!r}; expected one of {', '.join(DIMENSIONS)}")


def _owner_labels(leads: pd.DataFrame) -> pd.Series:
    names = _text(leads["owner_name"]) if "owner_name" in leads.columns else pd.Series(pd.NA, index=leads.index,
                                                                                          dtype="string")
    if "owner_id" in leads.columns:
        ids = pd.to_numeric(leads["owner_id"]).astype("Int64")
        # A rep id whose name did not join (rep deleted, names not attached) still reads as someone.
        names = names.fillna("rep " + ids.astype("string"))
    return names.fillna(UNASSIGNED_LABEL)


def with_owner_names(leads: pd.DataFrame, reps: pd.DataFrame) -> pd.DataFrame:
    """Leads with an ``owner_name`` column joined from ``sales_reps`` (id, name), for the owner breakdown."""
    _require(leads, {"owner_id"}, "leads")
    _require(reps, {"id", "name"}, "reps")
    names = pd.Series(reps["name"].to_numpy(), index=pd.to_numeric(reps["id"]).astype("int64"))
    owner = pd.to_numeric(leads["owner_id"]).astype("Int64")
    return leads.assign(owner_name=owner.map(names).astype("string"))


def _ordered(frame: pd.DataFrame, dimensions: Sequence[str]) -> pd.DataFrame:
    """Total first, then dimensions in the asked order, biggest values first; ties by name so output is stable."""
    order = {name: rank for rank, name in enumerate(["total", *dimensions])}
    rank = frame["dimension"].map(order).fillna(len(order)).astype(int)
    by = ["_rank", *[c for c in ("new_leads", "submissions") if c in frame.columns], "value"]
    return (
        frame.assign(_rank=rank)
        .sort_values(by, ascending=[True, *[False] * (len(by) - 2), True], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


# --- lead volume ---------------------------------------------------------------------------------------------


def lead_volume(
    leads: pd.DataFrame,
    submissions: pd.DataFrame,
    month: str,
    dimensions: Sequence[str] = DIMENSIONS,
) -> pd.DataFrame:
    """New leads, submissions and repeat submissions of one month, in total and by each dimension (long format)."""
    start, end = month_bounds(month)
    dimensions = list(dict.fromkeys(dimensions))
    needed = {"id", FIRST_TOUCH, "is_spam"}.union(*(_dimension_columns(d, leads) for d in dimensions))
    _require(leads, needed, "leads")
    _require(submissions, {"lead_id", "submitted_at"}, "submissions")
    ids = _unique_ids(leads)

    low, high = start.value // 1000, end.value // 1000
    first_touch = _micros(leads[FIRST_TOUCH])
    spam = _flag(leads["is_spam"]).to_numpy()
    position = _positions(ids, submissions["lead_id"])
    if (position < 0).any():
        raise ValueError(
            f"{int((position < 0).sum())} submission(s) belong to leads missing from the leads frame; "
            "pass every lead the submissions refer to"
        )
    submitted = _micros(submissions["submitted_at"])

    # A lead's first submission is its earliest, ties broken by id, so the answer does not depend on row order.
    tiebreak = _tiebreak(submissions)
    timed = submitted != NAT
    first_at = np.full(len(leads), NEVER, dtype=np.int64)
    np.minimum.at(first_at, position[timed], submitted[timed])
    at_first = timed & (submitted == first_at[position])
    first_id = np.full(len(leads), NEVER, dtype=np.int64)
    np.minimum.at(first_id, position[at_first], tiebreak[at_first])
    is_first = at_first & (tiebreak == first_id[position])
    # A lead first touched before the month repeats itself with every touch this month, even if the frame lacks
    # its earlier submissions.
    touched_before = (first_touch != NAT) & (first_touch < low)
    repeat = touched_before[position] | ~is_first

    lead_rows = np.flatnonzero((first_touch >= low) & (first_touch < high))
    sub_in_month = (submitted >= low) & (submitted < high)
    sub_rows = position[sub_in_month]
    lead_spam, sub_spam, repeat = spam[lead_rows], spam[sub_rows], repeat[sub_in_month]
    no_leads, no_subs = np.zeros(len(lead_rows), dtype=bool), np.zeros(len(sub_rows), dtype=bool)
    # One row per counted lead and per counted submission, so every breakdown is a plain group-by sum.
    counts = np.column_stack([
        np.concatenate([~lead_spam, no_subs]),  # new_leads
        np.concatenate([no_leads, ~sub_spam]),  # submissions
        np.concatenate([no_leads, ~sub_spam & repeat]),  # repeat_submissions
        np.concatenate([lead_spam, no_subs]),  # spam_leads
        np.concatenate([no_leads, sub_spam]),  # spam_submissions
    ]).astype(np.int64)

    totals = dict(zip(COUNT_COLUMNS, counts.sum(axis=0).tolist(), strict=True))
    parts = [pd.DataFrame([{"dimension": TOTAL[0], "value": TOTAL[1], **totals}])]
    # Label each counted lead once, however many submissions it has.
    unique_rows, inverse = np.unique(np.concatenate([lead_rows, sub_rows]), return_inverse=True)
    counted = leads.iloc[unique_rows]
    for dimension in dimensions:
        codes, names = pd.factorize(_dimension_labels(counted, dimension).to_numpy(), sort=True)
        per_row = codes[inverse]
        sums = {column: np.bincount(per_row, weights=counts[:, i], minlength=len(names)).astype(np.int64)
                for i, column in enumerate(COUNT_COLUMNS)}
        parts.append(pd.DataFrame({"dimension": dimension, "value": names, **sums}))
    volume = pd.concat(parts, ignore_index=True)[["dimension", "value", *COUNT_COLUMNS]]
    volume = volume.astype({"dimension": "str", "value": "str", **dict.fromkeys(COUNT_COLUMNS, "int64")})
    return _ordered(volume, dimensions)


def with_changes(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    last_year: pd.DataFrame | None,
    metrics: Sequence[str] = ("new_leads",),
) -> pd.DataFrame:
    """Volume with last month's and last year's figures beside it and the % change (NA where the base is 0)."""
    keys = ["dimension", "value"]
    _require(current, [*keys, *metrics], "current")
    merged = current
    for suffix, other, name in (("prev", previous, "previous"), ("last_year", last_year, "last_year")):
        renamed = {metric: f"{metric}_{suffix}" for metric in metrics}
        if other is None:
            # No comparison month at all (before we had data) is unknown, not zero.
            merged = merged.assign(**{column: pd.array([pd.NA] * len(merged), dtype="Int64")
                                      for column in renamed.values()})
            continue
        _require(other, [*keys, *metrics], name)
        # Outer join: a value that vanished this month must still show its drop to zero.
        merged = merged.merge(other[[*keys, *metrics]].rename(columns=renamed), on=keys, how="outer")
        for column in renamed.values():
            merged[column] = merged[column].fillna(0).astype("Int64")
    # Rows only the comparison months had are real zeros this month.
    for column in dict.fromkeys([*metrics, *(c for c in COUNT_COLUMNS if c in current.columns)]):
        merged[column] = merged[column].fillna(0).astype("int64")
    for metric in metrics:
        now = merged[metric].astype("Float64")
        for suffix, pct in (("prev", "mom_pct"), ("last_year", "yoy_pct")):
            base = merged[f"{metric}_{suffix}"].astype("Float64")
            merged[f"{metric}_{pct}"] = ((now - base) / base * 100).where(base > 0)
    # Keep each metric's comparison columns together, in the order a reader scans them.
    extra = [f"{metric}_{suffix}" for metric in metrics for suffix in ("prev", "mom_pct", "last_year", "yoy_pct")]
    merged = merged[[*(c for c in merged.columns if c not in extra), *extra]]
    seen = [frame["dimension"] for frame in (current, previous, last_year) if frame is not None]
    dimensions = [d for d in dict.fromkeys(pd.concat(seen).tolist()) if d != TOTAL[0]]
    return _ordered(merged, dimensions)


# --- funnel --------------------------------------------------------------------------------------------------


def _loads(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes):
        parsed = json.loads(value)
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _status_code(value: Any) -> int:
    """Stage code of one raw status value (-1 outside the vocabulary); case and stray spaces do not matter."""
    return _STATUS_CODE.get(str(value).strip().lower(), -1) if isinstance(value, str) else -1


@dataclass(frozen=True)
class _Changes:
    """Status changes of a set of leads as parallel arrays."""

    pos: np.ndarray  # index into the lead ids asked for
    at: np.ndarray  # int64 microseconds since the epoch, UTC
    stage: np.ndarray  # code in _STATUS_CODE, -1 for anything else
    order: np.ndarray  # event id (or row) to break ties between equal times
    reason: np.ndarray  # objects; filled for disqualifications only

    def take(self, rows: np.ndarray) -> _Changes:
        """The changes at these rows."""
        return _Changes(self.pos[rows], self.at[rows], self.stage[rows], self.order[rows], self.reason[rows])


def _status_changes(events: pd.DataFrame, lead_ids: pd.Index, as_of: Any = None) -> _Changes:
    """Status changes of these leads, read from ``details`` (dict or JSON text) or flattened columns."""
    # The store may flatten details into to_status and reason columns (SQL JSON operators); that skips parsing
    # millions of dicts in Python, the one slow step left.
    _require(events, {"lead_id", "event_type", "occurred_at"}, "events")
    flat = "to_status" in events.columns
    if not flat:
        _require(events, {"details"}, "events")
    pos = _positions(lead_ids, events["lead_id"])
    is_change = events["event_type"].eq(STATUS_CHANGED).fillna(False).to_numpy(dtype=bool)
    rows = np.flatnonzero(is_change & (pos >= 0))
    at = _micros(events["occurred_at"].iloc[rows])
    keep = at != NAT
    if as_of is not None:
        keep &= at < _as_utc(as_of).value // 1000
    rows, at = rows[keep], at[keep]
    if flat:
        codes, uniques = pd.factorize(events["to_status"].iloc[rows])
        stage = np.array([*(_status_code(value) for value in uniques), -1], dtype=np.int8)[codes]
    else:
        details = events["details"].to_numpy(dtype=object)[rows]
        # Fast path for the usual clean dicts; anything else (JSON text, odd casing) is sorted out per row below.
        exact = [_STATUS_CODE.get(d.get("to"), -2) if d.__class__ is dict else -2 for d in details]
        stage = np.array(exact, dtype=np.int8)
        odd = np.flatnonzero(stage == -2)
        stage[odd] = [_status_code(_loads(details[i]).get("to")) for i in odd]
    # Only disqualifications need a reason; reading it for every event would double the parsing cost.
    reason = np.full(len(rows), None, dtype=object)
    dq = np.flatnonzero(stage == _STATUS_CODE["disqualified"])
    if flat and "reason" in events.columns:
        reason[dq] = events["reason"].iloc[rows[dq]].to_numpy(dtype=object)
    elif not flat:
        reason[dq] = [_loads(d).get("reason") for d in details[dq]]
    return _Changes(pos[rows], at, stage, _tiebreak(events)[rows], reason)


def _na_floats(n: int) -> pd.arrays.FloatingArray:
    return pd.array([pd.NA] * n, dtype="Float64")


def funnel(
    events: pd.DataFrame,
    leads: pd.DataFrame,
    cohort_month: str,
    by: str | None = None,
    *,
    as_of: pd.Timestamp | None = None,
) -> FunnelReport:
    """The funnel of leads first touched in a month (spam excluded), rebuilt from the event log, not current status."""
    # as_of drops events at or after that moment, so re-running an old month's report reproduces its numbers.
    start, end = month_bounds(cohort_month)
    needed = {"id", FIRST_TOUCH, "is_spam"} | (_dimension_columns(by, leads) if by is not None else set())
    _require(leads, needed, "leads")
    _unique_ids(leads)
    first_touch = _utc(leads[FIRST_TOUCH])
    cohort = leads.loc[_in_window(first_touch, start, end) & ~_flag(leads["is_spam"])]
    ids = pd.Index(cohort["id"])
    n = len(cohort)
    if by is None:
        # The whole cohort is always reported, even when it is empty: zero leads is an answer.
        group_codes, group_names = np.zeros(n, dtype=np.intp), np.array(["all"], dtype=object)
    else:
        group_codes, group_names = pd.factorize(_dimension_labels(cohort, by).to_numpy(), sort=True)
    n_groups = len(group_names)

    changes = _status_changes(events, ids, as_of)
    entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    entered: dict[str, np.ndarray] = {}
    for name, code in _STATUS_CODE.items():
        chosen = changes.stage == code
        stage_pos, stage_at = changes.pos[chosen], changes.at[chosen]
        if name == "new":
            # Every lead enters 'new' at its first touch, with or without a status event saying so.
            stage_pos = np.concatenate([np.arange(n), stage_pos])
            stage_at = np.concatenate([_micros(first_touch.loc[cohort.index]), stage_at])
        entries[name] = (stage_pos, stage_at)
        entered[name] = np.zeros(n, dtype=bool)
        entered[name][stage_pos] = True

    # Passing a stage means entering it or any later main stage, so skipped stages still count as passed.
    passed: dict[str, np.ndarray] = {}
    later = np.zeros(n, dtype=bool)
    for name in reversed(MAIN_STAGES):
        later = later | entered[name]
        passed[name] = later

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(group_codes[mask], minlength=n_groups)

    frames = []
    for rank, name in enumerate((*MAIN_STAGES, *EXIT_STAGES)):
        is_main = name in _STAGE_RANK
        passed_n = pd.array(count(passed[name]) if is_main else [pd.NA] * n_groups, dtype="Int64")
        conversion, hours = _na_floats(n_groups), _na_floats(n_groups)
        if is_main and rank + 1 < len(MAIN_STAGES):
            following = MAIN_STAGES[rank + 1]
            base = passed_n.astype("Float64")
            conversion = pd.Series(pd.array(count(passed[following]), dtype="Float64") / base).where(base > 0).array
            hours = _median_hours(entries[name], entries[following], n, group_codes, n_groups)
        frames.append(pd.DataFrame({
            "group": group_names, "stage": name, "reached": count(entered[name]), "passed": passed_n,
            "conversion_to_next": conversion, "median_hours_to_next": hours, "_order": rank,
        }))
    stages = (
        pd.concat(frames, ignore_index=True)
        .sort_values(["group", "_order"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
        .astype({"group": "str", "stage": "str", "reached": "int64"})
    )
    reasons = _disqualification_reasons(changes, group_codes, group_names)
    return FunnelReport(cohort_month=cohort_month, by=by, stages=stages, disqualification_reasons=reasons)


def _median_hours(
    this: tuple[np.ndarray, np.ndarray],
    following: tuple[np.ndarray, np.ndarray],
    n: int,
    group_codes: np.ndarray,
    n_groups: int,
) -> pd.arrays.FloatingArray:
    """Per group, the median hours from entering a stage to first entering the next one."""
    # A lead worked, recycled and worked again is timed from its last entry before it moved on, so months in nurture
    # do not count as time to convert; leads that never entered both stages (or entered them out of order) drop out.
    (this_pos, this_at), (next_pos, next_at) = this, following
    first_next = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(first_next, next_pos, next_at)
    next_at_of_entry = first_next[this_pos]
    before_next = (this_at <= next_at_of_entry) & (next_at_of_entry != NEVER)
    last_entry = np.full(n, NAT, dtype=np.int64)
    np.maximum.at(last_entry, this_pos[before_next], this_at[before_next])
    timed = np.flatnonzero(last_entry != NAT)
    if not len(timed):
        return _na_floats(n_groups)
    hours = (first_next[timed] - last_entry[timed]) / MICROS_PER_HOUR
    medians = pd.Series(hours).groupby(group_codes[timed]).median().reindex(range(n_groups))
    return pd.array(medians.to_numpy(), dtype="Float64")


def _disqualification_reasons(changes: _Changes, group_codes: np.ndarray, group_names: np.ndarray) -> pd.DataFrame:
    """Disqualified leads by the reason of their latest disqualification, so reasons add up to the leads."""
    columns = ["group", "reason", "leads", "share"]
    dq = changes.take(np.flatnonzero(changes.stage == _STATUS_CODE["disqualified"]))
    ordered = np.lexsort((dq.order, dq.at, dq.pos))
    pos = dq.pos[ordered]
    latest = ordered[np.append(pos[1:] != pos[:-1], True)] if len(pos) else ordered
    if not len(latest):
        return pd.DataFrame({"group": pd.Series(dtype="str"), "reason": pd.Series(dtype="str"),
                             "leads": pd.Series(dtype="int64"), "share": pd.Series(dtype="Float64")})[columns]
    table = pd.DataFrame({
        "group": group_names[group_codes[dq.pos[latest]]],
        "reason": _text(pd.Series(dq.reason[latest], dtype=object)).fillna(NONE_LABEL).to_numpy(),
    })
    counts = table.value_counts(["group", "reason"]).rename("leads").reset_index()
    totals = counts.groupby("group")["leads"].transform("sum")
    counts["share"] = pd.array(counts["leads"] / totals, dtype="Float64")
    counts = counts.sort_values(["group", "leads", "reason"], ascending=[True, False, True], kind="stable")
    return counts.astype({"group": "str", "reason": "str", "leads": "int64"})[columns].reset_index(drop=True)


# --- SLA -----------------------------------------------------------------------------------------------------


def _earliest(pos: np.ndarray, micros: np.ndarray, n: int) -> np.ndarray:
    """Earliest time per position 0..n-1 in microseconds; NEVER where there is none."""
    known = micros != NAT
    first = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(first, pos[known], micros[known])
    return first


def sla_compliance(
    leads: pd.DataFrame,
    tasks: pd.DataFrame,
    events: pd.DataFrame,
    month: str,
    *,
    qualification_kinds: Collection[str] = QUALIFICATION_TASK_KINDS,
) -> dict[str, Any]:
    """Share of P1/P2 leads first touched in the month (spam excluded) contacted by their earliest task due time."""
    start, end = month_bounds(month)
    _require(leads, {"id", FIRST_TOUCH, "is_spam", "priority"}, "leads")
    _require(tasks, {"lead_id", "kind", "due_at", "completed_at"}, "tasks")
    _unique_ids(leads)
    first_touch = _utc(leads[FIRST_TOUCH])
    priority = _text(leads["priority"]).str.upper()
    eligible = (_in_window(first_touch, start, end) & ~_flag(leads["is_spam"])
                & priority.isin(SLA_PRIORITIES).fillna(False))
    ids = pd.Index(leads.loc[eligible, "id"])
    n = len(ids)

    task_pos = _positions(ids, tasks["lead_id"])
    own = task_pos >= 0
    deadline = _earliest(task_pos[own], _micros(tasks["due_at"])[own], n)
    is_qualification = _text(tasks["kind"]).str.lower().isin({kind.lower() for kind in qualification_kinds})
    done = own & is_qualification.fillna(False).to_numpy(dtype=bool)
    qualified_at = _earliest(task_pos[done], _micros(tasks["completed_at"])[done], n)
    changes = _status_changes(events, ids)
    working = changes.stage == _STATUS_CODE["working"]
    worked_at = _earliest(changes.pos[working], changes.at[working], n)

    # Either kind of first contact counts; NEVER on either side means no contact or no clock.
    contact = np.minimum(worked_at, qualified_at)
    met = int(((contact <= deadline) & (contact != NEVER) & (deadline != NEVER)).sum())
    # A P1/P2 lead with no due time was never put on anyone's clock: it counts against the SLA and is shown apart.
    return {"eligible": n, "met": met, "rate": met / n if n else None, "no_deadline": int((deadline == NEVER).sum())}


# --- reconciliation ------------------------------------------------------------------------------------------


def reconcile(volume: pd.DataFrame, direct_new_leads: int) -> None:
    """Refuse a volume report whose new-lead total differs from a direct count, or whose breakdowns do not add up."""
    _require(volume, {"dimension", "value", "new_leads"}, "volume")
    total_rows = volume.loc[(volume["dimension"] == TOTAL[0]) & (volume["value"] == TOTAL[1]), "new_leads"]
    if len(total_rows) != 1:
        raise ReconciliationError(
            f"volume report has {len(total_rows)} total rows, expected 1; direct count is {direct_new_leads}",
            report_total=None, direct_total=int(direct_new_leads),
        )
    report_total = int(total_rows.iloc[0])
    if report_total != int(direct_new_leads):
        raise ReconciliationError(
            f"report counts {report_total} new leads but the direct count is {direct_new_leads}",
            report_total=report_total, direct_total=int(direct_new_leads),
        )
    sums = volume.loc[volume["dimension"] != TOTAL[0]].groupby("dimension")["new_leads"].sum()
    off = sums[sums != report_total]
    if not off.empty:
        detail = ", ".join(f"{name}={int(total)}" for name, total in off.items())
        raise ReconciliationError(
            f"breakdowns do not add up to the {report_total} new leads: {detail}",
            report_total=report_total, direct_total=int(direct_new_leads),
        )


# --- the whole monthly report --------------------------------------------------------------------------------

FUNNEL_BREAKDOWNS: tuple[str | None, ...] = (None, "source", "owner")
FUNNEL_COLUMNS: tuple[str, ...] = ("cohort", "breakdown", "group", "stage", "reached", "passed", "conversion_to_next",
                                   "median_hours_to_next")
REASON_COLUMNS: tuple[str, ...] = ("cohort", "breakdown", "group", "reason", "leads", "share")


@dataclass(frozen=True)
class MonthlyReport:
    """Everything one month's report says: volume with changes, cohort funnels, SLA and 12 months of history."""

    month: str
    as_of: pd.Timestamp  # events at or after this moment are ignored, so re-runs reproduce the numbers
    generated_at: pd.Timestamp
    volume: pd.DataFrame  # lead_volume + with_changes
    funnel: pd.DataFrame  # FUNNEL_COLUMNS
    reasons: pd.DataFrame  # REASON_COLUMNS
    sla: dict[str, Any]
    history: pd.DataFrame  # month, source, new_leads (spam excluded), 12 months up to the report month
    direct: dict[str, int]  # independent counts of the month's leads: new_leads (spam excluded), spam_leads
    # Follow-up and recycling figures (leadflow/domain/followup.py report_figures); empty in reports without them.
    followup: dict[str, Any] = field(default_factory=dict)

    def total(self, column: str) -> int:
        """One count of the volume's total row."""
        rows = self.volume.loc[(self.volume["dimension"] == TOTAL[0]) & (self.volume["value"] == TOTAL[1]), column]
        return int(rows.iloc[0]) if len(rows) else 0

    def headline(self) -> dict[str, Any]:
        """The numbers a manager reads first."""
        main = self.funnel.loc[(self.funnel["cohort"] == self.month) & (self.funnel["breakdown"] == "all")]
        reached = main.set_index("stage")["reached"].to_dict() if len(main) else {}
        return {
            "month": self.month,
            "new_leads": self.total("new_leads"),
            "spam_leads": self.total("spam_leads"),
            "submissions": self.total("submissions"),
            "repeat_submissions": self.total("repeat_submissions"),
            "new_leads_prev": _int_or_none(self._total_change("new_leads_prev")),
            "new_leads_mom_pct": _float_or_none(self._total_change("new_leads_mom_pct")),
            "new_leads_last_year": _int_or_none(self._total_change("new_leads_last_year")),
            "new_leads_yoy_pct": _float_or_none(self._total_change("new_leads_yoy_pct")),
            "converted": int(reached.get("converted", 0)),
            "disqualified": int(reached.get("disqualified", 0)),
            "sla": dict(self.sla),
        }

    def _total_change(self, column: str) -> Any:
        if column not in self.volume.columns:
            return None
        rows = self.volume.loc[self.volume["dimension"] == TOTAL[0], column]
        return rows.iloc[0] if len(rows) else None


def _int_or_none(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


def cohort_months(month: str, count: int) -> list[str]:
    """The report month and the count-1 months before it, newest first."""
    months = [month]
    while len(months) < max(count, 1):
        months.append(previous_month(months[-1]))
    return months


def cohort_funnels(
    events: pd.DataFrame, leads: pd.DataFrame, cohorts: Sequence[str], as_of: pd.Timestamp,
    breakdowns: Sequence[str | None] = FUNNEL_BREAKDOWNS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Funnels of several first-touch cohorts, overall and per breakdown, as two long tables (stages, reasons)."""
    stages, reasons = [], []
    for cohort in cohorts:
        for by in breakdowns:
            report = funnel(events, leads, cohort, by=by, as_of=as_of)
            label = by or "all"
            stages.append(report.stages.assign(cohort=cohort, breakdown=label))
            reasons.append(report.disqualification_reasons.assign(cohort=cohort, breakdown=label))
    stage_frame = pd.concat(stages, ignore_index=True) if stages else pd.DataFrame(columns=list(FUNNEL_COLUMNS))
    reason_frame = pd.concat(reasons, ignore_index=True) if reasons else pd.DataFrame(columns=list(REASON_COLUMNS))
    stage_frame = stage_frame[list(FUNNEL_COLUMNS)].astype({"cohort": "str", "breakdown": "str", "group": "str"})
    reason_frame = reason_frame[list(REASON_COLUMNS)].astype({"cohort": "str", "breakdown": "str", "group": "str",
                                                              "reason": "str"})
    return stage_frame.reset_index(drop=True), reason_frame.reset_index(drop=True)


def monthly_volume(
    leads: pd.DataFrame,
    submissions: pd.DataFrame,
    previous_leads: pd.DataFrame,
    last_year_leads: pd.DataFrame,
    month: str,
) -> pd.DataFrame:
    """The month's lead volume by every dimension, with new leads of last month and last year beside it."""
    no_touches = pd.DataFrame({"lead_id": pd.Series(dtype="int64"),
                               "submitted_at": pd.Series(dtype="datetime64[us, UTC]")})
    current = lead_volume(leads, submissions, month)
    # A comparison month without a single lead is "no data yet", not a drop to zero.
    previous = lead_volume(previous_leads, no_touches, previous_month(month)) if len(previous_leads) else None
    last_year = (lead_volume(last_year_leads, no_touches, same_month_last_year(month))
                 if len(last_year_leads) else None)
    return with_changes(current, previous, last_year)


def pct(value: Any, *, signed: bool = False) -> str:
    """A share (0.25 -> '25.0%') or, signed, a change already in percent (12.5 -> '+12.5%'); '–' when unknown."""
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):+.1f}%" if signed else f"{float(value) * 100:.1f}%"
