"""The layers keep their floors: arrows point down and every SQL statement lives in leadflow/crm.

deployments -> flows -> tasks -> steps -> crm / io -> domain -> config; data_checks -> domain. Imports are read
from the source (module level and inside functions alike), so a lazy import cannot hide an arrow pointing up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("leadflow", "tasks", "flows", "data_checks", "deployments", "bench")

FRAMEWORKS = ("sqlalchemy", "prefect", "prefect_dask", "great_expectations", "fsspec", "httpx")
SQL_DRIVERS = ("sqlalchemy", "psycopg", "sqlite3", "alembic")
ABOVE_CRM = ("leadflow.steps", "tasks", "flows", "deployments")

# What each layer may not import; a name forbids the package and every module under it.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "config": (*FRAMEWORKS, *SQL_DRIVERS, "leadflow.domain", "leadflow.crm", "leadflow.io", *ABOVE_CRM,
               "data_checks"),
    "domain": (*FRAMEWORKS, *SQL_DRIVERS, "smtplib", "apprise", "leadflow.crm", "leadflow.io", *ABOVE_CRM,
               "data_checks"),
    "crm": ("prefect", "prefect_dask", "great_expectations", "fsspec", "httpx", "leadflow.io", *ABOVE_CRM,
            "data_checks"),
    "io": ("prefect", "prefect_dask", "great_expectations", *SQL_DRIVERS, "leadflow.crm", *ABOVE_CRM, "data_checks"),
    "steps": ("prefect", "prefect_dask", *SQL_DRIVERS, "tasks", "flows", "deployments"),
    "data_checks": ("sqlalchemy", "prefect", *SQL_DRIVERS, "leadflow.crm", "leadflow.io", *ABOVE_CRM),
    "tasks": (*SQL_DRIVERS, "flows", "deployments", "leadflow.crm.schema"),
    # A flow body runs no SQL, not even through a repository: its reads and writes are task runs the UI shows.
    "flows": (*SQL_DRIVERS, "deployments", "leadflow.crm"),
    "deployments": (*SQL_DRIVERS, "leadflow.crm.schema"),
    # Benchmarks run the steps like a caller without Prefect would; they fill their databases through crm.
    "bench": ("sqlalchemy", "psycopg", "alembic", "leadflow.crm.schema"),
}
# Calls that run SQL; outside leadflow/crm only a Connection or cursor would offer them.
SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql"}


def layer_of(path: Path) -> str:
    """The layer a source file belongs to: a leadflow sub-package, or a top-level package."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "leadflow":
        return parts[1] if len(parts) > 2 else "domain"
    return parts[0]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from leadflow.crm import schema` imports leadflow.crm.schema.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(source: str, layer: str, name: str = "<source>") -> list[str]:
    """Every broken layer rule in one file's source, as 'file:line: reason'."""
    tree = ast.parse(source)
    found = []
    for line, module in _imports(tree):
        for banned in FORBIDDEN.get(layer, ()):
            if _under(module, banned):
                found.append(f"{name}:{line}: {layer} imports {module}")
                break
    if layer != "crm":
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_CALLS):
                found.append(f"{name}:{node.lineno}: {layer} runs SQL ({node.func.attr}) outside leadflow/crm")
    return found


def layer_violations(root: Path = ROOT) -> list[str]:
    """Every broken layer rule in the project's own source files."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found += violations(path.read_text(encoding="utf-8"), layer_of(path), str(path.relative_to(root)))
    return found


def test_every_layer_keeps_its_rules():
    assert layer_violations() == []


def test_ls_leadflow_shows_the_layers():
    packages = {p.name for p in (ROOT / "leadflow").iterdir() if (p / "__init__.py").exists()}
    assert {"config", "domain", "crm", "io", "steps"} <= packages
    stray = sorted(p.name for p in (ROOT / "leadflow").glob("*.py") if p.name != "__init__.py")
    assert stray == [], f"modules outside a layer: {stray}"


@pytest.mark.parametrize(("layer", "source"), [
    ("domain", "import sqlalchemy"),
    ("domain", "from sqlalchemy import select"),
    ("domain", "def f():\n    from prefect import task\n"),
    ("domain", "import great_expectations as gx"),
    ("domain", "from leadflow.crm import store"),
    ("domain", "from leadflow.crm.store import Store"),
    ("domain", "from leadflow.io.sources import LeadFile"),
    ("domain", "import httpx"),
    ("domain", "import fsspec"),
    ("config", "from leadflow.domain import scoring"),
    ("crm", "from prefect import flow"),
    ("crm", "from leadflow.steps import intake"),
    ("io", "from leadflow.crm.store import Store"),
    ("io", "from sqlalchemy import text"),
    ("steps", "from prefect import task"),
    ("steps", "import tasks.intake"),
    ("steps", "from sqlalchemy import update"),
    ("steps", "def f(conn):\n    conn.execute('DELETE FROM leads')\n"),
    ("data_checks", "from leadflow.crm import outbox"),
    ("tasks", "from flows.intake import lead_intake"),
    ("tasks", "def f():\n    from flows import intake\n"),
    ("tasks", "from sqlalchemy import select"),
    ("tasks", "from leadflow.crm.schema import OutboxMessage"),
    ("tasks", "def f(conn):\n    conn.exec_driver_sql('VACUUM')\n"),
    ("flows", "from sqlalchemy import select"),
    ("flows", "from leadflow.crm.outbox import outbox_counts"),
    ("flows", "def hook(state):\n    from leadflow.crm.store import get_store\n"),
    ("flows", "def hook(store):\n    with store.begin() as conn:\n        conn.execute(stmt)\n"),
    ("deployments", "import sqlite3"),
    ("bench", "from sqlalchemy import create_engine"),
])
def test_a_broken_rule_is_caught(layer, source):
    assert violations(source, layer), f"{layer} allowed: {source!r}"


@pytest.mark.parametrize(("layer", "source"), [
    ("domain", "import pandas as pd\nfrom leadflow.config.policy import VersionedPolicy\n"),
    ("domain", "from leadflow.domain import normalize"),
    ("crm", "from sqlalchemy import select\ndef f(conn):\n    conn.execute(select(1))\n"),
    ("crm", "from leadflow.domain.contract import REQUIRED_COLUMNS"),
    ("io", "import fsspec\nimport httpx\n"),
    ("steps", "from leadflow.crm import outbox\nfrom data_checks.intake import check_leads\n"),
    ("steps", "def f(store):\n    with store.begin() as conn:\n        outbox.queue(conn, store, frame)\n"),
    ("tasks", "from prefect import task\nfrom leadflow.steps import intake\n"),
    ("flows", "from prefect import flow\nfrom tasks import intake\n"),
    ("bench", "import sqlite3"),
])
def test_an_allowed_arrow_passes(layer, source):
    assert violations(source, layer) == []


@pytest.mark.parametrize(("path", "layer"), [
    ("leadflow/domain/spam.py", "domain"),
    ("leadflow/crm/migrations/env.py", "crm"),
    ("leadflow/steps/intake.py", "steps"),
    ("tasks/intake.py", "tasks"),
    ("bench/intake_bench.py", "bench"),
])
def test_layer_of_a_path(path, layer):
    assert layer_of(ROOT / path) == layer

