"""Repair Unfinished Leads: find leads whose processing a killed run left incomplete (step marks) and finish it.

The leads' step marks (leadflow/domain/progress.py) say what each one still needs. Leads are taken chunk by
chunk, in the order their chunks arrived (the chunk is the batch and receipt time of a lead's latest
submission), so accounts, routing rotation and notices come out as the uninterrupted run would have made them:
Check Spam for the unchecked, Retrieve Lead Details and Calculate Lead Score for the unscored, then the
qualification sequence, which also finishes tasks and messages of leads routed before the kill.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from leadflow.crm import progress
from leadflow.crm.store import Store
from leadflow.domain.progress import LeadStep, pending_step
from leadflow.domain.qualification import QualificationPolicy
from leadflow.domain.summary import QualificationSummary
from leadflow.io.enrichment import DomainResults
from leadflow.steps.intake import IntakeSteps
from leadflow.steps.qualification import QualificationSteps, qualify

# A lead marked this recently may belong to a run that is still working on it: repair leaves it for now.
DEFAULT_GRACE_MINUTES = 30.0


@dataclass
class RepairSummary:
    """What a repair found (unfinished leads by the step they need next) and what finishing them did."""

    dry_run: bool = False
    found: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    spam_checked: int = 0
    spam_flagged: int = 0
    scored: int = 0
    qualified: int = 0
    resumed: int = 0
    skipped_spam: int = 0
    tasks_created: dict[str, int] = field(default_factory=dict)
    messages_queued: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Unfinished leads found."""
        return sum(self.found.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {**asdict(self), "total": self.total}

    def to_text(self) -> str:
        """The summary for a terminal (counts only)."""
        found = ", ".join(f"{k} {v}" for k, v in sorted(self.found.items())) or "none"
        lines = [f"Repair{' (dry run: nothing changed)' if self.dry_run else ''}: {self.total} unfinished leads "
                 f"in {self.chunks} chunks; needing {found}"]
        if not self.dry_run and self.total:
            lines.append(f"  spam checked {self.spam_checked} (flagged {self.spam_flagged}), scored {self.scored}, "
                         f"qualified {self.qualified} (resumed {self.resumed}, spam skipped {self.skipped_spam})")
            lines.append("  tasks created " + (", ".join(f"{k} {v}" for k, v in sorted(self.tasks_created.items()))
                                               or "none"))
            lines.append("  messages queued " + (", ".join(f"{k} {v}" for k, v in
                                                           sorted(self.messages_queued.items())) or "none"))
        return "\n".join(lines)


def find_unfinished(store: Store, now: datetime, grace_minutes: float = DEFAULT_GRACE_MINUTES) -> pd.DataFrame:
    """Unfinished leads marked before the grace period, with their chunk (batch_id, received_at), oldest first."""
    before = now - timedelta(minutes=grace_minutes) if grace_minutes > 0 else None
    with store.engine.connect() as conn:
        frame = progress.incomplete_leads(conn, before)
    return frame.sort_values(["received_at", "batch_id", "lead_id"], kind="stable",
                             na_position="first").reset_index(drop=True)


def repair_leads(
    store: Store,
    intake_steps: IntakeSteps,
    qualification_steps: QualificationSteps,
    policy: QualificationPolicy,
    *,
    now: datetime,
    timezone: str,
    clock: Callable[[], datetime],
    chunk_size: int,
    dry_run: bool = False,
    grace_minutes: float = DEFAULT_GRACE_MINUTES,
    messages: str = "auto",
) -> RepairSummary:
    """Finish every unfinished lead's missing steps in order, chunk by chunk; with `dry_run` only count them.

    Scores are taken as of the chunk's arrival (the time the interrupted run scored with), so a repair the next
    night gives the scores the run would have given.
    """
    started = time.perf_counter()
    summary = RepairSummary(dry_run=dry_run)
    pending = find_unfinished(store, now, grace_minutes)
    summary.found = dict(Counter(pending_step(m) for m in pending["step_mark"].tolist()))
    groups = [] if pending.empty else list(pending.groupby(["received_at", "batch_id"], sort=False, dropna=False))
    summary.chunks = len(groups)
    if dry_run or pending.empty:
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary
    lookups = DomainResults()
    qualified = QualificationSummary(policy_version=policy.version)
    for (received_at, batch_id), group in groups:
        marks = dict(zip(group["lead_id"].astype("int64").tolist(), group["step_mark"].astype("int64").tolist(),
                         strict=True))
        ids = list(marks)
        arrived = now if pd.isna(received_at) else pd.Timestamp(received_at).to_pydatetime()
        unchecked = [i for i in ids if marks[i] <= LeadStep.CREATED]
        if unchecked:
            # No chunk in memory: the batch's stored rows are judged, and any other batch's still waiting.
            flagged = intake_steps.check_spam(unchecked, str(batch_id), now, None, unchecked)
            summary.spam_checked += len(unchecked)
            summary.spam_flagged += int(flagged.get("flagged", 0))
        unscored = [i for i in ids if marks[i] <= LeadStep.DETAILED]
        if unscored:
            details = intake_steps.retrieve_lead_details(unscored, lookups, now)
            summary.scored += intake_steps.calculate_lead_score(details.leads, arrived, str(batch_id)).scored
        qualify(qualification_steps, ids, policy, qualified, replay=False, timezone=timezone, clock=clock,
                chunk_size=chunk_size, messages=messages)
    summary.qualified, summary.resumed, summary.skipped_spam = (qualified.leads, qualified.resumed,
                                                                qualified.skipped_spam)
    summary.tasks_created, summary.messages_queued = qualified.tasks_created, qualified.messages_queued
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
