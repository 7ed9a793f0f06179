"""Webhook leads through lead-intake: each vendor's documented payload becomes a lead on the intake contract."""

from __future__ import annotations

import json
import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prefect.blocks.system import Secret
from sqlalchemy import select

from deployments import api_webhooks
from flows.intake import lead_intake
from leadflow.config.settings import get_settings
from leadflow.crm.schema import Lead, LeadSubmission, QuarantineRecord
from tests.crm.test_webhook_router import FIXTURES, SETTINGS, signed
from tests.unit.test_webhooks import SECRET, fixture


def test_each_vendor_payload_becomes_a_lead_and_a_redelivery_after_intake_adds_nothing(crm, monkeypatch):
    for name in SETTINGS.values():
        monkeypatch.setenv(name, SECRET)
    get_settings.cache_clear()
    app = FastAPI()
    app.include_router(api_webhooks.router)
    bodies = {vendor: json.dumps(fixture(name)).encode() for vendor, name in FIXTURES.items()}
    bodies["meta-ids-only"] = json.dumps(fixture("meta_leadgen")).encode()
    with TestClient(app) as client:
        for key, body in bodies.items():
            vendor = key.split("-")[0]
            answer = client.post(f"/v1/webhooks/{vendor}", content=body, headers=signed(vendor, body))
            assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
        summary = lead_intake(qualify=False)
        assert (summary["rows_read"], summary["submissions_new"], summary["quarantined"]) == (5, 4, 1)
        # A redelivery after intake took the first: no inbox row, so intake has nothing new.
        again = client.post("/v1/webhooks/typeform", content=bodies["typeform"],
                            headers=signed("typeform", bodies["typeform"]))
        assert again.json()["duplicates"] == 1
        assert lead_intake(qualify=False)["rows_read"] == 0
    get_settings.cache_clear()
    leads, subs = Lead.__table__, LeadSubmission.__table__
    with crm.engine.connect() as conn:
        found = {r.email: r for r in conn.execute(select(
            leads.c.email, leads.c.first_name, leads.c.last_name, leads.c.company, leads.c.phone))}
        sources = dict(conn.execute(select(subs.c.external_id, subs.c.source)).all())
        reasons = conn.execute(select(QuarantineRecord.__table__.c.reason_codes)).scalars().all()
    assert set(found) == {"laura.diaz@example.com", "sam.okafor@example.org", "priya.raman@example.net",
                          "tomas.berg@example.com"}
    assert (found["laura.diaz@example.com"].first_name, found["laura.diaz@example.com"].last_name,
            found["laura.diaz@example.com"].company) == ("Laura", "Diaz", "Example Robotics")
    assert (found["sam.okafor@example.org"].first_name, found["sam.okafor@example.org"].last_name) == ("Sam", "Okafor")
    assert found["priya.raman@example.net"].company == "Raman Analytics"
    assert found["tomas.berg@example.com"].phone and found["tomas.berg@example.com"].company == "Berg Freight AB"
    assert sources == {
        "a3a12ec67a1365927098a606107fac15": "web_form",
        "555555555555555": "paid_social",
        "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA": "web_form",
        "3234574@2024-12-05T10:05:00+00:00": "organic_search",
    }
    # Meta's ids-only notification is kept, not lost: quarantined for its missing email until its fields are fetched.
    assert reasons == ["missing_email"]


def test_a_webhook_secret_is_read_from_a_prefect_secret_block_at_use_time(sqlite_crm, monkeypatch):
    block = f"typeform-webhook-{uuid.uuid4().hex[:8]}"
    Secret(value=SECRET).save(block)
    monkeypatch.setenv("LEADFLOW_WEBHOOK_TYPEFORM_SECRET", f"prefect-secret://{block}")
    get_settings.cache_clear()
    app = FastAPI()
    app.include_router(api_webhooks.router)
    monkeypatch.setattr(api_webhooks, "emit_submitted", lambda inbox_id: None)
    body = json.dumps(fixture("typeform_form_response")).encode()
    with TestClient(app) as client:
        assert client.post("/v1/webhooks/typeform", content=body, headers=signed("typeform", body)).status_code == 200
        # A rotated secret applies at once: the block is read on every request, never cached.
        Secret(value="rotated-" + SECRET).save(block, overwrite=True)
        stale = client.post("/v1/webhooks/typeform", content=body, headers=signed("typeform", body))
        assert stale.status_code == 401
        monkeypatch.setenv("LEADFLOW_WEBHOOK_TYPEFORM_SECRET", "prefect-secret://no-such-block")
        get_settings.cache_clear()
        missing = client.post("/v1/webhooks/typeform", content=body, headers=signed("typeform", body))
        assert missing.status_code == 503 and "no-such-block" in missing.json()["detail"]
        assert SECRET not in missing.text
    get_settings.cache_clear()
