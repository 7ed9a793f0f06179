"""`leadflow ops install`: the Prefect Automations that tell ops about failed, crashed and zombie flow runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

app = typer.Typer(help="Operations: alerts that reach ops whatever happens to a run.", no_args_is_help=True)

AUTOMATIONS_FILE = Path(__file__).resolve().parent / "automations.yaml"
# The notification block the automations send through; `ops install` saves it from LEADFLOW_OPS_ALERT_URLS.
OPS_BLOCK_NAME = "leadflow-ops-alerts"
BLOCK_PLACEHOLDER = "{ops_block_id}"


class OpsConfigError(ValueError):
    """The automations file or the alert settings are not usable; the message says what in one line."""


def load_automations(path: Path = AUTOMATIONS_FILE, block_id: str = BLOCK_PLACEHOLDER) -> list[Any]:
    """The Automation models of the automations file, with the notification block's id filled in."""
    from prefect.automations import Automation

    try:
        specs = yaml.safe_load(path.read_text(encoding="utf-8"))["automations"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise OpsConfigError(f"cannot read the automations in {path}: {type(exc).__name__}") from exc
    automations = []
    for spec in specs:
        for action in spec.get("actions") or []:
            if action.get("block_document_id") == BLOCK_PLACEHOLDER:
                action["block_document_id"] = block_id
        automations.append(Automation.model_validate(spec))
    return automations


def save_alert_block(urls: str) -> str:
    """Save (or overwrite) the Apprise-backed notification block for ops; returns its block document id."""
    # SlackWebhook is Prefect's built-in Apprise block: a URL that is not a Slack webhook (mailto://, discord://,
    # json://, several comma-separated) goes to Apprise as it is. A block type of leadflow's own would not load in
    # the Prefect server process that runs the automation's action.
    from prefect.blocks.notifications import SlackWebhook

    return str(SlackWebhook(url=urls).save(OPS_BLOCK_NAME, overwrite=True))


def install_automations(automations: list[Any]) -> list[dict[str, str]]:
    """Create each automation, or update the one with its name in place (extra copies deleted): idempotent."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    done = []
    with get_client(sync_client=True) as client:
        for automation in automations:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                # As Automation.update does: the update endpoint refuses an owner_resource field.
                client.update_automation(existing[0].id, AutomationCore(
                    **automation.model_dump(exclude={"id", "owner_resource"})))
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
                done.append({"name": automation.name, "id": str(existing[0].id), "action": "updated"})
            else:
                new_id = client.create_automation(AutomationCore(**automation.model_dump(exclude={"id"})))
                done.append({"name": automation.name, "id": str(new_id), "action": "created"})
    return done


def install(urls: str | None, path: Path = AUTOMATIONS_FILE) -> list[dict[str, str]]:
    """Save the ops notification block and create or update every automation of the file."""
    if not urls or not urls.strip():
        raise OpsConfigError("LEADFLOW_OPS_ALERT_URLS is not set: set it to the Apprise URL(s) ops are alerted on")
    load_automations(path, "00000000-0000-0000-0000-000000000000")  # the file is valid before anything is saved
    return install_automations(load_automations(path, save_alert_block(urls.strip())))


@app.command("install")
def ops_install(
    automations_file: Annotated[str | None, typer.Option("--file", help="The automations YAML to install.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was installed as JSON.")] = False,
) -> None:
    """Install the failure, crash and zombie-run Automations on the Prefect API (PREFECT_API_URL); re-run safely."""
    from deployments.cli import _fail, _one_line
    from leadflow.config.settings import get_settings

    secret = get_settings().ops_alert_urls
    try:
        done = install(secret.get_secret_value() if secret else None,
                       Path(automations_file) if automations_file else AUTOMATIONS_FILE)
    except (OpsConfigError, ValueError) as exc:
        _fail(_one_line(exc))
    except Exception as exc:
        # The Prefect API unreachable or refusing: one line naming the error type, not a traceback.
        _fail(f"cannot install the automations: {type(exc).__name__}: {_one_line(exc)}")
    if as_json:
        typer.echo(json.dumps({"block": OPS_BLOCK_NAME, "automations": done}))
        return
    typer.echo(f"Notification block {OPS_BLOCK_NAME} saved from LEADFLOW_OPS_ALERT_URLS")
    for item in done:
        typer.echo(f"Automation {item['name']} {item['action']} ({item['id']})")
