"""Keep a CRM export's own state: imported statuses, owners, opt-outs and do-not-contact, inside Create Lead Entry."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.crm import assignments
from leadflow.crm import crm_state as state_store
from leadflow.crm.status import record_status_changes
from leadflow.crm.store import Store
from leadflow.domain import crm_state
from leadflow.domain.submissions import ROW_COLUMN

IMPORTED_BY = "import:crm_state"


@dataclass
class CrmStateResult:
    """What a chunk's CRM state did to its leads, for the intake summary (counts only, no personal data)."""

    statuses_imported: int = 0
    statuses_not_applied: Counter = field(default_factory=Counter)
    unmapped: Counter = field(default_factory=Counter)
    owners_kept: int = 0
    owners_unmatched: int = 0
    opted_out: int = 0
    do_not_contact: int = 0

    def add(self, other: CrmStateResult) -> None:
        """Fold in the counts of another part of the same chunk."""
        self.statuses_imported += other.statuses_imported
        self.statuses_not_applied.update(other.statuses_not_applied)
        self.unmapped.update(other.unmapped)
        self.owners_kept += other.owners_kept
        self.owners_unmatched += other.owners_unmatched
        self.opted_out += other.opted_out
        self.do_not_contact += other.do_not_contact

    def as_dict(self) -> dict[str, Any]:
        """Plain counts, leaving out what did not happen."""
        out: dict[str, Any] = {
            "statuses_imported": self.statuses_imported, "statuses_not_applied": dict(self.statuses_not_applied),
            "unmapped_values": dict(self.unmapped), "owners_kept": self.owners_kept,
            "owners_unmatched_routed_as_usual": self.owners_unmatched, "opted_out": self.opted_out,
            "do_not_contact": self.do_not_contact,
        }
        return {k: v for k, v in out.items() if v}


def _per_lead(frame: pd.DataFrame, column: str, ids: pd.Series) -> pd.DataFrame:
    """The newest row (by submitted_at, then file order) of each lead that has a value in `column`."""
    rows = frame.loc[frame[column].notna().to_numpy(dtype=bool)].assign(lead_id=ids)
    rows = rows.loc[rows["lead_id"].notna()]
    return rows.sort_values(["submitted_at", ROW_COLUMN], kind="stable").drop_duplicates("lead_id", keep="last")


def apply_crm_state(store: Store, conn: Any, subs: pd.DataFrame, lead_ids: dict[str, int], *, now: datetime,
                    flow_run_id: str | None) -> CrmStateResult:
    """Record what the export says about its leads, in Create Lead Entry's transaction.

    Statuses become status_changed events dated at their row's time and carrying the export's own value (any
    transition: the exporting CRM is the authority on its leads; never spam, which spam-cleanup owns); an opt-out
    withdraws consent and do-not-contact is set (both never undone by an import); an owner naming an active rep
    (email or name) is kept, any other owner is left to routing and counted.
    """
    result = CrmStateResult()
    if "crm_status" not in subs.columns or not subs[list(crm_state.STATE_COLUMNS)].notna().to_numpy().any():
        return result
    ids = subs["email"].map(lead_ids)
    result.unmapped.update(subs["crm_unmapped"].dropna().tolist())
    statuses = subs.loc[subs["crm_status"].notna().to_numpy(dtype=bool) & ids.notna().to_numpy(dtype=bool)]
    if not statuses.empty:
        changes = pd.DataFrame({
            "row": statuses[ROW_COLUMN].to_numpy(), "email": statuses["email"].to_numpy(),
            "status": statuses["crm_status"].to_numpy(dtype=object),
            "reason": [crm_state.imported_reason(o, s) for o, s in zip(
                statuses["crm_status_original"].astype(object).where(statuses["crm_status_original"].notna(), None),
                statuses["crm_status"], strict=True)],
            "changed_at": pd.to_datetime(statuses["submitted_at"], utc=True).reset_index(drop=True),
            "original": statuses["crm_status_original"].astype(object).where(
                statuses["crm_status_original"].notna(), None).to_numpy(),
        })
        recorded = record_status_changes(conn, store, changes, IMPORTED_BY, now, flow_run_id,
                                         enforce_transitions=False)
        result.statuses_imported = recorded.applied
        for reject in recorded.rejected:
            result.statuses_not_applied[reject.reason.split(":")[0]] += 1
    opted = subs["email_opt_out"].fillna(False).to_numpy(dtype=bool)
    if opted.any():
        chosen = sorted({int(i) for i in ids[opted].dropna()})
        state_store.withdraw_consent(conn, store, chosen, now)
        result.opted_out = len(chosen)
    blocked = subs["do_not_contact"].fillna(False).to_numpy(dtype=bool)
    if blocked.any():
        chosen = sorted({int(i) for i in ids[blocked].dropna()})
        state_store.mark_do_not_contact(conn, store, chosen, now)
        result.do_not_contact = len(chosen)
    owned = _per_lead(subs, "owner", ids)
    if not owned.empty:
        reps = crm_state.match_owners(owned["owner"], assignments.load_reps(conn))
        matched = reps.notna().to_numpy(dtype=bool)
        state_store.keep_owners(conn, store, dict(zip(owned.loc[matched, "lead_id"].astype(int).tolist(),
                                                      reps[matched].astype(int).tolist(), strict=True)), now)
        result.owners_kept, result.owners_unmatched = int(matched.sum()), int((~matched).sum())
    return result
