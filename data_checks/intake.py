"""Suites for the lead-intake boundary: required columns, batch sanity and row-level rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from data_checks.runner import REASON, CheckOutcome, gx_context, run_suite
from leadflow.domain.contract import FIELD_LIMITS, REQUIRED_COLUMNS, ReasonCode

MIN_ROWS_FOR_RATIOS = 20
# A reason that another one already explains is dropped, so each row says why it failed once.
IMPLIED_BY = {
    ReasonCode.INVALID_SUBMITTED_AT: ReasonCode.MISSING_SUBMITTED_AT,
    ReasonCode.INVALID_EMAIL: ReasonCode.MISSING_EMAIL,
}
MALFORMED_ROW = "malformed_row"
# A lead field held a list or object (JSON input) where a value belongs.
NESTED_VALUE = "nested_value"


def _gx():
    # Suites need an active context before expectations can be added to them.
    gx_context()
    import great_expectations as gx

    return gx


def intake_columns_suite() -> Any:
    """The input must provide every required column (after the column map and defaults)."""
    gx = _gx()
    suite = gx.ExpectationSuite(name="lead_intake.columns")
    for column in REQUIRED_COLUMNS:
        suite.add_expectation(gx.expectations.ExpectColumnToExist(column=column))
    return suite


def intake_batch_suite() -> Any:
    """A batch that is mostly broken means a wrong column map or a wrong file: stop instead of quarantining it all."""
    gx = _gx()
    e = gx.expectations
    suite = gx.ExpectationSuite(name="lead_intake.batch")
    suite.add_expectation(e.ExpectColumnValuesToBeNull(column="_malformed", mostly=0.5))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="_email_valid", min_value=1, mostly=0.5))
    suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column="_submitted_at", mostly=0.5))
    return suite


def intake_rows_suite(now: datetime, future_tolerance: pd.Timedelta, limited: list[str] | None = None,
                      nested: bool = False) -> Any:
    """Row-level rules: each failing row is quarantined with the expectation's reason code.

    `limited` names the text columns whose length to check (default: all); a column with no value in the batch
    cannot be too long, and each expectation costs GX tens of milliseconds per chunk.
    """
    gx = _gx()
    e = gx.expectations
    suite = gx.ExpectationSuite(name="lead_intake.rows")

    def add(expectation: Any, reason: str) -> None:
        expectation.meta = {REASON: reason}
        suite.add_expectation(expectation)

    add(e.ExpectColumnValuesToBeNull(column="_malformed"), MALFORMED_ROW)
    if nested:
        add(e.ExpectColumnValuesToBeNull(column="_nested"), NESTED_VALUE)
    add(e.ExpectColumnValuesToNotBeNull(column="_email"), ReasonCode.MISSING_EMAIL)
    # _email_valid is email-validator's verdict (RFC 5321/6531), worked out once per distinct address beforehand
    add(e.ExpectColumnValuesToBeBetween(column="_email_valid", min_value=1), ReasonCode.INVALID_EMAIL)
    add(e.ExpectColumnValuesToNotBeNull(column="submitted_at"), ReasonCode.MISSING_SUBMITTED_AT)
    add(e.ExpectColumnValuesToNotBeNull(column="_submitted_at"), ReasonCode.INVALID_SUBMITTED_AT)
    latest = pd.Timestamp(now).tz_convert("UTC") + future_tolerance
    add(e.ExpectColumnValuesToBeBetween(column="_submitted_at", max_value=latest), ReasonCode.FUTURE_SUBMITTED_AT)
    for column, limit in FIELD_LIMITS.items():
        if limited is not None and column not in limited:
            continue
        add(e.ExpectColumnValuesToBeBetween(column=f"_len_{column}", max_value=limit),
            f"{ReasonCode.FIELD_TOO_LONG}:{column}")
    return suite


def check_intake_columns(columns: list[str]) -> CheckOutcome:
    """Validate that the mapped input has the required columns (a header-only frame is enough)."""
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
    frame["_row"] = pd.Series(dtype="int64")
    return run_suite(frame, intake_columns_suite())


def check_intake_batch(prepared: pd.DataFrame) -> CheckOutcome | None:
    """Batch-level sanity on a prepared chunk; skipped for chunks too small for ratios to mean anything."""
    if len(prepared) < MIN_ROWS_FOR_RATIOS:
        return None
    return run_suite(prepared[["_row", "_malformed", "_email_valid", "_submitted_at"]], intake_batch_suite())


def check_intake_rows(prepared: pd.DataFrame, now: datetime, future_tolerance: pd.Timedelta) -> CheckOutcome:
    """Row-level rules on a prepared chunk; the outcome maps failing `_row` ids to reason codes."""
    frame = prepared[["_row", "_malformed", "_email", "_email_valid", "submitted_at", "_submitted_at", "_source"]
                     ].copy()
    limited = [c for c in FIELD_LIMITS if prepared[c].notna().any()]
    # Only JSON input can nest values: a CSV chunk does not pay for the expectation.
    nested = "_nested" in prepared.columns and bool(prepared["_nested"].notna().any())
    if nested:
        frame["_nested"] = prepared["_nested"]
    # GX filters the whole frame for every expectation: checking lengths instead of the long texts themselves
    # keeps those copies small, and keeps the texts (personal data) out of the validation results.
    for column in limited:
        frame[f"_len_{column}"] = prepared[column].str.len().astype("float64")
    outcome = run_suite(frame, intake_rows_suite(now, future_tolerance, limited, nested))
    cleared: dict[Any, set[str]] = {}
    if nested:
        hit = prepared.loc[prepared["_nested"].notna(), ["_row", "_nested"]]
        cleared = {row: {f"missing_{c}" for c in names.split(",")} for row, names in zip(
            hit["_row"].tolist(), hit["_nested"].tolist(), strict=True)}
    for row_id, reasons in outcome.row_reasons.items():
        if MALFORMED_ROW in reasons:
            # A line that is no row (too few or too many fields) has no fields to judge: one reason says it all.
            outcome.row_reasons[row_id] = [MALFORMED_ROW]
            continue
        # A field cleared for holding a list or object is not also "missing".
        gone = cleared.get(row_id, set())
        kept = [r for r in dict.fromkeys(reasons) if IMPLIED_BY.get(r) not in reasons and r not in gone]
        outcome.row_reasons[row_id] = kept
    return outcome
