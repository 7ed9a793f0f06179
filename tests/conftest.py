"""Shared fixtures: an isolated Prefect home, and CRM stores on real SQLite and real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

# Prefect reads these at import: keep tests off the user's ~/.prefect and off the network.
_PREFECT_HOME = tempfile.mkdtemp(prefix="leadflow-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Commands started by tests run their own ephemeral Prefect API; on a busy machine it can take longer to start than
# Prefect's 20 s default, and a timed-out start is a false failure, not a finding.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.pop("PREFECT_API_URL", None)
# Email hashes are keyed: a test-only key, so that no test writes a key file beside a default ./leadflow.db and
# PostgreSQL (which requires the setting) works too. tests/crm/test_keyed_hashes.py covers the generated key file.
os.environ.setdefault("LEADFLOW_HASH_KEY", "test-only-email-hash-key-0123456789")

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from leadflow.config.settings import get_settings  # noqa: E402
from leadflow.crm import store as store_module  # noqa: E402
from leadflow.crm.store import Base, Store, database_url  # noqa: E402

PG_URL = os.environ.get("LEADFLOW_TEST_PG_URL")
REQUIRE_PG = os.environ.get("LEADFLOW_REQUIRE_PG") == "1"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the `slow` tests first, dealt round-robin over the xdist workers.

    xdist's worksteal hands each worker one contiguous share of this list at the start; putting a few slow tests at
    the front of every share runs the minute-long ones side by side instead of one after another on one worker
    (the others then steal the short tests from the end of its share).
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for worker in range(workers):
        # The share worksteal gives this worker: what is left, divided by the workers still without one.
        share = remaining // (workers - worker)
        remaining -= share
        mine = slow[worker::workers]
        take = max(share - len(mine), 0)
        ordered += mine + rest[:take]
        del rest[:take]
    items[:] = ordered + rest


@pytest.fixture(scope="session")
def pg_database_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("LEADFLOW_REQUIRE_PG=1 but LEADFLOW_TEST_PG_URL is not set")
        pytest.skip("PostgreSQL tests need LEADFLOW_TEST_PG_URL (set by .ci/run)")
    admin = create_engine(database_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"leadflow_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} is unreachable: {exc}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    Store(url).upgrade()
    yield url
    for key in [k for k in store_module._stores if k == url]:
        store_module._stores.pop(key).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite CRM migrated once per session (per xdist worker); each test gets a copy of the file.

    Running every Alembic migration costs about a second per test; copying the migrated file gives the same
    schema, seeded reference rows, page size and WAL journal mode, because all of them live in the file.
    """
    path = tmp_path_factory.mktemp("crm-template") / "crm.db"
    template = Store(f"sqlite:///{path}")
    template.upgrade()
    template.dispose()
    # Closing the last connection checkpoints the WAL into the file and removes it; a leftover WAL would hold
    # committed schema pages that a copy of the main file alone would miss.
    assert not path.with_name(path.name + "-wal").exists(), "the template's WAL was not checkpointed"
    return path


def _sqlite_copy(template: Path, folder: Path) -> str:
    target = folder / "crm.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def _use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> Store:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    get_settings.cache_clear()
    return store_module.get_store(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(request, tmp_path, monkeypatch) -> Store:
    """A migrated, empty CRM store on SQLite or PostgreSQL, configured as the process default."""
    if request.param == "sqlite":
        crm_store = _use_database(monkeypatch, _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path))
    else:
        crm_store = _use_database(monkeypatch, request.getfixturevalue("pg_database_url"))
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with crm_store.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield crm_store
    get_settings.cache_clear()
    if crm_store.dialect == "sqlite":
        store_module._stores.pop(crm_store.url, None)
        crm_store.dispose()


@pytest.fixture
def sqlite_crm(sqlite_template, tmp_path, monkeypatch) -> Store:
    """A migrated, empty CRM store on SQLite only, for tests about SQLite behaviour."""
    crm_store = _use_database(monkeypatch, _sqlite_copy(sqlite_template, tmp_path))
    yield crm_store
    store_module._stores.pop(crm_store.url, None)
    crm_store.dispose()


@pytest.fixture(scope="session")
def prefect_api():
    """One throwaway Prefect API for the whole session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def imap_server():
    """A real IMAP server (Dovecot) for the session: each test takes a fresh mailbox user from it."""
    from tests.mail_server import start_dovecot, stop_dovecot

    server = start_dovecot()
    yield server
    stop_dovecot(server)
