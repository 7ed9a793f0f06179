"""Every test in this folder talks to the session's Prefect test API."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _use_prefect_api(prefect_api):
    """Run flows against the shared throwaway Prefect API."""
    yield
