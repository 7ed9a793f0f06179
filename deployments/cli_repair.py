"""`leadflow repair`: finish the leads whose processing a killed run left incomplete."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Finish leads a killed run left half processed (spam check, details, score, qualification, "
                       "tasks and messages), as their step marks say.", invoke_without_command=True)


@app.callback()
def repair(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what is unfinished; change nothing.")] = False,
    grace_minutes: Annotated[float, typer.Option(
        help="Leave leads marked this recently (a live run may be working on them).", min=0)] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Find unfinished leads and complete their missing steps in order; the summary says what was found per step."""
    from deployments.cli import _fail, _known_errors, _one_line, _store
    from leadflow.config.policy import PolicyError
    from tasks.common import utc_now
    from tasks.repair import run_repair

    try:
        _store()
        result = run_repair(utc_now(), dry_run=dry_run, grace_minutes=grace_minutes)
    except (*_known_errors(), PolicyError) as exc:
        _fail(f"repair failed: {_one_line(exc)}")
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.to_text())
