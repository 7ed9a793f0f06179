"""How far a lead's processing got: the step marks that intake and qualification write on each lead.

A lead's `step_mark` names the last step finished for its latest submissions, written in the same transaction
as that step's own writes, so a killed run's re-run, a resumed batch or `leadflow repair` reads from the CRM
which steps a lead still needs, and runs them in order (a lead is never qualified before it is scored).
"""

from __future__ import annotations

from enum import IntEnum


class LeadStep(IntEnum):
    """The last step a lead finished; each step moves a lead on from the one before only."""

    CREATED = 0  # stored by Create Lead Entry: needs Check Spam
    SPAM_CHECKED = 1  # needs Retrieve Lead Details
    DETAILED = 2  # needs Calculate Lead Score
    SCORED = 3  # needs lead qualification
    ASSIGNED = 4  # qualified and routed (Assign Lead Owner): still needs its tasks and messages
    COMPLETE = 5  # nothing left to do (also every lead stored before marks existed)


# What each pending step is called in summaries (repair's "found" counts), by the mark a lead is at.
PENDING_STEP = {
    LeadStep.CREATED: "spam_check",
    LeadStep.SPAM_CHECKED: "details",
    LeadStep.DETAILED: "score",
    LeadStep.SCORED: "qualification",
    LeadStep.ASSIGNED: "tasks_and_messages",
}


def pending_step(mark: int) -> str:
    """The name of the next step a lead at this mark needs ("none" when it is complete)."""
    return PENDING_STEP.get(LeadStep(int(mark)), "none")
