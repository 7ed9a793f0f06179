"""Pure rules of the HTTP front door (`leadflow api`): keys, request bodies, origins, return URLs and rate limits."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# A key is this prefix and 32 random bytes (256 bits) in URL-safe base64: too many to guess, so one SHA-256 of it
# is a safe thing to store (no salt or slow hash needed, unlike a password).
KEY_PREFIX = "lfk_"
KEY_SHOWN_CHARS = 8
# Where a browser form, which cannot send headers, puts the key (a form field or the query string).
KEY_FIELDS = ("api_key",)
# Where a form names the page to send the browser to afterwards (`retURL` as Salesforce Web-to-Lead spells it).
RETURN_URL_FIELDS = ("return_url", "retURL")
IDEMPOTENCY_KEY_MAX = 200


class RequestError(ValueError):
    """A request the API refuses: the HTTP status, a one-line message and, for 422, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class NewKey:
    """A freshly made API key: the token (shown once), its display prefix and the hash that is stored."""

    token: str
    prefix: str
    key_hash: str


def hash_key(token: str) -> str:
    """The stored form of an API key: the SHA-256 of its token, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key() -> NewKey:
    """A new random API key."""
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(token=token, prefix=token[:len(KEY_PREFIX) + KEY_SHOWN_CHARS], key_hash=hash_key(token))


def looks_like_key(token: str | None) -> bool:
    """Whether a string has the shape of a leadflow API key (a cheap refusal before any database look-up)."""
    return bool(token) and token.startswith(KEY_PREFIX) and 20 <= len(token) <= 100


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lower case (`application/json; charset=utf-8` -> ...json)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The fields a POST carries: a JSON object or an urlencoded form (raises RequestError 400, 415 or 422).

    Without a Content-Type the body may be either. A form's empty fields are dropped (a browser sends every input,
    filled or not), and a field given twice keeps its first value.
    """
    kind = media_type(content_type)
    if kind and not _is_json(kind) and kind != "application/x-www-form-urlencoded":
        raise RequestError(415, f"unsupported content type {kind[:60]}: send application/json or "
                                "application/x-www-form-urlencoded")
    if not body.strip():
        raise RequestError(400, "the request has no body: send the lead as JSON or as a form")
    charset = _charset(content_type)
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise RequestError(400, "the body is not text in its declared charset (utf-8 unless it says)") from None
    if _is_json(kind) or (not kind and text.lstrip()[:1] in "{["):
        try:
            value = json.loads(text)
        except ValueError:
            raise RequestError(400, "the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise RequestError(400, "the body must be a JSON object of field -> value")
        return value
    try:
        # Percent-escapes decode in the form's charset too; a byte sequence that is not text refuses the body.
        pairs = parse_qsl(text, keep_blank_values=False, strict_parsing=True, max_num_fields=500, encoding=charset,
                          errors="strict")
    except ValueError:
        raise RequestError(400, "the body is neither JSON nor an urlencoded form") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    if not fields:
        raise RequestError(400, "the form has no filled fields")
    return fields


def take_fields(fields: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """Remove the API's own fields (key, return URL) from a payload and return the first one given."""
    found = None
    for name in names:
        value = fields.pop(name, None)
        if found is None and isinstance(value, str) and value.strip():
            found = value.strip()
    return found


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it (`scheme://host[:port]`, lower case, default port left out); else ValueError."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} is not an origin like https://www.example.com")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Whether a browser origin may use a key with this allowed-origins list (`*` allows any)."""
    if origin is None:
        return False
    if "*" in allowed:
        return True
    try:
        return normalize_origin(origin) in allowed
    except ValueError:
        return False


def check_return_url(url: str, allowed: list[str]) -> str:
    """A return URL the API may redirect to: http(s), on one of the key's allowed origins (no open redirect)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(422, "the return URL must be an absolute http(s) URL", "return_url")
    try:
        origin = normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        raise RequestError(422, "the return URL must be an absolute http(s) URL", "return_url") from None
    if origin not in allowed and "*" not in allowed:
        raise RequestError(422, "the return URL is not on an origin the key allows", "return_url")
    return url


def check_idempotency_key(value: str | None) -> str | None:
    """An Idempotency-Key header's value: printable ASCII up to 200 characters (400 otherwise)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise RequestError(400, f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII "
                                "characters")
    return value


class RateLimiter:
    """Token buckets per name (an API key, a client address): `rate_per_minute` on average, `burst` at once.

    In-process: each API worker process keeps its own buckets, so N workers allow up to N times the rate. The
    least recently used buckets are forgotten beyond `max_buckets` (a forgotten bucket starts full again).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, name: str, rate_per_minute: int, burst: int | None = None) -> float:
        """Spend one token of a bucket: 0.0 when allowed, else the seconds until a token is back (Retry-After)."""
        if rate_per_minute <= 0:
            return 0.0
        capacity = float(burst if burst is not None else default_burst(rate_per_minute))
        per_second = rate_per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(name, (capacity, now))
            tokens = min(capacity, tokens + (now - stamp) * per_second)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[name] = (tokens, now)
                wait = (1.0 - tokens) / per_second
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return wait


def default_burst(rate_per_minute: int) -> int:
    """How many requests a bucket lets through at once: ten seconds' worth of its rate, at least one."""
    return max(1, math.ceil(rate_per_minute / 6))


def retry_after(wait_seconds: float) -> str:
    """A Retry-After header value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
