"""Backfill inputs: the export files of a backfill, their identity, and splitting them into one input per window."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadflow.domain import normalize as nz
from leadflow.domain.backfill import UNDATED, BackfillError, Window
from leadflow.domain.contract import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    SUBMITTED_AT_OPTION_FIELD,
    resolve_columns,
)
from leadflow.domain.normalize import DateEvidence, date_evidence
from leadflow.domain.profiles import choose_profile, coalesce, with_fallbacks
from leadflow.io.sources import (
    FORMATS,
    MALFORMED_COLUMN,
    ROW_COLUMN,
    LeadFile,
    LeadFileError,
    inspect_lead_file,
    iter_lead_chunks,
    scan_date_evidence,
)


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


@dataclass
class SplitManifest:
    """Where each window's rows were written and how many there are; what a resumed backfill reads back."""

    source_key: str
    windows: dict[str, int] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    outside_range: int = 0
    undated: int = 0
    # Per file, the day/month order its date column was read in and why (see DateEvidence.decide).
    date_orders: dict[str, str] = field(default_factory=dict)
    date_fallback: str = "mdy"
    # Per window, the shapes of the input its rows came from (export profile and columns), in order: windows that
    # differ here may not share a replay pass (a pass detects one export profile, and so one default channel, from
    # its first row). Monthly exports of one CRM share a shape, so their windows may.
    shapes: dict[str, list[str]] = field(default_factory=dict)

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
        # A `--submitted-at` time stays in its own field: the window's intake maps it and keys rows without it.
        if column == "submitted_at" and SUBMITTED_AT_OPTION_FIELD in frame.columns:
            continue
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    if not frame[MALFORMED_COLUMN].notna().any():
        frame = frame.drop(columns=[MALFORMED_COLUMN])
    return frame


def _file_date_order(lead_file: LeadFile, header: str | None, chunk_size: int, fallback: str) -> tuple[str, str]:
    """The day/month order of one file's date column, decided over the whole column (one extra pass when the
    first chunk leaves it open), and why."""
    if header is None:
        return fallback, "no_dates"
    first = next(iter_lead_chunks(lead_file, chunk_size), None)
    evidence = date_evidence(first[header]) if first is not None and header in first.columns else DateEvidence()
    if not evidence.settled:
        evidence = scan_date_evidence(lead_file, header, chunk_size)
    return evidence.decide(fallback)


def json_lines(frame: pd.DataFrame) -> bytes:
    """The frame's rows as UTF-8 JSON lines (one object per row, each line ended), as pandas' `lines=True` writes them.

    pandas builds the lines by rescanning its JSON array character by character (40% of a split's time); this cuts
    the array at its record boundaries instead. The records are flat (scalar values only), so a boundary is `},{"`
    (the next record's first key). A string value or name ending in `},{` makes the same bytes with its closing
    quote: then the count of boundaries is off, and pandas writes the lines itself.
    """
    if frame.empty:
        return b""
    # As bytes: the file wants them anyway, and a bytes search is several times faster than one over wide text.
    data = frame.to_json(orient="records", date_format="iso", force_ascii=False).encode("utf-8")
    if data.count(b'},{"') != len(frame) - 1:
        return frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False).rstrip(
            "\n").encode("utf-8") + b"\n"
    return data[1:-1].replace(b'},{"', b'}\n{"') + b"\n"


def split_by_window(
    files: list[Path], windows: list[Window], work_dir: Path, *, key: str,
    column_map: dict[str, str] | None = None, chunk_size: int = 50_000, submitted_at: str | None = None,
    date_order: str = "mdy",
) -> SplitManifest:
    """Split exports by submitted_at into one JSON-lines input per window, one chunk in memory at a time.

    Rows before or after the windows are counted and left out; rows with no usable submitted_at go to the
    `undated` input, which `quarantine_undated` quarantines. A split that finished is reused. Each file's headers
    are resolved with its export profile; `submitted_at` (an ISO time, from `--submitted-at`) dates every row.
    Each file's dates are read in the day/month order its whole column decides (`date_order` where it leaves
    that open) and written to the window inputs as ISO times, so that a window's intake cannot read them in
    another order.
    """
    work_dir = Path(work_dir)
    manifest_path = work_dir / "manifest.json"
    done = SplitManifest.load(manifest_path)
    if done is not None and done.source_key == key and done.date_fallback == date_order:
        return done
    staging = work_dir / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = SplitManifest(source_key=key, date_fallback=date_order)
    starts = np.array([w.start.replace(tzinfo=None) for w in windows], dtype="datetime64[us]")
    range_start = np.datetime64(windows[0].start.replace(tzinfo=None), "us")
    range_end = np.datetime64(windows[-1].end.replace(tzinfo=None), "us")
    counts: Counter[str] = Counter()
    for file in files:
        try:
            lead_file = inspect_lead_file(file)
        except LeadFileError as exc:
            raise BackfillError(str(exc)) from exc
        profile = choose_profile(lead_file.headers)
        mapping = resolve_columns(lead_file.headers, column_map, profile.aliases, profile.ignored)
        mapping, fallbacks = with_fallbacks(mapping, lead_file.headers, profile.fallbacks)
        if submitted_at is not None:
            mapping = {h: c for h, c in mapping.items() if c != "submitted_at"}
        when_header = SUBMITTED_AT_OPTION_FIELD if submitted_at is not None else next(
            (h for h, c in mapping.items() if c == "submitted_at"), None)
        order, basis = ((date_order, "given_time") if submitted_at is not None
                        else _file_date_order(lead_file, when_header, chunk_size, date_order))
        manifest.date_orders[str(file)] = f"{order} ({basis})"
        for raw in iter_lead_chunks(lead_file, chunk_size):
            manifest.rows_read += len(raw)
            raw = coalesce(raw, fallbacks)
            if submitted_at is not None:
                raw[SUBMITTED_AT_OPTION_FIELD] = pd.Series(submitted_at, index=raw.index, dtype="string")
            if when_header is None:
                when = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
            else:
                when = nz.parse_timestamps(raw[when_header], order)
            stamps = when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            dated = ~np.isnat(stamps)
            inside = dated & (stamps >= range_start) & (stamps < range_end)
            manifest.outside_range += int((dated & ~inside).sum())
            slot = np.searchsorted(starts, stamps, side="right") - 1
            ids = np.where(inside, np.array([w.id for w in windows], dtype=object)[np.clip(slot, 0, None)], None)
            ids = np.where(dated, ids, UNDATED)
            frame = _canonical_chunk(raw, mapping)
            # A time given by --submitted-at is already ISO and lives in its own marker column.
            if when_header is not None and "submitted_at" in frame.columns:
                frame["submitted_at"] = frame["submitted_at"].astype("string").where(
                    ~dated, pd.Series(when.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").array, index=frame.index))
            labels = pd.Series(ids, index=frame.index)
            shape = "|".join([profile.name, *(c for c in frame.columns if c != MALFORMED_COLUMN)])
            for window_id, rows in frame.groupby(labels, sort=False):
                part = staging / f"{window_id}.jsonl"
                with part.open("ab") as handle:
                    handle.write(json_lines(rows))
                counts[window_id] += len(rows)
                came_from = manifest.shapes.setdefault(str(window_id), [])
                if not came_from or came_from[-1] != shape:
                    came_from.append(shape)
    final = work_dir / "windows"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    manifest.windows = {w: counts[w] for w in [*[w.id for w in windows], UNDATED] if counts[w]}
    manifest.parts = {w: str(final / f"{w}.jsonl") for w in manifest.windows}
    manifest.undated = counts[UNDATED]
    manifest.shapes = {w: manifest.shapes[w] for w in manifest.windows}
    manifest.save(manifest_path)
    return manifest


def join_parts(parts: list[str | Path], dest: Path) -> str:
    """One JSON-lines input holding these window inputs one after the other (written anew, atomically).

    The window inputs are JSON lines of canonical columns, so their concatenation is one input that intake reads
    like each of them: adjacent small windows replay in one pass. The caller deletes it after the pass (a killed
    pass leaves it among the window inputs, where erasure and retention find it like them).
    """
    dest = Path(dest)
    # Named *.jsonl too: a kill while it is written leaves rows that erasure (which reads *.jsonl) must still find.
    tmp = dest.with_name(f"{dest.stem}.{os.getpid()}.tmp{dest.suffix}")
    with tmp.open("wb") as out:
        for part in parts:
            with Path(part).open("rb") as handle:
                shutil.copyfileobj(handle, out)
    os.replace(tmp, dest)
    return str(dest)
