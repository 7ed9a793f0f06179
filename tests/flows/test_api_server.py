"""`leadflow api` under a real uvicorn process on SQLite and PostgreSQL: every answer, keys, CORS, rate limits.

One server per database for the whole module (it takes seconds to start). Each test uses its own key and its own
client address (X-Forwarded-For from 127.0.0.1, a trusted proxy by default), so rate limits of one test never
touch another.
"""

from __future__ import annotations

import itertools
import shutil
import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from leadflow.crm.api_keys import create_key, revoke_key
from leadflow.crm.inbox import INBOX
from leadflow.crm.store import Store, database_url
from tests.api_server import running_api
from tests.conftest import PG_URL

SITE = "https://www.example.com"
OTHER_SITE = "https://evil.example.net"
# The server's limits, low enough to reach in a test.
SERVER_ENV = {"LEADFLOW_API_MAX_BODY_BYTES": "2048", "LEADFLOW_API_ADDRESS_RATE_PER_MINUTE": "30",
              "LEADFLOW_API_KEY_RATE_PER_MINUTE": "0"}
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


def _pg_database(request) -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need LEADFLOW_TEST_PG_URL")
    admin = create_engine(database_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"leadflow_api_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    Store(url).upgrade()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, sqlite_template, tmp_path_factory, prefect_api):
    """(server, store): `leadflow api` running against a CRM of its own, and that CRM's store."""
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        shutil.copyfile(sqlite_template, folder / "crm.db")
        url = f"sqlite:///{folder / 'crm.db'}"
    else:
        url = _pg_database(request)
    from prefect.settings import PREFECT_API_URL

    store = Store(url)
    # The server emits its events to the session's Prefect API, as a deployed one does to the server's.
    with running_api(url, folder, {**SERVER_ENV, "PREFECT_API_URL": PREFECT_API_URL.value()}) as server:
        yield server, store
    store.dispose()


def _key(store: Store, **options) -> str:
    key, _ = create_key(store, f"test-{uuid.uuid4().hex[:8]}", **options)
    return key.token


def _client(server, **headers) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, headers={"X-Forwarded-For": next(_addresses), **headers})


def _rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(INBOX.c.id, INBOX.c.payload, INBOX.c.api_key_id,
                                                     INBOX.c.idempotency_key).order_by(INBOX.c.id)).mappings()]


def _row(store: Store, inbox_id: int) -> dict | None:
    return next((r for r in _rows(store) if r["id"] == inbox_id), None)


def test_health_answers_when_the_database_does(api):
    server, _ = api
    answer = httpx.get(f"{server.url}/healthz", timeout=30)
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_a_json_lead_is_committed_before_the_answer_and_a_retry_stores_nothing_new(api):
    server, store = api
    token = _key(store, default_channel="partner")
    lead = {"email": "Jane.Doe@Acme.com", "first_name": "Jane", "honeypot": "", "company": "Acme"}
    key = f"retry-{uuid.uuid4().hex}"
    with _client(server, **{"X-API-Key": token, "Idempotency-Key": key}) as client:
        first = client.post("/v1/leads", json=lead)
        assert first.status_code == 202, first.text
        inbox_id = first.json()["submission_id"]
        # Read at once: the row was committed before the 202.
        stored = _row(store, inbox_id)
        assert stored is not None and stored["idempotency_key"] == key
        # The key's default channel fills in the missing source; the key itself is never part of the payload.
        assert stored["payload"]["source"] == "partner" and stored["payload"]["email"] == "Jane.Doe@Acme.com"
        again = client.post("/v1/leads", json=lead)
    assert again.status_code == 202 and again.json()["submission_id"] == inbox_id
    assert again.headers["idempotent-replayed"] == "true"
    assert sum(r["idempotency_key"] == key for r in _rows(store)) == 1
    # The same idempotency key under another API key is another submission.
    with _client(server, **{"X-API-Key": _key(store), "Idempotency-Key": key}) as client:
        other = client.post("/v1/leads", json=lead)
    assert other.status_code == 202 and other.json()["submission_id"] != inbox_id


def test_a_form_post_redirects_to_its_return_url_with_the_key_as_a_field(api):
    server, store = api
    token = _key(store, allowed_origins=[SITE], default_channel="web_form")
    form = {"api_key": token, "email": "bob@beta.io", "first_name": "Bob", "message": "", "honeypot": "",
            "retURL": f"{SITE}/thanks.html"}
    with _client(server, Origin=SITE) as client:
        answer = client.post("/v1/leads", data=form)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"{SITE}/thanks.html"
        assert answer.headers["access-control-allow-origin"] == SITE
        payload = max(_rows(store), key=lambda r: r["id"])["payload"]
        assert payload["email"] == "bob@beta.io" and payload["source"] == "web_form"
        assert not {"api_key", "retURL", "message", "honeypot"} & set(payload)
        # A filled honeypot is stored, for the spam rules to flag (the data contract's `honeypot`).
        assert client.post("/v1/leads", data={**form, "honeypot": "buy now"}).status_code == 303
        assert max(_rows(store), key=lambda r: r["id"])["payload"]["honeypot"] == "buy now"
        # No open redirect: a return URL off the key's origins is refused, naming the field.
        elsewhere = client.post("/v1/leads", data={**form, "retURL": f"{OTHER_SITE}/x"})
    assert elsewhere.status_code == 422 and elsewhere.json()["field"] == "return_url"


@pytest.mark.parametrize(("status", "headers", "body", "field"), [
    (400, {"Content-Type": "application/json"}, b'{"email": "a@b.com"', None),
    (400, {"Content-Type": "application/json"}, b'["a@b.com"]', None),
    (400, {"Content-Type": "application/x-www-form-urlencoded"}, b"email", None),
    (400, {}, b"", None),
    (415, {"Content-Type": "text/plain"}, b"email=a@b.com", None),
    (415, {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", None),
    (413, {"Content-Type": "application/json"}, b'{"email": "a@b.com", "message": "' + b"x" * 4096 + b'"}', None),
    (422, {"Content-Type": "application/json"}, b'{"first_name": "Jane"}', "email"),
    (422, {"Content-Type": "application/json"}, b'{"email": "not an address"}', "email"),
    (422, {"Content-Type": "application/x-www-form-urlencoded"}, b"email=&first_name=Jane", "email"),
    # A lone surrogate is valid JSON but no text a database stores.
    (422, {"Content-Type": "application/json"}, b'{"email": "a@b.com", "first_name": "\\ud800"}', None),
])
def test_a_refused_request_says_why_and_stores_nothing(api, status, headers, body, field):
    server, store = api
    before = len(_rows(store))
    with _client(server, **{"X-API-Key": _key(store), **headers}) as client:
        answer = client.post("/v1/leads", content=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] and "\n" not in answer.json()["error"]
    assert answer.json().get("field") == field
    # No row value in an error: the refused address is not echoed back.
    assert "not an address" not in answer.text
    assert len(_rows(store)) == before


@pytest.mark.parametrize("given", ["none", "unknown", "malformed"])
def test_a_request_without_a_valid_key_is_401(api, given):
    server, _ = api
    token = {"none": None, "unknown": "lfk_" + "x" * 43, "malformed": "secret"}[given]
    with _client(server, **({"X-API-Key": token} if token else {})) as client:
        answer = client.post("/v1/leads", json={"email": "a@b.com"})
    assert answer.status_code == 401


def test_a_revoked_key_is_refused_at_once(api):
    server, store = api
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    key, _ = create_key(store, name)
    with _client(server, Authorization=f"Bearer {key.token}") as client:
        assert client.post("/v1/leads", json={"email": "a@b.com"}).status_code == 202
        revoke_key(store, name)
        answer = client.post("/v1/leads", json={"email": "a@b.com"})
        by_query = client.post(f"/v1/leads?api_key={key.token}", headers={"Authorization": ""},
                               json={"email": "a@b.com"})
    assert answer.status_code == 401 and by_query.status_code == 401


@pytest.mark.parametrize("headers, body", [
    ({}, {"email": "a@b.com"}),  # would be stored
    ({"Idempotency-Key": "once"}, {"email": "a@b.com"}),  # would be stored once
    ({}, {"email": "not an address"}),  # would be 422
    ({"Origin": OTHER_SITE}, {"email": "a@b.com"}),  # would be 403
])
def test_a_key_revoked_while_the_server_remembers_it_is_refused_whatever_else_is_wrong(api, headers, body):
    # The server keeps found keys for a while (KEY_CACHE_SECONDS); a revoke must still win at once, on every path.
    server, store = api
    name = f"cached-{uuid.uuid4().hex[:8]}"
    key, _ = create_key(store, name, allowed_origins=[SITE])
    with _client(server, **{"X-API-Key": key.token}) as client:
        assert client.post("/v1/leads", json={"email": "a@b.com"}).status_code == 202
        before = len(_rows(store))
        revoke_key(store, name)
        answer = client.post("/v1/leads", headers=headers, json=body)
        again = client.post("/v1/leads", headers=headers, json=body)
    assert (answer.status_code, again.status_code) == (401, 401), answer.text
    assert answer.json() == {"error": "the API key is unknown or revoked"}
    assert len(_rows(store)) == before


def test_cors_is_answered_per_key(api):
    server, store = api
    site_key = _key(store, allowed_origins=[SITE])
    server_key = _key(store)
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with _client(server) as client:
        allowed = client.options(f"/v1/leads?api_key={site_key}", headers={"Origin": SITE, **preflight})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == SITE
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        other = client.options(f"/v1/leads?api_key={site_key}", headers={"Origin": OTHER_SITE, **preflight})
        assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
        # The site's key from the site: stored, and the browser may read the answer.
        posted = client.post(f"/v1/leads?api_key={site_key}", headers={"Origin": SITE}, json={"email": "a@b.com"})
        assert posted.status_code == 202 and posted.headers["access-control-allow-origin"] == SITE
        # Another site's page using this key, and a server-side key used from a browser: refused.
        stolen = client.post(f"/v1/leads?api_key={site_key}", headers={"Origin": OTHER_SITE},
                             json={"email": "a@b.com"})
        browser = client.post("/v1/leads", headers={"Origin": SITE, "X-API-Key": server_key},
                              json={"email": "a@b.com"})
    assert stolen.status_code == 403 and "access-control-allow-origin" not in stolen.headers
    assert browser.status_code == 403


def test_rate_limits_per_key_and_per_address_answer_429_with_retry_after(api):
    server, store = api
    # 6 a minute: one at once, the next after ten seconds.
    slow_key = _key(store, rate_per_minute=6)
    with _client(server, **{"X-API-Key": slow_key}) as client:
        assert client.post("/v1/leads", json={"email": "a@b.com"}).status_code == 202
        limited = client.post("/v1/leads", json={"email": "a@b.com"})
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 10
    # The server allows 30 a minute from one address (5 at once); another address is not slowed down.
    with _client(server, **{"X-API-Key": _key(store)}) as client:
        answers = [client.post("/v1/leads", json={"email": "a@b.com"}).status_code for _ in range(7)]
    assert answers[:5] == [202] * 5 and answers[-1] == 429
    with _client(server, **{"X-API-Key": _key(store)}) as client:
        assert client.post("/v1/leads", json={"email": "a@b.com"}).status_code == 202


def test_a_stored_lead_emits_the_event_that_triggers_continuous_intake(api):
    server, store = api
    with _client(server, **{"X-API-Key": _key(store)}) as client:
        inbox_id = client.post("/v1/leads", json={"email": "a@b.com"}).json()["submission_id"]
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + 60
    with httpx.Client(base_url=PREFECT_API_URL.value(), timeout=30) as prefect:
        while True:
            found = prefect.post("/events/filter", json={"filter": {"event": {"name": ["leadflow.lead.submitted"]},
                                                                    "occurred": {"since": "2020-01-01T00:00:00Z"}},
                                                         "limit": 50}).json()
            ids = [e["payload"].get("inbox_id") for e in found.get("events", [])]
            if inbox_id in ids or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert inbox_id in ids, server.log_tail()


def test_the_access_log_holds_no_personal_data(api):
    server, store = api
    token = _key(store)
    with _client(server, **{"X-API-Key": token}) as client:
        assert client.post("/v1/leads?x=1", json={"email": "private.person@example.org", "phone": "+1 555 0100"}
                           ).status_code == 202
    log = server.log_tail()
    assert '"status": 202' in log
    for secret in ("private.person", "555 0100", token, "198.51.100."):
        assert secret not in log


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_serve_api_starts_the_api_on_a_thread_and_refuses_a_taken_port(crm):
    import socket

    from deployments.serve import start_api
    from tests.api_server import free_port

    port = free_port()
    server = start_api("127.0.0.1", port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError, match="did not start"):
                start_api("127.0.0.1", taken.getsockname()[1])
    finally:
        server.should_exit = True
