"""`leadflow serve`: every deployment of prefect.yaml, with its schedules and triggers, served from one process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"


class DeploymentConfigError(ValueError):
    """prefect.yaml names something that does not exist; the message says what in one line."""


def load_project(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """The parsed prefect.yaml (YAML anchors resolved)."""
    try:
        project = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeploymentConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise DeploymentConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(project, dict) or not isinstance(project.get("deployments"), list):
        raise DeploymentConfigError(f"{path} has no list of deployments")
    return project


def load_entrypoint(entrypoint: str, root: Path = ROOT) -> Any:
    """The flow object an entrypoint (`path/to/file.py:function`) names, imported as its package module."""
    file, _, name = entrypoint.partition(":")
    source = (root / file).resolve()
    if not source.is_file() or not name:
        raise DeploymentConfigError(f"entrypoint {entrypoint}: no such file or no function name")
    # Import as a package module (flows.intake), so a flow imported twice is still one flow object.
    module_name = ".".join(source.relative_to(root).with_suffix("").parts)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if importlib.util.find_spec(module_name) is None:
        raise DeploymentConfigError(f"entrypoint {entrypoint}: module {module_name} not importable")
    module = importlib.import_module(module_name)
    flow = getattr(module, name, None)
    if flow is None:
        raise DeploymentConfigError(f"entrypoint {entrypoint}: {module_name} has no {name}")
    return flow


def _schedules(config: dict[str, Any], timezone: str) -> list[Any]:
    from datetime import timedelta

    from prefect.schedules import Schedule

    schedules = []
    for entry in config.get("schedules") or []:
        active = entry.get("active", True)
        if "cron" in entry:
            # Served schedules follow LEADFLOW_TIMEZONE; prefect.yaml carries the same zone for `prefect deploy`.
            schedules.append(Schedule(cron=entry["cron"], timezone=timezone, active=active))
        elif "interval" in entry:
            schedules.append(Schedule(interval=timedelta(seconds=entry["interval"]), active=active))
        else:
            raise DeploymentConfigError(f"deployment {config['name']}: unsupported schedule {entry}")
    return schedules


def build_deployments(project: dict[str, Any] | None = None, timezone: str | None = None) -> list[Any]:
    """RunnerDeployments for every deployment in prefect.yaml, ready for prefect.serve."""
    from prefect.events import DeploymentEventTrigger

    from leadflow.settings import get_settings

    project = project or load_project()
    timezone = timezone or get_settings().timezone
    deployments = []
    for config in project.get("deployments") or []:
        flow = load_entrypoint(config["entrypoint"])
        limit = config.get("concurrency_limit")
        deployments.append(
            flow.to_deployment(
                name=config["name"],
                description=config.get("description"),
                tags=list(config.get("tags") or []),
                parameters=dict(config.get("parameters") or {}),
                schedules=_schedules(config, timezone),
                triggers=[DeploymentEventTrigger(**t) for t in config.get("triggers") or []],
                concurrency_limit=_concurrency(limit),
            )
        )
    return deployments


def _concurrency(limit: Any) -> Any:
    if limit is None or isinstance(limit, int):
        return limit
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**limit)


def describe_deployment(deployment: Any) -> str:
    """One line saying what a built deployment will do when served: its schedules, triggers and concurrency."""
    when = []
    for entry in deployment.schedules or []:
        schedule = getattr(entry, "schedule", entry)
        if getattr(schedule, "cron", None):
            when.append(f"cron '{schedule.cron}' ({schedule.timezone})")
        elif getattr(schedule, "interval", None):
            when.append(f"every {int(schedule.interval.total_seconds())}s")
    when += [f"on {', '.join(sorted(t.expect))}" for t in deployment.triggers or []]
    limit = deployment.concurrency_limit
    return (f"{deployment.flow_name}/{deployment.name}: {'; '.join(when) or 'no schedule (run on demand)'}; "
            f"at most {limit if limit is not None else 'unlimited'} at once")


def serve_all(limit: int | None = None, project_file: Path = PREFECT_YAML) -> None:
    """Serve every deployment from this process until interrupted (local use; production uses a work pool)."""
    from prefect import serve

    serve(*build_deployments(load_project(project_file)), limit=limit)


def validate_project(project: dict[str, Any], root: Path = ROOT) -> list[str]:
    """What is wrong with prefect.yaml against the code: entrypoints that do not import, unknown parameters."""
    import inspect

    problems: list[str] = []
    for config in project.get("deployments") or []:
        label = f"deployment {config.get('name')}"
        try:
            flow = load_entrypoint(config.get("entrypoint", ""), root)
        except (DeploymentConfigError, ImportError) as exc:
            problems.append(f"{label}: {exc}")
            continue
        accepted = set(inspect.signature(flow.fn).parameters)
        problems.extend(f"{label}: {flow.name} has no parameter {p}"
                        for p in sorted(set(config.get("parameters") or {}) - accepted))
        for trigger in config.get("triggers") or []:
            problems.extend(f"{label}: trigger sets unknown parameter {p}"
                            for p in sorted(set(trigger.get("parameters") or {}) - accepted))
    return problems
