"""The event, task and message rows qualification writes: their columns and details, built as plain tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from leadflow.domain import routing
from leadflow.domain.qualification import QualificationPolicy


def events(lead_ids: Sequence[int], event_type: str, details: Sequence[str], now: datetime,
           flow_run_id: str | None) -> pd.DataFrame:
    """Audit-log rows of one event type for these leads, with their details (JSON text or dicts)."""
    return pd.DataFrame({"lead_id": list(lead_ids), "event_type": event_type, "occurred_at": now, "batch_id": None,
                         "flow_run_id": flow_run_id, "details": list(details)})


def _plain(values: Any) -> list[Any]:
    """A column as a list of plain Python values, None where missing."""
    series = pd.Series(values)
    return series.astype(object).where(series.notna().to_numpy(), None).tolist()


class _Json:
    """json.dumps of scalars, each distinct value dumped once (the columns hold a few values, repeated)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[type, Any], str] = {}

    def __call__(self, value: Any) -> str:
        key = (type(value), value)  # 1, 1.0 and True are equal keys, but dump differently
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = json.dumps(value)
        return text


def qualified_events(leads: pd.DataFrame, accounts: pd.Series, priority: pd.DataFrame, decisions: pd.DataFrame,
                     decided: np.ndarray, policy: QualificationPolicy, replay: bool, now: datetime,
                     flow_run_id: str | None, match: pd.DataFrame | None,
                     checks: pd.DataFrame | None) -> pd.DataFrame:
    """One `lead_qualified` event per lead this run changed: its new account link, priority and owner decision.

    One event with a section per step, not one per step, keeps the audit log (and the write) a third the size.
    The JSON text is assembled from values dumped once each: it is what json.dumps gives for the same dict.
    """
    stored_account = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    linked = ((accounts.astype("Int64").fillna(-1) != stored_account.fillna(-1)) & accounts.notna()).to_numpy()
    reprioritized = (leads["priority"].astype("string").fillna("") != priority["priority"].fillna("")).to_numpy()
    changed = linked | reprioritized | decided
    if not changed.any():
        return pd.DataFrame()
    rows = np.flatnonzero(changed)

    def col(values: Any) -> list[Any]:
        return _plain(pd.Series(values).iloc[rows])

    none = [None] * len(rows)
    acc, old_priority = col(accounts.to_numpy(dtype=object)), col(leads["priority"].to_numpy(dtype=object))
    new_priority, rule = col(priority["priority"].to_numpy(dtype=object)), col(
        priority["priority_rule"].to_numpy(dtype=object))
    bands = col(match["match_band"].to_numpy(dtype=object)) if match is not None else none
    methods = col(match["match_method"].to_numpy(dtype=object)) if match is not None else none
    scores = col(match["match_score"].to_numpy(dtype=object)) if match is not None else none
    passes = col(checks["passes"].to_numpy(dtype=object)) if checks is not None else none
    met = col(checks["met"].to_numpy(dtype=object)) if checks is not None else none
    not_met = col(checks["not_met"].to_numpy(dtype=object)) if checks is not None else none
    a_rule, a_owner = col(decisions["assignment_rule"].to_numpy(dtype=object)), col(
        decisions["owner_id"].to_numpy(dtype=object))
    a_reason, a_segment = col(decisions["fallback_reason"].to_numpy(dtype=object)), col(
        decisions["segment"].to_numpy(dtype=object))
    all_candidates = decisions["candidates"].tolist()
    a_candidates = [all_candidates[i] for i in rows]
    flags_linked, flags_prio = linked[rows].tolist(), reprioritized[rows].tolist()
    flags_decided = decided[rows].tolist()
    queue = policy.routing.fallback_queue
    dump = _Json()
    lists: dict[tuple[int, ...], str] = {}

    def candidates_json(reps: list[int]) -> str:
        # Leads of one country and segment share their candidate list: each distinct list is written once.
        key = tuple(reps)
        text = lists.get(key)
        if text is None:
            text = lists[key] = "[" + ", ".join(str(int(r)) for r in key) + "]"
        return text

    head = '{"policy_version": ' + json.dumps(policy.version) + ', "historical": ' + json.dumps(replay)
    out = []
    for j in range(len(rows)):
        text = head
        if flags_linked[j]:
            text += (f', "account": {{"account_id": {int(acc[j])}, "band": {dump(bands[j])}, '
                     f'"method": {dump(methods[j])}, '
                     f'"score": {"null" if scores[j] is None else dump(float(scores[j]))}}}')
        if flags_prio[j]:
            text += (f', "priority": {{"priority": {dump(new_priority[j])}, "rule": {dump(rule[j])}, '
                     f'"from": {dump(old_priority[j])}')
            if checks is not None:
                text += (f', "checklist_passes": {dump(bool(passes[j]))}, "met": {int(met[j])}, '
                         f'"not_met": {int(not_met[j])}')
            text += "}"
        if flags_decided[j]:
            owner = "null" if a_owner[j] is None else str(int(a_owner[j]))
            text += (f', "assignment": {{"rule": {dump(a_rule[j])}, "owner_id": {owner}, '
                     f'"queue": {dump(queue if a_rule[j] == routing.FALLBACK else None)}, '
                     f'"reason": {dump(a_reason[j])}, '
                     f'"candidates": {candidates_json(a_candidates[j])}, '
                     f'"segment": {dump(a_segment[j])}}}')
        out.append(text + "}")
    return events(leads["lead_id"].iloc[rows].tolist(), "lead_qualified", out, now, flow_run_id)


def task_rows(leads: pd.DataFrame, decisions: pd.DataFrame, priority: pd.DataFrame, checks: pd.DataFrame,
              accounts: pd.Series, match: pd.DataFrame, kind: str, due: pd.Series, policy: QualificationPolicy,
              replay: bool, now: datetime) -> pd.DataFrame:
    """crm_tasks rows of one kind with the context a rep needs (key <kind>:lead:<id>, one per lead ever)."""
    fallback = decisions["assignment_rule"].eq(routing.FALLBACK).to_numpy(dtype=bool).tolist()
    dump = _Json()
    queue, tail = dump(policy.routing.fallback_queue), (f', "historical": {json.dumps(replay)}, '
                                                        f'"policy_version": {json.dumps(policy.version)}}}')
    # The JSON text json.dumps gives for each row's dict, assembled from values dumped once each.
    details = [
        f'{{"priority": {dump(p)}, "priority_reason": {dump(reason)}, "checklist_passes": {dump(bool(ok))}, '
        f'"met": {int(m)}, "account_id": {"null" if acc is None else int(acc)}, "match_band": {dump(band)}, '
        f'"assignment_rule": {dump(rule)}, "queue": {queue if fb else "null"}{tail}'
        for p, reason, ok, m, acc, band, rule, fb in zip(
            _plain(priority["priority"]), _plain(priority["priority_reason"]), checks["passes"].tolist(),
            checks["met"].tolist(), _plain(accounts), _plain(match["match_band"]),
            _plain(decisions["assignment_rule"]), fallback, strict=True)
    ]
    frame = pd.DataFrame({
        "idempotency_key": [f"{kind}:lead:{i}" for i in leads["lead_id"]],
        "lead_id": leads["lead_id"].to_numpy(),
        "owner_id": decisions["owner_id"].astype("Int64").to_numpy(),
        "kind": kind,
        # Replayed history is recorded, not worked: such tasks are closed at once and carry no SLA.
        "status": "cancelled" if replay else "open",
        "due_at": pd.Series(pd.NaT, index=leads.index, dtype="datetime64[us, UTC]") if replay else due,
        "details": details,
        "created_at": now,
        "completed_at": now if replay else None,
    })
    return frame


def qualification_messages(leads: pd.DataFrame, decisions: pd.DataFrame, priority: pd.DataFrame,
                           checks: pd.DataFrame, due: pd.Series, newly_assigned: pd.Series) -> pd.DataFrame:
    """The columns the rep alert template needs, for newly assigned leads."""
    frame = leads[["lead_id", "first_name", "last_name", "job_title", "company", "country"]].assign(
        owner_id=decisions["owner_id"], priority=priority["priority"], priority_reason=priority["priority_reason"],
        checklist=checks["checklist"], due_at=due)
    return frame.loc[newly_assigned.to_numpy(dtype=bool)]
