"""`leadflow serve`: every deployment of prefect.yaml, with its schedules and triggers, served from one process.

Served deployments carry their own names (`lead-intake/continuous-served`, ...), so serving never re-registers or
pauses the work-pool deployments that `prefect deploy --all` made from the same file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
# How often `leadflow serve` polls for runs to start (an event-triggered run waits for the next poll).
SERVE_POLL_SECONDS = 1.0
# Imported lazily by the flows, at seconds each: a warm start imports them once (see start_warm_flow_runs).
WARM_MODULES = ("great_expectations",)
# Appended to every served deployment's name: the runner registers, and pauses on shutdown, only these.
SERVED_SUFFIX = "-served"
# Flow run heartbeat period (Prefect's minimum is 30 s); the zombie automation crashes runs silent for 90 s.
HEARTBEAT_SECONDS = 30


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


def entrypoint_module(entrypoint: str, root: Path = ROOT) -> str:
    """The package module an entrypoint's file is (`flows/intake.py:lead_intake` -> `flows.intake`)."""
    # Imported as a package module, so a flow imported twice is still one flow object.
    source = (root / entrypoint.partition(":")[0]).resolve()
    try:
        return ".".join(source.relative_to(root.resolve()).with_suffix("").parts)
    except ValueError:
        raise DeploymentConfigError(f"entrypoint {entrypoint}: not inside {root}") from None


def load_entrypoint(entrypoint: str, root: Path = ROOT) -> Any:
    """The flow object an entrypoint (`path/to/file.py:function`) names, imported as its package module."""
    file, _, name = entrypoint.partition(":")
    source = (root / file).resolve()
    if not source.is_file() or not name:
        raise DeploymentConfigError(f"entrypoint {entrypoint}: no such file or no function name")
    module_name = entrypoint_module(entrypoint, root)
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


def deployment_options(config: dict[str, Any], timezone: str, suffix: str = "") -> dict[str, Any]:
    """What one prefect.yaml deployment asks for, as keyword arguments of `Flow.to_deployment` / `Runner.add_flow`."""
    from prefect.events import DeploymentEventTrigger

    return {
        "name": config["name"] + suffix,
        "description": config.get("description"),
        "tags": list(config.get("tags") or []),
        "parameters": dict(config.get("parameters") or {}),
        "schedules": _schedules(config, timezone),
        "triggers": [DeploymentEventTrigger(**t) for t in config.get("triggers") or []],
        "concurrency_limit": _concurrency(config.get("concurrency_limit")),
    }


def build_deployments(project: dict[str, Any] | None = None, timezone: str | None = None,
                      suffix: str = "") -> list[Any]:
    """RunnerDeployments for every deployment in prefect.yaml (names + suffix), ready for prefect.serve."""
    from leadflow.config.settings import get_settings

    project = project or load_project()
    timezone = timezone or get_settings().timezone
    return [load_entrypoint(config["entrypoint"]).to_deployment(**deployment_options(config, timezone, suffix))
            for config in project.get("deployments") or []]


def served_names(project: dict[str, Any]) -> list[tuple[str, str]]:
    """(flow/deployment name as served, the prefect.yaml name it comes from) for every deployment of the project."""
    return [(f"{load_entrypoint(config['entrypoint']).name}/{config['name']}{SERVED_SUFFIX}",
             f"{load_entrypoint(config['entrypoint']).name}/{config['name']}")
            for config in project.get("deployments") or []]


def check_beside_work_pools(project: dict[str, Any]) -> list[str]:
    """Refuse (DeploymentConfigError) a served name that a work-pool deployment holds; list the deployed twins.

    The returned lines name the work-pool deployments of the same flows: they keep their schedules and triggers,
    so both react to the same events (harmless: runs claim different rows) unless one side is paused.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    twins: list[str] = []
    with get_client(sync_client=True) as client:
        for served, deployed in served_names(project):
            for name, is_served in ((served, True), (deployed, False)):
                try:
                    found = client.read_deployment_by_name(name)
                except ObjectNotFound:
                    continue
                if found.work_pool_name and is_served:
                    raise DeploymentConfigError(
                        f"deployment {name} belongs to work pool {found.work_pool_name}; serving would take it "
                        f"over: delete it (`prefect deployment delete {name}`) or serve another project file")
                if found.work_pool_name:
                    state = "paused" if found.paused else "active"
                    twins.append(f"{name} (work pool {found.work_pool_name}, {state})")
    return twins


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
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.logging import get_logger
    from prefect.runner import Runner

    from leadflow.config.settings import get_settings

    project = load_project(project_file)
    timezone = get_settings().timezone
    # Served runs send heartbeats, as the work pool's do (prefect.yaml), for the zombie-run automation.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    twins = check_beside_work_pools(project)
    if twins:
        print(f"Work-pool deployments of the same flows stay as they are: {'; '.join(twins)}", flush=True)
    warm_up = start_warm_flow_runs(entrypoint_modules(project))
    # Pauses only the deployments added below (the -served ones) when serving stops.
    runner = Runner(limit=limit, query_seconds=poll_seconds(), pause_on_shutdown=True)
    for config in project["deployments"]:
        flow, options = load_entrypoint(config["entrypoint"]), deployment_options(config, timezone, SERVED_SUFFIX)
        # add_flow (what `flow.serve` uses), not prefect.serve's add_deployment: the runner then starts each run
        # from the flow object it holds instead of a `python -m prefect.engine` that loads the flow from storage.
        runner.add_flow(flow, **options)
        print(f"Serving {describe_deployment(flow.to_deployment(**options))}", flush=True)
    if warm_up is not None:
        # Start polling once the fork server has its imports, so that the first lead is as fast as the rest.
        warm_up.join()
    start = "warm (forked from a process that imported the flows once)" if warm_up else "in a new interpreter"
    print(f"Polling for runs every {runner.query_seconds:g} s; flow runs start {start}", flush=True)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal) as exc:
        get_logger("leadflow.serve").info("Received %s, shutting down...", type(exc).__name__)


def start_api(host: str, port: int) -> Any:
    """Run `leadflow api` on a thread of this process (`leadflow serve --api`, for local use); returns the server.

    Fails (OSError) when the port is taken, before serving starts.
    """
    import contextlib
    import threading
    import time

    import uvicorn

    from deployments.api import uvicorn_options

    server = uvicorn.Server(uvicorn.Config("deployments.api:create_app", factory=True, **uvicorn_options(host, port)))
    def run() -> None:
        # uvicorn exits (SystemExit) when it cannot bind; the check below turns that into an OSError.
        with contextlib.suppress(SystemExit):
            server.run()

    # uvicorn installs signal handlers only on the main thread: Ctrl-C stops the runner, the daemon thread goes too.
    thread = threading.Thread(target=run, name="leadflow-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise OSError(f"the API did not start on {host}:{port} (port taken?)")
    print(f"API on http://{host}:{port}: POST /v1/leads, GET /healthz", flush=True)
    return server


def poll_seconds() -> float:
    """How often the served runner asks the API for runs to start: PREFECT_RUNNER_POLL_FREQUENCY when set, else 1.

    Prefect's default (10 s) would add 5 s on average to every event-triggered intake run; one small query a
    second to the local API is cheap.
    """
    from prefect.settings import get_current_settings

    runner = get_current_settings().runner
    # Set explicitly (environment, profile or temporary settings) wins; Prefect's own default does not.
    return float(runner.poll_frequency) if "poll_frequency" in runner.model_fields_set else SERVE_POLL_SECONDS


def entrypoint_modules(project: dict[str, Any], root: Path = ROOT) -> list[str]:
    """The package modules of every deployment's entrypoint (flows.intake, ...), once each, in prefect.yaml order."""
    modules = [entrypoint_module(config.get("entrypoint", ""), root) for config in project.get("deployments") or []]
    return list(dict.fromkeys(modules))


def start_warm_flow_runs(modules: list[str]) -> Any:
    """Start served flow runs by forking a process that imported the flows once, instead of a new interpreter.

    Prefect starts each served run in a `spawn` process, which imports Prefect, pandas, the flow modules and
    (at the first check) Great Expectations again: seconds of CPU before a lead is read. A fork server imports
    them once, when serving starts, and forks a child per run. The child runs exactly what Prefect's own
    `run_flow_in_subprocess` runs (same engine, settings, signals, control channel); only the start differs.
    Code changed on disk is picked up when `leadflow serve` restarts. Returns a first, empty child process,
    which ends once the fork server has imported everything (join it to wait for that), or None when runs
    start cold: no fork on this platform, or a Prefect whose runner no longer has this seam.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    try:
        from prefect.runner import _starter_direct
    except ImportError:
        return None
    if not hasattr(_starter_direct, "run_flow_in_subprocess"):
        return None
    context = multiprocessing.get_context("forkserver")
    # "__main__" too: otherwise every child re-imports the `leadflow` script as multiprocessing's __mp_main__.
    context.set_forkserver_preload(["__main__", __name__, *WARM_MODULES, *modules])
    warm_up = context.Process(target=_warm, name="leadflow-warm-up")
    warm_up.start()
    _starter_direct.run_flow_in_subprocess = run_flow_in_forked_process
    return warm_up


def _warm() -> None:
    """The warm-up child: forked only once the fork server has imported the flows; nothing left to do."""


def run_flow_in_forked_process(flow: Any, flow_run: Any = None, parameters: dict[str, Any] | None = None,
                               wait_for: Any = None, context: dict[str, Any] | None = None,
                               env: dict[str, str | None] | None = None) -> Any:
    """prefect.flow_engine.run_flow_in_subprocess (Prefect 3.8), with a child forked from the warm fork server."""
    import multiprocessing

    from prefect.context import serialize_context
    from prefect.flow_engine import (
        _CONTROL_CHANNEL_ENV_KEYS,
        _run_serialized_call_with_control_bootstrap,
        _runtime_subprocess_env,
    )
    from prefect.settings.context import get_current_settings
    from prefect.utilities.callables import cloudpickle_wrapped_call
    from prefect.utilities.processutils import sanitize_subprocess_env

    context = context or serialize_context()
    merged_env: dict[str, str | None] = (
        get_current_settings().to_environment_variables(exclude_unset=True)
        | os.environ
        | {"PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false"}
        | (env or {})
    )
    sanitized = sanitize_subprocess_env(merged_env)
    reference = flow_reference(flow)
    call = cloudpickle_wrapped_call(
        _run_flow_with_env,
        env=_runtime_subprocess_env(sanitized),
        remove_env={key for key, value in merged_env.items() if value is None},
        flow=None if reference else flow,
        flow_reference=reference,
        flow_run=flow_run,
        parameters=parameters,
        wait_for=wait_for,
        context=context,
    )
    startup_env = {key: value for key, value in sanitized.items() if key in _CONTROL_CHANNEL_ENV_KEYS}
    process = multiprocessing.get_context("forkserver").Process(
        target=_run_serialized_call_with_control_bootstrap, args=(call.args[0], startup_env))
    process.start()
    return process


def flow_reference(flow: Any) -> tuple[str, str] | None:
    """(module, name) under which a module-level flow object is found, so a forked child takes it from its imports.

    Pickled, a flow's function goes by value (its module's name for it is the Flow, not the function), with only
    the globals its body uses: string annotations such as `Literal[...]` under `from __future__ import
    annotations` then cannot be resolved and Prefect's parameter validation fails the run.
    """
    fn = getattr(flow, "fn", None)
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    name = getattr(fn, "__name__", "")
    return (module.__name__, name) if module is not None and getattr(module, name, None) is flow else None


def _run_flow_with_env(*args: Any, env: dict[str, str], remove_env: set[str],
                       flow_reference: tuple[str, str] | None = None, **kwargs: Any) -> None:
    """In the forked child: take the run's environment and settings, then run the flow as Prefect's engine does."""
    import asyncio

    if flow_reference is not None:
        kwargs["flow"] = getattr(importlib.import_module(flow_reference[0]), flow_reference[1])

    from prefect.context import SettingsContext, get_settings_context
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import run_flow
    from prefect.settings.models.root import Settings

    for key in remove_env:
        os.environ.pop(key, None)
    os.environ.update(env)
    settings_context = get_settings_context()
    # A new settings object, so the run sees the environment it was started with (not the fork server's).
    with SettingsContext(profile=settings_context.profile, settings=Settings()), \
            handle_engine_signals(getattr(kwargs.get("flow_run"), "id", None)):
        result = run_flow(*args, **kwargs)
        if asyncio.iscoroutine(result):
            asyncio.run(result)


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
