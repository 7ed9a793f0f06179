"""The `leadflow` command: migrate the CRM, run intake on a file, and run the demo."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from deployments import cli_privacy

app = typer.Typer(help="leadflow: lead-lifecycle orchestration on Prefect 3.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="The CRM database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
firmographics_app = typer.Typer(help="Reference firmographics for Retrieve Lead Details.", no_args_is_help=True)
app.add_typer(firmographics_app, name="firmographics")

UI_HINT = """\
Watch the runs in the Prefect UI:
  .venv/bin/prefect server start        # then open http://127.0.0.1:4200
The demo's runs are already there: without PREFECT_API_URL, runs are recorded in the same
local Prefect database that `prefect server start` serves. To send runs to a running server
instead, export PREFECT_API_URL=http://127.0.0.1:4200/api first."""


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"leadflow {version('leadflow')}")
        except PackageNotFoundError:
            _fail("leadflow is not installed (run `make demo` or `pip install -e .` first)")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print leadflow's version and exit.")] = False,
) -> None:
    """leadflow: lead-lifecycle orchestration on Prefect 3."""


def _fail(message: str) -> None:
    typer.echo(f"leadflow: error: {message}", err=True)
    raise typer.Exit(code=2)


def _known_errors() -> tuple[type[BaseException], ...]:
    from data_checks.runner import DataCheckError
    from leadflow.config.profiles import ProfileError
    from leadflow.crm.store import DatabaseError
    from leadflow.domain.contract import ColumnMapError
    from leadflow.domain.normalize import FieldOptionsError
    from leadflow.io.sources import LeadFileError
    from leadflow.steps.delivery import DeliveryFailing

    return (LeadFileError, ColumnMapError, DataCheckError, DatabaseError, DeliveryFailing, ProfileError,
            FieldOptionsError)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class _WithoutTraceback(logging.Formatter):
    """Formats a log record as the console's own formatter does, but without its traceback."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        # A copy: the same record also goes to the Prefect API's handler, which keeps the traceback for the UI.
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self.inner.format(bare)


@contextmanager
def _tracebacks(verbose: bool) -> Iterator[None]:
    """Without --verbose, a failed run's console log lines carry no traceback: the error's one line says the fix."""
    if verbose:
        yield
        return
    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

    if not PROCESS_LOGGING_CONFIG:
        setup_logging()
    swapped = [(h, h.formatter) for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    for handler, formatter in swapped:
        handler.setFormatter(_WithoutTraceback(formatter or logging.Formatter()))
    try:
        yield
    finally:
        for handler, formatter in swapped:
            handler.setFormatter(formatter)


def _fail_verbosely(error: BaseException, verbose: bool) -> None:
    """Exit with the error's one line, after its traceback with --verbose."""
    if verbose:
        import traceback

        typer.echo("".join(traceback.format_exception(error)).rstrip(), err=True)
    _fail(_one_line(error))


def _store(require_current: bool = True):
    """The configured CRM; unless creating it (db upgrade, demo), one that exists and is migrated, else exit 2."""
    from leadflow.crm.store import DatabaseNotReady, get_store

    store = get_store()
    if require_current:
        try:
            store.require_current()
        except DatabaseNotReady as exc:
            _fail(str(exc))
    return store


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the CRM schema in LEADFLOW_DATABASE_URL."""
    try:
        store = _store(require_current=False)
        store.upgrade()
    except _known_errors() as exc:
        _fail(f"cannot migrate the database: {_one_line(exc)}")
    typer.echo(f"Database at revision {store.revision()} ({store.dialect}).")


def run_intake(path: str, source_name: str | None, column_map: str | None, chunk_size: int | None,
               profile: str | None = None, submitted_at: str | None = None,
               messages: str = "auto", default_country: str | None = None,
               date_order: str | None = None) -> dict[str, Any]:
    """Check the input up front (one-line errors), then run the lead-intake flow on it."""
    from flows.intake import lead_intake
    from leadflow.domain.contract import load_column_map
    from leadflow.steps.intake import field_options, plan_intake

    mapping = load_column_map(column_map) if column_map else None
    plan_intake(path, mapping, source_name, fields=field_options(default_country, date_order), profile=profile,
                submitted_at=submitted_at)
    _store()
    return lead_intake(path=path, source_name=source_name, column_map=mapping, chunk_size=chunk_size,
                       profile=profile, submitted_at=submitted_at, messages=messages,
                       default_country=default_country, date_order=date_order)


_DEFAULT_COUNTRY_HELP = ("Country of national phone numbers of leads without one (ISO code or name; default "
                         "LEADFLOW_DEFAULT_COUNTRY); else such numbers need a + prefix.")
_DATE_ORDER_HELP = ("mdy or dmy: day/month order of a date column whose values leave it open (default "
                    "LEADFLOW_DATE_ORDER, mdy); a column with a part over 12 decides itself.")


@app.command("intake")
def intake(
    path: Annotated[str, typer.Argument(help="CSV, JSON-lines or Parquet file: local path or fsspec URL.")],
    source_name: Annotated[str | None, typer.Option(help="Channel for rows that name none (else 'unknown').")] = None,
    column_map: Annotated[str | None, typer.Option(help="JSON/YAML file: export header -> canonical column.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Rows per chunk.")] = None,
    profile: Annotated[str | None, typer.Option(
        help="Export profile to read the file with (salesforce, hubspot, ...; generic for none); "
             "default: recognised from the headers.")] = None,
    submitted_at: Annotated[str | None, typer.Option(
        help="now or an ISO time with zone: dates every row of a file without times.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show tracebacks of errors.")] = False,
    messages: Annotated[str, typer.Option(help="auto: auto-responses and rep alerts only for leads whose latest "
                                               "submission is within the policy's freshness window (older rows "
                                               "are recorded as history); none: no messages; all: every lead.")
                        ] = "auto",
    default_country: Annotated[str | None, typer.Option(help=_DEFAULT_COUNTRY_HELP)] = None,
    date_order: Annotated[str | None, typer.Option(help=_DATE_ORDER_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the lead-intake flow on one file and print its summary."""
    from leadflow.domain.crm_state import MESSAGE_MODES
    from leadflow.domain.summary import IntakeSummary

    if messages not in MESSAGE_MODES:
        _fail(f"--messages must be one of {', '.join(MESSAGE_MODES)}, not {messages!r}")
    try:
        with _tracebacks(verbose):
            result = run_intake(path, source_name, column_map, chunk_size, profile, submitted_at, messages,
                                    default_country, date_order)
    except (*_known_errors(), ValueError) as exc:
        _fail_verbosely(exc, verbose)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(IntakeSummary.from_dict(result).to_text())


@firmographics_app.command("load")
def firmographics_load(
    path: Annotated[str, typer.Argument(help="CSV with domain, legal_name, industry, employee_count, "
                                              "revenue_band, country.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """(Re)load the firmographics reference table that the default enrichment provider reads."""
    from datetime import UTC, datetime

    from leadflow.steps.enrichment import load_firmographics

    try:
        store = _store()
        loaded = load_firmographics(store, path, datetime.now(UTC))
    except (*_known_errors(), OSError, ValueError) as exc:
        _fail(f"cannot load firmographics from {path}: {_one_line(exc)}")
    reasons = loaded.rejected["reason"].value_counts().to_dict() if len(loaded.rejected) else {}
    if as_json:
        typer.echo(json.dumps({"written": loaded.written, "rejected": len(loaded.rejected), "by_reason": reasons}))
        return
    typer.echo(f"Loaded {loaded.written} companies into firmographics; rejected {len(loaded.rejected)} rows.")
    for row in loaded.rejected.head(20).to_dict("records"):
        typer.echo(f"  line {row['_row']}: {row['reason']}")


@app.command("rescore")
def rescore(
    policy: Annotated[str | None, typer.Option(help="Policy name in leadflow/config/policies/ or a JSON file.")] = None,
    as_of: Annotated[str | None, typer.Option(help="ISO time recency is measured from (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score every lead again (for example under a new policy version); each change is logged with old and new."""
    from datetime import datetime

    from flows.rescore import lead_rescore
    from leadflow.config.policy import PolicyError
    from leadflow.domain.scoring_model import ModelError
    from leadflow.steps.scoring import scoring_policy
    from leadflow.steps.scoring_models import hybrid_model

    try:
        hybrid_model(scoring_policy(policy))  # a model the policy names must be usable before anything is scored
        moment = datetime.fromisoformat(as_of) if as_of else None
        if moment is not None and moment.tzinfo is None:
            _fail("--as-of needs a time zone, for example 2026-11-01T00:00:00+00:00")
        _store()
        result = lead_rescore(policy=policy, as_of=moment)
    except (*_known_errors(), PolicyError, ModelError, ValueError) as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"Re-scored {result['leads_scored']} leads with policy {result['policy_version']}: "
               f"{result['scores_changed']} changed.")
    for tier, count in result["tiers"].items():
        typer.echo(f"  {tier:<8} {count}")


lead_app = typer.Typer(help="Lead status changes, recorded in lead_events for the funnel.", no_args_is_help=True)
app.add_typer(lead_app, name="lead")
REPORT_FORMATS = ("md", "csv", "html", "json")


@app.command("report")
def report(
    month: Annotated[str | None, typer.Option(help="YYYY-MM (default: the month before today).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="What to print: md, csv, html or json.")] = "md",
) -> None:
    """Run the monthly-report flow for a month and print the report; every format is also written to files."""
    from pathlib import Path

    from data_checks.runner import DataCheckError
    from flows.monthly_report import monthly_report
    from leadflow.domain.reports import ReconciliationError, month_bounds

    if fmt not in REPORT_FORMATS:
        _fail(f"unknown format {fmt!r}; expected one of {', '.join(REPORT_FORMATS)}")
    try:
        if month is not None:
            month_bounds(month)
        _store()
        result = monthly_report(month=month)
    except (*_known_errors(), DataCheckError, ReconciliationError, ValueError) as exc:
        _fail(_one_line(exc))
    files = result["files"][fmt]
    if fmt == "csv":
        volume = next(p for p in files if p.endswith("-volume.csv"))
        typer.echo(Path(volume).read_text(encoding="utf-8"), nl=False)
    else:
        typer.echo(Path(files[0]).read_text(encoding="utf-8"), nl=fmt != "html")
    typer.echo(f"Report files in {Path(files[0]).parent}", err=True)


def _status_output(result: Any, as_json: bool) -> None:
    from leadflow.domain.spam import mask_email

    summary = result.as_dict(mask_email)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{summary['rows']} rows: {summary['applied']} applied, {summary['unchanged']} unchanged, "
               f"{summary['already_recorded']} already recorded, {summary['rejected']} rejected.")
    for reject in summary["rejects"]:
        typer.echo(f"  row {reject['row']}: {reject['reason']} ({reject['email'] or 'no email'})")


@lead_app.command("status")
def lead_status(
    email: Annotated[str, typer.Argument(help="The lead's email.")],
    status: Annotated[str, typer.Argument(help="working, qualified, discovery_call_booked, converted, "
                                               "disqualified, recycled or new; or a follow-up outcome: no_answer, "
                                               "left_voicemail, replied, meeting_booked.")],
    reason: Annotated[str | None, typer.Option(help="Reason code (required for disqualified; for recycled, a code "
                                                    "the cadence policy maps to a delay, e.g. six_months).")] = None,
    reengage_on: Annotated[str | None, typer.Option(help="A recycled lead's re-engage date (YYYY-MM-DD, in "
                                                         "LEADFLOW_TIMEZONE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Change one lead's status, or record a follow-up outcome; recorded as a status_changed (or followup_outcome)
    event."""
    from datetime import UTC, datetime

    from leadflow.steps.status import set_status

    try:
        on = datetime.fromisoformat(reengage_on) if reengage_on else None
    except ValueError:
        _fail(f"--reengage-on must be a date (YYYY-MM-DD), not {reengage_on!r}")
    try:
        store = _store()
        result = set_status(store, email, status, reason, datetime.now(UTC), reengage_on=on, strict_recycle=True)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    if result.rejected:
        _fail(f"status not changed: {result.rejected[0].reason}")
    _status_output(result, as_json)


@lead_app.command("import-status")
def lead_import_status(
    path: Annotated[str, typer.Argument(help="CSV export of the sales tool: email, status, reason, changed_at.")],
    rejects: Annotated[str | None, typer.Option(help="Write rejected rows (row, reason) to this CSV file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Record status updates from a CSV export; rows that cannot apply are listed with a reason, never dropped."""
    from datetime import UTC, datetime

    import pandas as pd

    from leadflow.domain.privacy import neutralize_formulas
    from leadflow.domain.status import StatusFileError
    from leadflow.steps.status import import_status_file

    try:
        store = _store()
        result = import_status_file(store, path, datetime.now(UTC))
    except (*_known_errors(), StatusFileError) as exc:
        _fail(_one_line(exc))
    if rejects:
        neutralize_formulas(pd.DataFrame([{"row": r.row, "email": r.email, "reason": r.reason}
                                          for r in result.rejected],
                                         columns=["row", "email", "reason"])).to_csv(rejects, index=False)
    _status_output(result, as_json)


spam_app = typer.Typer(help="Spam leads: restore what was flagged by mistake.", no_args_is_help=True)
app.add_typer(spam_app, name="spam")


@app.command("spam-cleanup")
def spam_cleanup_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; change nothing.")] = False,
    since: Annotated[str | None, typer.Option(help="ISO date or time of the oldest submission to re-check.")] = None,
    batch_size: Annotated[int, typer.Option(help="Submissions per chunk.", min=1)] = 50_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the spam-cleanup flow: flag spam among recent leads, purge spam past retention."""
    from flows.spam_cleanup import spam_cleanup
    from leadflow.config.policy import PolicyError
    from leadflow.steps.spam import SpamCleanupError, load_spam_policy, parse_since
    from tasks.common import utc_now

    try:
        parse_since(since, utc_now(), load_spam_policy())
        _store()
        result = spam_cleanup(since=since, dry_run=dry_run, batch_size=batch_size)
    except (*_known_errors(), SpamCleanupError, PolicyError) as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    flagged, purged = result["flagged"], result["purged"]
    typer.echo(f"Spam cleanup{' (dry run: nothing changed)' if dry_run else ''}, policy {result['policy_version']}, "
               f"submissions since {result['since']}")
    typer.echo(f"  leads checked        {flagged['leads_checked']}")
    typer.echo(f"  {'would flag' if dry_run else 'flagged':<21}{flagged['flagged']}")
    for reason, count in flagged["by_reason"].items():
        typer.echo(f"    {reason:<19}{count}")
    typer.echo(f"  restored (window)    {result['restored']}")
    typer.echo(f"  {'would purge' if dry_run else 'purged':<21}{purged['purged']}")
    typer.echo(f"  held for review      {purged['review']}")
    for row in purged["review_sample"]:
        typer.echo(f"    lead {row['lead_id']} {row['email']}: {row['why']} ({row['reasons']})")


@spam_app.command("restore")
def spam_restore(
    email: Annotated[str | None, typer.Argument(help="The address to restore (a flagged lead or a tombstone).")] = None,
    reason: Annotated[str | None, typer.Option(help="Restore every lead flagged for this reason code.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be restored; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Bring spam-flagged leads back with their status, tasks and messages; they are never flagged again."""
    from leadflow.steps.spam import SpamCleanupError, restore_spam
    from tasks.common import utc_now

    try:
        store = _store()
        result = restore_spam(store, email=email, reason=reason, now=utc_now(), by="cli", dry_run=dry_run)
    except (*_known_errors(), SpamCleanupError) as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    verb = "Would restore" if dry_run else "Restored"
    typer.echo(f"{verb} {result.restored} leads ({result.tasks_reopened} tasks reopened, {result.outbox_restored} "
               f"messages back to pending, {result.tombstones_cleared} tombstones cleared).")
    for row in result.sample:
        typer.echo(f"  lead {row['lead_id']} {row['email']}: {row['reasons']} -> {row['to_status']}")


@app.command("submit")
def submit(
    lead_json: Annotated[str | None, typer.Argument(help="The lead as a JSON object (or use --file).")] = None,
    file: Annotated[str | None, typer.Option("--file", help="A JSON file holding the lead object.")] = None,
    no_event: Annotated[bool, typer.Option("--no-event", help="Insert only; do not emit the event.")] = False,
) -> None:
    """Insert one lead into lead_inbox and emit `leadflow.lead.submitted` so continuous intake takes it at once."""
    from pathlib import Path

    from leadflow.crm import inbox
    from leadflow.domain.inbox import check_lead
    try:
        text = Path(file).read_text(encoding="utf-8") if file else lead_json
        if not text:
            _fail("give the lead as a JSON argument or with --file")
        payload = json.loads(text)
        check_lead(payload)
        store = _store()
        inbox_id = inbox.submit_lead(store, payload)
    except (OSError, ValueError, *_known_errors()) as exc:
        _fail(f"cannot submit the lead: {_one_line(exc)}")
    if not no_event:
        from prefect.events import emit_event

        emit_event(event=inbox.SUBMITTED_EVENT, resource={"prefect.resource.id": inbox.INBOX_RESOURCE_ID},
                   payload={"inbox_id": inbox_id})
    typer.echo(json.dumps({"inbox_id": inbox_id}))


@app.command("serve")
def serve(
    limit: Annotated[int | None, typer.Option(help="Most flow runs at the same time.")] = None,
    project_file: Annotated[str | None, typer.Option("--project", help="The prefect.yaml to serve.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Build the deployments, list them and exit.")] = False,
    api: Annotated[bool, typer.Option("--api", help="Also run `leadflow api` (POST /v1/leads) in this process.")
                   ] = False,
    api_host: Annotated[str, typer.Option(help="Address the API listens on, with --api.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="Port the API listens on, with --api.", min=1, max=65535)] = 8000,
) -> None:
    """Serve every deployment of prefect.yaml, with its schedules and triggers, from this process."""
    from pathlib import Path

    from deployments.serve import (
        PREFECT_YAML,
        SERVED_SUFFIX,
        DeploymentConfigError,
        build_deployments,
        describe_deployment,
        load_project,
        serve_all,
    )

    path = Path(project_file) if project_file else PREFECT_YAML
    try:
        project = load_project(path)
        if check:
            for deployment in build_deployments(project, suffix=SERVED_SUFFIX):
                typer.echo(describe_deployment(deployment))
            return
        _store()
        if api:
            from deployments.serve import start_api

            start_api(api_host, api_port)
        serve_all(limit=limit, project_file=path)
    except (DeploymentConfigError, ImportError, KeyError, OSError, TypeError, ValueError) as exc:
        _fail(f"cannot serve {path.name}: {_one_line(exc)}")


@app.command("backfill")
def backfill(
    path: Annotated[str, typer.Argument(help="A lead export or a folder of them.")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD (UTC).")],
    end: Annotated[str, typer.Option(help="Last day, inclusive, YYYY-MM-DD (UTC).")],
    window: Annotated[str, typer.Option(help="day, week or month.")] = "month",
    runner: Annotated[str, typer.Option(help="threads, dask or deployment.")] = "threads",
    dask_address: Annotated[str | None, typer.Option(help="Scheduler of an existing Dask cluster.")] = None,
    max_parallel: Annotated[int, typer.Option(help="Windows at the same time.")] = 2,
    source_name: Annotated[str | None, typer.Option(help="Channel for rows that name none (else 'unknown').")] = None,
    column_map: Annotated[str | None, typer.Option(help="JSON/YAML file: export header -> canonical column.")] = None,
    submitted_at: Annotated[str | None, typer.Option(
        help="now or an ISO time with zone: dates every row of exports without times.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show tracebacks of errors.")] = False,
    default_country: Annotated[str | None, typer.Option(help=_DEFAULT_COUNTRY_HELP)] = None,
    date_order: Annotated[str | None, typer.Option(help=_DATE_ORDER_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    group_rows: Annotated[int | None, typer.Option(
        help="Replay adjacent windows holding this many rows together in one pass (default: one chunk, or less "
             "so every parallel slot gets work; 0: every window alone).")] = None,
) -> None:
    """Replay lead history between two dates in windows, resumably; reports of touched months are recomputed."""
    from datetime import date

    from flows.backfill import lead_backfill
    from leadflow.domain.backfill import make_windows
    from leadflow.domain.contract import load_column_map, resolve_submitted_at
    from leadflow.io.backfill_files import list_inputs
    from leadflow.steps.intake import field_options

    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        make_windows(first, last, window)
        list_inputs(path)
        if runner not in {"threads", "dask", "deployment"}:
            _fail(f"unknown runner {runner!r} (expected threads, dask or deployment)")
        mapping = load_column_map(column_map) if column_map else None
        given = resolve_submitted_at(submitted_at)
        field_options(default_country, date_order)
        _store()
        with _tracebacks(verbose):
            result = lead_backfill(path=path, start=first, end=last, window=window, runner=runner,
                                   dask_address=dask_address, max_parallel=max_parallel, source_name=source_name,
                                   column_map=mapping, submitted_at=given, default_country=default_country,
                                   date_order=date_order, group_rows=group_rows)
    except (ValueError, *_known_errors()) as exc:
        _fail_verbosely(exc, verbose)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(f"{result['windows_imported']} windows imported, {result['windows_done_before']} already done, "
                   f"{result['rows_imported']} rows; reports redone: {', '.join(result['months_reported']) or 'none'}")


outbox_app = typer.Typer(help="Messages waiting to be sent: prospect email, rep and manager alerts.",
                         no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@app.command("qualify")
def qualify(
    emails: Annotated[list[str] | None, typer.Argument(help="Emails of the leads to (re)qualify.")] = None,
    all_unqualified: Annotated[bool, typer.Option("--all-unqualified", help="Every lead never qualified.")] = False,
    replay: Annotated[bool, typer.Option(help="History replay: no messages, tasks recorded as historical.")] = False,
    deliver: Annotated[bool, typer.Option(help="Send the queued messages at the end.")] = True,
    policy: Annotated[str | None, typer.Option(help="Policy name in leadflow/config/policies/ or a JSON file.")] = None,
    messages: Annotated[str, typer.Option(help="auto: messages only for leads within the policy's freshness "
                                               "window; none: no messages; all: every lead.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run lead-qualification on leads by email, or on every lead that was never qualified."""
    from flows.qualification import lead_qualification
    from leadflow.config.policy import PolicyError
    from leadflow.crm.leads import resolve_lead_ids
    from leadflow.domain.crm_state import MESSAGE_MODES
    from leadflow.domain.qualification import load_qualification_policy

    if not emails and not all_unqualified:
        _fail("name lead emails or pass --all-unqualified")
    if messages not in MESSAGE_MODES:
        _fail(f"--messages must be one of {', '.join(MESSAGE_MODES)}, not {messages!r}")
    try:
        load_qualification_policy(policy or "qualification")
        store = _store()
        ids = resolve_lead_ids(store, None, emails, all_unqualified)
        if emails and not ids:
            _fail("no lead has any of these emails")
        result = lead_qualification(lead_ids=ids, replay=replay, deliver=deliver, policy=policy, messages=messages)
    except (*_known_errors(), PolicyError) as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(f"Qualified {result['leads']} leads ({result['skipped_spam']} spam skipped), policy "
               f"{result['policy_version']}{' (replay)' if replay else ''}.")
    for title, key in (("priority", "by_priority"), ("match band", "matches_by_band"),
                       ("assignment rule", "assignments_by_rule"), ("tasks created", "tasks_created"),
                       ("messages queued", "messages_queued"), ("held back", "messages_held_back")):
        typer.echo(f"  {title:<16} " + ", ".join(f"{k} {v}" for k, v in sorted(result[key].items())))
    typer.echo(f"  accounts created {result['accounts_created']}; delivered {result['delivered']}, "
               f"failed {result['delivery_failed']}")


matches_app = typer.Typer(help="The review queue of company matches too loose to link unseen (needs_review).",
                          no_args_is_help=True)
app.add_typer(matches_app, name="matches")


@matches_app.command("review")
def matches_review(
    limit: Annotated[int, typer.Option(help="How many leads to list (closest calls first).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the queue as JSON.")] = False,
) -> None:
    """List leads waiting for a person to confirm or reject their company's closest account (emails masked)."""
    from leadflow.crm.review import review_queue
    from leadflow.domain.spam import mask_email

    try:
        store = _store()
        total, queue = review_queue(store, limit)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    rows = [{**r, "email": mask_email(r["email"]), "created_at": str(r["created_at"])}
            for r in queue.astype(object).where(queue.notna(), None).to_dict("records")]
    if as_json:
        typer.echo(json.dumps({"waiting": total, "leads": rows}, indent=2, default=str))
        return
    typer.echo(f"{total} leads wait for a company match review" + (f"; the {len(rows)} closest:" if rows else "."))
    for r in rows:
        candidate = f"account {r['candidate_account_id']} {r['candidate_name'] or '?'}"
        typer.echo(f"  lead {r['lead_id']:<8} {r['email']:<28} {r['company'] or '':<30} -> {candidate} "
                   f"(score {r['score']:.1f})")
    if rows:
        typer.echo("Decide with `leadflow matches link LEAD_ID [ACCOUNT_ID]` or "
                   "`leadflow matches new-account LEAD_ID`.")


def _resolve(lead_id: int, account_id: int | None, new_account: bool, reviewer: str | None, as_json: bool) -> None:
    from datetime import UTC, datetime

    from leadflow.config.policy import PolicyError
    from leadflow.steps.review import ReviewError, resolve_match

    try:
        store = _store()
        result = resolve_match(store, lead_id, now=datetime.now(UTC), account_id=account_id,
                               new_account=new_account, reviewer=reviewer or os.environ.get("USER"))
    except (*_known_errors(), ReviewError, PolicyError) as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    what = "already decided, nothing changed" if not result.changed else (
        f"linked to {'new ' if result.account_created else ''}account {result.account_id}")
    typer.echo(f"Lead {result.lead_id}: {what}.")


@matches_app.command("link")
def matches_link(
    lead_id: Annotated[int, typer.Argument(help="The lead's id (from `leadflow matches review`).")],
    account_id: Annotated[int | None, typer.Argument(help="The account to link to (default: the candidate).")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who decided (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Link a needs_review lead to its candidate account (or another); later runs keep the link."""
    _resolve(lead_id, account_id, False, reviewer, as_json)


@matches_app.command("new-account")
def matches_new_account(
    lead_id: Annotated[int, typer.Argument(help="The lead's id (from `leadflow matches review`).")],
    reviewer: Annotated[str | None, typer.Option(help="Who decided (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The candidate is another company: create the lead's own account and link the lead to it."""
    _resolve(lead_id, None, True, reviewer, as_json)


@outbox_app.command("deliver")
def outbox_deliver(
    limit: Annotated[int | None, typer.Option(help="Most messages to claim in this run.")] = None,
    lease_minutes: Annotated[float | None, typer.Option(help="Minutes after which a claim counts as dead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send every pending outbox message (the run after a crash sends what was left, never anything twice)."""
    from flows.delivery import outbox_delivery

    try:
        _store()
        result = outbox_delivery(limit=limit, lease_minutes=lease_minutes)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(f"Sent {result['sent']} of {result['claimed']} claimed; {result['retry_later']} to retry later, "
               f"{result['failed']} failed, {result['unknown_outcome']} of unknown outcome (not resent).")
    typer.echo("Outbox now: " + ", ".join(f"{k} {v}" for k, v in sorted(result["outbox"].items())))


@app.command("demo")
def demo() -> None:
    """Migrate the embedded database, load reference data, run intake on the bundled messy samples, report on them."""
    from datetime import UTC, datetime

    from leadflow.crm import reference
    from leadflow.domain.summary import IntakeSummary
    from leadflow.io.enrichment import SAMPLE_FIRMOGRAPHICS
    from leadflow.steps.enrichment import load_firmographics

    store = _store(require_current=False)
    typer.echo(f"CRM database: {store}")
    store.upgrade()
    reps = reference.load_sales_reps(store, reference.DATA_DIR / "sales_reps.csv")
    accounts = reference.load_accounts(store, reference.DATA_DIR / "accounts.csv")
    firmographics = load_firmographics(store, str(SAMPLE_FIRMOGRAPHICS), datetime.now(UTC)).written
    typer.echo(f"Loaded {reps} sales reps, {accounts} accounts and firmographics of {firmographics} companies.\n")
    try:
        first = run_intake(str(reference.SAMPLE_LEADS), None, None, None)
        typer.echo(IntakeSummary.from_dict(first).to_text() + "\n")
        second = run_intake(str(reference.SAMPLE_CRM_EXPORT), "web_form", str(reference.SAMPLE_CRM_EXPORT_MAP), None)
        typer.echo(IntakeSummary.from_dict(second).to_text() + "\n")
        _demo_live_inquiry(store)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    counts = store.table_counts()
    typer.echo(
        f"The CRM now holds {counts['leads']} leads, {counts['lead_submissions']} submissions, "
        f"{counts['quarantine']} quarantined rows and {counts['lead_events']} audit events.\n"
        "Run `make demo` again: nothing changes, every write is idempotent.\n"
    )
    _demo_report(store)
    typer.echo(UI_HINT)


DEMO_LIVE_LEAD = {
    "email": "dana.whitfield@northwind-logistics.com", "first_name": "Dana", "last_name": "Whitfield",
    "job_title": "VP Operations", "company": "Northwind Logistics", "website": "northwind-logistics.com",
    "country": "US", "source": "web_form", "demo_requested": "yes", "page_views": "9", "pricing_page_visits": "3",
    "message": "We route 2,000 shipments a week and want a demo for our ops team.", "form_fill_seconds": "48",
}


def _demo_live_inquiry(store: Any) -> None:
    """Post one inquiry dated now through the lead inbox: the samples are history (no messages); this one is live."""
    from datetime import UTC, datetime

    from flows.intake import lead_intake
    from leadflow.crm import inbox
    from leadflow.crm.leads import resolve_lead_ids
    from leadflow.domain.summary import IntakeSummary

    if resolve_lead_ids(store, emails=[DEMO_LIVE_LEAD["email"]]):
        typer.echo("The live inquiry of the demo is already in the CRM.\n")
        return
    inbox.submit_lead(store, {**DEMO_LIVE_LEAD, "submitted_at": datetime.now(UTC).isoformat()})
    result = lead_intake(source_name="web_form")
    typer.echo("A live inquiry, posted now through the lead inbox, is answered and routed at once (the samples "
               "above are history, so they queued no messages):")
    typer.echo(IntakeSummary.from_dict(result).to_text() + "\n")


def _demo_report(store: Any) -> None:
    """Report on the demo data's newest month: its history ends before last month, whose report would be empty."""
    from pathlib import Path

    from flows.monthly_report import monthly_report
    from leadflow.crm.reports import latest_first_touch_month

    month = latest_first_touch_month(store)
    if month is None:
        return
    try:
        result = monthly_report(month=month)
    except _known_errors() as exc:
        _fail(_one_line(exc))
    page = Path(result["files"]["md"][0])
    typer.echo(page.read_text(encoding="utf-8"))
    typer.echo(f"The monthly report of {month}, the demo data's newest month (`leadflow report --month {month}`); "
               f"every format is in {page.parent}\n")


person_app = typer.Typer(help="One person's data: export it for an access request, erase it on request.",
                         no_args_is_help=True)
app.add_typer(person_app, name="person")
app.add_typer(cli_privacy.app, name="retention")


@person_app.command("export")
def person_export(email: Annotated[str, typer.Argument(help="The person's email address.")]) -> None:
    """Print everything the CRM holds about one person as JSON."""
    from leadflow.config.settings import email_hash_key, get_settings
    from leadflow.steps.people import PersonRequestError, export_person

    try:
        store = _store()
        try:
            key = email_hash_key(database_url=store.url).decode()
        except ValueError:
            key = None  # no hash key (PostgreSQL without LEADFLOW_HASH_KEY): nothing can be keyed to them anyway
        settings = get_settings()
        result = export_person(store, email, hash_key=key, outbox_dir=settings.outbox_dir,
                               backfill_dir=settings.backfill_dir)
    except (*_known_errors(), PersonRequestError) as exc:
        _fail(_one_line(exc))
    typer.echo(json.dumps(result, indent=2, default=str, ensure_ascii=False))


@person_app.command("erase")
def person_erase(
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the erasure record, e.g. a ticket id).")] = None,
) -> None:
    """Erase one person everywhere (rows and .eml files); keep only an erasure record with a keyed hash."""
    from leadflow.config.settings import email_hash_key, get_settings
    from leadflow.steps.people import PersonRequestError, erase_person

    settings = get_settings()
    try:
        store = _store()
        # The same key as the spam hashes: one secret to keep, and on SQLite the key file made beside the CRM.
        key = email_hash_key(settings, store.url).decode()
        summary = erase_person(store, email, hash_key=key, outbox_dir=settings.outbox_dir, reason=reason,
                               dry_run=dry_run, backfill_dir=settings.backfill_dir)
    except (*_known_errors(), PersonRequestError, ValueError) as exc:
        _fail(_one_line(exc))
    typer.echo(json.dumps(summary.as_dict()))


from deployments import cli_ops, cli_quarantine, cli_reps  # noqa: E402  (their commands import cli's helpers when run)

app.add_typer(cli_reps.app, name="reps")
app.add_typer(cli_quarantine.app, name="quarantine")
app.add_typer(cli_ops.app, name="ops")
from deployments import cli_scoring  # noqa: E402

app.add_typer(cli_scoring.app, name="scoring")
from deployments.cli_repair import app as repair_app  # noqa: E402  (a command group of its own module)

app.add_typer(repair_app, name="repair")
from deployments.cli_api import app as api_app  # noqa: E402  (a command group of its own module)

app.add_typer(api_app, name="api")


def main() -> None:
    """Entry point of the `leadflow` console command."""
    # The ephemeral Prefect API's telemetry write races the first flow run for its SQLite file ("database is
    # locked" tracebacks on a newcomer's terminal) and phones home; users can still turn it on explicitly.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A killed command must not leave its temporary Prefect API server behind.
    from deployments.ephemeral_server import guard_temporary_server

    guard_temporary_server()
    app()


if __name__ == "__main__":
    main()
