"""Shared task settings: no result persistence for personal data, retries only on transient DB errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.utilities.annotations import opaque, quote

from leadflow.config.settings import register_secret_loader
from leadflow.crm.store import Store, get_store, is_transient_db_error
from leadflow.steps.faults import crash_hook

# Lead frames hold personal data: never cache or persist them to the result store.
# Tasks carry no tags on purpose: Prefect 3.8 checks tag concurrency limits with an API call per task run, which
# measured about 2 s per call against the test server here. Flow runs and deployments carry the tags instead.
# crash_hook: a fault-injection point after every task for the crash tests (LEADFLOW_CRASH_AFTER, off unless set).
PRIVATE = {"cache_policy": NO_CACHE, "persist_result": False, "on_completion": [crash_hook]}


def retry_on_db_contention(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a database task only when it failed on a lock, deadlock or dropped connection."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return False
    return is_transient_db_error(error if isinstance(error, BaseException) else None)


def retry_on_transient_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry reading an input only when the failure may pass (a remote store hiccup), never on a bad file."""
    from data_checks.runner import DataCheckError
    from leadflow.domain.contract import ColumnMapError
    from leadflow.io.sources import LeadFileError

    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return False
    if isinstance(error, LeadFileError):
        return error.transient
    return not isinstance(error, DataCheckError | ColumnMapError | ValueError)


def load_prefect_secret(name: str) -> str:
    """The value of the Prefect Secret block `name` (what a `prefect-secret://<name>` setting stands for)."""
    from prefect.blocks.system import Secret

    # _sync: the same call from a sync task thread or an async caller (the CLI, a hook) reads the block now.
    value = Secret.load(name, _sync=True).get()
    return value if isinstance(value, str) else str(value)


# Every process that runs tasks (flows, workers, `leadflow serve`, the CLI) reads settings' secret references
# from Prefect's Secret blocks; steps, crm and io only see the settings layer's secret_value().
register_secret_loader(load_prefect_secret)


DB_TASK = {**PRIVATE, "retries": 3, "retry_delay_seconds": [1, 4, 10], "retry_jitter_factor": 0.5,
           "retry_condition_fn": retry_on_db_contention}


def current_flow_run_id() -> str | None:
    """The id of the flow run we are in, for the audit log (None outside a flow run)."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def store() -> Store:
    """The CRM store configured for this process; a missing or unmigrated database fails the task (no new CRM)."""
    crm = get_store()
    # Checked once per process and database: a deployment run with a mistyped URL fails with the fix, like the CLI.
    crm.require_current()
    return crm


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def called_quoted(task: Any) -> Callable[..., Any]:
    """Call a task with its arguments quoted: Prefect hands frames and id lists over without walking every value."""
    def call(*args: Any) -> Any:
        return task(*(quote(a) for a in args))

    return call


def submitted_quoted(task: Any) -> Callable[..., PrefectFuture]:
    """Submit a task to the flow's task runner: futures are resolved at the top only (opaque), other values quoted."""
    def submit(*args: Any) -> PrefectFuture:
        return task.submit(*(opaque(a) if isinstance(a, PrefectFuture) else quote(a) for a in args))

    return submit
