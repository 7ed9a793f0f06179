"""`leadflow serve` refuses a served name that a work-pool deployment holds, and lists the work-pool twins."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

from deployments.serve import DeploymentConfigError, check_beside_work_pools
from flows.delivery import outbox_delivery

PROJECT = {"deployments": [{"name": "names-test", "entrypoint": "flows/delivery.py:outbox_delivery"}]}


@pytest.mark.usefixtures("prefect_api")
def test_serving_beside_a_work_pool_lists_twins_and_refuses_a_taken_served_name():
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="names-test-pool", type="process"), overwrite=True)
    assert check_beside_work_pools(PROJECT) == []
    outbox_delivery.to_deployment(name="names-test").apply(work_pool_name="names-test-pool")
    assert check_beside_work_pools(PROJECT) == ["outbox-delivery/names-test (work pool names-test-pool, active)"]
    # Someone deployed a served name to a pool: serving would take that deployment over, so it refuses.
    outbox_delivery.to_deployment(name="names-test-served").apply(work_pool_name="names-test-pool")
    with pytest.raises(DeploymentConfigError) as refused:
        check_beside_work_pools(PROJECT)
    assert "outbox-delivery/names-test-served belongs to work pool names-test-pool" in str(refused.value)
    assert "`prefect deployment delete outbox-delivery/names-test-served`" in str(refused.value)


def test_a_served_run_takes_a_module_level_flow_from_its_module_not_from_a_pickle():
    from deployments.serve import flow_reference
    from flows.intake import lead_intake

    assert flow_reference(lead_intake) == ("flows.intake", "lead_intake")
    # A flow made on the fly has no module name: it goes by pickle, as Prefect sends it.
    assert flow_reference(lead_intake.with_options(name="other")) is None
