"""`leadflow api`: run the HTTP front door for web forms and integrations, and manage its API keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="The HTTP front door: POST /v1/leads from web forms and integrations, GET /healthz.",
                  invoke_without_command=True)
keys_app = typer.Typer(help="API keys of the sites and integrations that post leads.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _fail(message: str) -> None:
    from deployments.cli import _fail as fail

    fail(message)


def _errors() -> tuple[type[BaseException], ...]:
    from deployments.cli import _known_errors
    from leadflow.crm.api_keys import ApiKeyError

    return (*_known_errors(), ApiKeyError)


@app.callback()
def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (rate limits are counted per process).", min=1)] = 1,
) -> None:
    """Serve the API until interrupted (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from deployments.api import uvicorn_options
    from deployments.cli import _store

    _store()
    typer.echo(f"leadflow api on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}); "
               "POST /v1/leads, GET /healthz", err=True)
    uvicorn.run("deployments.api:create_app", factory=True, workers=workers, **uvicorn_options(host, port))


def _origins(values: list[str]) -> list[str]:
    from leadflow.domain.api_intake import normalize_origin

    origins: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                try:
                    origins.append(part if part == "*" else normalize_origin(part))
                except ValueError as exc:
                    _fail(str(exc))
    return list(dict.fromkeys(origins))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the site or integration (unique).")],
    channel: Annotated[str | None, typer.Option(help="Channel of its leads when they name none (e.g. web_form).")
                       ] = None,
    origin: Annotated[list[str] | None, typer.Option(
        help="Browser origin allowed to post with the key, e.g. https://www.example.com (repeat, or comma-separate; "
             "* for any). Without one the key is for servers only: requests from browsers are refused.")] = None,
    rate_per_minute: Annotated[int | None, typer.Option(
        help="Requests per minute for this key (default: LEADFLOW_API_KEY_RATE_PER_MINUTE).", min=0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
) -> None:
    """Create a key and print it once: only its hash is stored, so it cannot be shown again."""
    from deployments.cli import _store
    from leadflow.crm.api_keys import create_key

    name = name.strip()
    if not name or len(name) > 100:
        _fail("a key name must be 1 to 100 characters")
    if channel is not None and not (0 < len(channel.strip()) <= 64):
        _fail("--channel must be 1 to 64 characters")
    origins = _origins(origin or [])
    try:
        key, key_id = create_key(_store(), name, default_channel=channel.strip() if channel else None,
                                 allowed_origins=origins, rate_per_minute=rate_per_minute)
    except _errors() as exc:
        _fail(str(exc).splitlines()[0])
    if as_json:
        typer.echo(json.dumps({"id": key_id, "name": name, "key": key.token, "prefix": key.prefix,
                               "default_channel": channel, "allowed_origins": origins}))
        return
    typer.echo(f"API key {name!r} (id {key_id}): {key.token}")
    typer.echo("Store it now: it is not shown again (only its hash is kept).")
    if origins:
        typer.echo(f"Browsers may post with it from: {', '.join(origins)}")
    else:
        typer.echo("No allowed origins: a server-side key (keep it secret); browsers are refused.")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False) -> None:
    """List every key (name, prefix, channel, origins, state); never the keys themselves."""
    from deployments.cli import _store
    from leadflow.crm.api_keys import list_keys

    try:
        rows = list_keys(_store())
    except _errors() as exc:
        _fail(str(exc).splitlines()[0])
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("No API keys yet: create one with `leadflow api keys create NAME`.")
        return
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        rate = f"{row['rate_per_minute']}/min" if row["rate_per_minute"] is not None else "default rate"
        origins = ", ".join(row["allowed_origins"]) or "servers only"
        typer.echo(f"{row['id']:>4}  {row['name']:<24} {row['prefix']:<13} {state:<18} "
                   f"{row['default_channel'] or '-':<14} {rate:<13} {origins}")


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name or its prefix as listed (lfk_...).")],
) -> None:
    """Revoke a key: requests with it are refused (401) from then on."""
    from deployments.cli import _store
    from leadflow.crm.api_keys import revoke_key

    try:
        row = revoke_key(_store(), name.strip())
    except _errors() as exc:
        _fail(str(exc).splitlines()[0])
    typer.echo(f"Revoked API key {row['name']!r} ({row['prefix']}).")
