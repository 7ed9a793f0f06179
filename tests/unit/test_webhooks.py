"""Signed webhooks: each vendor's documented signature scheme (good, bad, missing, stale, replayed, wrong body) and
the mapping of documented example payloads (tests/data/webhooks) onto the intake contract."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadflow.domain import webhooks as wh

DATA = Path(__file__).resolve().parents[1] / "data" / "webhooks"
SECRET = "whsec-test-0123456789"
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
BODY = b'{"event_type": "form_response", "form_response": {"token": "t1"}}'
OTHER_BODY = BODY.replace(b"t1", b"t2")
URL = "https://leads.example.com/v1/webhooks/hubspot"


def fixture(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def _mac(message: bytes, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


# --- how each vendor signs (built as its documentation says) --------------------------------------------------------


def typeform_header(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(_mac(body, secret)).decode()


def meta_header(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + _mac(body, secret).hex()


def calendly_header(body: bytes, at: datetime = NOW, secret: str = SECRET) -> str:
    stamp = str(int(at.timestamp()))
    return f"t={stamp},v1={_mac(stamp.encode() + b'.' + body, secret).hex()}"


def hubspot_headers(body: bytes, at: datetime = NOW, secret: str = SECRET, url: str = URL,
                    method: str = "POST") -> tuple[str, str]:
    stamp = str(int(at.timestamp() * 1000))
    signature = base64.b64encode(_mac(method.encode() + url.encode() + body + stamp.encode(), secret)).decode()
    return signature, stamp


def check(vendor: str, body: bytes, header, now: datetime = NOW) -> None:
    """Run the vendor's verification of `body` as received with `header` (for HubSpot: signature, timestamp)."""
    if vendor == "typeform":
        wh.verify_typeform(SECRET, body, header)
    elif vendor == "meta":
        wh.verify_meta(SECRET, body, header)
    elif vendor == "calendly":
        wh.verify_calendly(SECRET, body, header, now)
    else:
        signature, stamp = header if header else (None, None)
        wh.verify_hubspot(SECRET, "POST", URL, body, signature, stamp, now)


SIGN = {
    "typeform": lambda body, **kw: typeform_header(body, **kw),
    "meta": lambda body, **kw: meta_header(body, **kw),
    "calendly": lambda body, **kw: calendly_header(body, **kw),
    "hubspot": lambda body, **kw: hubspot_headers(body, **kw),
}
LATE = timedelta(minutes=6)

CASES = [
    # vendor, case, header builder, body received, now, refused with (None: accepted)
    *[(v, "good signature", lambda v: SIGN[v](BODY), BODY, NOW, None) for v in wh.VENDORS],
    *[(v, "bad signature", lambda v: SIGN[v](BODY, secret="another-secret"), BODY, NOW, "does not match")
      for v in wh.VENDORS],
    *[(v, "wrong body", lambda v: SIGN[v](BODY), OTHER_BODY, NOW, "does not match") for v in wh.VENDORS],
    *[(v, "missing header", lambda v: None, BODY, NOW, "missing") for v in wh.VENDORS],
    ("typeform", "hex instead of base64", lambda v: meta_header(BODY), BODY, NOW, "does not match"),
    ("meta", "base64 instead of hex", lambda v: typeform_header(BODY), BODY, NOW, "does not match"),
    ("typeform", "another scheme", lambda v: "sha1=abc", BODY, NOW, "sha256=<signature>"),
    ("meta", "legacy X-Hub-Signature sha1", lambda v: "sha1=" + hmac.new(SECRET.encode(), BODY, "sha1").hexdigest(),
     BODY, NOW, "sha256=<signature>"),
    ("calendly", "malformed header", lambda v: "v1=abc", BODY, NOW, "t=<timestamp>,v1=<signature>"),
    ("calendly", "non-ASCII digits", lambda v: "t=\u0663\u0663,v1=abc", BODY, NOW, "t=<timestamp>,v1=<signature>"),
    ("hubspot", "non-ASCII digits", lambda v: ("abc", "\u0663\u0663"), BODY, NOW, "X-HubSpot-Request-Timestamp"),
    ("calendly", "stale timestamp", lambda v: calendly_header(BODY, at=NOW - LATE), BODY, NOW, "stale or replayed"),
    ("calendly", "future timestamp", lambda v: calendly_header(BODY, at=NOW + LATE), BODY, NOW, "in the future"),
    ("calendly", "timestamp moved, signature kept",
     lambda v: "t=" + str(int(NOW.timestamp()) + 1) + calendly_header(BODY)[calendly_header(BODY).index(","):],
     BODY, NOW, "does not match"),
    ("calendly", "replayed delivery after the window", lambda v: calendly_header(BODY), BODY, NOW + LATE,
     "stale or replayed"),
    ("calendly", "replayed delivery within the window", lambda v: calendly_header(BODY), BODY,
     NOW + timedelta(minutes=4), None),
    ("hubspot", "stale timestamp", lambda v: hubspot_headers(BODY, at=NOW - LATE), BODY, NOW, "stale or replayed"),
    ("hubspot", "future timestamp", lambda v: hubspot_headers(BODY, at=NOW + LATE), BODY, NOW, "in the future"),
    ("hubspot", "timestamp header missing", lambda v: (hubspot_headers(BODY)[0], None), BODY, NOW,
     "X-HubSpot-Request-Timestamp"),
    ("hubspot", "timestamp moved, signature kept",
     lambda v: (hubspot_headers(BODY)[0], str(int(NOW.timestamp() * 1000) + 1)), BODY, NOW, "does not match"),
    ("hubspot", "signed for another URL", lambda v: hubspot_headers(BODY, url=URL + "?x=1"), BODY, NOW,
     "does not match"),
    ("hubspot", "signed for GET", lambda v: hubspot_headers(BODY, method="GET"), BODY, NOW, "does not match"),
    ("hubspot", "replayed delivery after the window", lambda v: hubspot_headers(BODY), BODY, NOW + LATE,
     "stale or replayed"),
    # Typeform and Meta sign no time: a replay verifies, and webhook_deliveries stores it once (tests/crm).
    ("typeform", "replayed delivery", lambda v: typeform_header(BODY), BODY, NOW + timedelta(days=3), None),
    ("meta", "replayed delivery", lambda v: meta_header(BODY), BODY, NOW + timedelta(days=3), None),
]


@pytest.mark.parametrize(("vendor", "case", "header", "body", "now", "refused"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_signature_schemes(vendor, case, header, body, now, refused):
    if refused is None:
        check(vendor, body, header(vendor), now)
        return
    with pytest.raises(wh.WebhookRefused, match=refused.replace("(", r"\(").replace(")", r"\)")) as caught:
        check(vendor, body, header(vendor), now)
    assert caught.value.status == 401
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message and "form_response" not in message


@pytest.mark.parametrize(
    ("url", "signed_as"),
    [
        ("https://leads.example.com/v1/webhooks/hubspot", "https://leads.example.com/v1/webhooks/hubspot"),
        ("https://leads.example.com/v1/webhooks/hubspot?portal=62515&next=%2Fthanks%3Fa%3Db",
         "https://leads.example.com/v1/webhooks/hubspot?portal=62515&next=/thanks?a%3Db"),
        ("https://leads.example.com/hook?who=a%40b%2Cc%3Bd%21%24%27%28%29%2a",
         "https://leads.example.com/hook?who=a@b,c;d!$'()*"),
        # Only the documented characters are decoded: `=`, a space or an ampersand stays encoded.
        ("https://leads.example.com/hook?q=a%20b%26c", "https://leads.example.com/hook?q=a%20b%26c"),
    ],
)
def test_hubspot_signs_the_uri_with_its_documented_characters_decoded(url, signed_as):
    assert wh.hubspot_uri(url) == signed_as
    signature, stamp = hubspot_headers(BODY, url=signed_as)
    wh.verify_hubspot(SECRET, "POST", url, BODY, signature, stamp, NOW)


def test_calendly_accepts_any_of_several_v1_signatures():
    good = calendly_header(BODY)
    stamp, signature = good.split(",")
    wh.verify_calendly(SECRET, BODY, f"{stamp},v1={'0' * 64},{signature}", NOW)


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1158201444"}, "1158201444"),
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158201444"}, 403),
        ({"hub.mode": "subscribe", "hub.challenge": "1158201444"}, 403),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1"}, 400),
        ({"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock"}, 400),
    ],
)
def test_meta_subscription_check(params, answer):
    if isinstance(answer, str):
        assert wh.meta_challenge(params, "meatyhamhock") == answer
        return
    with pytest.raises(wh.WebhookRefused) as caught:
        wh.meta_challenge(params, "meatyhamhock")
    assert caught.value.status == answer


# --- mapping documented payloads onto the intake contract -----------------------------------------------------------

MAPPED = [
    ("typeform", "typeform_form_response", "a3a12ec67a1365927098a606107fac15", {
        "email": "laura.diaz@example.com", "first_name": "Laura", "last_name": "Diaz", "phone": "+14155550132",
        "company": "Example Robotics", "message": "We route 2k inbound leads a month by hand.",
        "source": "web_form", "external_id": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2026-12-01T10:00:24Z", "utm_source": "newsletter", "utm_campaign": "winter_launch",
        # Answers the contract has no column for stay under their question, as extra fields of the raw payload.
        "Which products interest you?": "Routing, Reports", "How big is your team?": "51-200",
        "Would you like a call back this week?": True, "typeform_form_id": "lT4Z3j", "webhook_vendor": "typeform",
    }),
    ("meta", "meta_leadgen", "444444444444444", {
        "external_id": "444444444444444", "submitted_at": "2024-12-05T10:00:00+00:00", "source": "paid_social",
        "meta_ad_id": "444444444", "meta_adgroup_id": "44444444444", "meta_form_id": "444444444444",
        "meta_page_id": "153125381133", "webhook_vendor": "meta",
    }),
    ("meta", "meta_leadgen_field_data", "555555555555555", {
        "email": "sam.okafor@example.org", "full_name": "Sam Okafor", "phone": "+447700900123",
        "company": "Okafor Logistics", "what_is_your_budget?": "$10k-$50k",
        "external_id": "555555555555555", "submitted_at": "2024-12-05T10:01:00+00:00", "source": "paid_social",
        "meta_ad_id": "444444444", "meta_adgroup_id": "44444444444", "meta_form_id": "444444444444",
        "meta_page_id": "153125381133", "webhook_vendor": "meta",
    }),
    ("calendly", "calendly_invitee_created",
     "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA", {
         "email": "priya.raman@example.net", "full_name": "Priya Raman", "company": "Raman Analytics",
         "phone": "+1 212 555 0147", "message": "We want to score leads from three web forms.",
         "How did you hear about us?": "Google search", "utm_source": "google", "utm_medium": "cpc",
         "utm_campaign": "demo_q4", "calendly_event_name": "30 Minute Demo",
         "calendly_meeting_at": "2026-12-09T15:00:00.000000Z", "source": "web_form",
         "external_id": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA",
         "submitted_at": "2026-12-01T10:02:40.856321Z", "webhook_vendor": "calendly",
     }),
    ("hubspot", "hubspot_workflow_contact", "3234574@2024-12-05T10:05:00+00:00", {
        "email": "tomas.berg@example.com", "first_name": "Tomas", "last_name": "Berg", "company": "Berg Freight AB",
        "phone": "+46 8 555 012 34", "job_title": "Head of Sales",
        "message": "Looking for lead routing across two regions.", "source": "ORGANIC_SEARCH",
        "lifecycle_stage": "lead", "recent_conversion_event_name": "Contact us: Form submission",
        "external_id": "3234574@2024-12-05T10:05:00+00:00", "submitted_at": "2024-12-05T10:05:00+00:00",
        "hubspot_contact_id": "3234574", "webhook_vendor": "hubspot",
    }),
]


@pytest.mark.parametrize(("vendor", "name", "delivery_id", "payload"), MAPPED, ids=[m[1] for m in MAPPED])
def test_documented_payloads_map_onto_the_intake_contract(vendor, name, delivery_id, payload):
    batch = wh.MAPPERS[vendor](fixture(name))
    assert [lead.delivery_id for lead in batch.leads] == [delivery_id]
    assert batch.leads[0].payload == payload


@pytest.mark.parametrize(
    ("vendor", "name", "ignored"),
    [("calendly", "calendly_invitee_canceled", 1), ("hubspot", "hubspot_webhooks_api_batch", 1),
     ("meta", "meta_leadgen_field_data", 1)],
)
def test_events_without_a_lead_are_counted_and_left_out(vendor, name, ignored):
    batch = wh.MAPPERS[vendor](fixture(name))
    assert batch.ignored == ignored
    assert all(lead.payload["webhook_vendor"] == vendor for lead in batch.leads)


def test_hubspot_flat_custom_body_and_a_later_conversion_is_a_new_delivery():
    first = wh.hubspot_leads({"hs_object_id": "77", "email": "a@example.com", "firstname": "Ann",
                              "recent_conversion_date": "1733393100000"})
    later = wh.hubspot_leads({"hs_object_id": "77", "email": "a@example.com", "firstname": "Ann",
                              "recent_conversion_date": "1733479500000"})
    assert first.leads[0].payload["first_name"] == "Ann"
    assert first.leads[0].delivery_id != later.leads[0].delivery_id
    assert first.leads[0].delivery_id == wh.hubspot_leads({"hs_object_id": "77", "email": "a@example.com",
                                                           "recent_conversion_date": "1733393100000"}
                                                          ).leads[0].delivery_id


@pytest.mark.parametrize(
    ("vendor", "event", "message"),
    [
        ("typeform", {"event_type": "form_response", "form_response": {"answers": []}}, "form_response.token"),
        ("typeform", ["not", "an", "object"], "not a Typeform webhook event"),
        ("meta", {"object": "instagram", "entry": []}, "not a page object"),
        ("meta", {"object": "page"}, "not a page object"),
        ("calendly", {"event": "invitee.created", "payload": {"email": "a@example.com"}}, "payload.uri"),
        ("hubspot", {"properties": {"email": {"value": "a@example.com"}}}, "has no id"),
        ("hubspot", "a string", "not a HubSpot contact"),
    ],
)
def test_a_verified_body_of_the_wrong_shape_is_refused_with_422(vendor, event, message):
    with pytest.raises(wh.WebhookRefused, match=message) as caught:
        wh.MAPPERS[vendor](event)
    assert caught.value.status == 422
    assert "a@example.com" not in str(caught.value)


def test_a_typeform_event_of_another_type_carries_no_lead():
    assert wh.typeform_leads({"event_type": "form_partial_response", "form_response": {"token": "x"}}).ignored == 1


def test_a_vendor_id_longer_than_external_id_holds_is_hashed_the_same_way_every_time():
    long_id = "https://api.calendly.com/" + "x" * 300
    assert wh.delivery_key(long_id) == wh.delivery_key(long_id)
    assert wh.delivery_key(long_id).startswith("sha256:") and len(wh.delivery_key(long_id)) <= 200
    assert wh.delivery_key(" 42 ") == "42"


ODD = [None, 0, 1.5, "", "x", [], {}, [1], {"a": 1}, True, 1e308, "9" * 300]


def _mutated(value, rng: random.Random):
    """The value with some parts replaced by values of other JSON types or left out, recursively."""
    if isinstance(value, dict):
        return {k: (rng.choice(ODD) if rng.random() < 0.15 else _mutated(v, rng)) for k, v in value.items()
                if rng.random() > 0.05}
    if isinstance(value, list):
        return [rng.choice(ODD) if rng.random() < 0.15 else _mutated(v, rng) for v in value]
    return value


SHAPES = [(m[0], m[1]) for m in MAPPED] + [("hubspot", "hubspot_webhooks_api_batch")]


@pytest.mark.parametrize(("vendor", "name"), SHAPES)
def test_a_verified_body_of_any_shape_is_mapped_or_refused_never_a_crash(vendor, name):
    rng = random.Random(name)
    for event in [*ODD, *(_mutated(fixture(name), rng) for _ in range(400))]:
        try:
            batch = wh.MAPPERS[vendor](event)
        except wh.WebhookRefused as refused:
            assert refused.status == 422
            continue
        for lead in batch.leads:
            assert isinstance(lead.delivery_id, str) and 0 < len(lead.delivery_id) <= 200
            assert lead.payload["webhook_vendor"] == vendor and lead.payload["external_id"] == lead.delivery_id
            json.dumps(lead.payload, allow_nan=False)
