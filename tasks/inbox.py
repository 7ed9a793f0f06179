"""Task shells for the lead_inbox: claim a chunk of posted leads, mark it processed once intake wrote it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pandas as pd
from prefect import get_run_logger, task

from leadflow.crm import inbox
from leadflow.domain.inbox import canonical_frame
from tasks.common import DB_TASK, current_flow_run_id, store, utc_now

# A continuous run stops after this many chunks so that it ends even while leads keep arriving; the next
# scheduled run carries on.
MAX_CHUNKS_PER_RUN = 20


@task(name="Claim Inbox Leads", **DB_TASK)
def claim_inbox_leads(limit: int, replay: bool = False) -> inbox.InboxClaim:
    """Atomically claim the oldest unprocessed rows of lead_inbox for this run."""
    # The run's id is the claim token: if the process dies, the runner's on_crashed hook gives the rows back.
    claim = inbox.claim_rows(store(), limit, now=utc_now(), replay=replay, token=current_flow_run_id())
    get_run_logger().info("Claimed %d inbox rows", len(claim))
    return claim


@task(name="Mark Inbox Leads Processed", **DB_TASK)
def mark_inbox_leads(claim: inbox.InboxClaim, batch_id: str) -> int:
    """Mark a claimed chunk processed once intake has stored it (as submissions or quarantine records)."""
    return inbox.mark_processed(store(), claim, batch_id, utc_now())


class InboxReader:
    """Reads lead_inbox chunk by chunk for one intake run, and marks each chunk once the run has written it."""

    def __init__(self, chunk_size: int, column_map: dict[str, str] | None = None, replay: bool = False) -> None:
        self.chunk_size = chunk_size
        self.column_map = column_map
        self.replay = replay
        self.open_claims: deque[inbox.InboxClaim] = deque()
        self.marked = 0
        self.chunks = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return self

    def __next__(self) -> pd.DataFrame:
        """The next claimed chunk; the end for now when the inbox is empty (asking again later claims again).

        Right after a partial claim the inbox was just drained: until that chunk is written, asking again ends
        without a claim (no task run on the way to the rep alert). Once it is written, the run asks once more, so
        leads posted meanwhile (whose own event-triggered runs the concurrency limit may have cancelled) are
        taken by this run instead of waiting for the next scheduled one.
        """
        if self.chunks >= MAX_CHUNKS_PER_RUN or (self.open_claims and len(self.open_claims[-1]) < self.chunk_size):
            raise StopIteration
        claim = claim_inbox_leads(self.chunk_size, self.replay)
        if not claim:
            raise StopIteration
        self.chunks += 1
        self.open_claims.append(claim)
        return canonical_frame(claim.frame, self.column_map)

    def has_work(self) -> bool:
        """Whether the inbox holds rows this run could claim (an empty inbox needs no batch, no artifacts)."""
        return inbox.has_claimable_rows(store(), now=utc_now())

    def chunk_written(self, batch_id: str) -> None:
        """The oldest open chunk is stored: mark its rows processed (chunks finish in the order they were read)."""
        self.marked += mark_inbox_leads(self.open_claims.popleft(), batch_id)

    def release(self) -> None:
        """Hand the rows of unfinished chunks back to the inbox at once (the run failed)."""
        while self.open_claims:
            claim = self.open_claims.popleft()
            try:
                inbox.release_claim(store(), claim)
            except Exception as exc:
                # The claim then expires after the claim timeout; the run's own error is the one to report.
                get_run_logger().warning("Could not release %d inbox rows: %s", len(claim), type(exc).__name__)
