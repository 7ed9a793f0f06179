"""Signed vendor webhooks of `leadflow api`, mounted under /v1/webhooks (they store leads through api.store_lead)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/webhooks")
