"""Find Dead Batches: intake batches left `running` by a run that is gone are marked `crashed` and reported once.

A batch names its owner: the host, pid and start time of the process that runs it, and its Prefect flow run. The
owner is gone when, on this host, no process with that pid and start time lives (killed, out of memory, the machine
restarted), or, from anywhere, when the flow run has ended (Crashed, Failed, Cancelled, Completed: Prefect's own
crash detection of runs that a runner or worker ran) while the batch still says `running`. Such a batch becomes
`crashed`, ops get one alert (the outbox key is the run's, so Prefect's own crash hook and this step never alert
twice), and its rows wait for the next intake of the same input or `leadflow repair` to complete them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from leadflow.crm import submissions
from leadflow.crm.store import Store
from leadflow.io.processes import ProcessOwner, host_name, owner_alive, this_process

logger = logging.getLogger("leadflow.batches")

# Prefect state types after which a flow run does nothing more.
FINAL_RUN_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
FLOW_NAME = "lead-intake"


@dataclass
class DeadBatch:
    """A batch found dead: its id, its flow run and why its owner counts as gone."""

    batch_id: str
    flow_run_id: str | None
    reason: str


@dataclass
class DeadBatchSummary:
    """What Find Dead Batches saw: running batches checked, those marked crashed (and why), alerts queued."""

    checked: int = 0
    crashed: list[DeadBatch] = field(default_factory=list)
    alerts_queued: int = 0
    by_reason: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Plain counts and ids, for summaries and logs."""
        return {"checked": self.checked, "crashed": len(self.crashed), "alerts_queued": self.alerts_queued,
                "by_reason": dict(self.by_reason), "batch_ids": [b.batch_id for b in self.crashed]}


def why_gone(batch: dict[str, Any], here: str, run_state: Callable[[str], str | None] | None,
             me: ProcessOwner | None = None) -> str | None:
    """Why a running batch's owner is gone (a reason code), or None while it may still be at work.

    A batch of this host is judged by its process: dead, or its pid now another process's. A batch of another host
    (or one recorded before owners were) is judged by its flow run when the Prefect API answers.
    """
    pid = batch.get("owner_pid")
    if batch.get("owner_host") == here and pid:
        if me is not None and pid == me.pid:
            return None  # this very process (a backfill runs several intakes at once)
        if not owner_alive(int(pid), batch.get("owner_started_at")):
            return "owner_process_gone"
        return None
    run_id = batch.get("flow_run_id")
    if run_id and run_state is not None:
        state = run_state(str(run_id))
        if state is not None and state.upper() in FINAL_RUN_STATES:
            return f"flow_run_{state.lower()}"
    return None


def _alert_text(batch: dict[str, Any], reason: str) -> str:
    name = PurePosixPath(str(batch.get("origin") or "").rstrip("/")).name or "input"
    return (f"intake batch {batch['id']} of {name} was left running ({reason}); marked crashed. The next intake "
            "of the same input or `leadflow repair` completes it.")


def find_dead_batches(
    store: Store,
    *,
    run_state: Callable[[str], str | None] | None = None,
    now: datetime | None = None,
    queue_alert: Callable[..., Any] | None = None,
    dry_run: bool = False,
) -> DeadBatchSummary:
    """Mark every running batch whose owner is gone `crashed` and queue one ops alert for each; returns a summary.

    `run_state` answers a flow run's state type (`RUNNING`, `CRASHED`, ...) or None when unknown (no API, no such
    run); without it only this host's batches can be judged. `queue_alert` defaults to the ops alert of a failed
    flow run (steps/delivery.py), keyed by the batch's flow run (else the batch), so each is reported once.
    `dry_run` finds them and changes nothing.
    """
    if queue_alert is None:
        from leadflow.steps.delivery import queue_ops_alert

        queue_alert = queue_ops_alert
    now = now or datetime.now(UTC)
    here, me = host_name(), this_process()
    summary = DeadBatchSummary()
    for batch in submissions.running_batches(store):
        summary.checked += 1
        reason = why_gone(batch, here, run_state, me)
        if reason is None or not (dry_run or submissions.mark_batch_crashed(store, batch["id"], reason, now)):
            continue
        run_id = batch.get("flow_run_id")
        summary.crashed.append(DeadBatch(batch_id=batch["id"], flow_run_id=run_id, reason=reason))
        summary.by_reason[reason] += 1
        if dry_run:
            continue
        logger.warning("Intake batch %s was left running (%s): marked crashed", batch["id"], reason)
        try:
            queue_alert(FLOW_NAME, f"batch {batch['id']}", str(run_id or f"batch-{batch['id']}"), "Crashed",
                        _alert_text(batch, reason), store=store)
            summary.alerts_queued += 1
        except Exception as exc:
            # The batch is marked; the alert is only lost if the outbox cannot be written, which the log says.
            logger.error("ALERT could not be queued for crashed batch %s: %s", batch["id"], type(exc).__name__)
    return summary
