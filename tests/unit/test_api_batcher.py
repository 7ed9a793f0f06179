"""The API's Batcher: requests queued while a run is busy share the next run; runs overlap up to its concurrency."""

from __future__ import annotations

import asyncio
import threading

import pytest

from deployments.api import Batcher


def _blocking_batcher(concurrency: int) -> tuple[Batcher, list[list[int]], threading.Event, list[int]]:
    batches: list[list[int]] = []
    release = threading.Event()
    busy = [0, 0]  # runs in progress now, most at once

    def fn(items: list[int]) -> list[object]:
        busy[0] += 1
        busy[1] = max(busy[1], busy[0])
        batches.append(list(items))
        release.wait(10)
        busy[0] -= 1
        return [ValueError("odd") if i % 2 else i * 10 for i in items]

    return Batcher(fn, concurrency=concurrency), batches, release, busy


@pytest.mark.parametrize("concurrency", [1, 3])
def test_runs_overlap_up_to_the_concurrency_and_later_items_share_a_run(concurrency):
    async def main() -> tuple[list, list[list[int]], int]:
        batcher, batches, release, busy = _blocking_batcher(concurrency)
        calls = []
        for i in range(8):
            calls.append(asyncio.ensure_future(batcher(i)))
            # One at a time, each given the time to start a run (and block in it) if a run is free.
            await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*calls, return_exceptions=True), batches, busy[1]

    results, batches, most = asyncio.run(main())
    assert [r if isinstance(r, int) else str(r) for r in results] == [0, "odd", 20, "odd", 40, "odd", 60, "odd"]
    assert most == concurrency
    # The first `concurrency` calls ran alone, at once; the rest waited and were taken together.
    assert batches[:concurrency] == [[i] for i in range(concurrency)]
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    assert len(batches) == concurrency + 1
