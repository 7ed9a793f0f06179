"""End-to-end tests: real processes, servers and browsers. All of them are `slow` (`make test-fast` skips them)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder `slow`, so a new end-to-end test cannot land in the fast loop by accident."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)

