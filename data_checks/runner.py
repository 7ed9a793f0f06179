"""Run a GX suite on a DataFrame: row-level failures become reason codes, batch-level failures a typed error."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

ROW_ID = "_row"
REASON = "reason_code"
_context_lock = threading.Lock()
# One validation at a time: the context's single dataframe asset and suite store are shared, and two threads
# validating at once (Check Lead Batch in a worker while a guard runs in the flow thread) mixed up row results.
_validate_lock = threading.Lock()
_context: Any = None


def gx_context() -> Any:
    """The process-wide ephemeral GX context (imported lazily: `import great_expectations` costs seconds)."""
    global _context
    with _context_lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False),
                analytics_enabled=False,
            )
            _context = gx.get_context(mode="ephemeral", project_config=config)
            source = _context.data_sources.add_pandas("leadflow")
            source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
        return _context


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that failed: what it checked and what it saw."""

    expectation: str
    column: str | None
    reason_code: str | None
    unexpected_count: int | None
    observed: Any = None

    def describe(self) -> str:
        """A short human description for errors and artifacts."""
        target = f"{self.expectation}({self.column})" if self.column else self.expectation
        seen = f", unexpected {self.unexpected_count}" if self.unexpected_count else ""
        observed = f", observed {self.observed}" if self.observed is not None else ""
        return f"{target}{seen}{observed}"


class DataCheckError(Exception):
    """A batch failed a batch-level suite: the run stops, and the message lists the failed expectations."""

    def __init__(self, suite: str, failures: list[FailedExpectation], hint: str = "") -> None:
        self.suite = suite
        self.failures = failures
        listed = "; ".join(f.describe() for f in failures)
        super().__init__(f"data check '{suite}' failed: {listed}{' - ' + hint if hint else ''}")


@dataclass
class CheckOutcome:
    """What a suite found: overall success, per-expectation results and reason codes per failing row."""

    suite: str
    success: bool
    evaluated: int
    rows: int
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[FailedExpectation] = field(default_factory=list)
    row_reasons: dict[int, list[str]] = field(default_factory=dict)


def _row_ids(result: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    for entry in result.get("unexpected_index_list") or []:
        value = entry.get(ROW_ID) if isinstance(entry, dict) else entry
        if value is not None:
            ids.append(int(value))
    return ids


def run_suite(frame: pd.DataFrame, suite: ExpectationSuite) -> CheckOutcome:
    """Validate a frame (with a `_row` id column) against a suite and collect what failed, row by row."""
    context = gx_context()
    result_format = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [ROW_ID],
        "return_unexpected_index_query": False,
        "partial_unexpected_count": 0,
    }
    # The suite is validated as built, never put in the context's suite store: the validator reads only its
    # expectations, while a stored name made every later build of that suite save itself expectation by expectation
    # and `add_or_update` compare them one by one (about a second per check, identical results).
    with _validate_lock:
        batch = (
            context.data_sources.get("leadflow").get_asset("frame").get_batch_definition("whole")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        validation = batch.validate(suite, result_format=result_format)
    outcome = CheckOutcome(suite=suite.name, success=bool(validation.success), evaluated=0, rows=len(frame))
    for item in validation.results:
        config = item.expectation_config
        kwargs = config.kwargs
        meta = config.meta or {}
        result = item.result or {}
        raised = bool((item.exception_info or {}).get("raised_exception"))
        outcome.evaluated += 1
        row = {
            "expectation": config.type,
            "column": kwargs.get("column"),
            "reason_code": meta.get(REASON),
            "success": bool(item.success) and not raised,
            "unexpected_count": result.get("unexpected_count"),
            "unexpected_percent": round(result.get("unexpected_percent") or 0.0, 3),
            "observed": result.get("observed_value"),
        }
        if raised:
            row["observed"] = str(item.exception_info.get("exception_message"))[:200]
        outcome.results.append(row)
        if row["success"]:
            continue
        outcome.failures.append(
            FailedExpectation(row["expectation"], row["column"], row["reason_code"], row["unexpected_count"],
                              row["observed"])
        )
        if raised or not meta.get(REASON):
            outcome.success = False
            continue
        for row_id in _row_ids(result):
            outcome.row_reasons.setdefault(row_id, []).append(meta[REASON])
    return outcome


def raise_for_failures(outcome: CheckOutcome, hint: str = "") -> None:
    """Stop with a DataCheckError when a batch-level suite failed."""
    if outcome.failures:
        raise DataCheckError(outcome.suite, outcome.failures, hint)
