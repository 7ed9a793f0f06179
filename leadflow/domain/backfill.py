"""Backfill windows: calendar windows between two dates, and the policy version a window is replayed under."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd

from leadflow.config.policy import POLICY_DIR

WindowKind = Literal["day", "week", "month"]
WINDOW_KINDS: tuple[str, ...] = ("day", "week", "month")
UNDATED = "undated"


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


def policy_version(policy_dir: Path = POLICY_DIR) -> str:
    """The versions of every business policy file, joined: a window replayed under other policies is new work."""
    parts = []
    for file in sorted(policy_dir.glob("*.json")):
        version = json.loads(file.read_text(encoding="utf-8")).get("version", "?")
        parts.append(f"{file.stem}={version}")
    text = ";".join(parts) or "none"
    return text if len(text) <= 80 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def group_windows(windows: list[Window], rows: dict[str, int], limit: int,
                  shapes: dict[str, list[str]] | None = None) -> list[list[Window]]:
    """Adjacent windows joined into groups whose rows together stay within `limit`, for one replay pass each.

    Windows keep their order; a window over the limit stands alone, and `limit` of 0 or less keeps every window
    alone. Only windows whose rows came from input of the same shapes (`shapes`, from the split: export profile and
    columns) are joined: a pass reads one export profile, and with it one default channel, so a group replays as its
    windows alone would (a window whose shapes are unknown stands alone). Each window of a group keeps its own
    ledger row: grouping only decides which windows share a pass.
    """
    groups: list[list[Window]] = []
    held = 0
    for window in windows:
        size = int(rows.get(window.id, 0))
        same = shapes is None or (bool(shapes.get(window.id)) and groups
                                  and shapes.get(window.id) == shapes.get(groups[-1][-1].id))
        if groups and limit > 0 and held + size <= limit and same:
            groups[-1].append(window)
            held += size
        else:
            groups.append([window])
            held = size
    return groups


def group_limit(rows: list[int], chunk_size: int, slots: int) -> int:
    """Rows per group by default: at most one intake chunk, and small enough that every slot gets a group."""
    total = sum(int(n) for n in rows)
    if total <= 0:
        return 0
    return min(int(chunk_size), -(-total // max(int(slots), 1)))
