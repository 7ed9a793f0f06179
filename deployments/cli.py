"""The `leadflow` command: migrate the CRM, run intake on a file, and run the demo."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

app = typer.Typer(help="leadflow: lead-lifecycle orchestration on Prefect 3.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="The CRM database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

UI_HINT = """\
Watch the runs in the Prefect UI:
  .venv/bin/prefect server start        # then open http://127.0.0.1:4200
The demo's runs are already there: without PREFECT_API_URL, runs are recorded in the same
local Prefect database that `prefect server start` serves. To send runs to a running server
instead, export PREFECT_API_URL=http://127.0.0.1:4200/api first."""


def _fail(message: str) -> None:
    typer.echo(f"leadflow: error: {message}", err=True)
    raise typer.Exit(code=2)


def _known_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from data_checks.runner import DataCheckError
    from leadflow.contract import ColumnMapError
    from leadflow.sources import LeadFileError

    return (LeadFileError, ColumnMapError, DataCheckError, SQLAlchemyError)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _store():
    from leadflow.store import get_store

    return get_store()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the CRM schema in LEADFLOW_DATABASE_URL."""
    try:
        store = _store()
        store.upgrade()
    except _known_errors() as exc:
        _fail(f"cannot migrate the database: {_one_line(exc)}")
    typer.echo(f"Database at revision {store.revision()} ({store.dialect}).")


def run_intake(path: str, source_name: str | None, column_map: str | None, chunk_size: int | None) -> dict[str, Any]:
    """Check the input up front (one-line errors), then run the lead-intake flow on it."""
    from flows.intake import lead_intake
    from leadflow.contract import load_column_map
    from tasks.intake import plan_intake

    mapping = load_column_map(column_map) if column_map else None
    plan_intake(path, mapping, source_name)
    _store().upgrade()
    return lead_intake(path=path, source_name=source_name, column_map=mapping, chunk_size=chunk_size)


@app.command("intake")
def intake(
    path: Annotated[str, typer.Argument(help="CSV, JSON-lines or Parquet file: local path or fsspec URL.")],
    source_name: Annotated[str | None, typer.Option(help="Channel for rows that name none.")] = None,
    column_map: Annotated[str | None, typer.Option(help="JSON/YAML file: export header -> canonical column.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Rows per chunk.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the lead-intake flow on one file and print its summary."""
    from leadflow.summary import IntakeSummary

    try:
        result = run_intake(path, source_name, column_map, chunk_size)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(IntakeSummary.from_dict(result).to_text())


@app.command("demo")
def demo() -> None:
    """Migrate the embedded database, load reference data, run intake on the bundled messy samples."""
    from leadflow import reference
    from leadflow.summary import IntakeSummary

    store = _store()
    typer.echo(f"CRM database: {store}")
    store.upgrade()
    reps = reference.load_sales_reps(store, reference.DATA_DIR / "sales_reps.csv")
    accounts = reference.load_accounts(store, reference.DATA_DIR / "accounts.csv")
    typer.echo(f"Loaded {reps} sales reps and {accounts} accounts.\n")
    try:
        first = run_intake(str(reference.SAMPLE_LEADS), None, None, None)
        typer.echo(IntakeSummary.from_dict(first).to_text() + "\n")
        second = run_intake(str(reference.SAMPLE_CRM_EXPORT), "web_form", str(reference.SAMPLE_CRM_EXPORT_MAP), None)
        typer.echo(IntakeSummary.from_dict(second).to_text() + "\n")
    except _known_errors() as exc:
        _fail(_one_line(exc))
    counts = store.table_counts()
    typer.echo(
        f"The CRM now holds {counts['leads']} leads, {counts['lead_submissions']} submissions, "
        f"{counts['quarantine']} quarantined rows and {counts['lead_events']} audit events.\n"
        "Run `make demo` again: nothing changes, every write is idempotent.\n"
    )
    typer.echo(UI_HINT)


def main() -> None:
    """Entry point of the `leadflow` console command."""
    app()


if __name__ == "__main__":
    main()
