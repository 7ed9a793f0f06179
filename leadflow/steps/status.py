"""Status steps: import a sales tool's status export, or set one lead's status, recorded by crm/status.

Follow-up outcomes (no_answer, left_voicemail, replied, meeting_booked) ride along in the same commands and files:
they close the lead's open follow-up step and advance or stop its sequence (crm/followup); meeting_booked also moves
the lead to discovery_call_booked. A lead moved to `recycled` goes on the recycle track with its re-engage date.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from leadflow.crm import followup as followup_store
from leadflow.crm.status import record_status_changes
from leadflow.crm.store import Store
from leadflow.domain import followup as fu
from leadflow.domain.status import Reject, StatusResult, prepare_changes
from leadflow.io.status_files import read_status_file


def import_status_file(store: Store, path: str | Path, now: datetime, by: str | None = None) -> StatusResult:
    """Read a sales-tool status export and record every understandable row; the rest come back as rejects."""
    frame = read_status_file(path)
    return _apply(store, frame, by or f"import:{Path(str(path)).name}", now)


def set_status(store: Store, email: str, status: str, reason: str | None, now: datetime, by: str = "cli",
               reengage_on: datetime | None = None, strict_recycle: bool = False) -> StatusResult:
    """Change one lead's status (or record a follow-up outcome) now: the `leadflow lead status` command.

    `reengage_on` is a recycled lead's re-engage date; with `strict_recycle` (the command) a recycled lead needs
    that date or a reason code the cadence policy maps to a delay.
    """
    frame = pd.DataFrame({"row": [1], "email": [email], "status": [status], "reason": [reason],
                          "changed_at": [pd.Timestamp(now).isoformat()]})
    return _apply(store, frame, by, now, reengage_on=reengage_on, strict_recycle=strict_recycle)


def _apply(store: Store, frame: pd.DataFrame, by: str, now: datetime, *, reengage_on: datetime | None = None,
           strict_recycle: bool = False) -> StatusResult:
    """Parse status and outcome rows and record them in one transaction."""
    from leadflow.config.settings import get_settings

    policy = fu.load_cadence_policy()
    outcome = frame["status"].map(fu.parse_outcome)
    is_outcome = outcome.notna()
    # An outcome row is parsed like a status row (email, time), then told apart again.
    parsed = frame.assign(status=frame["status"].where(~is_outcome, "working"))
    good, rejects = prepare_changes(parsed, now)
    good = good.assign(outcome=good["row"].map(dict(zip(frame["row"], outcome, strict=True))))
    booked = good["outcome"].eq("meeting_booked").fillna(False)
    good.loc[booked, "status"] = "discovery_call_booked"
    changes = good.loc[good["outcome"].isna() | booked, ["row", "email", "status", "reason", "changed_at"]]
    outcomes = good.loc[good["outcome"].notna()]
    timezone = get_settings().timezone
    recycled = changes.loc[changes["status"].eq("recycled")]
    dates: dict[int, pd.Timestamp] = {}
    for row, reason, at in zip(recycled["row"], recycled["reason"], recycled["changed_at"], strict=True):
        when, problem = fu.reengage_at(at, reason if isinstance(reason, str) else None, reengage_on, policy,
                                       timezone, strict=strict_recycle)
        if problem:
            rejects.append(Reject(int(row), None, problem))
        else:
            dates[int(row)] = when
    changes = changes.loc[~changes["status"].eq("recycled") | changes["row"].isin(list(dates))]
    with store.begin() as conn:
        result = record_status_changes(conn, store, changes, by, now)
        result.rows = len(frame)
        _record_outcomes(conn, store, outcomes, booked, by, policy, now, result)
        _recycle(conn, store, changes.loc[changes["row"].isin(list(dates))], dates, now)
    result.rejected = sorted([*rejects, *result.rejected], key=lambda r: r.row)
    return result


def _record_outcomes(conn, store: Store, outcomes: pd.DataFrame, booked: pd.Series, by: str,
                     policy: fu.CadencePolicy, now: datetime, result: StatusResult) -> None:
    if outcomes.empty:
        return
    ids = followup_store.lead_ids_by_email(conn, outcomes["email"].tolist())
    seen = followup_store.recorded_outcomes(conn, list(ids.values()))
    keep: list[tuple[int, str, pd.Timestamp]] = []
    for row, email, outcome, at in zip(outcomes["row"], outcomes["email"], outcomes["outcome"],
                                       outcomes["changed_at"], strict=True):
        lead_id = ids.get(email)
        if lead_id is None:
            if outcome != "meeting_booked":  # its status row already said unknown_lead
                result.rejected.append(Reject(int(row), email, "unknown_lead"))
            continue
        if (lead_id, outcome, at) in seen:
            if outcome != "meeting_booked":
                result.already_recorded += 1
            continue
        seen.add((lead_id, outcome, at))
        keep.append((lead_id, outcome, at))
        if outcome != "meeting_booked":
            result.applied += 1
    if keep:
        lead_ids, names, times = (list(x) for x in zip(*keep, strict=True))
        followup_store.record_outcomes(conn, store, _outcome_rows(lead_ids, names, times, by, policy), now)


def _outcome_rows(lead_ids: list[int], outcomes: list[str], at: list[pd.Timestamp], by: str,
                  policy: fu.CadencePolicy) -> pd.DataFrame:
    import json

    return pd.DataFrame({"lead_id": lead_ids, "outcome": outcomes, "at": at,
                         "stop": [fu.outcome_effect(o, policy) == "stop" for o in outcomes],
                         "details": [json.dumps({"outcome": o, "effect": fu.outcome_effect(o, policy), "by": by})
                                     for o in outcomes]})


def _recycle(conn, store: Store, rows: pd.DataFrame, dates: dict[int, pd.Timestamp], now: datetime) -> None:
    """Put the leads now recycled by these rows on the recycle track with their re-engage dates."""
    if rows.empty:
        return
    state = followup_store.status_and_owner(conn, rows["email"].tolist())
    picked = [(state[e][0], dates[int(r)], reason if isinstance(reason, str) else None, state[e][2])
              for r, e, reason in zip(rows["row"], rows["email"], rows["reason"], strict=True)
              if e in state and state[e][1] == "recycled"]
    if picked:
        followup_store.recycle(conn, store, pd.DataFrame(picked, columns=["lead_id", "reengage_at", "reason",
                                                                          "owner_id"]), now)
