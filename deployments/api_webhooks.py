"""Signed webhooks from lead-sending tools: `POST /v1/webhooks/<vendor>` into lead_inbox, verified before it is stored.

Mounted in the `leadflow api` app (`app.include_router(router)`). Every request is checked against the vendor's
documented signature scheme (leadflow/domain/webhooks.py) on its raw body before the body is even parsed:

- 401: missing, malformed or wrong signature, or a Calendly/HubSpot timestamp outside the window (stale, replayed);
- 503: the vendor's secret is not configured (or its Prefect Secret block cannot be read) - never accepted unsigned.
  503 and not 404 because every one of these vendors retries a 5xx: a lead sent before the secret was set arrives
  once it is, while a 404 tells some of them (Typeform, Meta) that the endpoint is gone and they disable it;
- 400: a verified body that is not JSON; 413: over MAX_BODY_BYTES; 422: JSON without the vendor's event shape;
- 200 with {"stored", "duplicates", "ignored", "inbox_ids"}: the leads are in lead_inbox (a redelivery of the same
  vendor id is a duplicate, stored once) and `leadflow.lead.submitted` was emitted for each new row.
A database that is unreachable answers 503 too, with nothing stored, so the vendor's retry brings the lead later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from leadflow.config.settings import SecretReferenceError, get_settings, register_secret_loader, secret_value
from leadflow.crm.webhooks import StoredDelivery, store_delivery
from leadflow.domain import webhooks as wh

logger = logging.getLogger("leadflow.api.webhooks")

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

# Lead webhooks are a few kilobytes; a Typeform with long answers stays far below this.
MAX_BODY_BYTES = 1 << 20
# The setting holding each vendor's secret (LEADFLOW_<NAME upper-cased>).
SECRET_SETTINGS = {"typeform": "webhook_typeform_secret", "meta": "webhook_meta_secret",
                   "calendly": "webhook_calendly_secret", "hubspot": "webhook_hubspot_secret"}


def _load_prefect_secret(name: str) -> str:
    from tasks.common import load_prefect_secret  # Prefect's blocks are read only when a setting names one

    return load_prefect_secret(name)


register_secret_loader(_load_prefect_secret)


def _secret(setting: str, vendor: str) -> str:
    """A vendor's secret at use time, or 503: an endpoint without one never accepts a request."""
    value = getattr(get_settings(), setting)
    try:
        text = secret_value(value)
    except SecretReferenceError as exc:
        raise HTTPException(503, f"the {vendor} webhook's secret cannot be read: {exc}") from None
    if not text:
        raise HTTPException(503, f"the {vendor} webhook is not configured (set LEADFLOW_{setting.upper()})")
    return text


def _store():
    from leadflow.crm.store import DatabaseNotReady, get_store

    store = get_store()
    try:
        store.require_current()
    except DatabaseNotReady:
        raise HTTPException(503, "the CRM database is not ready") from None
    return store


def emit_submitted(inbox_id: int) -> None:
    """Tell continuous intake a row is waiting, by the API's rule (events on, a Prefect API configured)."""
    from deployments.api import emit_submitted as emit

    emit(inbox_id)


def store_webhook_lead(store: Any, vendor: str, lead: wh.WebhookLead) -> StoredDelivery:
    """Store one verified webhook lead once per vendor id and announce a new row (the one place that writes)."""
    # The swap point for `leadflow api`'s store-and-emit: the inbox row must stay in the transaction that records the
    # delivery (crm.webhooks.store_delivery), else a crash between the two would lose the lead to its redelivery.
    stored = store_delivery(store, vendor, lead.delivery_id, lead.payload)
    if stored.created and stored.inbox_id is not None:
        try:
            emit_submitted(stored.inbox_id)
        except Exception as exc:  # the row is committed: intake's schedule still takes it, so never fail the vendor
            logger.warning("webhook %s: inbox row %s stored, event not emitted (%s)", vendor, stored.inbox_id,
                           type(exc).__name__)
    return stored


def _public_url(request: Request) -> str:
    """The URL the vendor called: the configured public base plus the path and query, else what the server saw."""
    base = get_settings().webhook_public_url
    if not base:
        return str(request.url)
    query = request.url.query
    return base.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _verify(vendor: str, secret: str, body: bytes, headers: Mapping[str, str], method: str, url: str,
            now: datetime) -> None:
    tolerance = get_settings().webhook_tolerance_seconds
    if vendor == "typeform":
        wh.verify_typeform(secret, body, headers.get("typeform-signature"))
    elif vendor == "meta":
        wh.verify_meta(secret, body, headers.get("x-hub-signature-256"))
    elif vendor == "calendly":
        wh.verify_calendly(secret, body, headers.get("calendly-webhook-signature"), now, tolerance)
    else:
        wh.verify_hubspot(secret, method, url, body, headers.get("x-hubspot-signature-v3"),
                          headers.get("x-hubspot-request-timestamp"), now, tolerance)


def _not_json(constant: str) -> None:
    # Python's json reads NaN and Infinity, which JSON (and PostgreSQL's jsonb) does not have.
    raise ValueError(f"{constant} is not JSON")


def _receive(vendor: str, body: bytes, headers: Mapping[str, str], method: str, url: str) -> dict[str, Any]:
    """Verify, parse, map and store one webhook request (blocking: runs in the thread pool)."""
    secret = _secret(SECRET_SETTINGS[vendor], vendor)
    try:
        _verify(vendor, secret, body, headers, method, url, datetime.now(UTC))
    except wh.WebhookRefused as exc:
        # The reason names the header and the check, never the body or a secret.
        logger.info("webhook %s refused: %s", vendor, exc)
        raise HTTPException(exc.status, str(exc)) from None
    try:
        event = json.loads(body, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, f"the {vendor} webhook body is not JSON") from None
    try:
        batch = wh.MAPPERS[vendor](event)
    except wh.WebhookRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    store = _store() if batch.leads else None
    results = []
    for lead in batch.leads:
        try:
            results.append(store_webhook_lead(store, vendor, lead))
        except HTTPException:
            raise
        except Exception as exc:  # nothing of this lead is stored (one transaction): the vendor's retry brings it
            logger.warning("webhook %s: storing a lead failed (%s)", vendor, type(exc).__name__)
            raise HTTPException(503, "the lead could not be stored; retry later") from None
    stored = [r for r in results if r.created]
    logger.info("webhook %s: %d stored, %d duplicates, %d ignored", vendor, len(stored),
                len(results) - len(stored), batch.ignored)
    return {"vendor": vendor, "stored": len(stored), "duplicates": len(results) - len(stored),
            "ignored": batch.ignored, "inbox_ids": [r.inbox_id for r in results]}


async def _handle(vendor: str, request: Request) -> JSONResponse:
    body = await _body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    url = _public_url(request) if vendor == "hubspot" else str(request.url)
    answer = await run_in_threadpool(_receive, vendor, body, headers, request.method, url)
    return JSONResponse(answer)


@router.post("/typeform", summary="Typeform form_response webhook (Typeform-Signature)")
async def typeform_webhook(request: Request) -> JSONResponse:
    """A Typeform response, verified by its Typeform-Signature, into lead_inbox."""
    return await _handle("typeform", request)


@router.get("/meta", summary="Meta webhook subscription check (hub.challenge)", response_class=PlainTextResponse)
async def meta_subscription_check(request: Request) -> PlainTextResponse:
    """Answer Meta's GET check with hub.challenge when hub.verify_token matches LEADFLOW_WEBHOOK_META_VERIFY_TOKEN."""
    token = await run_in_threadpool(_secret, "webhook_meta_verify_token", "meta")
    try:
        return PlainTextResponse(wh.meta_challenge(request.query_params, token))
    except wh.WebhookRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post("/meta", summary="Meta lead ads leadgen webhook (X-Hub-Signature-256)")
async def meta_webhook(request: Request) -> JSONResponse:
    """Meta lead ads leadgen changes, verified by X-Hub-Signature-256, into lead_inbox."""
    return await _handle("meta", request)


@router.post("/calendly", summary="Calendly invitee.created webhook (Calendly-Webhook-Signature)")
async def calendly_webhook(request: Request) -> JSONResponse:
    """A Calendly booking, verified by its Calendly-Webhook-Signature and time window, into lead_inbox."""
    return await _handle("calendly", request)


@router.post("/hubspot", summary="HubSpot workflow webhook (X-HubSpot-Signature-v3)")
async def hubspot_webhook(request: Request) -> JSONResponse:
    """A HubSpot contact from a workflow's webhook action, verified by X-HubSpot-Signature-v3, into lead_inbox."""
    return await _handle("hubspot", request)
