"""A CRM export's own state of its leads (status, lifecycle stage, owner, converted, opt-outs) and message freshness.

Pure pandas: the status map policy, flag parsing, what each submission says about its lead's state, which rep an
owner column names, and which leads are fresh enough to be messaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from leadflow.config.policy import VersionedPolicy, load_policy
from leadflow.domain.status import RESERVED, STATUSES, parse_status

# The columns of a normalized submission that carry the exporting CRM's state.
STATE_COLUMNS: tuple[str, ...] = ("crm_status", "crm_status_original", "crm_unmapped", "owner", "converted",
                                  "email_opt_out", "do_not_contact")
MESSAGE_MODES: tuple[str, ...] = ("auto", "none", "all")
MessageMode = Literal["auto", "none", "all"]
# Why a lead's messages were held back (QualificationSummary.messages_held_back).
HELD_STALE = "older_than_window"
HELD_BY_OPTION = "messages_none"
HELD_CLOSED = "converted_or_closed"
Token = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_]*$")]
# What one flag cell may say, after lower-casing; the opt-out and do-not-contact words are read for those columns.
_FLAG_WORDS: dict[str, bool] = {
    **dict.fromkeys(["true", "t", "yes", "y", "1", "1.0", "on", "x", "checked", "\u2713", "\u2714"], True),
    **dict.fromkeys(["false", "f", "no", "n", "0", "0.0", "off", "unchecked"], False),
}
_OPT_OUT_WORDS: dict[str, bool] = {
    **dict.fromkeys(["opted out", "opted-out", "opt out", "opt-out", "optout", "unsubscribed", "unsubscribe",
                     "do not email", "cleaned"], True),
    **dict.fromkeys(["opted in", "opted-in", "opt in", "opt-in", "optin", "subscribed", "not opted out"], False),
}
_DO_NOT_CONTACT_WORDS: dict[str, bool] = {
    **dict.fromkeys(["do not contact", "do not call", "dnc", "blocked"], True),
    **dict.fromkeys(["allow", "contact", "ok to contact"], False),
}
_CONVERTED_WORDS: dict[str, bool] = {"converted": True, "not converted": False, "unconverted": False}


class StatusMap(VersionedPolicy):
    """How an export's status and lifecycle values map onto leadflow's statuses (keys folded to snake case)."""

    lead_statuses: dict[Token, str] = Field(description="Lead status values (Salesforce, HubSpot, Zoho, ...).")
    lifecycle_stages: dict[Token, str] = Field(description="Lifecycle stages (HubSpot and the like).")
    closed_statuses: list[str] = Field(min_length=1, description="Statuses of leads that are no longer worked: "
                                                                 "never spam, never messaged, never routed.")

    @field_validator("lead_statuses", "lifecycle_stages")
    @classmethod
    def _known_targets(cls, mapping: dict[str, str]) -> dict[str, str]:
        wrong = sorted({v for v in mapping.values() if v not in STATUSES or v in RESERVED})
        if wrong:
            raise ValueError(f"unknown or reserved leadflow statuses {wrong}")
        return mapping

    @model_validator(mode="after")
    def _known_closed(self) -> StatusMap:
        wrong = sorted(set(self.closed_statuses) - set(STATUSES))
        if wrong:
            raise ValueError(f"closed_statuses names unknown statuses {wrong}")
        return self

    def lookup(self, value: Any, *, lifecycle: bool = False) -> str | None:
        """Leadflow's status for one export value: the map first, then leadflow's own names and aliases."""
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        token = fold(value)
        table = self.lifecycle_stages if lifecycle else self.lead_statuses
        found = table.get(token)
        if found is None and not lifecycle:
            found = parse_status(token)
        return None if found in RESERVED else found


def load_status_map(name_or_path: str = "status_map") -> StatusMap:
    """The status map policy from leadflow/config/policies (or a path)."""
    return load_policy(StatusMap, name_or_path)


@lru_cache(maxsize=1)
def default_status_map() -> StatusMap:
    """The shipped status map, read once per process."""
    return load_status_map()


def fold(value: Any) -> str:
    """A status value as a map key: lower case, runs of anything but letters and digits as one '_'."""
    return re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")


def parse_flag(values: pd.Series, words: dict[str, bool] | None = None) -> pd.Series:
    """Nullable booleans from a flag column: real booleans, 1/0, true/false, yes/no, x, plus the column's `words`.

    A cell that says nothing recognisable is NA (the lead keeps what it had), never a guess.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    table = {**_FLAG_WORDS, **(words or {})}
    text = values.astype("string").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    out = text.map(table)
    blank = text.fillna("").eq("").to_numpy(dtype=bool)
    result = pd.Series(out.to_numpy(dtype=object, na_value=None), index=values.index, dtype="boolean")
    return result.mask(blank)


def parse_opt_out(values: pd.Series) -> pd.Series:
    """An opt-out column (HasOptedOutOfEmail, Unsubscribed, 'Opted Out') as nullable booleans: True = opted out."""
    return parse_flag(values, _OPT_OUT_WORDS)


def parse_do_not_contact(values: pd.Series) -> pd.Series:
    """A do-not-contact or do-not-call column as nullable booleans: True = never contact."""
    return parse_flag(values, _DO_NOT_CONTACT_WORDS)


def parse_converted(values: pd.Series) -> pd.Series:
    """A converted column (IsConverted, CONVERTED) as nullable booleans."""
    return parse_flag(values, _CONVERTED_WORDS)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    text = frame[column].astype("string").str.strip()
    return text.mask(text.fillna("").eq(""))


def has_state(frame: pd.DataFrame) -> bool:
    """Whether any CRM state column of a prepared chunk holds a value (most files carry none)."""
    columns = [c for c in ("lead_status", "lifecycle_stage", "owner", "converted", "email_opt_out",
                           "do_not_contact") if c in frame.columns]
    return bool(columns) and bool(frame[columns].notna().to_numpy().any())


def state_of(prepared: pd.DataFrame, status_map: StatusMap) -> pd.DataFrame:
    """Each row's CRM state: leadflow status and the original value it came from, owner, flags.

    The status is, in order: `converted` when the converted column says so; a closed status from either the lead
    status or the lifecycle stage; else the lead status's mapping; else the lifecycle stage's. The original value
    is the export's own text that decided it.
    """
    status_text, stage_text = _text(prepared, "lead_status"), _text(prepared, "lifecycle_stage")
    by_status = status_text.map(lambda v: status_map.lookup(v), na_action="ignore").astype("string")
    by_stage = stage_text.map(lambda v: status_map.lookup(v, lifecycle=True), na_action="ignore").astype("string")
    converted = parse_converted(_text(prepared, "converted"))
    closed = list(status_map.closed_statuses)
    status = by_status.where(by_status.isin(closed).fillna(False), by_stage.where(by_stage.isin(closed).fillna(False)))
    original = status_text.where(by_status.isin(closed).fillna(False),
                                 stage_text.where(by_stage.isin(closed).fillna(False)))
    open_status = by_status.notna() & status.isna()
    status, original = status.mask(open_status, by_status), original.mask(open_status, status_text)
    by_lifecycle = by_stage.notna() & status.isna()
    status, original = status.mask(by_lifecycle, by_stage), original.mask(by_lifecycle, stage_text)
    is_converted = converted.fillna(False).to_numpy(dtype=bool)
    set_by_flag = is_converted & status.ne("converted").fillna(True).to_numpy(dtype=bool)
    status = status.mask(is_converted, "converted")
    original = original.mask(set_by_flag, "converted: " + _text(prepared, "converted").fillna(""))
    unmapped = ("lead_status:" + status_text.str.slice(0, 64)).where(by_status.isna())
    unmapped = unmapped.fillna(("lifecycle_stage:" + stage_text.str.slice(0, 64)).where(by_stage.isna()))
    return pd.DataFrame({
        "crm_status": status.astype("string"),
        "crm_status_original": original.astype("string").str.slice(0, 200),
        "crm_unmapped": unmapped.astype("string"),
        "owner": _text(prepared, "owner").str.slice(0, 320),
        "converted": converted,
        "email_opt_out": parse_opt_out(_text(prepared, "email_opt_out")),
        "do_not_contact": parse_do_not_contact(_text(prepared, "do_not_contact")),
    }, index=prepared.index)


def with_opt_out(opt_in: pd.Series, opt_out: pd.Series) -> pd.Series:
    """Consent after an opt-out column: an opt-out always wins; 'not opted out' says nothing about opting in."""
    return opt_in.astype("boolean").mask(opt_out.fillna(False).to_numpy(dtype=bool), False)


def match_owners(owners: pd.Series, reps: pd.DataFrame) -> pd.Series:
    """The active rep each owner value names (by email or by name, any case), NA where none does."""
    if owners.empty or reps.empty:
        return pd.Series(pd.NA, index=owners.index, dtype="Int64")
    active = reps.loc[reps["active"].astype(bool).to_numpy()]
    by_key: dict[str, int] = {}
    for rep_id, email, name in zip(active["id"], active["email"], active["name"], strict=True):
        for key in (str(email or "").strip().casefold(), " ".join(str(name or "").split()).casefold()):
            if key:
                by_key.setdefault(key, int(rep_id))
    keys = owners.astype("string").str.split().str.join(" ").str.casefold()
    return keys.map(by_key).astype("Int64")


def imported_reason(original: str | None, status: str) -> str | None:
    """The status reason an imported status carries: the export's own value as a slug (disqualified needs one)."""
    if status != "disqualified":
        return None
    slug = fold(original or "")[:64]
    return slug if slug and slug[0].isalnum() else "imported"


@dataclass
class Freshness:
    """Which leads of a batch get live treatment (tasks with an SLA, messages) and which are recorded as history."""

    historical: np.ndarray
    messages: np.ndarray
    held_back: dict[str, int] = field(default_factory=dict)


def freshness(last_touch: pd.Series, now: datetime, window_hours: float, mode: str,
              qualified_before: pd.Series | np.ndarray | None = None) -> Freshness:
    """Split leads by their triggering (latest) submission: within `window_hours` of now is fresh.

    `auto`: fresh leads are worked and messaged, older ones recorded as history (no messages, no SLA tasks);
    `none`: the same, but nobody is messaged; `all`: everyone is treated as fresh. A lead qualified before (live,
    when it was fresh) is never turned into history by a later run, only left without messages.
    """
    if mode not in MESSAGE_MODES:
        raise ValueError(f"messages must be one of {', '.join(MESSAGE_MODES)}, not {mode!r}")
    at = pd.to_datetime(last_touch, utc=True, errors="coerce", format="ISO8601")
    cutoff = pd.Timestamp(now).tz_convert("UTC") - pd.Timedelta(hours=window_hours)
    # A lead without a known touch time cannot be shown to be fresh: it is history.
    stale = (at.isna() | (at < cutoff)).to_numpy(dtype=bool)
    if mode == "all":
        stale = np.zeros(len(at), dtype=bool)
    held: dict[str, int] = {}
    if stale.any():
        held[HELD_STALE] = int(stale.sum())
    messages = ~stale
    if mode == "none" and messages.any():
        held[HELD_BY_OPTION] = int(messages.sum())
        messages = np.zeros(len(at), dtype=bool)
    before = (np.zeros(len(at), dtype=bool) if qualified_before is None
              else np.asarray(pd.Series(qualified_before).fillna(False), dtype=bool))
    return Freshness(historical=stale & ~before, messages=messages, held_back=held)


def add_state(subs: pd.DataFrame, prepared: pd.DataFrame, status_map: StatusMap | None = None) -> pd.DataFrame:
    """Normalized submissions with their CRM state columns, and consent withdrawn where an opt-out says so."""
    if not has_state(prepared):
        empty = {c: pd.Series(pd.NA, index=subs.index, dtype="string") for c in STATE_COLUMNS[:4]}
        flags = {c: pd.Series(pd.NA, index=subs.index, dtype="boolean") for c in STATE_COLUMNS[4:]}
        return subs.assign(**empty, **flags)
    state = state_of(prepared, status_map or default_status_map())
    out = subs.assign(**{c: state[c] for c in STATE_COLUMNS})
    out["email_opt_in"] = with_opt_out(out["email_opt_in"], state["email_opt_out"])
    return out
