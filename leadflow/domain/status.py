"""Lead statuses: the vocabulary, allowed transitions, and understanding the rows of a status export."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.domain.normalize import is_valid_email

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


# --- the rows of a status export ----------------------------------------------------------------------------


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


def prepare_changes(frame: pd.DataFrame, now: datetime) -> tuple[pd.DataFrame, list[Reject]]:
    """Parse rows (email, status, reason, changed_at); rows that cannot be understood become rejects."""
    email = frame["email"].astype("string").str.strip().str.lower()
    status = frame["status"].map(parse_status)
    reason = frame["reason"].map(parse_reason) if "reason" in frame.columns else pd.Series(None, index=frame.index)
    text_at = frame["changed_at"].astype("string").str.strip()
    at = pd.to_datetime(text_at.where(text_at.str.len() > 0), utc=True, errors="coerce", format="mixed")
    problems = pd.Series("", index=frame.index, dtype="object")

    def flag(mask: pd.Series, code: str) -> None:
        mask = mask.fillna(True).astype(bool) & (problems == "")
        problems.loc[mask] = code

    flag(email.isna() | (email == ""), "missing_email")
    flag(~is_valid_email(email), "invalid_email")
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
