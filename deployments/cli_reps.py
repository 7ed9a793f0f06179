"""`leadflow reps`: list, add, import and change the sales reps that qualification routes leads to."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Sales reps: who gets leads, their capacity and who is out of office.", no_args_is_help=True)


def _errors() -> tuple[type[BaseException], ...]:
    from deployments.cli import _known_errors
    from leadflow.domain.reps import RepError

    return (*_known_errors(), RepError)


def _fail(message: str) -> None:
    from deployments.cli import _fail as fail

    fail(message)


def _line(rep: dict) -> str:
    where = ",".join(rep["territories"] or []) or "everywhere"
    segments = ",".join(rep["segments"] or []) or "all segments"
    state = "inactive" if not rep["active"] else ("out of office" if rep["out_of_office"] else "available")
    return (f"{rep['id']:>4}  {rep['name']:<24} {rep['email']:<34} {rep['open_leads']:>5}/{rep['max_open_leads']:<5} "
            f"{state:<14} {where} / {segments}")


@app.command("list")
def reps_list(as_json: Annotated[bool, typer.Option("--json", help="Print the reps as JSON.")] = False) -> None:
    """List every rep: territories, segments, open leads against capacity, and whether they take leads now."""
    from deployments.cli import _store
    from leadflow.crm.reps import list_reps

    try:
        reps = list_reps(_store())
    except _errors() as exc:
        _fail(str(exc).splitlines()[0])
    rows = reps.to_dict("records")
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("No sales reps yet: add them with `leadflow reps add` or `leadflow reps import FILE`.")
        return
    typer.echo(f"{'id':>4}  {'name':<24} {'email':<34} {'open/capacity':<11} {'state':<14} territories / segments")
    for rep in rows:
        typer.echo(_line(rep))
    free = int((reps["max_open_leads"] - reps["open_leads"]).clip(lower=0)
               .where(reps["active"] & ~reps["out_of_office"], 0).sum())
    typer.echo(f"{len(rows)} reps; {free} open-lead slots free among reps taking leads now.")


@app.command("add")
def reps_add(
    email: Annotated[str, typer.Argument(help="The rep's email address.")],
    name: Annotated[str, typer.Option(help="The rep's name, as summaries and notices show it.")],
    territories: Annotated[str | None, typer.Option(help="Country codes, e.g. US,CA (none: every country).")] = None,
    segments: Annotated[str | None, typer.Option(help="Segments, e.g. smb,mid_market (none: every segment).")] = None,
    capacity: Annotated[str, typer.Option(help="Most open leads at once.")] = "50",
    alert_url: Annotated[str | None, typer.Option(help="Apprise URL for new-lead alerts (else email).")] = None,
    out_of_office: Annotated[bool, typer.Option("--out-of-office", help="Add the rep as out of office.")] = False,
) -> None:
    """Add a new sales rep; qualification routes leads to them from the next run."""
    from deployments.cli import _store
    from leadflow.crm.reps import add_rep
    from leadflow.domain.reps import rep_input

    try:
        rep = rep_input(email, name, territories=territories, segments=segments, capacity=capacity,
                        out_of_office=out_of_office, alert_url=alert_url)
        rep_id = add_rep(_store(), rep)
    except _errors() as exc:
        _fail(f"rep not added: {str(exc).splitlines()[0]}")
    typer.echo(f"Added rep {rep_id} {rep.name} (capacity {rep.max_open_leads}"
               f"{', out of office' if rep.out_of_office else ''}).")


@app.command("import")
def reps_import(
    path: Annotated[str, typer.Argument(help="CSV: email, name, territories, segments, max_open_leads, active, "
                                             "out_of_office, alert_url (as leadflow/data/sales_reps.csv).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Add or update reps from a CSV, all or nothing: one bad row refuses the file and names its line."""
    import pandas as pd

    from deployments.cli import _store
    from leadflow.crm.reps import import_reps
    from leadflow.domain.reps import reps_from_frame

    try:
        frame = pd.read_csv(path, dtype="string", keep_default_na=False)
        reps = reps_from_frame(frame)
        result = import_reps(_store(), reps)
    except (*_errors(), OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        _fail(f"cannot import reps from {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if as_json:
        typer.echo(json.dumps({"added": result.added, "updated": result.updated}))
        return
    typer.echo(f"Imported {len(reps)} reps: {result.added} added, {result.updated} updated.")


@app.command("set")
def reps_set(
    email: Annotated[str, typer.Argument(help="The rep's email address.")],
    capacity: Annotated[str | None, typer.Option(help="Most open leads at once.")] = None,
    away: Annotated[bool | None, typer.Option("--out-of-office/--back",
                                              help="Out of office (gets no new leads) or back.")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Takes leads at all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rep as JSON.")] = False,
) -> None:
    """Change a rep's capacity, out-of-office or active state; the next qualification run routes by it."""
    from deployments.cli import _store
    from leadflow.crm.reps import set_rep
    from leadflow.domain.reps import check_capacity, rep_email

    if capacity is None and away is None and active is None:
        _fail("nothing to change: give --capacity N, --out-of-office/--back or --active/--inactive")
    try:
        limit = None if capacity is None else check_capacity(capacity)
        rep = set_rep(_store(), rep_email(email), capacity=limit, out_of_office=away, active=active)
    except _errors() as exc:
        _fail(f"rep not changed: {str(exc).splitlines()[0]}")
    if as_json:
        typer.echo(json.dumps(rep, default=str))
        return
    typer.echo(_line(rep))
    if rep["open_leads"] > rep["max_open_leads"]:
        typer.echo(f"Note: {rep['name']} holds {rep['open_leads']} open leads, more than the new capacity; "
                   "they get no new lead until some close.")
