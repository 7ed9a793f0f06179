"""Backfills: windows between two dates, splitting history into per-window inputs, and the backfill ledger."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import and_, or_, select, update

from leadflow.config.policy import POLICY_DIR
from leadflow.crm.schema import BackfillLedgerEntry
from leadflow.crm.store import Store
from leadflow.domain import normalize as nz
from leadflow.domain import submissions as intake
from leadflow.domain.contract import CANONICAL_COLUMNS, REQUIRED_COLUMNS, ReasonCode, resolve_columns
from leadflow.io.sources import (
    FORMATS,
    MALFORMED_COLUMN,
    ROW_COLUMN,
    LeadFileError,
    inspect_lead_file,
    iter_lead_chunks,
)
from leadflow.steps.intake import quarantine_rows

LEDGER = BackfillLedgerEntry.__table__
WindowKind = Literal["day", "week", "month"]
WINDOW_KINDS: tuple[str, ...] = ("day", "week", "month")
UNDATED = "undated"
MALFORMED_ROW = "malformed_row"  # intake's reason code for an unreadable row (data_checks/intake.py)


class BackfillError(ValueError):
    """A backfill that cannot run as asked; the message says why in one line."""


@dataclass(frozen=True)
class Window:
    """A half-open time window [start, end) in UTC; `id` is stable across runs over the same dates."""

    id: str
    start: datetime | None
    end: datetime | None

    @property
    def months(self) -> list[str]:
        """The calendar months (YYYY-MM) this window touches."""
        if self.start is None or self.end is None:
            return []
        last = self.end - timedelta(microseconds=1)
        return [str(p) for p in pd.period_range(self.start.strftime("%Y-%m"), last.strftime("%Y-%m"), freq="M")]


UNDATED_WINDOW = Window(id=UNDATED, start=None, end=None)


def _utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _period_start(day: date, kind: str) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_period(day: date, kind: str) -> date:
    if kind == "day":
        return day + timedelta(days=1)
    if kind == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def make_windows(start: date, end: date, kind: str) -> list[Window]:
    """Calendar windows (UTC days, ISO weeks from Monday, or months) covering start..end inclusive, clipped to it."""
    if kind not in WINDOW_KINDS:
        raise BackfillError(f"unknown window {kind!r} (expected day, week or month)")
    if end < start:
        raise BackfillError(f"end {end} is before start {start}")
    last = end + timedelta(days=1)
    windows: list[Window] = []
    period = _period_start(start, kind)
    while period < last:
        following = _next_period(period, kind)
        lo, hi = max(period, start), min(following, last)
        windows.append(Window(id=f"{lo:%Y-%m-%d}_{hi:%Y-%m-%d}", start=_utc_midnight(lo), end=_utc_midnight(hi)))
        period = following
    return windows


def list_inputs(path: str | Path) -> list[Path]:
    """The lead exports of a backfill: one file, or every export file under a folder (sorted, recursive)."""
    root = Path(path)
    if root.is_file():
        return [root.resolve()]
    if not root.is_dir():
        raise BackfillError(f"{path}: no such file or folder")
    files = sorted(p.resolve() for p in root.rglob("*") if p.is_file() and _is_export(p))
    if not files:
        raise BackfillError(f"{path}: no lead exports (.csv, .tsv, .jsonl, .json, .parquet) in this folder")
    return files


def _is_export(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in {".gz", ".bz2", ".xz", ".zst"}:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in FORMATS and not path.name.startswith(".")


def source_key(files: list[Path]) -> str:
    """Identity of a backfill's input: its files' paths, sizes and modification times (a re-export is new input)."""
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def policy_version(policy_dir: Path = POLICY_DIR) -> str:
    """The versions of every business policy file, joined: a window replayed under other policies is new work."""
    parts = []
    for file in sorted(policy_dir.glob("*.json")):
        version = json.loads(file.read_text(encoding="utf-8")).get("version", "?")
        parts.append(f"{file.stem}={version}")
    text = ";".join(parts) or "none"
    return text if len(text) <= 80 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass
class SplitManifest:
    """Where each window's rows were written and how many there are; what a resumed backfill reads back."""

    source_key: str
    windows: dict[str, int] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    outside_range: int = 0
    undated: int = 0

    def save(self, path: Path) -> None:
        """Write the manifest atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SplitManifest | None:
        """A finished split's manifest, or None when the split never completed."""
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _canonical_chunk(raw: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """A raw chunk with mapped headers renamed to canonical columns (others kept) and required keys present."""
    renames = {h: c for h, c in mapping.items() if h != c}
    # An unmapped header that spells a canonical name (the map took another header for it) must not collide.
    clashes = {c: f"{c} (unmapped)" for c in raw.columns if c in CANONICAL_COLUMNS and c not in mapping}
    frame = raw.drop(columns=[ROW_COLUMN]).rename(columns={**clashes, **renames})
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    if not frame[MALFORMED_COLUMN].notna().any():
        frame = frame.drop(columns=[MALFORMED_COLUMN])
    return frame


def split_by_window(
    files: list[Path], windows: list[Window], work_dir: Path, *, key: str,
    column_map: dict[str, str] | None = None, chunk_size: int = 50_000,
) -> SplitManifest:
    """Split exports by submitted_at into one JSON-lines input per window, one chunk in memory at a time.

    Rows before or after the windows are counted and left out; rows with no usable submitted_at go to the
    `undated` input, which `quarantine_undated` quarantines. A split that finished is reused.
    """
    work_dir = Path(work_dir)
    manifest_path = work_dir / "manifest.json"
    done = SplitManifest.load(manifest_path)
    if done is not None and done.source_key == key:
        return done
    staging = work_dir / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = SplitManifest(source_key=key)
    starts = np.array([w.start.replace(tzinfo=None) for w in windows], dtype="datetime64[us]")
    range_start = np.datetime64(windows[0].start.replace(tzinfo=None), "us")
    range_end = np.datetime64(windows[-1].end.replace(tzinfo=None), "us")
    counts: Counter[str] = Counter()
    for file in files:
        try:
            lead_file = inspect_lead_file(file)
        except LeadFileError as exc:
            raise BackfillError(str(exc)) from exc
        mapping = resolve_columns(lead_file.headers, column_map)
        when_header = next((h for h, c in mapping.items() if c == "submitted_at"), None)
        for raw in iter_lead_chunks(lead_file, chunk_size):
            manifest.rows_read += len(raw)
            if when_header is None:
                when = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
            else:
                when = nz.parse_timestamps(raw[when_header])
            stamps = when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            dated = ~np.isnat(stamps)
            inside = dated & (stamps >= range_start) & (stamps < range_end)
            manifest.outside_range += int((dated & ~inside).sum())
            slot = np.searchsorted(starts, stamps, side="right") - 1
            ids = np.where(inside, np.array([w.id for w in windows], dtype=object)[np.clip(slot, 0, None)], None)
            ids = np.where(dated, ids, UNDATED)
            frame = _canonical_chunk(raw, mapping)
            labels = pd.Series(ids, index=frame.index)
            for window_id, rows in frame.groupby(labels, sort=False):
                part = staging / f"{window_id}.jsonl"
                with part.open("a", encoding="utf-8") as handle:
                    rows.to_json(handle, orient="records", lines=True, date_format="iso", force_ascii=False)
                    handle.write("\n")
                counts[window_id] += len(rows)
    final = work_dir / "windows"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    manifest.windows = {w: counts[w] for w in [*[w.id for w in windows], UNDATED] if counts[w]}
    manifest.parts = {w: str(final / f"{w}.jsonl") for w in manifest.windows}
    manifest.undated = counts[UNDATED]
    manifest.save(manifest_path)
    return manifest


def undated_reasons(prepared: pd.DataFrame) -> dict[int, list[str]]:
    """Why each row of the undated input cannot be replayed: unreadable, no submitted_at, or one that is no time."""
    malformed = prepared[MALFORMED_COLUMN].notna()
    blank = prepared["submitted_at"].isna()
    codes = np.where(malformed, MALFORMED_ROW,
                     np.where(blank, ReasonCode.MISSING_SUBMITTED_AT, ReasonCode.INVALID_SUBMITTED_AT))
    return {int(row): [str(code)] for row, code in zip(prepared[ROW_COLUMN], codes, strict=True)}


@dataclass
class UndatedResult:
    """What quarantining the undated input did, in the shape of an intake summary's counts."""

    rows_read: int = 0
    blank_rows: int = 0
    quarantined: int = 0
    quarantined_new: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counts, for the ledger's summary."""
        return asdict(self)


def quarantine_undated(
    store: Store, part: str | Path, *, batch_id: str, origin: str, flow_run_id: str | None, now: datetime,
    chunk_size: int = 50_000, default_source: str | None = None,
) -> UndatedResult:
    """Quarantine every row of the undated input with its reason code, instead of replaying it through intake.

    Intake would quarantine them too, but a chunk of mostly undated rows trips its batch check (a mostly broken
    chunk stops the run), and in a history export such rows are what the undated input is made of. Records are
    keyed by payload and reason like intake's, so a re-run or a later intake of the same rows adds nothing.
    """
    try:
        lead_file = inspect_lead_file(part)
    except LeadFileError as exc:
        raise BackfillError(str(exc)) from exc
    mapping = {c: c for c in CANONICAL_COLUMNS}
    result = UndatedResult()
    reasons: Counter[str] = Counter()
    for raw in iter_lead_chunks(lead_file, chunk_size):
        result.rows_read += len(raw)
        prepared = intake.prepare_batch(raw, mapping, default_source)
        blank = intake.blank_rows(prepared)
        result.blank_rows += int(blank.sum())
        prepared = prepared.loc[~blank]
        done = quarantine_rows(store, prepared, undated_reasons(prepared), batch_id=batch_id, origin=origin,
                               flow_run_id=flow_run_id, now=now)
        result.quarantined += done.rows
        result.quarantined_new += done.new_records
        reasons.update(done.by_reason)
    result.quarantined_by_reason = dict(sorted(reasons.items()))
    return result


# --- the ledger ---------------------------------------------------------------------------------------------


def _key(source: str, window_id: str, policy: str):
    return and_(LEDGER.c.source_key == source, LEDGER.c.window_id == window_id, LEDGER.c.policy_version == policy)


def completed_windows(store: Store, source: str, policy: str) -> set[str]:
    """Windows of this source already imported under this policy version."""
    stmt = select(LEDGER.c.window_id).where(LEDGER.c.source_key == source, LEDGER.c.policy_version == policy,
                                            LEDGER.c.status == "completed")
    with store.engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def start_window(
    store: Store, *, source: str, origin: str, window: Window, policy: str, flow_run_id: str | None,
    now: datetime, timeout: timedelta = timedelta(hours=1),
) -> int | None:
    """Take a window for import: returns the attempt number, or None when it is done or another run has it.

    A window another run started less than `timeout` ago is left alone (two imports of one window must not
    overlap); one whose run died is taken over after the timeout.
    """
    row = {"source_key": source, "source": origin[:1000], "window_id": window.id, "window_start": window.start,
           "window_end": window.end, "policy_version": policy, "status": "pending", "rows": 0, "attempts": 0,
           "summary": {}}
    takeable = or_(LEDGER.c.status.in_(["pending", "failed"]),
                   and_(LEDGER.c.status == "running", LEDGER.c.started_at < now - timeout))
    claim = (
        update(LEDGER).where(_key(source, window.id, policy), takeable)
        .values(status="running", attempts=LEDGER.c.attempts + 1, started_at=now, finished_at=None,
                flow_run_id=flow_run_id)
        .returning(LEDGER.c.attempts)
    )
    with store.begin() as conn:
        conn.execute(store.insert(LEDGER).values(row).on_conflict_do_nothing(
            index_elements=["source_key", "window_id", "policy_version"]))
        attempt = conn.execute(claim).scalar_one_or_none()
    return None if attempt is None else int(attempt)


def finish_window(store: Store, *, source: str, window_id: str, policy: str, status: str, rows: int,
                  summary: dict[str, Any], now: datetime) -> None:
    """Record how a window's import ended (completed or failed) and what it did."""
    stmt = (update(LEDGER).where(_key(source, window_id, policy))
            .values(status=status, rows=rows, summary=summary, finished_at=now))
    with store.begin() as conn:
        conn.execute(stmt)


def ledger_rows(store: Store, source: str, policy: str) -> list[dict[str, Any]]:
    """The ledger of one source under one policy version, oldest window first (undated last)."""
    stmt = select(LEDGER).where(LEDGER.c.source_key == source, LEDGER.c.policy_version == policy)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    return sorted(rows, key=lambda r: (r["window_id"] == UNDATED, r["window_id"]))
