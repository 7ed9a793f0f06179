"""`leadflow api`: the HTTP front door that web forms and integrations post leads to (FastAPI on uvicorn).

`POST /v1/leads` takes a JSON object or an HTML form's urlencoded body, checks its API key, origin, rate and
email, stores it in `lead_inbox` (committed before the answer) and emits `leadflow.lead.submitted` so the
continuous-intake deployment takes it at once. `GET /healthz` checks the CRM database. Vendor webhooks
(deployments/api_webhooks.py) are mounted under /v1/webhooks; they record each delivery and its inbox row in one
transaction and announce it with `emit_submitted`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.config.settings import Settings, get_settings
from leadflow.crm import api_keys, inbox
from leadflow.crm.store import DatabaseError, Store, get_store, head_revision, refused_value_code
from leadflow.domain import api_intake as rules
from leadflow.domain.contract import resolve_columns
from leadflow.domain.inbox import InboxError, check_lead

ACCESS_LOG = logging.getLogger("leadflow.api.access")
LEADS_PATH = "/v1/leads"
# Headers a browser script may send cross-origin (answered in a preflight).
CORS_REQUEST_HEADERS = "Content-Type, Idempotency-Key, X-API-Key, Authorization"
CORS_MAX_AGE = "600"
# How long a preflight's "some key allows this origin" answer is reused before asking the database again.
ORIGINS_CACHE_SECONDS = 5.0
# How long a found key is reused without a look-up. A key's settings never change after it is created, and a
# revoke still takes effect at once: the insert's own transaction checks that the key is unrevoked, and a refusal
# given with a cached key asks the database again, so that a revoked key is always answered 401.
KEY_CACHE_SECONDS = 60.0
KEY_CACHE_SIZE = 10_000
# Inbox transactions one API process keeps in flight on PostgreSQL (within the store's pool of 5 + 5 connections).
POSTGRES_WRITERS = 4


def emit_submitted(inbox_id: int, settings: Settings | None = None) -> None:
    """Emit `leadflow.lead.submitted` for a stored lead, if events are on and a Prefect API is configured."""
    settings = settings or get_settings()
    if not settings.api_emit_events:
        return
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    # Without an API URL Prefect would start a private ephemeral server in this process that nothing listens to.
    if PREFECT_API_URL.value():
        emit_event(event=inbox.SUBMITTED_EVENT, resource={"prefect.resource.id": inbox.INBOX_RESOURCE_ID},
                   payload={"inbox_id": inbox_id})


def store_lead(store: Store, payload: dict[str, Any], *, api_key_id: int | None = None,
               idempotency_key: str | None = None, settings: Settings | None = None) -> tuple[int, bool]:
    """Store one lead payload in lead_inbox (committed on return) and emit the event: (inbox id, newly stored).

    The one way in for HTTP callers (forms, webhooks): raises InboxError (a 422) for a lead without a usable
    email. A retry under the same (api key, idempotency key) returns the first row's id and stores nothing.
    """
    check_lead(payload)
    inbox_id, inserted = inbox.submit_lead_once(store, payload, api_key_id=api_key_id,
                                                idempotency_key=idempotency_key)
    if inserted:
        emit_submitted(inbox_id, settings)
    return inbox_id, inserted


class _Refused(Exception):
    """A request answered with an error; carries the response headers (CORS, Retry-After) already decided."""

    def __init__(self, error: rules.RequestError, headers: dict[str, str] | None = None, code: str = "") -> None:
        super().__init__(str(error))
        self.error, self.headers, self.code = error, headers or {}, code


class Batcher:
    """Runs `fn` once over every item queued while its previous runs were busy, on worker threads.

    Concurrent requests then share one key look-up and one inbox transaction (one commit) instead of one each; a
    lone request runs at once, so nothing waits for a batch to fill. Up to `concurrency` runs go at once: on
    PostgreSQL a commit waits for its WAL flush, and overlapping commits share flushes; SQLite has one writer, so
    there it is 1. `fn` returns one result per item; a result that is an exception fails that item's request only.
    """

    def __init__(self, fn: Any, max_batch: int = 256, concurrency: int = 1) -> None:
        self._fn = fn
        self._max = max_batch
        self._concurrency = concurrency
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._running = 0
        # Kept: the loop holds tasks only weakly.
        self._tasks: set[asyncio.Task] = set()

    async def __call__(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if self._running < self._concurrency:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self._max], self._queue[self._max:]
                try:
                    results = await run_in_threadpool(self._fn, [item for item, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running -= 1


class FrontDoor:
    """The state one API process keeps: the store, settings, rate-limit buckets and a short origin cache."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.limiter = rules.RateLimiter()
        self._origins: tuple[float, set[str]] = (0.0, set())
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}
        writers = 1 if store.dialect == "sqlite" else POSTGRES_WRITERS
        self.find_key = Batcher(self._find_keys, concurrency=writers)
        self.write = Batcher(self._write, concurrency=writers)

    async def key(self, key_hash: str) -> tuple[dict[str, Any] | None, bool]:
        """The unrevoked key with this hash, else None, and whether it came from the cache (see KEY_CACHE_SECONDS)."""
        hit = self._keys.get(key_hash)
        if hit is not None and time.monotonic() - hit[0] < KEY_CACHE_SECONDS:
            return hit[1], True
        key = await self.find_key(key_hash)
        if key is None:
            self._keys.pop(key_hash, None)
        else:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[key_hash] = (time.monotonic(), key)
        return key, False

    def forget_key(self, key_hash: str) -> None:
        """Drop a key from the cache (it was found revoked)."""
        self._keys.pop(key_hash, None)

    async def still_active(self, key_hash: str) -> bool:
        """Whether a cached key is still unrevoked, asking the database (and forgetting it if not)."""
        if await self.find_key(key_hash) is not None:
            return True
        self._keys.pop(key_hash, None)
        return False

    def _find_keys(self, hashes: list[str]) -> list[dict[str, Any] | None]:
        found = api_keys.find_active_keys(self.store, hashes)
        return [found.get(h) for h in hashes]

    def _write(self, leads: list[tuple[dict[str, Any], int, str | None]]) -> list[tuple[int, bool] | Exception]:
        results = inbox.submit_leads_once(self.store, leads, require_active_key=True)
        for result in results:
            if not isinstance(result, Exception) and result[1]:
                emit_submitted(result[0], self.settings)
        return results

    async def known_origin(self, origin: str | None) -> bool:
        """Whether some unrevoked key allows a browser origin (for answers given before the key is known)."""
        if not origin:
            return False
        stamp, origins = self._origins
        if time.monotonic() - stamp > ORIGINS_CACHE_SECONDS:
            origins = await run_in_threadpool(api_keys.active_origins, self.store)
            self._origins = (time.monotonic(), origins)
        return rules.origin_allowed(origin, sorted(origins))

    def limit_address(self, address: str, cors: dict[str, str]) -> None:
        """Refuse (429) a client address over its rate."""
        wait = self.limiter.take(f"addr:{address}", self.settings.api_address_rate_per_minute)
        if wait:
            raise _Refused(rules.RequestError(429, "too many requests from this address; retry later"),
                           {**cors, "Retry-After": rules.retry_after(wait)}, "rate_address")

    def limit_key(self, key: dict[str, Any], cors: dict[str, str]) -> None:
        """Refuse (429) an API key over its rate."""
        rate = key["rate_per_minute"] if key["rate_per_minute"] is not None else self.settings.api_key_rate_per_minute
        wait = self.limiter.take(f"key:{key['id']}", rate)
        if wait:
            raise _Refused(rules.RequestError(429, "too many requests with this API key; retry later"),
                           {**cors, "Retry-After": rules.retry_after(wait)}, "rate_key")


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Expose-Headers": "Retry-After, Location"}


def _given_key(request: Request) -> str | None:
    header = request.headers.get("x-api-key")
    if header:
        return header.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query_params.get(rules.KEY_FIELDS[0]) or None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _Refused(rules.RequestError(413, f"the body is over {limit} bytes"), code="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(rules.RequestError(413, f"the body is over {limit} bytes"), code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _fill_defaults(payload: dict[str, Any], key: dict[str, Any], address: str | None) -> None:
    """The key's default channel for a lead that names none, and the client address as the anti-spam ip_address."""
    given = set(resolve_columns([str(k) for k in payload]).values())
    if key["default_channel"] and "source" not in given:
        payload["source"] = key["default_channel"]
    if address and "ip_address" not in given:
        payload["ip_address"] = address


def _unavailable(started: float, key: dict[str, Any] | None, cors: dict[str, str]) -> JSONResponse:
    _access("POST", LEADS_PATH, 503, started, key_id=key["id"] if key else None, error="database")
    return JSONResponse({"error": "the CRM database is unavailable; retry later"}, status_code=503,
                        headers={**cors, "Retry-After": "5"})


def _bad_key() -> rules.RequestError:
    return rules.RequestError(401, "the API key is unknown or revoked")


def _error_response(refused: _Refused) -> JSONResponse:
    body: dict[str, Any] = {"error": str(refused.error)}
    if refused.error.field:
        body["field"] = refused.error.field
    return JSONResponse(body, status_code=refused.error.status, headers=refused.headers)


def _access(method: str, path: str, status: int, started: float, **extra: Any) -> None:
    # No client address, query string (it may hold a key), header or payload value: only what ops need to count.
    ACCESS_LOG.info(json.dumps({"method": method, "path": path, "status": status,
                                "ms": round((time.perf_counter() - started) * 1000, 2),
                                **{k: v for k, v in extra.items() if v is not None}}))


def create_app(store: Store | None = None, settings: Settings | None = None) -> FastAPI:
    """The ASGI app of `leadflow api` (an app factory: uvicorn's `--factory deployments.api:create_app`)."""
    settings = settings or get_settings()
    door = FrontDoor(store or get_store(settings.database_url_plain()), settings)
    # The email check imports its parsers on first use (seconds): pay that now, not on the first lead.
    check_lead({"email": "warm.up@example.com"})
    app = FastAPI(title="leadflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.front_door = door

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when the CRM database answers at the migrations' head, else 503."""
        started = time.perf_counter()
        try:
            current = await run_in_threadpool(door.store.revision)
        except DatabaseError:
            current = None
        ok = current == head_revision()
        _access("GET", "/healthz", 200 if ok else 503, started)
        return JSONResponse({"status": "ok" if ok else "database unavailable or not migrated"},
                            status_code=200 if ok else 503)

    @app.options(LEADS_PATH)
    async def preflight(request: Request) -> Response:
        """A browser's CORS preflight: allowed when the key in the query string (else any key) allows the origin."""
        started = time.perf_counter()
        origin = request.headers.get("origin")
        token = request.query_params.get(rules.KEY_FIELDS[0])
        if token:
            key = await run_in_threadpool(api_keys.find_active_key, door.store, rules.hash_key(token)) \
                if rules.looks_like_key(token) else None
            allowed = key is not None and rules.origin_allowed(origin, key["allowed_origins"])
        else:
            allowed = await door.known_origin(origin)
        _access("OPTIONS", LEADS_PATH, 204 if allowed else 403, started)
        if not allowed:
            return Response(status_code=403)
        return Response(status_code=204, headers={
            **_cors(origin or ""), "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS, "Access-Control-Max-Age": CORS_MAX_AGE})

    async def post_lead(request: Request) -> Response:
        """Store one lead: 202 with its submission id (or 303 to the form's return URL) once it is committed."""
        started = time.perf_counter()
        origin = request.headers.get("origin")
        address = request.client.host if request.client else None
        key: dict[str, Any] | None = None
        key_hash, cached = "", False
        cors: dict[str, str] = {}
        key_cors: dict[str, str] = {}
        try:
            if origin and await door.known_origin(origin):
                cors = _cors(origin)
            door.limit_address(address or "unknown", cors)
            body = await _read_body(request, settings.api_max_body_bytes)
            try:
                payload = rules.parse_body(request.headers.get("content-type"), body)
            except rules.RequestError as exc:
                raise _Refused(exc, cors, "bad_body") from None
            body_key = rules.take_fields(payload, rules.KEY_FIELDS)
            token = _given_key(request) or body_key
            return_url = rules.take_fields(payload, rules.RETURN_URL_FIELDS)
            if not token:
                raise _Refused(rules.RequestError(401, "an API key is required (X-API-Key header, or the api_key "
                                                       "field or query parameter)"), cors, "no_key")
            if rules.looks_like_key(token):
                key_hash = rules.hash_key(token)
                key, cached = await door.key(key_hash)
            key_cors = cors
            if key is None:
                raise _Refused(_bad_key(), cors, "bad_key")
            if origin is not None:
                if not rules.origin_allowed(origin, key["allowed_origins"]):
                    raise _Refused(rules.RequestError(403, "this API key may not be used from this origin"), {},
                                   "origin")
                cors = _cors(origin)
            door.limit_key(key, cors)
            try:
                if return_url:
                    rules.check_return_url(return_url, key["allowed_origins"])
                idempotency = rules.check_idempotency_key(request.headers.get("idempotency-key"))
                check_lead(payload)
                _fill_defaults(payload, key, address)
                try:
                    inbox_id, inserted = await door.write((payload, key["id"], idempotency))
                except inbox.KeyRevoked:
                    door.forget_key(key_hash)
                    raise _Refused(_bad_key(), key_cors, "bad_key") from None
                except Exception as exc:
                    code = refused_value_code(exc)
                    if code is None:
                        raise
                    raise _Refused(rules.RequestError(422, f"a field holds a value the CRM cannot store ({code})"),
                                   cors, "refused_value") from None
            except rules.RequestError as exc:
                raise _Refused(exc, cors, "bad_request") from None
            except InboxError as exc:
                field = "email" if "email" in str(exc) else None
                raise _Refused(rules.RequestError(422, str(exc), field), cors, "bad_lead") from None
        except _Refused as refused:
            if cached and refused.error.status != 401:
                # Refused for another reason with a remembered key: if it has been revoked since, 401 (and if the
                # database is down, 503), as without the cache.
                try:
                    if not await door.still_active(key_hash):
                        refused = _Refused(_bad_key(), key_cors, "bad_key")
                except DatabaseError:
                    return _unavailable(started, key, key_cors)
            _access("POST", LEADS_PATH, refused.error.status, started, key_id=key["id"] if key else None,
                    error=refused.code)
            return _error_response(refused)
        except DatabaseError:
            return _unavailable(started, key, cors)
        replayed = {} if inserted else {"Idempotent-Replayed": "true"}
        if return_url:
            _access("POST", LEADS_PATH, 303, started, key_id=key["id"], submission_id=inbox_id, stored=inserted)
            return RedirectResponse(return_url, status_code=303, headers={**cors, **replayed})
        _access("POST", LEADS_PATH, 202, started, key_id=key["id"], submission_id=inbox_id, stored=inserted)
        return JSONResponse({"submission_id": inbox_id, "status": "accepted"}, status_code=202,
                            headers={**cors, **replayed})

    # A plain Starlette route: FastAPI's per-request dependency solving has nothing to do for a handler that reads
    # the request itself, and it was a tenth of the server's CPU per lead (bench/RESULTS.md session 10).
    app.add_route(LEADS_PATH, post_lead, methods=["POST"], include_in_schema=False)

    # Imported here: the webhook module imports emit_submitted from this one.
    from deployments import api_webhooks

    app.include_router(api_webhooks.router)
    return app


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration plus the structured access log (one JSON object a line, on stderr).

    Given to uvicorn, so every worker process sets it up.
    """
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["leadflow"] = {"format": "%(asctime)s %(name)s %(message)s"}
    config["handlers"]["leadflow"] = {"class": "logging.StreamHandler", "formatter": "leadflow",
                                      "stream": "ext://sys.stderr"}
    config["loggers"][ACCESS_LOG.name] = {"handlers": ["leadflow"], "level": "INFO", "propagate": False}
    return config


def uvicorn_options(host: str, port: int, settings: Settings | None = None) -> dict[str, Any]:
    """The uvicorn options `leadflow api` and `leadflow serve --api` share (proxy headers, no raw access log)."""
    settings = settings or get_settings()
    # uvicorn's own access log prints the client address and the query string (which may hold a key): off.
    return {"host": host, "port": port, "proxy_headers": True,
            "forwarded_allow_ips": settings.api_forwarded_allow_ips, "access_log": False,
            "timeout_keep_alive": 15, "log_config": log_config()}
