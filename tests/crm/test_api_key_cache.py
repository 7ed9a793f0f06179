"""The API's remembered keys, in process: a refusal given with one asks the database again, and answers as before."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from deployments import api
from leadflow.config.settings import get_settings
from leadflow.crm import api_keys


@pytest.fixture
def client(crm, monkeypatch):
    monkeypatch.setenv("LEADFLOW_API_ADDRESS_RATE_PER_MINUTE", "0")
    monkeypatch.setenv("LEADFLOW_API_KEY_RATE_PER_MINUTE", "0")
    monkeypatch.setenv("LEADFLOW_API_EMIT_EVENTS", "false")
    get_settings.cache_clear()
    with TestClient(api.create_app(store=crm, settings=get_settings())) as test_client:
        yield test_client
    get_settings.cache_clear()


def test_a_remembered_key_is_not_looked_up_again_but_a_refusal_with_it_asks_the_database(client, crm, monkeypatch):
    key, _ = api_keys.create_key(crm, "site")
    looked_up = []
    real = api_keys.find_active_keys
    monkeypatch.setattr(api_keys, "find_active_keys", lambda store, hashes: looked_up.append(1) or real(store, hashes))
    headers = {"X-API-Key": key.token}
    assert [client.post("/v1/leads", headers=headers, json={"email": f"a{i}@b.com"}).status_code
            for i in range(3)] == [202] * 3
    assert len(looked_up) == 1
    assert client.post("/v1/leads", headers=headers, json={"email": "not an address"}).status_code == 422
    assert len(looked_up) == 2


def test_a_refusal_with_a_remembered_key_while_the_database_is_down_is_503_as_without_the_cache(client, crm,
                                                                                                 monkeypatch):
    key, _ = api_keys.create_key(crm, "site")
    headers = {"X-API-Key": key.token}
    assert client.post("/v1/leads", headers=headers, json={"email": "a@b.com"}).status_code == 202

    def down(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(api_keys, "find_active_keys", down)
    answer = client.post("/v1/leads", headers=headers, json={"email": "not an address"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
