"""Signed webhooks from lead-sending tools: each vendor's documented signature check, and its payload as inbox leads.

Verification runs on the raw request body before anything is parsed or stored; a request that fails it is refused
(WebhookRefused, status 401) with a one-line reason that never quotes the body. Mapping turns a verified event into
inbox payloads on the intake contract: canonical fields where a question or property is recognised (through the
export profiles' header spellings and the contract's aliases), every other answer kept under its own name, the
vendor's response/lead id as `external_id` and the event's time as `submitted_at`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadflow.config.profiles import ExportProfile
from leadflow.domain.contract import FIELD_LIMITS, fold_header, resolve_columns
from leadflow.domain.profiles import known_profiles

VENDORS: tuple[str, ...] = ("typeform", "meta", "calendly", "hubspot")
# The raw-payload field naming the tool a webhook lead came from (kept with the submission's raw payload).
VENDOR_FIELD = "webhook_vendor"
# HubSpot documents five minutes; Calendly's own example allows three. One window serves both (a setting).
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookRefused(ValueError):
    """A webhook request refused before anything is stored: `status` is the HTTP answer, the message one line."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WebhookLead:
    """One lead a webhook carried: the vendor's id for it (a redelivery has the same) and its inbox payload."""

    delivery_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class WebhookBatch:
    """What one verified webhook request holds: its leads, and how many events carried no lead (cancellations...)."""

    leads: list[WebhookLead] = field(default_factory=list)
    ignored: int = 0


# --- signatures ----------------------------------------------------------------------------------------------------


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii", "replace"), given.encode("ascii", "replace"))


def _prefixed(header: str | None, name: str) -> str:
    """The value of a `sha256=<signature>` header; refused when missing or of another scheme."""
    if header is None or not header.strip():
        raise WebhookRefused(f"missing {name} header")
    scheme, _, value = header.strip().partition("=")
    if scheme.strip().lower() != "sha256" or not value.strip():
        raise WebhookRefused(f"{name} is not of the form sha256=<signature>")
    return value.strip()


def verify_typeform(secret: str, body: bytes, header: str | None) -> None:
    """Typeform: `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body, keyed by the webhook's secret>`.

    https://www.typeform.com/developers/webhooks/secure-your-webhooks/
    """
    given = _prefixed(header, "Typeform-Signature")
    if not _same(base64.b64encode(_mac(secret, body)).decode("ascii"), given):
        raise WebhookRefused("Typeform-Signature does not match the body")


def verify_meta(app_secret: str, body: bytes, header: str | None) -> None:
    """Meta webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the app secret>`.

    https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads
    """
    given = _prefixed(header, "X-Hub-Signature-256").lower()
    if not _same(_mac(app_secret, body).hex(), given):
        raise WebhookRefused("X-Hub-Signature-256 does not match the body")


def meta_challenge(params: Mapping[str, str], verify_token: str) -> str:
    """Meta's endpoint check (GET hub.mode=subscribe, hub.verify_token, hub.challenge): the challenge to echo back.

    https://developers.facebook.com/docs/graph-api/webhooks/getting-started#verification-requests
    """
    if params.get("hub.mode") != "subscribe" or not params.get("hub.challenge"):
        raise WebhookRefused("not a Meta subscription check (hub.mode=subscribe with hub.challenge)", 400)
    if not _same(verify_token, params.get("hub.verify_token") or ""):
        raise WebhookRefused("hub.verify_token does not match", 403)
    return params["hub.challenge"]


def _digits(text: str) -> bool:
    # str.isdigit() also takes other scripts' digits, which no vendor sends and ASCII cannot encode.
    return text.isascii() and text.isdigit()


def _fresh(stamp_seconds: float, now: datetime, tolerance_seconds: float, name: str) -> None:
    age = now.timestamp() - stamp_seconds
    if age > tolerance_seconds:
        raise WebhookRefused(f"{name} is {int(age)} s old, over the {int(tolerance_seconds)} s window "
                             "(stale or replayed)")
    if -age > tolerance_seconds:
        raise WebhookRefused(f"{name} is {int(-age)} s in the future, over the {int(tolerance_seconds)} s window")


def verify_calendly(signing_key: str, body: bytes, header: str | None, now: datetime,
                    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Calendly: `Calendly-Webhook-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, t within window.

    https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures
    """
    if header is None or not header.strip():
        raise WebhookRefused("missing Calendly-Webhook-Signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key.strip(), []).append(value.strip())
    stamps, signatures = parts.get("t", []), [s for s in parts.get("v1", []) if s]
    if len(stamps) != 1 or not _digits(stamps[0]) or not signatures:
        raise WebhookRefused("Calendly-Webhook-Signature is not of the form t=<timestamp>,v1=<signature>")
    expected = _mac(signing_key, stamps[0].encode("ascii") + b"." + body).hex()
    # The signature is checked before the time: a forged header learns nothing about the window.
    if not any(_same(expected, s.lower()) for s in signatures):
        raise WebhookRefused("Calendly-Webhook-Signature does not match the body")
    _fresh(int(stamps[0]), now, tolerance_seconds, "Calendly-Webhook-Signature's timestamp")


# HubSpot: "decode any URL-encoded characters listed in the following table" before signing the URI.
HUBSPOT_URI_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                      "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def hubspot_uri(url: str) -> str:
    """The request URI as HubSpot signs it: the full URL with the documented characters URL-decoded."""
    out = url
    for encoded, char in HUBSPOT_URI_DECODE.items():
        out = out.replace(encoded, char).replace(encoded.lower(), char)
    return out


def verify_hubspot(client_secret: str, method: str, url: str, body: bytes, signature: str | None,
                   timestamp: str | None, now: datetime, tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS) -> None:
    """HubSpot v3: `X-HubSpot-Signature-v3` = base64 HMAC-SHA256 of method + URI + body + timestamp (client secret).

    `X-HubSpot-Request-Timestamp` is in milliseconds; a request older than the window (5 minutes) is refused.
    https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
    """
    if not signature or not signature.strip():
        raise WebhookRefused("missing X-HubSpot-Signature-v3 header")
    if not timestamp or not _digits(timestamp.strip()):
        raise WebhookRefused("missing or malformed X-HubSpot-Request-Timestamp header")
    stamp = timestamp.strip()
    source = method.upper().encode("ascii") + hubspot_uri(url).encode("utf-8") + body + stamp.encode("ascii")
    if not _same(base64.b64encode(_mac(client_secret, source)).decode("ascii"), signature.strip()):
        raise WebhookRefused("X-HubSpot-Signature-v3 does not match the request")
    _fresh(int(stamp) / 1000, now, tolerance_seconds, "X-HubSpot-Request-Timestamp")


# --- mapping -------------------------------------------------------------------------------------------------------


def delivery_key(value: Any) -> str:
    """A vendor id as a delivery key and external_id: as given, or its SHA-256 when longer than the column holds."""
    text = str(value).strip()
    limit = FIELD_LIMITS.get("external_id", 200)
    return text if len(text) <= limit else "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _profile(name: str) -> ExportProfile | None:
    return next((p for p in known_profiles() if p.name == name), None)


def fold_fields(fields: Mapping[str, Any], profile: str | None = None) -> dict[str, Any]:
    """Answers keyed by the tool's wording -> canonical fields where recognised; the rest kept under their names.

    The same header resolution as file intake: a profile's own spellings, canonical names, the contract's aliases.
    """
    chosen = _profile(profile) if profile else None
    headers = [str(k) for k in fields]
    mapping = resolve_columns(headers, profile_aliases=chosen.aliases if chosen else None,
                              profile_ignored=chosen.ignored if chosen else ())
    out: dict[str, Any] = {}
    for header, value in fields.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        out.setdefault(mapping.get(str(header), str(header)), value)
    return out


def _with_defaults(payload: dict[str, Any], vendor: str, external_id: str, submitted_at: Any,
                   source: str | None) -> dict[str, Any]:
    out = dict(payload)
    out["external_id"] = external_id
    if submitted_at not in (None, ""):
        out["submitted_at"] = submitted_at
    if source and not out.get("source"):
        out["source"] = source
    out[VENDOR_FIELD] = vendor
    return out


def _iso_from_epoch(value: Any, *, millis: bool = False) -> str | None:
    try:
        return datetime.fromtimestamp(float(value) / (1000 if millis else 1), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        # Not an epoch (or out of range): handed on as given, for intake to parse or quarantine.
        return str(value) if value not in (None, "") else None


def _object(event: Any, what: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise WebhookRefused(f"the body is not a {what}", 422)
    return event


# A verified body is still the vendor's JSON: each part is taken only in the shape its documentation gives it.
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _scalar(value: Any) -> Any:
    """A JSON value where one value is expected: a nested object or list counts as none."""
    return None if isinstance(value, dict | list) else value


def _id(value: Any) -> str | None:
    """A vendor id (a string or a number), else None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


# Typeform: an answer's value sits under the key its `type` names; choices hold labels.
def _typeform_value(answer: Mapping[str, Any]) -> Any:
    kind = answer.get("type")
    value = answer.get(kind) if isinstance(kind, str) else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, dict):
        labels = [*_list(value.get("labels")), *([value["other"]] if value.get("other") else [])]
        return ", ".join(str(v) for v in labels)
    return value


def typeform_leads(event: Any) -> WebhookBatch:
    """A Typeform `form_response` event as one lead: answers by question title, hidden fields, the response token.

    https://www.typeform.com/developers/webhooks/example-payload/ ; an answer of type email or phone_number is the
    lead's email or phone whatever the question says, and a long-text answer is the message when no question maps
    to message.
    """
    event = _object(event, "Typeform webhook event")
    if event.get("event_type") != "form_response":
        return WebhookBatch(ignored=1)
    response = _dict(event.get("form_response"))
    token = _id(response.get("token"))
    if token is None:
        raise WebhookRefused("the Typeform event has no form_response.token", 422)
    titles = {_id(f.get("id")): f.get("title") for f in _list(_dict(response.get("definition")).get("fields"))
              if isinstance(f, dict) and _id(f.get("id")) and isinstance(f.get("title"), str)}
    fields: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    long_texts: list[str] = []
    for answer in _list(response.get("answers")):
        if not isinstance(answer, dict):
            continue
        ref = _dict(answer.get("field"))
        header = (titles.get(_id(ref.get("id"))) or _id(ref.get("ref")) or _id(ref.get("id"))
                  or f"answer_{len(fields) + 1}")
        value = _typeform_value(answer)
        if answer.get("type") in ("email", "phone_number"):
            value = _scalar(value)
        if answer.get("type") == "email":
            typed.setdefault("email", value)
        elif answer.get("type") == "phone_number":
            typed.setdefault("phone", value)
        else:
            fields.setdefault(header, value)
            if ref.get("type") == "long_text":
                long_texts.append(header)
    for key, value in _dict(response.get("hidden")).items():
        fields.setdefault(str(key), value)
    payload = fold_fields(fields, "typeform")
    message = next((h for h in long_texts if h in payload), None)
    if "message" not in payload and message:
        payload["message"] = payload.pop(message)
    for column, value in typed.items():
        if value not in (None, ""):
            payload[column] = value
    token = delivery_key(token)
    payload = _with_defaults(payload, "typeform", token, _scalar(response.get("submitted_at")), "web_form")
    if _id(response.get("form_id")):
        payload["typeform_form_id"] = _id(response.get("form_id"))
    return WebhookBatch([WebhookLead(token, payload)])


def meta_leads(event: Any) -> WebhookBatch:
    """Meta lead ads: each `leadgen` change of a `page` webhook as one lead, keyed by its leadgen_id.

    The webhook itself carries ids only (leadgen_id, form, ad, page, created_time); the person's answers need a
    Graph API call (GET /<leadgen_id>) that this endpoint does not make. A relay that fetched them may add them to
    the change's value as `field_data` ([{"name": ..., "values": [...]}], the Graph API's shape): then they map
    through the meta_lead_ads profile. Without them the lead is stored as delivered and intake quarantines it as
    missing an email, with its leadgen id kept for a later fetch.
    https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving
    """
    event = _object(event, "Meta webhook notification")
    if event.get("object") != "page" or not isinstance(event.get("entry"), list):
        raise WebhookRefused("the Meta notification is not a page object with entries", 422)
    leads: list[WebhookLead] = []
    ignored = 0
    for entry in event["entry"]:
        for change in _list(_dict(entry).get("changes")):
            value = _dict(_dict(change).get("value"))
            if _dict(change).get("field") != "leadgen" or _id(value.get("leadgen_id")) is None:
                ignored += 1
                continue
            fields: dict[str, Any] = {}
            for item in _list(value.get("field_data")):
                name = _id(_dict(item).get("name"))
                if name:
                    values = item.get("values")
                    fields.setdefault(name, ", ".join(str(v) for v in values)
                                      if isinstance(values, list) else _scalar(values))
            payload = fold_fields(fields, "meta_lead_ads")
            for key in ("form_id", "ad_id", "adgroup_id", "page_id"):
                if _id(value.get(key)):
                    payload[f"meta_{key}"] = _id(value.get(key))
            leadgen_id = delivery_key(_id(value.get("leadgen_id")))
            leads.append(WebhookLead(leadgen_id, _with_defaults(
                payload, "meta", leadgen_id, _iso_from_epoch(value.get("created_time")), "paid_social")))
    return WebhookBatch(leads, ignored)


# Calendly's default booking question: the invitee's own words, so the lead's message.
CALENDLY_MESSAGE_QUESTIONS = {fold_header("Please share anything that will help prepare for our meeting.")}


def calendly_leads(event: Any) -> WebhookBatch:
    """A Calendly `invitee.created` event as one lead, keyed by the invitee's URI; other events carry no lead.

    https://developer.calendly.com/receive-data-from-scheduled-events-in-real-time-with-webhook-subscriptions ;
    questions_and_answers map by question text (the default "Please share anything..." question is the message),
    tracking gives the UTM fields.
    """
    event = _object(event, "Calendly webhook event")
    if event.get("event") != "invitee.created":
        return WebhookBatch(ignored=1)
    invitee = _dict(event.get("payload"))
    uri = _id(invitee.get("uri"))
    if uri is None:
        raise WebhookRefused("the Calendly event has no payload.uri", 422)
    fields: dict[str, Any] = {}
    for qa in _list(invitee.get("questions_and_answers")):
        question = _id(_dict(qa).get("question"))
        if question:
            fields.setdefault("message" if fold_header(question) in CALENDLY_MESSAGE_QUESTIONS else question,
                              _scalar(qa.get("answer")))
    payload = fold_fields(fields)
    for key, column in (("email", "email"), ("first_name", "first_name"), ("last_name", "last_name"),
                        ("name", "full_name"), ("text_reminder_number", "phone")):
        if _scalar(invitee.get(key)) not in (None, "") and column not in payload:
            payload[column] = invitee[key]
    tracking = _dict(invitee.get("tracking"))
    for key in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"):
        if _scalar(tracking.get(key)) not in (None, "") and key not in payload:
            payload[key] = tracking[key]
    scheduled = _dict(invitee.get("scheduled_event"))
    if _id(scheduled.get("name")):
        payload["calendly_event_name"] = scheduled["name"]
    if _id(scheduled.get("start_time")):
        payload["calendly_meeting_at"] = scheduled["start_time"]
    uri = delivery_key(uri)
    when = _scalar(invitee.get("created_at")) or _scalar(event.get("created_at"))
    return WebhookBatch([WebhookLead(uri, _with_defaults(payload, "calendly", uri, when, "web_form"))])


def _hubspot_value(value: Any) -> Any:
    # The contact record a workflow sends holds {"value": ..., "versions": [...]} per property.
    return value.get("value") if isinstance(value, dict) else value


def _hubspot_time(value: Any) -> str | None:
    text = str(value).strip() if value not in (None, "") else ""
    return _iso_from_epoch(text, millis=True) if text.isdigit() else (text or None)


def hubspot_leads(event: Any) -> WebhookBatch:
    """A HubSpot workflow's "Send a webhook" contact (properties, or the record with properties) as one lead.

    https://knowledge.hubspot.com/workflows/how-do-i-use-webhooks-with-hubspot-workflows ; properties map through
    the hubspot profile (email, firstname, company, hs_analytics_source...). The key is the contact id and its
    latest conversion time, so a retried delivery is stored once and the contact's next form fill is a new lead.
    A Webhooks API batch (a JSON array of object events) carries ids, not the contact: its events are ignored.
    """
    if isinstance(event, list):
        return WebhookBatch(ignored=len(event))
    event = _object(event, "HubSpot contact")
    raw = event.get("properties") if isinstance(event.get("properties"), dict) else event
    props = {str(k): _hubspot_value(v) for k, v in raw.items() if not isinstance(_hubspot_value(v), dict | list)}
    contact_id = next((_id(event.get(k)) for k in ("vid", "canonical-vid", "objectId", "id") if _id(event.get(k))),
                      None) or _id(props.get("hs_object_id"))
    if not contact_id:
        raise WebhookRefused("the HubSpot contact has no id (hs_object_id, vid or id)", 422)
    converted = _hubspot_time(props.get("recent_conversion_date"))
    created = _hubspot_time(props.get("createdate"))
    for key in ("recent_conversion_date", "createdate", "lastmodifieddate", "hs_object_id"):
        props.pop(key, None)
    payload = fold_fields(props, "hubspot")
    when = converted or created
    key = delivery_key(f"{contact_id}@{when}" if when else str(contact_id))
    payload = _with_defaults(payload, "hubspot", key, when, "web_form")
    payload["hubspot_contact_id"] = str(contact_id)
    return WebhookBatch([WebhookLead(key, payload)])


MAPPERS = {"typeform": typeform_leads, "meta": meta_leads, "calendly": calendly_leads, "hubspot": hubspot_leads}
