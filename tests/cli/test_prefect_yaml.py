"""prefect.yaml against the code and the README: entrypoints import, parameters exist, schedules are documented."""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path

import pytest

from deployments.serve import (
    PREFECT_YAML,
    ROOT,
    DeploymentConfigError,
    build_deployments,
    load_entrypoint,
    load_project,
    validate_project,
)
from leadflow.config.settings import Settings
from leadflow.crm.inbox import INBOX_RESOURCE_ID, SUBMITTED_EVENT

EXPECTED = {
    "lead-intake/continuous",
    "lead-intake/file-import",
    "spam-cleanup/nightly",
    "monthly-report/monthly",
    "scoring-review/monthly",
    "outbox-delivery/queued",
    "lead-backfill/ad-hoc",
    "person-erasure/on-request",
    "lead-mailbox/every-minute",
    "lead-follow-up/hourly",
}


@pytest.fixture(scope="module")
def project() -> dict:
    return load_project()


def _by_full_name(project: dict) -> dict[str, dict]:
    return {f"{load_entrypoint(d['entrypoint']).name}/{d['name']}": d for d in project["deployments"]}


def _readme_schedules() -> dict[str, str]:
    """The deployment table of the README: deployment -> its schedule column."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+/[\w-]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    return {name: schedule.strip() for name, schedule in rows}


def test_every_entrypoint_imports_and_every_parameter_exists(project):
    assert validate_project(project) == []


def test_the_deployments_are_the_ones_the_issue_lists(project):
    assert set(_by_full_name(project)) == EXPECTED


def test_every_deployment_shares_the_work_pool_of_the_definitions_block(project):
    pool = project["definitions"]["work_pool"]
    for deployment in project["deployments"]:
        assert deployment["work_pool"] == pool
        assert deployment["description"] and deployment["tags"][0] == "leadflow"


def test_schedules_and_time_zones_are_what_the_readme_says(project):
    documented = _readme_schedules()
    assert set(documented) == EXPECTED
    timezone = project["definitions"]["timezone"]
    zoneinfo.ZoneInfo(timezone)
    assert timezone == Settings.model_fields["timezone"].default
    for name, deployment in _by_full_name(project).items():
        schedules = deployment.get("schedules") or []
        if documented[name] == "none":
            assert schedules == [], name
            continue
        (schedule,) = schedules
        if "cron" in schedule:
            assert f"`{schedule['cron']}`" == documented[name], name
            assert schedule["timezone"] == timezone
        else:
            assert documented[name].startswith(f"every `{schedule['interval']}` seconds"), name


def test_continuous_intake_is_triggered_by_the_event_leadflow_submit_emits(project):
    (trigger,) = _by_full_name(project)["lead-intake/continuous"]["triggers"]
    assert trigger["expect"] == [SUBMITTED_EVENT]
    assert trigger["match"] == {"prefect.resource.id": INBOX_RESOURCE_ID}


def test_concurrency_lets_intake_overlap_but_not_backfills(project):
    deployments = _by_full_name(project)
    assert deployments["lead-intake/continuous"]["concurrency_limit"]["limit"] >= 2
    assert deployments["lead-backfill/ad-hoc"]["concurrency_limit"]["limit"] == 1
    assert all(d.get("concurrency_limit") for d in deployments.values())


def test_served_cron_schedules_follow_the_time_zone_setting(project, monkeypatch):
    from leadflow.config.settings import get_settings

    monkeypatch.setenv("LEADFLOW_TIMEZONE", "Europe/Berlin")
    get_settings.cache_clear()
    try:
        deployments = {d.name: d for d in build_deployments(project)}
    finally:
        get_settings.cache_clear()
    assert set(deployments) == {d["name"] for d in project["deployments"]}
    nightly = deployments["nightly"].schedules[0].schedule
    assert (nightly.cron, nightly.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert deployments["continuous"].schedules[0].schedule.interval.total_seconds() == 600
    assert deployments["continuous"].triggers[0].expect == {SUBMITTED_EVENT}
    assert deployments["ad-hoc"].concurrency_limit == 1 or deployments["ad-hoc"].concurrency_options


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"entrypoint": "flows/nope.py:lead_intake"}, "no such file"),
        ({"entrypoint": "flows/intake.py:no_such_flow"}, "has no no_such_flow"),
        ({"parameters": {"paht": "x.csv"}}, "has no parameter paht"),
    ],
)
def test_validation_names_what_is_wrong(change, problem):
    broken = {"deployments": [{"name": "x", "entrypoint": "flows/intake.py:lead_intake", **change}]}
    (found,) = validate_project(broken)
    assert problem in found


def test_load_entrypoint_refuses_a_missing_file(tmp_path: Path):
    with pytest.raises(DeploymentConfigError):
        load_entrypoint("missing.py:flow", tmp_path)


def test_prefect_yaml_is_at_the_project_root():
    assert PREFECT_YAML == ROOT / "prefect.yaml" and PREFECT_YAML.is_file()


def test_file_import_never_drains_the_inbox(project):
    deployments = _by_full_name(project)
    assert deployments["lead-intake/file-import"]["parameters"]["from_inbox"] is False
    assert deployments["lead-intake/continuous"]["parameters"].get("from_inbox", True) is True


def test_outbox_delivery_is_triggered_by_the_event_flows_emit_when_messages_are_queued(project):
    from flows.quiet import MESSAGES_QUEUED_EVENT, OUTBOX_RESOURCE_ID

    deployment = _by_full_name(project)["outbox-delivery/queued"]
    (trigger,) = deployment["triggers"]
    assert trigger["expect"] == [MESSAGES_QUEUED_EVENT]
    assert trigger["match"] == {"prefect.resource.id": OUTBOX_RESOURCE_ID}


def test_event_driven_deployments_keep_only_a_slow_safety_schedule(project):
    for name in ("lead-intake/continuous", "outbox-delivery/queued"):
        (schedule,) = _by_full_name(project)[name]["schedules"]
        assert schedule["interval"] >= 600, name


def test_the_inbox_drain_is_its_own_deployment(project):
    deployments = _by_full_name(project)
    drains = [name for name, d in deployments.items()
              if d["entrypoint"].endswith(":lead_intake") and d["parameters"].get("from_inbox", True)]
    assert drains == ["lead-intake/continuous"]
    assert deployments["lead-intake/continuous"]["parameters"]["path"] is None


def test_work_pool_runs_send_heartbeats_for_the_zombie_automation(project):
    from deployments.serve import HEARTBEAT_SECONDS

    env = project["definitions"]["work_pool"]["job_variables"]["env"]
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_SECONDS >= 30


def test_served_names_never_collide_with_the_work_pool_names(project):
    from deployments.serve import SERVED_SUFFIX, served_names
    from flows.backfill import SERVED_SUFFIX as BACKFILL_SUFFIX
    from flows.backfill import file_import_deployment

    names = served_names(project)
    assert {deployed for _served, deployed in names} == EXPECTED
    assert {served for served, _deployed in names}.isdisjoint(EXPECTED)
    assert all(served == deployed + SERVED_SUFFIX for served, deployed in names)
    # A served backfill sends its windows to the served file-import; a work-pool one to the pool's.
    assert BACKFILL_SUFFIX == SERVED_SUFFIX
    assert file_import_deployment("ad-hoc-served") == "lead-intake/file-import-served"
    assert file_import_deployment("ad-hoc") == "lead-intake/file-import"
