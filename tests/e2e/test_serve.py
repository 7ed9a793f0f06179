"""`leadflow serve` internals: poll interval, entrypoint modules, and served runs started warm from a fork server."""

from __future__ import annotations

import multiprocessing

import pytest
from prefect.client.orchestration import get_client
from prefect.runner import _starter_direct
from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

from deployments import serve
from flows.intake import lead_intake
from leadflow.crm.inbox import pending_count, submit_lead


def test_served_runs_are_polled_for_every_second_unless_prefect_is_told_otherwise():
    assert serve.poll_seconds() == serve.SERVE_POLL_SECONDS == 1.0
    with temporary_settings({PREFECT_RUNNER_POLL_FREQUENCY: 7}):
        assert serve.poll_seconds() == 7.0


def test_entrypoint_modules_are_the_flow_modules_once_each():
    assert serve.entrypoint_modules(serve.load_project()) == [
        "flows.intake", "flows.spam_cleanup", "flows.followup", "flows.monthly_report", "flows.scoring_review",
        "flows.delivery", "flows.backfill", "flows.person_erasure", "flows.mailbox"]
    with pytest.raises(serve.DeploymentConfigError, match="not inside"):
        serve.entrypoint_module("/elsewhere/flow.py:f")


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_a_served_run_forked_warm_runs_the_flow_with_its_own_environment(crm, monkeypatch):
    # The runner's seam is restored after the test: other tests' runners start runs the default way.
    monkeypatch.setattr(_starter_direct, "run_flow_in_subprocess", _starter_direct.run_flow_in_subprocess)
    warm_up = serve.start_warm_flow_runs(["flows.intake"])
    assert warm_up is not None and _starter_direct.run_flow_in_subprocess is serve.run_flow_in_forked_process
    warm_up.join(timeout=120)
    assert warm_up.exitcode == 0
    submit_lead(crm, {"email": "jane@acme.com", "source": "web_form", "first_name": "Jane"})
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(lead_intake, parameters={"qualify": False})
        # What the runner's DirectSubprocessStarter calls for a served deployment.
        process = _starter_direct.run_flow_in_subprocess(lead_intake, flow_run=flow_run,
                                                         env={"PREFECT__DEPLOYMENT_NAME": "continuous"})
        process.join(timeout=300)
        state = client.read_flow_run(flow_run.id).state
    assert process.exitcode == 0
    assert state is not None and state.is_completed(), state
    # The child used the CRM of this test (its environment), and took the lead from the inbox.
    assert pending_count(crm) == 0
