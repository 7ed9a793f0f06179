"""The /v1/webhooks router on SQLite and PostgreSQL: signed vendor payloads land in lead_inbox once, however often
they are delivered; unsigned, stale or unconfigured requests store nothing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from deployments import api_webhooks
from leadflow.config.settings import get_settings
from leadflow.crm.inbox import INBOX
from leadflow.crm.webhooks import DELIVERIES, delivery_count, store_delivery
from tests.unit.test_webhooks import (
    SECRET,
    calendly_header,
    fixture,
    hubspot_headers,
    meta_header,
    typeform_header,
)

SETTINGS = {"typeform": "LEADFLOW_WEBHOOK_TYPEFORM_SECRET", "meta": "LEADFLOW_WEBHOOK_META_SECRET",
            "calendly": "LEADFLOW_WEBHOOK_CALENDLY_SECRET", "hubspot": "LEADFLOW_WEBHOOK_HUBSPOT_SECRET"}
FIXTURES = {"typeform": "typeform_form_response", "meta": "meta_leadgen_field_data",
            "calendly": "calendly_invitee_created", "hubspot": "hubspot_workflow_contact"}
TESTSERVER = "http://testserver"


def signed(vendor: str, body: bytes, at: datetime | None = None, url: str | None = None) -> dict[str, str]:
    """The headers the vendor sends with `body`, signed with the test secret as its documentation says."""
    at = at or datetime.now(UTC)
    if vendor == "typeform":
        return {"Typeform-Signature": typeform_header(body)}
    if vendor == "meta":
        return {"X-Hub-Signature-256": meta_header(body)}
    if vendor == "calendly":
        return {"Calendly-Webhook-Signature": calendly_header(body, at=at)}
    signature, stamp = hubspot_headers(body, at=at, url=url or f"{TESTSERVER}/v1/webhooks/hubspot")
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}


@pytest.fixture
def client(crm, monkeypatch):
    """A FastAPI app with only the webhook router, every vendor configured, events recorded instead of emitted."""
    for name in SETTINGS.values():
        monkeypatch.setenv(name, SECRET)
    monkeypatch.setenv("LEADFLOW_WEBHOOK_META_VERIFY_TOKEN", "meatyhamhock")
    get_settings.cache_clear()
    emitted: list[int] = []
    monkeypatch.setattr(api_webhooks, "emit_submitted", emitted.append)
    app = FastAPI()
    app.include_router(api_webhooks.router)
    with TestClient(app) as test_client:
        test_client.emitted = emitted
        yield test_client
    get_settings.cache_clear()


def post(client, vendor: str, body: bytes, headers: dict[str, str] | None = None):
    return client.post(f"/v1/webhooks/{vendor}", content=body,
                       headers={"Content-Type": "application/json", **(headers or {})})


def inbox_rows(crm) -> list:
    with crm.engine.connect() as conn:
        return conn.execute(select(INBOX.c.id, INBOX.c.payload).order_by(INBOX.c.id)).all()


def body_of(name: str) -> bytes:
    return json.dumps(fixture(name)).encode()


@pytest.mark.parametrize("vendor", list(FIXTURES))
def test_a_signed_delivery_lands_in_the_inbox_once_and_a_redelivery_adds_nothing(client, crm, vendor):
    body = body_of(FIXTURES[vendor])
    first = post(client, vendor, body, signed(vendor, body))
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["stored"], answer["duplicates"]) == (1, 0)
    rows = inbox_rows(crm)
    assert [r[0] for r in rows] == answer["inbox_ids"] == client.emitted
    payload = rows[0][1]
    assert payload["webhook_vendor"] == vendor and "@example." in payload["email"]
    assert payload["external_id"] and payload["submitted_at"]
    # The vendor retries (a timeout on its side): signed anew a minute later, same event - stored once.
    again = post(client, vendor, body, signed(vendor, body, at=datetime.now(UTC) + timedelta(minutes=1)))
    assert again.status_code == 200, again.text
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["inbox_ids"] == answer["inbox_ids"]
    assert inbox_rows(crm) == rows and client.emitted == answer["inbox_ids"]
    assert delivery_count(crm, vendor) == 1


@pytest.mark.parametrize(
    ("vendor", "headers", "reason"),
    [
        ("typeform", lambda body: {"Typeform-Signature": typeform_header(body, secret="not-the-secret")},
         "does not match"),
        ("typeform", lambda body: {}, "missing Typeform-Signature"),
        ("meta", lambda body: {"X-Hub-Signature-256": meta_header(body + b" ")}, "does not match"),
        ("calendly", lambda body: signed("calendly", body, at=datetime.now(UTC) - timedelta(minutes=10)),
         "stale or replayed"),
        ("hubspot", lambda body: signed("hubspot", body, at=datetime.now(UTC) - timedelta(minutes=6)),
         "stale or replayed"),
        ("hubspot", lambda body: {"X-HubSpot-Signature-v3": signed("hubspot", body)["X-HubSpot-Signature-v3"]},
         "X-HubSpot-Request-Timestamp"),
    ],
)
def test_an_unsigned_bad_or_stale_request_is_refused_with_401_and_stores_nothing(client, crm, vendor, headers,
                                                                                  reason):
    body = body_of(FIXTURES[vendor])
    refused = post(client, vendor, body, headers(body))
    assert refused.status_code == 401 and reason in refused.json()["detail"]
    assert "@example." not in refused.text
    assert inbox_rows(crm) == [] and delivery_count(crm) == 0 and client.emitted == []


def test_a_vendor_without_a_secret_answers_503_and_never_accepts_unsigned(client, crm, monkeypatch):
    monkeypatch.delenv("LEADFLOW_WEBHOOK_CALENDLY_SECRET")
    monkeypatch.delenv("LEADFLOW_WEBHOOK_META_VERIFY_TOKEN")
    get_settings.cache_clear()
    body = body_of(FIXTURES["calendly"])
    for headers in ({}, signed("calendly", body)):
        answer = post(client, "calendly", body, headers)
        assert answer.status_code == 503 and "LEADFLOW_WEBHOOK_CALENDLY_SECRET" in answer.json()["detail"]
    check = client.get("/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "",
                                                    "hub.challenge": "1"})
    assert check.status_code == 503
    assert inbox_rows(crm) == []


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"form_response=not-json", 400, "not JSON"),
        (b'{"event_type": "form_response", "form_response": {"token": NaN}}', 400, "not JSON"),
        (b'{"event_type": "form_response", "form_response": {"answers": []}}', 422, "form_response.token"),
        (b"x" * (api_webhooks.MAX_BODY_BYTES + 1), 413, "bytes"),
    ],
)
def test_a_verified_body_that_is_no_event_is_refused_and_stores_nothing(client, crm, body, status, detail):
    answer = post(client, "typeform", body, signed("typeform", body))
    assert answer.status_code == status and detail in answer.json()["detail"]
    assert inbox_rows(crm) == []


def test_events_without_a_lead_are_answered_200_and_store_nothing(client, crm):
    for vendor, name in (("calendly", "calendly_invitee_canceled"), ("hubspot", "hubspot_webhooks_api_batch")):
        body = body_of(name)
        answer = post(client, vendor, body, signed(vendor, body))
        assert answer.status_code == 200 and answer.json()["ignored"] == 1 and answer.json()["stored"] == 0
    assert inbox_rows(crm) == []


def test_meta_subscription_check_and_a_notification_with_several_leads(client, crm):
    ok = client.get("/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock",
                                                 "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = client.get("/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                    "hub.challenge": "1158201444"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.text
    event = fixture("meta_leadgen_field_data")
    event["entry"].append(fixture("meta_leadgen")["entry"][0])
    body = json.dumps(event).encode()
    answer = post(client, "meta", body, signed("meta", body)).json()
    assert (answer["stored"], answer["ignored"]) == (2, 1)
    payloads = [r[1] for r in inbox_rows(crm)]
    assert [p["external_id"] for p in payloads] == ["555555555555555", "444444444444444"]
    # The notification without field_data is stored as delivered: intake quarantines it for its missing email.
    assert "email" not in payloads[1] and payloads[1]["meta_form_id"] == "444444444444"


def test_hubspot_behind_a_proxy_verifies_against_the_public_url(client, crm, monkeypatch):
    body = body_of(FIXTURES["hubspot"])
    public = "https://leads.example.com/v1/webhooks/hubspot"
    assert post(client, "hubspot", body, signed("hubspot", body, url=public)).status_code == 401
    monkeypatch.setenv("LEADFLOW_WEBHOOK_PUBLIC_URL", "https://leads.example.com/")
    get_settings.cache_clear()
    assert post(client, "hubspot", body, signed("hubspot", body, url=public)).status_code == 200
    assert len(inbox_rows(crm)) == 1


def test_concurrent_redeliveries_store_one_inbox_row(crm):
    start = threading.Barrier(4)
    results = []

    def deliver() -> None:
        start.wait()
        results.append(store_delivery(crm, "typeform", "token-1", {"email": "a@example.com"}))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.created for r in results) == [False, False, False, True]
    assert len({r.inbox_id for r in results}) == 1
    assert len(inbox_rows(crm)) == 1
    with crm.engine.connect() as conn:
        assert conn.execute(select(DELIVERIES.c.inbox_id)).scalars().all() == [results[0].inbox_id]
