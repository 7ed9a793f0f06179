"""Great Expectations suites that guard leadflow's flow boundaries, and the runner that applies them."""

from data_checks.runner import CheckOutcome, DataCheckError, FailedExpectation, run_suite

__all__ = ["CheckOutcome", "DataCheckError", "FailedExpectation", "run_suite"]
