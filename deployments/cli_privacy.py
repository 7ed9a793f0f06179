"""`leadflow retention ...`: apply the retention periods of personal data by hand (the nightly run does it too)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from leadflow.config.settings import register_secret_loader


def _load_prefect_secret(name: str) -> str:
    from tasks.common import load_prefect_secret  # Prefect is imported only when a setting names a Secret block

    return load_prefect_secret(name)


# Every `leadflow` command resolves `prefect-secret://` settings (hash key, SMTP, alert URLs) from Secret blocks.
register_secret_loader(_load_prefect_secret)

app = typer.Typer(help="Personal data retention: strip and delete what is past its retention period.",
                  no_args_is_help=True)


@app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be removed; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Strip old raw payloads; delete old quarantine rows, processed inbox rows, .eml and backfill window files."""
    from datetime import UTC, datetime

    from deployments.cli import _fail, _known_errors, _one_line, _store
    from leadflow.steps.retention import run_retention

    try:
        summary = run_retention(_store(), now=datetime.now(UTC), dry_run=dry_run)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
        return
    verb = "would remove" if dry_run else "removed"
    for name, count in summary.counts.items():
        days = summary.days[name]
        typer.echo(f"{name}: {verb} {count} (kept {f'{days} days' if days else 'forever'})")
