"""Task shell of Find Dead Batches: asks Prefect about the batches' flow runs and marks dead CLI runs Crashed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.states import Crashed

from leadflow.steps import batches as steps
from tasks.common import DB_TASK, store


@contextmanager
def _prefect_runs() -> Iterator[tuple[Callable[[str], str | None], Any]]:
    """A flow-run state lookup (None when the API cannot say) and the client, for one task run."""
    try:
        client = get_client(sync_client=True)
        client.__enter__()
    except Exception:
        yield (lambda _run_id: None), None
        return

    def state_of(run_id: str) -> str | None:
        try:
            run = client.read_flow_run(UUID(run_id))
        except Exception:  # unknown run (another API's), malformed id, API unreachable: no verdict
            return None
        return run.state_type.value if run.state_type is not None else None

    try:
        yield state_of, client
    finally:
        client.__exit__(None, None, None)


def _mark_runs_crashed(client: Any, summary: steps.DeadBatchSummary, state_of: Callable[[str], str | None]) -> int:
    """Set the flow runs of batches whose process died (a killed CLI run stays RUNNING for good) to Crashed."""
    marked = 0
    for dead in summary.crashed:
        if client is None or not dead.flow_run_id or dead.reason != "owner_process_gone":
            continue
        state = state_of(dead.flow_run_id)
        if state is None or state in steps.FINAL_RUN_STATES:
            continue
        try:
            client.set_flow_run_state(UUID(dead.flow_run_id), Crashed(
                message=f"intake batch {dead.batch_id}: its process is gone"), force=True)
            marked += 1
        except Exception:  # the batch is marked and ops are told; the run's state is cosmetic
            continue
    return marked


@task(name="Find Dead Batches", **DB_TASK)
def find_dead_batches(dry_run: bool = False) -> dict[str, Any]:
    """Mark intake batches whose run is gone `crashed`, alert ops once per batch, and crash their dead flow runs.

    A dry run only counts them.
    """
    with _prefect_runs() as (state_of, client):
        summary = steps.find_dead_batches(store(), run_state=state_of, dry_run=dry_run)
        runs_marked = 0 if dry_run else _mark_runs_crashed(client, summary, state_of)
    if summary.crashed:
        get_run_logger().warning("%s %d intake batches crashed (%s); %d flow runs set to Crashed",
                                 "Would mark" if dry_run else "Marked", len(summary.crashed),
                                 dict(summary.by_reason), runs_marked)
    return {**summary.as_dict(), "flow_runs_marked": runs_marked}
