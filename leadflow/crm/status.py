"""Lead statuses: the vocabulary, allowed transitions, bulk status exports, and recording changes in lead_events."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, select, update

from leadflow.crm import assignments as capacity
from leadflow.crm.schema import Lead, LeadEvent
from leadflow.crm.store import Store, utc
from leadflow.domain.normalize import EMAIL_PATTERN

STATUSES: tuple[str, ...] = ("new", "working", "qualified", "discovery_call_booked", "converted", "disqualified",
                             "recycled", "spam")
# Spam is set and lifted by spam-cleanup (it also flags, quarantines and purges), never by a status update.
RESERVED: frozenset[str] = frozenset({"spam"})
NEEDS_REASON: frozenset[str] = frozenset({"disqualified"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"working", "qualified", "discovery_call_booked", "disqualified", "recycled"}),
    "working": frozenset({"qualified", "discovery_call_booked", "disqualified", "recycled"}),
    "qualified": frozenset({"working", "discovery_call_booked", "converted", "disqualified", "recycled"}),
    "discovery_call_booked": frozenset({"qualified", "converted", "disqualified", "recycled"}),
    "converted": frozenset({"recycled"}),
    "disqualified": frozenset({"working", "recycled"}),
    "recycled": frozenset({"working", "qualified", "disqualified"}),
    "spam": frozenset(),
}
# Spellings seen in sales-tool exports, after lower-casing and turning separators into '_'.
STATUS_ALIASES: dict[str, str] = {
    "open": "new", "new_lead": "new", "untouched": "new",
    "in_progress": "working", "contacted": "working", "attempting_contact": "working",
    "attempted_to_contact": "working",
    "sql": "qualified", "sales_qualified": "qualified", "qualified_lead": "qualified",
    "meeting_booked": "discovery_call_booked", "meeting_scheduled": "discovery_call_booked",
    "demo_booked": "discovery_call_booked", "demo_scheduled": "discovery_call_booked",
    "discovery_call": "discovery_call_booked", "call_booked": "discovery_call_booked",
    "won": "converted", "closed_won": "converted", "customer": "converted",
    "unqualified": "disqualified", "closed_lost": "disqualified", "lost": "disqualified", "dq": "disqualified",
    "nurture": "recycled", "nurturing": "recycled", "recycle": "recycled",
}
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address", "e_mail", "lead_email", "contact_email", "mail"),
    "status": ("status", "lead_status", "stage", "lead_stage", "new_status"),
    "reason": ("reason", "status_reason", "reason_code", "disqualification_reason", "disqualified_reason",
               "lost_reason"),
    "changed_at": ("changed_at", "status_changed_at", "changed", "changed_date", "date", "updated_at",
                   "last_modified", "last_modified_date", "modified_date", "status_date", "timestamp"),
}
REQUIRED = ("email", "status", "changed_at")
REASON_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
STATUS_CHANGED = "status_changed"


class StatusFileError(ValueError):
    """A status file that cannot be read at all (missing, unreadable, without the needed columns)."""


@dataclass(frozen=True)
class Reject:
    """One status row that was not applied, and why."""

    row: int  # 1-based data row in the file (the header is row 0)
    email: str | None
    reason: str


@dataclass
class StatusResult:
    """What became of every status row: applied, already there, or rejected with a reason."""

    rows: int = 0
    applied: int = 0
    unchanged: int = 0  # the lead already had that status
    already_recorded: int = 0  # the same change at the same time is already in lead_events (a re-import)
    rejected: list[Reject] = field(default_factory=list)

    def as_dict(self, mask: Any = None) -> dict[str, Any]:
        """Counts and the reject list (emails masked by `mask` when given)."""
        by_reason: dict[str, int] = {}
        for reject in self.rejected:
            code = reject.reason.split(":")[0]
            by_reason[code] = by_reason.get(code, 0) + 1
        return {"rows": self.rows, "applied": self.applied, "unchanged": self.unchanged,
                "already_recorded": self.already_recorded, "rejected": len(self.rejected),
                "rejected_by_reason": by_reason,
                "rejects": [{"row": r.row, "email": mask(r.email) if mask else r.email, "reason": r.reason}
                            for r in self.rejected]}


# --- vocabulary ----------------------------------------------------------------------------------------------


def _token(value: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")


def parse_status(value: Any) -> str | None:
    """A status as spelled in an export ('Closed Won', 'In progress') in our vocabulary; None if unknown."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    token = _token(value)
    return token if token in STATUSES else STATUS_ALIASES.get(token)


def parse_reason(value: Any) -> str | None:
    """A reason code as a lower-case slug ('No Budget' -> 'no_budget'); None when blank."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    token = _token(value)
    return token or None


def transition_error(current: str, target: str, reason: str | None) -> str | None:
    """Why a lead may not move from current to target (a reason code), or None when it may."""
    if target in RESERVED or current in RESERVED:
        return "spam_managed_by_spam_cleanup"
    if target in NEEDS_REASON and not reason:
        return "missing_reason"
    if reason and not REASON_PATTERN.fullmatch(reason):
        return "invalid_reason"
    if target not in TRANSITIONS.get(current, frozenset()):
        return f"invalid_transition:{current}->{target}"
    return None


# --- reading a status export ---------------------------------------------------------------------------------


def resolve_headers(headers: Iterable[str]) -> dict[str, str]:
    """Export header -> our column, by the known spellings; raises when a required column has no header."""
    found: dict[str, str] = {}
    for header in headers:
        token = _token(header)
        for column, aliases in HEADER_ALIASES.items():
            if token in aliases and column not in found.values():
                found[header] = column
    missing = [c for c in REQUIRED if c not in found.values()]
    if missing:
        raise StatusFileError(f"status file has no column for {', '.join(missing)} "
                              f"(headers: {', '.join(headers) or 'none'})")
    return found


def read_status_file(path: str | Path) -> pd.DataFrame:
    """Read a status CSV export into row, email, status, reason, changed_at text columns."""
    try:
        raw = pd.read_csv(path, dtype="string", keep_default_na=False, skip_blank_lines=True,
                          encoding="utf-8-sig", on_bad_lines="error")
    except FileNotFoundError as exc:
        raise StatusFileError(f"no such file: {path}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise StatusFileError(f"cannot read {path} as CSV: {str(exc).splitlines()[0]}") from exc
    mapping = resolve_headers(list(raw.columns))
    frame = raw[list(mapping)].rename(columns=mapping)
    if "reason" not in frame.columns:
        frame["reason"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame[["row", "email", "status", "reason", "changed_at"]]


def prepare_changes(frame: pd.DataFrame, now: datetime) -> tuple[pd.DataFrame, list[Reject]]:
    """Parse rows (email, status, reason, changed_at); rows that cannot be understood become rejects."""
    email = frame["email"].astype("string").str.strip().str.lower()
    status = frame["status"].map(parse_status)
    reason = frame["reason"].map(parse_reason) if "reason" in frame.columns else pd.Series(None, index=frame.index)
    text_at = frame["changed_at"].astype("string").str.strip()
    at = utc(pd.to_datetime(text_at.where(text_at.str.len() > 0), utc=True, errors="coerce", format="mixed"))
    problems = pd.Series("", index=frame.index, dtype="object")

    def flag(mask: pd.Series, code: str) -> None:
        mask = mask.fillna(True).astype(bool) & (problems == "")
        problems.loc[mask] = code

    flag(email.isna() | (email == ""), "missing_email")
    flag(~email.str.fullmatch(EMAIL_PATTERN), "invalid_email")
    blank_status = frame["status"].astype("string").str.strip().fillna("") == ""
    flag(blank_status, "missing_status")
    flag(status.isna(), "unknown_status")
    flag(text_at.fillna("") == "", "missing_changed_at")
    flag(at.isna(), "invalid_changed_at")
    flag(at > pd.Timestamp(now) + pd.Timedelta(minutes=10), "future_changed_at")
    bad = problems != ""
    rejects = [Reject(int(r), e if isinstance(e, str) else None, p)
               for r, e, p in zip(frame.loc[bad, "row"], email[bad].astype(object).where(email[bad].notna(), None),
                                  problems[bad], strict=True)]
    good = pd.DataFrame({"row": frame["row"], "email": email, "status": status, "reason": reason,
                         "changed_at": at}).loc[~bad]
    return good.reset_index(drop=True), rejects


# --- applying changes ----------------------------------------------------------------------------------------


LEADS = Lead.__table__
EVENTS = LeadEvent.__table__


def _bind(store: Store, moment: pd.Timestamp) -> datetime:
    return moment.tz_convert("UTC").to_pydatetime()


def apply_status_changes(store: Store, changes: pd.DataFrame, by: str, now: datetime,
                         flow_run_id: str | None = None) -> StatusResult:
    """Record parsed status changes in one transaction: guarded lead updates plus one status_changed event each.

    Rows apply per lead in time order. A row the same as an already recorded event (same lead, status and time) is
    counted as already recorded, so importing one export twice changes nothing; a row older than the lead's latest
    recorded change is stale and rejected, so an old export cannot undo newer work.
    """
    result = StatusResult(rows=len(changes))
    if changes.empty:
        return result
    ordered = changes.sort_values(["changed_at", "row"], kind="stable")
    emails = sorted(set(ordered["email"]))
    with store.begin() as conn:
        leads: dict[str, tuple[int, str]] = {}
        # FOR UPDATE holds the rows on PostgreSQL until we commit; SQLite's BEGIN IMMEDIATE already serializes writers.
        stmt = (select(LEADS.c.email, LEADS.c.id, LEADS.c.status, LEADS.c.is_spam)
                .where(LEADS.c.email.in_(bindparam("emails", expanding=True))).with_for_update())
        spam: set[int] = set()
        for start in range(0, len(emails), 5000):
            for email, lead_id, status, is_spam in conn.execute(stmt, {"emails": emails[start:start + 5000]}):
                leads[email] = (int(lead_id), status)
                if is_spam:
                    spam.add(int(lead_id))
        ids = [lead_id for lead_id, _ in leads.values()]
        recorded: set[tuple[int, str, pd.Timestamp]] = set()
        latest: dict[int, pd.Timestamp] = {}
        ev = select(EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.details["to"].as_string()).where(
            EVENTS.c.event_type == STATUS_CHANGED, EVENTS.c.lead_id.in_(bindparam("ids", expanding=True)))
        for start in range(0, len(ids), 5000):
            for lead_id, at, to in conn.execute(ev, {"ids": ids[start:start + 5000]}):
                moment = pd.Timestamp(at)
                moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
                recorded.add((int(lead_id), str(to), moment))
                latest[int(lead_id)] = max(latest.get(int(lead_id), moment), moment)
        current = {lead_id: status for lead_id, status in leads.values()}
        events: list[dict[str, Any]] = []
        final: dict[int, tuple[str, str, str | None]] = {}  # id -> (status at start, new status, reason)
        for row in ordered.itertuples(index=False):
            found = leads.get(row.email)
            if found is None:
                result.rejected.append(Reject(int(row.row), row.email, "unknown_lead"))
                continue
            lead_id = found[0]
            at = row.changed_at
            if (lead_id, row.status, at) in recorded:
                result.already_recorded += 1
                continue
            if lead_id in spam:
                result.rejected.append(Reject(int(row.row), row.email, "spam_managed_by_spam_cleanup"))
                continue
            if lead_id in latest and at < latest[lead_id]:
                result.rejected.append(Reject(int(row.row), row.email, "stale_update"))
                continue
            old = current[lead_id]
            if old == row.status:
                result.unchanged += 1
                continue
            reason = row.reason if isinstance(row.reason, str) else None
            problem = transition_error(old, row.status, reason)
            if problem:
                result.rejected.append(Reject(int(row.row), row.email, problem))
                continue
            events.append({"lead_id": lead_id, "event_type": STATUS_CHANGED, "occurred_at": _bind(store, at),
                           "flow_run_id": flow_run_id,
                           "details": {"from": old, "to": row.status, "reason": reason, "by": by}})
            final[lead_id] = (final.get(lead_id, (old,))[0], row.status, reason)
            current[lead_id] = row.status
            recorded.add((lead_id, row.status, at))
            latest[lead_id] = at
            result.applied += 1
        if final:
            guarded = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.status == bindparam("b_from"))
                       .values(status=bindparam("b_to"), status_reason=bindparam("b_reason"),
                               updated_at=bindparam("b_now")))
            conn.execute(guarded, [{"b_id": i, "b_from": f, "b_to": t, "b_reason": r, "b_now": now}
                                   for i, (f, t, r) in final.items()])
            conn.execute(EVENTS.insert(), events)
            # A closed lead gives its rep's slot back (a reopened one takes it again), in the same transaction.
            capacity.follow_status_changes(conn, [(i, f, t) for i, (f, t, _) in final.items()])
    result.rejected.sort(key=lambda r: r.row)
    return result


def import_status_file(store: Store, path: str | Path, now: datetime, by: str | None = None) -> StatusResult:
    """Read a sales-tool status export and record every understandable row; the rest come back as rejects."""
    frame = read_status_file(path)
    good, rejects = prepare_changes(frame, now)
    result = apply_status_changes(store, good, by or f"import:{Path(str(path)).name}", now)
    result.rows = len(frame)
    result.rejected = sorted([*rejects, *result.rejected], key=lambda r: r.row)
    return result


def set_status(store: Store, email: str, status: str, reason: str | None, now: datetime, by: str = "cli"
               ) -> StatusResult:
    """Change one lead's status now (the `leadflow lead status` command)."""
    frame = pd.DataFrame({"row": [1], "email": [email], "status": [status], "reason": [reason],
                          "changed_at": [pd.Timestamp(now).isoformat()]})
    good, rejects = prepare_changes(frame, now)
    result = apply_status_changes(store, good, by, now)
    result.rows = 1
    result.rejected = [*rejects, *result.rejected]
    return result
