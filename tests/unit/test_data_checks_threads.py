"""GX validations from two threads at once (a worker checks the next chunk while the flow thread runs a guard)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from data_checks.runner import REASON, gx_context, run_suite


def _suite(name: str, column: str):
    gx_context()
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column, meta={REASON: name}))
    return suite


def _check(kind: str, rows: int, bad_every: int) -> dict[int, list[str]]:
    values = [None if i % bad_every == 0 else "x" for i in range(rows)]
    frame = pd.DataFrame({"_row": range(rows), kind: pd.array(values, dtype="string")})
    return run_suite(frame, _suite(f"threads.{kind}", kind)).row_reasons


def test_concurrent_validations_keep_their_own_rows_and_reasons():
    expected_a = {i: ["threads.a"] for i in range(0, 3000, 7)}
    expected_b = {i: ["threads.b"] for i in range(0, 50, 5)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(pool.submit(_check, "a", 3000, 7), pool.submit(_check, "b", 50, 5)) for _ in range(15)]
        for a, b in futures:
            assert a.result() == expected_a
            assert b.result() == expected_b
