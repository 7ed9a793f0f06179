"""`leadflow quarantine`: list, show, export and retry the rows intake quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

app = typer.Typer(help="Quarantined input rows: list, show, export, and retry them after fixing the options.",
                  no_args_is_help=True)

ReasonOption = Annotated[str | None, typer.Option(help="Only records with this reason code (e.g. invalid_email).")]
BatchOption = Annotated[str | None, typer.Option("--batch", help="Only records of this intake batch id.")]
SinceOption = Annotated[str | None, typer.Option(help="Only records quarantined since this ISO date or time (UTC).")]
IdsOption = Annotated[list[int] | None, typer.Option("--id", help="Only this record (repeatable).")]


def _fail(message: str) -> None:
    from deployments.cli import _fail as fail

    fail(message)


def _errors() -> tuple[type[BaseException], ...]:
    from deployments.cli import _known_errors

    return _known_errors()


def _one_line(exc: BaseException) -> str:
    from deployments.cli import _one_line as one_line

    return one_line(exc)


def _filter(reason: str | None, batch: str | None, since: str | None, ids: list[int] | None,
            include_retried: bool = False) -> Any:
    from leadflow.crm.quarantine import QuarantineFilter

    moment = None
    if since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            _fail(f"--since is not an ISO date or time: {since[:40]!r}")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return QuarantineFilter(reason=reason, batch_id=batch, since=moment, ids=tuple(ids or ()),
                            include_retried=include_retried)


@app.command("list")
def quarantine_list(
    reason: ReasonOption = None, batch: BatchOption = None, since: SinceOption = None,
    include_retried: Annotated[bool, typer.Option("--all", help="Also records a retry recovered or superseded.")]
    = False,
    limit: Annotated[int, typer.Option(help="How many records to list (newest first).", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """List quarantined records (newest first) with their reasons; payloads stay out (`show ID` prints one)."""
    from deployments.cli import _store
    from leadflow.crm.quarantine import count_by_reason, list_records

    where = _filter(reason, batch, since, None, include_retried)
    try:
        store = _store()
        total, rows = list_records(store, where, limit)
        by_reason = count_by_reason(store, where)
    except _errors() as exc:
        _fail(_one_line(exc))
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    if as_json:
        typer.echo(json.dumps({"matching": total, "by_reason": by_reason, "records": records}, indent=2))
        return
    typer.echo(f"{total} quarantined records match" + (f"; the newest {len(records)}:" if records else "."))
    for r in records:
        retried = f"  [{r['retry_outcome']}]" if r["retry_outcome"] else ""
        typer.echo(f"  {r['id']:>7}  {r['created_at'][:19]}  row {r['row_number'] or '?':<6} "
                   f"{r['reason_codes']:<36} {r['source'] or '-':<14} batch {r['batch_id'][:8]}{retried}")
    if by_reason:
        typer.echo("By reason: " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())))


@app.command("show")
def quarantine_show(record_id: Annotated[int, typer.Argument(help="The record's id (from `quarantine list`).")]
                    ) -> None:
    """Print one quarantined record with its raw payload, as JSON."""
    from deployments.cli import _store
    from leadflow.crm.quarantine import get_record

    try:
        record = get_record(_store(), record_id)
    except _errors() as exc:
        _fail(_one_line(exc))
    if record is None:
        _fail(f"no quarantine record has id {record_id}")
    typer.echo(json.dumps(record, indent=2, ensure_ascii=False, default=str))


@app.command("export")
def quarantine_export(
    output: Annotated[str, typer.Argument(help="The CSV file to write ('-' prints it).")],
    reason: ReasonOption = None, batch: BatchOption = None, since: SinceOption = None, ids: IdsOption = None,
    include_retried: Annotated[bool, typer.Option("--all", help="Also records a retry recovered or superseded.")]
    = False,
) -> None:
    """Write matching records to CSV: quarantine_* columns, then each row's fields under their own headers."""
    from deployments.cli import _store
    from leadflow.crm.quarantine import records_with_payload
    from leadflow.domain.quarantine import export_table

    where = _filter(reason, batch, since, ids, include_retried)
    try:
        table = export_table(records_with_payload(_store(), where))
        if output == "-":
            typer.echo(table.to_csv(index=False), nl=False)
            return
        table.to_csv(output, index=False)
    except (*_errors(), OSError) as exc:
        _fail(f"cannot export the quarantine: {_one_line(exc)}")
    typer.echo(f"Exported {len(table)} quarantined records to {output}.", err=True)


@app.command("retry")
def quarantine_retry(
    reason: ReasonOption = None, batch: BatchOption = None, since: SinceOption = None, ids: IdsOption = None,
    column_map: Annotated[str | None, typer.Option(help="JSON/YAML file: export header -> canonical column.")] = None,
    source_name: Annotated[str | None, typer.Option(help="Channel for rows that name none.")] = None,
    limit: Annotated[int | None, typer.Option(help="Most records to retry in this run.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Run matching quarantined rows through lead-intake again with new options; record which were recovered.

    Rows that become submissions are marked recovered, rows quarantined again under other reasons superseded (by
    their new record); a second retry skips both, and intake's idempotency keys store nothing twice.
    """
    from pathlib import Path

    from deployments.cli import _store
    from flows.intake import lead_intake
    from leadflow.config.settings import get_settings
    from leadflow.domain.contract import load_column_map
    from leadflow.steps.intake import plan_intake
    from leadflow.steps.quarantine import RETRY_FOLDER, settle_retry, stage_retry

    where = _filter(reason, batch, since, ids)
    staged = None
    try:
        mapping = load_column_map(column_map) if column_map else None
        store = _store()
        staged = stage_retry(store, where, get_settings().crm_dir() / RETRY_FOLDER, datetime.now(UTC), limit)
        if not staged.ids:
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(staged.skipped.items()))
            _fail("no quarantined records to retry match" + (f" (not retryable: {skipped})" if skipped else ""))
        plan = plan_intake(staged.path, mapping, source_name)
        summary = lead_intake(path=staged.path, source_name=source_name, column_map=mapping)
        result = settle_retry(store, staged, plan.mapping, source_name, summary["batch_id"], datetime.now(UTC))
    except (*_errors(), OSError) as exc:
        _fail(f"retry failed: {_one_line(exc)}")
    finally:
        if staged is not None and staged.path:
            # The staged rows hold personal data: they live only as long as the run.
            Path(staged.path).unlink(missing_ok=True)
    outcome = {**result.as_dict(), "not_retryable": staged.skipped,
               "submissions_new": summary["submissions_new"], "leads_created": summary["leads_created"]}
    if as_json:
        typer.echo(json.dumps(outcome, indent=2))
        return
    typer.echo(f"Retried {result.retried} quarantined rows (intake batch {result.batch_id}): "
               f"{len(result.recovered)} recovered, {len(result.superseded)} quarantined again under other "
               f"reasons, {result.unchanged} unchanged; {summary['submissions_new']} new submissions, "
               f"{summary['leads_created']} leads created.")
    if staged.skipped:
        typer.echo("Not retryable (fix the source file instead): "
                   + ", ".join(f"{k} {v}" for k, v in sorted(staged.skipped.items())))
