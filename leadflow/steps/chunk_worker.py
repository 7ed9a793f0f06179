"""A helper process for big intake files: it checks and normalizes chunk N+1 while the flow writes chunk N.

Checking (Great Expectations) and normalizing are CPU-bound pandas work. In a worker thread they share the
flow process's GIL with the database steps; in a process of their own they run on the second core. The
process is started with the run for a big file (then it also checks the first chunk while the flow normalizes it),
else only once an input turns out to have a second chunk, so a small file or an inbox run never pays for it. It
imports no Prefect: the task shells in `tasks/intake.py` stay the units the UI shows.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from data_checks.intake import check_intake_batch, check_intake_columns, check_intake_rows
from data_checks.runner import CheckOutcome
from leadflow.domain import submissions as intake
from leadflow.domain.normalize import FieldOptions
from leadflow.io.processes import die_with_parent
from leadflow.io.sources import ROW_COLUMN

# Prepared chunks kept in the worker between the check and the normalize call, so a chunk crosses the process
# boundary once each way (raw in; rejected rows and clean submissions out).
_kept: dict[str, pd.DataFrame] = {}
COLUMNS_FAILED = "columns"
BATCH_FAILED = "batch"


@dataclass
class PreparedCheck:
    """A prepared chunk without its blank rows, and what the intake suites said about it."""

    prepared: pd.DataFrame
    outcome: CheckOutcome
    blank_rows: int
    batch_failed: bool = False


def prepare_chunk(raw: pd.DataFrame, mapping: dict[str, str], default_source: str | None,
                  fields: FieldOptions | None = None) -> tuple[pd.DataFrame, int]:
    """A raw chunk in canonical columns without its blank rows, and how many blank rows it had."""
    prepared = intake.prepare_batch(raw, mapping, default_source, fields)
    blank = intake.blank_rows(prepared)
    return prepared.loc[~blank], int(blank.sum())


def check_prepared(prepared: pd.DataFrame, now: datetime, tolerance: pd.Timedelta,
                   columns: list[str] | None = None) -> tuple[CheckOutcome, str | None]:
    """Run the intake suites on a prepared chunk; the second value names the suite that failed the batch, if any.

    `columns` (the mapped input's columns) first runs the required-columns suite, for a run whose input was
    inspected without Great Expectations. A failed suite skips the ones after it. Failures are returned, not
    raised: from the worker they cross the process boundary as data, and the flow raises them.
    """
    if columns is not None:
        outcome = check_intake_columns(columns)
        if outcome.failures:
            return outcome, COLUMNS_FAILED
    batch_outcome = check_intake_batch(prepared)
    if batch_outcome is not None and batch_outcome.failures:
        return batch_outcome, BATCH_FAILED
    return check_intake_rows(prepared, now, tolerance), None


def prepare_and_check(raw: pd.DataFrame, mapping: dict[str, str], default_source: str | None, now: datetime,
                      tolerance: pd.Timedelta, fields: FieldOptions | None = None) -> PreparedCheck:
    """Prepare a raw chunk, drop its blank rows and check it; a batch-level failure skips the row checks."""
    prepared, blank_rows = prepare_chunk(raw, mapping, default_source, fields)
    outcome, failed = check_prepared(prepared, now, tolerance)
    return PreparedCheck(prepared=prepared, outcome=outcome, blank_rows=blank_rows, batch_failed=failed is not None)


@dataclass
class CheckedChunk:
    """What checking a raw chunk gave: the rejected rows, the outcome, and the token of the kept chunk."""

    token: str
    rejected: pd.DataFrame
    outcome: CheckOutcome
    rows: int
    blank_rows: int
    seconds: float
    batch_failed: bool = False


def check_chunk(raw: pd.DataFrame, mapping: dict[str, str], default_source: str | None, now: datetime,
                tolerance: pd.Timedelta, fields: FieldOptions | None = None) -> CheckedChunk:
    """Prepare and check a raw chunk (in the worker); a batch-level failure comes back as `batch_failed`."""
    started = time.perf_counter()
    done = prepare_and_check(raw, mapping, default_source, now, tolerance, fields)
    prepared = done.prepared
    if done.batch_failed:
        return CheckedChunk(token="", rejected=prepared.iloc[:0], outcome=done.outcome, rows=len(prepared),
                            blank_rows=done.blank_rows, seconds=time.perf_counter() - started, batch_failed=True)
    rejected = prepared[ROW_COLUMN].isin(list(done.outcome.row_reasons))
    token = uuid.uuid4().hex
    _kept[token] = prepared.loc[~rejected]
    return CheckedChunk(token=token, rejected=prepared.loc[rejected], outcome=done.outcome, rows=len(prepared),
                        blank_rows=done.blank_rows, seconds=time.perf_counter() - started)


def normalize_chunk(token: str) -> tuple[pd.DataFrame, float]:
    """Normalize the accepted rows of a chunk checked before (in the worker) and forget the chunk."""
    started = time.perf_counter()
    return intake.normalize_batch(_kept.pop(token)), time.perf_counter() - started


def _warm_up() -> None:
    """Import Great Expectations and build its context while the flow writes its first chunk."""
    from data_checks.runner import gx_context

    gx_context()


class ChunkWorker:
    """One spawned process that checks and normalizes chunks in order, for one intake run."""

    def __init__(self) -> None:
        # spawn, not fork: the flow process runs threads (Prefect's event loop, the task runner). The process is
        # started here, by this thread: it dies with this process, even a killed one (the kernel's death signal
        # follows the starting thread, so only the main thread may set it).
        main_thread = threading.current_thread() is threading.main_thread()
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=die_with_parent, initargs=(os.getpid(), main_thread))
        self._pool.submit(_warm_up)

    @staticmethod
    def available() -> bool:
        """Whether this process may start one (a daemonic process, such as a Dask worker, may not)."""
        return not multiprocessing.current_process().daemon

    def check(self, raw: pd.DataFrame, mapping: dict[str, str], default_source: str | None, now: datetime,
              tolerance: pd.Timedelta, fields: FieldOptions | None = None) -> CheckedChunk:
        """Check a raw chunk in the worker."""
        return self._pool.submit(check_chunk, raw, mapping, default_source, now, tolerance, fields).result()

    def submit_check(self, prepared: pd.DataFrame, now: datetime, tolerance: pd.Timedelta,
                     columns: list[str] | None = None) -> Future[tuple[CheckOutcome, str | None]]:
        """Start checking an already prepared chunk in the worker (`check_prepared`) and return at once."""
        return self._pool.submit(check_prepared, prepared, now, tolerance, columns)

    def normalize(self, token: str) -> tuple[pd.DataFrame, float]:
        """Normalize a checked chunk in the worker."""
        return self._pool.submit(normalize_chunk, token).result()

    def close(self) -> None:
        """Stop the worker process without waiting for it to exit.

        Calls not yet handed to the process are cancelled; one it already runs (after a failure elsewhere, say)
        finishes there first. The run needs nothing more from it: waiting for the exit of a process holding a chunk
        and GX cost 0.6 s.
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
